"""Recall and precision on the sixth corpus (tests/redaction_corpus_sixth.py): infrastructure and runtime
formats (Terraform, Ansible/Chef, Helm, `kubectl get secret -o yaml`, kubeconfig, CI logs, cloud CLIs, shell
history, Go/Rust/Python dumps, gRPC metadata, DSNs and JDBC/Mongo/Redis/AMQP URLs, Kafka JAAS, rc files,
OpenSSH/PGP/PKCS#8 keys). Same thresholds as the other corpora: every type at recall and precision >= 99.5%,
every look-alike kind surviving >= 99.5%. Run with `-s` to see the per-type table.
"""

from __future__ import annotations

import pytest

import redaction_corpus as corpus
import redaction_corpus_sixth as sixth
from cleanroom.scrubbers.logs import Redactor, default_redactor
from test_redaction_corpus import _check, _finder

# Placeholder label -> this corpus's type, so a false finding is charged to the type its label claims;
# a label not listed here is charged to `secret`.
SIXTH_LABELS = {
    "EMAIL": "email", "PHONE": "phone", "CREDIT_CARD": "credit_card", "SSN": "ssn", "IBAN": "iban", "IPV4": "ipv4",
    "IPV6": "ipv6", "PASSWORD": "password", "PRIVATE_KEY": "private_key", "JWT": "jwt",
    "BEARER_TOKEN": "authorization", "BASIC_AUTH": "authorization", "AUTHORIZATION": "authorization",
    "AWS_ACCESS_KEY_ID": "aws_key_id", "AWS_SECRET_ACCESS_KEY": "aws_secret", "GCP_API_KEY": "gcp_api_key",
    "GITHUB_TOKEN": "github_token", "GITLAB_TOKEN": "gitlab_token", "SLACK_TOKEN": "slack_token",
    "SLACK_WEBHOOK": "slack_webhook", "STRIPE_KEY": "stripe_key", "OPENAI_API_KEY": "openai_key",
    "ANTHROPIC_API_KEY": "anthropic_key", "HUGGINGFACE_TOKEN": "huggingface_token", "NPM_TOKEN": "npm_token",
    "SENDGRID_API_KEY": "sendgrid_key", "CLEANROOM_API_KEY": "cr_key", "AZURE_STORAGE_KEY": "azure_storage_key",
    "AZURE_SHARED_ACCESS_KEY": "azure_conn_key",
}  # fmt: skip


class _Labels(dict[str, str]):
    def __bool__(self) -> bool:
        return True

    def get(self, key: str, default: str | None = None) -> str:  # type: ignore[override]
        return SIXTH_LABELS.get(key, "secret")


SEEDS = [6066, 515151]
LINES = 3000


@pytest.fixture(scope="module")
def samples() -> dict[int, list[corpus.Sample]]:
    return {seed: sixth.generate(seed=seed, lines=LINES) for seed in SEEDS}


@pytest.mark.parametrize("seed", SEEDS)
def test_sixth_recall_and_precision(seed: int, samples: dict[int, list[corpus.Sample]]) -> None:
    lines = samples[seed]
    result = corpus.score(_finder(default_redactor()), lines, _Labels())
    print(f"\nsixth redaction corpus seed={seed}: {sum(result.total.values())} positives\n{result.table()}")
    failures = _check(result, sorted(sixth.all_types(lines)), sorted(sixth.negative_kinds(lines)), "sixth corpus")
    assert not failures, (
        "\n".join(failures) + "\nmissed:\n" + "\n".join(result.missed_examples[:30])
        + "\nfalse:\n" + "\n".join(result.false_examples[:30])
    )  # fmt: skip


def test_sixth_covers_every_type_and_look_alike(samples: dict[int, list[corpus.Sample]]) -> None:
    lines = samples[SEEDS[0]]
    assert len(lines) == LINES
    assert {"aws_key_id", "aws_secret", "gcp_api_key", "azure_storage_key", "azure_conn_key", "github_token",
            "github_fine", "gitlab_token", "slack_token", "slack_webhook", "stripe_key", "openai_key",
            "anthropic_key", "huggingface_token", "npm_token", "sendgrid_key", "jwt", "private_key", "url_password",
            "password", "secret", "authorization", "cr_key", "email", "phone", "credit_card", "ssn", "iban", "ipv4",
            "ipv6"} <= sixth.all_types(lines)  # fmt: skip
    assert {"sha1", "sha256", "sha512", "sri", "uuid", "ulid", "digest", "git_sha", "version", "date", "epoch_ms",
            "luhn_invalid", "isbn", "order", "mac", "resource_version", "trace_id", "span_id", "path", "url",
            "b64_text"} <= sixth.negative_kinds(lines)  # fmt: skip


def test_sixth_is_deterministic() -> None:
    a, b = sixth.generate(seed=3, lines=300), sixth.generate(seed=3, lines=300)
    assert [(s.line, s.positives, s.negatives) for s in a] == [(s.line, s.positives, s.negatives) for s in b]


def test_sixth_labels_are_well_formed(samples: dict[int, list[corpus.Sample]]) -> None:
    corpus.check_labels(samples[SEEDS[1]])


def test_sixth_placeholders_leave_nothing() -> None:
    """No positive value survives in the output and every look-alike does, verbatim; lines stay lines."""
    corpus.check_redacted(sixth.generate(seed=99, lines=1500), default_redactor().redact)


@pytest.mark.parametrize("backend", ["keywords", "re2"])
def test_sixth_prefilter_backends_agree(backend: str) -> None:
    reference, other = default_redactor(), Redactor(prefilter=backend)
    for sample in sixth.generate(seed=7, lines=600):
        assert other.redact(sample.line) == reference.redact(sample.line), sample.line
