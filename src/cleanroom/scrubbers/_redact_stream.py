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

if TYPE_CHECKING:
    from cleanroom.scrubbers._redact_engine import Redactor

_PEM_BEGIN = "PRIVATE KEY"
_PEM_BEGIN_MARK = "-----BEGIN"
_PEM_END_MARK = "-----END"
_PEM_BODY_LINE = re.compile(r"[ \t]*(?:[A-Za-z0-9+/=]{16,}|[A-Za-z-]+: .*)[ \t]*\r?\n?")
_PEM_PLACEHOLDER = "[REDACTED:PRIVATE_KEY]"
_LINE_END = re.compile(r"\r?\n")
# CSI (`\x1b[1;31m`, `\x1b[K`), OSC (`\x1b]0;title\x07`) and two-character escapes, as terminals parse them.
_ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b\n]*(?:\x07|\x1b\\)|[@-Z\\-_])")
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
        if "\x1b" not in text:
            return self._redactor.redact(text)
        return _render(text, _spans(self._redactor, text))


_Span = tuple[int, int, str]  # start, end, placeholder


def _spans(redactor: Redactor, text: str) -> list[_Span]:
    """What to replace in `text`, sorted by start (spans may overlap).

    A text that holds an escape sequence is read twice: as it is, and as a terminal shows it, with the
    sequences removed (`\x1b[31mAKIA...` is the word `mAKIA...` to the rules' left guards). A finding in
    the second reading covers the sequences inside it, so no part of a secret survives.
    """
    spans = [(f.start, f.end, _placeholder(redactor, text, f.start, f.end, f.label)) for f in redactor.find(text)]
    if "\x1b" in text:
        plain = _ANSI_ESCAPE.sub("", text)
        found = redactor.find(plain) if len(plain) < len(text) else []
        if found:
            keep: list[int] = []  # index in `text` of each character of `plain`
            pos = 0
            for m in _ANSI_ESCAPE.finditer(text):
                keep.extend(range(pos, m.start()))
                pos = m.end()
            keep.extend(range(pos, len(text)))
            for f in found:
                start, end = keep[f.start], keep[f.end - 1] + 1
                spans.append((start, end, _placeholder(redactor, text, start, end, f.label)))
            spans.sort()
    return spans


def _placeholder(redactor: Redactor, text: str, start: int, end: int, label: str) -> str:
    """The engine's placeholder, ending with the span's own line breaks (`\r\n` stays `\r\n`)."""
    value = _ANSI_ESCAPE.sub("", text[start:end])  # a card's kept digits never come from `\x1b[31m`
    placeholder = redactor._placeholder(value, 0, len(value), label)
    if "\n" not in placeholder:
        return placeholder
    return placeholder.rstrip("\n") + "".join(_LINE_END.findall(text, start, end))


def _render(text: str, spans: list[_Span]) -> str:
    """`text` with each span replaced; overlapping spans merge into the first one's placeholder."""
    parts: list[str] = []
    pos = 0
    for start, end, placeholder in spans:
        if start < pos:  # overlaps the previous span: widen it, keeping its line breaks
            if end > pos:
                parts.append("".join(_LINE_END.findall(text, pos, end)))
                pos = end
            continue
        parts.append(text[pos:start])
        parts.append(placeholder)
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


def _closes_block(line: str) -> bool:
    """The BEGIN line also holds the END marker (an escaped-newline PEM or a one-line key)."""
    begin = line.rfind(_PEM_BEGIN_MARK)
    return line.find(_PEM_END_MARK, begin) >= 0
