"""Streaming redaction: chunks in, redacted complete lines out.

Only complete lines are redacted, so a secret split across two chunks is still one string when it is
scanned. A line that opens a PEM private-key block is held, with the lines after it, until the END line
(or until `max_hold_chars`), and the block is redacted as one text; the placeholder keeps the block's line
breaks, so the output has exactly as many lines as the input. A line longer than `max_line_chars`
without a newline is cut at whitespace, keeping `overlap_chars` back, so memory stays bounded.
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
        self._pending = ""  # the current, incomplete line
        self._held: list[str] = []  # complete lines of an open PEM block
        self._held_chars = 0
        self._draining = False  # after a block was released unfinished: its remaining body lines

    def feed(self, chunk: str) -> str:
        if not chunk:
            return ""
        data = self._pending + chunk
        out: list[str] = []
        start = 0
        while True:
            nl = data.find("\n", start)
            if nl < 0:
                break
            self._line(data[start : nl + 1], out)
            start = nl + 1
        self._pending = data[start:]
        if len(self._pending) > self._max_line:
            self._cut_long_line(out)
        return "".join(out)

    def flush(self) -> str:
        out: list[str] = []
        if self._pending:
            self._line(self._pending, out)
            self._pending = ""
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
        out.append(self._redactor.redact(line))

    def _release(self, out: list[str]) -> None:
        if self._held:
            out.append(self._redactor.redact("".join(self._held)))
            self._held = []
            self._held_chars = 0

    def _cut_long_line(self, out: list[str]) -> None:
        keep_from = len(self._pending) - self._overlap
        cut = max(self._pending.rfind(" ", 0, keep_from), self._pending.rfind("\t", 0, keep_from))
        if cut <= 0:
            cut = keep_from
        head, self._pending = self._pending[: cut + 1], self._pending[cut + 1 :]
        if self._held:
            self._held.append(head)
            self._held_chars += len(head)
            if self._held_chars > self._max_hold:
                self._release(out)
        else:
            out.append(self._redactor.redact(head))


def _closes_block(line: str) -> bool:
    """The BEGIN line also holds the END marker (an escaped-newline PEM or a one-line key)."""
    begin = line.rfind(_PEM_BEGIN_MARK)
    return line.find(_PEM_END_MARK, begin) >= 0
