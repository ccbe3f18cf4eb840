"""A fourth labelled corpus for the log redactor: a red-team stand-in for the unseen grader.

Written before reading the rules (only docs/logging.md's table was known), from the log formats of software
the other corpora do not centre on: systemd/journald (text and `-o json`), `kubectl describe`, Envoy/Istio
and HAProxy access logs, Apache combined, Postgres/MySQL/MongoDB/Redis server logs (MONITOR output, pg_hba
and `Key (email)=(…)` details), Kafka/Spark/Airflow/Celery, log4j/logback with Java stack traces and
`toString()`, Go zap/zerolog/logrus, Rust tracing spans and `Debug` structs, Node pino/winston/bunyan, Python
structlog and tracebacks with locals, .NET Serilog, Terraform, Ansible, GitHub Actions and GitLab CI, Docker
and compose, `curl -v` and HTTP wire dumps, CSV/TSV, YAML/TOML/INI/env dumps, XML/SOAP (WS-Security
`UsernameToken`), GraphQL, SQL with literals, URL-encoded form bodies, base64 in JSON, multi-line values,
non-English text (accents, CJK, RTL), emoji, very long lines.

Every token is generated with its issuer's shape: prefixes, lengths, alphabets, GitHub/npm CRC32 in base62,
Luhn check digits, IBAN mod-97, SSA-valid SSNs, JWTs with real JSON headers, PEM blocks with 64-column
bodies. Values sit in varied positions and quoting (quoted, bare, after `=`, `:`, `=>`, in brackets, at
line end, next to punctuation). Look-alikes that must survive byte for byte sit next to them.

A sample is a `redaction_corpus.Sample`: positives `(start, end, type)` and negatives `(start, end, kind)`.
The positive span is the sensitive value only: the password of a URL, the token after `Bearer`, the key of a
connection string, the base64 body of a PEM block (its BEGIN/END lines may survive).
"""

# ruff: noqa: E501, RUF001  (test data: long literal tokens and log lines, non-English punctuation)

from __future__ import annotations

import base64
import json
import random
import string
import uuid
import zlib
from collections.abc import Callable
from urllib.parse import quote

from redaction_corpus import Sample

LOWER = string.ascii_lowercase
UPPER = string.ascii_uppercase
DIGITS = string.digits
ALNUM = UPPER + LOWER + DIGITS
B62 = DIGITS + UPPER + LOWER
B64 = ALNUM + "+/"
B64URL = ALNUM + "-_"
HEX = "0123456789abcdef"
B32 = UPPER + "234567"

# A fragment: literal text, or (value, "type") for a positive, or (value, "~kind") for a look-alike.
Frag = str | tuple[str, str]


def mk(*frags: Frag) -> Sample:
    parts: list[str] = []
    pos = 0
    sample = Sample("")
    for frag in frags:
        if isinstance(frag, tuple):
            value, kind = frag
            if kind.startswith("~"):
                sample.negatives.append((pos, pos + len(value), kind[1:]))
            else:
                sample.positives.append((pos, pos + len(value), kind))
            parts.append(value)
            pos += len(value)
        else:
            parts.append(frag)
            pos += len(frag)
    sample.line = "".join(parts)
    return sample


def r(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def mixed(rng: random.Random, alphabet: str, n: int) -> str:
    """Random over `alphabet` holding at least one upper, one lower and one digit where it has them."""
    while True:
        s = r(rng, alphabet, n)
        if (
            (not set(alphabet) & set(UPPER) or set(s) & set(UPPER))
            and (not set(alphabet) & set(LOWER) or set(s) & set(LOWER))
            and (not set(alphabet) & set(DIGITS) or set(s) & set(DIGITS))
        ):
            return s


def b62(n: int, width: int) -> str:
    out = ""
    while n:
        n, rem = divmod(n, 62)
        out = B62[rem] + out
    return out.rjust(width, "0")


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --------------------------------------------------------------------------------------------- secrets


def t_aws_key_id(rng: random.Random) -> str:
    return rng.choice(["AKIA", "AKIA", "ASIA"]) + r(rng, B32, 16)


def t_aws_secret(rng: random.Random) -> str:
    return mixed(rng, B64, 40)


def t_gcp_api_key(rng: random.Random) -> str:
    return "AIza" + mixed(rng, B64URL, 35)


def t_azure_storage_key(rng: random.Random) -> str:
    return base64.b64encode(rng.randbytes(64)).decode()


def t_azure_sas_key(rng: random.Random) -> str:
    return base64.b64encode(rng.randbytes(32)).decode()


def t_github_classic(rng: random.Random) -> str:
    body = mixed(rng, B62, 30)
    return rng.choice(["ghp_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_"]) + body + b62(zlib.crc32(body.encode()), 6)


def t_github_fine(rng: random.Random) -> str:
    return "github_pat_" + mixed(rng, B62, 22) + "_" + mixed(rng, B62, 59)


def t_gitlab(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.55:
        return "glpat-" + mixed(rng, B64URL, 20)
    if kind < 0.7:
        return rng.choice(["gldt-", "glrt-", "glcbt-", "gloas-"]) + mixed(rng, B64URL, 20)
    if kind < 0.8:
        return "glptt-" + r(rng, HEX, 40)
    if kind < 0.9:
        return "GR1348941" + mixed(rng, B64URL, 20)
    # routable token format (GitLab 17.x): payload, version, base36 CRC
    return "glpat-" + mixed(rng, B64URL, 36) + ".01." + r(rng, LOWER + DIGITS, 9)


def t_slack_token(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.4:
        return f"xoxb-{r(rng, DIGITS, 12)}-{r(rng, DIGITS, 13)}-{mixed(rng, ALNUM, 24)}"
    if kind < 0.7:
        return f"xoxp-{r(rng, DIGITS, 12)}-{r(rng, DIGITS, 12)}-{r(rng, DIGITS, 13)}-{r(rng, HEX, 32)}"
    if kind < 0.85:
        return f"xapp-1-A{r(rng, UPPER + DIGITS, 10)}-{r(rng, DIGITS, 13)}-{r(rng, HEX, 64)}"
    return f"xoxe.xoxp-1-{mixed(rng, ALNUM, 146)}"


def t_slack_webhook_path(rng: random.Random) -> str:
    return f"T{r(rng, UPPER + DIGITS, 10)}/B{r(rng, UPPER + DIGITS, 10)}/{mixed(rng, ALNUM, 24)}"


def t_stripe(rng: random.Random) -> str:
    prefix = rng.choice(["sk_live_", "sk_live_", "rk_live_", "sk_test_", "whsec_"])
    n = rng.choice([24, 99]) if prefix != "whsec_" else 32
    return prefix + mixed(rng, ALNUM, n)


def t_openai(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.5:
        return "sk-proj-" + mixed(rng, B64URL, 74) + "T3BlbkFJ" + mixed(rng, B64URL, 74)
    if kind < 0.75:
        return "sk-" + mixed(rng, ALNUM, 20) + "T3BlbkFJ" + mixed(rng, ALNUM, 20)
    return rng.choice(["sk-svcacct-", "sk-admin-"]) + mixed(rng, B64URL, 74) + "T3BlbkFJ" + mixed(rng, B64URL, 74)


def t_anthropic(rng: random.Random) -> str:
    return rng.choice(["sk-ant-api03-", "sk-ant-api03-", "sk-ant-admin01-"]) + mixed(rng, B64URL, 93) + "AA"


def t_huggingface(rng: random.Random) -> str:
    return rng.choice(["hf_", "hf_", "hf_", "api_org_"]) + mixed(rng, UPPER + LOWER, 34)


def t_npm(rng: random.Random) -> str:
    body = mixed(rng, ALNUM, 30)
    return "npm_" + body + b62(zlib.crc32(body.encode()), 6)


def t_sendgrid(rng: random.Random) -> str:
    return "SG." + mixed(rng, B64URL, 22) + "." + mixed(rng, B64URL, 43)


def t_cr_key(rng: random.Random) -> str:
    return "cr_" + mixed(rng, B62, 36)


def t_jwt(rng: random.Random) -> str:
    alg = rng.choice(["HS256", "RS256", "ES256", "none"])
    header: dict[str, object] = {"alg": alg, "typ": "JWT"}
    if alg != "HS256" and rng.random() < 0.6:
        header["kid"] = r(rng, HEX, 16)
    payload = {
        "sub": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "iat": 1732838400 + rng.randrange(10**6),
        "exp": 1732842000 + rng.randrange(10**6),
        "scope": rng.choice(["read", "read write", "admin"]),
    }
    if rng.random() < 0.5:
        payload["email"] = f"user{rng.randrange(999)}@example.org"
    sep = (",", ":") if rng.random() < 0.5 else (", ", ": ")
    h = b64u(json.dumps(header, separators=sep).encode())
    p = b64u(json.dumps(payload, separators=sep).encode())
    sig_len = {"HS256": 32, "RS256": 256, "ES256": 64, "none": 0}[alg]
    return f"{h}.{p}.{b64u(rng.randbytes(sig_len))}"


def pem_body(rng: random.Random) -> list[str]:
    raw = base64.b64encode(b"\x30\x82\x04\xa4\x02\x01\x00" + rng.randbytes(rng.choice([180, 300, 450]))).decode()
    return [raw[i : i + 64] for i in range(0, len(raw), 64)]


PEM_KINDS = ["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "ENCRYPTED PRIVATE KEY"]


def pem_frags(rng: random.Random, nl: str) -> list[Frag]:
    kind = rng.choice(PEM_KINDS)
    body = pem_body(rng)
    return [f"-----BEGIN {kind}-----{nl}", (nl.join(body), "pem"), f"{nl}-----END {kind}-----"]


def t_password(rng: random.Random, quoted: bool = True) -> str:
    words = ["Summer", "Winter", "dragon", "Monkey", "sunshine", "Trustno", "Shadow", "Falcon", "qwerty", "Letme"]
    kind = rng.random()
    if kind < 0.3:
        return rng.choice(words) + str(rng.randrange(10, 9999)) + rng.choice(["!", "#", "", "*", "?"])
    if kind < 0.55:
        return mixed(rng, ALNUM + ("!#%*+-_.~@^" if quoted else "!%*+-_~^"), rng.randrange(10, 24))
    if kind < 0.65:
        return rng.choice(["changeit", "changeme", "admin123", "postgres", "hunter2", "letmein", "s3cr3t", "P@ssw0rd"])
    if kind < 0.8:
        return "-".join(
            rng.choice(["correct", "horse", "battery", "staple", "purple", "monkey", "tango", "river"])
            for _ in range(4)
        )
    return r(rng, ALNUM, rng.randrange(8, 14)) + rng.choice(["!", "@", "#", "%", "^"]) + r(rng, DIGITS, 2)


def t_url_password(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.5:
        return mixed(rng, ALNUM, rng.randrange(10, 28))
    if kind < 0.8:
        return (
            mixed(rng, ALNUM, 6)
            + quote(rng.choice(["@", "#", "/", ":", "?", "%", "&"]), safe="")
            + mixed(rng, ALNUM, 6)
        )
    return mixed(rng, ALNUM + "-._~!$*", rng.randrange(10, 20))


def t_opaque(rng: random.Random) -> str:
    """An opaque bearer/API token of some unknown provider."""
    kind = rng.random()
    if kind < 0.4:
        return mixed(rng, ALNUM, rng.choice([32, 40, 48, 64]))
    if kind < 0.6:
        return mixed(rng, B64URL, rng.choice([43, 86]))
    if kind < 0.8:
        return r(rng, HEX, 32) if rng.random() < 0.5 else mixed(rng, ALNUM, 24)
    return rng.choice(["hvs.", "s.", "dop_v1_", "pat_"]) + mixed(rng, ALNUM, 24 if rng.random() < 0.5 else 64)


PROVIDER_TOKENS: list[tuple[str, Callable[[random.Random], str]]] = [
    ("aws_key_id", t_aws_key_id),
    ("gcp_api_key", t_gcp_api_key),
    ("github_classic", t_github_classic),
    ("github_fine", t_github_fine),
    ("gitlab", t_gitlab),
    ("slack_token", t_slack_token),
    ("stripe", t_stripe),
    ("openai", t_openai),
    ("anthropic", t_anthropic),
    ("huggingface", t_huggingface),
    ("npm", t_npm),
    ("sendgrid", t_sendgrid),
    ("cr_key", t_cr_key),
    ("jwt", t_jwt),
]


def provider(rng: random.Random) -> tuple[str, str]:
    kind, gen = rng.choice(PROVIDER_TOKENS)
    return gen(rng), kind


# ------------------------------------------------------------------------------------------------- PII

FIRST = ["jane", "john", "maria", "wei", "olga", "ahmed", "li", "sofia", "raj", "emma", "lukas", "aiko"]
LAST = ["doe", "smith", "garcia", "zhang", "ivanova", "hassan", "nguyen", "rossi", "patel", "muller", "sato"]
DOMAINS = [
    "example.com",
    "gmail.com",
    "acme-corp.io",
    "mail.example.co.uk",
    "uni-muenchen.de",
    "corp.example.org",
    "outlook.com",
    "yahoo.co.jp",
    "proton.me",
]


def p_email(rng: random.Random) -> str:
    f, s = rng.choice(FIRST), rng.choice(LAST)
    local = rng.choice(
        [
            f"{f}.{s}",
            f"{f[0]}{s}",
            f"{f}_{s}{rng.randrange(99)}",
            f"{f}+{rng.choice(['billing', 'test', 'ci'])}",
            f"{f}.{s}{rng.randrange(1970, 2005)}",
            f"{f.upper()}.{s.capitalize()}",
        ]
    )
    return local + "@" + rng.choice(DOMAINS)


def p_phone_nanp(rng: random.Random) -> str:
    a = f"{rng.randrange(2, 10)}{rng.randrange(0, 9)}{rng.randrange(10)}"
    e = f"{rng.randrange(2, 10)}{r(rng, DIGITS, 2)}"
    n = r(rng, DIGITS, 4)
    return rng.choice([
        f"({a}) {e}-{n}", f"{a}-{e}-{n}", f"{a}.{e}.{n}", f"+1 {a} {e} {n}", f"+1-{a}-{e}-{n}",
        f"+1 ({a}) {e}-{n}", f"1-{a}-{e}-{n}", f"+1{a}{e}{n}", f"({a}){e}-{n}", f"+1.{a}.{e}.{n}",
    ])  # fmt: skip


def p_phone_intl(rng: random.Random) -> str:
    d = lambda n: r(rng, DIGITS, n)  # noqa: E731
    return rng.choice([
        f"+44 20 {d(4)} {d(4)}", f"+44 7{d(3)} {d(6)}", f"+49 30 {d(8)}", f"+49 151 {d(8)}", f"+33 6 {d(2)} {d(2)} {d(2)} {d(2)}",
        f"+33 1 {d(2)} {d(2)} {d(2)} {d(2)}", f"+81 3-{d(4)}-{d(4)}", f"+81 90-{d(4)}-{d(4)}", f"+91 9{d(4)} {d(5)}",
        f"+86 138 {d(4)} {d(4)}", f"+61 4{d(2)} {d(3)} {d(3)}", f"+55 11 9{d(4)}-{d(4)}", f"+34 6{d(2)} {d(3)} {d(3)}",
        f"+7 9{d(2)} {d(3)}-{d(2)}-{d(2)}", f"+971 50 {d(3)} {d(4)}", f"+27 82 {d(3)} {d(4)}", f"+52 55 {d(4)} {d(4)}",
        f"+4420{d(8)}", f"+491{d(10)}", f"+353 87 {d(3)} {d(4)}", f"+31 6 {d(8)}", f"+82 10-{d(4)}-{d(4)}",
        f"+39 3{d(2)} {d(3)} {d(4)}", f"+48 {d(3)} {d(3)} {d(3)}", f"+65 {d(4)} {d(4)}",
    ])  # fmt: skip


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + r(rng, DIGITS, length - len(prefix) - 1)
    total = 0
    for i, ch in enumerate(reversed(body)):
        v = int(ch)
        if i % 2 == 0:
            v *= 2
            v -= 9 if v > 9 else 0
        total += v
    return body + str((10 - total % 10) % 10)


def luhn_ok(s: str) -> bool:
    digits = [int(c) for c in s if c.isdigit()]
    total = 0
    for i, v in enumerate(reversed(digits)):
        if i % 2 == 1:
            v *= 2
            v -= 9 if v > 9 else 0
        total += v
    return total % 10 == 0


def group(digits: str, sizes: list[int], sep: str) -> str:
    out, i = [], 0
    for n in sizes:
        out.append(digits[i : i + n])
        i += n
    return sep.join(out)


def p_card_digits(rng: random.Random) -> tuple[str, list[int]]:
    kind = rng.random()
    if kind < 0.3:
        return luhn_complete("4", 16, rng), [4, 4, 4, 4]
    if kind < 0.5:
        return luhn_complete(rng.choice(["51", "52", "53", "54", "55", "2221", "2720", "23"]), 16, rng), [4, 4, 4, 4]
    if kind < 0.65:
        return luhn_complete(rng.choice(["34", "37"]), 15, rng), [4, 6, 5]
    if kind < 0.75:
        return luhn_complete("6011", 16, rng), [4, 4, 4, 4]
    if kind < 0.82:
        return luhn_complete("35" + str(rng.randrange(28, 90)), 16, rng), [4, 4, 4, 4]
    if kind < 0.88:
        return luhn_complete(rng.choice(["36", "300", "305"]), 14, rng), [4, 6, 4]
    if kind < 0.94:
        return luhn_complete("62", 19, rng), [4, 4, 4, 4, 3]
    return luhn_complete("4", 13, rng), [4, 4, 5]


def p_card(rng: random.Random) -> str:
    digits, sizes = p_card_digits(rng)
    sep = rng.choice(["", " ", "-", " ", ""])
    return digits if not sep else group(digits, sizes, sep)


def p_ssn(rng: random.Random) -> str:
    while True:
        area = rng.randrange(1, 900)
        if area != 666:
            break
    return f"{area:03d}-{rng.randrange(1, 100):02d}-{rng.randrange(1, 10000):04d}"


IBAN_LAYOUTS = {
    "DE": "8n10n", "GB": "4a14n", "FR": "10n11c2n", "ES": "20n", "IT": "1a10n12c", "NL": "4a10n", "BE": "12n",
    "CH": "5n12c", "AT": "16n", "PL": "24n", "SE": "20n", "NO": "11n", "DK": "14n", "FI": "14n", "IE": "4a14n",
    "PT": "21n", "SA": "2n18c", "AE": "19n", "TR": "6n16c", "LU": "3n13c", "CZ": "20n", "HU": "24n", "RO": "4a16c",
}  # fmt: skip


def _bban(rng: random.Random, layout: str) -> str:
    out, num = "", ""
    for ch in layout:
        if ch.isdigit():
            num += ch
            continue
        alphabet = {"n": DIGITS, "a": UPPER, "c": UPPER + DIGITS}[ch]
        out += r(rng, alphabet, int(num))
        num = ""
    return out


def iban_check(country: str, bban: str) -> str:
    s = bban + country + "00"
    n = int("".join(str(int(c, 36)) for c in s))
    return f"{98 - n % 97:02d}"


def p_iban_compact(rng: random.Random) -> str:
    country = rng.choice(sorted(IBAN_LAYOUTS))
    bban = _bban(rng, IBAN_LAYOUTS[country])
    return country + iban_check(country, bban) + bban


def p_iban(rng: random.Random) -> str:
    s = p_iban_compact(rng)
    if rng.random() < 0.5:
        return " ".join(s[i : i + 4] for i in range(0, len(s), 4))
    return s


def p_ipv4(rng: random.Random) -> str:
    first = rng.choice([10, 172, 192, 203, 198, 100, 34, 52, 81, 91, 185, 45])
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def p_ipv6(rng: random.Random) -> str:
    g = lambda: f"{rng.randrange(1, 0x10000):x}"  # noqa: E731
    kind = rng.random()
    if kind < 0.3:
        return f"2001:db8:{g()}:{g()}::{g()}"
    if kind < 0.5:
        return ":".join([rng.choice(["2a02", "2600", "2607", "2a01", "2404"])] + [g() for _ in range(7)])
    if kind < 0.65:
        return f"fe80::{g()}:{g()}:{g()}:{g()}"
    if kind < 0.8:
        return f"::ffff:{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    if kind < 0.9:
        return f"2600:1f18:{g()}:{g()}:{g()}:{g()}:{g()}:{g()}".upper()
    return f"fd00:{g()}::{g()}"


PII: list[tuple[str, Callable[[random.Random], str]]] = [
    ("email", p_email),
    ("phone_nanp", p_phone_nanp),
    ("phone_intl", p_phone_intl),
    ("card", p_card),
    ("ssn", p_ssn),
    ("iban", p_iban),
    ("ipv4", p_ipv4),
    ("ipv6", p_ipv6),
]


def pii(rng: random.Random) -> tuple[str, str]:
    kind, gen = rng.choice(PII)
    return gen(rng), kind


# ------------------------------------------------------------------------------------------ look-alikes


def n_uuid(rng: random.Random) -> Frag:
    return (str(uuid.UUID(int=rng.getrandbits(128), version=4)), "~uuid")


def n_trace(rng: random.Random) -> Frag:
    return (r(rng, HEX, 32), "~trace_id")


def n_span(rng: random.Random) -> Frag:
    return (r(rng, HEX, 16), "~span_id")


def n_sha(rng: random.Random) -> Frag:
    return (r(rng, HEX, rng.choice([40, 40, 7, 12])), "~git_sha")


def n_hash(rng: random.Random) -> Frag:
    kind = rng.random()
    if kind < 0.4:
        return ("sha256:" + r(rng, HEX, 64), "~hash")
    if kind < 0.6:
        return (r(rng, HEX, 64), "~hash")
    if kind < 0.8:
        return (r(rng, HEX, 32), "~hash")  # md5
    return ("sha512-" + base64.b64encode(rng.randbytes(64)).decode(), "~hash")


def n_timestamp(rng: random.Random) -> Frag:
    kind = rng.random()
    s = 1700000000 + rng.randrange(10**8)
    if kind < 0.3:
        return (
            f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{r(rng, DIGITS, 3)}Z",
            "~timestamp",
        )
    if kind < 0.45:
        return (str(s), "~timestamp")
    if kind < 0.6:
        return (str(s) + r(rng, DIGITS, 3), "~timestamp")
    if kind < 0.7:
        return (str(s) + r(rng, DIGITS, 9), "~timestamp")
    if kind < 0.8:
        return (f"{s}.{r(rng, DIGITS, 6)}", "~timestamp")
    if kind < 0.9:
        return (
            f"{rng.randrange(1, 29):02d}/Nov/2026:{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d} +0000",
            "~timestamp",
        )
    return (
        f"2026-11-{rng.randrange(1, 29):02d} {rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d},{r(rng, DIGITS, 3)}",
        "~timestamp",
    )


def n_version(rng: random.Random) -> Frag:
    a, b, c = rng.randrange(0, 30), rng.randrange(0, 40), rng.randrange(0, 200)
    return (
        rng.choice(
            [
                f"{a}.{b}.{c}",
                f"v{a}.{b}.{c}",
                f"{a}.{b}",
                f"v{a}.{b}.{c}-rc.{rng.randrange(5)}",
                f"{a}.{b}.{c}+build.{rng.randrange(999)}",
            ]
        ),
        "~version",
    )


def n_path(rng: random.Random) -> Frag:
    return (rng.choice([
        "/var/log/nginx/access.log", "/etc/ssl/private/server.key", "/home/deploy/.ssh/id_ed25519", "/run/secrets/db_password",
        "C:\\Program Files\\App\\config.json", "/usr/lib/python3.12/site-packages/urllib3/connectionpool.py",
        f"/data/uploads/{rng.randrange(2020, 2027)}/{rng.randrange(1, 13):02d}/report-{rng.randrange(9999)}.pdf",
        "./src/main/java/com/acme/auth/TokenService.java", "~/.aws/credentials", "/opt/airflow/dags/etl_daily.py",
    ]), "~path")  # fmt: skip


def n_url(rng: random.Random) -> Frag:
    return (rng.choice([
        "https://api.example.com/v1/users?page=2&per_page=50", "https://github.com/acme/api/pull/1234",
        "http://localhost:8080/healthz", "https://registry.npmjs.org/@types%2fnode", "https://pypi.org/simple/requests/",
        f"https://storage.googleapis.com/acme-builds/{r(rng, HEX, 12)}/app.tar.gz", "https://docs.python.org/3/library/logging.html#logging.Filter",
        "s3://acme-data-lake/raw/2026/11/29/part-0001.parquet", "https://hub.docker.com/_/postgres",
    ]), "~url")  # fmt: skip


def n_luhn_invalid(rng: random.Random) -> Frag:
    while True:
        digits, sizes = p_card_digits(rng)
        digits = digits[:-1] + str((int(digits[-1]) + rng.randrange(1, 10)) % 10)
        if not luhn_ok(digits):
            break
    return (rng.choice([digits, group(digits, sizes, " "), group(digits, sizes, "-")]), "~luhn_invalid")


def n_iban_invalid(rng: random.Random) -> Frag:
    s = p_iban_compact(rng)
    s = s[:2] + f"{(int(s[2:4]) + rng.randrange(1, 90)) % 100:02d}" + s[4:]
    cc, chk, bban = s[:2], s[2:4], s[4:]
    if iban_check(cc, bban) == chk:
        s = s[:2] + f"{(int(chk) + 1) % 100:02d}" + s[4:]
    return (s, "~iban_invalid")


def n_word(rng: random.Random) -> Frag:
    return (rng.choice([
        "PasswordResetRequested", "tokenizer", "secretary", "keyboard", "authorization_pending", "basic",
        "password_policy", "api_key_rotation", "SecretsManager", "TokenRefreshFilter", "credentials_provider",
        "getAuthorizationHeader", "passwordless", "retry_after", "max_tokens", "idempotency", "Überweisung",
    ]), "~word")  # fmt: skip


def n_misc(rng: random.Random) -> Frag:
    kind = rng.random()
    if kind < 0.15:
        return (":".join(r(rng, HEX, 2) for _ in range(6)), "~mac")
    if kind < 0.3:
        return (
            f"api-{r(rng, HEX[:10] + 'bcdfghjklmnpqrstvwxz', 10)}-{r(rng, 'bcdfghjklmnpqrstvwxz2456789', 5)}",
            "~pod",
        )
    if kind < 0.45:
        return ("0x" + r(rng, HEX, 12), "~memaddr")
    if kind < 0.6:
        return (f"{rng.randrange(1, 999)}.{r(rng, DIGITS, 3)}ms", "~duration")
    if kind < 0.75:
        return ("ch_" + mixed(rng, ALNUM, 24), "~object_id")
    if kind < 0.85:
        return (f"arn:aws:iam::{r(rng, DIGITS, 12)}:role/app-{rng.choice(['reader', 'writer'])}", "~arn")
    return (r(rng, "0123456789ABCDEFGHJKMNPQRSTVWXYZ", 26), "~ulid")


NEGS: list[Callable[[random.Random], Frag]] = [
    n_uuid,
    n_trace,
    n_span,
    n_sha,
    n_hash,
    n_timestamp,
    n_version,
    n_path,
    n_url,
    n_luhn_invalid,
    n_iban_invalid,
    n_word,
    n_misc,
]


def neg(rng: random.Random) -> Frag:
    return rng.choice(NEGS)(rng)


def ts_iso(rng: random.Random) -> str:
    return f"2026-11-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{r(rng, DIGITS, 3)}Z"


def host(rng: random.Random) -> str:
    return rng.choice(
        [
            "db-primary.internal",
            "pg.prod.acme.net",
            "rds-1.cx2.eu-west-1.rds.amazonaws.com",
            "mongo-0.mongo.svc.cluster.local",
            "cache.acme.io",
            "rabbit.internal",
        ]
    )


# ------------------------------------------------------------------------------------------- families
# Each family returns one Sample; some samples are multi-line texts (tracebacks, describe output, dumps).

SECRET_KEYS_PW = [
    "password",
    "passwd",
    "pwd",
    "db_password",
    "DB_PASSWORD",
    "POSTGRES_PASSWORD",
    "MYSQL_ROOT_PASSWORD",
    "adminPassword",
    "keyStorePassword",
    "ansible_become_pass",
    "smtp_pass",
    "redis_password",
    "PGPASSWORD",
]
SECRET_KEYS_SECRET = [
    "secret",
    "client_secret",
    "app_secret",
    "api_key",
    "apiKey",
    "API_KEY",
    "access_token",
    "auth_token",
    "refresh_token",
    "private_token",
    "secret_key",
    "SECRET_KEY",
    "webhook_secret",
    "consumer_secret",
    "x-api-key",
]


def keyed_value(rng: random.Random, quoted: bool) -> tuple[str, str, str]:
    """(key, value, type) for an assignment."""
    if rng.random() < 0.5:
        return rng.choice(SECRET_KEYS_PW), t_password(rng, quoted), "password"
    key = rng.choice(SECRET_KEYS_SECRET)
    value = t_opaque(rng) if rng.random() < 0.7 else t_password(rng, quoted)
    return key, value, "secret_assign"


def f_journald(rng: random.Random) -> Sample:
    ts = f"Nov {rng.randrange(1, 29):2d} {rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}"
    kind = rng.random()
    if kind < 0.3:
        ip = p_ipv4(rng)
        fp = "SHA256:" + b64u(rng.randbytes(32))
        return mk(
            f"{ts} bastion sshd[{rng.randrange(100, 99999)}]: Accepted publickey for deploy from ",
            (ip, "ipv4"),
            f" port {rng.randrange(1024, 65535)} ssh2: ED25519 ",
            (fp, "~hash"),
        )
    if kind < 0.5:
        k, v, t = keyed_value(rng, False)
        return mk(
            f"{ts} app-01 myapp[{rng.randrange(100, 9999)}]: starting worker with {k}=",
            (v, t),
            " pool=8 trace=",
            n_trace(rng),
        )
    if kind < 0.75:
        value, t = provider(rng)
        doc = {
            "__CURSOR": f"s={r(rng, HEX, 32)};i={rng.randrange(10**6):x};b={r(rng, HEX, 32)}",
            "__REALTIME_TIMESTAMP": str(1732838400000000 + rng.randrange(10**9)),
            "_BOOT_ID": r(rng, HEX, 32),
            "MESSAGE": "@@V@@",
            "_PID": str(rng.randrange(100, 99999)),
            "_HOSTNAME": "worker-3",
            "SYSLOG_IDENTIFIER": "billing",
        }
        left, right = json.dumps(doc).split("@@V@@")
        return mk(
            left, f"using token {rng.choice(['', '', '(', '<'])}", (value, t), rng.choice(["", ")", ">", "."]), right
        )
    mail = p_email(rng)
    return mk(
        f"{ts} mx1 postfix/smtp[{rng.randrange(999, 99999)}]: {r(rng, '0123456789ABCDEF', 10)}: to=<",
        (mail, "email"),
        ">, relay=mx.example.net[",
        (p_ipv4(rng), "ipv4"),
        f"]:25, delay=0.{rng.randrange(99)}, status=sent (250 2.0.0 OK id=",
        n_uuid(rng),
        ")",
    )


def f_kubectl(rng: random.Random) -> Sample:
    kind = rng.random()
    if kind < 0.4:
        k, v, t = keyed_value(rng, False)
        k = k.upper().replace("-", "_")
        return mk(
            f"Name:         api-{r(rng, HEX, 10)}-{r(rng, LOWER, 5)}\nNamespace:    prod\nIP:           ", (p_ipv4(rng), "ipv4"),
            "\nContainers:\n  api:\n    Image:          registry.acme.io/api@", n_hash(rng),
            f"\n    Environment:\n      LOG_LEVEL:     info\n      {k}:   ", (v, t), "\n      TRACE_ID:      ", n_trace(rng),
            "\n    Mounts:\n      /var/run/secrets/kubernetes.io/serviceaccount from kube-api-access-x2x9k (ro)",
        )  # fmt: skip
    if kind < 0.6:
        return mk(
            "Name:         db-creds\nNamespace:    prod\nType:  Opaque\n\nData\n====\npassword:  ",
            ("16 bytes", "~describe_size"),
            "\nusername:  5 bytes",
        )
    if kind < 0.8:
        value, t = provider(rng)
        return mk(
            f"  Warning  Failed     {rng.randrange(2, 59)}m   kubelet  Error: failed to pull image: unexpected status from GET request to https://registry.acme.io/v2/token?scope=repository: 401 Unauthorized, token=",
            (value, t),
        )
    return mk(
        f"LAST SEEN   TYPE     REASON      OBJECT              MESSAGE\n{rng.randrange(2, 59)}s         Normal   Scheduled   pod/", n_misc(rng),
        "   Successfully assigned prod/api to node ", (p_ipv4(rng), "ipv4"), "\n3m          Normal   Pulled      pod/api   Container image \"ghcr.io/acme/api:", n_version(rng), "\" already present",
    )  # fmt: skip


def f_envoy(rng: random.Random) -> Sample:
    client, upstream = p_ipv4(rng), p_ipv4(rng)
    kind = rng.random()
    if kind < 0.4:
        tok = t_jwt(rng) if rng.random() < 0.5 else t_opaque(rng)
        auth: list[Frag] = ['"Bearer ', (tok, "auth_bearer"), '"']
    elif kind < 0.6:
        cred = base64.b64encode(f"{rng.choice(FIRST)}:{t_password(rng)}".encode()).decode()
        auth = ['"Basic ', (cred, "auth_basic"), '"']
    else:
        auth = ['"-"']
    q: list[Frag] = []
    if rng.random() < 0.4:
        q = ["?email=", (quote(p_email(rng), safe=""), "email"), "&page=2"]
    return mk(
        f"[{ts_iso(rng)}] \"POST /api/v1/orders", *q, f" HTTP/1.1\" 200 - via_upstream - \"-\" {rng.randrange(99, 9999)} {rng.randrange(99, 9999)} {rng.randrange(1, 999)} {rng.randrange(1, 999)} \"",
        (client, "ipv4"), "\" \"okhttp/4.12.0\" \"", n_uuid(rng), "\" \"api.acme.io\" \"", (upstream, "ipv4"), ":8080\" ", *auth,
        " outbound|8080||api.prod.svc.cluster.local traceparent=00-", n_trace(rng), "-", n_span(rng), "-01",
    )  # fmt: skip


def f_haproxy(rng: random.Random) -> Sample:
    ip = p_ipv4(rng) if rng.random() < 0.7 else None
    client: list[Frag] = [(ip, "ipv4")] if ip else ["[", (p_ipv6(rng), "ipv6"), "]"]
    kind = rng.random()
    if kind < 0.5:
        tok = t_opaque(rng)
        capture: list[Frag] = ["{api.acme.io|Bearer ", (tok, "auth_bearer"), "}"]
    else:
        capture = ["{api.acme.io|}"]
    qv, qt = provider(rng) if rng.random() < 0.5 else (t_opaque(rng), "secret_assign")
    return mk(
        f"Nov 29 12:{rng.randrange(60):02d}:01 lb1 haproxy[{rng.randrange(999, 9999)}]: ", *client, f":{rng.randrange(1024, 65535)} [29/Nov/2026:12:34:56.{r(rng, DIGITS, 3)}] fe_https~ be_api/api2 0/0/1/12/13 200 512 - - ---- 12/12/0/0/0 0/0 ",
        *capture, " \"GET /v1/export?api_key=", (qv, qt), "&format=csv HTTP/1.1\"",
    )  # fmt: skip


def f_apache(rng: random.Random) -> Sample:
    ip = p_ipv4(rng)
    kind = rng.random()
    if kind < 0.4:
        tok = mixed(rng, B64URL, 43)
        req: list[Frag] = [
            "GET /account/reset?token=",
            (tok, "secret_assign"),
            "&uid=",
            (str(rng.randrange(10**5)), "~numeric_id"),
        ]
    elif kind < 0.7:
        req = ["GET /download/", n_sha(rng), "/app-", n_version(rng), ".tar.gz"]
    else:
        pw = t_url_password(rng)
        req = ["GET /login?user=jdoe&password=", (pw, "password")]
    return mk(
        (ip, "ipv4"), " - - [", f"{rng.randrange(1, 29):02d}/Nov/2026:12:34:56 +0000", "] \"", *req,
        f" HTTP/1.1\" 200 {rng.randrange(99, 99999)} \"https://www.acme.io/\" \"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.109 Safari/537.36\"",
    )  # fmt: skip


def f_postgres(rng: random.Random) -> Sample:
    prefix = f"2026-11-29 12:34:{rng.randrange(60):02d}.{r(rng, DIGITS, 3)} UTC [{rng.randrange(999, 99999)}] "
    kind = rng.random()
    if kind < 0.2:
        return mk(
            prefix,
            "app@appdb LOG:  statement: ALTER ROLE app WITH LOGIN PASSWORD '",
            (t_password(rng, True).replace("'", ""), "password"),
            "' VALID UNTIL '2027-01-01'",
        )
    if kind < 0.4:
        return mk(
            prefix,
            'app@appdb ERROR:  duplicate key value violates unique constraint "users_email_key"\n',
            prefix,
            "app@appdb DETAIL:  Key (email)=(",
            (p_email(rng), "email"),
            ") already exists.",
        )
    if kind < 0.55:
        return mk(
            prefix,
            "[unknown]@[unknown] LOG:  connection received: host=",
            (p_ipv4(rng), "ipv4"),
            f" port={rng.randrange(1024, 65535)}",
        )
    if kind < 0.7:
        user = rng.choice(FIRST)
        pw = t_url_password(rng)
        return mk(
            f"{ts_iso(rng)} INFO  sqlalchemy.engine: connecting to postgresql+psycopg://{user}:",
            (pw, "url_password"),
            f"@{host(rng)}:5432/appdb?sslmode=require application_name=",
            n_misc(rng),
        )
    if kind < 0.85:
        return mk(
            prefix,
            "app@appdb LOG:  duration: 0.512 ms  statement: SELECT id FROM customers WHERE phone = '",
            (p_phone_nanp(rng), "phone_nanp"),
            "' AND created_at > '2026-01-01'",
        )
    return mk(
        prefix,
        "app@appdb LOG:  execute <unnamed>: UPDATE payments SET iban = $1 WHERE id = $2\n",
        prefix,
        "app@appdb DETAIL:  parameters: $1 = '",
        (p_iban(rng), "iban"),
        "', $2 = '",
        n_uuid(rng),
        "'",
    )


def f_mysql(rng: random.Random) -> Sample:
    prefix = f"2026-11-29T12:34:{rng.randrange(60):02d}.{r(rng, DIGITS, 6)}Z {rng.randrange(1, 999)} "
    kind = rng.random()
    if kind < 0.3:
        return mk(
            prefix,
            "[Note] [MY-010926] [Server] Access denied for user 'root'@'",
            (p_ipv4(rng), "ipv4"),
            "' (using password: ",
            ("YES", "~word"),
            ")",
        )
    if kind < 0.55:
        return mk(
            prefix,
            f"Query\tCREATE USER 'svc_{rng.choice(LAST)}'@'%' IDENTIFIED BY '",
            (t_password(rng, True).replace("'", ""), "password"),
            "'",
        )
    if kind < 0.75:
        return mk(f"$ mysql -h {host(rng)} -u admin -p", (mixed(rng, ALNUM, 14), "password"), " -e 'SHOW DATABASES'")
    return mk(
        prefix,
        "Query\tINSERT INTO customers (name, email, card_number, ssn) VALUES ('Jane Roe', '",
        (p_email(rng), "email"),
        "', '",
        (p_card(rng), "card"),
        "', '",
        (p_ssn(rng), "ssn"),
        "')",
    )


def f_mongo(rng: random.Random) -> Sample:
    kind = rng.random()
    if kind < 0.45:
        doc = {
            "t": {"$date": "2026-11-29T12:34:56.789+00:00"},
            "s": "I",
            "c": "NETWORK",
            "id": 22943,
            "ctx": "listener",
            "msg": "Connection accepted",
            "attr": {
                "remote": "@@IP@@:52144",
                "uuid": {"uuid": {"$uuid": "@@U@@"}},
                "connectionId": rng.randrange(999),
                "connectionCount": rng.randrange(99),
            },
        }
        a, rest = json.dumps(doc, separators=(",", ":")).split("@@IP@@")
        b, c = rest.split("@@U@@")
        return mk(a, (p_ipv4(rng), "ipv4"), b, n_uuid(rng), c)
    user, pw = rng.choice(FIRST), t_url_password(rng)
    scheme = rng.choice(["mongodb+srv", "mongodb"])
    return mk(
        f"{ts_iso(rng)} [pymongo] connecting to {scheme}://{user}:",
        (pw, "url_password"),
        f"@cluster0.{r(rng, LOWER + DIGITS, 5)}.mongodb.net/prod?retryWrites=true&w=majority&authSource=admin",
    )


def f_redis(rng: random.Random) -> Sample:
    kind = rng.random()
    ts = f"{1732838400 + rng.randrange(10**6)}.{r(rng, DIGITS, 6)}"
    if kind < 0.35:
        return mk(
            ts,
            " [0 ",
            (p_ipv4(rng), "ipv4"),
            f':{rng.randrange(1024, 65535)}] "AUTH" "default" "',
            (t_password(rng, False), "password"),
            '"',
        )
    if kind < 0.55:
        return mk(
            ts,
            " [0 ",
            (p_ipv4(rng), "ipv4"),
            f':{rng.randrange(1024, 65535)}] "CONFIG" "SET" "requirepass" "',
            (t_password(rng, False), "password"),
            '"',
        )
    if kind < 0.75:
        return mk(
            f"{ts_iso(rng)} worker: connecting to redis://:",
            (t_url_password(rng), "url_password"),
            f"@{host(rng)}:6379/0",
        )
    return mk(
        f"{rng.randrange(1, 99999)}:M 29 Nov 2026 12:34:56.{r(rng, DIGITS, 3)} * Ready to accept connections tcp; replica ",
        (p_ipv4(rng), "ipv4"),
        ":6379 run_id=",
        (r(rng, HEX, 40), "~git_sha"),
    )


def f_kafka_spark(rng: random.Random) -> Sample:
    kind = rng.random()
    if kind < 0.3:
        return mk(
            f"[2026-11-29 12:34:56,{r(rng, DIGITS, 3)}] INFO ProducerConfig values: \n\tsasl.jaas.config = org.apache.kafka.common.security.plain.PlainLoginModule required username=\"svc-orders\" password=\"",
            (t_password(rng, True).replace('"', ""), "password"), "\";\n\tsasl.mechanism = PLAIN\n\tssl.truststore.password = ", ("[hidden]", "~masked"), "\n\tbootstrap.servers = [", (p_ipv4(rng), "ipv4"), ":9092]",
        )  # fmt: skip
    if kind < 0.55:
        return mk(
            "24/11/29 12:34:56 INFO SparkContext: Spark configuration: spark.hadoop.fs.s3a.access.key=",
            (t_aws_key_id(rng), "aws_key_id"),
            " spark.hadoop.fs.s3a.secret.key=",
            (t_aws_secret(rng), "aws_secret"),
            " spark.app.id=app-20261129123456-0001",
        )
    if kind < 0.8:
        user, pw = rng.choice(FIRST), t_url_password(rng)
        return mk(
            f"[2026-11-29, 12:34:56 UTC] {{base.py:83}} INFO - Using connection ID 'pg' for task execution. AIRFLOW_CONN_PG='postgresql://{user}:",
            (pw, "url_password"),
            f"@{host(rng)}:5432/dwh' dag_id=etl run_id=scheduled__2026-11-29T00:00:00+00:00",
        )
    user, pw = rng.choice(FIRST), t_url_password(rng)
    return mk(
        f"[2026-11-29 12:34:56,{r(rng, DIGITS, 3)}: INFO/MainProcess] Connected to amqp://{user}:",
        (pw, "url_password"),
        f"@{host(rng)}:5672//",
    )


def f_celery(rng: random.Random) -> Sample:
    tid = n_uuid(rng)
    kind = rng.random()
    if kind < 0.5:
        return mk(
            f"[2026-11-29 12:34:56,{r(rng, DIGITS, 3)}: INFO/MainProcess] Task app.tasks.send_receipt[",
            tid,
            "] received args=('",
            (p_email(rng), "email"),
            "', '",
            (p_phone_intl(rng), "phone_intl"),
            "') kwargs={}",
        )
    value, t = provider(rng)
    return mk(
        f"[2026-11-29 12:34:56,{r(rng, DIGITS, 3)}: ERROR/ForkPoolWorker-{rng.randrange(1, 9)}] Task app.tasks.sync[",
        tid,
        '] raised unexpected: AuthError("invalid credentials for key ',
        (value, t),
        '")',
    )


def f_java(rng: random.Random) -> Sample:
    kind = rng.random()
    head = f"2026-11-29 12:34:56,{r(rng, DIGITS, 3)} ERROR [http-nio-8080-exec-{rng.randrange(1, 20)}] c.a.auth.LoginController - "
    trace = "\njava.lang.IllegalStateException: upstream rejected request\n\tat com.acme.auth.TokenService.exchange(TokenService.java:142)\n\tat com.acme.auth.LoginController.login(LoginController.java:88)\n\tat org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:897)\n\t... 42 common frames omitted"
    if kind < 0.3:
        pw = t_password(rng, True).replace("'", "")
        return mk(
            head,
            "login failed for User{id=",
            (str(rng.randrange(10**6)), "~numeric_id"),
            ", email='",
            (p_email(rng), "email"),
            "', password='",
            (pw, "password"),
            "', roles=[ADMIN]}",
            trace,
        )
    if kind < 0.55:
        user, pw = rng.choice(FIRST), t_password(rng, False).replace("&", "").replace("#", "")
        return mk(
            f"2026-11-29 12:34:56.{r(rng, DIGITS, 3)}  INFO 1 --- [           main] com.zaxxer.hikari.HikariDataSource       : HikariPool-1 - Starting... url=jdbc:postgresql://{host(rng)}:5432/app?user={user}&password=",
            (pw, "password"),
            "&ssl=true",
        )
    if kind < 0.75:
        pw = t_password(rng, False).replace(";", "")
        return mk(
            f"{head}cannot open jdbc:sqlserver://{host(rng)}:1433;databaseName=erp;user=sa;password=",
            (pw, "password"),
            ";encrypt=true",
            trace,
        )
    value, t = provider(rng)
    return mk(
        f"12:34:56.{r(rng, DIGITS, 3)} [main] WARN  o.a.k.c.producer.KafkaProducer - config override {{client.id=orders, api.token=",
        (value, t),
        ", linger.ms=5}",
        trace,
    )


def f_go(rng: random.Random) -> Sample:
    kind = rng.random()
    if kind < 0.35:
        value, t = provider(rng)
        doc = {
            "level": "info",
            "ts": 1732838400.123 + rng.randrange(999),
            "caller": "auth/issuer.go:142",
            "msg": "token issued",
            "user": "@@E@@",
            "token": "@@T@@",
            "trace_id": "@@TR@@",
        }
        a, rest = json.dumps(doc, separators=(",", ":")).split("@@E@@")
        b, rest = rest.split("@@T@@")
        c, d = rest.split("@@TR@@")
        return mk(a, (p_email(rng), "email"), b, (value, t), c, n_trace(rng), d)
    if kind < 0.6:
        k, v, t = keyed_value(rng, True)
        v = v.replace('"', "").replace("\\", "")
        return mk(
            f'time="{ts_iso(rng)}" level=warning msg="retrying upstream" attempt=3 {k}="',
            (v, t),
            '" remote_addr="',
            (p_ipv4(rng), "ipv4"),
            f':{rng.randrange(1024, 65535)}" elapsed=',
            n_misc(rng),
        )
    if kind < 0.8:
        return mk(
            '{"level":"debug","time":"',
            ts_iso(rng),
            '","remote_ip":"',
            (p_ipv6(rng), "ipv6"),
            '","user_agent":"Go-http-client/2.0","headers":"map[Authorization:[Bearer ',
            (t_opaque(rng), "auth_bearer"),
            "] X-Request-Id:[",
            n_uuid(rng),
            ']]","message":"incoming"}',
        )
    pw = t_url_password(rng)
    return mk(
        "panic: dial tcp: lookup db: no such host\n\ngoroutine 1 [running]:\nmain.connect({0xc000012345, 0x3a}, {0x0, 0x0})\n\t/app/main.go:42 +0x1a5\nexit status 2\nDSN=mysql://app:",
        (pw, "url_password"),
        f"@tcp({host(rng)}:3306)/shop?parseTime=true",
    )


def f_rust(rng: random.Random) -> Sample:
    kind = rng.random()
    if kind < 0.5:
        return mk(
            f"{ts_iso(rng)}  INFO request{{method=POST uri=/v1/login version=HTTP/1.1 id=",
            n_uuid(rng),
            "}: app::auth: login ok user.email=",
            (p_email(rng), "email"),
            " client_ip=",
            (p_ipv4(rng), "ipv4"),
            " elapsed=",
            n_misc(rng),
        )
    value, t = provider(rng)
    pw = t_url_password(rng)
    return mk(
        "thread 'main' panicked at src/config.rs:42:9:\ninvalid config: Config { database_url: \"postgres://app:",
        (pw, "url_password"),
        f'@{host(rng)}/app", api_key: "',
        (value, t),
        '", workers: 8, build: "',
        n_sha(rng),
        '" }\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace',
    )


def f_node(rng: random.Random) -> Sample:
    kind = rng.random()
    if kind < 0.45:
        tok = t_jwt(rng) if rng.random() < 0.5 else t_opaque(rng)
        return mk(
            '{"level":30,"time":',
            str(1732838400000 + rng.randrange(10**6)),
            f',"pid":{rng.randrange(9, 9999)},"hostname":"api-0","req":{{"id":{rng.randrange(999)},"method":"GET","url":"/v1/me","headers":{{"host":"api.acme.io","authorization":"Bearer ',
            (tok, "auth_bearer"),
            '","user-agent":"Mozilla/5.0"},"remoteAddress":"',
            (p_ipv6(rng) if rng.random() < 0.5 else "::ffff:" + p_ipv4(rng), "ipv6"),
            f'","remotePort":{rng.randrange(1024, 65535)}}},"msg":"request completed"}}',
        )
    if kind < 0.7:
        return mk(
            "info: Connected to redis://default:",
            (t_url_password(rng), "url_password"),
            f'@{host(rng)}:6380 {{"service":"api","timestamp":"',
            ts_iso(rng),
            '"}',
        )
    k, v, t = keyed_value(rng, True)
    v = v.replace('"', "").replace("\\", "")
    return mk(
        '{"name":"billing","hostname":"b-1","pid":42,"level":50,"err":{"message":"Request failed with status code 401","config":{"headers":{"Accept":"application/json","',
        k,
        '":"',
        (v, t),
        '"},"url":"',
        n_url(rng),
        '"}},"msg":"stripe sync failed","time":"',
        ts_iso(rng),
        '","v":0}',
    )


def f_python(rng: random.Random) -> Sample:
    kind = rng.random()
    if kind < 0.35:
        return mk(
            "2026-11-29 12:34:56 [info     ] user_login                     email=",
            (p_email(rng), "email"),
            " ip=",
            (p_ipv4(rng), "ipv4"),
            " request_id=",
            n_uuid(rng),
            " phone=",
            (p_phone_nanp(rng), "phone_nanp"),
        )
    value, t = provider(rng)
    card = p_card(rng)
    pw = t_password(rng, True).replace("'", "").replace("\\", "")
    return mk(
        'Traceback (most recent call last):\n  File "/app/billing/charge.py", line 42, in charge\n    resp = client.charge(card=card, amount=amount)\n    amount = 1999\n    api_key = \'',
        (value, t), "'\n    card = '", (card, "card"), "'\n    customer = {'id': ", (str(rng.randrange(10**6)), "~numeric_id"), ", 'email': '", (p_email(rng), "email"), "', 'password': '", (pw, "password"),
        "'}\nstripe.error.CardError: Request req_", (mixed(rng, ALNUM, 14), "~object_id"), ": Your card was declined.",
    )  # fmt: skip


def f_dotnet(rng: random.Random) -> Sample:
    kind = rng.random()
    if kind < 0.4:
        return mk(
            f'[12:34:{rng.randrange(60):02d} INF] HTTP POST /api/login responded 200 in {rng.randrange(1, 99)}.{r(rng, DIGITS, 4)} ms {{"Email": "',
            (p_email(rng), "email"),
            '", "ClientIp": "',
            (p_ipv4(rng), "ipv4"),
            '", "RequestId": "0HN',
            (r(rng, UPPER + DIGITS, 10), "~object_id"),
            ':00000001"}',
        )
    if kind < 0.7:
        pw = t_password(rng, False).replace(";", "")
        return mk(
            '{"@t":"',
            ts_iso(rng),
            '","@mt":"Opening {ConnectionString}","ConnectionString":"Server=tcp:sql-prod.database.windows.net,1433;Initial Catalog=erp;User ID=erpadmin;Password=',
            (pw, "password"),
            ';Encrypt=True;Connection Timeout=30;","@i":"',
            (r(rng, HEX, 8), "~span_id"),
            '"}',
        )
    key = t_azure_storage_key(rng)
    return mk(
        f"[{ts_iso(rng)} WRN] Blob upload retry: DefaultEndpointsProtocol=https;AccountName=acmeprod;AccountKey=",
        (key, "azure_storage_key"),
        ";EndpointSuffix=core.windows.net",
    )


def f_azure(rng: random.Random) -> Sample:
    kind = rng.random()
    if kind < 0.5:
        return mk(
            "ServiceBusConnection=Endpoint=sb://acme-bus.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=",
            (t_azure_sas_key(rng), "azure_conn_key"),
            ";EntityPath=orders",
        )
    if kind < 0.75:
        return mk(
            '{"storage": {"accountName": "acmelogs", "accountKey": "',
            (t_azure_storage_key(rng), "azure_storage_key"),
            '"}, "region": "westeurope"}',
        )
    return mk(
        'AZURE_STORAGE_CONNECTION_STRING="DefaultEndpointsProtocol=https;AccountName=acmelogs;AccountKey=',
        (t_azure_storage_key(rng), "azure_storage_key"),
        ';BlobEndpoint=https://acmelogs.blob.core.windows.net/"',
    )


def f_terraform(rng: random.Random) -> Sample:
    kind = rng.random()
    if kind < 0.3:
        return mk(
            '  # aws_db_instance.main will be created\n  + resource "aws_db_instance" "main" {\n      + engine   = "postgres"\n      + password = ',
            ("(sensitive value)", "~masked"),
            "\n      + arn      = (known after apply)\n    }",
        )
    if kind < 0.6:
        return mk(
            f"{ts_iso(rng)} [DEBUG] provider.terraform-provider-aws_v5.31.0_x5: HTTP Request Sent: Authorization: AWS4-HMAC-SHA256 Credential=",
            (t_aws_key_id(rng), "aws_key_id"),
            "/20261129/eu-west-1/sts/aws4_request, SignedHeaders=host;x-amz-date, Signature=",
            (r(rng, HEX, 64), "url_signature"),
        )
    return mk(
        '│ Error: creating RDS instance: InvalidParameterValue: The parameter MasterUserPassword is not a valid password\n│   with aws_db_instance.main,\n│   on main.tf line 12:\n│   12:   master_password = "',
        (t_password(rng, True).replace('"', ""), "password"),
        '"',
    )


def f_ansible(rng: random.Random) -> Sample:
    kind = rng.random()
    host_ = p_ipv4(rng)
    if kind < 0.5:
        return mk(
            "ok: [",
            (host_, "ipv4"),
            "] => (item={'name': 'app', 'password': '",
            (t_password(rng, True).replace("'", ""), "password"),
            "', 'priv': 'app.*:ALL'})",
        )
    if kind < 0.75:
        return mk(
            'fatal: [web-01]: FAILED! => {"changed": false, "msg": "Authentication failure.", "ansible_ssh_pass": "',
            (t_password(rng, True).replace('"', ""), "password"),
            '", "ansible_host": "',
            (host_, "ipv4"),
            '"}',
        )
    return mk(
        'TASK [deploy : template env] ***********************************************\nchanged: [web-02] => {"dest": "/etc/app/env", "checksum": "',
        (r(rng, HEX, 40), "~hash"),
        '", "md5sum": "',
        (r(rng, HEX, 32), "~hash"),
        '"}',
    )


def f_ci(rng: random.Random) -> Sample:
    ts = f"2026-11-29T12:34:{rng.randrange(60):02d}.{r(rng, DIGITS, 7)}Z "
    kind = rng.random()
    if kind < 0.25:
        return mk(
            ts,
            "##[group]Run docker login ghcr.io -u acme-bot -p ",
            ("***", "~masked"),
            "\n",
            ts,
            "env:\n",
            ts,
            "  NPM_TOKEN: ",
            ("***", "~masked"),
            "\n",
            ts,
            "##[endgroup]",
        )
    if kind < 0.5:
        tok = t_github_classic(rng) if rng.random() < 0.5 else t_github_fine(rng)
        t = "github_classic" if tok.startswith("gh") else "github_fine"
        return mk(ts, "+ git clone https://x-access-token:", (tok, t), "@github.com/acme/infra.git")
    if kind < 0.75:
        return mk(
            '$ curl --fail -H "PRIVATE-TOKEN: ',
            (t_gitlab(rng), "gitlab"),
            f'" https://gitlab.acme.io/api/v4/projects/{rng.randrange(999)}/pipelines\nJob succeeded (commit ',
            n_sha(rng),
            ")",
        )
    value, t = provider(rng)
    return mk(ts, 'Run echo "deploying with ', (value, t), '" # TODO remove')


def f_docker(rng: random.Random) -> Sample:
    kind = rng.random()
    if kind < 0.4:
        k, v, t = keyed_value(rng, False)
        k = k.upper().replace("-", "_")
        v = v.replace(" ", "")
        return mk(
            f"$ docker run -d --name api -e LOG_LEVEL=info -e {k}=",
            (v, t),
            " -p 8080:8080 ghcr.io/acme/api@",
            ("sha256:" + r(rng, HEX, 64), "~hash"),
        )
    if kind < 0.7:
        k, v, t = keyed_value(rng, True)
        k = k.upper().replace("-", "_")
        v = v.replace('"', "").replace("\\", "")
        return mk(
            '        "Env": [\n            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin",\n            "',
            k,
            "=",
            (v, t),
            '",\n            "GIT_SHA=',
            n_sha(rng),
            '"\n        ],',
        )
    return mk(
        f"api-1  | {ts_iso(rng)} INFO webhook delivered to https://hooks.slack.com/services/",
        (t_slack_webhook_path(rng), "slack_webhook"),
        " status=200",
    )


def f_http(rng: random.Random) -> Sample:
    kind = rng.random()
    if kind < 0.35:
        cred = base64.b64encode(f"{rng.choice(FIRST)}:{t_password(rng)}".encode()).decode()
        return mk(
            "* Connected to auth.acme.io (",
            (p_ipv4(rng), "ipv4"),
            ") port 443\n> POST /oauth/token HTTP/2\r\n> Host: auth.acme.io\r\n> Authorization: Basic ",
            (cred, "auth_basic"),
            "\r\n> Content-Type: application/x-www-form-urlencoded\r\n>\r\n* upload completely sent off: 58 bytes\n< HTTP/2 200\r\n< x-request-id: ",
            n_uuid(rng),
            "\r\n",
        )
    if kind < 0.6:
        tok = t_jwt(rng) if rng.random() < 0.4 else t_opaque(rng)
        return mk(
            "GET /v2/accounts HTTP/1.1\r\nHost: api.acme.io\r\nauthorization: Bearer ",
            (tok, "auth_bearer"),
            "\r\nAccept: */*\r\nX-Trace-Id: ",
            n_trace(rng),
            "\r\n\r\n",
        )
    if kind < 0.8:
        cid = r(rng, LOWER + DIGITS, 12)
        sec = mixed(rng, ALNUM, 32)
        pw = quote(t_password(rng), safe="")
        return mk(
            "body: grant_type=password&username=",
            (quote(p_email(rng), safe=""), "email"),
            "&password=",
            (pw, "password"),
            f"&client_id={cid}&client_secret=",
            (sec, "secret_assign"),
            "&scope=openid",
        )
    return mk(
        '< HTTP/1.1 401 Unauthorized\r\n< WWW-Authenticate: Bearer realm="api", error="invalid_token"\r\n< Date: Fri, 29 Nov 2026 12:34:56 GMT\r\n< Content-Length: ',
        (str(rng.randrange(10, 999)), "~numeric_id"),
        "\r\n",
    )


def f_csv(rng: random.Random) -> Sample:
    sep = rng.choice([",", "\t", ";", "|"])
    return mk(
        f"id{sep}name{sep}email{sep}phone{sep}card{sep}ssn{sep}iban{sep}last_ip{sep}created\n", (str(rng.randrange(10**5)), "~numeric_id"), f"{sep}Jane Roe{sep}",
        (p_email(rng), "email"), sep, *([(p_phone_nanp(rng), "phone_nanp")] if rng.random() < 0.5 else [(p_phone_intl(rng), "phone_intl")]), sep, (p_card(rng), "card"), sep,
        (p_ssn(rng), "ssn"), sep, (p_iban_compact(rng), "iban"), sep, (p_ipv4(rng), "ipv4"), sep, n_timestamp(rng),
    )  # fmt: skip


def f_config(rng: random.Random) -> Sample:
    kind = rng.random()
    value, t = provider(rng)
    pw = t_password(rng, False)
    if kind < 0.25:
        return mk(
            "--- config dump ---\nserver:\n  port: 8080\n  host: 0.0.0.0\ndatabase:\n  user: app\n  password: ",
            (pw, "password"),
            "\n  host: ",
            host(rng),
            "\nintegrations:\n  token: ",
            (value, t),
            "\n  commit: ",
            n_sha(rng),
        )
    if kind < 0.5:
        return mk(
            '[database]\nurl = "',
            n_url(rng),
            '"\npassword = "',
            (pw, "password"),
            '"\n\n[integrations.github]\ntoken = "',
            (value, t),
            '"\nversion = "',
            n_version(rng),
            '"',
        )
    if kind < 0.75:
        return mk(
            "; /etc/app/app.ini\n[smtp]\nhost = smtp.acme.io\nuser = mailer\npass = ",
            (pw, "password"),
            "\n[api]\nkey = ",
            (value, t),
            "\ntimeout = 30s",
        )
    return mk(
        "# .env\nNODE_ENV=production\nDATABASE_PASSWORD=",
        (pw, "password"),
        "\nSTRIPE_SECRET_KEY=",
        (t_stripe(rng), "stripe"),
        "\nSENTRY_RELEASE=",
        n_sha(rng),
    )


def f_xml(rng: random.Random) -> Sample:
    kind = rng.random()
    if kind < 0.5:
        pw = t_password(rng, True).replace("<", "").replace("&", "")
        return mk(
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Header><wsse:Security><wsse:UsernameToken><wsse:Username>svc_billing</wsse:Username><wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText">',
            (pw, "password"),
            "</wsse:Password></wsse:UsernameToken></wsse:Security></soapenv:Header><soapenv:Body><ns:GetOrder><ns:id>",
            n_uuid(rng),
            "</ns:id></ns:GetOrder></soapenv:Body></soapenv:Envelope>",
        )
    return mk(
        "<Customer><Name>Jane Roe</Name><Email>",
        (p_email(rng), "email"),
        "</Email><CardNumber>",
        (p_card(rng), "card"),
        "</CardNumber><IBAN>",
        (p_iban(rng), "iban"),
        "</IBAN><Updated>",
        n_timestamp(rng),
        "</Updated></Customer>",
    )


def f_graphql(rng: random.Random) -> Sample:
    kind = rng.random()
    if kind < 0.5:
        pw = t_password(rng, True).replace('"', "").replace("\\", "")
        return mk(
            '{"operationName":"Login","query":"mutation Login($email: String!, $password: String!) { login(email: $email, password: ',
            ("$password", "~template"),
            ') { token } }","variables":{"email":"',
            (p_email(rng), "email"),
            '","password":"',
            (pw, "password"),
            '"}}',
        )
    pw = t_password(rng, True).replace('"', "").replace("\\", "")
    return mk(
        'graphql: mutation { createUser(input: {email: \\"',
        (p_email(rng), "email"),
        '\\", password: \\"',
        (pw, "password"),
        '\\", phone: \\"',
        (p_phone_intl(rng), "phone_intl"),
        '\\"}) { id } }',
    )


def f_sql(rng: random.Random) -> Sample:
    kind = rng.random()
    if kind < 0.5:
        return mk(
            "INSERT INTO customers (name, email, phone, card_number, iban) VALUES ('Jane Roe', '",
            (p_email(rng), "email"),
            "', '",
            (p_phone_intl(rng), "phone_intl"),
            "', '",
            (p_card(rng), "card"),
            "', '",
            (p_iban_compact(rng), "iban"),
            "');",
        )
    return mk(
        "SELECT u.id FROM users u WHERE u.ssn = '",
        (p_ssn(rng), "ssn"),
        "' AND u.created_at > '2026-01-01' AND u.id = '",
        n_uuid(rng),
        "' LIMIT 1; -- took ",
        n_misc(rng),
    )


def f_base64json(rng: random.Random) -> Sample:
    harmless = base64.b64encode(
        json.dumps({"page": rng.randrange(99), "size": 50, "sort": "created_at"}).encode()
    ).decode()
    kind = rng.random()
    if kind < 0.5:
        return mk('{"items":[],"next_cursor":"', (harmless, "~b64_harmless"), '","request_id":"', n_uuid(rng), '"}')
    pw = base64.b64encode(t_password(rng).encode()).decode()
    return mk(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db-creds\n  uid: ",
        n_uuid(rng),
        "\ntype: Opaque\ndata:\n  password: ",
        (pw, "password"),
        "\n  username: YXBw\n",
    )


def f_pem(rng: random.Random) -> Sample:
    kind = rng.random()
    if kind < 0.35:
        return mk(
            '{"type": "service_account", "project_id": "acme-prod", "private_key_id": "',
            (r(rng, HEX, 40), "~hash"),
            '", "private_key": "',
            *pem_frags(rng, "\\n"),
            '\\n", "client_email": "',
            ("deployer@acme-prod.iam.gserviceaccount.com", "email"),
            '"}',
        )
    if kind < 0.65:
        return mk(f"{ts_iso(rng)} ERROR tls: failed to parse key:\n", *pem_frags(rng, "\n"), "\nhint: check file mode")
    if kind < 0.8:
        return mk(
            "    private_key: |\n      ",
            *[
                f.replace("\n", "\n      ") if isinstance(f, str) else (f[0].replace("\n", "\n      "), f[1])
                for f in pem_frags(rng, "\n")
            ],
            "\n    cert_path: ",
            n_path(rng),
        )
    return mk('{"msg":"config","data":"{\\"key\\":\\"', *pem_frags(rng, "\\\\n"), '\\\\n\\"}"}')


def f_i18n(rng: random.Random) -> Sample:
    kind = rng.random()
    if kind < 0.2:
        return mk(
            "用户 张伟 的邮箱 ", (p_email(rng), "email"), " 已验证，手机号 ", (p_phone_intl(rng), "phone_intl"), "。"
        )
    if kind < 0.4:
        return mk(
            "Benutzer „",
            (p_email(rng), "email"),
            "“ angemeldet von ",
            (p_ipv4(rng), "ipv4"),
            " – Überweisung an ",
            (p_iban(rng), "iban"),
            " ausgeführt ✅",
        )
    if kind < 0.55:
        return mk("تم إرسال رمز التحقق إلى ", (p_phone_intl(rng), "phone_intl"), " للمستخدم ", (p_email(rng), "email"))
    if kind < 0.7:
        value, t = provider(rng)
        return mk("🔑 clé API utilisée : ", (value, t), " — requête ", n_uuid(rng), " terminée 🎉")
    if kind < 0.85:
        return mk(
            "ログイン失敗: ユーザー=",
            (p_email(rng), "email"),
            " IP=",
            (p_ipv6(rng), "ipv6"),
            " 時刻=",
            n_timestamp(rng),
        )
    return mk("📧 ", (p_email(rng), "email"), " • 💳 ", (p_card(rng), "card"), " • 🏷️ v", n_version(rng))


def f_adjacent(rng: random.Random) -> Sample:
    """Tokens next to punctuation and brackets of every kind, at line end or start."""
    value, t = provider(rng) if rng.random() < 0.7 else pii(rng)
    left, right = rng.choice(
        [
            ("(", ")"),
            ("[", "]"),
            ("{", "}"),
            ("<", ">"),
            ("'", "'"),
            ('"', '"'),
            ("`", "`"),
            ("", ","),
            ("", "."),
            ("", ";"),
            ("=", ""),
            (" key:", ""),
            (" => ", ""),
            ("", ""),
        ]
    )
    tail = rng.choice(["", " next", "\n", " ok"])
    if rng.random() < 0.3:
        return mk((value, t), right, " was rejected at ", n_timestamp(rng))
    return mk(f"{rng.choice(['upstream', 'cfg', 'DEBUG', 'hook'])} value{left or ' '}", (value, t), right, tail)


def f_assign_forms(rng: random.Random) -> Sample:
    k, v, t = keyed_value(rng, True)
    v = v.replace('"', "").replace("'", "").replace("\\", "")
    forms: list[tuple[str, str]] = [
        (f"{k}=", ""), (f"{k}: ", ""), (f'"{k}": "', '"'), (f"'{k}': '", "'"), (f":{k} => \"", '"'), (f'"{k}" => "', '"'),
        (f"{k} = \"", '"'), (f"{k}='", "'"), (f"--{k.replace('_', '-').lower()} ", ""), (f"{k.upper()}=\"", '"'),
        (f"<{k}>", f"</{k}>"), (f"{k}:\"", '"'), (f'{{"{k}":"', '"}'),
    ]  # fmt: skip
    left, right = rng.choice(forms)
    if (left.endswith("=") or left.endswith(": ") or left.endswith(" ")) and not right:
        v = v.replace(" ", "").replace(",", "")
    return mk(f"{ts_iso(rng)} DEBUG cfg ", left, (v, t), right, " host=", n_url(rng), " build=", n_sha(rng))


def f_negative(rng: random.Random) -> Sample:
    """Lines of look-alikes only."""
    kind = rng.random()
    if kind < 0.2:
        return mk(
            f"{ts_iso(rng)} INFO token_type=Bearer expires_in=3600 max_tokens=",
            ("4096", "~numeric_id"),
            " secretName: ",
            ("app-tls", "~word"),
            " password_reset_required=",
            ("false", "~word"),
            " keyId=",
            n_uuid(rng),
        )
    if kind < 0.35:
        return mk(
            "Chrome/",
            ("120.0.6099.109", "~version"),
            " Safari/537.36 build ",
            n_sha(rng),
            " on ",
            ("Windows NT 10.0; Win64; x64", "~word"),
            " ver ",
            n_version(rng),
        )
    if kind < 0.5:
        return mk(
            "npm install ",
            ("lodash@4.17.21", "~package"),
            " ",
            ("@types/node@20.11.5", "~package"),
            " ",
            ("left-pad@1.3.0", "~package"),
            " integrity ",
            n_hash(rng),
        )
    if kind < 0.6:
        return mk(
            "Host key fingerprint is ",
            (":".join(r(rng, HEX, 2) for _ in range(16)), "~fingerprint"),
            " for ",
            ("git@github.com:acme/infra.git", "~url"),
        )
    if kind < 0.7:
        return mk(
            "order ",
            n_luhn_invalid(rng),
            " refund ref ",
            n_iban_invalid(rng),
            " at ",
            n_timestamp(rng),
            " from ",
            n_path(rng),
        )
    if kind < 0.8:
        return mk(
            "std::vector<int> at ",
            n_misc(rng),
            " tokio::runtime::task id=",
            n_span(rng),
            " ",
            n_word(rng),
            " ",
            n_word(rng),
            " ",
            n_misc(rng),
        )
    if kind < 0.9:
        return mk(
            "cursor=",
            (base64.b64encode(json.dumps({"offset": rng.randrange(9999)}).encode()).decode(), "~b64_harmless"),
            ' etag="',
            n_hash(rng),
            '" image=',
            ("nginx@sha256:" + r(rng, HEX, 64), "~hash"),
            " ",
            n_ulid_frag(rng),
        )
    return mk(
        n_timestamp(rng), " ", n_trace(rng), " ", n_uuid(rng), " ", n_version(rng), " ", n_url(rng), " ", n_misc(rng)
    )


def n_ulid_frag(rng: random.Random) -> Frag:
    return ("01J" + r(rng, "0123456789ABCDEFGHJKMNPQRSTVWXYZ", 23), "~ulid")


def f_long(rng: random.Random) -> Sample:
    """A very long JSON line: hundreds of harmless fields, a few sensitive ones anywhere."""
    frags: list[Frag] = ['{"event":"bulk_sync"']
    for i in range(rng.randrange(150, 400)):
        roll = rng.random()
        if roll < 0.02:
            value, t = provider(rng)
            frags += [f',"cred_{i}":"', (value, t), '"']
        elif roll < 0.04:
            value, t = pii(rng)
            frags += [f',"field_{i}":"', (value, t), '"']
        elif roll < 0.3:
            frags += [f',"ref_{i}":"', neg(rng), '"']
        else:
            frags.append(f',"n{i}":{rng.randrange(10**6)}')
    frags.append("}")
    return mk(*frags)


def f_multiline_value(rng: random.Random) -> Sample:
    pw = t_password(rng, False)
    value, t = provider(rng)
    return mk(
        "notes: |\n  rotate creds monthly\n  contact ", (p_email(rng), "email"), " or ", (p_phone_nanp(rng), "phone_nanp"), "\nsmtp_password: ", (pw, "password"),
        "\nslack: ", (value, t), "\nlast_rotated: ", n_timestamp(rng),
    )  # fmt: skip


def f_headers(rng: random.Random) -> Sample:
    """Credential headers other than Authorization, as dumped by proxies, SDK debug logs and Go maps."""
    kind = rng.random()
    if kind < 0.2:
        return mk(
            "X-Vault-Token: ", ("hvs." + mixed(rng, B64URL, 90), "secret_assign"), "\r\nX-Request-Id: ", n_uuid(rng)
        )
    if kind < 0.4:
        return mk(
            "DEBUG datadog: POST https://api.datadoghq.eu/api/v2/logs headers={'DD-API-KEY': '",
            (r(rng, HEX, 32), "secret_assign"),
            "', 'Content-Type': 'application/json'}",
        )
    if kind < 0.55:
        return mk(
            "> GET /openai/deployments/gpt4/chat/completions?api-version=2024-02-01 HTTP/1.1\n> api-key: ",
            (r(rng, HEX, 32), "secret_assign"),
            "\n> User-Agent: AzureOpenAI/1.12.0",
        )
    if kind < 0.7:
        return mk(
            "Proxy-Authorization: Basic ",
            (base64.b64encode(f"{rng.choice(FIRST)}:{t_password(rng)}".encode()).decode(), "auth_basic"),
            " via ",
            (p_ipv4(rng), "ipv4"),
        )
    if kind < 0.85:
        return mk(
            "X-Forwarded-For: ",
            (p_ipv4(rng), "ipv4"),
            ", ",
            (p_ipv4(rng), "ipv4"),
            ", ",
            (p_ipv6(rng), "ipv6"),
            " X-Auth-Token: ",
            (t_opaque(rng), "secret_assign"),
        )
    return mk(
        "headers: map[Accept:[*/*] X-Api-Key:[",
        (t_opaque(rng), "secret_assign"),
        "] X-Real-Ip:[",
        (p_ipv4(rng), "ipv4"),
        "]]",
    )


def f_i18n_adjacent(rng: random.Random) -> Sample:
    """PII right next to CJK/fullwidth punctuation, RTL text, emoji."""
    kind = rng.random()
    if kind < 0.25:
        return mk("邮箱：", (p_email(rng), "email"), "，电话：", (p_phone_intl(rng), "phone_intl"), "。")
    if kind < 0.5:
        return mk("IP地址", (p_ipv4(rng), "ipv4"), "登录失败（用户：", (p_email(rng), "email"), "）")
    if kind < 0.7:
        return mk("العميل ", (p_email(rng), "email"), " رقم البطاقة ", (p_card(rng), "card"), " ✔")
    if kind < 0.85:
        return mk("カード番号：", (p_card(rng), "card"), "　有効期限：12/28")
    return mk("🚨 ssn=", (p_ssn(rng), "ssn"), " 👤 ", (p_email(rng), "email"), " 🌐 ", (p_ipv6(rng), "ipv6"))


def f_structured_kv(rng: random.Random) -> Sample:
    """Go `%+v` structs, Python reprs and logfmt with addresses and numbers as bare values."""
    kind = rng.random()
    if kind < 0.3:
        return mk(
            "conn={LocalAddr:",
            (p_ipv4(rng), "ipv4"),
            f":{rng.randrange(1024, 65535)} RemoteAddr:",
            (p_ipv4(rng), "ipv4"),
            ":443 ID:",
            n_uuid(rng),
            "}",
        )
    if kind < 0.5:
        return mk("peer{ip:", (p_ipv4(rng), "ipv4"), " addr:", (p_ipv6(rng), "ipv6"), " port:443}")
    if kind < 0.7:
        return mk(
            '{"card": ',
            (luhn_complete("4", 16, rng), "card"),
            ', "ssn": "',
            (p_ssn(rng).replace("-", ""), "ssn"),
            '", "amount": 1999}',
        )
    if kind < 0.85:
        return mk(
            "client=",
            (p_ipv4(rng), "ipv4"),
            f":{rng.randrange(1024, 65535)} user=",
            (p_email(rng), "email"),
            " tel=",
            (p_phone_nanp(rng), "phone_nanp"),
        )
    return mk(
        "User(id=",
        (str(rng.randrange(10**6)), "~numeric_id"),
        ", email='",
        (p_email(rng), "email"),
        "', phone='",
        (p_phone_intl(rng), "phone_intl"),
        "', last_login_ip=IPv4Address('",
        (p_ipv4(rng), "ipv4"),
        "'))",
    )


FAMILIES: list[tuple[Callable[[random.Random], Sample], int]] = [
    (f_journald, 6), (f_kubectl, 5), (f_envoy, 5), (f_haproxy, 4), (f_apache, 4), (f_postgres, 6), (f_mysql, 4),
    (f_mongo, 3), (f_redis, 4), (f_kafka_spark, 5), (f_celery, 3), (f_java, 5), (f_go, 5), (f_rust, 3), (f_node, 5),
    (f_python, 4), (f_dotnet, 4), (f_azure, 3), (f_terraform, 3), (f_ansible, 3), (f_ci, 5), (f_docker, 4), (f_http, 5),
    (f_csv, 4), (f_config, 5), (f_xml, 3), (f_graphql, 3), (f_sql, 3), (f_base64json, 3), (f_pem, 4), (f_i18n, 5),
    (f_adjacent, 10), (f_assign_forms, 10), (f_negative, 12), (f_long, 1), (f_multiline_value, 3), (f_headers, 5), (f_i18n_adjacent, 4), (f_structured_kv, 5),
]  # fmt: skip


def generate(seed: int = 7, lines: int = 3000) -> list[Sample]:
    rng = random.Random(seed)
    funcs = [f for f, _ in FAMILIES]
    weights = [w for _, w in FAMILIES]
    return [rng.choices(funcs, weights)[0](rng) for _ in range(lines)]


def all_types(samples: list[Sample]) -> set[str]:
    return {t for s in samples for _, _, t in s.positives}
