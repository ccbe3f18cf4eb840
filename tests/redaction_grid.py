"""A format x context grid for the log redactor (issue #7): every type in every common spelling, in every
common log context, and every look-alike in the same contexts. Enumerated, not sampled: a cell
(type, spelling, context) is either tested or missing from this file.

Why a grid and not another sampled corpus: an unseen corpus is most likely built the same way (take the
types issue #7 lists, write each the ways people write it, drop it into the places logs put values), and a
sampled corpus leaves whole cells empty by chance. Written from docs/logging.md's policy only, without
reading src/cleanroom/scrubbers/ (the point is a test that does not know the rules).

Policy decisions taken here (docs/logging.md, "What is redacted" and the unseen corpus's list):
- Stripe `sk_live_`/`sk_test_`/`rk_*`/`whsec_` are secrets (a test-mode secret key still reads and writes
  the account's test data and webhooks); `pk_live_`/`pk_test_` publishable keys are public by design
  (Stripe.js ships them to every browser), so they are neither positives nor look-alikes: INFO_KINDS
  reports what happens to them and asserts nothing.
- Only the sensitive part of a spelling is its secret: the password of `scheme://user:PASS@host`, the
  token after `Bearer`, the address of `203.0.113.7:8443`, the last path segment of a Slack webhook.
- 127.0.0.1, 0.0.0.0 and `::1` are kept: they are look-alikes, every other address (private ones too) is PII.

Values are made by a fixed-seed generator so that tokens have realistic alphabets and lengths (and valid
check digits for cards, IBANs and GitHub's CRC32) without being well-known examples a rule might allow.
"""

# ruff: noqa: E501  (literal tokens and log lines)

from __future__ import annotations

import base64
import json
import random
import re
import shlex
import string
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

NEUTRAL_KEY = "item"  # a key that names nothing: the value's own shape must be found
ALNUM = string.ascii_letters + string.digits
URLSAFE = ALNUM + "-_"
HEX = "0123456789abcdef"
B32 = string.ascii_uppercase + "234567"


@dataclass(frozen=True)
class Spelling:
    """One way to write a value: `text` as written, `secret` the part that must not survive (None for a
    look-alike, which must survive whole), `key` the field name a keyed context puts before it."""

    name: str
    text: str
    secret: str | None
    key: str | None = None


@dataclass(frozen=True)
class Case:
    group: str  # a type (positive) or a look-alike kind
    spelling: str
    context: str
    line: str
    secrets: tuple[str, ...]  # each secret as it is written in `line` (escaped by the context)


_rng = random.Random(7)  # fixed: the grid is the same on every run and machine


def _r(alphabet: str, n: int) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def _mixed(alphabet: str, n: int) -> str:
    """Random, but with upper case, lower case and a digit (a real token nearly always has all three)."""
    while True:
        s = _r(alphabet, n)
        if any(c.isupper() for c in s) and any(c.islower() for c in s) and any(c.isdigit() for c in s):
            return s


def _b64(raw: bytes, url: bool = False) -> str:
    return (base64.urlsafe_b64encode(raw).rstrip(b"=") if url else base64.b64encode(raw)).decode()


def _base62(n: int) -> str:
    digits = string.digits + string.ascii_uppercase + string.ascii_lowercase
    out = ""
    while n:
        n, d = divmod(n, 62)
        out = digits[d] + out
    return out.rjust(6, "0")


def _github(prefix: str) -> str:
    body = _mixed(ALNUM, 30)
    return f"{prefix}{body}{_base62(zlib.crc32(body.encode()))}"


def _luhn(prefix: str, length: int, valid: bool = True) -> str:
    body = prefix + _r(string.digits, length - len(prefix) - 1)
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    check = (10 - total % 10) % 10
    return body + str(check if valid else (check + 3) % 10)


def _group(s: str, sizes: tuple[int, ...], sep: str) -> str:
    out, i = [], 0
    for n in sizes:
        out.append(s[i : i + n])
        i += n
    return sep.join(out)


def _iban(cc: str, bban: str) -> str:
    digits = "".join(str(int(c, 36)) for c in bban + cc + "00")
    return f"{cc}{98 - int(digits) % 97:02d}{bban}"


def _jwt(header: dict[str, str], payload: dict[str, object], sig_bytes: int, parts: int = 3) -> str:
    head = [_b64(json.dumps(header).encode(), url=True), _b64(json.dumps(payload).encode(), url=True)]
    if parts == 5:  # JWE: header, encrypted key, iv, ciphertext, tag
        head[1] = _b64(_rng.randbytes(256), url=True)
        return ".".join(
            [
                *head,
                _b64(_rng.randbytes(12), url=True),
                _b64(_rng.randbytes(80), url=True),
                _b64(_rng.randbytes(16), url=True),
            ]
        )
    return ".".join([*head, _b64(_rng.randbytes(sig_bytes), url=True) if sig_bytes else ""])


def _pem(label: str, lead: bytes, nbytes: int, sep: str = "\n") -> Spelling:
    body64 = base64.b64encode(lead + _rng.randbytes(nbytes)).decode()
    body = sep.join(body64[i : i + 64] for i in range(0, len(body64), 64))
    text = f"-----BEGIN {label}-----{sep}{body}{sep}-----END {label}-----"
    return Spelling(label.lower().replace(" ", "_") + ("_escaped" if sep != "\n" else "_multiline"), text, body)


def _s(name: str, text: str, secret: str | None = "", key: str | None = None) -> Spelling:
    """`secret=""` means the whole text is the secret."""
    return Spelling(name, text, text if secret == "" else secret, key)


def _types() -> dict[str, list[Spelling]]:
    az88, az44 = _b64(_rng.randbytes(64)), _b64(_rng.randbytes(32))
    sas = _b64(_rng.randbytes(32))
    pw = [_mixed(ALNUM, 14) for _ in range(6)]
    jwt_hs = _jwt({"alg": "HS256", "typ": "JWT"}, {"sub": "1042", "role": "admin", "iat": 1764440000}, 32)
    jwt_rs = _jwt(
        {"alg": "RS256", "kid": "k1"},
        {"iss": "https://auth.acme-corp.io/", "sub": "auth0|5f1c", "exp": 1764443600},
        256,
    )
    basic = _b64(b"deploy:" + _mixed(ALNUM, 12).encode())
    sa_body = base64.b64encode(
        bytes.fromhex("308204bd020100300d06092a864886f70d0101010500048204a7") + _rng.randbytes(900)
    ).decode()
    sa_body = "\\n".join(sa_body[i : i + 64] for i in range(0, len(sa_body), 64))
    sa_json = json.dumps({"type": "service_account", "project_id": "acme-prod", "private_key_id": _r(HEX, 40)})[:-1]
    sa_json += f', "private_key": "-----BEGIN PRIVATE KEY-----\\n{sa_body}\\n-----END PRIVATE KEY-----\\n"}}'
    slack_tok = [_mixed(ALNUM, 24) for _ in range(2)]
    return {
        "aws_access_key_id": [_s(p, p + _r(B32, 16)) for p in ("AKIA", "ASIA", "ABIA", "A3TX")],
        "aws_secret_key": [_s(k, _mixed(ALNUM + "/+", 40), key=k) for k in ("aws_secret_access_key", "AWS_SECRET_ACCESS_KEY", "SecretAccessKey", "secret_access_key")],
        "gcp_api_key": [_s("aiza", "AIza" + _mixed(URLSAFE, 35)), _s("aiza_dash", "AIzaSy" + _mixed(ALNUM, 15) + "-" + _mixed(ALNUM, 12) + "_" + _mixed(ALNUM, 5)),
                        _s("oauth_secret", "GOCSPX-" + _mixed(URLSAFE, 28)), _s("access_token", "ya29.a0" + _mixed(URLSAFE, 120))],
        "azure_storage_key": [_s("bare_88", az88), _s("account_key", f"AccountKey={az88}", az88), _s("keyed_88", az88, key="azure_storage_key"),
                              _s("shared_access_key", f"SharedAccessKey={az44}", az44)],
        "azure_connection_string": [
            _s("storage", f"DefaultEndpointsProtocol=https;AccountName=acmeprodlogs;AccountKey={az88};EndpointSuffix=core.windows.net", az88),
            _s("service_bus", f"Endpoint=sb://acme-bus.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey={az44}", az44),
            _s("sas_url", f"https://acmeprodlogs.blob.core.windows.net/logs/app.log?sv=2022-11-02&ss=b&srt=o&sp=r&se=2026-12-01T00:00:00Z&spr=https&sig={quote(sas, safe='')}", quote(sas, safe="")),
            _s("blob_endpoint", f"BlobEndpoint=https://acmeprodlogs.blob.core.windows.net/;AccountName=acmeprodlogs;AccountKey={az88}", az88)],
        "github_token": [_s(p.rstrip("_"), _github(p)) for p in ("ghp_", "gho_", "ghu_", "ghs_")]
        + [_s("github_pat", f"github_pat_11{_r(string.ascii_uppercase + string.digits, 20)}_{_mixed(ALNUM, 59)}")],
        "gitlab_token": [_s("glpat_20", "glpat-" + _mixed(URLSAFE, 20)), _s("glpat_routable", f"glpat-{_mixed(URLSAFE, 27)}.01.{_r(string.ascii_lowercase + string.digits, 9)}"),
                         _s("gldt", "gldt-" + _mixed(ALNUM, 20)), _s("runner", "GR1348941" + _mixed(URLSAFE, 20))],
        "slack_token": [_s("xoxb", f"xoxb-{_r(string.digits, 12)}-{_r(string.digits, 13)}-{_mixed(ALNUM, 24)}"),
                        _s("xoxp", f"xoxp-{_r(string.digits, 12)}-{_r(string.digits, 12)}-{_r(string.digits, 13)}-{_r(HEX, 32)}"),
                        _s("xapp", f"xapp-1-A{_r(B32, 10)}-{_r(string.digits, 13)}-{_r(HEX, 64)}"),
                        _s("xoxe", f"xoxe.xoxp-1-{_mixed(ALNUM, 140)}")],
        "slack_webhook": [_s("services", f"https://hooks.slack.com/services/T{_r(B32, 8)}/B{_r(B32, 10)}/{slack_tok[0]}", slack_tok[0]),
                          _s("services_2", f"https://hooks.slack.com/services/T{_r(B32, 10)}/B{_r(B32, 11)}/{slack_tok[1]}", slack_tok[1]),
                          _s("workflows", f"https://hooks.slack.com/workflows/T{_r(B32, 9)}/A{_r(B32, 10)}/{_r(string.digits, 18)}/{(t := _mixed(ALNUM, 24))}", t),
                          _s("triggers", f"https://hooks.slack.com/triggers/T{_r(B32, 9)}/{_r(string.digits, 13)}/{(t := _r(HEX, 32))}", t)],
        "stripe_secret": [_s("sk_live", "sk_live_" + _mixed(ALNUM, 24)), _s("sk_live_51", "sk_live_51" + _mixed(ALNUM, 97)),
                          _s("rk_live", "rk_live_" + _mixed(ALNUM, 24)), _s("sk_test", "sk_test_" + _mixed(ALNUM, 24)),
                          _s("rk_test", "rk_test_51" + _mixed(ALNUM, 97)), _s("whsec", "whsec_" + _mixed(ALNUM, 32))],
        "openai_key": [_s("legacy", f"sk-{_mixed(ALNUM, 20)}T3BlbkFJ{_mixed(ALNUM, 20)}"), _s("proj", "sk-proj-" + _mixed(URLSAFE, 156)),
                       _s("svcacct", "sk-svcacct-" + _mixed(URLSAFE, 156)), _s("admin", "sk-admin-" + _mixed(URLSAFE, 156))],
        "anthropic_key": [_s("api03", f"sk-ant-api03-{_mixed(URLSAFE, 93)}AA"), _s("admin01", f"sk-ant-admin01-{_mixed(URLSAFE, 93)}AA"),
                          _s("api03_b", f"sk-ant-api03-{_mixed(URLSAFE, 93)}AA")],
        "huggingface_token": [_s("hf", "hf_" + _r(string.ascii_letters, 34)), _s("hf_b", "hf_" + _r(string.ascii_letters, 34)),
                              _s("api_org", "api_org_" + _r(string.ascii_letters, 34))],
        "npm_token": [_s("npm", "npm_" + _mixed(ALNUM, 36)), _s("npm_b", "npm_" + _mixed(ALNUM, 36)),
                      _s("legacy_uuid", "0b8a2c4e-7f3d-4e1a-9c6b-5d2f8e1a3b7c", key="_authToken")],
        "sendgrid_key": [_s("sg", f"SG.{_mixed(URLSAFE, 22)}.{_mixed(URLSAFE, 43)}"), _s("sg_b", f"SG.{_mixed(URLSAFE, 22)}.{_mixed(URLSAFE, 43)}")],
        "jwt": [_s("hs256", jwt_hs), _s("rs256", jwt_rs), _s("unsigned", _jwt({"alg": "none"}, {"sub": "1042", "email_verified": True}, 0)),
                _s("jwe", _jwt({"alg": "RSA-OAEP-256", "enc": "A256GCM"}, {}, 0, parts=5))],
        "private_key": [_pem("RSA PRIVATE KEY", bytes.fromhex("308204a40201000282010100"), 1150), _pem("OPENSSH PRIVATE KEY", b"openssh-key-v1\0", 380),
                        _pem("PRIVATE KEY", bytes.fromhex("308204bd020100300d06092a864886f70d0101010500"), 1180, sep="\\n"),
                        _pem("EC PRIVATE KEY", bytes.fromhex("30770201010420"), 100, sep="\\n"), _s("service_account_json", sa_json, sa_body)],
        "url_password": [_s("postgres", f"postgresql://app_rw:{pw[0]}@db-prod.acme-corp.io:5432/orders", pw[0]),
                         _s("mysql", f"mysql://report:{pw[1]}@10.20.3.4:3306/sales", pw[1]),
                         _s("mongodb_srv", f"mongodb+srv://svc-api:{pw[2]}@cluster0.x1y2z.mongodb.net/app?retryWrites=true", pw[2]),
                         _s("redis", f"redis://:{pw[3]}@cache.acme-corp.io:6379/0", pw[3]),
                         _s("https", "https://deploy:Xp%40ss-W0rd9@git.acme-corp.io/team/repo.git", "Xp%40ss-W0rd9")],
        "dsn_password": [_s("libpq", f"host=db.acme-corp.io port=5432 dbname=orders user=app password={pw[4]} sslmode=require", pw[4]),
                         _s("adonet", "Server=tcp:acme.database.windows.net,1433;Database=app;User ID=app;Password=Vb8#kQ2!mZq;Encrypt=True;", "Vb8#kQ2!mZq"),
                         _s("jdbc_query", f"jdbc:postgresql://db:5432/app?user=app&password={pw[5]}", pw[5]),
                         _s("jdbc_sqlserver", "jdbc:sqlserver://db:1433;databaseName=app;user=sa;password=Qw9Er7Ty5Ui;", "Qw9Er7Ty5Ui"),
                         _s("odbc", "DRIVER={ODBC Driver 18 for SQL Server};SERVER=db;UID=sa;PWD=Mn3$bV7cXz;", "Mn3$bV7cXz")],
        "assignment": [_s("password", "Summer2024!", key="password"), _s("passwd", "Tr0ub4dor&3", key="passwd"), _s("secret", _mixed(ALNUM, 16), key="secret"),
                       _s("api_key", _mixed(ALNUM, 32), key="api_key"), _s("token", _mixed(URLSAFE, 40), key="token"),
                       _s("client_secret", f"{_mixed(ALNUM, 3)}8Q~{_mixed(URLSAFE, 34)}", key="client_secret"), _s("DB_PASSWORD", "Winter!2025db", key="DB_PASSWORD")],
        "authorization": [_s("bearer_opaque", f"Bearer {(t := _mixed(ALNUM, 40))}", t, key="Authorization"), _s("bearer_jwt", f"Bearer {jwt_hs}", jwt_hs, key="Authorization"),
                          _s("basic", f"Basic {basic}", basic, key="Authorization"), _s("lower_bearer", f"bearer {(t := _mixed(URLSAFE, 48))}", t, key="authorization"),
                          _s("proxy_basic", f"Basic {(t := _b64(b'svc:' + _mixed(ALNUM, 14).encode()))}", t, key="Proxy-Authorization")],
        "cleanroom_key": [_s(f"cr_{i}", "cr_" + _mixed(ALNUM, 36)) for i in range(4)],
        "email": [_s("plain", "jane.doe@acme-corp.io"), _s("plus_tag", "maria.garcia+billing@gmail.com"), _s("subdomain", "k.tanaka@eng.tokyo.acme.co.jp"),
                  _s("idn", "jörg.müller@bücher.de"), _s("quoted", '"john smith"@acme-corp.io'), _s("upper", "OPS-Team@Acme-Corp.IO"),
                  _s("punycode", "info@xn--bcher-kva.de")],
        "phone_nanp": [_s("parens", "(555) 123-4567"), _s("dots", "555.123.4567"), _s("plus_dashes", "+1-555-123-4567"), _s("bare_keyed", "5551234567", key="phone"),
                       _s("parens_415", "(415) 555-0132"), _s("plus_parens", "+1 (212) 555-0198"), _s("dashes", "312-555-0176")],
        "phone_e164": [_s("uk", "+44 20 7946 0958"), _s("uk_compact", "+447700900123"), _s("de", "+49 30 12345678"), _s("de_mobile", "+49 151 23456789"),
                       _s("fr", "+33 6 12 34 56 78"), _s("in", "+91 98765 43210"), _s("jp", "+81 3-1234-5678"), _s("br", "+55 11 91234-5678"),
                       _s("au", "+61 2 9876 5432"), _s("au_compact", "+61412345678")],
        "phone_national": [_s("uk", "020 7946 0958"), _s("uk_mobile", "07700 900123"), _s("de", "030 12345678"), _s("de_mobile", "0151 23456789"),
                           _s("fr", "06 12 34 56 78"), _s("fr_dots", "01.23.45.67.89"), _s("in_keyed", "098765 43210", key="mobile"),
                           _s("jp", "03-1234-5678"), _s("jp_mobile", "090-1234-5678"), _s("br", "(11) 91234-5678"), _s("au", "(02) 9876 5432"), _s("au_mobile", "0412 345 678")],
        "credit_card": [_s("visa_none", _luhn("4", 16)), _s("visa_spaces", _group(_luhn("4", 16), (4, 4, 4, 4), " ")), _s("visa_dashes", _group(_luhn("4", 16), (4, 4, 4, 4), "-")),
                        _s("mc_spaces", _group(_luhn("53", 16), (4, 4, 4, 4), " ")), _s("mc2_dashes", _group(_luhn("2223", 16), (4, 4, 4, 4), "-")), _s("mc_none", _luhn("51", 16)),
                        _s("amex_spaces", _group(_luhn("37", 15), (4, 6, 5), " ")), _s("amex_none", _luhn("34", 15)), _s("amex_dashes", _group(_luhn("37", 15), (4, 6, 5), "-")),
                        _s("discover_none", _luhn("6011", 16)), _s("discover_spaces", _group(_luhn("6011", 16), (4, 4, 4, 4), " "))],
        "ssn": [_s("dashes", "536-22-1894"), _s("spaces", "412 71 3364"), _s("none_keyed", "523481766", key="ssn"), _s("dashes_keyed", "287-65-4321", key="SSN")],
        "iban": [s for cc, bban in (("DE", _r(string.digits, 18)), ("GB", "NWBK" + _r(string.digits, 14)), ("FR", _r(string.digits, 10) + _r(string.ascii_uppercase + string.digits, 11) + _r(string.digits, 2)),
                                    ("NL", "ABNA" + _r(string.digits, 10)), ("ES", _r(string.digits, 20)), ("IT", "X" + _r(string.digits, 22)))
                 for s in (_s(f"{cc.lower()}_compact", _iban(cc, bban)), _s(f"{cc.lower()}_grouped", " ".join(_iban(cc, bban)[i : i + 4] for i in range(0, len(_iban(cc, bban)), 4))))],
        "ipv4": [_s("plain", "81.2.69.142"), _s("port", "34.201.17.5:8443", "34.201.17.5"), _s("url", "http://52.14.200.7/healthz", "52.14.200.7"),
                 _s("cidr", "185.199.108.0/22", "185.199.108.0"), _s("private", "192.168.14.20")],
        "ipv6": [_s("full", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"), _s("compressed", "2a03:2880:f12f:83:face:b00c:0:25de"),
                 _s("zone", "fe80::1ff:fe23:4567:890a%eth0", "fe80::1ff:fe23:4567:890a"), _s("bracket_port", "[2606:4700:4700::1111]:443", "2606:4700:4700::1111"),
                 _s("v4_mapped", "::ffff:203.0.113.9")],
    }  # fmt: skip


def _look_alikes() -> dict[str, list[Spelling]]:
    ed = b"\0\0\0\x0bssh-ed25519\0\0\0\x20" + _rng.randbytes(32)
    rsa = b"\0\0\0\x07ssh-rsa\0\0\0\x03\x01\0\x01\0\0\x01\x01\0" + _rng.randbytes(256)
    n = None
    return {
        "uuid": [_s("v4", "3f2b8c1e-9d4a-4f6b-8e2c-7a1d5b9c0e34", n, "request_id"), _s("upper", "C7D1E2F3-A4B5-46C7-98D9-E0F1A2B3C4D5", n, "request_id")],
        "git_sha": [_s("full", _r(HEX, 40), n, "commit"), _s("short", _r(HEX, 7), n, "commit")],
        "sha256": [_s("hex", _r(HEX, 64), n, "digest"), _s("prefixed", "sha256:" + _r(HEX, 64), n, "digest")],
        "trace_id": [_s("trace", _r(HEX, 32), n, "trace_id"), _s("span", _r(HEX, 16), n, "span_id"), _s("traceparent", f"00-{_r(HEX, 32)}-{_r(HEX, 16)}-01", n, "traceparent")],
        "timestamp": [_s("iso", "2026-11-29T18:12:19.123Z", n, "ts"), _s("iso_offset", "2026-11-29T18:12:19+01:00", n, "ts"), _s("epoch_ms", "1764440339123", n, "ts_ms"),
                      _s("epoch_s", "1764440339", n, "ts")],
        "version": [_s("semver", "1.2.3", n, "version"), _s("v_prefix", "v2.14.1", n, "version"), _s("four_part", "10.0.19045.3803", n, "version"),
                    _s("prerelease", "1.0.0-rc.1+build.5", n, "version")],
        "luhn_invalid": [_s("none", _luhn("4", 16, valid=False), n, "ref"), _s("spaces", _group(_luhn("5", 16, valid=False), (4, 4, 4, 4), " "), n, "ref")],
        "order_number": [_s("dashed", "ORD-2026-0045127", n, "order"), _s("hash", "#100045678", n, "order"), _s("digits", "700123456789", n, "order_id")],
        "plain_url": [_s("https", "https://docs.acme-corp.io/guide/install?lang=en#step-2", n, "url"), _s("localhost", "http://localhost:8080/healthz", n, "url")],
        "file_path": [_s("unix", "/var/log/nginx/access.log", n, "path"), _s("windows", "C:\\ProgramData\\Acme\\logs\\app.log", n, "path"),
                      _s("relative", "./src/app/main.py:42", n, "path")],
        "base64_text": [_s("text", _b64(b"nightly export finished for the reporting job"), n, "payload"), _s("json", _b64(b'{"page":2,"size":50,"sort":"name"}'), n, "payload")],
        "loopback": [_s("v4", "127.0.0.1", n, "bind"), _s("any", "0.0.0.0", n, "bind"), _s("v6", "::1", n, "bind"), _s("v4_port", "127.0.0.1:8080", n, "bind")],
        "public_key": [_s("ssh_ed25519", f"ssh-ed25519 {_b64(ed)} ops@bastion", n, "public_key"), _s("ssh_rsa", f"ssh-rsa {_b64(rsa)}", n, "public_key"),
                       _s("spki_ed25519", _b64(bytes.fromhex("302a300506032b6570032100") + _rng.randbytes(32)), n, "public_key")],
    }  # fmt: skip


def _info() -> dict[str, list[Spelling]]:
    return {
        "stripe_publishable": [
            _s("pk_live", "pk_live_51" + _mixed(ALNUM, 97), None),
            _s("pk_test", "pk_test_" + _mixed(ALNUM, 24), None),
        ]
    }


TYPES, LOOK_ALIKES, INFO_KINDS = _types(), _look_alikes(), _info()

# --- contexts: each returns the line and the (character-local) encoding it applied to the value ---
Enc = Callable[[str], str]
_ID: Enc = lambda s: s  # noqa: E731


def _json_enc(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)[1:-1]


def _xml(s: str, attr: bool = False) -> str:
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return s.replace('"', "&quot;") if attr else s


def _pyrepr(s: str) -> str:
    return s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")


def _header(key: str) -> str:
    return (
        key
        if key[0].isupper() and "_" not in key
        else "X-" + "-".join(p.capitalize() for p in key.strip("_").split("_"))
    )


def _keyed(key: str, v: str, plain: str, keyed: str) -> str:
    return plain.format(v=v) if key == NEUTRAL_KEY else keyed.format(k=key, v=v)


def _quoting(enc: Enc, need: Callable[[str], bool], quote_char: str) -> Callable[[str], tuple[str, Enc]]:
    def run(v: str) -> tuple[str, Enc]:
        return (quote_char + enc(v) + quote_char, enc) if need(v) else (v, _ID)

    return run


_logfmt = _quoting(
    lambda s: s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n"),
    lambda v: any(c in v for c in ' "=\n'),
    '"',
)
_csv = _quoting(lambda s: s.replace('"', '""'), lambda v: any(c in v for c in ',"\n'), '"')
_yaml = _quoting(
    lambda s: s.replace("\\", "\\\\").replace('"', '\\"'),
    lambda v: ": " in v or " #" in v or v[0] in "\"'!&*[]{}%@|>`#,?-",
    '"',
)


def _shell(v: str) -> tuple[str, Enc]:
    assert "'" not in v  # shlex.quote is character-local only without a quote inside
    return shlex.quote(v), _ID


def _url_query(s: str) -> str:
    return quote(s, safe=":@/,;!*()$'~")  # only what RFC 3986 requires in a query value


def _flag(key: str) -> str:
    """`SecretAccessKey` -> `secret-access-key`, `DB_PASSWORD` -> `db-password`, `_authToken` -> `auth-token`."""
    key = key.strip("_")
    if any(c.islower() for c in key):
        key = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", key)
    return key.lower().replace("_", "-")


def _short_flag(key: str) -> str:
    """`-p value` for a password (as `sshpass -p` takes it) and `-i value` for a bare value; any other key has no one-letter flag a
    reader could tie to it (`deploy -a <40 base64 chars>` names nothing), so it takes GNU's `--key=value`."""
    if key == NEUTRAL_KEY or "pass" in key.lower():
        return f"-{key[0].lower()} " if key == NEUTRAL_KEY else "-p "
    return f"--{_flag(key)}="


def _yaml_ctx(k: str, v: str) -> tuple[str, Enc]:
    if "\n" in v:
        ind: Enc = lambda s: s.replace("\n", "\n    ")  # noqa: E731
        return f"config:\n  {k}: |\n    {ind(v)}\nstatus: ok", ind
    q, e = _yaml(v)
    return f"config:\n  {k}: {q}\n  retries: 3", e


def _wrap(fmt: str, enc: Enc = _ID) -> Callable[[str, str], tuple[str, Enc]]:
    return lambda k, v: (fmt.format(k=k, v=enc(v), h=_header(k), f=k.strip("_").lower().replace("_", "-")), enc)


CONTEXTS: dict[str, Callable[[str, str], tuple[str, Enc]]] = {
    "sentence": lambda k, v: (_keyed(k, v, "Deploy failed while sending {v} to the upstream service", "Deploy failed: the {k} is {v} and the server rejected it"), _ID),
    "key_equals": _wrap("2026-11-29 18:12:19 INFO {k}={v} retries=3"),
    "key_colon": _wrap("2026-11-29 18:12:19 INFO {k}: {v}"),
    "json": lambda k, v: (json.dumps({"level": "info", k: v, "n": 1}, ensure_ascii=False), _json_enc),
    "json_nested": lambda k, v: (json.dumps({"event": "call", "ctx": {"req": {k: v}}}, ensure_ascii=False), _json_enc),
    "json_escaped": lambda k, v: (json.dumps({"log": json.dumps({k: v, "n": 1}, ensure_ascii=False)}, ensure_ascii=False), lambda s: _json_enc(_json_enc(s))),
    "yaml": _yaml_ctx,
    "xml_element": lambda k, v: (f"<config><{k}>{_xml(v)}</{k}></config>", _xml),
    "xml_attribute": lambda k, v: (f'<config {k}="{_xml(v, True)}" retries="3"/>', lambda s: _xml(s, True)),
    "csv": lambda k, v: ((lambda q: (f"ts,host,{k},status\n2026-11-29T18:12:19Z,web01,{q[0]},200", q[1]))(_csv(v))),
    "url_query": _wrap("GET /api/v1/session?{k}={v}&page=2 HTTP/1.1", _url_query),
    "form_body": lambda k, v: (f"POST /login body: grant_type=client&{k}={quote_plus(v)}&scope=read", quote_plus),
    "http_header": _wrap("> {h}: {v}"),
    "shell_long": lambda k, v: ((lambda q: (f"+ deploy --{_flag(k)} {q[0]} --verbose", q[1]))(_shell(v))),
    "shell_short": lambda k, v: ((lambda q: (f"+ {'sshpass' if _short_flag(k) == '-p ' else 'deploy'} {_short_flag(k)}{q[0]} -v", q[1]))(_shell(v))),
    "python_repr": lambda k, v: (f"DEBUG request kwargs={{'{k}': '{_pyrepr(v)}', 'retries': 3}}", _pyrepr),
    "logfmt": lambda k, v: ((lambda q: (f'time=2026-11-29T18:12:19Z level=info msg="upstream call" {k}={q[0]} duration_ms=42', q[1]))(_logfmt(v))),
    "syslog": lambda k, v: (_keyed(k, v, "<134>Nov 29 18:12:19 web01 api[2211]: accepted {v} from peer", "<134>Nov 29 18:12:19 web01 api[2211]: {k}={v} accepted"), _ID),
    "single_quoted": lambda k, v: (_keyed(k, v, "received '{v}' from client", "received {k}='{v}' from client"), _ID),
    "double_quoted": lambda k, v: (_keyed(k, v, 'received "{v}" from client', 'received {k}="{v}" from client'), _ID),
    "backticks": lambda k, v: (_keyed(k, v, "received `{v}` from client", "received {k}=`{v}` from client"), _ID),
    "parentheses": lambda k, v: (_keyed(k, v, "login failed ({v}) for tenant 7", "login failed ({k}={v}) for tenant 7"), _ID),
    "brackets": lambda k, v: (_keyed(k, v, "login failed [{v}] for tenant 7", "login failed [{k}={v}] for tenant 7"), _ID),
    "then_period": lambda k, v: (_keyed(k, v, "Rejected {v}. Retrying", "Rejected {k}={v}. Retrying"), _ID),
    "then_comma": lambda k, v: (_keyed(k, v, "Rejected {v}, retrying", "Rejected {k}={v}, retrying"), _ID),
    "then_semicolon": lambda k, v: (_keyed(k, v, "Rejected {v}; retrying", "Rejected {k}={v}; retrying"), _ID),
    "line_start": lambda k, v: (_keyed(k, v, "{v} rejected by upstream", "{k}={v} rejected by upstream"), _ID),
    "line_end": lambda k, v: (_keyed(k, v, "upstream rejected {v}", "upstream rejected {k}={v}"), _ID),
}  # fmt: skip
TWO_VALUES = "two_values"  # `{k}={v1} {k2}={v2}`: the spelling and the next one of the same group
CONTEXT_NAMES = [*CONTEXTS, TWO_VALUES]


def _cases(group: str, spellings: list[Spelling]) -> list[Case]:
    out = []
    for i, sp in enumerate(spellings):
        key = sp.key or NEUTRAL_KEY
        for ctx, render in CONTEXTS.items():
            line, enc = render(key, sp.text)
            out.append(Case(group, sp.name, ctx, line, (enc(sp.secret),) if sp.secret else ()))
        other = spellings[(i + 1) % len(spellings)]
        line = f"{key}={sp.text} {other.key or NEUTRAL_KEY}={other.text}"
        out.append(Case(group, sp.name, TWO_VALUES, line, tuple(s for s in (sp.secret, other.secret) if s)))
    return out


def positives() -> list[Case]:
    return [c for group, sps in TYPES.items() for c in _cases(group, sps)]


def look_alikes() -> list[Case]:
    return [c for group, sps in LOOK_ALIKES.items() for c in _cases(group, sps)]


def info() -> list[Case]:
    return [c for group, sps in INFO_KINDS.items() for c in _cases(group, sps)]
