"""The redaction engine: prefilter, run the candidate rules, confirm, merge overlaps, render placeholders.

`Redactor` is immutable after construction (compiled patterns, prefilter database), so one instance is
shared by every thread and every handler. Overlapping findings are merged into one span (so nothing of
either value survives) and labelled by the higher-priority rule.

Rules run in descending priority, and a candidate that lies inside a finding of a strictly higher
priority is dropped before its confirm step runs: merging would absorb it and keep the other label, so the
output is the same, and the confirm steps that cost most (entropy, key tiers) mostly run on values a
provider rule has already claimed (`HF_TOKEN: hf_...`: 1811 of 2946 assignment candidates in the
secret-dense corpus).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cleanroom.scrubbers._redact_csv import csv_findings
from cleanroom.scrubbers._redact_pii import PII_RULES
from cleanroom.scrubbers._redact_prefilter import Prefilter, Starts, build_prefilter
from cleanroom.scrubbers._redact_spans import render as render_spans
from cleanroom.scrubbers._redact_spans import spans as ansi_spans
from cleanroom.scrubbers._redact_urlview import decoded_view, find_with_view
from cleanroom.scrubbers.log_rules import SECRET_RULES, Rule

DEFAULT_RULES: tuple[Rule, ...] = SECRET_RULES + PII_RULES
# Loopback and unspecified addresses identify no one; keeping them keeps "listening on 127.0.0.1" useful.
DEFAULT_IP_ALLOWLIST: frozenset[str] = frozenset(("127.0.0.1", "0.0.0.0", "::1", "::"))  # noqa: S104
_LONG_TEXT_CHARS = 4096


@dataclass(frozen=True, slots=True)
class Finding:
    """One redacted span of the input: `text[start:end]` was replaced by the `label` placeholder."""

    start: int
    end: int
    label: str


_Found = list[tuple[int, int, int, str]]  # (start, end, priority, label), unmerged


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def guard_characters(spec: str) -> frozenset[str]:
    """The characters of a `left_guard`, written like a regex class body: `A-Za-z0-9_-` is a range list
    (a `-` first or last is the dash itself). Taken literally it would block only `A Z a z 0 9 - _`."""
    chars: set[str] = set()
    i = 0
    while i < len(spec):
        if i + 2 < len(spec) and spec[i + 1] == "-":
            chars.update(chr(c) for c in range(ord(spec[i]), ord(spec[i + 2]) + 1))
            i += 3
        else:
            chars.add(spec[i])
            i += 1
    return frozenset(chars)


def _after_escape(text: str, start: int) -> bool:
    """True when the word character before `start` ends an escape rather than a word: `%3D` (URL
    encoding, `?key=%3DAKIA...`), `\\n` / `\\t` (a JSON- or C-escaped line break in a logged string) or
    `\\u0022` / `\\x27` (a JSON- or C-escaped quote: `{\\u0022token\\u0022:\\u0022ghp_...`)."""
    if start >= 2 and text[start - 2] == "\\":
        return True
    if start >= 3 and text[start - 3] == "%" and text[start - 2] in _HEX_DIGITS and text[start - 1] in _HEX_DIGITS:
        return True
    if start >= 4 and text[start - 4] == "\\" and text[start - 3] == "x":
        return text[start - 2] in _HEX_DIGITS and text[start - 1] in _HEX_DIGITS
    return (
        start >= 6
        and text[start - 6] == "\\"
        and text[start - 5] in "uU"
        and all(c in _HEX_DIGITS for c in text[start - 4 : start])
    )


class _Compiled:
    __slots__ = (
        "caseless", "confirm", "guard", "is_ip", "label", "label_of", "priority", "regex", "regex_icase",
        "rule", "starts_of", "value_groups", "widen",
    )  # fmt: skip

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.regex = rule.compile()
        self.caseless = rule.caseless
        self.regex_icase = rule.compile(ignore_case=True) if rule.caseless else self.regex
        self.guard = guard_characters(rule.left_guard)
        self.confirm = rule.confirm
        self.label = rule.label
        self.label_of = rule.label_of
        self.widen = rule.widen
        self.starts_of = rule.starts_of
        self.priority = rule.priority
        self.is_ip = rule.label in ("IPV4", "IPV6")
        names = sorted((idx, name) for name, idx in self.regex.groupindex.items() if name.startswith("v"))
        self.value_groups = tuple(idx for idx, _ in names)


class Redactor:
    """Replaces every secret and piece of PII in a text by a typed placeholder such as `[REDACTED:EMAIL]`.

    `keep_card_last4` keeps the last four digits of payment cards (`[REDACTED:CREDIT_CARD:1111]`), off by
    default. `ip_allowlist` names addresses left as they are. `prefilter` picks the backend ("auto",
    "hyperscan", "re2", "keywords"); results are identical, only the speed differs.
    """

    def __init__(
        self,
        *,
        keep_card_last4: bool = False,
        ip_allowlist: Iterable[str] = DEFAULT_IP_ALLOWLIST,
        prefilter: str = "auto",
        rules: Sequence[Rule] = DEFAULT_RULES,
    ) -> None:
        self.keep_card_last4 = keep_card_last4
        self._ip_allowlist = frozenset(ip_allowlist)
        self._rules = tuple(rules)
        # Rules run highest priority first, which lets `_run` skip covered candidates. The prefilter keeps
        # the given order: Hyperscan built from the priority-sorted list scanned a clean line 0.03 us slower.
        by_priority = sorted(range(len(self._rules)), key=lambda i: -self._rules[i].priority)
        self._run_rank = [0] * len(self._rules)
        for rank, i in enumerate(by_priority):
            self._run_rank[i] = rank
        self._compiled = [_Compiled(r) for r in self._rules]
        self._prefilter: Prefilter = build_prefilter(self._rules, prefilter)
        self._pem_ids = frozenset(i for i, r in enumerate(self._rules) if "\n" in _multiline_marker(r))
        # label -> placeholder for the labels rendered without looking at the value (all but kept card digits)
        self._placeholders = {r.label: f"[REDACTED:{r.label}]" for r in self._rules}
        if keep_card_last4:
            self._placeholders.pop("CREDIT_CARD", None)

    @property
    def prefilter_name(self) -> str:
        return self._prefilter.name

    # -- public -------------------------------------------------------------------------------------------
    def redact(self, text: str) -> str:
        """`text` with every finding replaced; the same object when nothing was found."""
        if not text:
            return text
        if "\x1b" in text:  # coloured output: also read as a terminal shows it (_redact_spans)
            found_spans = ansi_spans(self, text)
            return render_spans(text, found_spans) if found_spans else text
        if "\n" in text and "," in text and (cells := csv_findings(text, self._find_direct)):
            return self._render(text, self._find_read(text) + cells)  # a CSV header, then its rows
        # `%20`, `+` in a query: also read decoded. A `+` alone (`+00:00`) is no query: not even a call
        if ("%" in text or ("+" in text and ("&" in text or "?" in text))) and (view := decoded_view(text)):
            found = find_with_view(text, view, self._find_direct)
            return self._render(text, found) if found else text
        ids, starts = self._prefilter.scan(text)
        if not ids:
            return text
        if len(text) > _LONG_TEXT_CHARS and "\n" in text:
            found = self._find_long(text, ids)
        else:
            found = self._find_short(text, ids, starts)
        if not found:
            return text
        if len(found) == 1:  # the common case: one finding, no merge
            start, end, _, label = found[0]
            placeholder = self._placeholders.get(label)
            if placeholder is None or "\n" in text:
                placeholder = self._placeholder(text, start, end, label)
            return text[:start] + placeholder + text[end:]
        return self._render(text, found)

    def find(self, text: str) -> list[Finding]:
        """The merged findings, in order, without rendering (for tests, audits and benchmarks)."""
        if not text:
            return []
        found = self._find_read(text)
        if "\n" in text and "," in text:
            found += csv_findings(text, self._find_direct)
        return self._merge(found)

    # -- internals ----------------------------------------------------------------------------------------
    def _find_read(self, text: str) -> _Found:
        """The findings of `text` as it is, and of its percent-decoded view when it has one."""
        if ("%" in text or ("+" in text and ("&" in text or "?" in text))) and (view := decoded_view(text)):
            return find_with_view(text, view, self._find_direct)
        return self._find_direct(text)

    def _find_direct(self, text: str) -> _Found:
        ids, starts = self._prefilter.scan(text)
        return self._find(text, ids, starts) if ids else []

    def _find(self, text: str, ids: list[int], starts: Starts | None) -> _Found:
        if len(text) > _LONG_TEXT_CHARS and "\n" in text:
            return self._find_long(text, ids)
        return self._find_short(text, ids, starts)

    def _find_short(self, text: str, ids: list[int], starts: Starts | None) -> _Found:
        out: _Found = []
        if len(ids) == 2:  # the common case on secret-dense lines; `sorted` with a key costs 0.2 us more
            rank = self._run_rank
            if rank[ids[0]] > rank[ids[1]]:
                ids = [ids[1], ids[0]]
        elif len(ids) > 2:
            ids = sorted(ids, key=self._run_rank.__getitem__)
        low: str | None = None
        lowered = False
        compiled = self._compiled
        for i in ids:
            c = compiled[i]
            if c.caseless and not lowered:
                low, lowered = _lower(text), True
            if c.starts_of is not None:
                # Candidates whose whole reach a finding of a higher priority covers are not even matched:
                # on secret-dense lines the random-token rule's runs are mostly provider tokens already
                # found (its gate fires on 55% of them and it found nothing there: 0.4 us a line)
                candidates = c.starts_of(text)
                if candidates:
                    if out:
                        prio = c.priority
                        rule_starts = [p for p, limit in candidates if not _covered(out, p, limit, prio)]
                    else:
                        rule_starts = [p for p, _ in candidates]
                    if rule_starts:
                        self._run(c, text, low, out, rule_starts)
                continue
            self._run(c, text, low, out, starts.get(i) if starts else None)
        return out

    def _find_long(self, text: str, ids: list[int]) -> _Found:
        # Only the PEM rule crosses lines; every other rule runs line by line, each line prefiltered
        # again, so a long text costs what its lines cost instead of (rules hit) x (text length).
        out: _Found = []
        for i in ids:
            if i in self._pem_ids:
                self._run(self._compiled[i], text, None, out, None)
        pos = 0
        n = len(text)
        while pos < n:
            nl = text.find("\n", pos)
            end = n if nl < 0 else nl + 1
            line = text[pos:end]
            line_ids, starts = self._prefilter.scan(line)
            line_ids = [i for i in line_ids if i not in self._pem_ids]
            if line_ids:
                found = self._find_short(line, line_ids, starts)
                out.extend((s + pos, e + pos, p, lab) for s, e, p, lab in found)
            pos = end
        return out

    def _run(self, c: _Compiled, text: str, low: str | None, out: _Found, starts: list[int] | None) -> None:
        regex, subject = c.regex, text
        if c.caseless:
            if low is not None:
                subject = low  # same offsets: `_lower` guarantees equal length
            else:
                regex = c.regex_icase
        # `starts` (ASCII text only) lists every offset where a match may begin: matching there, in order
        # and never inside the previous match, gives exactly what `finditer` gives, without scanning.
        matches: Iterable[re.Match[str]]
        if starts is None:
            matches = regex.finditer(subject)
        elif len(starts) == 1:  # the common case: one occurrence of the anchor
            first = regex.match(subject, starts[0])
            if first is None:
                return
            matches = (first,)
        else:
            matches = _matches_at(regex, subject, starts)
        guard = c.guard
        value_groups = c.value_groups
        widen = c.widen
        confirm = c.confirm
        priority = c.priority
        for m in matches:
            if guard:
                ms = m.start()
                if ms > 0 and text[ms - 1] in guard and not _after_escape(text, ms):
                    continue
            if value_groups:
                span = m.span()
                for g in value_groups:
                    if m.start(g) >= 0:
                        span = m.span(g)
                        break
                start, end = span
            else:
                start, end = span = m.span()
            if widen is not None:
                start, end = span = widen(text, m, span)
            if out and _covered(out, start, end, priority):
                continue
            label = c.label
            if confirm is not None:
                confirmed = confirm(text, m, span)
                if confirmed is None:
                    continue
                if len(confirmed) == 3:
                    start, end, label = confirmed
                else:
                    start, end = confirmed
            if start >= end:
                continue
            if c.label_of is not None:
                label = c.label_of(m)
            if c.is_ip and text[start:end] in self._ip_allowlist:
                continue
            out.append((start, end, priority, label))

    @staticmethod
    def _merge(found: list[tuple[int, int, int, str]]) -> list[Finding]:
        if not found:
            return []
        found.sort()
        merged: list[Finding] = []
        cur_s, cur_e, cur_p, cur_l = found[0]
        for s, e, p, lab in found[1:]:
            if s < cur_e:
                if e > cur_e:
                    cur_e = e
                if p > cur_p:
                    cur_p, cur_l = p, lab
            else:
                merged.append(Finding(cur_s, cur_e, cur_l))
                cur_s, cur_e, cur_p, cur_l = s, e, p, lab
        merged.append(Finding(cur_s, cur_e, cur_l))
        return merged

    def _render(self, text: str, found: _Found) -> str:
        parts: list[str] = []
        pos = 0
        for f in self._merge(found):
            parts.append(text[pos : f.start])
            parts.append(self._placeholder(text, f.start, f.end, f.label))
            pos = f.end
        parts.append(text[pos:])
        return "".join(parts)

    def _placeholder(self, text: str, start: int, end: int, label: str) -> str:
        if label == "CREDIT_CARD" and self.keep_card_last4:
            digits = [ch for ch in text[start:end] if ch.isdigit()]
            out = f"[REDACTED:CREDIT_CARD:{''.join(digits[-4:])}]"
        else:
            out = self._placeholders.get(label) or f"[REDACTED:{label}]"
        # One line out per line in: a multi-line secret (a PEM block) keeps its line breaks.
        newlines = text.count("\n", start, end)
        return out + "\n" * newlines if newlines else out


@functools.cache
def default_redactor() -> Redactor:
    """The shared default `Redactor`, built on first use (compiling the prefilter takes ~0.5 s)."""
    return Redactor()


def _covered(found: _Found, start: int, end: int, priority: int) -> bool:
    """`start:end` lies inside a finding of a strictly higher priority: merging would absorb it whole and
    keep that finding's label, so it need not be confirmed. (An equal priority could change the label.)"""
    for s, e, p, _ in found:  # noqa: SIM110 - a plain loop: `any(genexpr)` costs 0.2 us more a call
        if s <= start and end <= e and p > priority:
            return True
    return False


def _matches_at(regex: re.Pattern[str], subject: str, starts: list[int]) -> list[re.Match[str]]:
    """`regex.finditer(subject)` when every match starts at one of `starts`: anchored matches, in order."""
    if len(starts) > 1:
        starts = sorted(set(starts))
    out: list[re.Match[str]] = []
    match = regex.match
    last_end = 0
    for start in starts:
        if start < last_end:
            continue  # inside the previous match: `finditer` resumes after it
        m = match(subject, start)
        if m is not None:
            out.append(m)
            end = m.end()
            last_end = end if end > start else start + 1
    return out


def _lower(text: str) -> str | None:
    """`text.lower()` when it keeps every offset (always for ASCII), else None."""
    low = text.lower()
    return low if len(low) == len(text) else None


def _multiline_marker(rule: Rule) -> str:
    """'\\n' when the rule may match across lines (only the PEM block rule does)."""
    return "\n" if "[\\s\\S]" in rule.pattern else ""
