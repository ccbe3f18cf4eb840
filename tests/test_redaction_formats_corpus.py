"""Recall and precision on the fourth corpus (tests/redaction_corpus_formats.py): real log formats (access
logs, structlog/pino/zap/logrus/Serilog/logstash JSON, RFC 5424 syslog, kubectl output, Postgres/MySQL logs,
CloudTrail/GCP audit JSON, curl -v, Python locals, Java exceptions, config dumps, CSV, nested quoting,
other languages). Same thresholds as the other corpora: every type at recall and precision >= 99.5%, every
look-alike kind surviving >= 99.5%. Run with `-s` to see the per-type table.
"""

# ruff: noqa: E501  (test data: long literal tokens and log lines)

from __future__ import annotations

import pytest

import redaction_corpus as corpus
import redaction_corpus_formats as formats
from cleanroom.scrubbers.logs import Redactor, default_redactor
from test_redaction_corpus import LABEL_TO_TYPE, _check, _finder

# Placeholder label -> this corpus's type, so a false finding is charged to the type its label claims.
FORMAT_LABELS = {
    **{label: "provider_token" for label in LABEL_TO_TYPE},
    "EMAIL": "email", "PHONE": "phone", "CREDIT_CARD": "credit_card", "SSN": "ssn", "IBAN": "iban", "IPV4": "ipv4",
    "IPV6": "ipv6", "PASSWORD": "password", "PRIVATE_KEY": "private_key", "JWT": "jwt",
    "BEARER_TOKEN": "authorization", "BASIC_AUTH": "authorization", "AUTHORIZATION": "authorization",
    "COOKIE": "cookie", "URL_SIGNATURE": "url_signature", "AZURE_SAS_TOKEN": "url_signature",
    "AWS_ACCESS_KEY_ID": "aws_key_id", "AWS_SECRET_ACCESS_KEY": "aws_secret", "SECRET": "secret",
    "API_KEY": "secret", "TOKEN": "secret", "GENERIC_SECRET": "secret", "RANDOM_TOKEN": "secret",
}  # fmt: skip


class _Labels(dict[str, str]):
    """Every label maps to a type (score() falls back to the label itself for a plain dict's misses)."""

    def __bool__(self) -> bool:
        return True

    def get(self, key: str, default: str | None = None) -> str:  # type: ignore[override]
        return FORMAT_LABELS.get(key, "provider_token")


TYPES = sorted(formats.all_types(formats.generate(seed=1, lines=5000)))
NEGATIVE_KINDS = sorted({kind for s in formats.generate(seed=1, lines=5000) for _, _, kind in s.negatives})


def score(seed: int, lines: int = 5000) -> corpus.Score:
    return corpus.score(_finder(default_redactor()), formats.generate(seed=seed, lines=lines), _Labels())


@pytest.mark.parametrize("seed", [4242, 90210])
def test_formats_recall_and_precision(seed: int) -> None:
    result = score(seed)
    print(f"\nformats redaction corpus seed={seed}: {sum(result.total.values())} positives\n{result.table()}")
    failures = _check(result, TYPES, NEGATIVE_KINDS, "formats corpus")
    assert not failures, (
        "\n".join(failures) + "\nmissed:\n" + "\n".join(result.missed_examples[:25])
        + "\nfalse:\n" + "\n".join(result.false_examples[:25])
    )  # fmt: skip


def test_formats_covers_every_format_and_type() -> None:
    rng_samples = formats.generate(seed=4242)
    assert len(rng_samples) == 5000
    assert {"password", "secret", "provider_token", "jwt", "aws_key_id", "aws_secret", "private_key", "cookie",
            "authorization", "url_signature", "email", "phone", "credit_card", "ssn", "iban", "ipv4",
            "ipv6"} <= formats.all_types(rng_samples)  # fmt: skip
    assert {"uuid", "git_sha", "trace_id", "span_id", "digest", "pod_name", "version", "date", "duration",
            "bytes", "path", "url", "luhn_invalid", "isbn", "fingerprint", "address", "account_id"} <= set(NEGATIVE_KINDS)  # fmt: skip


def test_formats_is_deterministic() -> None:
    a, b = formats.generate(seed=5, lines=400), formats.generate(seed=5, lines=400)
    assert [(s.line, s.positives, s.negatives) for s in a] == [(s.line, s.positives, s.negatives) for s in b]


def test_formats_labels_are_well_formed() -> None:
    corpus.check_labels(formats.generate(seed=11, lines=2000))


def test_formats_placeholders_leave_nothing() -> None:
    """No positive value survives in the output and every look-alike does, verbatim; lines stay lines."""
    corpus.check_redacted(formats.generate(seed=99, lines=1500), default_redactor().redact)


@pytest.mark.parametrize("backend", ["keywords", "re2"])
def test_formats_prefilter_backends_agree(backend: str) -> None:
    reference, other = default_redactor(), Redactor(prefilter=backend)
    for sample in formats.generate(seed=7, lines=1000):
        assert other.redact(sample.line) == reference.redact(sample.line), sample.line


# Leftovers pinned one by one: (line, what must go, what must stay)
PINNED = [
    # a 19-digit grouped number whose first 16 digits pass Luhn is not a card (the whole run is the number)
    ("ref 4539 1488 0343 6467 124 booked", [], ["4539 1488 0343 6467 124"]),
    ("ref 4539-1488-0343-6467-124 booked", [], ["4539-1488-0343-6467-124"]),
    # ...while a 16-digit card followed by a short separate number is still the card
    ("card 4539 1488 0343 6467 12 items", ["4539 1488 0343 6467"], []),
    # zero-padded dotted quads are IPv4 (inet_aton and many loggers print them; see docs/logging.md)
    ("client=010.001.002.003 refused", ["010.001.002.003"], []),
    ("release 1.02.3.04 built", [], ["1.02.3.04"]),  # mixed zero padding: a version
    # the new rules' look-alikes
    ("git clone ssh://git@github.com/acme/api.git", [], ["git@github.com"]),
    ("set token to expire in 3600s", [], ["expire"]),
    ("docker login -u ci --password-stdin registry.example.com", [], ["--password-stdin registry.example.com"]),
    ("ua=Mozilla/5.0 Chrome/120.0.0.0 Safari/537.36", [], ["Chrome/120.0.0.0"]),
    ('{"accountId":"005026290701"}', [], ["005026290701"]),
    ("mac 00:1a:2b:3c:4d:5e:6f:70:81 ok", [], ["00:1a:2b:3c:4d:5e:6f:70:81"]),
]


@pytest.mark.parametrize(("line", "gone", "kept"), PINNED)
def test_formats_pinned(line: str, gone: list[str], kept: list[str]) -> None:
    out = default_redactor().redact(line)
    for value in gone:
        assert value not in out, out
    for value in kept:
        assert value in out, out
