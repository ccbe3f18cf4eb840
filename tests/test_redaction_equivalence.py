"""The fast redaction path gives exactly what the straightforward one gives.

The engine takes shortcuts for speed: the Hyperscan prefilter runs only the rules that can match, anchored
rules are tried only at the offsets Hyperscan reports, rules run in priority order and a candidate inside a
finding of higher priority skips its confirm step, and the validators use C-level string operations. The
reference here takes none: every rule searches the whole text with `finditer`, every candidate is
confirmed, and the findings are merged as the engine documents (overlaps become one span labelled by the
highest priority, the first such in span order). Outputs must be byte-identical on both labelled corpora,
on hostile recombinations of their lines, and on generated text.

The validators are checked against their textbook forms (`ipaddress`, a digit loop for Luhn, `int(ch, 36)`
for mod-97, the entropy formula) on generated input.
"""

from __future__ import annotations

import ipaddress
import math
import random
import re
from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import redaction_corpus as corpus
import redaction_corpus_heldout as heldout
from cleanroom.scrubbers import _redact_validators as v
from cleanroom.scrubbers._redact_csv import csv_findings
from cleanroom.scrubbers._redact_engine import _after_escape, guard_characters
from cleanroom.scrubbers._redact_urlview import decoded_view, find_with_view
from cleanroom.scrubbers.log_rules import Rule
from cleanroom.scrubbers.logs import DEFAULT_IP_ALLOWLIST, DEFAULT_RULES, Redactor, default_redactor

_Found = list[tuple[int, int, int, str]]


class _Prepared(NamedTuple):
    """A rule's compiled forms, guard set and value groups: what `_reference_found` derives from the rule
    alone. Derived once per rule, not once per rule and line (972 000 `guard_characters` calls were half
    of this file's run time); nothing about the text is decided here."""

    regex: re.Pattern[str]
    groups: list[int]
    caseless_regex: re.Pattern[str] | None  # IGNORECASE, for text whose lowercase form has another length
    caseless_groups: list[int]
    guard: frozenset[str]


_PREPARED: dict[int, tuple[Rule, _Prepared]] = {}  # id(rule) -> (the rule, kept alive so the id stays its own)


def _value_groups(regex: re.Pattern[str]) -> list[int]:
    return sorted(idx for name, idx in regex.groupindex.items() if name.startswith("v"))


def _prepared(rule: Rule) -> _Prepared:
    entry = _PREPARED.get(id(rule))
    if entry is None or entry[0] is not rule:
        regex = rule.compile()
        caseless = rule.compile(ignore_case=True) if rule.caseless else None
        prepared = _Prepared(
            regex,
            _value_groups(regex),
            caseless,
            _value_groups(caseless) if caseless is not None else [],
            guard_characters(rule.left_guard),
        )
        entry = _PREPARED[id(rule)] = (rule, prepared)
    return entry[1]


def _reference_found(text: str, rules: Sequence[Rule]) -> _Found:
    """Every rule, whole text, every candidate confirmed: no prefilter, no anchors, no skipping."""
    out: _Found = []
    low = text.lower()
    for rule in rules:
        prepared = _prepared(rule)
        regex, value_groups, subject = prepared.regex, prepared.groups, text
        if rule.caseless:  # as the engine documents: lowercase text, or IGNORECASE where lowering moves offsets
            if len(low) == len(text):
                subject = low
            else:
                assert prepared.caseless_regex is not None
                regex, value_groups = prepared.caseless_regex, prepared.caseless_groups
        guard = prepared.guard
        for m in regex.finditer(subject):
            ms = m.start()
            if guard and ms > 0 and text[ms - 1] in guard and not _after_escape(text, ms):
                continue
            span = next((m.span(g) for g in value_groups if m.start(g) >= 0), m.span())
            if rule.widen is not None:
                span = rule.widen(text, m, span)
            start, end = span
            label = rule.label
            if rule.confirm is not None:
                confirmed = rule.confirm(text, m, span)
                if confirmed is None:
                    continue
                start, end = confirmed[0], confirmed[1]
                if len(confirmed) == 3:
                    label = confirmed[2]  # type: ignore[misc]
            if start >= end:
                continue
            if rule.label_of is not None:
                label = rule.label_of(m)
            if rule.label in ("IPV4", "IPV6") and text[start:end] in DEFAULT_IP_ALLOWLIST:
                continue
            out.append((start, end, rule.priority, label))
    return out


def _reference_read(text: str) -> _Found:
    """`_reference_found` on the text, on its percent-decoded view when it has one, and on a CSV header's
    cells: the engine's readings of `%XX`/`+` (_redact_urlview) and of CSV records (_redact_csv), shared,
    not shortcuts, so the reference reads the same views."""
    view = decoded_view(text)
    found = (
        _reference_found(text, DEFAULT_RULES)
        if view is None
        else find_with_view(text, view, lambda t: _reference_found(t, DEFAULT_RULES))
    )
    return found + csv_findings(text, lambda t: _reference_found(t, DEFAULT_RULES))


def _reference_merge(found: _Found) -> list[tuple[int, int, str]]:
    merged: list[tuple[int, int, str]] = []
    group: _Found = []
    for item in sorted(found):
        if group and item[0] >= max(e for _, e, _, _ in group):
            merged.append(_merged(group))
            group = []
        group.append(item)
    if group:
        merged.append(_merged(group))
    return merged


def _merged(group: _Found) -> tuple[int, int, str]:
    top = max(p for _, _, p, _ in group)
    label = next(lab for _, _, p, lab in group if p == top)
    return group[0][0], max(e for _, e, _, _ in group), label


def _reference_redact(text: str, merged: list[tuple[int, int, str]] | None = None) -> str:
    """`text` with the reference's merged findings replaced (`merged`: already computed for this text)."""
    if merged is None:
        merged = _reference_merge(_reference_read(text))
    parts, pos = [], 0
    for start, end, label in merged:
        parts += [text[pos:start], f"[REDACTED:{label}]" + "\n" * text.count("\n", start, end)]
        pos = end
    return "".join(parts) + text[pos:]


def _assert_same(lines: Sequence[str]) -> None:
    fast = default_redactor()
    for line in lines:
        expected = _reference_merge(_reference_read(line))  # once per line: find, then redact
        assert [(f.start, f.end, f.label) for f in fast.find(line)] == expected, line
        assert fast.redact(line) == _reference_redact(line, expected), line


def test_fast_path_equals_reference_on_the_corpus() -> None:
    _assert_same([s.line for s in corpus.generate(seed=3, per_type=60, per_negative=40)])


def test_fast_path_equals_reference_on_the_heldout_corpus() -> None:
    _assert_same([s.line for s in heldout.generate(seed=3, per_type=60, per_negative=40)])


def _recombined(seed: int, count: int) -> list[str]:
    """Lines cut and joined, case-changed, re-separated, with assignments around them: several secrets per
    line, covered and overlapping candidates, values cut short."""
    rng = random.Random(seed)
    lines = [s.line for s in corpus.generate(seed=seed, per_type=10, per_negative=8)]
    lines += [s.line for s in heldout.generate(seed=seed, per_type=10, per_negative=8)]
    out = []
    for _ in range(count):
        a, b = rng.choice(lines), rng.choice(lines)
        out.append(a[rng.randrange(len(a) + 1) :] + rng.choice(["", " ", "&", ";", "=", ":", '"', "\\n", ")"]) + b)
        out.append(rng.choice([str.upper, str.lower, str.swapcase])(a))
        out.append(a.replace(" ", rng.choice(["", "\t", ",", "&", "; "])))
        out.append("password=" + a + ' "secret": "' + b + '"')
        out.append("é " + a)  # not ASCII: no Hyperscan offsets, the engine searches
    return [line for line in out if len(line) <= 4096]  # longer texts are split into lines first


def test_fast_path_equals_reference_on_recombined_lines() -> None:
    _assert_same(_recombined(seed=17, count=300))


_FRAGMENTS = [
    s.line[a:b]
    for s in corpus.generate(seed=23, per_type=3, per_negative=2)
    + heldout.generate(seed=23, per_type=3, per_negative=2)
    for a, b, _ in s.positives + s.negatives
]
_GLUE = st.text(alphabet=" \t=:;,&\"'\\/@.-_()[]{}<>%+#~0123456789abcdefABCDEFxyzXYZuéü", max_size=8)
_KEYS = st.sampled_from(
    ["password=", "api_key: ", '"token": "', "secret_key=", "Authorization: Bearer ", "aws ", "--password ", "ssn "]
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(_FRAGMENTS), _GLUE, _KEYS), max_size=10))
def test_fast_path_equals_reference_on_generated_text(pieces: list[str]) -> None:
    _assert_same(["".join(pieces)])


# -- validators against their textbook forms --------------------------------------------------------------
@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="0123456789abcdefABCDEFg:.%", max_size=45))
def test_ipv6_ok_agrees_with_ipaddress(candidate: str) -> None:
    expected = "::" in candidate or candidate.count(":") >= 7
    expected = expected and any(c.isdigit() for c in candidate)
    if expected:
        try:
            ipaddress.IPv6Address(candidate.split("%", 1)[0])
        except ValueError:
            expected = False
    assert v.ipv6_ok(candidate) == expected


def _luhn_loop(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if d < 0 or d > 9:
            return False
        total += (d * 2 - 9 if d * 2 > 9 else d * 2) if i % 2 else d
    return total % 10 == 0


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="0123456789 x٣", max_size=22))
def test_luhn_agrees_with_the_digit_loop(digits: str) -> None:
    assert v.luhn_ok(digits) == _luhn_loop(digits)


def _iban_textbook(candidate: str) -> bool:
    iban = candidate.replace(" ", "")
    if v.IBAN_LENGTHS.get(iban[:2]) != len(iban) or not iban.isalnum():
        return False
    if not (iban[2:4].isascii() and iban[2:4].isdigit() and 2 <= int(iban[2:4]) <= 98):
        return False  # ISO 7064 MOD 97-10: the check digits are two digits, 02-98
    try:
        return int("".join(str(int(ch, 36)) for ch in iban[4:] + iban[:4])) % 97 == 1
    except ValueError:
        return False


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(sorted(v.IBAN_LENGTHS)), st.text(alphabet="0123456789ABCXYZabz é٣", max_size=34))
def test_iban_agrees_with_the_textbook_check(country: str, rest: str) -> None:
    assert v.iban_ok(country + rest) == _iban_textbook(country + rest)
    valid = "GB82 WEST 1234 5698 7654 32"
    assert v.iban_ok(valid) and _iban_textbook(valid)


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="abcdefghAB0123+/=-_~", max_size=120), st.sampled_from([3.0, 3.5, 4.0]))
def test_entropy_at_least_agrees_with_the_formula(value: str, bits: float) -> None:
    n = len(value)
    entropy = -sum(c / n * math.log2(c / n) for c in Counter(value).values()) if n else 0.0
    if abs(entropy - bits) > 1e-9:  # exactly at the threshold, summation order decides
        assert v.entropy_at_least(value, bits) == (entropy >= bits)


def test_a_covered_candidate_changes_nothing() -> None:
    """`HF_TOKEN: hf_...`: the assignment candidate lies inside the Hugging Face finding (priority 90 > 60)
    and is dropped unconfirmed; the output is the provider's placeholder either way."""
    line = "HF_TOKEN: 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 done"
    assert Redactor().redact(line) == _reference_redact(line) == "HF_TOKEN: [REDACTED:HUGGINGFACE_TOKEN] done"


_TOKEN = "Xk9fQ2mZ7pLw4RtV8nB3cY6hJ1sD5gK0aE2uW9qM"


def test_a_token_right_after_a_non_ascii_character_is_tried() -> None:
    """The random-token candidates ended a run of token characters only at an ASCII separator, so a run
    glued by `é` to a token (`…here_okéXk9f…`) hid the token behind it: it was never matched and leaked."""
    for line in (
        "naïve user_agent_string_value_for_testing_here_oké" + _TOKEN + " end",
        "x" * 40 + "é" + _TOKEN + " end",
        "x" * 600 + "\u4e2d" + _TOKEN,
        "echo " + _TOKEN + "é" + "y" * 40 + " ok",
    ):
        assert "[REDACTED:RANDOM_TOKEN]" in Redactor().redact(line), line
        _assert_same([line])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(["x" * 33, "é", "\u4e2d", " ", "-", "=", "+", _TOKEN, "a" * 520]), max_size=8))
def test_random_token_candidates_equal_finditer_on_mixed_scripts(pieces: list[str]) -> None:
    _assert_same(["".join(pieces)])
