"""Recall and precision of the redactor on the generated, labelled corpus (tests/redaction_corpus.py).

Prints the per-type table (run with `-s` to see it) and fails below 99.5% recall or precision for any type,
or below 99.5% survival for any kind of look-alike (UUIDs, trace ids, hashes, timestamps, versions, paths,
plain URLs, Luhn-invalid numbers).
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

import redaction_corpus as corpus
from cleanroom.scrubbers.logs import Redactor, default_redactor

THRESHOLD = 0.995

# Placeholder label -> corpus type, to charge a false finding to the type it claimed to be.
LABEL_TO_TYPE = {
    "EMAIL": "email", "PHONE": "phone", "CREDIT_CARD": "credit_card", "SSN": "ssn", "IBAN": "iban",
    "IPV4": "ipv4", "IPV6": "ipv6", "JWT": "jwt", "PRIVATE_KEY": "private_key",
    "AWS_ACCESS_KEY_ID": "aws_access_key_id", "AWS_SECRET_ACCESS_KEY": "aws_secret_access_key",
    "GCP_API_KEY": "gcp_api_key", "GITHUB_TOKEN": "github_token", "GITLAB_TOKEN": "gitlab_token",
    "SLACK_TOKEN": "slack_token", "SLACK_WEBHOOK": "slack_webhook", "STRIPE_KEY": "stripe_key",
    "OPENAI_API_KEY": "openai_key", "ANTHROPIC_API_KEY": "anthropic_key",
    "HUGGINGFACE_TOKEN": "huggingface_token", "NPM_TOKEN": "npm_token", "SENDGRID_API_KEY": "sendgrid_key",
    "CLEANROOM_API_KEY": "cleanroom_key", "AZURE_STORAGE_KEY": "azure_storage_key",
    "AZURE_SHARED_ACCESS_KEY": "azure_connection_string", "PASSWORD": "password", "SECRET": "secret",
    "API_KEY": "api_key", "TOKEN": "generic_secret", "GENERIC_SECRET": "generic_secret",
    "BEARER_TOKEN": "authorization", "BASIC_AUTH": "authorization", "AUTHORIZATION": "authorization",
}  # fmt: skip


def _finder(redactor: Redactor) -> corpus.Finder:
    return lambda line: [(f.start, f.end, f.label) for f in redactor.find(line)]


def _check(
    score: corpus.Score,
    types: Iterable[str] = corpus.ALL_TYPES,
    negative_kinds: Iterable[str] = corpus.NEGATIVE_KINDS,
    name: str = "corpus",
) -> list[str]:
    """Every type present and at or above THRESHOLD in recall, precision and look-alike survival.
    Shared with tests/test_redaction_heldout.py (the second corpus)."""
    failures = []
    for kind in types:
        assert score.total.get(kind), f"{name} has no {kind} samples"
        if score.recall(kind) < THRESHOLD:
            failures.append(f"recall {kind} = {score.recall(kind):.4f}")
    for kind in set(score.total) | set(score.false_findings):
        if score.precision(kind) < THRESHOLD:
            failures.append(f"precision {kind} = {score.precision(kind):.4f}")
    for kind in negative_kinds:
        assert score.negatives.get(kind), f"{name} has no {kind} look-alikes"
        if score.survival(kind) < THRESHOLD:
            failures.append(f"survival {kind} = {score.survival(kind):.4f}")
    return failures


@pytest.mark.parametrize("seed", [20250501, 7])
def test_corpus_recall_and_precision(seed: int) -> None:
    samples = corpus.generate(seed=seed)
    score = corpus.score(_finder(default_redactor()), samples, LABEL_TO_TYPE)
    print(f"\nredaction corpus seed={seed}: {len(samples)} lines\n{score.table()}")
    failures = _check(score)
    assert not failures, (
        "\n".join(failures)
        + "\nmissed:\n"
        + "\n".join(score.missed_examples[:15])
        + "\nfalse:\n"
        + "\n".join(score.false_examples[:15])
    )


def test_placeholders_leave_nothing_of_the_value() -> None:
    """Beyond span coverage: the output contains no positive value, and every negative verbatim."""
    corpus.check_redacted(corpus.generate(seed=99, per_type=40, per_negative=40), default_redactor().redact)


@pytest.mark.parametrize("backend", ["keywords", "re2"])
def test_prefilter_backends_agree(backend: str) -> None:
    """Every prefilter may over-report but never under-report: outputs are identical to Hyperscan's."""
    reference = default_redactor()
    other = Redactor(prefilter=backend)
    for sample in corpus.generate(seed=5, per_type=25, per_negative=25):
        assert other.redact(sample.line) == reference.redact(sample.line), sample.line
