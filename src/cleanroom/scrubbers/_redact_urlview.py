"""A percent-decoded view of a line, with a map back to the line (issue #7, the grid's largest cause).

Query strings and form bodies write separators as escapes: `%20`/`+` are spaces, `%3A` `%2F` `%40` `%2B`
`%0A` are `:` `/` `@` `+` and a line break. The rules read `+44%2020%207946%200958` as digits glued to
hex pairs, so phones, IBANs, SSNs, IPv6, IDN emails, webhooks, PEM blocks and URL passwords leaked there
(18 of the grid's 44 failing cells), and look-alikes were cut up (`5618%200939%206639%204224`, Luhn
invalid, got a PHONE in its middle). The engine scans this view too and maps its findings back; a finding
covers every escape it touches, so no placeholder ends inside `%XX`.

Only a line holding an escape, or a `+` in a query/form value, gets a view: a clean line pays two `in`
tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Found = list[tuple[int, int, int, str]]  # (start, end, priority, label), unmerged, as the engine keeps them

_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
# A query/form parameter's value: `+` is a space only there (`?q=a+b`, `&name=john+smith`), never in a
# path, prose or a lone `key=value` (`+44 20 …`, `C++`, base64 `public_key=MCow…+eU=`: read as a space, the
# halves of a public key looked like random tokens). A parameter follows `?`/`&` or is followed by `&`.
# A value stops at quotes, brackets and braces: in `"ref":"sha512-…+ZAP…"` a JSON line is no form body.
_FORM_VALUE = re.compile(
    r"(?<=[?&])[^\s=&?#\"'<>{}]+=([^\s&#\"'<>{}]*)|(?:^|(?<=[\s;]))[^\s=&?#\"'<>{}]+=([^\s&#\"'<>{}]*)(?=&)"
)
_PLUS_IN_VALUE = re.compile(
    r"(?<=[?&])[^\s=&?#\"'<>{}]+=[^\s&#\"'<>{}]*\+"
    r"|(?:^|(?<=[\s;]))[^\s=&?#\"'<>{}]+=[^\s&#\"'<>{}]*\+[^\s&#\"'<>{}]*&"
)
# A literal URL's authority (`mongodb+srv://u%40corp:pw@host`): its escapes are characters of the user
# name or password, so decoding them would move the `@`/`:` the URL-password rule reads (a JDBC line's
# `user=u%40corp` decoded made `1433;databaseName=app;user=u` a password).
_AUTHORITY = re.compile(r"://[^\s/?#]*")


class DecodedView:
    """`text` decoded; `starts[i]:ends[i]` is the span of the line that decoded character `i` came from."""

    __slots__ = ("ends", "starts", "text")

    def __init__(self, text: str, starts: list[int], ends: list[int]) -> None:
        self.text = text
        self.starts = starts
        self.ends = ends

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The line's span for the decoded span `start:end` (end > start): whole escapes, never half."""
        return self.starts[start], self.ends[end - 1]


def _utf8_length(lead: int) -> int:
    if lead < 0x80:
        return 1
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0  # a continuation byte or an invalid lead: not a character's start


def decoded_view(text: str) -> DecodedView | None:
    """The view of `text` with `%XX` escapes decoded (as UTF-8; an escape that starts no valid character
    stays as written) and `+` read as a space inside query/form values; None when `text` has neither."""
    if ("%" not in text or _ESCAPE.search(text) is None) and not (
        "+" in text and ("&" in text or "?" in text) and _PLUS_IN_VALUE.search(text)
    ):
        return None
    plus_spaces: set[int] = set()
    if "+" in text:
        for m in _FORM_VALUE.finditer(text):
            a, b = m.span(1) if m.start(1) >= 0 else m.span(2)
            p = text.find("+", a, b)
            while p >= 0:
                plus_spaces.add(p)
                p = text.find("+", p + 1, b)
    literal: list[tuple[int, int]] = [m.span() for m in _AUTHORITY.finditer(text)] if "://" in text else []
    out: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "%" and _ESCAPE.match(text, i) and not any(a <= i < b for a, b in literal):
            width = _utf8_length(int(text[i + 1 : i + 3], 16))
            raw = bytearray()
            j = i
            for _ in range(width):
                if not _ESCAPE.match(text, j):
                    break
                raw.append(int(text[j + 1 : j + 3], 16))
                j += 3
            try:
                decoded = bytes(raw).decode("utf-8") if len(raw) == width else ""
            except UnicodeDecodeError:
                decoded = ""
            if decoded:
                out.append(decoded)
                starts.append(i)
                ends.append(j)
                i = j
                continue
        out.append(" " if ch == "+" and i in plus_spaces else ch)
        starts.append(i)
        ends.append(i + 1)
        i += 1
    return DecodedView("".join(out), starts, ends)


def find_with_view(text: str, view: DecodedView, find: Callable[[str], Found]) -> Found:
    """`find(text)` and `find(view.text)` mapped back (a finding covers every escape it touches). A direct
    finding that starts or ends inside or against an escape and that the decoded reading does not confirm
    read `%XX` as characters (`5618%200939%206639%204224`, Luhn-invalid, got a PHONE from `200939` on;
    `ssh-ed25519%20AAAA…` a RANDOM_TOKEN ending at `%20`) and is dropped."""
    found = find(text)
    mapped = [(*view.span(s, e), p, lab) for s, e, p, lab in find(view.text)]
    if found:
        escapes = [m.span() for m in _ESCAPE.finditer(text)]
        found = [f for f in found if not _misread(f[0], f[1], escapes, mapped)]
    return found + mapped


def _misread(start: int, end: int, escapes: list[tuple[int, int]], decoded: Found) -> bool:
    if not any(a < start <= b or a <= end < b for a, b in escapes):
        return False
    return not any(s < end and start < e for s, e, _, _ in decoded)
