"""Recall and precision on the ninth corpus (tests/redaction_corpus_ninth.py): client-side, desktop, mobile
and data-export formats (HAR and devtools, Sentry/Datadog/Segment/Amplitude, logcat, iOS logs and crash
reports, Windows Event XML, PowerShell, registry dumps, PHP/Laravel/Django/Rails/Spring debug output,
OAuth/OIDC/SAML, SQL dumps, CSV/TSV, Markdown, YAML front matter, MQTT/IoT, Kafka/RabbitMQ, mail) and
values in unusual wrappings, separators, languages and cases. Same thresholds as the other corpora: every
type at recall and precision >= 99.5%, every look-alike kind surviving >= 99.5%. Run with `-s` to see the
per-type table.
"""

# ruff: noqa: E501  (pinned log lines)

from __future__ import annotations

import pytest

import redaction_corpus as corpus
import redaction_corpus_ninth as ninth
from cleanroom.scrubbers.logs import Redactor, default_redactor
from test_redaction_corpus import _finder
from test_redaction_eighth import _failures, _Labels

SEEDS = [9099, 4242]
LINES = 3000


@pytest.fixture(scope="module")
def samples() -> dict[int, list[corpus.Sample]]:
    return {seed: ninth.generate(seed=seed, lines=LINES) for seed in SEEDS}


@pytest.mark.parametrize("seed", SEEDS)
def test_ninth_recall_and_precision(seed: int, samples: dict[int, list[corpus.Sample]]) -> None:
    lines = samples[seed]
    result = corpus.score(_finder(default_redactor()), lines, _Labels())
    print(f"\nninth redaction corpus seed={seed}: {sum(result.total.values())} positives\n{result.table()}")
    failures = _failures(result, ninth.all_types(lines), ninth.negative_kinds(lines))
    assert not failures, (
        "\n".join(failures) + "\nmissed:\n" + "\n".join(result.missed_examples[:30])
        + "\nfalse:\n" + "\n".join(result.false_examples[:30])
    )  # fmt: skip


def test_ninth_covers_every_type_and_look_alike(samples: dict[int, list[corpus.Sample]]) -> None:
    lines = samples[SEEDS[0]]
    assert len(lines) == LINES
    assert {"email", "phone", "credit_card", "ssn", "iban", "ipv4", "ipv6", "password", "secret", "api_key",
            "authorization", "cookie", "jwt", "oauth_token", "oauth_code", "client_secret", "csrf_token",
            "password_hash", "fcm_token", "github_token", "stripe_key", "aws_key_id", "aws_secret",
            "openai_key"} <= ninth.all_types(lines)  # fmt: skip
    assert {"uuid", "guid", "sid", "filetime", "record_id", "sha1", "sha256", "md5", "dd_trace_id", "trace_id",
            "span_id", "event_id", "release_tag", "data_uri", "jwk_public", "x509_cert", "dkim", "saml_id",
            "digest_value", "client_id", "oauth_state", "build_fingerprint", "android_id", "imei",
            "memory_address", "order_no", "version", "timestamp", "luhn_invalid", "iban_invalid", "masked",
            "private_mask", "masked_pan", "mac", "product_id", "cve", "kb"} <= ninth.negative_kinds(lines)  # fmt: skip


def test_ninth_is_deterministic() -> None:
    a, b = ninth.generate(seed=3, lines=300), ninth.generate(seed=3, lines=300)
    assert [(s.line, s.positives, s.negatives) for s in a] == [(s.line, s.positives, s.negatives) for s in b]


def test_ninth_labels_are_well_formed(samples: dict[int, list[corpus.Sample]]) -> None:
    corpus.check_labels(samples[SEEDS[1]])


def test_ninth_placeholders_leave_nothing() -> None:
    """No positive value survives in the output and every look-alike does, verbatim; lines stay lines."""
    corpus.check_redacted(ninth.generate(seed=99, lines=600), default_redactor().redact)


@pytest.mark.parametrize("backend", ["keywords", "re2"])
def test_ninth_prefilter_backends_agree(backend: str) -> None:
    reference, other = default_redactor(), Redactor(prefilter=backend)
    for sample in ninth.generate(seed=19, lines=400):
        assert other.redact(sample.line) == reference.redact(sample.line), sample.line
