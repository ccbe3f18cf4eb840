"""Prefilters: decide, in one cheap pass, which rules can possibly match a text.

Running every rule on every line costs three orders of magnitude more than running only the rules whose
prefilter fired. Three interchangeable backends, fastest first (measured in benchmarks/redaction):
- `HyperscanPrefilter`: every rule's pattern (lookarounds stripped, so it matches a superset) in one
  Hyperscan database, scanned once per text with SINGLEMATCH; clean lines produce no callback at all.
- `Re2SetPrefilter`: the same patterns in one RE2 `Set`.
- `KeywordPrefilter`: Aho-Corasick (pyahocorasick) over each rule's lowercase keywords; rules without a
  keyword (PII) always run. Pure fallback: `str.find` per keyword when pyahocorasick is absent.
Every backend may over-report (the rule's own `re` decides) but must never under-report.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cleanroom.scrubbers import _redact_hs_cache as _hs_cache
from cleanroom.scrubbers.log_rules import Rule

# Rule index -> offsets where its matches may start (a superset), for rules with an `anchor`.
Starts = dict[int, list[int]]


class Prefilter(Protocol):
    name: str

    def candidates(self, text: str) -> list[int]:
        """Indices of the rules that may match `text` (a superset of those that do)."""
        ...

    def scan(self, text: str) -> tuple[list[int], Starts | None]:
        """`candidates(text)` and, where the backend knows them, the start offsets of anchored rules.

        A rule index missing from the starts (or None) means: search the whole text with `re`."""
        ...


def strip_lookarounds(pattern: str) -> str:
    """Remove `(?=…)`, `(?!…)`, `(?<=…)`, `(?<!…)` groups and possessive marks: a superset of `pattern`.

    RE2 and Hyperscan reject lookarounds; as prefilter patterns a superset is exactly what is needed.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if ch == "[":  # copy a character class verbatim (it may contain '(')
            j = i + 1
            if j < n and pattern[j] == "^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            out.append(pattern[i : j + 1])
            i = j + 1
            continue
        if pattern.startswith(("(?=", "(?!", "(?<=", "(?<!"), i):
            depth, j = 0, i
            while j < n:
                c = pattern[j]
                if c == "\\":
                    j += 2
                    continue
                if c == "[":
                    j += 1
                    while j < n and pattern[j] != "]":
                        j += 2 if pattern[j] == "\\" else 1
                elif c == "(":
                    depth += 1
                elif c == ")":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            i = j + 1
            continue
        if ch == "+" and out and out[-1] in ("}", "+", "*", "?"):
            i += 1  # possessive `x{m,n}+`: RE2 and Hyperscan lack it; the greedy form matches a superset
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _hs_pattern(rule: Rule) -> bytes:
    return _hs_expression(strip_lookarounds(rule.hint or rule.pattern))


def _hs_expression(pattern: str) -> bytes:
    # Hyperscan has no named groups: make every group non-capturing.
    p = re.sub(r"\(\?P?<[A-Za-z_][A-Za-z0-9_]*>", "(?:", pattern)
    # It scans UTF-8 bytes: a non-ASCII character becomes its byte sequence, grouped so that a quantifier
    # after it applies to all of it. Exact for literals and alternations; inside a class it would not be.
    return "".join(ch if ch.isascii() else _utf8_alternatives(ch) for ch in p).encode("ascii")


def _utf8_alternatives(ch: str) -> str:
    """`ch` and its other case as UTF-8 byte escapes: Hyperscan's caseless flag folds ASCII only, and a
    prefilter may match a superset (`ПАРОЛЬ=` must reach the caseless `пароль` rule)."""
    forms = dict.fromkeys(f for f in (ch, ch.lower(), ch.upper()) if len(f) == 1)
    return "(?:" + "|".join("".join(f"\\x{b:02x}" for b in f.encode()) for f in forms) + ")"


def _hs_compiles(hyperscan: Any, expr: bytes, flags: int) -> bool:
    try:
        hyperscan.Database().compile(expressions=[expr], ids=[0], elements=1, flags=[flags])
    except hyperscan.error:
        return False
    return True


class HyperscanPrefilter:
    """All rules in one Hyperscan block-mode database; one scan per text.

    Most rules are SINGLEMATCH (one callback at most, none on a clean line). A rule with an `anchor` also
    gets its match starts (SOM_LEFTMOST, every occurrence): when the anchor is the rule's gate itself (the
    assignment rule), from the same scan; otherwise from a second, anchors-only database scanned only when
    such a rule fired. Offsets are UTF-8 byte offsets, so starts are given for ASCII text only.
    """

    name = "hyperscan"

    def __init__(self, rules: Sequence[Rule]) -> None:
        import hyperscan

        self._hs: Any = hyperscan
        compiled = _cached_databases(hyperscan, rules)
        self._db, self._anchor_db = compiled.db, compiled.anchor_db
        self._som_in_main = frozenset(compiled.som_in_main)
        self._second = frozenset(compiled.anchor_ids)
        # Scratch space is per thread (a Hyperscan requirement): a `threading.local` subclass builds it
        # on a thread's first touch, so each scan reads one attribute instead of a getattr with a default
        self._local = _Scratches(hyperscan, self._db, self._anchor_db)

    def candidates(self, text: str) -> list[int]:
        return self.scan(text)[0]

    def scan(self, text: str) -> tuple[list[int], Starts | None]:
        hits: list[tuple[int, int]] = []
        data = text.encode("utf-8", "surrogatepass")
        self._db.scan(data, _collect, 0, hits, self._local.scratch)
        if not hits:
            return [], None
        som = self._som_in_main
        if len(hits) == 1:
            rule_id, start = hits[0]
            if rule_id not in som:
                ids = [rule_id]
                return ids, None if rule_id not in self._second else self._anchor_starts(text, data, ids, {})
        ids = []
        starts: Starts = {}
        for rule_id, start in hits:
            if rule_id in som:
                seen = starts.get(rule_id)
                if seen is None:
                    starts[rule_id] = [start]
                    ids.append(rule_id)
                else:
                    seen.append(start)
            else:
                ids.append(rule_id)
        if not self._second.isdisjoint(ids):
            return ids, self._anchor_starts(text, data, ids, starts)
        return ids, starts if len(data) == len(text) else None

    def _anchor_starts(self, text: str, data: bytes, ids: list[int], starts: Starts) -> Starts | None:
        if len(data) != len(text):  # not ASCII: byte offsets are not string offsets
            return None
        hits: list[tuple[int, int]] = []
        self._anchor_db.scan(data, _collect, 0, hits, self._local.anchor_scratch)
        wanted = self._second.intersection(ids)
        for rule_id, start in hits:
            if rule_id in wanted:
                starts.setdefault(rule_id, []).append(start)
        for rule_id in wanted:  # fired in the gate but not in the anchor DB: cannot happen; search then
            if rule_id not in starts:
                return None
        return starts


@dataclass(frozen=True)
class _Databases:
    db: Any
    anchor_db: Any
    som_in_main: list[int]  # rules whose gate is their anchor: match starts come from the main scan
    anchor_ids: list[int]  # rules whose anchors live in the second database


def _cached_databases(hyperscan: Any, rules: Sequence[Rule]) -> _Databases:
    """The compiled databases from the per-user cache (`_redact_hs_cache`), else compiled and cached."""
    inputs = [[_hs_pattern(r).decode("ascii"), r.caseless, r.anchor] for r in rules]
    key = _hs_cache.cache_key(str(getattr(hyperscan, "__version__", "?")), inputs)
    entry = _hs_cache.load(key)
    if entry is not None:
        try:
            db = hyperscan.loadb(entry["db"], hyperscan.HS_MODE_BLOCK)
            anchor_db = None
            if entry["anchor_db"] is not None:
                anchor_db = hyperscan.loadb(entry["anchor_db"], hyperscan.HS_MODE_BLOCK)
            som, anchors = [int(i) for i in entry["som_in_main"]], [int(i) for i in entry["anchor_ids"]]
            if all(0 <= i < len(rules) for i in (*som, *anchors)) and (anchor_db is None) == (not anchors):
                return _Databases(db, anchor_db, som, anchors)
        except (hyperscan.error, TypeError, ValueError):
            pass  # another build's or a damaged database: compile afresh
    compiled = _compile_databases(hyperscan, rules)
    _hs_cache.store(
        key,
        db=hyperscan.dumpb(compiled.db),
        anchor_db=None if compiled.anchor_db is None else hyperscan.dumpb(compiled.anchor_db),
        som_in_main=compiled.som_in_main,
        anchor_ids=compiled.anchor_ids,
    )
    return compiled


def _compile_databases(hyperscan: Any, rules: Sequence[Rule]) -> _Databases:
    expressions, flags = [], []
    som_in_main: list[int] = []
    anchor_exprs: list[bytes] = []
    anchor_flags: list[int] = []
    anchor_ids: list[int] = []
    for i, rule in enumerate(rules):
        expr = _hs_pattern(rule)
        common = hyperscan.HS_FLAG_DOTALL | (hyperscan.HS_FLAG_CASELESS if rule.caseless else 0)
        som = common | hyperscan.HS_FLAG_SOM_LEFTMOST
        if rule.anchor is not None:
            anchor = _hs_expression(rule.anchor)
            if anchor == expr and _hs_compiles(hyperscan, anchor, som):
                expressions.append(anchor)
                flags.append(som)
                som_in_main.append(i)
                continue
            if _hs_compiles(hyperscan, anchor, som):
                anchor_exprs.append(anchor)
                anchor_flags.append(som)
                anchor_ids.append(i)
        base = common | hyperscan.HS_FLAG_SINGLEMATCH
        if not _hs_compiles(hyperscan, expr, base):
            base |= hyperscan.HS_FLAG_PREFILTER  # Hyperscan's documented superset mode
        expressions.append(expr)
        flags.append(base)
    db = hyperscan.Database()
    db.compile(expressions=expressions, ids=list(range(len(rules))), elements=len(rules), flags=flags)
    anchor_db = None
    if anchor_ids:
        anchor_db = hyperscan.Database()
        anchor_db.compile(expressions=anchor_exprs, ids=anchor_ids, elements=len(anchor_ids), flags=anchor_flags)
    return _Databases(db, anchor_db, som_in_main, anchor_ids)


class _Scratches(threading.local):
    """One thread's Hyperscan scratch space for the main and the anchors database."""

    def __init__(self, hyperscan: Any, db: Any, anchor_db: Any) -> None:
        self.scratch = hyperscan.Scratch(db)
        self.anchor_scratch = hyperscan.Scratch(anchor_db) if anchor_db is not None else None


def _collect(rule_id: int, start: int, end: int, flags: int, hits: object) -> None:
    hits.append((rule_id, start))  # type: ignore[attr-defined]


class Re2SetPrefilter:
    """All rules in one RE2 Set (used for comparison; slower than Hyperscan per call)."""

    name = "re2"

    def __init__(self, rules: Sequence[Rule]) -> None:
        import re2

        self._sets: list[Any] = []
        for caseless in (False, True):
            opts = re2.Options()
            opts.case_sensitive = not caseless
            opts.dot_nl = True
            s = re2.Set.SearchSet(opts)
            idx: list[int] = []
            for i, rule in enumerate(rules):
                if rule.caseless == caseless:
                    s.Add(strip_lookarounds(rule.hint or rule.pattern))
                    idx.append(i)
            s.Compile()
            self._sets.append((s, idx))

    def scan(self, text: str) -> tuple[list[int], Starts | None]:
        return self.candidates(text), None

    def candidates(self, text: str) -> list[int]:
        out: list[int] = []
        for s, idx in self._sets:
            out.extend(idx[k] for k in s.Match(text) or ())
        return out


class KeywordPrefilter:
    """Aho-Corasick over lowercase keywords; keywordless rules always run."""

    name = "keywords"

    def __init__(self, rules: Sequence[Rule]) -> None:
        self._always = [i for i, r in enumerate(rules) if not r.keywords]
        by_keyword: dict[str, list[int]] = {}
        for i, rule in enumerate(rules):
            for kw in rule.keywords:
                by_keyword.setdefault(kw, []).append(i)
        self._by_keyword = by_keyword
        self._automaton: Any = None
        try:
            import ahocorasick
        except ImportError:  # pragma: no cover - exercised when the optional wheel is missing
            return
        automaton = ahocorasick.Automaton()
        for kw, ids in by_keyword.items():
            automaton.add_word(kw, tuple(ids))
        automaton.make_automaton()
        self._automaton = automaton

    def scan(self, text: str) -> tuple[list[int], Starts | None]:
        return self.candidates(text), None

    def candidates(self, text: str) -> list[int]:
        low = text.lower()
        found = set(self._always)
        if self._automaton is not None:
            for _, ids in self._automaton.iter(low):
                found.update(ids)
        else:
            for kw, ids in self._by_keyword.items():
                if kw in low:
                    found.update(ids)
        return sorted(found)


def build_prefilter(rules: Sequence[Rule], backend: str = "auto") -> Prefilter:
    """`auto` picks Hyperscan when its wheel is installed, else the keyword prefilter."""
    if backend in ("auto", "hyperscan"):
        try:
            return HyperscanPrefilter(rules)
        except ImportError:
            if backend == "hyperscan":
                raise
    if backend == "re2":
        return Re2SetPrefilter(rules)
    if backend in ("auto", "keywords"):
        return KeywordPrefilter(rules)
    raise ValueError(f"unknown prefilter backend {backend!r}")
