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


# The classes of misses and over-redactions this corpus found, pinned with inputs of their own (other
# spellings than the generator's): (line, what must go, what must stay)
PINNED = [
    # Oracle connect strings: `user/password@`
    ("jdbc:oracle:thin:scott/Tiger-77x@db.example.com:1521:ORCL", ["Tiger-77x"], ["scott", "db.example.com"]),
    ("sqlplus -s system/Manager_19c@//10.0.0.9:1521/XE", ["Manager_19c"], []),
    ("expdp userid=hr/Hr.Pass_2026@pdb1 schemas=HR", ["Hr.Pass_2026"], ["schemas=HR"]),
    # Kafka JAAS `user_<name>="password"`, in the LoginModule text or a line of a JAAS file alone
    (
        'PlainLoginModule required username="a" password="b-Secret1" user_alice="Alice-pw-9";',
        ["b-Secret1", "Alice-pw-9"],
        [],
    ),
    ('  user_broker="Br0ker!pass";', ["Br0ker!pass"], []),
    ('ua user_agent="curl/8.5.0" user_id="42" ok', [], ['user_agent="curl/8.5.0"', 'user_id="42"']),
    # Terraform state: random_password's result, not random_integer's
    (
        '{"type":"random_password","name":"db","instances":[{"attributes":{"result":"q7-Zx_p0wd","special":true}}]}',
        ["q7-Zx_p0wd"],
        [],
    ),
    ('{"type":"random_integer","instances":[{"attributes":{"result":"4711"}}]}', [], ['"result":"4711"']),
    # shell history: tools that take a password as a short flag or an argument
    ("keytool -importkeystore -srcstorepass Src-Pw-1 -deststorepass Dst-Pw-2", ["Src-Pw-1", "Dst-Pw-2"], []),
    ("keytool -list -storepass:env STOREPASS -keystore ks.jks", [], ["-storepass:env STOREPASS"]),
    ("ldapmodify -x -D cn=admin,dc=ex -w Ld4p-Pw -f change.ldif", ["Ld4p-Pw"], []),
    ("ldapsearch -x -W -b dc=example,dc=org uid=jane", [], ["-W -b dc=example,dc=org"]),
    ("sqlcmd -S tcp:db,1433 -U sa -P 'Sq1-Admin!' -Q 'select 1'", ["Sq1-Admin!"], []),
    ("sqlcmd -S db -p -Q 'select 1'", [], ["-p -Q"]),
    ("mongorestore --host db -u admin -p M0ngo-pw --drop dump/", ["M0ngo-pw"], []),
    (
        "az login --service-principal -u http://ci -p Sp-Secret.99 --tenant contoso.onmicrosoft.com",
        ["Sp-Secret.99"],
        [],
    ),
    ("rabbitmqctl change_password svc R4bbit-pw", ["R4bbit-pw"], []),
    ("rabbitmqctl add_user svc", [], ["add_user svc"]),
    ("htpasswd -nbB admin Ht-Pass-1", ["Ht-Pass-1"], []),
    ("htpasswd -c /etc/nginx/.htpasswd admin", [], ["/etc/nginx/.htpasswd admin"]),
    ("smbclient //fs/backup -U 'CORP\\svc%Smb-Pw-7' -c ls", ["Smb-Pw-7"], []),
    ("echo 'Reg-Pw-2026' | podman login -u ci --password-stdin quay.io", ["Reg-Pw-2026"], []),
    ("echo $CI_REGISTRY_PASSWORD | docker login -u ci --password-stdin", [], ["$CI_REGISTRY_PASSWORD"]),
    # AWS SSM SecureString values and Secrets Manager SecretString
    ('{"Name": "/app/db", "Type": "SecureString", "Value": "Ssm-Value-9", "Version": 2}', ["Ssm-Value-9"], []),
    ('{"Name": "/app/region", "Type": "String", "Value": "eu-west-1"}', [], ["eu-west-1"]),
    ('{"ARN": "arn:aws:secretsmanager:x", "SecretString": "Sm-Plain-8"}', ["Sm-Plain-8"], []),
    # Kubernetes env in YAML: `- name: X_PASSWORD` then `value: p` on the next line
    ("- name: REDIS_PASSWORD\n  value: Rd-Pw-3\n- name: LOG_LEVEL\n  value: debug", ["Rd-Pw-3"], ["debug"]),
    # a secret's name under `key` and its value under `value` (Ansible loop items, dict2items, AWS tags)
    ("ok: [web1] => (item={'key': 'DB_PASS', 'value': 'Xk9-pw-11'})", ["Xk9-pw-11"], []),
    (
        '{"Key": "api_token", "Value": "Tk-Val-ue-99abc"}, {"Key": "Name", "Value": "web-1"}',
        ["Tk-Val-ue-99abc"],
        ["web-1"],
    ),
    # Ansible's `no_log` mask is not a value
    (
        'changed: [db1] => {"password": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"}',
        [],
        ["VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"],
    ),
    # Go `%#v` of gRPC metadata / http.Header: the element of `[]string{...}`, not the type
    (
        'metadata.MD{"x-api-key":[]string{"k3yVALUEabc123DEF456ghi789"}, "x-request-id":[]string{"r-1"}}',
        ["k3yVALUEabc123DEF456ghi789"],
        ["[]string{", '"r-1"'],
    ),
    # references and markers that are not values
    ("auth:\n  existingSecret: pg-auth\n  existingPasswordSecret: mysql-creds", [], ["pg-auth", "mysql-creds"]),
    ("db_password: !vault |\n  $ANSIBLE_VAULT;1.1;AES256", [], ["!vault"]),
    ("MasterUserPassword: !Ref DbPassword", [], ["!Ref DbPassword"]),
    ("git clone https://ghp_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ:x-oauth-basic@github.com/o/r", [], ["x-oauth-basic"]),
    ('{"msg": "(1045, \\"Access denied for user (using password: NO)\\")"}', [], ["password: NO)"]),
    (
        "botocore.credentials: Credentials(access_key='AKIAIOSFODNN7EXAMPL2', method='env')",
        [],
        ["Credentials(access_key="],
    ),
    # ids that are not phone numbers or mailboxes
    ("GET /v1/jobs/0049123456789/logs 200", [], ["0049123456789"]),
    ("pull 002345678901.dkr.ecr.eu-west-1.amazonaws.com/api:1.2", [], ["002345678901"]),
    (
        "Message-ID: <CAH=x9Q+7@mail.gmail.com> In-Reply-To: <5f0e3b8a-1c2d-4e5f-8a9b-0c1d2e3f4a5b@mx.example.net>",
        [],
        ["CAH=x9Q+7@mail.gmail.com", "5f0e3b8a-1c2d-4e5f-8a9b-0c1d2e3f4a5b@mx.example.net"],
    ),
    # ...while the real ones still go
    (
        "call 0049 30 12345678 or mail jane.doe+ops@eu.example.com",
        ["0049 30 12345678", "jane.doe+ops@eu.example.com"],
        [],
    ),
]


@pytest.mark.parametrize(("line", "gone", "kept"), PINNED)
def test_sixth_pinned(line: str, gone: list[str], kept: list[str]) -> None:
    out = default_redactor().redact(line)
    for value in gone:
        assert value not in out, out
    for value in kept:
        assert value in out, out
