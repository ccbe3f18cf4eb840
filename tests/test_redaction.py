"""Unit tests of `redact`: hand-written real-world shapes (independent of the generated corpus),
look-alikes that must survive byte for byte, settings, idempotence and streaming."""

# ruff: noqa: E501  (test data: long literal tokens and log lines)

from __future__ import annotations

import base64
import io
import random
import string
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleanroom.scrubbers._redact_validators import base62_crc32, checksum_token_ok, iban_ok, luhn_ok
from cleanroom.scrubbers.logs import Redactor, StreamingRedactor, redact, redact_stream

REPO = Path(__file__).resolve().parents[1]
RNG = random.Random(4242)
ALNUM = string.ascii_letters + string.digits


def _tok(n: int, alphabet: str = ALNUM) -> str:
    return "".join(RNG.choice(alphabet) for _ in range(n))


def _gh(prefix: str = "ghp_") -> str:
    body = _tok(30)
    return prefix + body + base62_crc32(body)


GH = _gh()
NPM = _gh("npm_")
CR = _gh("cr_")
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
AZ_KEY = base64.b64encode(bytes(RNG.randrange(256) for _ in range(64))).decode()

# (line, secret substrings that must not survive, expected placeholder label)
POSITIVES = [
    ("aws_access_key_id=AKIAIOSFODNN7EXAMPLE", ["AKIAIOSFODNN7EXAMPLE"], "AWS_ACCESS_KEY_ID"),
    ("creds ASIAY34FZKBOKMUTVV7A expire soon", ["ASIAY34FZKBOKMUTVV7A"], "AWS_ACCESS_KEY_ID"),
    (
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"],
        "AWS_SECRET_ACCESS_KEY",
    ),
    (
        '{"AccessKeyId": "AKIAI44QH8DHBEXAMPLE", "SecretAccessKey": "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"}',
        ["AKIAI44QH8DHBEXAMPLE", "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"],
        "AWS_SECRET_ACCESS_KEY",
    ),
    (
        "maps call with key=AIzaSyA-1x2y3z4A5B6C7D8E9F0gHiJkLmNoPqRs",
        ["AIzaSyA-1x2y3z4A5B6C7D8E9F0gHiJkLmNoPqRs"],
        "GCP_API_KEY",
    ),
    (
        f"DefaultEndpointsProtocol=https;AccountName=prodstore;AccountKey={AZ_KEY};EndpointSuffix=core.windows.net",
        [AZ_KEY],
        "AZURE_STORAGE_KEY",
    ),
    (
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey=Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWo=",
        ["Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWo="],
        "AZURE_SHARED_ACCESS_KEY",
    ),
    (f"git clone https://x-access-token:{GH}@github.com/org/repo.git", [GH], "GITHUB_TOKEN"),
    (f"Authorization: token {GH}", [GH], "GITHUB_TOKEN"),
    ("GITHUB_TOKEN=github_pat_11ABCDEFG0123456789abc_" + "a1B2" * 14 + "xyz", ["github_pat_11ABCDEFG"], "GITHUB_TOKEN"),
    ("gitlab: glpat-xY3zA9bC7dE5fG1hJ2kL", ["glpat-xY3zA9bC7dE5fG1hJ2kL"], "GITLAB_TOKEN"),
    ("slack bot xoxb-2048305728394-3120583920485-Tq3zR8wLm2Kp9Vx7Yn4Bc6Dj", ["xoxb-2048305728394"], "SLACK_TOKEN"),
    (
        "xoxp-1234567890-1234567890123-1234567890123-0123456789abcdef0123456789abcdef",
        ["xoxp-1234567890"],
        "SLACK_TOKEN",
    ),
    (
        "posting to https://hooks.slack.com/services/T024BE7LD/B01A2B3C4D5/aBcDeFgHiJkLmNoPqRsTuVwX",
        ["T024BE7LD/B01A2B3C4D5/aBcDeFgHiJkLmNoPqRsTuVwX"],
        "SLACK_WEBHOOK",
    ),
    (
        "stripe.api_key = 'sk_live_51H8xYzAbCdEfGhIjKlMnOpQrStUvWx'",
        ["sk_live_51H8xYzAbCdEfGhIjKlMnOpQrStUvWx"],
        "STRIPE_KEY",
    ),
    ("restricted rk_live_4eC39HqLyjWDarjtT1zdp7dc", ["rk_live_4eC39HqLyjWDarjtT1zdp7dc"], "STRIPE_KEY"),
    ("OPENAI_API_KEY=sk-proj-" + _tok(64, ALNUM + "-_") + "T3BlbkFJ" + _tok(64), ["sk-proj-"], "OPENAI_API_KEY"),
    ("using key sk-" + _tok(48), ["sk-"], "OPENAI_API_KEY"),
    ("x-api-key: sk-ant-api03-" + _tok(93, ALNUM + "-_") + "AA", ["sk-ant-api03-"], "ANTHROPIC_API_KEY"),
    ("HF_TOKEN=hf_" + _tok(34, string.ascii_letters), ["hf_"], "HUGGINGFACE_TOKEN"),
    (f"//registry.npmjs.org/:_authToken={NPM}", [NPM], "NPM_TOKEN"),
    ("sendgrid SG." + _tok(22, ALNUM + "-_") + "." + _tok(43, ALNUM + "-_"), ["SG."], "SENDGRID_API_KEY"),
    (f"tenant created, api key {CR}", [CR], "CLEANROOM_API_KEY"),
    (f"bad checksum still redacted {CR[:-6]}ZZZZZZ", [CR[:-6]], "CLEANROOM_API_KEY"),
    (f"bad checksum still redacted {GH[:-6]}AAAAAA", [GH[:-6]], "GITHUB_TOKEN"),
    (f"id_token={JWT}", [JWT.split(".")[1]], "JWT"),
    (f"Authorization: Bearer {JWT}", [JWT.split(".")[2]], "JWT"),
    ("Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l", ["YWxhZGRpbjpvcGVuc2VzYW1l"], "BASIC_AUTH"),
    ("headers={'Authorization': 'Bearer 8f2a7Kx9-Qw3.Zr5_Tn1~Lp'}", ["8f2a7Kx9-Qw3.Zr5_Tn1~Lp"], "BEARER_TOKEN"),
    (
        '"-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\\n-----END OPENSSH PRIVATE KEY-----\\n"',
        ["b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ"],
        "PRIVATE_KEY",
    ),
    ("DATABASE_URL=postgresql://app_user:Sup3r%24ecret@db.internal:5432/app", ["Sup3r%24ecret"], "PASSWORD"),
    ("redis://:p4ssw0rd@cache:6379/0", ["p4ssw0rd"], "PASSWORD"),
    ("Server=tcp:db.example.net;Database=app;User Id=admin;Password=Tr0ub4dor&3;", ["Tr0ub4dor&3"], "PASSWORD"),
    ('{"username": "bob", "password": "hunter2"}', ["hunter2"], "PASSWORD"),
    ("login failed password=correct-horse-battery user=bob", ["correct-horse-battery"], "PASSWORD"),
    ("spring.datasource.password: s3cr3t!", ["s3cr3t!"], "PASSWORD"),
    ("client_secret=8Q~abcDEF123ghiJKL456mnoPQR789stu", ["8Q~abcDEF123ghiJKL456mnoPQR789stu"], "SECRET"),
    ("X-Api-Key: 3f9a1c2e7b", ["3f9a1c2e7b"], "API_KEY"),
    ("mysql -u root --password=SuperSecret123 -h db", ["SuperSecret123"], "PASSWORD"),
    ("MY_SERVICE_TOKEN=Zx8Kq2Lm9Vb4Nc7Rt1Yw5Pj3", ["Zx8Kq2Lm9Vb4Nc7Rt1Yw5Pj3"], "GENERIC_SECRET"),
    ("contact jane.doe+billing@example.co.uk now", ["jane.doe+billing@example.co.uk"], "EMAIL"),
    ("call (415) 555-2671 or +44 20 7946 0958", ["555-2671", "7946 0958"], "PHONE"),
    ("paid with 4111 1111 1111 1111", ["4111 1111 1111 1111"], "CREDIT_CARD"),
    ("amex 3782-822463-10005", ["822463"], "CREDIT_CARD"),
    ("ssn=078-05-1120", ["078-05-1120"], "SSN"),
    ("payee GB82 WEST 1234 5698 7654 32 confirmed", ["GB82 WEST 1234 5698 7654 32"], "IBAN"),
    ("iban=DE89370400440532013000", ["DE89370400440532013000"], "IBAN"),
    ("client 203.0.113.195 connected", ["203.0.113.195"], "IPV4"),
    ("from [2001:db8:85a3::8a2e:370:7334]:443", ["2001:db8:85a3::8a2e:370:7334"], "IPV6"),
]


@pytest.mark.parametrize(("line", "secrets", "label"), POSITIVES, ids=[p[2] + str(i) for i, p in enumerate(POSITIVES)])
def test_positive(line: str, secrets: list[str], label: str) -> None:
    out = redact(line)
    for secret in secrets:
        assert secret not in out, out
    assert f"[REDACTED:{label}" in out, out


NEGATIVES = [
    "request_id=9f1c2b7e-4a1d-4c2e-9b3a-1f2e3d4c5b6a status=200",
    "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "commit 3f2a9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b (HEAD -> main)",
    "2025-05-01T12:34:56.789+02:00 took 12.345ms at 1714567890123",
    "cleanroom 0.1.0 torch 2.13.0+cpu cuda 12.4 python 3.11.7 v1.2.3.4",
    "loading /home/user/.cache/huggingface/hub/models--x/snapshots/3f2a9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b/model.safetensors",
    "GET https://api.example.com/v1/models/minilm/infer?page=2&limit=50 200",
    "order 4111111111111112 shipped",
    "max_tokens=512 prompt_tokens=1234 tokens_per_second=88.2 token_count=9",
    "digest sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "mac 00:1a:2b:3c:4d:5e at 10:15:30",
    "icon@2x.png and lodash@4.17.21 and ssh://git@github.com/org/repo.git",
    "std::vector<int> and Foo::bar()",
    "cache_key=user:123 idempotency_key=5b8f2c1e-9d3a-4e7f-8a6b-2c4d6e8f0a1b",
    "password_min_length=12 password_required=true secret_name=db-creds",
    "Uvicorn running on http://127.0.0.1:8000 (Press CTRL+C to quit)",
    "PWD=/home/user/project OLDPWD=/tmp",
    "token=null password=*** secret=${DB_SECRET} api_key=<redacted>",
]


@pytest.mark.parametrize("line", NEGATIVES)
def test_negative_survives_byte_for_byte(line: str) -> None:
    assert redact(line) == line


def test_card_last4_setting() -> None:
    assert Redactor(keep_card_last4=True).redact("card 4111-1111-1111-1111 ok") == "card [REDACTED:CREDIT_CARD:1111] ok"
    assert redact("card 4111-1111-1111-1111 ok") == "card [REDACTED:CREDIT_CARD] ok"


def test_ip_allowlist_setting() -> None:
    assert Redactor(ip_allowlist=()).redact("on 127.0.0.1") == "on [REDACTED:IPV4]"


def test_idempotent_and_placeholders_are_not_rematched() -> None:
    for line, _, _ in POSITIVES:
        once = redact(line)
        assert redact(once) == once


def test_validators() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82WEST12345698765432") and not iban_ok("GB82WEST12345698765433")
    assert checksum_token_ok(GH, 4) and not checksum_token_ok(GH[:-1] + ("A" if GH[-1] != "A" else "B"), 4)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.ascii_letters + " .,:;!?'\n", max_size=300))
def test_plain_prose_is_untouched(text: str) -> None:
    assert redact(text) == text


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_never_changes_the_number_of_lines(text: str) -> None:
    assert redact(text).count("\n") == text.count("\n")


# ------------------------------------------------------------------------------------------------------
# streaming
# ------------------------------------------------------------------------------------------------------
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx7Zq\nq9Xb2Lm3Vc8Kp1Ww\n-----END RSA PRIVATE KEY-----\n"


def test_secret_split_at_every_chunk_boundary() -> None:
    text = f"2025-05-01 INFO token {GH} for bob@example.com\nnext line ok\n"
    expected = redact(text.splitlines(keepends=True)[0]) + "next line ok\n"
    for cut in range(1, len(text)):
        stream = StreamingRedactor()
        out = stream.feed(text[:cut]) + stream.feed(text[cut:]) + stream.flush()
        assert out == expected, cut


def test_pem_across_lines_is_caught_whole_and_line_count_kept() -> None:
    text = "before\n" + PEM + "after\n"
    out = io.StringIO()
    assert redact_stream(io.StringIO(text), out) == text.count("\n")
    result = out.getvalue()
    assert "MIIEowIBAAKCAQEAx7Zq" not in result and "q9Xb2Lm3Vc8Kp1Ww" not in result
    assert result.count("\n") == text.count("\n")
    assert result.startswith("before\n[REDACTED:PRIVATE_KEY]") and result.endswith("after\n")


def test_truncated_pem_is_released_and_redacted() -> None:
    stream = StreamingRedactor(max_hold_chars=200)
    body = "".join(f"{_tok(64, ALNUM + '+/')}\n" for _ in range(10))
    out = stream.feed("-----BEGIN PRIVATE KEY-----\n" + body + "unrelated line\n") + stream.flush()
    assert body.splitlines()[0] not in out and body.splitlines()[-1] not in out


def test_very_long_line_is_cut_with_overlap() -> None:
    stream = StreamingRedactor(max_line_chars=4096, overlap_chars=512)
    filler = "word " * 2000
    out = stream.feed(filler + f"token {GH} ") + stream.feed("end\n") + stream.flush()
    assert GH not in out and out.endswith("end\n")


def test_cli_redact_one_line_out_per_line_in() -> None:
    data = ("user bob@example.com\n" + PEM + "no newline at end " + CR).encode() + b" \xff\xfe raw bytes"
    result = subprocess.run([sys.executable, "-m", "cleanroom.logging_setup", "redact"], input=data,
                            capture_output=True, timeout=60, cwd=REPO)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(b"\n") == data.count(b"\n")
    assert b"bob@example.com" not in result.stdout and CR.encode() not in result.stdout
    assert result.stdout.endswith(b" \xff\xfe raw bytes")  # undecodable bytes pass through unchanged


# --- left guard: "not inside a longer word" --------------------------------------------------------------
GITHUB_TOKEN_BODY = "ghp_" + "a1B2c3D4e5" * 3 + "abcdef"


@pytest.mark.parametrize("prefix", ["x", "Q", "7", "m"])
def test_a_token_continuing_a_word_is_not_a_token(prefix: str) -> None:
    """The guard is a character class (`A-Za-z0-9_`), not the literal characters of its spelling."""
    for token in ("AKIAIOSFODNN7EXAMPLE", GITHUB_TOKEN_BODY):
        assert redact(f"id {prefix}{token} done") == f"id {prefix}{token} done"


@pytest.mark.parametrize("before", ["?key=%3D", "q=%20", "message: line one\\n", "tab\\t", " ", "=", "(", '"'])
def test_a_token_after_an_escape_or_separator_is_redacted(before: str) -> None:
    for token, label in (("AKIAIOSFODNN7EXAMPLE", "AWS_ACCESS_KEY_ID"), (GITHUB_TOKEN_BODY, "GITHUB_TOKEN")):
        out = redact(f"x {before}{token} y")
        assert token not in out and f"[REDACTED:{label}]" in out, out


def test_guard_characters_expands_ranges() -> None:
    from cleanroom.scrubbers._redact_engine import guard_characters

    assert guard_characters("A-Za-z0-9_-") == frozenset(string.ascii_letters + string.digits + "_-")
    assert guard_characters("-~.") == frozenset("-~.")


@pytest.mark.parametrize("module", ["_redact_rules_external", "_redact_rules_devtools", "_redact_rules_prose"])
def test_the_rule_modules_import_on_their_own(module: str) -> None:
    """They use log_rules' helpers and log_rules splices them in: imported first, on their own, they met a
    half-initialised log_rules (ImportError). The package imports log_rules first."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", f"import cleanroom.scrubbers.{module} as m; print(len(m.__dict__))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize(
    "line",
    [
        "    if password == confirm_password: return True",
        "    if user.password != new_password: raise ValueError('mismatch')",
        "    while not token: await asyncio.sleep(0.1)",
        '  File "app.py", line 12, in login\n    if secret: yield secret',
    ],
)
def test_traceback_source_lines_survive(line: str) -> None:
    """A traceback quotes source lines; `name: keyword` there is code, not a `key: value` assignment."""
    assert redact(line) == line
