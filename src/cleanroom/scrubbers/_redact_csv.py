"""A CSV record in one text: the key is in the header line, the value in the row below (issue #7, the
grid's cause 3: `ts,host,DB_PASSWORD,status` then `…,web01,Winter!2025db,200` left the password, since no
rule sees a key and its value on one line).

When a text's first line is a header (2+ fields, each a name) naming a credential or PII column, each
row with as many fields is judged cell by cell as the assignment `<name>=<cell>` would be, by every rule;
a finding there redacts the whole cell. Only the columns whose names hint at a key are judged, so a CSV
export of counters costs one header parse.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Found = list[tuple[int, int, int, str]]  # (start, end, priority, label), as the engine keeps them

_HEADER_FIELD = re.compile(r"\"?[A-Za-z_][\w .-]{0,63}\"?")
# What a credential or PII column's name holds (a superset: the rules judge the name again)
_KEYISH = re.compile(
    r"pass|pwd|secret|key|token|cred|auth|jwt|bearer|ssn|social|phone|tel|mobile|cell|fax|msisdn|sms",
    re.IGNORECASE,
)
_FIELD = re.compile(r"\"((?:[^\"\r\n]|\"\")*)\"|([^,\r\n]*)")


def _fields(text: str, pos: int, end: int) -> list[tuple[int, int]]:
    """The value spans of the CSV fields of `text[pos:end]` (quotes excluded); [] when it does not parse."""
    out: list[tuple[int, int]] = []
    while True:
        m = _FIELD.match(text, pos, end)
        if m is None:
            return []
        out.append(m.span(1) if m.start(1) >= 0 else m.span(2))
        pos = m.end()
        if pos >= end:
            return out
        if text[pos] != ",":
            return []
        pos += 1


def csv_findings(text: str, find: Callable[[str], Found]) -> Found:
    """The cells of `text`'s rows that its header names as credentials or PII and `find` confirms."""
    nl = text.find("\n")
    if nl < 0 or nl + 1 >= len(text):
        return []
    header = text[:nl].rstrip("\r")
    names = [n.strip('"') for n in header.split(",")]
    if len(names) < 2 or not all(_HEADER_FIELD.fullmatch(n) for n in header.split(",")):
        return []
    columns = [i for i, n in enumerate(names) if _KEYISH.search(n)]
    if not columns:
        return []
    out: Found = []
    pos, n = nl + 1, len(text)
    while pos < n:
        end = text.find("\n", pos)
        end = n if end < 0 else end
        line_end = end - 1 if end > pos and text[end - 1] == "\r" else end
        fields = _fields(text, pos, line_end) if line_end > pos else []
        if len(fields) == len(names):
            for i in columns:
                a, b = fields[i]
                if b <= a:
                    continue
                key, value = names[i].strip(), text[a:b].replace('""', '"')
                probe = f'{key}="{value}"' if " " in value and '"' not in value else f"{key}={value}"
                hits = [f for f in find(probe) if f[1] > len(key) + 1]
                if hits:
                    top = max(hits, key=lambda f: f[2])
                    out.append((a, b, top[2], top[3]))
        pos = end + 1
    return out
