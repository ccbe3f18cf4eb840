"""Streaming redaction: chunks in, redacted complete lines out.

Only complete lines are redacted, so a secret split across two chunks is still one string when it is
scanned. A line that opens a PEM private-key block is held, with the lines after it, until the END line
(or until `max_hold_chars`), and the block is redacted as one text; the placeholder keeps the block's line
breaks, so the output has exactly as many lines as the input. A line longer than `max_line_chars`
without a newline is cut at whitespace, keeping `overlap_chars` back, so memory stays bounded; the cut is
moved past any finding that straddles it or starts just after it (a card `4111 1111 | 1111 1111`, a
`password: | value`), so only a secret longer than the overlap can be split.

ANSI escape sequences (`\x1b[31m`) are looked through: a line that holds one is also scanned with them
removed, since `\x1b[31mAKIA...` reads as the word `mAKIA...` to the rules' left guards.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from cleanroom.scrubbers._redact_spans import render as _render
from cleanroom.scrubbers._redact_spans import spans as _spans

if TYPE_CHECKING:
    from cleanroom.scrubbers._redact_engine import Redactor

_PEM_BEGIN = "PRIVATE KEY"
_PEM_BEGIN_MARK = "-----BEGIN"
_PEM_END_MARK = "-----END"
_PEM_BODY_LINE = re.compile(r"[ \t]*(?:[A-Za-z0-9+/=]{16,}|[A-Za-z-]+: .*)[ \t]*\r?\n?")
_PEM_PLACEHOLDER = "[REDACTED:PRIVATE_KEY]"
# A finding that starts this close after a long-line cut moves the cut past it: its key (`"password": "`)
# may lie before the cut, and the value alone would not be recognised.
_CUT_MARGIN_CHARS = 64


class StreamingRedactor:
    """`feed(chunk) -> str` returns the redacted text that is ready; `flush() -> str` the rest."""

    def __init__(
        self,
        redactor: Redactor | None = None,
        *,
        max_line_chars: int = 1 << 20,
        overlap_chars: int = 8192,
        max_hold_chars: int = 1 << 16,
    ) -> None:
        if not 0 < overlap_chars < max_line_chars:
            raise ValueError("need 0 < overlap_chars < max_line_chars")
        if redactor is None:
            from cleanroom.scrubbers._redact_engine import default_redactor

            redactor = default_redactor()
        self._redactor = redactor
        self._max_line = max_line_chars
        self._overlap = overlap_chars
        self._max_hold = max_hold_chars
        self._pending: list[str] = []  # the current, incomplete line, in the pieces it came in
        self._pending_chars = 0
        self._held: list[str] = []  # complete lines of an open PEM block
        self._held_chars = 0
        self._draining = False  # after a block was released unfinished: its remaining body lines

    def feed(self, chunk: str) -> str:
        if not chunk:
            return ""
        nl = chunk.find("\n")
        out: list[str] = []
        if nl >= 0:
            # Only the new chunk is searched and the pieces joined once: a long line fed a byte at a time
            # (a slow pipe) costs linear, not quadratic, time.
            self._pending.append(chunk[: nl + 1])
            self._line("".join(self._pending), out)
            start = nl + 1
            while (nl := chunk.find("\n", start)) >= 0:
                self._line(chunk[start : nl + 1], out)
                start = nl + 1
            self._pending = [chunk[start:]] if start < len(chunk) else []
            self._pending_chars = len(chunk) - start
        else:
            self._pending.append(chunk)
            self._pending_chars += len(chunk)
        if self._pending_chars > self._max_line:
            self._cut_long_line(out)
        return "".join(out)

    @property
    def holding(self) -> bool:
        """A PEM block is held back, waiting for its END line."""
        return bool(self._held)

    def release_held(self) -> str:
        """The held PEM block now, as when it outgrows `max_hold_chars`: redacted to the end of its body,
        and the body lines that follow it still replaced. For a live stream gone quiet (`cleanroom redact`
        calls it after 1 s without input), where a line that only mentions a BEGIN marker would otherwise
        hold back everything after it."""
        out: list[str] = []
        if self._held:
            self._release(out)
            self._draining = True
        return "".join(out)

    def flush(self) -> str:
        out: list[str] = []
        if self._pending:
            self._line("".join(self._pending), out)
            self._pending, self._pending_chars = [], 0
        self._release(out)
        return "".join(out)

    # -- internals ----------------------------------------------------------------------------------------
    def _line(self, line: str, out: list[str]) -> None:
        if self._held:
            self._held.append(line)
            self._held_chars += len(line)
            if _PEM_END_MARK in line:
                self._release(out)
            elif self._held_chars > self._max_hold:
                self._release(out)
                self._draining = True
            return
        if self._draining:
            if _PEM_BODY_LINE.fullmatch(line) or _PEM_END_MARK in line:
                out.append(_PEM_PLACEHOLDER + ("\n" if line.endswith("\n") else ""))
                self._draining = _PEM_END_MARK not in line
                return
            self._draining = False
        if _PEM_BEGIN in line and _PEM_BEGIN_MARK in line and not _closes_block(line):
            self._held = [line]
            self._held_chars = len(line)
            return
        out.append(self._redact(line))

    def _release(self, out: list[str]) -> None:
        if self._held:
            held = "".join(self._held)
            # Rendered here, not by `redact`: the placeholder keeps the block's own line endings (`\r\n`).
            out.append(_render(held, _spans(self._redactor, held)))
            self._held = []
            self._held_chars = 0

    def _cut_long_line(self, out: list[str]) -> None:
        pending = "".join(self._pending)
        while len(pending) > self._max_line:
            keep_from = len(pending) - self._overlap
            cut = max(pending.rfind(" ", 0, keep_from), pending.rfind("\t", 0, keep_from)) + 1
            if cut <= 0:
                cut = keep_from
            # The head is rendered from the findings of the whole window, so a value keeps the context on
            # both sides of it (`"api_key": "..."` needs its closing quote) however the line was cut.
            spans = _spans(self._redactor, pending)
            open_end = len(pending) - _CUT_MARGIN_CHARS  # a finding reaching past this may go on
            for start, end, _ in spans:  # in order of start
                if start > cut + _CUT_MARGIN_CHARS or (end > open_end and start >= cut):
                    break  # (a run of findings led here: the last, maybe cut short, stays with the rest)
                if end > cut:
                    cut = end
            head = pending[:cut]
            head_spans = [span for span in spans if span[1] <= cut]
            pending = pending[cut:]
            if self._held:
                self._held.append(head)
                self._held_chars += len(head)
                if self._held_chars > self._max_hold:
                    self._release(out)
            else:
                out.append(_render(head, head_spans) if head_spans else head)
        self._pending = [pending] if pending else []
        self._pending_chars = len(pending)

    def _redact(self, text: str) -> str:
        return self._redactor.redact(text)  # looks through ANSI escapes itself (_redact_spans)


def _closes_block(line: str) -> bool:
    """The BEGIN line also holds the END marker (an escaped-newline PEM or a one-line key)."""
    begin = line.rfind(_PEM_BEGIN_MARK)
    return line.find(_PEM_END_MARK, begin) >= 0
