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
from typing import Any, Protocol

from cleanroom.scrubbers.log_rules import Rule


class Prefilter(Protocol):
    name: str

    def candidates(self, text: str) -> list[int]:
        """Indices of the rules that may match `text` (a superset of those that do)."""
        ...


def strip_lookarounds(pattern: str) -> str:
    """Remove `(?=…)`, `(?!…)`, `(?<=…)`, `(?<!…)` groups: the result matches a superset of `pattern`.

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
        out.append(ch)
        i += 1
    return "".join(out)


def _hs_pattern(rule: Rule) -> bytes:
    p = strip_lookarounds(rule.hint or rule.pattern).replace("(?P<", "(?<")
    # Hyperscan has no named groups: make every group non-capturing.
    p = re.sub(r"\(\?<[A-Za-z_][A-Za-z0-9_]*>", "(?:", p)
    return p.encode("ascii")


class HyperscanPrefilter:
    """All rules in one Hyperscan block-mode database; one scan per text."""

    name = "hyperscan"

    def __init__(self, rules: Sequence[Rule]) -> None:
        import hyperscan

        self._hs: Any = hyperscan
        expressions, flags = [], []
        for rule in rules:
            expr = _hs_pattern(rule)
            base = hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_DOTALL
            if rule.caseless:
                base |= hyperscan.HS_FLAG_CASELESS
            try:  # exact mode when Hyperscan supports the pattern, else its documented prefilter mode
                probe = hyperscan.Database()
                probe.compile(expressions=[expr], ids=[0], elements=1, flags=[base])
            except hyperscan.error:
                base |= hyperscan.HS_FLAG_PREFILTER
            expressions.append(expr)
            flags.append(base)
        self._db = hyperscan.Database()
        self._db.compile(expressions=expressions, ids=list(range(len(rules))), elements=len(rules), flags=flags)
        self._local = threading.local()  # scratch space is per thread (Hyperscan requirement)

    def _state(self) -> tuple[Any, list[int]]:
        state = getattr(self._local, "state", None)
        if state is None:
            hits: list[int] = []
            state = (self._hs.Scratch(self._db), hits)
            self._local.state = state
        return state

    def candidates(self, text: str) -> list[int]:
        scratch, hits = self._state()
        hits.clear()
        self._db.scan(
            text.encode("utf-8", "surrogatepass"),
            match_event_handler=_collect,
            context=hits,
            scratch=scratch,
        )
        return list(hits)


def _collect(rule_id: int, start: int, end: int, flags: int, hits: object) -> None:
    hits.append(rule_id)  # type: ignore[attr-defined]


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
