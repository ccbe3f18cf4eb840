"""Redaction on hostile and unusual input: bounded time for every rule, near misses left alone, and the
Hyperscan-anchored engine giving exactly what a plain `re` search gives.

Time bounds are generous (the box running the suite may be loaded): they catch catastrophic (exponential)
or per-occurrence-quadratic backtracking, which costs seconds to hours on these sizes, not jitter.
"""

from __future__ import annotations

import random
import time

import pytest

import redaction_corpus as corpus
from cleanroom.scrubbers.logs import DEFAULT_RULES, Redactor, default_redactor

ADVERSARIAL_CHARS = 50_000
# Measured worst case, one rule on 50 kB: ~35 ms (ipv6 on `a:a:a:`, loaded 2-core box).
PER_RULE_LIMIT_S = 2.0
# Measured worst case, `redact` on a 1 MB line: ~0.6 s.
ONE_MB_LIMIT_S = 15.0


def _adversarial(n: int) -> dict[str, str]:
    """Runs that sit just inside a rule's character classes, repeated prefixes, separators with no value."""
    units = {
        "a": "a", "-": "-", "A1": "A1", "=": "=", "digits": "1", "digit-dash": "1-", "digit-space": "1 ",
        "hex-colon": "a:", "colons": ":", "at": "a@", "at-dot": "@a.", "base64": "Ab+/", "spaces": " ",
        "key=": "key=", "password:": "password: ", "jwt-dots": "eyJ.", "jwt-segments": "eyJaaaaaaaaa.",
        "sk-": "sk-", "xoxb-": "xoxb-", "aws": "aws ", "q~": "aaa1Q~", "--": "--a-", "url-userinfo": "://a:",
        "authorization": "authorization: ", "bearer": "bearer ", "+1": "+1 ", "(0)": "+44(0)",
        "iban-groups": "GB82 ", "ipv4-dots": "1.2.3.", "zone": "::%", "sig=": "&sig=", "amp-keys": "&a=",
        "escaped-quotes": '\\"', "dots": "a.", "secret-key": "secret_key=", "cookie": "cookie: a=b; ",
    }  # fmt: skip
    out = {name: (unit * (n // len(unit) + 1))[:n] for name, unit in units.items()}
    out["aws+base64"] = "aws" + "A" * n
    out["pem-no-end"] = "-----BEGIN RSA PRIVATE KEY-----" + "A" * n
    out["glpat-run"] = "glpat-" + "a" * n
    return out


@pytest.mark.parametrize("rule", DEFAULT_RULES, ids=lambda r: r.name)
def test_every_rule_is_bounded_on_adversarial_runs(rule: object) -> None:
    """Each rule's own regex, searched over the whole text (the path with no prefilter), on 50 kB runs."""
    compiled = rule.compile()  # type: ignore[attr-defined]
    for name, text in _adversarial(ADVERSARIAL_CHARS).items():
        subject = text.lower() if rule.caseless else text  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        for _ in compiled.finditer(subject):
            pass
        elapsed = time.perf_counter() - t0
        assert elapsed < PER_RULE_LIMIT_S, f"{rule.name} on {name!r}: {elapsed:.2f} s"  # type: ignore[attr-defined]


def _pattern_units(pattern: str, flags: int) -> list[str]:
    """Runs built from a rule's own pattern: its literal pieces, each followed by members of the classes the
    pattern uses, and those members alone. Hand-picked units (above) miss what a new rule's structure
    invites: a run of `001001...` made the international phone rule split every digit run every way it
    could (`(?:\\(?\\d{1,5}\\)?){2,6}(?!\\d)`), 0.6 ms per character: a 10 kB log line stalled the server 6 s."""
    from re import _constants as c  # the stdlib's own parser of `re` patterns (sre_parse, undeprecated)
    from re import _parser as sre_parse

    literals: list[str] = []
    members: set[str] = set()

    def walk(items: object) -> None:
        run = ""
        for op, arg in items:  # type: ignore[attr-defined]
            if op is c.LITERAL:
                run += chr(arg)
                continue
            if run.strip():
                literals.append(run)
            run = ""
            if op is c.IN:
                for kind, value in arg:
                    if kind is c.LITERAL:
                        members.add(chr(value))
                    elif kind is c.RANGE:
                        members.update((chr(value[0]), chr(value[1])))
                    elif kind is c.CATEGORY:
                        members.update(("a", "0", "1", " "))
            elif op in (c.MAX_REPEAT, c.MIN_REPEAT, c.POSSESSIVE_REPEAT):
                walk(arg[2])
            elif op in (c.SUBPATTERN, c.ATOMIC_GROUP):
                walk(arg[-1])
            elif op is c.BRANCH:
                for branch in arg[1]:
                    walk(branch)
        if run.strip():
            literals.append(run)

    walk(sre_parse.parse(pattern, flags))
    chars = sorted(members)[:16]
    units = {ch + tail for ch in chars for tail in ("", "0", "00", " ")}
    units |= {lit + ch for lit in sorted(set(literals))[:6] for ch in chars[:6]}
    units |= {lit + "0" + "0" * (i % 2) + "1" for i, lit in enumerate(sorted(set(literals))[:6])}
    return sorted(units)


@pytest.mark.parametrize("rule", DEFAULT_RULES, ids=lambda r: r.name)
def test_every_rule_is_bounded_on_runs_of_its_own_pieces(rule: object) -> None:
    """Each rule's regex on 4 kB runs of its own literals and class members (and `001`-style digit runs,
    the shape that broke the phone rule): no input may cost more than linear time with a small constant."""
    import re

    compiled = rule.compile()  # type: ignore[attr-defined]
    units = _pattern_units(compiled.pattern, re.IGNORECASE if rule.caseless else 0)  # type: ignore[attr-defined]
    for unit in [*units, "001", "0011", "1000", "009", "+1001"]:
        text = (unit * (4000 // len(unit) + 1))[:4000]
        t0 = time.perf_counter()
        for _ in compiled.finditer(text.lower() if rule.caseless else text):  # type: ignore[attr-defined]
            pass
        elapsed = time.perf_counter() - t0
        assert elapsed < 0.5, f"{rule.name} on runs of {unit!r}: {elapsed:.2f} s for 4 kB"  # type: ignore[attr-defined]


def test_digit_runs_through_the_whole_redactor_are_bounded() -> None:
    """A log line an attacker controls (a URL path in the access log): 100 kB of `001001...` and friends."""
    redactor = default_redactor()
    for unit in ("001", "0010", "1000", "+1001", "00 1", "%2b1" + "001" * 15, "+1 " + "001" * 15):
        line = (unit * (100_000 // len(unit) + 1))[:100_000]
        t0 = time.perf_counter()
        redactor.redact(line)
        elapsed = time.perf_counter() - t0
        assert elapsed < 5.0, f"redact on 100 kB of {unit!r}: {elapsed:.2f} s"


@pytest.mark.parametrize(
    "line",
    [
        "a" * 1_000_000,
        "sk-" * 333_334,
        ("password=" + "x" * 60 + " ") * 14_000,
        "1 " * 500_000,
        "user@" * 200_000,
        "2025-05-01T12:00:00Z " * 47_620,
    ],
    ids=["letters", "sk-prefixes", "assignments", "digit-runs", "at-signs", "timestamps"],
)
def test_one_megabyte_line_is_bounded(line: str) -> None:
    redactor = default_redactor()
    t0 = time.perf_counter()
    out = redactor.redact(line)
    elapsed = time.perf_counter() - t0
    assert elapsed < ONE_MB_LIMIT_S, f"{elapsed:.2f} s"
    assert out.count("\n") == line.count("\n")


def test_secret_at_the_end_of_a_one_megabyte_line_is_caught() -> None:
    token = "ghp_" + "A1b2C3d4E5" * 3 + "f6G7h8"
    line = "x " * 500_000 + "token " + token
    out = default_redactor().redact(line)
    assert token not in out and out.endswith("[REDACTED:GITHUB_TOKEN]")


def test_long_unquoted_value_is_redacted_whole() -> None:
    """An unquoted value longer than 512 characters is redacted whole, not cut after 512."""
    value = "S3cr3t" * 200
    assert default_redactor().redact(f"password={value} next") == "password=[REDACTED:PASSWORD] next"


NEAR_MISSES = [
    "ghp_" + "a1B2" * 8 + "c3D",  # 35 characters after the prefix (needs 36)
    "AKIA" + "ABCDEFGHIJ12345",  # 15 after AKIA (needs 16)
    "sk-short1234",
    "hf_" + "abc" * 9,  # too short, one case
    "npm_" + "a1" * 17 + "b",  # 35
    "4111 1111 1111 1112",  # Luhn-invalid
    "GB82 WEST 1234 5698 7654 33",  # mod-97 invalid
    "000-12-3456",  # SSN area 000
    "999.10.10.10",  # octet > 255
    "commit 3f786850e387550fdab836ed7e6dc881de23001b",
    "request_id=9f1c2b7e-4a1d-4c2e-9b3a-1f2e3d4c5b6a",
    "sha256=" + "ab12" * 16,
    "version 10.2.3.4 released",
    "icon@2x.png",
    "git@github.com:org/repo.git",
    "std::vector<int> and a::b::c",
    "password=***",
    "token=${API_TOKEN}",
    "bypass=yes compass:north",
    "https://example.com/path?q=1",
    "--pass-through --password-file=",
]


@pytest.mark.parametrize("line", NEAR_MISSES)
def test_near_misses_survive(line: str) -> None:
    assert default_redactor().redact(line) == line


def test_line_of_near_misses_only_survives() -> None:
    line = " ".join(NEAR_MISSES * 20)
    assert default_redactor().redact(line) == line


def _hostile_lines(seed: int, count: int) -> list[str]:
    """Corpus lines cut, joined, case-changed and re-separated: secrets next to each other, overlapping
    keywords, values cut short, several assignments per line."""
    rng = random.Random(seed)
    lines = [s.line for s in corpus.generate(seed=seed, per_type=15, per_negative=10)]
    out = []
    for _ in range(count):
        a, b, c = rng.choice(lines), rng.choice(lines), rng.choice(lines)
        joined = a[rng.randrange(len(a) + 1) :] + rng.choice(["", " ", "&", ";", "=", ":", '"', "\\n"]) + b
        out.append(joined + " " + c[: rng.randrange(len(c) + 1)])
        out.append(rng.choice([str.upper, str.lower, str.swapcase])(a))
        out.append(a.replace(" ", rng.choice(["", "\t", ",", "&", "; "])))
        out.append("password=" + a + " secret: " + b)
    return out


def test_anchored_engine_matches_a_plain_search() -> None:
    """Hyperscan start offsets (SOM) make the engine try `re.match` only where a match may begin; the
    Aho-Corasick backend searches whole lines with `re`. Their outputs must be identical."""
    anchored = default_redactor()
    assert anchored.prefilter_name == "hyperscan"
    searched = Redactor(prefilter="keywords")
    for line in _hostile_lines(seed=11, count=600):
        assert anchored.redact(line) == searched.redact(line), line
    assert anchored.redact("é password=hunter2") == "é password=[REDACTED:PASSWORD]"  # non-ASCII: search
