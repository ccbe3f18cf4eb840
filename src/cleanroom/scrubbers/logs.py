"""Log redaction: secrets and PII never reach a log line (DESIGN §2, invariant 7).

Public API:
- `redact(text) -> str`: every finding replaced by a typed placeholder such as `[REDACTED:EMAIL]`;
- `Redactor`: the same with settings (`keep_card_last4`, `ip_allowlist`, prefilter backend);
- `RedactingFilter`: a `logging.Filter` for HANDLERS (a filter on an ancestor logger never sees propagated
  records). It formats `msg % args` itself, then clears `args`, and redacts `extra` fields, the
  exception text and `stack_info`;
- `StreamingRedactor` / `redact_stream` / `redact_byte_stream`: line-preserving redaction of a stream
  (`cleanroom redact` uses the byte one).

Rules live in `log_rules` (secrets) and `_redact_pii` (PII); the engine in `_redact_engine`.
"""

from __future__ import annotations

import codecs
import logging
import select
from collections.abc import Mapping
from typing import Any, BinaryIO, TextIO

from cleanroom.scrubbers._redact_engine import (
    DEFAULT_IP_ALLOWLIST,
    DEFAULT_RULES,
    Finding,
    Redactor,
    default_redactor,
)
from cleanroom.scrubbers._redact_stream import StreamingRedactor
from cleanroom.scrubbers.log_rules import label_for_field

__all__ = [
    "DEFAULT_IP_ALLOWLIST",
    "DEFAULT_RULES",
    "Finding",
    "RedactingFilter",
    "Redactor",
    "StreamingRedactor",
    "default_redactor",
    "redact",
    "redact_byte_stream",
    "redact_stream",
]


def redact(text: str) -> str:
    """`text` with every secret and piece of PII replaced by `[REDACTED:<TYPE>]`."""
    return default_redactor().redact(text)


# Read at most this much at a time: a line with no newline never sits whole in memory (the streaming
# redactor cuts it at 1 MiB), and a pipe's data is handled as soon as it arrives.
_READ_CHARS = 1 << 16
# A live stream that opened a PEM block and then went quiet this long has its held lines written out.
_HOLD_WAIT_S = 1.0


def redact_stream(
    infile: TextIO, outfile: TextIO, *, redactor: Redactor | None = None, flush_each_line: bool = False
) -> int:
    """Copy `infile` to `outfile` redacted, one line out per line in; returns the number of lines read.

    A PEM block spread over lines is held back until its END line (bounded), so it is caught whole.
    """
    stream = StreamingRedactor(redactor or default_redactor())
    lines = 0
    ends_line = True
    while piece := infile.readline(_READ_CHARS):
        lines += piece.count("\n")
        ends_line = piece.endswith("\n")
        out = stream.feed(piece)
        if out:
            outfile.write(out)
            if flush_each_line:
                outfile.flush()
    rest = stream.flush()
    if rest:
        outfile.write(rest)
    outfile.flush()
    return lines + (not ends_line)


def redact_byte_stream(infile: BinaryIO, outfile: BinaryIO, *, redactor: Redactor | None = None) -> bool:
    """`cleanroom redact`: copy bytes from `infile` to `outfile` redacted, one line out per line in.

    Bytes that are not UTF-8 pass through unchanged (surrogateescape both ways; a character split across
    reads is decoded whole). Each read takes what the pipe holds (up to 64 KiB), and its output is flushed
    at once, so `journalctl -f | cleanroom redact` shows a line as soon as it is written, and a long file
    costs one write per 64 KiB. Returns True when stopped by Ctrl-C: what had been read is still written,
    redacted (a line cut short by it included); nothing passes unredacted.
    """
    stream = StreamingRedactor(redactor or default_redactor())
    decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
    read = getattr(infile, "read1", infile.read)
    interrupted = False
    try:
        while True:
            if stream.holding and not _input_within(infile, _HOLD_WAIT_S):
                out = stream.release_held()  # a BEGIN marker, then silence: do not hold the rest back
            elif data := read(_READ_CHARS):
                out = stream.feed(decoder.decode(data))
            else:
                break
            if out:
                outfile.write(out.encode("utf-8", "surrogateescape"))
                outfile.flush()
    except KeyboardInterrupt:  # the chunk being redacted, if any, is dropped, never written unredacted
        interrupted = True
    rest = stream.feed(decoder.decode(b"", final=True)) + stream.flush()
    if rest:
        outfile.write(rest.encode("utf-8", "surrogateescape"))
    outfile.flush()
    return interrupted


def _input_within(infile: BinaryIO, timeout_s: float) -> bool:
    """More input (or its end) arrives within `timeout_s`; True for what cannot be polled (no fd)."""
    try:
        ready, _, _ = select.select([infile.fileno()], [], [], timeout_s)
    except (OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return True
    return bool(ready)


# Attributes every LogRecord has; anything else on a record came from `extra=`.
_BASE_ATTRS = vars(logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None)).keys()
_BASE_COUNT = len(_BASE_ATTRS)
REDACTED_MARK = "_cleanroom_redacted"
_STANDARD_ATTRS = frozenset(_BASE_ATTRS | {"message", "asctime", "taskName", REDACTED_MARK})
# The mark's value is this object, which `extra=` cannot supply, so a caller cannot skip redaction.
_MARK = object()
_MAX_EXTRA_DEPTH = 4


class RedactingFilter(logging.Filter):
    """Redacts a record in place and always lets it through.

    Attach it to every handler (see `cleanroom.logging_setup.install_redaction`). Records are shared by
    all handlers of a logger tree, so the first filter does the work and marks the record; the next ones
    only re-check what can change after that (nothing, unless a later filter adds attributes).
    """

    def __init__(self, redactor: Redactor | None = None, name: str = "") -> None:
        super().__init__(name)
        self._redactor = redactor

    @property
    def redactor(self) -> Redactor:
        return self._redactor or default_redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        d = record.__dict__
        if d.get(REDACTED_MARK) is _MARK:
            return True
        try:
            self._redact_record(record, d)
        except Exception:  # fail closed: a redactor bug must neither crash the caller nor let text through
            _blank_record(record, d)
        d[REDACTED_MARK] = _MARK
        return True

    def _redact_record(self, record: logging.LogRecord, d: dict[str, Any]) -> None:
        redact_text = self.redactor.redact
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not drop the record, nor leak its args
            message = f"{record.msg!s} {record.args!r}"
        record.msg = redact_text(message)
        record.args = None
        if record.exc_info:
            # Format the traceback now, redact it, and drop the live exception so no formatter (or
            # handler such as an error tracker) can render the unredacted original later.
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact_text(text)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        if len(d) > _BASE_COUNT:  # cheap test: only records with `extra` (or formatted ones) have more
            for key in [k for k in d if k not in _STANDARD_ATTRS]:
                d[key] = _redact_field(key, d[key], redact_text, 0)


UNREDACTABLE = "[REDACTED:UNREDACTABLE] the log redactor failed on this record; its text was dropped"


def _blank_record(record: logging.LogRecord, d: dict[str, Any]) -> None:
    """What a record keeps when redaction raised: its level, logger and place, none of its text."""
    record.msg, record.args = UNREDACTABLE, None
    record.exc_info, record.exc_text, record.stack_info = None, None, None
    for key in [k for k in d if k not in _STANDARD_ATTRS]:
        d[key] = "[REDACTED]"


def _redact_field(key: Any, value: Any, redact_text: Any, depth: int) -> Any:
    """A named field: a secret-sounding name (`password`, `api_key`, `auth_token`...) redacts its value."""
    if isinstance(key, str) and value is not None and not isinstance(value, (bool, Mapping, list, tuple)):
        label = label_for_field(key, value if isinstance(value, str) else str(value))
        if label is not None:
            return f"[REDACTED:{label}]"
    return _redact_value(value, redact_text, depth)


def _redact_value(value: Any, redact_text: Any, depth: int) -> Any:
    """Redact strings inside `extra` values, keeping numbers, booleans and None and the container shape."""
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if depth >= _MAX_EXTRA_DEPTH:
        return redact_text(repr(value))
    if isinstance(value, Mapping):
        return {_redact_value(k, redact_text, depth + 1): _redact_field(k, v, redact_text, depth + 1)
                for k, v in value.items()}  # fmt: skip
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_redact_value(v, redact_text, depth + 1) for v in value]
        return type(value)(items) if not isinstance(value, tuple) or type(value) is tuple else items
    if isinstance(value, (bytes, bytearray)):
        return redact_text(bytes(value).decode("utf-8", "replace"))
    text = str(value)
    redacted = redact_text(text)
    return value if redacted is text else redacted
