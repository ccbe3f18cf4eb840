"""Findings as spans of a text, and the text rendered with them replaced — for texts the engine's fast
path does not cover: a text with ANSI escape sequences, and the streaming redactor's PEM blocks and
long-line cuts.

ANSI escape sequences (`\x1b[31m`) are looked through: a text that holds one is also scanned with them
removed, since `\x1b[31mAKIA...` reads as the word `mAKIA...` to the rules' left guards. Placeholders keep
the span's own line breaks (`\r\n` stays `\r\n`), so the output has as many lines as the input.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cleanroom.scrubbers._redact_engine import Redactor

_LINE_END = re.compile(r"\r?\n")
# CSI (`\x1b[1;31m`, `\x1b[K`), OSC (`\x1b]0;title\x07`) and two-character escapes, as terminals parse them.
_ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b\n]*(?:\x07|\x1b\\)|[@-Z\\-_])")

_Span = tuple[int, int, str]  # start, end, placeholder


def spans(redactor: Redactor, text: str) -> list[_Span]:
    """What to replace in `text`, sorted by start (spans may overlap).

    A text that holds an escape sequence is read twice: as it is, and as a terminal shows it, with the
    sequences removed (`\x1b[31mAKIA...` is the word `mAKIA...` to the rules' left guards). A finding in
    the second reading covers the sequences inside it, so no part of a secret survives.
    """
    found_spans = [
        (f.start, f.end, placeholder_for(redactor, text, f.start, f.end, f.label)) for f in redactor.find(text)
    ]
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
                found_spans.append((start, end, placeholder_for(redactor, text, start, end, f.label)))
            found_spans.sort()
    return found_spans


def placeholder_for(redactor: Redactor, text: str, start: int, end: int, label: str) -> str:
    """The engine's placeholder, ending with the span's own line breaks (`\r\n` stays `\r\n`)."""
    value = _ANSI_ESCAPE.sub("", text[start:end])  # a card's kept digits never come from `\x1b[31m`
    placeholder = redactor._placeholder(value, 0, len(value), label)
    if "\n" not in placeholder:
        return placeholder
    return placeholder.rstrip("\n") + "".join(_LINE_END.findall(text, start, end))


def render(text: str, spans: list[_Span]) -> str:
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
