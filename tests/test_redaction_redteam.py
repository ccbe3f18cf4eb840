"""Full recall and zero over-redaction on the red-team corpus (tests/redaction_corpus_redteam.py).

The corpus was written before reading the rules, from the logs of software the other corpora do not centre
on (journald, kubectl describe, Envoy/HAProxy/Apache, Postgres/MySQL/MongoDB/Redis, Kafka/Spark/Airflow/
Celery, log4j, zap/logrus, Rust tracing, pino/bunyan, structlog, Serilog, Terraform, Ansible, CI, curl -v,
CSV, config dumps, SOAP, GraphQL, SQL, non-English text). Every character of every sensitive value must be
inside a finding; no look-alike and no other text may be touched. Run with `-s` to see the per-type table.
"""

# ruff: noqa: E501  (test data: long literal tokens and log lines)

from __future__ import annotations

import pytest

import redaction_corpus_redteam as redteam
from cleanroom.scrubbers.logs import Redactor, default_redactor
from redaction_corpus import check_labels

SEEDS = (7, 8, 9)


def _covered(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    pos = start
    for fs, fe in sorted(spans):
        if fs <= pos < fe:
            pos = fe
    return pos >= end


@pytest.mark.parametrize("seed", SEEDS)
def test_redteam_full_recall_and_no_over_redaction(seed: int) -> None:
    redactor = default_redactor()
    total: dict[str, int] = {}
    missed: list[str] = []
    altered: list[str] = []
    stray: list[str] = []
    for sample in redteam.generate(seed=seed):
        spans = [(f.start, f.end) for f in redactor.find(sample.line)]
        for start, end, kind in sample.positives:
            total[kind] = total.get(kind, 0) + 1
            if not _covered(spans, start, end):
                missed.append(f"{kind}: {sample.line[start:end]!r} in {sample.line[max(0, start - 80) : end + 40]!r}")
        for start, end, kind in sample.negatives:
            if any(fs < end and start < fe for fs, fe in spans):
                altered.append(f"{kind}: {sample.line[start:end]!r} in {sample.line[max(0, start - 80) : end + 40]!r}")
        for fs, fe in spans:
            if not any(fs < pe and ps < fe for ps, pe, _ in sample.positives):
                stray.append(f"{sample.line[fs:fe]!r} in {sample.line[max(0, fs - 80) : fe + 40]!r}")
    print(f"\nred-team corpus seed={seed}: " + ", ".join(f"{k}={n}" for k, n in sorted(total.items())))
    assert not missed and not altered and not stray, "\n".join(
        ["missed:", *missed[:20], "look-alikes altered:", *altered[:20], "findings on no positive:", *stray[:20]]
    )


def test_redteam_covers_every_type() -> None:
    samples = redteam.generate(seed=SEEDS[0])
    expected = {kind for kind, _ in redteam.PROVIDER_TOKENS} | {kind for kind, _ in redteam.PII}
    expected |= {"aws_secret", "azure_storage_key", "azure_conn_key", "slack_webhook", "pem", "password",
                 "url_password", "secret_assign", "auth_bearer", "auth_basic"}  # fmt: skip
    assert expected <= redteam.all_types(samples)


def test_redteam_is_deterministic_and_well_formed() -> None:
    a, b = redteam.generate(seed=5, lines=400), redteam.generate(seed=5, lines=400)
    assert [(s.line, s.positives, s.negatives) for s in a] == [(s.line, s.positives, s.negatives) for s in b]
    check_labels(a)


@pytest.mark.parametrize("backend", ["keywords", "re2"])
def test_redteam_prefilter_backends_agree(backend: str) -> None:
    reference, other = default_redactor(), Redactor(prefilter=backend)
    for sample in redteam.generate(seed=11, lines=600):
        assert other.redact(sample.line) == reference.redact(sample.line), sample.line


# What the red-team corpus found missed, one line per class (value, then the line)
REDTEAM_POSITIVES = [
    ("34.53.40.186", "peer{ip:34.53.40.186 port:443}"),
    ("185.108.244.214", "conn={LocalAddr:185.108.244.214:19782 RemoteAddr:172.131.103.249:443}"),
    ("2600:1F18:4922:68A0:A3CA:FF15:A33E:5200", "addr:2600:1F18:4922:68A0:A3CA:FF15:A33E:5200 port:443"),
    ("2001:db8:4ed3:176c::f2f0", "remote:2001:db8:4ed3:176c::f2f0 ok"),
    ("changeit", 'PlainLoginModule required username="svc" password="changeit";'),
    ("Shadow6306*", "cfg private_token='Shadow6306*' host=x"),
    ("Falcon6226*", '<wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText">Falcon6226*</wsse:Password>'),
    ("monkey-river-purple", '1733158576.651862 [0 10.0.0.5:56565] "AUTH" "default" "monkey-river-purple"'),
    ("^bEBe7M_QLEc", '1732903767.125807 [0 10.0.0.5:53163] "CONFIG" "SET" "requirepass" "^bEBe7M_QLEc"'),
    ("foobared", "requirepass foobared"),
    ("S3cret!pw", "redis-cli -h db.internal -a 'S3cret!pw' --no-auth-warning ping"),
    ("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhZG1pbiJ9.", "deploying with eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhZG1pbiJ9. # TODO"),
]  # fmt: skip

REDTEAM_NEGATIVES = [
    "Data\n====\npassword:  16 bytes\nusername:  5 bytes",
    '{"query":"mutation Login($email: String!, $password: String!) { login(email: $email, password: $password) { token } }"}',
    "    private_key: |",
    "took arn:aws:iam::009238840501:role/app-writer",
    "ref FR0059666476037BE99DD0HVY86 (check digits 00)",
    "mac 00:1a:2b:3c:4d:5e:6f:70:81 std::vector Name::ab12",
]


@pytest.mark.parametrize(("value", "line"), REDTEAM_POSITIVES)
def test_redteam_shape_is_redacted(value: str, line: str) -> None:
    out = default_redactor().redact(line)
    assert value not in out, out
    assert "[REDACTED:" in out


@pytest.mark.parametrize("line", REDTEAM_NEGATIVES)
def test_redteam_lookalike_survives(line: str) -> None:
    assert default_redactor().redact(line) == line
