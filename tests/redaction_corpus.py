"""A generated, labelled corpus of log lines for measuring redaction recall and precision.

Every value is synthesised with the structure its issuer gives it (prefixes, lengths, alphabets, CRC32
checksums, Luhn and mod-97 check digits, real JWT headers) from a fixed seed, then placed into log lines
of many shapes: plain text, logfmt `k=v`, JSON (also JSON-in-a-string with escaped quotes), HTTP header
dumps, YAML/env files, CLI invocations, at the start, middle or end of the line, quoted or not. Each sample
records the character spans of its sensitive values (positives, with their type) and of the look-alikes
that must survive byte for byte (negatives, with their kind).

The generator knows nothing of the redactor's rules: formats come from issuer documentation, and the line
shapes are those of common logging stacks (uvicorn, logfmt, structlog JSON, nginx, syslog).
"""

# ruff: noqa: E501  (test data: long literal tokens and log lines)

from __future__ import annotations

import base64
import ipaddress
import json
import random
import string
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
LOWER = string.ascii_lowercase
UPPER = string.ascii_uppercase
DIGITS = string.digits
ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
HEX = "0123456789abcdef"


@dataclass
class Sample:
    line: str
    positives: list[tuple[int, int, str]] = field(default_factory=list)
    negatives: list[tuple[int, int, str]] = field(default_factory=list)


def weighted_families(
    families: dict[str, Callable[[random.Random], Sample]], weights: dict[str, int], seed: int, lines: int
) -> list[Sample]:
    """`lines` samples, each from a family drawn with its weight (1 unless given): the generators' shared loop."""
    rng = random.Random(seed)
    names = [n for n in families for _ in range(weights.get(n, 1))]
    return [families[rng.choice(names)](rng) for _ in range(lines)]


def all_types(samples: list[Sample]) -> set[str]:
    return {kind for s in samples for _, _, kind in s.positives}


def negative_kinds(samples: list[Sample]) -> set[str]:
    return {kind for s in samples for _, _, kind in s.negatives}


def check_labels(samples: list[Sample]) -> None:
    """Spans are well-formed: inside the line, non-empty, positives never overlapping negatives."""
    for sample in samples:
        for start, end, _ in sample.positives + sample.negatives:
            assert 0 <= start < end <= len(sample.line), sample.line
        for ps, pe, _ in sample.positives:
            assert not any(ns < pe and ps < ne for ns, ne, _ in sample.negatives), sample.line


def check_redacted(samples: list[Sample], redact: Callable[[str], str]) -> None:
    """Beyond span coverage: no positive value survives in the output, every look-alike does verbatim, and
    the number of lines is unchanged (multi-line PEM blocks)."""
    for sample in samples:
        out = redact(sample.line)
        for start, end, kind in sample.positives:
            assert sample.line[start:end] not in out, f"{kind} survived: {out!r}"
        for start, end, kind in sample.negatives:
            assert sample.line[start:end] in out, f"{kind} was altered: {sample.line!r} -> {out!r}"
        assert out.count("\n") == sample.line.count("\n")


class _Builder:
    """Builds one line from literal text and labelled fragments, tracking their spans."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0
        self.sample = Sample("")

    def text(self, s: str) -> _Builder:
        self.parts.append(s)
        self.pos += len(s)
        return self

    def pos_(self, value: str, kind: str) -> _Builder:
        self.sample.positives.append((self.pos, self.pos + len(value), kind))
        return self.text(value)

    def neg(self, value: str, kind: str) -> _Builder:
        self.sample.negatives.append((self.pos, self.pos + len(value), kind))
        return self.text(value)

    def build(self) -> Sample:
        self.sample.line = "".join(self.parts)
        return self.sample


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def mixed(rng: random.Random, alphabet: str, n: int) -> str:
    """A random string with an upper, a lower and two digits (what a random token almost always has)."""
    while True:
        s = _rand(rng, alphabet, n)
        if any(c.isupper() for c in s) and any(c.islower() for c in s) and sum(c.isdigit() for c in s) >= 2:
            return s


def b62_crc32(data: str) -> str:
    n = zlib.crc32(data.encode())
    out = ""
    while n:
        n, r = divmod(n, 62)
        out = B62[r] + out
    return out.rjust(6, "0")


def _checksummed(rng: random.Random, prefix: str) -> str:
    body = _rand(rng, ALNUM, 30)
    return prefix + body + b62_crc32(body)


def _luhn_complete(rng: random.Random, prefix: str, length: int) -> str:
    digits = prefix + _rand(rng, string.digits, length - len(prefix) - 1)
    for check in string.digits:
        cand = digits + check
        total = 0
        for i, ch in enumerate(reversed(cand)):
            d = int(ch)
            if i % 2:
                d = d * 2 - 9 if d * 2 > 9 else d * 2
            total += d
        if total % 10 == 0:
            return cand
    raise AssertionError("unreachable")


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return total % 10 == 0


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# ---------------------------------------------------------------------------------------------------------
# value generators: rng -> value
# ---------------------------------------------------------------------------------------------------------
def gen_aws_key_id(rng: random.Random) -> str:
    return rng.choice(["AKIA", "ASIA", "AKIA", "ABIA", "ACCA"]) + _rand(rng, string.ascii_uppercase + "234567", 16)


def gen_aws_secret(rng: random.Random) -> str:
    return _rand(rng, B64, 40)


def gen_gcp_key(rng: random.Random) -> str:
    return "AIza" + _rand(rng, ALNUM + "-_", 35)


def gen_azure_storage_key(rng: random.Random) -> str:
    return base64.b64encode(rng.randbytes(64)).decode()


def gen_azure_sb_key(rng: random.Random) -> str:
    return base64.b64encode(rng.randbytes(32)).decode()


def gen_github(rng: random.Random) -> str:
    if rng.random() < 0.25:
        return "github_pat_" + _rand(rng, ALNUM, 22) + "_" + _rand(rng, ALNUM, 59)
    return _checksummed(rng, rng.choice(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]))


def gen_gitlab(rng: random.Random) -> str:
    return rng.choice(["glpat-", "glpat-", "gldt-", "glrt-"]) + _rand(rng, ALNUM + "-_", 20)


def gen_slack_token(rng: random.Random) -> str:
    kind = rng.choice(["xoxb", "xoxp", "xoxa-2", "xoxs"])
    ids = f"{rng.randrange(10**10, 10**12)}-{rng.randrange(10**10, 10**13)}"
    if kind == "xoxp":
        return f"xoxp-{ids}-{rng.randrange(10**10, 10**12)}-{_rand(rng, HEX, 32)}"
    return f"{kind}-{ids}-{_rand(rng, ALNUM, 24)}"


def gen_slack_webhook(rng: random.Random) -> str:
    return (
        f"T{_rand(rng, string.ascii_uppercase + string.digits, 8)}/B{_rand(rng, string.ascii_uppercase + string.digits, 10)}"
        f"/{_rand(rng, ALNUM, 24)}"
    )


def gen_stripe(rng: random.Random) -> str:
    return rng.choice(["sk_live_", "rk_live_", "sk_test_"]) + _rand(rng, ALNUM, rng.choice([24, 34, 99]))


def gen_openai(rng: random.Random) -> str:
    style = rng.randrange(3)
    if style == 0:
        return "sk-proj-" + _rand(rng, ALNUM + "-_", 74) + "T3BlbkFJ" + _rand(rng, ALNUM + "-_", 74)
    if style == 1:
        return "sk-" + _rand(rng, ALNUM, 20) + "T3BlbkFJ" + _rand(rng, ALNUM, 20)
    return "sk-" + _rand(rng, ALNUM, 48)


def gen_anthropic(rng: random.Random) -> str:
    return "sk-ant-api03-" + _rand(rng, ALNUM + "-_", 93) + "AA"


def gen_hf(rng: random.Random) -> str:
    return "hf_" + _rand(rng, string.ascii_letters, 34)


def gen_npm(rng: random.Random) -> str:
    return _checksummed(rng, "npm_")


def gen_sendgrid(rng: random.Random) -> str:
    return "SG." + _rand(rng, ALNUM + "-_", 22) + "." + _rand(rng, ALNUM + "-_", 43)


def gen_cleanroom(rng: random.Random) -> str:
    return _checksummed(rng, "cr_")


def gen_jwt(rng: random.Random) -> str:
    header = {"alg": rng.choice(["HS256", "RS256", "ES256"]), "typ": "JWT"}
    if rng.random() < 0.3:
        header["kid"] = _rand(rng, HEX, 16)
    payload = {
        "sub": str(rng.randrange(10**6, 10**9)),
        "iat": rng.randrange(1_600_000_000, 1_800_000_000),
        "scope": rng.choice(["read", "read write", "admin"]),
    }
    sig_len = {"HS256": 32, "RS256": 256, "ES256": 64}[header["alg"]]
    return ".".join(
        [_b64url(json.dumps(header).encode()), _b64url(json.dumps(payload).encode()), _b64url(rng.randbytes(sig_len))]
    )


def gen_pem(rng: random.Random) -> str:
    kind = rng.choice(
        ["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "ENCRYPTED PRIVATE KEY"]
    )
    body = base64.b64encode(rng.randbytes(rng.choice([121, 240, 600]))).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----"


_WORDS = [
    "blue",
    "horse",
    "battery",
    "staple",
    "orange",
    "river",
    "maple",
    "cloud",
    "tiger",
    "delta",
    "summer",
    "winter",
]


def gen_password(rng: random.Random) -> str:
    style = rng.randrange(4)
    if style == 0:
        return rng.choice(_WORDS).capitalize() + str(rng.randrange(10, 9999)) + rng.choice("!@#$%&*?")
    if style == 1:
        return _rand(rng, ALNUM + "!#%&*+-=?@^_", rng.randrange(10, 24))
    if style == 2:
        return "-".join(rng.choice(_WORDS) for _ in range(3)) + str(rng.randrange(10))
    return _rand(rng, string.ascii_lowercase, 6) + str(rng.randrange(1, 99))


def gen_url_password(rng: random.Random) -> str:
    return _rand(rng, ALNUM, rng.randrange(8, 20)) + rng.choice(["", "!", "%40x", "_9", "~"])


def gen_opaque_token(rng: random.Random) -> str:
    return _rand(rng, ALNUM + "-._~", rng.randrange(24, 64))


def gen_generic_secret(rng: random.Random) -> str:
    return _rand(rng, ALNUM, rng.choice([24, 32, 40, 48]))


_FIRST = [
    "james",
    "mary",
    "robert",
    "patricia",
    "john",
    "jennifer",
    "michael",
    "linda",
    "wei",
    "priya",
    "olga",
    "ahmed",
    "sofia",
]
_LAST = [
    "smith",
    "johnson",
    "garcia",
    "miller",
    "davis",
    "martinez",
    "lee",
    "chen",
    "kumar",
    "novak",
    "haddad",
    "rossi",
]
_DOMAINS = [
    "example.com",
    "mail.example.org",
    "corp.example.net",
    "gmail.com",
    "outlook.com",
    "company.co.uk",
    "uni.edu",
    "bigcorp.io",
]


def gen_email(rng: random.Random) -> str:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    local = rng.choice([f"{first}.{last}", f"{first[0]}{last}", f"{first}_{last}{rng.randrange(99)}",
                        f"{first}+{rng.choice(['alerts', 'test', 'shop'])}", f"{last}{rng.randrange(1000)}"])  # fmt: skip
    return local + "@" + rng.choice(_DOMAINS)


def gen_phone(rng: random.Random) -> str:
    area, exch, line = rng.randrange(201, 989), rng.randrange(200, 999), rng.randrange(0, 10000)
    nanp = [
        f"({area}) {exch}-{line:04d}", f"{area}-{exch}-{line:04d}", f"{area}.{exch}.{line:04d}",
        f"+1 {area} {exch} {line:04d}", f"+1-{area}-{exch}-{line:04d}", f"+1{area}{exch}{line:04d}",
        f"1-{area}-{exch}-{line:04d}",
    ]  # fmt: skip
    intl = [
        f"+44 20 {rng.randrange(7000, 8999)} {rng.randrange(1000, 9999)}",
        f"+44 7{rng.randrange(100, 999)} {rng.randrange(100000, 999999)}",
        f"+49 30 {rng.randrange(10**7, 10**8)}",
        f"+33 {rng.randrange(1, 9)} {rng.randrange(10, 99)} {rng.randrange(10, 99)} {rng.randrange(10, 99)} {rng.randrange(10, 99)}",
        f"+81 3-{rng.randrange(1000, 9999)}-{rng.randrange(1000, 9999)}",
        f"+91 {rng.randrange(70000, 99999)} {rng.randrange(10000, 99999)}",
        f"+61 2 {rng.randrange(1000, 9999)} {rng.randrange(1000, 9999)}",
        f"+55 11 9{rng.randrange(1000, 9999)}-{rng.randrange(1000, 9999)}",
    ]
    return rng.choice(nanp + intl)


def gen_card(rng: random.Random) -> str:
    brand = rng.choice(["visa", "mc", "mc2", "amex", "disc"])
    prefix, n = {"visa": ("4", 16), "mc": (str(rng.randrange(51, 56)), 16), "mc2": (str(rng.randrange(2221, 2721)), 16),
                 "amex": (rng.choice(["34", "37"]), 15), "disc": ("6011", 16)}[brand]  # fmt: skip
    digits = _luhn_complete(rng, prefix, n)
    sep = rng.choice(["", " ", "-"])
    if not sep:
        return digits
    groups = [digits[:4], digits[4:10], digits[10:]] if n == 15 else [digits[i : i + 4] for i in range(0, 16, 4)]
    return sep.join(groups)


def gen_ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if (a != 666 and a % 7 == rng.randrange(7)) or a == 123])
    return f"{area:03d}-{rng.randrange(1, 100):02d}-{rng.randrange(1, 10000):04d}"


_IBAN_SPECS = {"DE": 18, "GB": None, "FR": 23, "NL": None, "ES": 20, "IT": None, "CH": 17, "BE": 12, "PL": 24}


def gen_iban(rng: random.Random) -> str:
    country = rng.choice(list(_IBAN_SPECS))
    if country == "GB":
        bban = _rand(rng, string.ascii_uppercase, 4) + _rand(rng, string.digits, 14)
    elif country == "NL":
        bban = _rand(rng, string.ascii_uppercase, 4) + _rand(rng, string.digits, 10)
    elif country == "IT":
        bban = rng.choice(string.ascii_uppercase) + _rand(rng, string.digits, 10) + _rand(rng, ALNUM.upper(), 12)
    else:
        bban = _rand(rng, string.digits, _IBAN_SPECS[country] or 0)
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(numeric) % 97
    iban = f"{country}{check:02d}{bban}"
    if rng.random() < 0.5:
        return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return iban


def gen_ipv4(rng: random.Random) -> str:
    while True:
        addr = ipaddress.IPv4Address(rng.getrandbits(32))
        if not (addr.is_loopback or addr.is_unspecified or addr.is_multicast or addr.is_reserved):
            return str(addr)


def gen_ipv6(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return f"fe80::{rng.getrandbits(16):x}:{rng.getrandbits(16):x}:{rng.getrandbits(16):x}:{rng.getrandbits(16):x}"
    addr = ipaddress.IPv6Address((0x2001 << 112) | (0x0DB8 << 96) | rng.getrandbits(64))
    return addr.compressed if rng.random() < 0.7 else addr.exploded


# ---------------------------------------------------------------------------------------------------------
# line shapes
# ---------------------------------------------------------------------------------------------------------
_LOGGERS = ["cleanroom.server", "uvicorn.error", "app.worker", "httpx", "billing.api", "root"]
_LEVELS = ["INFO", "DEBUG", "WARNING", "ERROR"]


def _ts(rng: random.Random) -> str:
    return f"2025-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(1000):03d}Z"


def _prefix(rng: random.Random, b: _Builder) -> None:
    style = rng.randrange(4)
    if style == 0:
        b.text(f"{_ts(rng)} {rng.choice(_LEVELS)} [{rng.choice(_LOGGERS)}] ")
    elif style == 1:
        b.text(f"{rng.choice(_LEVELS)}:{rng.choice(_LOGGERS)}:")
    elif style == 2:
        b.text(
            f"Jan {rng.randrange(1, 29):2d} {rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d} host{rng.randrange(9)} app[{rng.randrange(100, 99999)}]: "
        )


def _filler(rng: random.Random) -> str:
    return rng.choice([
        "request completed", "retrying upstream call", "cache miss", "user login", "config loaded",
        "processing batch", "webhook delivered", "handshake ok", "sending notification", "loaded settings",
    ])  # fmt: skip


Gen = Callable[[random.Random], str]


def _place(rng: random.Random, value: str, kind: str, keys: list[str], free: bool) -> Sample:
    """Put `value` into one of many line shapes; `keys` are plausible field names for it."""
    b = _Builder()
    key = rng.choice(keys)
    shapes = ["logfmt", "json", "json_escaped", "header", "yaml", "spaced"]
    if free:
        shapes += ["free", "free", "free_end", "free_start"]
    shape = rng.choice(shapes)
    if shape == "json":
        b.text("{" + f'"ts": "{_ts(rng)}", "level": "info", "msg": "{_filler(rng)}", "{key}": "').pos_(value, kind)
        b.text(f'", "duration_ms": {rng.randrange(1, 900)}' + "}")
        return b.build()
    _prefix(rng, b)
    if shape == "logfmt":
        b.text(f"{_filler(rng)} {rng.choice(['', 'tenant=acme '])}{key}=")
        q = rng.choice(["", '"', "'"])
        b.text(q).pos_(value, kind).text(q).text(f" status={rng.choice([200, 201, 401, 500])}")
    elif shape == "json_escaped":
        b.text(f'payload="{{\\"user\\": \\"u{rng.randrange(999)}\\", \\"{key}\\": \\"').pos_(value, kind).text('\\"}"')
    elif shape == "header":
        b.text(f"outgoing headers: {key.replace('_', '-').title()}: ").pos_(value, kind)
    elif shape == "yaml":
        b.text(f"  {key}: ").pos_(value, kind)
    elif shape == "spaced":
        b.text(f"{_filler(rng)}: {key} = ").pos_(value, kind).text(rng.choice(["", ";", " (from env)"]))
    elif shape == "free":
        b.text(f"{_filler(rng)} with ").pos_(value, kind).text(f" after {rng.randrange(1, 500)}ms")
    elif shape == "free_end":
        b.text(f"{_filler(rng)}: ").pos_(value, kind)
    else:
        b.parts.clear()
        b.pos = 0
        b.pos_(value, kind).text(f" {_filler(rng)}")
    return b.build()


def _pii_line(rng: random.Random, value: str, kind: str, keys: list[str]) -> Sample:
    b = _Builder()
    shape = rng.randrange(6)
    if shape == 0:
        _prefix(rng, b)
        b.text(f"{_filler(rng)} for ").pos_(value, kind).text(rng.choice(["", ".", " (verified)", ", retrying"]))
    elif shape == 1:
        b.text("{" + f'"event": "{_filler(rng)}", "{rng.choice(keys)}": "').pos_(value, kind).text('"}')
    elif shape == 2:
        _prefix(rng, b)
        b.text(f"{rng.choice(keys)}=").pos_(value, kind).text(f" tenant=t{rng.randrange(99)}")
    elif shape == 3:
        _prefix(rng, b)
        b.text(f"{rng.choice(keys)}: <").pos_(value, kind).text(">")
    elif shape == 4:
        b.pos_(value, kind).text(f" - {_filler(rng)}")
    else:
        _prefix(rng, b)
        b.text(f"{_filler(rng)}; {rng.choice(keys)}='").pos_(value, kind).text("'")
    return b.build()


# type -> (generator, field names, may appear without a key)
SECRET_TYPES: dict[str, tuple[Gen, list[str], bool]] = {
    "aws_access_key_id": (gen_aws_key_id, ["aws_access_key_id", "AccessKeyId", "access_key"], True),
    "aws_secret_access_key": (gen_aws_secret, ["aws_secret_access_key", "AWS_SECRET_ACCESS_KEY", "SecretAccessKey", "secret_access_key"], False),
    "gcp_api_key": (gen_gcp_key, ["key", "api_key", "GOOGLE_API_KEY"], True),
    "github_token": (gen_github, ["token", "GITHUB_TOKEN", "gh_token"], True),
    "gitlab_token": (gen_gitlab, ["private_token", "GITLAB_TOKEN", "token"], True),
    "slack_token": (gen_slack_token, ["token", "SLACK_BOT_TOKEN", "slack_token"], True),
    "stripe_key": (gen_stripe, ["stripe_key", "STRIPE_SECRET_KEY", "api_key"], True),
    "openai_key": (gen_openai, ["OPENAI_API_KEY", "api_key", "openai_key"], True),
    "anthropic_key": (gen_anthropic, ["ANTHROPIC_API_KEY", "x-api-key", "anthropic_key"], True),
    "huggingface_token": (gen_hf, ["HF_TOKEN", "hf_token", "token"], True),
    "npm_token": (gen_npm, ["NPM_TOKEN", "_authToken", "npm_token"], True),
    "sendgrid_key": (gen_sendgrid, ["SENDGRID_API_KEY", "sendgrid_key", "api_key"], True),
    "cleanroom_key": (gen_cleanroom, ["api_key", "CLEANROOM_API_KEY", "credential"], True),
    "jwt": (gen_jwt, ["id_token", "jwt", "session"], True),
    "password": (gen_password, ["password", "DB_PASSWORD", "passwd", "db.password", "admin_pass", "userPassword", "pwd"], False),
    "secret": (gen_password, ["secret", "client_secret", "app_secret", "SECRET"], False),
    "api_key": (gen_generic_secret, ["api_key", "apiKey", "x-api-key", "API-KEY"], False),
    "generic_secret": (gen_generic_secret, ["auth_token", "access_token", "webhook_secret", "signing_key", "SERVICE_TOKEN", "refresh_token"], False),
}  # fmt: skip

PII_TYPES: dict[str, tuple[Gen, list[str]]] = {
    "email": (gen_email, ["email", "user", "to", "from", "contact"]),
    "phone": (gen_phone, ["phone", "tel", "mobile", "callback"]),
    "credit_card": (gen_card, ["card", "pan", "cc_number", "card_number"]),
    "ssn": (gen_ssn, ["ssn", "tax_id", "social"]),
    "iban": (gen_iban, ["iban", "account", "payee_iban"]),
    "ipv4": (gen_ipv4, ["client", "remote_addr", "ip", "peer", "x-forwarded-for"]),
    "ipv6": (gen_ipv6, ["client", "remote_addr", "ip", "peer"]),
}


def _special(rng: random.Random, kind: str) -> Sample:
    """Types whose natural form is a whole construct rather than a field value."""
    b = _Builder()
    if kind == "azure_storage_key":
        acct = "acct" + _rand(rng, string.ascii_lowercase + string.digits, 6)
        key = gen_azure_storage_key(rng)
        if rng.random() < 0.6:
            _prefix(rng, b)
            b.text(f"connecting with DefaultEndpointsProtocol=https;AccountName={acct};AccountKey=").pos_(key, kind)
            b.text(";EndpointSuffix=core.windows.net")
        else:
            b.text('{"storage": {"account": "' + acct + '", "accountKey": "').pos_(key, kind).text('"}}')
    elif kind == "azure_connection_string":
        key = gen_azure_sb_key(rng)
        _prefix(rng, b)
        b.text(
            f"Endpoint=sb://ns{rng.randrange(99)}.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey="
        )
        b.pos_(key, kind)
    elif kind == "slack_webhook":
        _prefix(rng, b)
        path = gen_slack_webhook(rng)
        b.text("POST https://hooks.slack.com/services/").pos_(path, kind).text(f" -> {rng.choice([200, 404])}")
    elif kind == "private_key":
        pem = gen_pem(rng)
        style = rng.randrange(3)
        if style == 0:  # JSON-escaped, one line
            esc = pem.replace("\n", "\\n")
            b.text('{"type": "service_account", "private_key_id": "' + _rand(rng, HEX, 40) + '", "private_key": "')
            b.pos_(esc, kind).text('\\n", "client_email": "svc@proj.iam.gserviceaccount.com"}')
            # the client_email is a real email, also sensitive
            start = b.sample.positives[-1][1] + len('\\n", "client_email": "')
            b.sample.positives.append((start, start + len("svc@proj.iam.gserviceaccount.com"), "email"))
        elif style == 1:  # multi-line log message
            _prefix(rng, b)
            b.text("loaded key material:\n").pos_(pem, kind).text("\n")
        else:
            _prefix(rng, b)
            b.text("key=").pos_(pem.replace("\n", "\\n"), kind)
    elif kind == "url_password":
        scheme = rng.choice(["postgres", "postgresql", "mysql", "redis", "amqp", "mongodb+srv", "https", "ftp"])
        user = (
            rng.choice(["admin", "app", "svc_reader", "root", ""])
            if scheme == "redis"
            else rng.choice(["admin", "app", "svc_reader", "root"])
        )
        pw = gen_url_password(rng)
        _prefix(rng, b)
        b.text(f"{rng.choice(['connecting to', 'DATABASE_URL=', 'dsn:'])} {scheme}://{user}:").pos_(pw, kind)
        b.text(f"@db{rng.randrange(9)}.internal.example.com:{rng.choice([5432, 3306, 6379, 5672, 443])}/app")
    elif kind == "authorization":
        scheme = rng.choice(["Bearer", "Bearer", "Basic", "token"])
        if scheme == "Basic":
            cred = base64.b64encode(f"{rng.choice(_FIRST)}:{gen_password(rng)}".encode()).decode()
        else:
            cred = gen_opaque_token(rng)
        style = rng.randrange(4)
        if style == 0:
            _prefix(rng, b)
            b.text(f"request headers: Authorization: {scheme} ").pos_(cred, kind)
        elif style == 1:
            b.text("{'host': 'api.example.com', 'authorization': '" + scheme + " ").pos_(cred, kind).text(
                "', 'accept': '*/*'}"
            )
        elif style == 2:
            b.text(f'curl -s -H "Authorization: {scheme} ').pos_(cred, kind).text('" https://api.example.com/v1/me')
        else:
            b.text('{"headers": {"Authorization": "' + scheme + " ").pos_(cred, kind).text('"}}')
    else:
        raise KeyError(kind)
    return b.build()


SPECIAL_TYPES = [
    "azure_storage_key",
    "azure_connection_string",
    "slack_webhook",
    "private_key",
    "url_password",
    "authorization",
]


# ---------------------------------------------------------------------------------------------------------
# negatives: must survive byte for byte
# ---------------------------------------------------------------------------------------------------------
def _neg_value(rng: random.Random, kind: str) -> tuple[str, list[str]]:
    if kind == "uuid":
        u = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        return (u.upper() if rng.random() < 0.2 else u), [
            "request_id",
            "tenant_id",
            "id",
            "session_id",
            "idempotency_key",
        ]
    if kind == "trace_id":
        style = rng.randrange(3)
        if style == 0:
            return f"00-{_rand(rng, HEX, 32)}-{_rand(rng, HEX, 16)}-01", ["traceparent"]
        if style == 1:
            return _rand(rng, HEX, 32), ["trace_id", "traceId", "x-b3-traceid"]
        return _rand(rng, HEX, 16), ["span_id", "spanId", "parent_id"]
    if kind == "commit_hash":
        return _rand(rng, HEX, rng.choice([40, 40, 7, 12])), ["commit", "sha", "git_sha", "revision"]
    if kind == "timestamp":
        return rng.choice([
            _ts(rng), f"2025-03-{rng.randrange(1, 29):02d} {rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d},{rng.randrange(1000):03d}",
            str(rng.randrange(1_600_000_000, 1_800_000_000)), str(rng.randrange(1_600_000_000_000, 1_800_000_000_000)),
            f"{rng.randrange(1, 28)}/Mar/2025:{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d} +0000",
            f"{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(10**6):06d}",
            str(rng.randrange(1_600_000_000, 1_800_000_000) * 10**9 + rng.randrange(10**9)),
        ]), ["ts", "time", "created", "timestamp", "at"]  # fmt: skip
    if kind == "version":
        major, minor, patch = rng.randrange(0, 20), rng.randrange(0, 40), rng.randrange(0, 300)
        return rng.choice([
            f"{major}.{minor}.{patch}", f"v{major}.{minor}.{patch}", f"{major}.{minor}.{patch}-rc.{rng.randrange(1, 5)}",
            f"{major}.{minor}", f"v{major}.{minor}.{patch}.{rng.randrange(1, 99)}", f"{major}.{minor}.{patch}+build.{rng.randrange(999)}",
            f"{major}.{minor}.{patch}.dev{rng.randrange(9)}", f"{major}.{minor}.{patch}.post{rng.randrange(9)}",
        ]), ["version", "ver", "torch", "cuda", "release", "app_version"]  # fmt: skip
    if kind == "file_path":
        return rng.choice([
            f"/var/log/cleanroom/{_ts(rng)[:10]}.log", f"/home/{rng.choice(_FIRST)}/.cache/huggingface/hub/models--sentence-transformers--all-MiniLM-L6-v2/snapshots/{_rand(rng, HEX, 40)}/config.json",
            f"C:\\Users\\{rng.choice(_FIRST)}\\AppData\\Local\\Temp\\tmp{_rand(rng, ALNUM, 8)}.bin", f"./src/cleanroom/server/app.py:{rng.randrange(1, 900)}",
            f"/tmp/cleanroom-{_rand(rng, string.ascii_lowercase + string.digits, 8)}/spill-{rng.randrange(9999)}.enc",
            f"/data/models/{rng.choice(['minilm', 'echo'])}/model.safetensors", f"s3://bucket-{rng.randrange(99)}/datasets/2025/part-{rng.randrange(99999):05d}.parquet",
        ]), ["path", "file", "model_path", "cache_dir", "location"]  # fmt: skip
    if kind == "plain_url":
        return rng.choice([
            f"https://api.example.com/v1/models/minilm/infer?page={rng.randrange(9)}&limit=50", "http://localhost:8000/healthz",
            f"https://github.com/acme/cleanroom/commit/{_rand(rng, HEX, 40)}", f"https://docs.example.org/guide/{rng.choice(_WORDS)}.html#section-{rng.randrange(9)}",
            f"https://cdn.example.net/assets/app.{_rand(rng, HEX, 8)}.js", f"http://internal-lb.example.com:{rng.randrange(1024, 65000)}/metrics",
            f"https://example.com/search?q={rng.choice(_WORDS)}+{rng.choice(_WORDS)}&lang=en",
        ]), ["url", "endpoint", "referer", "link", "callback_url"]  # fmt: skip
    if kind == "luhn_invalid_number":
        while True:
            digits = rng.choice(["4", "5", "37", "6011"]) + _rand(rng, string.digits, 15)
            digits = digits[: 15 if digits.startswith("37") else 16]
            if not _luhn_ok(digits):
                break
        sep = rng.choice(["", "", " ", "-"])
        if sep and len(digits) == 16:
            digits = sep.join(digits[i : i + 4] for i in range(0, 16, 4))
        return digits, ["order_id", "invoice", "ref", "number", "card_hint"]
    raise KeyError(kind)


NEGATIVE_KINDS = [
    "uuid",
    "trace_id",
    "commit_hash",
    "timestamp",
    "version",
    "file_path",
    "plain_url",
    "luhn_invalid_number",
]


def _negative_line(rng: random.Random, kind: str) -> Sample:
    value, keys = _neg_value(rng, kind)
    b = _Builder()
    shape = rng.randrange(5)
    key = rng.choice(keys)
    if shape == 0:
        _prefix(rng, b)
        b.text(f"{_filler(rng)} {key}=").neg(value, kind).text(f" latency_ms={rng.randrange(1, 999)}")
    elif shape == 1:
        b.text("{" + f'"level": "info", "{key}": "').neg(value, kind).text(
            f'", "msg": "{_filler(rng)}", "max_tokens": {rng.randrange(16, 4096)}' + "}"
        )
    elif shape == 2:
        _prefix(rng, b)
        b.text(f"{_filler(rng)} ({key} ").neg(value, kind).text(")")
    elif shape == 3:
        _prefix(rng, b)
        b.text(f"{key}: ").neg(value, kind)
    else:
        b.neg(value, kind).text(f" {_filler(rng)} tokens={rng.randrange(1, 2048)}")
    return b.build()


def generate(seed: int = 20250501, per_type: int = 200, per_negative: int = 250) -> list[Sample]:
    """The whole corpus: `per_type` lines for every sensitive type, `per_negative` for every negative kind."""
    rng = random.Random(seed)
    samples: list[Sample] = []
    for kind, (gen, keys, free) in SECRET_TYPES.items():
        samples.extend(_place(rng, gen(rng), kind, keys, free) for _ in range(per_type))
    for kind, (gen, keys) in PII_TYPES.items():
        samples.extend(_pii_line(rng, gen(rng), kind, keys) for _ in range(per_type))
    for kind in SPECIAL_TYPES:
        samples.extend(_special(rng, kind) for _ in range(per_type))
    for kind in NEGATIVE_KINDS:
        samples.extend(_negative_line(rng, kind) for _ in range(per_negative))
    # mixed lines: a secret and a look-alike side by side
    for _ in range(per_type):
        neg_kind = rng.choice(NEGATIVE_KINDS)
        value, _keys = _neg_value(rng, neg_kind)
        pii_kind = rng.choice(list(PII_TYPES))
        b = _Builder()
        _prefix(rng, b)
        b.text("request_id=").neg(value, neg_kind).text(" user=").pos_(PII_TYPES[pii_kind][0](rng), pii_kind).text(
            " ok"
        )
        samples.append(b.build())
    rng.shuffle(samples)
    return samples


ALL_TYPES = list(SECRET_TYPES) + list(PII_TYPES) + SPECIAL_TYPES


# ---------------------------------------------------------------------------------------------------------
# scoring
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Score:
    """Per-type recall, per-type precision and per-kind survival of look-alikes."""

    found: dict[str, int] = field(default_factory=dict)  # positives fully covered, per type
    total: dict[str, int] = field(default_factory=dict)  # positives, per type
    true_findings: dict[str, int] = field(default_factory=dict)  # findings on a positive, per type
    false_findings: dict[str, int] = field(default_factory=dict)  # findings on nothing, per type guessed
    survived: dict[str, int] = field(default_factory=dict)  # negatives untouched, per kind
    negatives: dict[str, int] = field(default_factory=dict)
    false_examples: list[str] = field(default_factory=list)
    missed_examples: list[str] = field(default_factory=list)

    def recall(self, kind: str) -> float:
        return self.found.get(kind, 0) / max(1, self.total.get(kind, 0))

    def precision(self, kind: str) -> float:
        tp, fp = self.true_findings.get(kind, 0), self.false_findings.get(kind, 0)
        return 1.0 if tp + fp == 0 else tp / (tp + fp)

    def survival(self, kind: str) -> float:
        return self.survived.get(kind, 0) / max(1, self.negatives.get(kind, 0))

    def overall(self) -> tuple[float, float]:
        found, total = sum(self.found.values()), sum(self.total.values())
        tp, fp = sum(self.true_findings.values()), sum(self.false_findings.values())
        return found / max(1, total), (tp / (tp + fp) if tp + fp else 1.0)

    def table(self) -> str:
        rows = [f"{'type':28s} {'recall':>8s} {'precision':>10s} {'n':>6s}"]
        for kind in sorted(self.total):
            rows.append(f"{kind:28s} {self.recall(kind):8.4f} {self.precision(kind):10.4f} {self.total[kind]:6d}")
        for kind in sorted(self.false_findings):
            if kind not in self.total:
                rows.append(
                    f"{kind + ' (unlabelled)':28s} {'':8s} {self.precision(kind):10.4f} {self.false_findings[kind]:6d} FP"
                )
        rows.append(f"{'look-alike kind':28s} {'survival':>8s}")
        for kind in sorted(self.negatives):
            rows.append(f"{kind:28s} {self.survival(kind):8.4f} {'':10s} {self.negatives[kind]:6d}")
        r, p = self.overall()
        rows.append(f"{'OVERALL':28s} {r:8.4f} {p:10.4f}")
        return "\n".join(rows)


Finder = Callable[[str], list[tuple[int, int, str]]]


def score(find: Finder, samples: list[Sample], label_to_type: dict[str, str] | None = None) -> Score:
    """Score a detector; `find(line)` returns (start, end, label) spans it would redact."""
    label_to_type = label_to_type or {}
    s = Score()
    for sample in samples:
        spans = find(sample.line)
        for start, end, kind in sample.positives:
            s.total[kind] = s.total.get(kind, 0) + 1
            covered = _covered(spans, start, end)
            if covered:
                s.found[kind] = s.found.get(kind, 0) + 1
            elif len(s.missed_examples) < 40:
                s.missed_examples.append(f"{kind}: {sample.line[:300]!r}")
        for start, end, kind in sample.negatives:
            s.negatives[kind] = s.negatives.get(kind, 0) + 1
            if not any(fs < end and start < fe for fs, fe, _ in spans):
                s.survived[kind] = s.survived.get(kind, 0) + 1
        for fs, fe, label in spans:
            hit = next((k for ps, pe, k in sample.positives if fs < pe and ps < fe), None)
            if hit is not None:
                s.true_findings[hit] = s.true_findings.get(hit, 0) + 1
            else:
                guess = label_to_type.get(label, label)
                s.false_findings[guess] = s.false_findings.get(guess, 0) + 1
                if len(s.false_examples) < 40:
                    s.false_examples.append(f"{label}: {sample.line[fs:fe]!r} in {sample.line[:240]!r}")
    return s


def _covered(spans: list[tuple[int, int, str]], start: int, end: int) -> bool:
    """Every character of [start, end) lies inside some span."""
    pos = start
    for fs, fe, _ in sorted(spans):
        if fs <= pos < fe:
            pos = fe
            if pos >= end:
                return True
    return pos >= end
