"""A third labelled corpus for the log redactor, written apart from the other two and before reading the rules.

tests/redaction_corpus.py was written with the rules and tests/redaction_corpus_heldout.py from common log
formats; this one stands in for *other people's* logs: the tools around a service rather than the service.
Server and proxy error logs (nginx, Apache, Postgres, MySQL), Kubernetes events and `kubectl get secret -o
yaml` dumps (base64 `data:`), Docker/compose env dumps, Terraform/Ansible output, CloudTrail and GCP audit
JSON, Python/Node/Go/Rust panics with request dumps, HTTP client debug output (curl -v, urllib3/http.client
`send: b'...\\r\\n...'`, axios error objects), CSV exports, CI logs (GitHub Actions `::add-mask::`, GitLab),
Azure SAS and S3/GCS presigned URLs, service-account JSON, .netrc/.pgpass/.npmrc/pip/git-remote
credentials, SMTP AUTH, cookies; PII in unusual spellings (lowercase and spaced IBANs, quoted or obfuscated
email addresses, national phone formats, IPv6 with zone ids and embedded IPv4, IPv4 with ports and CIDR);
high-entropy tokens standing alone with no key name. Look-alikes that must survive: UUIDs, ULIDs, git SHAs,
digests, SRI/npm integrity and go.sum hashes, k8s resource versions, trace/span ids, versions, timestamps,
durations, byte counts, paths, plain URLs, Luhn-invalid numbers, ISBNs, order numbers, masked PANs, base64
of readable text, already-masked values and templates.

Policy decisions this corpus encodes (docs/logging.md states them for users):
- a cookie's *value* in `Cookie:`/`Set-Cookie:` is sensitive (session ids, and tracking ids are personal
  data); its name and attributes (`Path=/; HttpOnly`) are not labelled either way;
- masked values (`********`, `***`, `[MASKED]`, `<redacted>`, `(sensitive value)`) and templates
  (`${DB_PASSWORD}`, `$TOKEN`, `{{ .Values.token }}`, `%(password)s`, `<PASSWORD>`) are look-alikes that must
  survive; a literal weak password (`changeme`, `admin`) after a password key is a password;
- a value under an explicit credential key is a secret even when shaped like a UUID (`_authToken=<uuid>`,
  legacy npm and Heroku keys are UUIDs); the same UUID under an id key is not;
- 127.0.0.1, 0.0.0.0, ::1 are not labelled (the redactor keeps them by default; they identify no one);
- a bare high-entropy token (>= 32 chars mixing upper case, lower case and digits) is a secret even without
  a key; hex strings (digests, SHAs, trace ids) and base64 that decodes to readable text are not.

Labels use tests/redaction_corpus.py's `Sample`: every sensitive value on a line is a positive span
(incidental ones too: an access log line's client address), every look-alike a negative span.
"""

# ruff: noqa: E501  (test data: long literal tokens and log lines)

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import random
import string
import uuid
from collections.abc import Callable
from urllib.parse import quote

from redaction_corpus import Sample
from redaction_corpus_heldout import _b64url, _crc_b62, _luhn, _r  # the same generators, not copies

LOWER = string.ascii_lowercase
UPPER = string.ascii_uppercase
DIGITS = string.digits
ALNUM = LOWER + UPPER + DIGITS
HEX = "0123456789abcdef"
B62 = DIGITS + UPPER + LOWER
B64 = ALNUM + "+/"
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

# A fragment: literal text, or (value, "type") for a positive, or (value, "~kind") for a look-alike.
Frag = str | tuple[str, str]


def mk(*frags: Frag) -> Sample:
    parts: list[str] = []
    sample = Sample("")
    pos = 0
    for f in frags:
        if isinstance(f, tuple):
            value, kind = f
            span = (pos, pos + len(value), kind.lstrip("~"))
            (sample.negatives if kind.startswith("~") else sample.positives).append(span)
        else:
            value = f
        parts.append(value)
        pos += len(value)
    sample.line = "".join(parts)
    return sample


def _mixed(rng: random.Random, alphabet: str, n: int) -> str:
    """Random string with at least one upper, one lower and one digit (what a random token almost always has)."""
    while True:
        s = _r(rng, alphabet, n)
        if any(c.isupper() for c in s) and any(c.islower() for c in s) and sum(c.isdigit() for c in s) >= 2:
            return s


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _ts(rng: random.Random) -> str:
    return f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z"


def _host(rng: random.Random) -> str:
    return rng.choice(
        [
            "db-primary",
            "pg-0.pg.svc",
            "mysql.internal",
            "api.example.com",
            "cache-2",
            "build-runner-7",
            "registry.example.org",
        ]
    )


def _user(rng: random.Random) -> str:
    return rng.choice(
        ["app", "deploy", "svc_billing", "jenkins", "ci", "ubuntu", "postgres", "reporting", "etl_user", "admin"]
    )


# ---------------------------------------------------------------------------------------------------------
# sensitive values
# ---------------------------------------------------------------------------------------------------------
_PW_WORDS = ["Autumn", "Orchid", "Falcon", "tiger", "Bluebird", "marmalade", "Quartz", "pepper", "Nimbus", "copper"]


def v_password(rng: random.Random) -> str:
    k = rng.randrange(7)
    if k == 0:
        return rng.choice(_PW_WORDS) + str(rng.randrange(10, 9999)) + rng.choice("!#$%*?@")
    if k == 1:
        return _mixed(rng, ALNUM + "!#%*+-._~", rng.randrange(12, 28))
    if k == 2:
        return rng.choice(_PW_WORDS).lower() + "-" + rng.choice(_PW_WORDS).lower() + "-" + str(rng.randrange(100))
    if k == 3:
        return _mixed(rng, ALNUM, rng.randrange(16, 33))
    if k == 4:
        return rng.choice(["changeme", "admin123", "P@ssw0rd", "letmein1", "Welcome1!", "s3cr3t"])
    if k == 5:
        return _b64url(rng.randbytes(rng.choice([18, 24, 32])))
    return rng.choice(_PW_WORDS) + "&" + rng.choice(_PW_WORDS) + "=" + str(rng.randrange(99))


def v_url_password(rng: random.Random) -> str:
    """A password that can sit in URL user-info (percent-encoding what would end it)."""
    return quote(v_password(rng), safe="!*-._~")


def v_token(rng: random.Random) -> str:
    """An opaque API token of no known provider (under a key name)."""
    k = rng.randrange(5)
    if k == 0:
        return _mixed(rng, ALNUM, rng.randrange(24, 49))
    if k == 1:
        return _r(rng, HEX, rng.choice([32, 40, 64]))
    if k == 2:
        return _b64url(rng.randbytes(rng.choice([24, 32, 48])))
    if k == 3:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return base64.b64encode(rng.randbytes(rng.choice([30, 33, 45]))).decode()


def v_bare_token(rng: random.Random) -> str:
    """A high-entropy token standing alone: mixed case and digits, >= 32 characters."""
    k = rng.randrange(3)
    if k == 0:
        return _mixed(rng, ALNUM, rng.randrange(32, 65))
    if k == 1:
        return _mixed(rng, ALNUM + "-_", 43)
    return _mixed(rng, ALNUM, 40)


def v_github(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return "github_pat_11" + _r(rng, UPPER + DIGITS, 20) + "_" + _r(rng, ALNUM, 59)
    body = _r(rng, ALNUM, 30)
    return rng.choice(["ghp_", "ghs_", "gho_"]) + body + _crc_b62(body)


def v_provider(rng: random.Random) -> str:
    k = rng.randrange(8)
    if k == 0:
        return v_github(rng)
    if k == 1:
        return "glpat-" + _r(rng, ALNUM + "_-", 20)
    if k == 2:
        body = _r(rng, ALNUM, 30)
        return "npm_" + body + _crc_b62(body)
    if k == 3:
        return "xoxb-" + _r(rng, DIGITS, 12) + "-" + _r(rng, DIGITS, 13) + "-" + _r(rng, ALNUM, 24)
    if k == 4:
        return "sk-proj-" + _r(rng, ALNUM + "_-", 48) + "T3BlbkFJ" + _r(rng, ALNUM + "_-", 48)
    if k == 5:
        return "hf_" + _r(rng, ALNUM, 34)
    if k == 6:
        return "sk_live_" + _r(rng, ALNUM, 24)
    return "pypi-AgEIcHlwaS5vcmc" + _r(rng, ALNUM + "-_", 60)


def v_aws_key_id(rng: random.Random) -> str:
    return rng.choice(["AKIA", "ASIA"]) + _r(rng, UPPER + "234567", 16)


def v_aws_secret(rng: random.Random) -> str:
    return _mixed(rng, B64, 40)


def v_jwt(rng: random.Random) -> str:
    header = _b64url(
        json.dumps({"alg": rng.choice(["RS256", "HS256", "ES256"]), "typ": "JWT", "kid": _r(rng, HEX, 8)}).encode()
    )
    claims = {"sub": str(rng.randrange(10**6)), "iat": 1764300000 + rng.randrange(10**6), "scope": "read write"}
    return f"{header}.{_b64url(json.dumps(claims).encode())}.{_b64url(rng.randbytes(rng.choice([32, 64, 256])))}"


def v_pem_escaped(rng: random.Random) -> str:
    body = base64.b64encode(b"\x30\x82\x04\xa4" + rng.randbytes(rng.choice([180, 300]))).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    kind = rng.choice(["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"])
    return f"-----BEGIN {kind}-----\\n" + "\\n".join(lines) + f"\\n-----END {kind}-----\\n"


def v_sig_b64(rng: random.Random) -> str:
    """An Azure SAS signature: base64 of an HMAC-SHA256, percent-encoded as it appears in a URL."""
    return quote(base64.b64encode(rng.randbytes(32)).decode(), safe="")


def v_cookie(rng: random.Random) -> str:
    k = rng.randrange(4)
    if k == 0:
        return _r(rng, LOWER + DIGITS, 32)
    if k == 1:
        return _b64url(rng.randbytes(rng.choice([24, 32, 48])))
    if k == 2:
        return "s%3A" + _mixed(rng, ALNUM + "-_", 32) + "." + _mixed(rng, ALNUM, 43)
    return f"GA1.2.{rng.randrange(10**9, 10**10)}.{rng.randrange(1700000000, 1770000000)}"


_FIRST = ["maria", "jonas", "aiko", "pierre", "lucia", "olu", "fatima", "sven", "mei", "rahul", "zoe", "tomasz"]
_LAST = ["okafor", "lindqvist", "tanaka", "dubois", "ferreira", "kowalski", "nguyen", "haddad", "obrien", "schmidt"]
_DOM = [
    "example.com",
    "mail.example.org",
    "corp.example.co.uk",
    "eu.example.io",
    "example.photography",
    "sub.dept.example.edu",
    "example-mail.de",
    "xn--bcher-kva.example",
]


def v_email(rng: random.Random) -> str:
    f, last, d = rng.choice(_FIRST), rng.choice(_LAST), rng.choice(_DOM)
    k = rng.randrange(14)
    if k == 0:
        return f"{f}.{last}+{rng.choice(['billing', 'ci', 'noreply-test', 'a.b'])}@{d}"
    if k == 1:
        return f'"{f} {last}"@{d}'
    if k == 2:
        return f"{f.upper()}.{last.upper()}@{d.upper()}"
    if k == 3:
        return f"{f}.{last} [at] {d.replace('.', ' [dot] ')}"
    if k == 4:
        return f"{f}(at){d.replace('.', '(dot)')}"
    if k == 5:
        return f"{f}.{last} at {d.replace('.', ' dot ')}"
    if k == 6:
        return f"{f}_{last}{rng.randrange(100)}@{d}"
    if k == 7:
        return f"{f[0]}@{d}"
    if k == 8:
        return (
            f"{f}.{last}@[{rng.randrange(11, 200)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}]"
        )
    if k == 9:
        return f"{f}-{last}@{d}"
    if k == 10:
        return f"{f}{{at}}{d}"
    if k == 11:
        return f"{f}.{last} AT {d.replace('.', ' DOT ')}"
    if k == 12:
        return f"{rng.randrange(10**5, 10**9)}@{d}"
    return f"{f}.{last}%2B{rng.choice(['ops', 'x'])}%40{d}"


def v_email_unquoted(rng: random.Random) -> str:
    """An address for a place a quoted local part cannot sit unescaped (a JSON string, a CSV field)."""
    while True:
        e = v_email(rng)
        if '"' not in e:
            return e


def _dg(rng: random.Random, n: int) -> str:
    return str(rng.randrange(1, 10)) + _r(rng, DIGITS, n - 1)


def v_phone(rng: random.Random) -> str:
    """E.164 and national formats (the national ones always appear next to a phone-ish key or word)."""
    a, e, n = rng.randrange(201, 990), rng.randrange(201, 1000), rng.randrange(10000)
    forms = [
        f"+1{a}{e}{n:04d}", f"+44{_dg(rng, 10)}", f"+4930{_dg(rng, 8)}", f"+33{rng.randrange(1, 8)}{_dg(rng, 8)}", f"+8190{_dg(rng, 8)}",
        f"({a}) {e}-{n:04d}", f"{a}-{e}-{n:04d}", f"{a}.{e}.{n:04d}", f"1-800-{e}-{n:04d}", f"+1 ({a}) {e}-{n:04d}",
        f"020 {_dg(rng, 4)} {_dg(rng, 4)}", f"07{_dg(rng, 3)} {_dg(rng, 6)}", f"030 {_dg(rng, 8)}", f"0151 {_dg(rng, 8)}",
        f"06 {_dg(rng, 2)} {_dg(rng, 2)} {_dg(rng, 2)} {_dg(rng, 2)}", f"01.{_dg(rng, 2)}.{_dg(rng, 2)}.{_dg(rng, 2)}.{_dg(rng, 2)}",
        f"03-{_dg(rng, 4)}-{_dg(rng, 4)}", f"090-{_dg(rng, 4)}-{_dg(rng, 4)}", f"(11) 9{_dg(rng, 4)}-{_dg(rng, 4)}",
        f"(02) {_dg(rng, 4)} {_dg(rng, 4)}", f"04{_dg(rng, 2)} {_dg(rng, 3)} {_dg(rng, 3)}", f"+91 {_dg(rng, 5)} {_dg(rng, 5)}",
        f"+86 138 {_dg(rng, 4)} {_dg(rng, 4)}", f"+49 (0)30 {_dg(rng, 7)}", f"+353 87 {_dg(rng, 3)} {_dg(rng, 4)}",
        f"+27 (0)21 {_dg(rng, 3)} {_dg(rng, 4)}", f"+61 4{_dg(rng, 2)} {_dg(rng, 3)} {_dg(rng, 3)}", f"+7 (495) {_dg(rng, 3)}-{_dg(rng, 2)}-{_dg(rng, 2)}",
    ]  # fmt: skip
    return rng.choice(forms)


def _group(digits: str, sizes: list[int], sep: str) -> str:
    out, i = [], 0
    for s in sizes:
        out.append(digits[i : i + s])
        i += s
    return sep.join(out)


def v_card(rng: random.Random) -> str:
    prefix, n = rng.choice(
        [
            ("4", 16),
            ("4", 16),
            ("51", 16),
            ("2223", 16),
            ("37", 15),
            ("6011", 16),
            ("36", 14),
            ("3530", 16),
            ("62", 19),
            ("4", 13),
        ]
    )
    digits = _luhn(rng, prefix, n)
    sep = rng.choice(["", " ", "-", " ", "  ", "-"])
    if not sep:
        return digits
    sizes = {15: [4, 6, 5], 14: [4, 6, 4], 13: [4, 4, 5], 16: [4, 4, 4, 4], 19: [4, 4, 4, 4, 3]}[n]
    return _group(digits, sizes, sep)


IBAN_LAYOUTS = {
    "DE": "18n", "GB": "4a14n", "FR": "10n11c2n", "NL": "4a10n", "ES": "20n", "IT": "1a10n12c", "CH": "5n12c", "BE": "12n",
    "AT": "16n", "PL": "24n", "SE": "20n", "NO": "11n", "DK": "14n", "FI": "14n", "IE": "4a14n", "PT": "21n", "LU": "3n13c",
    "SA": "2n18c", "AE": "19n", "BR": "23n1a1c", "TR": "6n16c", "MT": "4a5n18c", "GR": "7n16c", "RO": "4a16c", "CZ": "20n",
}  # fmt: skip


def _bban(rng: random.Random, layout: str) -> str:
    out, num = [], ""
    for ch in layout:
        if ch.isdigit():
            num += ch
            continue
        alphabet = {"n": DIGITS, "a": UPPER, "c": DIGITS * 3 + UPPER}[ch]
        out.append(_r(rng, alphabet, int(num)))
        num = ""
    return "".join(out)


def v_iban(rng: random.Random) -> str:
    country = rng.choice(list(IBAN_LAYOUTS))
    bban = _bban(rng, IBAN_LAYOUTS[country])
    check = 98 - int("".join(str(int(c, 36)) for c in bban + country + "00")) % 97
    iban = f"{country}{check:02d}{bban}"
    k = rng.randrange(5)
    if k in (1, 3):
        iban = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    if k in (2, 3):
        iban = iban.lower()
    if k == 4:
        iban = iban[:2] + iban[2:4] + "-" + "-".join(iban[i : i + 4] for i in range(4, len(iban), 4))
    return iban


def v_ipv4(rng: random.Random) -> str:
    while True:
        addr = ipaddress.IPv4Address(rng.getrandbits(32))
        if not (addr.is_loopback or addr.is_unspecified or addr.is_multicast or addr.is_reserved or addr.is_link_local):
            return str(addr)


def v_ipv6(rng: random.Random) -> str:
    g = [rng.getrandbits(16) for _ in range(8)]
    k = rng.randrange(6)
    if k == 0:
        return str(ipaddress.IPv6Address((0x2001 << 112) | (0x0DB8 << 96) | rng.getrandbits(64)))
    if k == 1:
        return f"64:ff9b::{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    if k == 2:
        return f"2a02:{g[1]:x}:{g[2]:x}::{g[7]:x}"
    if k == 3:
        return str(ipaddress.IPv6Address((0x2600 << 112) | rng.getrandbits(100))).upper()
    if k == 4:
        return ipaddress.IPv6Address((0x2001 << 112) | rng.getrandbits(96)).exploded
    return f"fe80::{g[5]:x}:{g[6]:x}:{g[7]:x}"


def v_ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randrange(1, 100):02d}-{rng.randrange(1, 10000):04d}"


# ---------------------------------------------------------------------------------------------------------
# look-alikes (must survive byte for byte)
# ---------------------------------------------------------------------------------------------------------
def n_uuid(rng: random.Random) -> Frag:
    return (str(uuid.UUID(int=rng.getrandbits(128), version=4)), "~uuid")


def n_sha(rng: random.Random) -> Frag:
    return (_r(rng, HEX, 40), "~git_sha")


def n_digest(rng: random.Random) -> Frag:
    return ("sha256:" + hashlib.sha256(rng.randbytes(8)).hexdigest(), "~digest")


def n_ulid(rng: random.Random) -> Frag:
    return ("01J" + _r(rng, CROCKFORD, 23), "~ulid")


def n_trace(rng: random.Random) -> Frag:
    return (_r(rng, HEX, 32), "~trace_id")


def n_span(rng: random.Random) -> Frag:
    return (_r(rng, HEX, 16), "~span_id")


def n_version(rng: random.Random) -> Frag:
    return (
        rng.choice(
            [
                f"v{rng.randrange(1, 5)}.{rng.randrange(30)}.{rng.randrange(20)}",
                f"{rng.randrange(1, 30)}.{rng.randrange(20)}.{rng.randrange(200)}-rc.{rng.randrange(5)}",
                f"1.{rng.randrange(20, 32)}.{rng.randrange(12)}-eks-{_r(rng, HEX, 7)}",
            ]
        ),
        "~version",
    )


def n_integrity(rng: random.Random) -> Frag:
    return (rng.choice(["sha512-", "sha384-"]) + base64.b64encode(rng.randbytes(48)).decode(), "~integrity")


def n_gosum(rng: random.Random) -> Frag:
    return ("h1:" + base64.b64encode(rng.randbytes(32)).decode(), "~gosum")


def n_b64text(rng: random.Random) -> Frag:
    text = rng.choice(
        [
            '{"event":"signup","plan":"pro","seats":12}',
            "hello world, this is a test payload",
            "Username:",
            "Password:",
            '{"kind":"heartbeat","ok":true}',
            "status=ok region=eu-west-1 node=7",
        ]
    )
    return (base64.b64encode(text.encode()).decode(), "~b64_text")


def n_masked(rng: random.Random) -> Frag:
    return (
        rng.choice(
            [
                "********",
                "***",
                "[MASKED]",
                "<redacted>",
                "[REDACTED]",
                "xxxxxxxx",
                "(sensitive value)",
                "[FILTERED]",
                "****",
            ]
        ),
        "~masked",
    )


def n_template(rng: random.Random) -> Frag:
    return (
        rng.choice(
            [
                "${DB_PASSWORD}",
                "$API_TOKEN",
                "{{ .Values.db.password }}",
                "%(password)s",
                "<PASSWORD>",
                "${{ secrets.NPM_TOKEN }}",
                "{{ vault_db_password }}",
                "$(cat /run/secrets/db)",
                "${env:API_KEY}",
            ]
        ),
        "~template",
    )


def n_order(rng: random.Random) -> Frag:
    while True:
        digits = _dg(rng, rng.choice([13, 15, 16]))
        if not _luhn_ok(digits):
            return (digits, "~luhn_invalid")


def n_isbn(rng: random.Random) -> Frag:
    body = "978" + _r(rng, DIGITS, 9)
    check = (10 - sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(body)) % 10) % 10
    s = body + str(check)
    return (rng.choice([s, f"{s[:3]}-{s[3]}-{s[4:7]}-{s[7:12]}-{s[12]}"]), "~isbn")


def n_masked_pan(rng: random.Random) -> Frag:
    return (rng.choice(["411111", "555555", "378282"]) + "******" + _r(rng, DIGITS, 4), "~masked_pan")


def n_resource_version(rng: random.Random) -> Frag:
    return (str(rng.randrange(10**6, 10**9)), "~resource_version")


def n_duration(rng: random.Random) -> Frag:
    return (
        rng.choice(
            [
                f"{rng.randrange(1, 999)}.{rng.randrange(1000):03d}ms",
                f"{rng.randrange(1, 59)}m{rng.randrange(60)}s",
                f"{rng.random():.6f}s",
                f"{rng.randrange(1, 9)}h{rng.randrange(60)}m",
            ]
        ),
        "~duration",
    )


def n_bytes(rng: random.Random) -> Frag:
    return (
        rng.choice(
            [
                f"{rng.randrange(1, 10**10)}",
                f"{rng.randrange(1, 999)}.{rng.randrange(10)}MiB",
                f"{rng.randrange(1, 64)}Gi",
            ]
        ),
        "~bytes",
    )


def n_path(rng: random.Random) -> Frag:
    return (
        rng.choice(
            [
                f"/var/lib/kubelet/pods/{uuid.UUID(int=rng.getrandbits(128), version=4)}/volumes",
                f"/home/{_user(rng)}/.cache/pip/wheels/{_r(rng, HEX, 2)}/{_r(rng, HEX, 2)}/{_r(rng, HEX, 56)}",
                f"C:\\Users\\build\\AppData\\Local\\Temp\\{_r(rng, UPPER + DIGITS, 8)}.tmp",
                "/usr/lib/python3.11/site-packages/urllib3/connectionpool.py",
            ]
        ),
        "~path",
    )


def n_url(rng: random.Random) -> Frag:
    return (
        rng.choice(
            [
                f"https://github.com/acme/api/commit/{_r(rng, HEX, 40)}",
                f"https://registry.npmjs.org/left-pad/-/left-pad-1.{rng.randrange(9)}.0.tgz",
                f"https://storage.googleapis.com/acme-artifacts/builds/{rng.randrange(10**6)}/app.tar.gz",
                "https://docs.example.com/v2/auth#tokens",
            ]
        ),
        "~url",
    )


def n_timestamp(rng: random.Random) -> Frag:
    return (
        rng.choice(
            [
                _ts(rng),
                str(1764300000 + rng.randrange(10**6)),
                str(1764300000000 + rng.randrange(10**9)),
                f"29/Nov/2026:{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d} +0000",
            ]
        ),
        "~timestamp",
    )


def n_oid(rng: random.Random) -> Frag:
    return (
        rng.choice(["1.3.6.1.4.1.311.21.8", "1.2.840.113549.1.1.11", f"1.3.6.1.2.1.2.2.1.{rng.randrange(1, 22)}"]),
        "~oid",
    )


def n_aws_id(rng: random.Random) -> Frag:
    return (rng.choice(["AIDA", "AROA", "ANPA", "AGPA"]) + _r(rng, UPPER + "234567", 17), "~aws_unique_id")


def n_container(rng: random.Random) -> Frag:
    return (_r(rng, HEX, 64), "~container_id")


NEGATIVES: dict[str, Callable[[random.Random], Frag]] = {
    "uuid": n_uuid, "git_sha": n_sha, "digest": n_digest, "ulid": n_ulid, "trace_id": n_trace, "span_id": n_span,
    "version": n_version, "integrity": n_integrity, "gosum": n_gosum, "b64_text": n_b64text, "masked": n_masked,
    "template": n_template, "luhn_invalid": n_order, "isbn": n_isbn, "masked_pan": n_masked_pan,
    "resource_version": n_resource_version, "duration": n_duration, "bytes": n_bytes, "path": n_path, "url": n_url,
    "timestamp": n_timestamp, "oid": n_oid, "aws_unique_id": n_aws_id, "container_id": n_container,
}  # fmt: skip
NEGATIVE_KINDS = list(NEGATIVES)


# ---------------------------------------------------------------------------------------------------------
# line families: each returns one labelled line
# ---------------------------------------------------------------------------------------------------------
def _nginx_ts(rng: random.Random) -> str:
    return f"2026/11/{rng.randrange(1, 29):02d} {rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"


def l_nginx(rng: random.Random) -> Sample:
    ip, ts = (v_ipv4(rng), "ipv4"), _nginx_ts(rng)
    k = rng.randrange(5)
    if k == 0:
        return mk(
            f"{ts} [error] {rng.randrange(100, 9999)}#{rng.randrange(100, 9999)}: *{rng.randrange(10**6)} upstream timed out (110: Connection timed out) while reading response header from upstream, client: ",
            ip,
            ', server: api.example.com, request: "GET /v1/reset?token=',
            (v_token(rng), "secret_token"),
            ' HTTP/1.1", upstream: "http://',
            (v_ipv4(rng), "ipv4"),
            ':8080/v1/reset", host: "api.example.com"',
        )
    if k == 1:
        return mk(
            f"{ts} [warn] {rng.randrange(100, 9999)}#0: *{rng.randrange(10**6)} a client request body is buffered to a temporary file /var/cache/nginx/client_temp/00000000{rng.randrange(10, 99)}, client: ",
            (v_ipv6(rng), "ipv6"),
            ', server: _, request: "POST /upload HTTP/2.0", host: "files.example.com"',
        )
    if k == 2:
        return mk(
            f"[{rng.choice(['Sun', 'Mon'])} Nov {rng.randrange(1, 29):02d} 02:11:05.{rng.randrange(10**6):06d} 2026] [auth_basic:error] [pid {rng.randrange(100, 99999)}] [client ",
            ip,
            f":{rng.randrange(1024, 65535)}] AH01618: user ",
            (v_email(rng), "email"),
            " not found: /admin",
        )
    if k == 3:
        return mk(
            f"[Sun Nov 29 02:11:05.{rng.randrange(10**6):06d} 2026] [proxy:error] [pid {rng.randrange(100, 99999)}:tid {rng.randrange(10**14, 10**15)}] (111)Connection refused: AH00957: http: attempt to connect to ",
            ip,
            ":8080 (",
            ip,
            ") failed",
        )
    return mk(
        ip,
        ' - - [29/Nov/2026:02:11:05 +0000] "GET /invite/accept/',
        (v_bare_token(rng), "bare_token"),
        ' HTTP/1.1" 302 0 "-" "curl/8.5.0" rt=0.004 trace=',
        n_trace(rng),
    )


def l_db(rng: random.Random) -> Sample:
    u, h = _user(rng), _host(rng)
    k = rng.randrange(8)
    ts = f"2026-11-29 02:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(1000):03d} UTC [{rng.randrange(100, 99999)}]"
    if k == 0:
        return mk(
            f"{ts} {u}@appdb LOG:  connection received: host=",
            (v_ipv4(rng), "ipv4"),
            f" port={rng.randrange(1024, 65535)}",
        )
    if k == 1:
        return mk(
            f'{ts} LOG:  could not connect using dsn "host={h} port=5432 dbname=appdb user={u} password=',
            (v_password(rng).replace('"', ""), "password"),
            ' sslmode=require"',
        )
    if k == 2:
        return mk(
            f"{ts} {u}@appdb STATEMENT:  CREATE ROLE {u} LOGIN PASSWORD '",
            (v_password(rng).replace("'", ""), "password"),
            "';",
        )
    if k == 3:
        return mk(
            f"2026-11-29T02:11:05.{rng.randrange(10**6):06d}Z 12 [Note] [MY-010914] [Server] Access denied for user '{u}'@'",
            (v_ipv4(rng), "ipv4"),
            "' (using password: YES)",
        )
    if k == 4:
        return mk(
            "sqlalchemy.exc.OperationalError: (psycopg2.OperationalError) connection to server failed; engine url postgresql+psycopg2://",
            u,
            ":",
            (v_url_password(rng), "url_password"),
            f"@{h}:5432/appdb?sslmode=require",
        )
    if k == 5:
        return mk(
            f"Error: connect ECONNREFUSED {h}:3306 (uri mysql://{u}:",
            (v_url_password(rng), "url_password"),
            f"@{h}:3306/shop?charset=utf8mb4)",
        )
    if k == 6:
        return mk(
            f"mongo: connecting to mongodb+srv://{u}:",
            (v_url_password(rng), "url_password"),
            f"@cluster0.{_r(rng, LOWER + DIGITS, 5)}.mongodb.net/?retryWrites=true&w=majority",
        )
    return mk(
        "redis: dial redis://default:",
        (v_url_password(rng), "url_password"),
        f"@{h}:6379/0 failed: i/o timeout after ",
        n_duration(rng),
    )


def l_k8s(rng: random.Random) -> Sample:
    k = rng.randrange(9)
    if k == 0:
        key = rng.choice(
            [
                "password",
                "db-password",
                "POSTGRES_PASSWORD",
                "api-token",
                "client-secret",
                "AWS_SECRET_ACCESS_KEY",
                "token",
                "redis-password",
            ]
        )
        return mk(f"  {key}: ", (base64.b64encode(v_password(rng).encode()).decode(), "k8s_secret"))
    if k == 1:
        return mk("  username: ", n_b64text(rng))
    if k == 2:
        auth = base64.b64encode(f"{_user(rng)}:{v_password(rng)}".encode()).decode()
        cfg = json.dumps({"auths": {"registry.example.org": {"auth": auth}}})
        return mk("  .dockerconfigjson: ", (base64.b64encode(cfg.encode()).decode(), "k8s_secret"))
    if k == 3:
        return mk(
            f"kubectl create secret generic {rng.choice(['db', 'api', 'smtp'])}-creds --from-literal=username={_user(rng)} --from-literal=password=",
            (v_password(rng).replace("'", "").replace('"', ""), "password"),
            " -n prod",
        )
    if k == 4:
        data = {"password": base64.b64encode(v_password(rng).encode()).decode()}
        line = '    kubectl.kubernetes.io/last-applied-configuration: {"apiVersion":"v1","data":{"password":"'
        return mk(
            line,
            (data["password"], "k8s_secret"),
            '"},"kind":"Secret","metadata":{"name":"db","namespace":"prod"},"type":"Opaque"}',
        )
    if k == 5:
        return mk('  resourceVersion: "', n_resource_version(rng), '"  uid: ', n_uuid(rng))
    if k == 6:
        return mk(
            f'{rng.randrange(1, 59)}m  Warning  Failed  pod/api-{_r(rng, LOWER + DIGITS, 10)}-{_r(rng, LOWER + DIGITS, 5)}  Failed to pull image "registry.example.org/api@',
            n_digest(rng),
            '": rpc error: code = Unknown desc = unauthorized',
        )
    if k == 7:
        return mk(
            "  tls.key: ", (base64.b64encode(v_pem_escaped(rng).replace("\\n", "\n").encode()).decode(), "k8s_secret")
        )
    return mk(
        f'I1129 02:11:05.{rng.randrange(10**6):06d}       1 event.go:307] "Event occurred" object="prod/api" kind="Deployment" apiVersion="apps/v1" type="Normal" reason="ScalingReplicaSet" message="Scaled up replica set api-{_r(rng, LOWER + DIGITS, 10)} to 3" traceID=',
        n_trace(rng),
    )


def l_docker(rng: random.Random) -> Sample:
    k = rng.randrange(6)
    if k == 0:
        return mk(
            '            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin", "POSTGRES_PASSWORD=',
            (v_password(rng).replace('"', ""), "password"),
            '", "PGDATA=/var/lib/postgresql/data"],',
        )
    if k == 1:
        return mk(
            "      MYSQL_ROOT_PASSWORD: ",
            (v_password(rng).replace("'", "").replace('"', "").replace("#", ""), "password"),
        )
    if k == 2:
        return mk(
            "docker run -d -e AWS_ACCESS_KEY_ID=",
            (v_aws_key_id(rng), "aws_key_id"),
            " -e AWS_SECRET_ACCESS_KEY=",
            (v_aws_secret(rng), "aws_secret"),
            " acme/uploader:",
            n_version(rng),
        )
    if k == 3:
        return mk(
            f"{_user(rng)}@build:~$ echo ",
            (v_bare_token(rng), "bare_token"),
            f" | docker login registry.example.org -u {_user(rng)} --password-stdin",
        )
    if k == 4:
        return mk(
            '        "auth": "',
            (base64.b64encode(f"{_user(rng)}:{v_password(rng)}".encode()).decode(), "password"),
            '"',
        )
    return mk(
        "      DATABASE_URL: postgres://",
        _user(rng),
        ":",
        (v_url_password(rng), "url_password"),
        f"@{_host(rng)}:5432/app",
    )


def l_terraform(rng: random.Random) -> Sample:
    k = rng.randrange(7)
    if k == 0:
        return mk("      + master_password = ", ("(sensitive value)", "~masked"))
    if k == 1:
        return mk(
            '      ~ password = "',
            (v_password(rng).replace('"', ""), "password"),
            '" -> "',
            (v_password(rng).replace('"', ""), "password"),
            '"',
        )
    if k == 2:
        return mk('api_key = "', (v_token(rng), "secret_token"), '"')
    if k == 3:
        date = f"2026112{rng.randrange(10)}"
        return mk(
            f'2026-11-29T02:11:05.{rng.randrange(1000):03d}Z [DEBUG] provider.terraform-provider-aws_v5.31.0_x5: HTTP Request Sent: http.method=POST Authorization="AWS4-HMAC-SHA256 Credential=',
            (v_aws_key_id(rng), "aws_key_id"),
            f"/{date}/us-east-1/sts/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=",
            (_r(rng, HEX, 64), "url_signature"),
            '"',
        )
    if k == 4:
        return mk(
            "ok: [web-",
            str(rng.randrange(1, 9)),
            "] => (item={'name': '",
            _user(rng),
            "', 'password': '",
            (v_password(rng).replace("'", ""), "password"),
            "', 'priv': '*.*:ALL'})",
        )
    if k == 5:
        return mk(
            'ok: [db-1] => {"censored": "the output has been hidden due to the fact that \'no_log: true\' was specified for this result", "changed": false}'
        )
    return mk("aws_iam_access_key.ci: Creation complete after 1s [id=", (v_aws_key_id(rng), "aws_key_id"), "]")


def l_audit(rng: random.Random) -> Sample:
    k = rng.randrange(3)
    acct = str(rng.randrange(10**11, 10**12))
    if k == 0:
        return mk(
            '{"eventVersion":"1.09","userIdentity":{"type":"IAMUser","principalId":"',
            n_aws_id(rng),
            f'","arn":"arn:aws:iam::{acct}:user/{_user(rng)}","accountId":"{acct}","accessKeyId":"',
            (v_aws_key_id(rng), "aws_key_id"),
            '"},"eventTime":"',
            n_timestamp(rng),
            '","eventSource":"iam.amazonaws.com","eventName":"CreateAccessKey","sourceIPAddress":"',
            (v_ipv4(rng), "ipv4"),
            '","userAgent":"aws-cli/2.15.0 Python/3.11.6","responseElements":{"accessKey":{"accessKeyId":"',
            (v_aws_key_id(rng), "aws_key_id"),
            '","status":"Active","secretAccessKey":"',
            (v_aws_secret(rng), "aws_secret"),
            '"}},"requestID":"',
            n_uuid(rng),
            '","eventID":"',
            n_uuid(rng),
            '"}',
        )
    if k == 1:
        return mk(
            '{"protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","authenticationInfo":{"principalEmail":"',
            (v_email_unquoted(rng), "email"),
            '"},"requestMetadata":{"callerIp":"',
            (v_ipv6(rng), "ipv6") if rng.random() < 0.4 else (v_ipv4(rng), "ipv4"),
            '","callerSuppliedUserAgent":"google-cloud-sdk gcloud/456.0.0"},"serviceName":"iam.googleapis.com","methodName":"google.iam.admin.v1.CreateServiceAccountKey"},"insertId":"',
            "-1x2y3z",
            '","timestamp":"',
            n_timestamp(rng),
            '"}',
        )
    return mk(
        '{"type": "service_account", "project_id": "acme-prod", "private_key": "',
        (v_pem_escaped(rng), "private_key"),
        '", "client_email": "',
        ("deployer@acme-prod.iam.gserviceaccount.com", "email"),
        '", "client_id": "',
        str(rng.randrange(10**20, 10**21)),
        '"}',
    )


def l_panic(rng: random.Random) -> Sample:
    k = rng.randrange(7)
    if k == 0:
        return mk(
            "requests.exceptions.HTTPError: 401 Client Error: Unauthorized for url: https://api.example.com/v2/items?page=2&api_key=",
            (v_token(rng), "secret_token"),
        )
    if k == 1:
        return mk(
            "send: b'GET /v1/me HTTP/1.1\\r\\nHost: api.example.com\\r\\nUser-Agent: python-requests/2.32.3\\r\\nAuthorization: Bearer ",
            (v_bare_token(rng) if rng.random() < 0.5 else v_jwt(rng), "authorization"),
            "\\r\\nCookie: sessionid=",
            (v_cookie(rng), "cookie"),
            "\\r\\nAccept: */*\\r\\n\\r\\n'",
        )
    if k == 2:
        return mk(
            '&http.Request{Method:"POST", URL:(*url.URL)(0xc000132000), Header:http.Header{"Authorization":[]string{"Bearer ',
            (v_token(rng), "authorization"),
            '"}, "Content-Type":[]string{"application/json"}}, ContentLength:',
            n_bytes(rng),
            "}",
        )
    if k == 3:
        return mk(
            "thread 'main' panicked at src/config.rs:42:9:\ncalled `Result::unwrap()` on an `Err` value: Config { database_url: \"postgres://app:",
            (v_url_password(rng), "url_password"),
            f'@{_host(rng)}/app", api_token: "',
            (v_bare_token(rng), "secret_token"),
            '" }'.replace("\n", " "),
        )
    if k == 4:
        return mk(
            "AxiosError: Request failed with status code 403 { config: { headers: { Accept: 'application/json', Authorization: 'Bearer ",
            (v_token(rng), "authorization"),
            "', 'X-Api-Key': '",
            (v_token(rng), "secret_token"),
            "' }, auth: { username: '",
            _user(rng),
            "', password: '",
            (v_password(rng).replace("'", ""), "password"),
            "' } } }",
        )
    if k == 5:
        return mk(
            "Traceback (most recent call last): ... KeyError: 'session' locals: {'client_secret': '",
            (v_token(rng), "secret_token"),
            "', 'request_id': '",
            n_uuid(rng),
            "', 'elapsed': '",
            n_duration(rng),
            "'}",
        )
    return mk(
        "goroutine 17 [running]:\nmain.(*Server).auth(0xc0000a2000, {0xc00001e0c0, 0x28})".replace("\n", " "),
        " token=",
        (v_provider(rng), "provider_token"),
        " span=",
        n_span(rng),
    )


def l_http_debug(rng: random.Random) -> Sample:
    k = rng.randrange(7)
    if k == 0:
        return mk(
            "> Authorization: Basic ",
            (base64.b64encode(f"{_user(rng)}:{v_password(rng)}".encode()).decode(), "authorization"),
        )
    if k == 1:
        return mk(
            "< set-cookie: ",
            rng.choice(["sessionid", "_session_id", "connect.sid", "JSESSIONID", "__Host-session"]),
            "=",
            (v_cookie(rng), "cookie"),
            "; Path=/; Expires=Sun, 06 Dec 2026 02:11:05 GMT; HttpOnly; Secure; SameSite=Lax",
        )
    if k == 2:
        return mk(
            "> Cookie: _ga=",
            (v_cookie(rng), "cookie"),
            "; csrftoken=",
            (_mixed(rng, ALNUM, 32), "cookie"),
            "; session=",
            (v_cookie(rng), "cookie"),
        )
    if k == 3:
        return mk(
            "DEBUG:urllib3.connectionpool:https://",
            (v_ipv4(rng), "ipv4"),
            ':443 "POST /oauth/token HTTP/1.1" 200 ',
            n_bytes(rng),
        )
    if k == 4:
        return mk("* Connected to api.example.com (", (v_ipv6(rng), "ipv6"), ") port 443")
    if k == 5:
        return mk("* Server auth using Bearer with user '", (v_email_unquoted(rng), "email"), "'")
    return mk("> X-Auth-Token: ", (v_token(rng), "secret_token"))


def l_urls(rng: random.Random) -> Sample:
    k = rng.randrange(7)
    acct = rng.choice(["acmeprod", "stlogs01", "backupsweu"])
    if k == 0:
        return mk(
            f"uploading to https://{acct}.blob.core.windows.net/exports/2026/11/report.csv?sv=2022-11-02&ss=b&srt=co&sp=rwdlac&se=2026-12-01T00:00:00Z&st=2026-11-29T00:00:00Z&spr=https&sig=",
            (v_sig_b64(rng), "url_signature"),
        )
    if k in (1, 2):
        akid = v_aws_key_id(rng)
        return mk(
            f"GET https://acme-exports.s3.eu-west-1.amazonaws.com/reports/{rng.randrange(10**6)}.pdf?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=",
            (akid, "aws_key_id"),
            "%2F20261129%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Date=20261129T021105Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=",
            (_r(rng, HEX, 64), "url_signature"),
            " -> 200",
        )
    if k == 3:
        sa = quote("signer@acme-prod.iam.gserviceaccount.com", safe="")
        return mk(
            "signed url: https://storage.googleapis.com/acme-artifacts/app.tar.gz?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=",
            (sa, "email"),
            "%2F20261129%2Fauto%2Fstorage%2Fgoog4_request&X-Goog-Date=20261129T021105Z&X-Goog-Expires=900&X-Goog-SignedHeaders=host&X-Goog-Signature=",
            (_r(rng, HEX, 512), "url_signature"),
        )
    if k == 4:
        return mk(
            "remote: origin\thttps://x-access-token:",
            (v_github(rng), "provider_token"),
            "@github.com/acme/api.git (fetch)",
        )
    if k == 5:
        return mk(
            "Cloning into 'api'... git clone https://oauth2:",
            (v_bare_token(rng), "url_password"),
            "@gitlab.example.com/acme/api.git",
        )
    return mk("  Looking in indexes: https://", _user(rng), ":", ("****", "~masked"), "@pypi.example.com/simple")


def l_dotfiles(rng: random.Random) -> Sample:
    u, h = _user(rng), _host(rng)
    k = rng.randrange(7)
    if k == 0:
        return mk(f"machine {h} login {u} password ", (v_password(rng), "password"))
    if k == 1:
        return mk(f"{h}:5432:appdb:{u}:", (v_password(rng).replace(":", "").replace("\\", ""), "password"))
    if k == 2:
        return mk(
            "//registry.npmjs.org/:_authToken=",
            (
                v_provider(rng) if rng.random() < 0.3 else str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "secret_token",
            ),
        )
    if k == 3:
        return mk("//npm.pkg.example.org/:_authToken=", n_template(rng))
    if k == 4:
        return mk(
            f"+ pip install --index-url https://{u}:",
            (v_url_password(rng), "url_password"),
            "@pypi.example.com/simple/ acme-core==",
            n_version(rng),
        )
    if k == 5:
        return mk(
            "send: 'AUTH PLAIN ",
            (base64.b64encode(f"\0{u}@example.com\0{v_password(rng)}".encode()).decode(), "authorization"),
            "\\r\\n'",
        )
    return mk("reply: b'334 ", ("VXNlcm5hbWU6", "~b64_text"), "\\r\\n'")


def l_ci(rng: random.Random) -> Sample:
    k = rng.randrange(7)
    if k == 0:
        return mk(
            f"2026-11-29T02:11:{rng.randrange(60):02d}.{rng.randrange(10**7):07d}Z ::add-mask::",
            (v_bare_token(rng) if rng.random() < 0.5 else v_token(rng), "secret_token"),
        )
    if k == 1:
        return mk("2026-11-29T02:11:05.1234567Z   NPM_TOKEN: ", ("***", "~masked"))
    if k == 2:
        return mk(
            "Fetching changes with git depth set to 20...\tremote: https://gitlab-ci-token:",
            ("[MASKED]", "~masked"),
            "@gitlab.example.com/acme/api.git",
        )
    if k == 3:
        return mk(
            "$ git remote set-url origin https://gitlab-ci-token:",
            ("glcbt-" + _r(rng, ALNUM + "_-", 20), "provider_token"),
            "@gitlab.example.com/acme/api.git",
        )
    if k == 4:
        return mk('##[group]Run echo "::add-mask::', n_template(rng), '"')
    if k == 5:
        return mk(
            "Step 4/9 : RUN pip install -r requirements.txt  ---> Using cache  ---> ",
            (_r(rng, HEX, 12), "~container_id"),
            " took ",
            n_duration(rng),
        )
    return mk("deploy.sh: calling webhook with ", (v_bare_token(rng), "bare_token"), " for env=prod")


def l_csv(rng: random.Random) -> Sample:
    k = rng.randrange(3)
    if k == 0:
        return mk(
            f"{rng.randrange(1, 10**6)},{rng.choice(_FIRST).title()} {rng.choice(_LAST).title()},",
            (v_email_unquoted(rng), "email"),
            ",",
            (v_phone(rng).replace(",", ""), "phone"),
            ",",
            (v_iban(rng), "iban"),
            f",{_ts(rng)}",
        )
    if k == 1:
        return mk(
            f'"{rng.randrange(1, 10**6)}";"',
            (v_card(rng), "credit_card"),
            '";"',
            n_order(rng),
            '";"',
            f"{rng.randrange(1, 999)}.{rng.randrange(100):02d}",
            '";"EUR"',
        )
    return mk("order_id,isbn,qty\n".replace("\n", " "), n_order(rng), ",", n_isbn(rng), f",{rng.randrange(1, 9)}")


def l_pii_prose(rng: random.Random) -> Sample:
    k = rng.randrange(14)
    if k == 0:
        return mk("notification queued for ", (v_email(rng), "email"), " (template=welcome)")
    if k == 1:
        return mk("From: Support <", (v_email_unquoted(rng), "email"), "> To: ", (v_email(rng), "email"))
    if k == 2:
        return mk("sms gateway: delivered to ", (v_phone(rng), "phone"), " in ", n_duration(rng))
    if k == 3:
        return mk(
            '{"customer":{"phone":"', (v_phone(rng), "phone"), '","email":"', (v_email_unquoted(rng), "email"), '"}}'
        )
    if k == 4:
        return mk("payment method updated: card ", (v_card(rng), "credit_card"), " exp 09/29")
    if k == 5:
        return mk('{"pan": "', (v_card(rng), "credit_card"), '", "masked": "', n_masked_pan(rng), '"}')
    if k == 6:
        return mk("SEPA mandate created iban=", (v_iban(rng), "iban"), " bic=DEUTDEFF")
    if k == 7:
        return mk("payout to ", (v_iban(rng), "iban"), " scheduled")
    if k == 8:
        return mk(
            "listener on ",
            (v_ipv4(rng), "ipv4"),
            f":{rng.randrange(1024, 65535)} accepted from ",
            (v_ipv4(rng), "ipv4"),
            f":{rng.randrange(1024, 65535)}",
        )
    if k == 9:
        return mk(
            "allow ",
            (v_ipv4(rng).rsplit(".", 1)[0] + ".0", "ipv4"),
            f"/{rng.choice([16, 20, 24])} and ",
            (f"2001:db8:{rng.getrandbits(16):x}::", "ipv6"),
            "/48",
        )
    if k == 10:
        g = [rng.getrandbits(16) for _ in range(3)]
        return mk(
            "neighbor ",
            (f"fe80::{g[0]:x}:{g[1]:x}:{g[2]:x}", "ipv6"),
            f"%{rng.choice(['eth0', 'ens5', 'en0'])} reachable",
        )
    if k == 11:
        return mk("upstream http://[", (v_ipv6(rng), "ipv6"), "]:8443/healthz ok")
    if k == 12:
        return mk("Mobile: ", (v_phone(rng), "phone"), " / Tel. ", (v_phone(rng), "phone"))
    return mk("applicant ssn=", (v_ssn(rng), "ssn"), " verified")


def l_bare(rng: random.Random) -> Sample:
    """Prefix-less tokens with no key name, and next to them the high-entropy look-alikes that must survive."""
    k = rng.randrange(6)
    if k == 0:
        return mk("retrying with ", (v_bare_token(rng), "bare_token"), " after ", n_duration(rng))
    if k == 1:
        return mk((v_bare_token(rng), "bare_token"))
    if k == 2:
        return mk('"args": ["--verbose", "', (v_bare_token(rng), "bare_token"), '", "--region", "eu-west-1"]')
    if k == 3:
        return mk("GET https://hooks.example.net/trigger/", (v_bare_token(rng), "bare_token"), " 204")
    if k == 4:
        return mk('"integrity": "', n_integrity(rng), '", "resolved": "', n_url(rng), '"')
    return mk("github.com/acme/lib v1.4.2 ", n_gosum(rng))


def l_negative(rng: random.Random) -> Sample:
    """Look-alikes, several per line, in the same formats as the positives."""
    kind = rng.choice(NEGATIVE_KINDS)
    neg = NEGATIVES[kind]
    k = rng.randrange(10)
    if k == 0:
        return mk(f'{_ts(rng)} level=info msg="done" {kind}=', neg(rng), " elapsed=", n_duration(rng))
    if k == 1:
        return mk(
            '{"level":"debug","',
            kind,
            '":"',
            neg(rng),
            '","trace_id":"',
            n_trace(rng),
            '","span_id":"',
            n_span(rng),
            '"}',
        )
    if k == 2:
        return mk("  password: ", n_masked(rng))
    if k == 3:
        return mk("DB_PASSWORD=", n_template(rng), " API_TOKEN=", n_template(rng))
    if k == 4:
        return mk("  metadata.resourceVersion: ", n_resource_version(rng), " image: ", n_digest(rng))
    if k == 5:
        return mk("book ", n_isbn(rng), " order ", n_order(rng), " card ", n_masked_pan(rng))
    if k == 6:
        return mk("snmp ", n_oid(rng), " from ", n_path(rng))
    if k == 7:
        return mk("build ", n_version(rng), " at ", n_url(rng), " wrote ", n_bytes(rng))
    if k == 8:
        return mk("payload=", n_b64text(rng), " ulid=", n_ulid(rng), " container=", n_container(rng))
    return mk(f"token_type=Bearer expires_in=3600 {kind}: ", neg(rng))


FAMILIES: dict[str, Callable[[random.Random], Sample]] = {
    "nginx": l_nginx, "db": l_db, "k8s": l_k8s, "docker": l_docker, "terraform": l_terraform, "audit": l_audit,
    "panic": l_panic, "http_debug": l_http_debug, "urls": l_urls, "dotfiles": l_dotfiles, "ci": l_ci, "csv": l_csv,
    "pii": l_pii_prose, "bare": l_bare, "negative": l_negative,
}  # fmt: skip
WEIGHTS = {"pii": 6, "negative": 4, "bare": 2}


def generate(seed: int = 2026, lines: int = 4000) -> list[Sample]:
    """`lines` labelled lines drawn from the families above (PII and look-alike lines weighted up)."""
    rng = random.Random(seed)
    names = [n for n in FAMILIES for _ in range(WEIGHTS.get(n, 1))]
    return [FAMILIES[rng.choice(names)](rng) for _ in range(lines)]


def all_types(samples: list[Sample]) -> set[str]:
    return {kind for s in samples for _, _, kind in s.positives}
