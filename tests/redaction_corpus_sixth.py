"""A sixth labelled corpus for the log redactor: infrastructure and language-runtime formats.

The five other corpora cover application logs, server logs and structured loggers. This one reproduces what
operators paste and what deploy tooling prints: Terraform plan/apply output and state JSON, Ansible and Chef
runs, Helm values and `helm --set`, `kubectl get secret -o yaml` (base64 `data:`), kubeconfig, GitHub
Actions and GitLab CI job logs, AWS/gcloud/az CLI output, shell history (`export X=`, `curl -u`,
`mysql -pPASS`, `PGPASSWORD=`), Go panics and `%+v` struct dumps, Rust `Debug` output, Python reprs,
gRPC/HTTP2 metadata dumps, libpq key=value DSNs, JDBC/Mongo SRV/Redis/AMQP URLs, Kafka JAAS configs,
.npmrc/.pypirc/.netrc/docker config.json, OpenSSH/PGP/encrypted PKCS#8 private keys (multi-line and with
escaped newlines), E.164 and extension phones, plus-addressed and subdomain emails, IPv6 compressed /
IPv4-mapped / zone ids / `[v6]:port`, Amex 15 and Diners 14 digit cards, IBANs of ~35 countries.

It was written before reading the redactor's rules (docs/logging.md's policy only: 127.0.0.1/0.0.0.0/::1
are not addresses to redact; masks and templates are not values). Value generators are this file's own:
prefixes, lengths and check digits (CRC32, Luhn, mod-97) from the issuers' documentation.

Every sensitive value on a line is a positive span with its type, every look-alike that must survive
byte-identical is a negative span with its kind (`mk(..., ("value", "~kind"))`).
"""

# ruff: noqa: E501  (test data: long literal tokens and log lines)

from __future__ import annotations

import base64
import hashlib
import json
import random
from collections.abc import Callable

from redaction_corpus import (
    ALNUM,
    B64,
    B64URL,
    DIGITS,
    HEX,
    LOWER,
    UPPER,
    Sample,
    _luhn_complete,
    b62_crc32,
    mixed,
    weighted_families,
)
from redaction_corpus import _luhn_ok as luhn_ok
from redaction_corpus import _rand as r
from redaction_corpus import all_types as all_types  # re-exported: the tests call corpus.all_types
from redaction_corpus import negative_kinds as negative_kinds
from redaction_corpus_unseen import Frag, mk

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
R = random.Random


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# ------------------------------------------------------------------------------------------ secrets
def aws_key_id(rng: R) -> str:
    return rng.choice(["AKIA", "ASIA", "AKIA"]) + r(rng, UPPER + "234567", 16)


def aws_secret(rng: R) -> str:
    return mixed(rng, B64, 40)


def gcp_key(rng: R) -> str:
    return "AIza" + mixed(rng, B64URL, 35)


def azure_storage_key(rng: R) -> str:
    return b64(rng.randbytes(64))


def azure_sas_key(rng: R) -> str:
    return b64(rng.randbytes(32))


def github_classic(rng: R) -> str:
    body = mixed(rng, ALNUM, 30)
    return rng.choice(["ghp_", "gho_", "ghs_", "ghu_", "ghr_"]) + body + b62_crc32(body)


def github_fine(rng: R) -> str:
    return "github_pat_" + mixed(rng, ALNUM, 22) + "_" + mixed(rng, ALNUM, 59)


def gitlab(rng: R) -> str:
    return rng.choice(["glpat-", "glpat-", "glpat-", "gldt-", "glrt-", "glcbt-", "glft-"]) + mixed(rng, B64URL, 20)


def slack_token(rng: R) -> str:
    kind = rng.choice(["xoxb", "xoxp", "xoxa-2", "xoxe", "xapp"])
    if kind == "xapp":
        return f"xapp-1-A{r(rng, UPPER + DIGITS, 10)}-{r(rng, DIGITS, 13)}-{r(rng, HEX, 64)}"
    if kind == "xoxp":
        return f"xoxp-{r(rng, DIGITS, 12)}-{r(rng, DIGITS, 12)}-{r(rng, DIGITS, 13)}-{r(rng, HEX, 32)}"
    return f"{kind}-{r(rng, DIGITS, 12)}-{r(rng, DIGITS, 13)}-{mixed(rng, ALNUM, 24)}"


def slack_webhook_secret(rng: R) -> tuple[str, str]:
    """(path prefix, secret) of a hooks.slack.com/services/T…/B…/secret URL."""
    return f"T{r(rng, UPPER + DIGITS, 10)}/B{r(rng, UPPER + DIGITS, 11)}/", mixed(rng, ALNUM, 24)


def stripe(rng: R) -> str:
    return rng.choice(["sk_live_", "rk_live_", "sk_test_", "sk_live_51"]) + mixed(rng, ALNUM, rng.choice([24, 34, 99]))


def openai(rng: R) -> str:
    k = rng.random()
    if k < 0.45:
        return "sk-proj-" + mixed(rng, B64URL, 74) + "T3BlbkFJ" + mixed(rng, B64URL, 74)
    if k < 0.7:
        return "sk-svcacct-" + mixed(rng, B64URL, 74) + "T3BlbkFJ" + mixed(rng, B64URL, 74)
    return "sk-" + mixed(rng, ALNUM, 20) + "T3BlbkFJ" + mixed(rng, ALNUM, 20)


def anthropic(rng: R) -> str:
    return rng.choice(["sk-ant-api03-", "sk-ant-api03-", "sk-ant-admin01-"]) + mixed(rng, B64URL, 93) + "AA"


def huggingface(rng: R) -> str:
    return rng.choice(["hf_", "hf_", "api_org_"]) + r(rng, UPPER + LOWER, 34)


def npm(rng: R) -> str:
    body = mixed(rng, ALNUM, 30)
    return "npm_" + body + b62_crc32(body)


def sendgrid(rng: R) -> str:
    return "SG." + mixed(rng, B64URL, 22) + "." + mixed(rng, B64URL, 43)


def cr_key(rng: R) -> str:
    return "cr_" + mixed(rng, ALNUM, 36)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt(rng: R) -> str:
    alg = rng.choice(["RS256", "HS256", "ES384", "PS256"])
    header: dict[str, object] = {"alg": alg, "typ": "JWT"}
    if rng.random() < 0.5:
        header["kid"] = r(rng, HEX, 20)
    payload = {
        "iss": rng.choice(
            ["https://token.actions.githubusercontent.com", "kubernetes/serviceaccount", "https://auth.example.com/"]
        ),
        "sub": rng.choice(
            ["system:serviceaccount:prod:api", "repo:acme/api:ref:refs/heads/main", str(rng.randrange(10**8))]
        ),
        "exp": rng.randrange(1_760_000_000, 1_800_000_000),
    }
    sig = {"RS256": 256, "PS256": 256, "HS256": 32, "ES384": 96}[alg]
    return ".".join(
        [_b64url(json.dumps(header).encode()), _b64url(json.dumps(payload).encode()), _b64url(rng.randbytes(sig))]
    )


def opaque(rng: R, lo: int = 24, hi: int = 48) -> str:
    return mixed(rng, ALNUM, rng.randrange(lo, hi))


def password(rng: R, safe: str = "!#%*+-_.~@^") -> str:
    k = rng.random()
    if k < 0.3:
        return (
            rng.choice(["Summer", "Falcon", "Winter", "Pineapple", "Redwood", "Quasar"])
            + str(rng.randrange(10, 9999))
            + rng.choice(["!", "#", "*", "?", ""])
        )
    if k < 0.65:
        return mixed(rng, ALNUM + safe, rng.randrange(10, 26))
    if k < 0.75:
        return rng.choice(["changeme", "hunter2", "admin123", "p4ssw0rd", "letmein1", "s3cr3t!"])
    if k < 0.85:
        return "-".join(
            rng.choice(["correct", "horse", "battery", "staple", "violet", "anchor", "tundra"]) for _ in range(4)
        )
    return mixed(rng, ALNUM, rng.randrange(12, 32))


def pwd_plain(rng: R) -> str:
    """A password that needs no quoting in a shell word, URL userinfo or key=value list."""
    return "".join(c if c in ALNUM + "-_.~!*" else "_" for c in password(rng, safe="-_.~"))


PEM_KINDS = [
    "RSA PRIVATE KEY",
    "PRIVATE KEY",
    "EC PRIVATE KEY",
    "OPENSSH PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
    "DSA PRIVATE KEY",
    "PGP PRIVATE KEY BLOCK",
]


def pem_parts(rng: R, nl: str, kind: str | None = None) -> tuple[str, str, str]:
    """(header, body, footer) of a private key block, lines joined with `nl`."""
    kind = kind or rng.choice(PEM_KINDS)
    raw = rng.randbytes(rng.choice([180, 400, 900]))
    if kind == "OPENSSH PRIVATE KEY":
        raw = b"openssh-key-v1\x00" + raw
    body = b64(raw)
    lines = [body[i : i + (70 if kind == "OPENSSH PRIVATE KEY" else 64)] for i in range(0, len(body), 64)]
    head = f"-----BEGIN {kind}-----{nl}"
    if kind == "PGP PRIVATE KEY BLOCK":
        head += f"Version: GnuPG v2{nl}{nl}"
        lines.append("=" + r(rng, B64, 4))
    elif kind == "RSA PRIVATE KEY" and rng.random() < 0.3:
        head += f"Proc-Type: 4,ENCRYPTED{nl}DEK-Info: AES-256-CBC,{r(rng, HEX.upper(), 32)}{nl}{nl}"
    return head, nl.join(lines), f"{nl}-----END {kind}-----"


# ---------------------------------------------------------------------------------------------- PII
FIRST = ["ana", "bjorn", "chidi", "dana", "elif", "femi", "greta", "hiro", "ines", "jonas", "kavya", "lars", "mei"]
LAST = ["okafor", "lindqvist", "yilmaz", "tanaka", "moreau", "kowalski", "reyes", "nakamura", "oconnor", "silva"]
DOMAINS = ["example.com", "eu-west.mail.example.co.uk", "corp.acme.io", "students.uni-example.edu", "fastmail.fm",
           "dept.gov.example.org", "x.example.technology", "mail.example.com.br", "example.travel"]  # fmt: skip


def email(rng: R) -> str:
    f, s = rng.choice(FIRST), rng.choice(LAST)
    local = rng.choice([f"{f}.{s}", f"{f}+{rng.choice(['ci', 'billing', 'k8s-alerts', 'x'])}", f"{f[0]}{s}{rng.randrange(100)}",
                        f"{f}.{s}+{rng.randrange(1000)}", f"{s}_{f}", f"{f}-{s}", f"{f.capitalize()}.{s.capitalize()}"])  # fmt: skip
    return f"{local}@{rng.choice(DOMAINS)}"


def phone(rng: R) -> str:
    a, e, n = rng.randrange(201, 990), rng.randrange(200, 1000), rng.randrange(10000)
    forms = [
        f"+1{a}{e}{n:04d}", f"+1 ({a}) {e}-{n:04d}", f"({a}) {e}-{n:04d}", f"{a}-{e}-{n:04d}", f"+1.{a}.{e}.{n:04d}",
        f"+44 20 {rng.randrange(7000, 8999)} {rng.randrange(1000, 9999)}", f"+44 (0)20 {rng.randrange(7000, 8999)} {rng.randrange(1000, 9999)}",
        f"+447{r(rng, DIGITS, 9)}", f"+49 30 {r(rng, DIGITS, 8)}", f"+4915{r(rng, DIGITS, 9)}",
        f"+33 6 {r(rng, DIGITS, 2)} {r(rng, DIGITS, 2)} {r(rng, DIGITS, 2)} {r(rng, DIGITS, 2)}",
        f"+81 90-{r(rng, DIGITS, 4)}-{r(rng, DIGITS, 4)}", f"+86 138 {r(rng, DIGITS, 4)} {r(rng, DIGITS, 4)}",
        f"+34 6{r(rng, DIGITS, 2)} {r(rng, DIGITS, 3)} {r(rng, DIGITS, 3)}", f"+39 06 {r(rng, DIGITS, 4)} {r(rng, DIGITS, 4)}",
        f"+7 495 {r(rng, DIGITS, 3)}-{r(rng, DIGITS, 2)}-{r(rng, DIGITS, 2)}", f"+27 21 {r(rng, DIGITS, 3)} {r(rng, DIGITS, 4)}",
        f"+52 55 {r(rng, DIGITS, 4)} {r(rng, DIGITS, 4)}", f"+353 1 {r(rng, DIGITS, 3)} {r(rng, DIGITS, 4)}",
        f"+65 6{r(rng, DIGITS, 3)} {r(rng, DIGITS, 4)}", f"+91-98{r(rng, DIGITS, 3)}-{r(rng, DIGITS, 5)}",
        f"+61 4{r(rng, DIGITS, 2)} {r(rng, DIGITS, 3)} {r(rng, DIGITS, 3)}", f"+5511 9{r(rng, DIGITS, 4)}-{r(rng, DIGITS, 4)}",
    ]  # fmt: skip
    return rng.choice(forms)


def _group(digits: str, sep: str) -> str:
    n = len(digits)
    if not sep:
        return digits
    if n in (14, 15):  # Amex and Diners print 4-6-5 / 4-6-4
        return sep.join([digits[:4], digits[4:10], digits[10:]])
    return sep.join(digits[i : i + 4] for i in range(0, n, 4))


def card(rng: R) -> str:
    prefix, n = rng.choice([("4", 16), ("4", 16), ("5" + str(rng.randrange(1, 6)), 16), (str(rng.randrange(2221, 2721)), 16),
                            (rng.choice(["34", "37"]), 15), (rng.choice(["34", "37"]), 15), (rng.choice(["36", "38", "300", "305"]), 14),
                            ("6011", 16), ("65", 16), (str(rng.randrange(3528, 3590)), 16), ("4", 13)])  # fmt: skip
    digits = _luhn_complete(rng, prefix, n)
    return _group(digits, rng.choice(["", " ", "-", " ", "-"]) if n != 13 else "")


def card_bad(rng: R) -> str:
    """16 digits in card groups whose Luhn check fails."""
    while True:
        d = rng.choice("3456") + r(rng, DIGITS, 15)
        if not luhn_ok(d):
            return _group(d, rng.choice([" ", "-"]))


def ssn(rng: R) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    return f"{area:03d}-{rng.randrange(1, 100):02d}-{rng.randrange(1, 10000):04d}"


# country -> BBAN layout: n digits, a upper letters, c upper alphanumerics (ECBS / SWIFT IBAN registry)
IBAN_LAYOUT = {
    "DE": "18n", "GB": "4a14n", "FR": "10n11c2n", "ES": "20n", "IT": "1a10n12c", "NL": "4a10n", "BE": "12n",
    "CH": "5n12c", "AT": "16n", "PL": "24n", "PT": "21n", "IE": "4a14n", "SE": "20n", "NO": "11n", "DK": "14n",
    "FI": "14n", "LU": "3n13c", "SA": "2n18c", "AE": "19n", "BR": "23n1a1c", "TR": "5n1n16c", "GR": "7n16c",
    "HU": "24n", "CZ": "20n", "RO": "4a16c", "HR": "17n", "SI": "15n", "SK": "20n", "LT": "16n", "LV": "4a13c",
    "EE": "16n", "MT": "4a5n18c", "CY": "8n16c", "IL": "19n", "QA": "4a21c", "KW": "4a22c", "UA": "6n19c",
}  # fmt: skip


def iban(rng: R, spaced: bool | None = None) -> str:
    country = rng.choice(list(IBAN_LAYOUT))
    bban, layout, num = "", IBAN_LAYOUT[country], ""
    for ch in layout:
        if ch.isdigit():
            num += ch
            continue
        bban += r(rng, {"n": DIGITS, "a": UPPER, "c": UPPER + DIGITS}[ch], int(num))
        num = ""
    check = 98 - int("".join(str(int(c, 36)) for c in bban + country + "00")) % 97
    value = f"{country}{check:02d}{bban}"
    if spaced if spaced is not None else rng.random() < 0.5:
        value = " ".join(value[i : i + 4] for i in range(0, len(value), 4))
    return value


def ipv4(rng: R) -> str:
    while True:
        a = rng.choice([10, 172, 192, rng.randrange(1, 224)])
        if a in (0, 127) or a >= 224:
            continue
        return f"{a}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def ipv6(rng: R) -> str:
    k = rng.random()
    g = [f"{rng.getrandbits(16):x}" for _ in range(8)]
    if k < 0.3:
        return f"2001:db8:{g[0]}:{g[1]}::{g[2]}"
    if k < 0.45:
        return "fd00:" + ":".join(g[:7])
    if k < 0.6:
        return f"2a02:{g[0]}:{g[1]}:{g[2]}:{g[3]}:{g[4]}:{g[5]}:{g[6]}".upper()
    if k < 0.75:
        return f"::ffff:{ipv4(rng)}"
    if k < 0.9:
        return f"2600:1f18:{g[0]}:{g[1]}::{g[2]}:{g[3]}"
    return f"2001:db8::{g[0]}"


# ------------------------------------------------------------------------------------------ look-alikes
def sha(rng: R, n: int = 40) -> str:
    return r(rng, HEX, n)


def uuid4(rng: R) -> str:
    h = r(rng, HEX, 32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{rng.choice('89ab')}{h[17:20]}-{h[20:]}"


def ulid(rng: R) -> str:
    return rng.choice("01") + r(rng, CROCKFORD, 25)


def sri(rng: R) -> str:
    n = rng.choice([(256, 32), (384, 48), (512, 64)])
    return f"sha{n[0]}-" + b64(hashlib.sha512(rng.randbytes(16)).digest()[: n[1]] + rng.randbytes(max(0, n[1] - 64)))


def version(rng: R) -> str:
    return rng.choice([f"{rng.randrange(10)}.{rng.randrange(40)}.{rng.randrange(30)}", f"v{rng.randrange(1, 3)}.{rng.randrange(30)}.{rng.randrange(9)}-rc.{rng.randrange(5)}",
                       f"1.{rng.randrange(24, 32)}.{rng.randrange(9)}-eks-{r(rng, HEX, 7)}", f"go1.{rng.randrange(18, 24)}.{rng.randrange(9)}", f"{rng.randrange(2, 6)}.{rng.randrange(20)}"])  # fmt: skip


def date(rng: R) -> str:
    y, m, d = rng.randrange(2019, 2027), rng.randrange(1, 13), rng.randrange(1, 29)
    return rng.choice(
        [
            f"{y}-{m:02d}-{d:02d}",
            f"{d:02d}/{m:02d}/{y}",
            f"{y}{m:02d}{d:02d}",
            f"{y}-{m:02d}-{d:02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{r(rng, DIGITS, 6)}Z",
        ]
    )


def epoch_ms(rng: R) -> str:
    return str(rng.randrange(1_600_000_000_000, 1_800_000_000_000))


def isbn(rng: R) -> str:
    d = "978" + r(rng, DIGITS, 9)
    check = (10 - sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(d)) % 10) % 10
    full = d + str(check)
    return rng.choice([full, f"{full[:3]}-{full[3]}-{full[4:8]}-{full[8:12]}-{full[12]}"])


def order_no(rng: R) -> str:
    return rng.choice(
        [
            f"ORD-{rng.randrange(2020, 2027)}-{r(rng, DIGITS, 6)}",
            f"INV{r(rng, DIGITS, 9)}",
            f"PO-{r(rng, DIGITS, 4)}-{r(rng, DIGITS, 4)}",
        ]
    )


def mac(rng: R) -> str:
    return rng.choice([":", "-"]).join(r(rng, HEX, 2) for _ in range(6))


def path(rng: R) -> str:
    return rng.choice(["/var/lib/kubelet/pods/", "/home/runner/work/api/api/", "/etc/ansible/roles/db/tasks/", "/usr/local/go/src/net/http/",
                       "C:\\actions-runner\\_work\\api\\"]) + rng.choice(["main.go", "server.rs", "settings.py", "values.yaml", "terraform.tfstate", "x/y.txt"])  # fmt: skip


def plain_url(rng: R) -> str:
    return rng.choice(["https://registry.terraform.io/providers/hashicorp/aws/5.31.0", "https://github.com/acme/api/actions/runs/" + r(rng, DIGITS, 10),
                       "https://charts.bitnami.com/bitnami", "https://storage.googleapis.com/bucket-" + r(rng, LOWER, 6) + "/obj.tar.gz",
                       "https://gitlab.example.com/group/proj/-/jobs/" + r(rng, DIGITS, 7), "https://pypi.org/simple/", "https://api.example.com/v1/items?page=2&per_page=50"])  # fmt: skip


def resource_version(rng: R) -> str:
    return str(rng.randrange(10**6, 10**9))


def b64_text(rng: R) -> str:
    """base64 of readable, non-secret text (a config map's file, a public certificate, a JSON doc)."""
    text = rng.choice([
        "server {\n  listen 80;\n  location / { proxy_pass http://app:8080; }\n}\n",
        "-----BEGIN CERTIFICATE-----\nMIIC" + r(rng, B64, 60) + "\n-----END CERTIFICATE-----\n",
        json.dumps({"feature": rng.choice(["search", "billing"]), "enabled": True, "rollout": rng.randrange(100)}),
        "log_level = info\nworkers = " + str(rng.randrange(2, 64)) + "\n",
    ])  # fmt: skip
    return b64(text.encode())


NEGATIVES: dict[str, Callable[[R], str]] = {
    "sha1": lambda g: sha(g, 40), "sha256": lambda g: sha(g, 64), "sha512": lambda g: sha(g, 128), "sri": sri, "uuid": uuid4,
    "ulid": ulid, "digest": lambda g: "sha256:" + sha(g, 64), "git_sha": lambda g: sha(g, rng_len(g)), "version": version, "date": date,
    "epoch_ms": epoch_ms, "luhn_invalid": card_bad, "isbn": isbn, "order": order_no, "mac": mac, "resource_version": resource_version,
    "trace_id": lambda g: sha(g, 32), "span_id": lambda g: sha(g, 16), "path": path, "url": plain_url, "b64_text": b64_text,
}  # fmt: skip


def rng_len(rng: R) -> int:
    return rng.choice([7, 8, 12, 40])


def neg(rng: R, kind: str | None = None) -> tuple[str, str]:
    kind = kind or rng.choice(list(NEGATIVES))
    return NEGATIVES[kind](rng), "~" + kind


def pii(rng: R) -> tuple[str, str]:
    kind = rng.choice(["email", "phone", "credit_card", "ssn", "iban", "ipv4", "ipv6"])
    gen: dict[str, Callable[[R], str]] = {
        "email": email,
        "phone": phone,
        "credit_card": card,
        "ssn": ssn,
        "iban": iban,
        "ipv4": ipv4,
        "ipv6": ipv6,
    }
    return gen[kind](rng), kind


PROVIDERS: list[tuple[str, Callable[[R], str]]] = [
    ("aws_key_id", aws_key_id), ("gcp_api_key", gcp_key), ("github_token", github_classic), ("github_fine", github_fine),
    ("gitlab_token", gitlab), ("slack_token", slack_token), ("stripe_key", stripe), ("openai_key", openai),
    ("anthropic_key", anthropic), ("huggingface_token", huggingface), ("npm_token", npm), ("sendgrid_key", sendgrid),
    ("jwt", jwt), ("cr_key", cr_key), ("azure_storage_key", azure_storage_key),
]  # fmt: skip


def provider(rng: R) -> tuple[str, str]:
    kind, gen = rng.choice(PROVIDERS)
    return gen(rng), kind


def ts(rng: R) -> str:
    return f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{r(rng, DIGITS, 7)}Z"


def host(rng: R) -> str:
    return rng.choice(
        [
            "db-primary.internal",
            "pg.prod.svc.cluster.local",
            "cluster0.ab1cd.mongodb.net",
            "redis-master",
            "mq.example.net",
            "10-0-3-7.ec2.internal",
        ]
    )


# ------------------------------------------------------------------------------------------ formats
def f_terraform(rng: R) -> Sample:
    k = rng.randrange(8)
    if k == 0:
        return mk(
            '      ~ master_password = (sensitive value)\n      ~ password        = "',
            (password(rng, "-_.!#"), "password"),
            '" -> "',
            (password(rng, "-_.!#"), "password"),
            '"',
        )
    if k == 1:
        return mk("aws_iam_access_key.ci: Creation complete after 1s [id=", (aws_key_id(rng), "aws_key_id"), "]")
    if k == 2:
        return mk(
            '        "attributes": {"id": "',
            (aws_key_id(rng), "aws_key_id"),
            '", "secret": "',
            (aws_secret(rng), "aws_secret"),
            '", "status": "Active", "create_date": "',
            (date(rng), "~date"),
            '"},',
        )
    if k == 3:
        return mk(
            '  + resource "google_apikeys_key" "maps" { key_string = "',
            (gcp_key(rng), "gcp_api_key"),
            '", uid = "',
            neg(rng, "uuid"),
            '" }',
        )
    if k == 4:
        return mk(
            'Outputs:\n\ndb_endpoint = "',
            (ipv4(rng), "ipv4"),
            ':5432"\nadmin_email = "',
            (email(rng), "email"),
            '"\nmodule_version = "',
            neg(rng, "version"),
            '"',
        )
    if k == 5:
        return mk(
            '      + connection_string = "DefaultEndpointsProtocol=https;AccountName=st',
            r(rng, LOWER, 8),
            ";AccountKey=",
            (azure_storage_key(rng), "azure_storage_key"),
            ';EndpointSuffix=core.windows.net"',
        )
    if k == 6:
        return mk(
            '{"format_version":"1.2","terraform_version":"',
            neg(rng, "version"),
            '","values":{"root_module":{"resources":[{"address":"random_password.db","values":{"result":"',
            (password(rng, "-_!#"), "password"),
            '","length":24}}]}}}',
        )
    return mk(
        "module.vpc.aws_instance.bastion: Refreshing state... [id=i-0",
        r(rng, HEX, 16),
        "] private_ip=",
        (ipv4(rng), "ipv4"),
        " ipv6=",
        (ipv6(rng), "ipv6"),
    )


def f_ansible(rng: R) -> Sample:
    k = rng.randrange(7)
    if k == 0:
        return mk(
            "changed: [",
            (ipv4(rng), "ipv4"),
            "] => (item={'name': 'svc_app', 'password': '",
            (password(rng, "-_.!#"), "password"),
            "', 'priv': '*.*:ALL'})",
        )
    if k == 1:
        return mk(
            'ok: [web-01] => {"ansible_facts": {"ansible_default_ipv6": {"address": "',
            (ipv6(rng), "ipv6"),
            '", "macaddress": "',
            neg(rng, "mac"),
            '"}}, "changed": false}',
        )
    if k == 2:
        return mk(
            "TASK [users : create accounts] *** ",
            neg(rng, "date"),
            "\nok: [db-02] => (item={'user': 'ops', 'email': '",
            (email(rng), "email"),
            "', 'phone': '",
            (phone(rng), "phone"),
            "'})",
        )
    if k == 3:
        return mk(
            "  * template[/etc/app/secrets.conf] action create\n    - update content in file /etc/app/secrets.conf from none to ",
            r(rng, HEX, 6),
            "\n    +api_key = ",
            (opaque(rng, 32, 48), "secret"),
        )
    if k == 4:
        return mk(
            "fatal: [",
            (ipv4(rng), "ipv4"),
            ']: FAILED! => {"msg": "mysql_user: (1045, \\"Access denied for user \'root\'@\'',
            (ipv4(rng), "ipv4"),
            '\' (using password: YES)\\")", "login_password": "',
            (password(rng, "-_.!#"), "password"),
            '"}',
        )
    if k == 5:
        return mk(
            "vault_db_password: !vault |\n          $ANSIBLE_VAULT;1.1;AES256\n          ",
            neg(rng, "sha256"),
            "\n          ",
            neg(rng, "sha256"),
        )
    return mk(
        "Recipe: app::default\n  * execute[git clone https://deploy:",
        (github_classic(rng), "github_token"),
        "@github.com/acme/app.git] action run",
    )


def f_helm(rng: R) -> Sample:
    k = rng.randrange(6)
    if k == 0:
        return mk(
            "helm upgrade --install pg bitnami/postgresql --version ",
            neg(rng, "version"),
            " --set auth.postgresPassword=",
            (pwd_plain(rng), "password"),
            " --set auth.username=app",
        )
    if k == 1:
        return mk(
            'postgresql:\n  auth:\n    existingSecret: pg-auth\n    password: "',
            (password(rng, "-_.!#"), "password"),
            '"\n    database: app',
        )
    if k == 2:
        return mk(
            "global:\n  imageRegistry: ghcr.io\n  imagePullSecrets: [regcred]\nimage:\n  digest: ",
            neg(rng, "digest"),
            "\nsmtp:\n  user: ",
            (email(rng), "email"),
            "\n  apiKey: ",
            (sendgrid(rng), "sendgrid_key"),
        )
    if k == 3:
        return mk('USER-SUPPLIED VALUES:\nopenai:\n  apiKey: "', (openai(rng), "openai_key"), '"\nreplicaCount: 3')
    if k == 4:
        return mk(
            "helm install mon ./chart --set-string grafana.adminPassword='",
            (password(rng, "-_.!#@%^"), "password"),
            "' --set slack.webhook=https://hooks.slack.com/services/",
            *_hook(rng),
        )
    return mk(
        "image: ghcr.io/acme/api@",
        neg(rng, "digest"),
        "\nannotations:\n  checksum/config: ",
        neg(rng, "sha256"),
        '\n  rollme: "',
        neg(rng, "ulid"),
        '"',
    )


def _hook(rng: R) -> list[Frag]:
    pre, sec = slack_webhook_secret(rng)
    return [pre, (sec, "slack_webhook")]


def f_kubectl_secret(rng: R) -> Sample:
    k = rng.randrange(7)
    if k == 0:
        return mk(
            "apiVersion: v1\ndata:\n  password: ",
            (b64(password(rng).encode()), "password"),
            "\n  username: ",
            b64(b"app"),
            "\nkind: Secret",
        )
    if k == 1:
        return mk(
            "  tls.crt: ",
            neg(rng, "b64_text"),
            "\n  tls.key: ",
            (b64(("".join(pem_parts(rng, "\n", "RSA PRIVATE KEY")) + "\n").encode()), "private_key"),
        )
    if k == 2:
        auth = b64(f"ci:{pwd_plain(rng)}".encode())
        cfg = json.dumps({"auths": {"registry.example.com": {"auth": auth}}})
        return mk(
            "  .dockerconfigjson: ",
            (b64(cfg.encode()), "secret"),
            "\nkind: Secret\ntype: kubernetes.io/dockerconfigjson",
        )
    if k == 3:
        return mk(
            'metadata:\n  creationTimestamp: "',
            neg(rng, "date"),
            '"\n  resourceVersion: "',
            neg(rng, "resource_version"),
            '"\n  uid: ',
            neg(rng, "uuid"),
        )
    if k == 4:
        return mk(
            "  API_TOKEN: ", (b64(opaque(rng, 32, 40).encode()), "secret"), "\n  LOG_CONFIG: ", neg(rng, "b64_text")
        )
    if k == 5:
        return mk(
            '  annotations:\n    kubectl.kubernetes.io/last-applied-configuration: |\n      {"apiVersion":"v1","kind":"Secret","stringData":{"DATABASE_PASSWORD":"',
            (password(rng, "-_.!#"), "password"),
            '","STRIPE_KEY":"',
            (stripe(rng), "stripe_key"),
            '"}}',
        )
    return mk(
        "  token: ",
        (b64(jwt(rng).encode()), "jwt"),
        "\n  ca.crt: ",
        neg(rng, "b64_text"),
        "\n  namespace: ",
        b64(b"prod"),
    )


def f_kubeconfig(rng: R) -> Sample:
    k = rng.randrange(5)
    if k == 0:
        return mk(
            "- cluster:\n    certificate-authority-data: ",
            neg(rng, "b64_text"),
            "\n    server: https://",
            (ipv4(rng), "ipv4"),
            ":6443",
        )
    if k == 1:
        return mk(
            "users:\n- name: admin\n  user:\n    client-certificate-data: ",
            neg(rng, "b64_text"),
            "\n    client-key-data: ",
            (
                b64(("".join(pem_parts(rng, "\n", rng.choice(["RSA PRIVATE KEY", "EC PRIVATE KEY"]))) + "\n").encode()),
                "private_key",
            ),
        )
    if k == 2:
        return mk("- name: sa-deployer\n  user:\n    token: ", (jwt(rng), "jwt"))
    if k == 3:
        return mk(
            "    auth-provider:\n      config:\n        access-token: ",
            ("ya29." + mixed(rng, B64URL, 120), "secret"),
            '\n        expiry: "',
            neg(rng, "date"),
            '"',
        )
    return mk("    server: https://[", (ipv6(rng), "ipv6"), "]:6443\n  name: prod-", neg(rng, "span_id"))


def f_ci(rng: R) -> Sample:
    k = rng.randrange(9)
    t = ts(rng)
    if k == 0:
        return mk(
            t,
            " ##[group]Run npm publish\n",
            t,
            "   NODE_AUTH_TOKEN: ",
            (npm(rng), "npm_token"),
            "\n",
            t,
            " ##[endgroup]",
        )
    if k == 1:
        return mk(
            t, " env:\n", t, "   GITHUB_TOKEN: ***\n", t, "   HF_TOKEN: ", (huggingface(rng), "huggingface_token")
        )
    if k == 2:
        return mk(
            t,
            " Current runner version: '",
            neg(rng, "version"),
            "'\n",
            t,
            " Checking out ",
            neg(rng, "git_sha"),
            " (",
            neg(rng, "url"),
            ")",
        )
    if k == 3:
        return mk(
            "$ docker login -u gitlab-ci-token -p ", (gitlab(rng), "gitlab_token"), " registry.gitlab.example.com"
        )
    if k == 4:
        return mk(
            "Running with gitlab-runner ",
            neg(rng, "version"),
            " (",
            neg(rng, "sha1")[0][:8],
            ")\n  on runner-",
            r(rng, LOWER + DIGITS, 8),
            " ",
            neg(rng, "uuid"),
        )
    if k == 5:
        return mk(
            '$ curl -sSf -H "PRIVATE-TOKEN: ',
            (gitlab(rng), "gitlab_token"),
            '" "https://gitlab.example.com/api/v4/projects/',
            r(rng, DIGITS, 5),
            '/releases"',
        )
    if k == 6:
        return mk(
            t,
            " ##[debug]Evaluating: secrets.ANTHROPIC_API_KEY\n",
            t,
            " ##[debug]Result: '",
            (anthropic(rng), "anthropic_key"),
            "'",
        )
    if k == 7:
        return mk(t, " ACTIONS_ID_TOKEN_REQUEST_TOKEN=", (jwt(rng), "jwt"), " run_id=", r(rng, DIGITS, 10))
    return mk(t, " Downloading action ", neg(rng, "url"), " sha=", neg(rng, "git_sha"), " integrity ", neg(rng, "sri"))


def f_cloud_cli(rng: R) -> Sample:
    k = rng.randrange(8)
    if k == 0:
        return mk(
            '{\n    "Credentials": {\n        "AccessKeyId": "',
            (aws_key_id(rng), "aws_key_id"),
            '",\n        "SecretAccessKey": "',
            (aws_secret(rng), "aws_secret"),
            '",\n        "SessionToken": "',
            ("IQoJb3JpZ2luX2Vj" + mixed(rng, B64, 300), "secret"),
            '",\n        "Expiration": "',
            neg(rng, "date"),
            '"\n    }\n}',
        )
    if k == 1:
        return mk(
            "aws_access_key_id = ",
            (aws_key_id(rng), "aws_key_id"),
            "\naws_secret_access_key = ",
            (aws_secret(rng), "aws_secret"),
            "\nregion = eu-west-1",
        )
    if k == 2:
        return mk(
            "      Name                    Value             Type    Location\n  access_key     ****************",
            r(rng, UPPER, 4),
            " shared-credentials-file\n  request id ",
            neg(rng, "uuid"),
        )
    if k == 3:
        return mk(
            "createTime: '",
            neg(rng, "date"),
            "'\nkeyString: ",
            (gcp_key(rng), "gcp_api_key"),
            "\nname: projects/",
            r(rng, DIGITS, 12),
            "/locations/global/keys/",
            neg(rng, "uuid"),
        )
    if k == 4:
        return mk(
            '[\n  {\n    "creationTime": "',
            neg(rng, "date"),
            '",\n    "keyName": "key1",\n    "permissions": "FULL",\n    "value": "',
            (azure_storage_key(rng), "azure_storage_key"),
            '"\n  }\n]',
        )
    if k == 5:
        return mk(
            '{\n  "connectionString": "Endpoint=sb://ns-',
            r(rng, LOWER, 6),
            ".servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=",
            (azure_sas_key(rng), "azure_conn_key"),
            '"\n}',
        )
    if k == 6:
        return mk("$ gcloud auth print-access-token\n", ("ya29." + mixed(rng, B64URL, 150), "secret"))
    return mk(
        '{"client_email": "',
        ("deployer@proj-" + r(rng, DIGITS, 6) + ".iam.gserviceaccount.com", "email"),
        '", "private_key": "',
        *_pem_escaped(rng, "PRIVATE KEY"),
        '", "token_uri": "https://oauth2.googleapis.com/token"}',
    )


def _pem_escaped(rng: R, kind: str | None = None) -> list[Frag]:
    head, body, foot = pem_parts(rng, "\\n", kind)
    return [head, (body, "private_key"), foot + "\\n"]


def f_shell(rng: R) -> Sample:
    k = rng.randrange(10)
    n = f"  {rng.randrange(1, 2000)}  "
    if k == 0:
        name, gen, kind = rng.choice([("AWS_SECRET_ACCESS_KEY", aws_secret, "aws_secret"), ("OPENAI_API_KEY", openai, "openai_key"), ("GH_TOKEN", github_classic, "github_token"),
                                      ("STRIPE_API_KEY", stripe, "stripe_key"), ("DB_PASSWORD", pwd_plain, "password"), ("SENDGRID_API_KEY", sendgrid, "sendgrid_key")])  # fmt: skip
        return mk(n, "export ", name, "=", (gen(rng), kind))
    if k == 1:
        return mk(n, "curl -u admin:", (pwd_plain(rng), "password"), " https://", host(rng), ":9200/_cluster/health")
    if k == 2:
        return mk(
            n,
            "mysql -h ",
            (ipv4(rng), "ipv4"),
            " -u root -p",
            (pwd_plain(rng), "password"),
            " app_prod < dump-",
            neg(rng, "date"),
            ".sql",
        )
    if k == 3:
        return mk(
            n, "PGPASSWORD=", (pwd_plain(rng), "password"), " psql -h ", host(rng), " -U app -d app -c 'select 1'"
        )
    if k == 4:
        return mk(
            n,
            "git remote set-url origin https://oauth2:",
            (gitlab(rng), "gitlab_token"),
            "@gitlab.example.com/group/app.git",
        )
    if k == 5:
        return mk(
            n,
            "docker login -u AWS -p ",
            ("eyJwYXlsb2FkIjoi" + mixed(rng, B64, 200), "password"),
            " ",
            r(rng, DIGITS, 12),
            ".dkr.ecr.eu-west-1.amazonaws.com",
        )
    if k == 6:
        return mk(n, "sha256sum release.tar.gz  # ", neg(rng, "sha256"), "\n", n, "git checkout ", neg(rng, "git_sha"))
    if k == 7:
        return mk(n, "redis-cli -h ", host(rng), " -a ", (pwd_plain(rng), "password"), " --no-auth-warning info")
    if k == 8:
        return mk(n, "curl -H 'Authorization: Bearer ", (opaque(rng, 32, 60), "authorization"), "' ", neg(rng, "url"))
    return mk(
        n, "curl --user ", (email(rng), "email"), ":", (pwd_plain(rng), "password"), " https://api.example.com/v2/me"
    )


def f_go(rng: R) -> Sample:
    k = rng.randrange(7)
    if k == 0:
        return mk(
            "panic: dial tcp ",
            (ipv4(rng), "ipv4"),
            ":5432: connect: connection refused\n\ngoroutine 1 [running]:\nmain.(*Store).Open(0xc000",
            r(rng, HEX, 6),
            ")\n\t",
            neg(rng, "path"),
            ":88 +0x1a5",
        )
    if k == 1:
        return mk(
            "config: {Host:",
            host(rng),
            " Port:5432 User:app Password:",
            (pwd_plain(rng), "password"),
            " SSLMode:require MaxConns:20}",
        )
    if k == 2:
        return mk(
            "token: &{AccessToken:",
            (opaque(rng, 40, 60), "secret"),
            " TokenType:Bearer RefreshToken:",
            (opaque(rng, 40, 60), "secret"),
            " Expiry:",
            neg(rng, "date"),
            "}",
        )
    if k == 3:
        return mk(
            'client: &github.Client{BaseURL:https://api.github.com/, Token:"',
            (github_classic(rng), "github_token"),
            '", UserAgent:"go-github/',
            neg(rng, "version"),
            '"}',
        )
    if k == 4:
        return mk(
            "user=main.User{ID:",
            r(rng, DIGITS, 7),
            ', Email:"',
            (email(rng), "email"),
            '", Phone:"',
            (phone(rng), "phone"),
            '", SSN:"',
            (ssn(rng), "ssn"),
            '"}',
        )
    if k == 5:
        return mk(
            'level=error msg="charge failed" err="card ',
            (card(rng), "credit_card"),
            ' declined" order=',
            neg(rng, "order"),
            " trace_id=",
            neg(rng, "trace_id"),
        )
    return mk(
        "{APIKey:",
        (cr_key(rng), "cr_key"),
        " Endpoint:https://inference.example.com TraceID:",
        neg(rng, "trace_id"),
        " SpanID:",
        neg(rng, "span_id"),
        "}",
    )


def f_rust(rng: R) -> Sample:
    k = rng.randrange(6)
    if k == 0:
        return mk(
            'Config { api_key: "',
            (openai(rng), "openai_key"),
            '", endpoint: "https://api.openai.com/v1", timeout: 30s }',
        )
    if k == 1:
        return mk(
            'DatabaseConfig { url: "postgres://app:',
            (pwd_plain(rng), "url_password"),
            "@",
            host(rng),
            '/app", password: Some("',
            (password(rng, "-_.!#"), "password"),
            '"), pool: 16 }',
        )
    if k == 2:
        return mk(
            "thread 'main' panicked at src/main.rs:42:9:\ncalled `Result::unwrap()` on an `Err` value: Auth { token: \"",
            (huggingface(rng), "huggingface_token"),
            '", status: 401 }',
        )
    if k == 3:
        return mk(
            "Customer {\n    id: ",
            neg(rng, "uuid"),
            ',\n    email: "',
            (email(rng), "email"),
            '",\n    iban: "',
            (iban(rng), "iban"),
            '",\n}',
        )
    if k == 4:
        return mk(
            "[2026-",
            neg(rng, "date")[0][5:10],
            " WARN  hyper::client] peer=",
            (ipv4(rng), "ipv4"),
            ':443 Request { headers: {"authorization": "Bearer ',
            (jwt(rng), "jwt"),
            '"} }',
        )
    return mk('Secret { client_secret: "', (opaque(rng, 32, 44), "secret"), '", client_id: "', neg(rng, "uuid"), '" }')


def f_python(rng: R) -> Sample:
    k = rng.randrange(7)
    if k == 0:
        return mk(
            "Settings(database_url='postgresql+asyncpg://app:",
            (pwd_plain(rng), "url_password"),
            "@",
            host(rng),
            ":5432/app', password='",
            (password(rng, "-_.!#"), "password"),
            "', debug=False)",
        )
    if k == 1:
        return mk(
            "{'api_key': '",
            (opaque(rng, 32, 48), "secret"),
            "', 'user_id': ",
            r(rng, DIGITS, 6),
            ", 'request_id': '",
            neg(rng, "uuid"),
            "'}",
        )
    if k == 2:
        return mk(
            "Customer(name='Ines', email='",
            (email(rng), "email"),
            "', phone='",
            (phone(rng), "phone"),
            "', card='",
            (card(rng), "credit_card"),
            "')",
        )
    if k == 3:
        return mk("SecretStr('**********') created=", neg(rng, "date"), " build=", neg(rng, "version"))
    if k == 4:
        return mk(
            "botocore.credentials: Credentials(access_key='",
            (aws_key_id(rng), "aws_key_id"),
            "', secret_key='",
            (aws_secret(rng), "aws_secret"),
            "', token=None)",
        )
    if k == 5:
        return mk(
            "payout IBAN=",
            (iban(rng), "iban"),
            " amount=",
            r(rng, DIGITS, 4),
            ".00 ref=",
            neg(rng, "order"),
            " at ",
            neg(rng, "epoch_ms"),
        )
    return mk(
        '  File "',
        neg(rng, "path"),
        "\", line 88, in connect\n    anthropic.Anthropic(api_key='",
        (anthropic(rng), "anthropic_key"),
        "')",
    )


def f_grpc(rng: R) -> Sample:
    k = rng.randrange(6)
    if k == 0:
        return mk(
            "metadata: map[authorization:[Bearer ",
            (opaque(rng, 32, 56), "authorization"),
            "] x-request-id:[",
            neg(rng, "uuid"),
            "] user-agent:[grpc-go/",
            neg(rng, "version"),
            "]]",
        )
    if k == 1:
        return mk(
            "grpc peer=ipv6:[",
            (ipv6(rng), "ipv6"),
            "]:",
            r(rng, DIGITS, 5),
            " method=/billing.v1.Payments/Charge code=OK",
        )
    if k == 2:
        return mk(
            "grpc peer=ipv4:",
            (ipv4(rng), "ipv4"),
            ":",
            r(rng, DIGITS, 5),
            " grpc-trace-bin=",
            neg(rng, "trace_id"),
            " x-api-key=",
            (opaque(rng, 32, 48), "secret"),
        )
    if k == 3:
        return mk(
            "[HTTP/2] [1] [:authority: api.example.com]\n[HTTP/2] [1] [authorization: Basic ",
            (b64(f"svc:{pwd_plain(rng)}".encode()), "authorization"),
            "]\n[HTTP/2] [1] [x-b3-traceid: ",
            neg(rng, "trace_id"),
            "]",
        )
    if k == 4:
        return mk(
            "  <- header: grpcgateway-authorization=Bearer ",
            (jwt(rng), "jwt"),
            "; x-forwarded-for=",
            (ipv4(rng), "ipv4"),
        )
    return mk(
        'metadata.MD{"x-goog-api-key":[]string{"',
        (gcp_key(rng), "gcp_api_key"),
        '"}, "traceparent":[]string{"00-',
        neg(rng, "trace_id"),
        "-",
        neg(rng, "span_id"),
        '-01"}}',
    )


def f_dsn(rng: R) -> Sample:
    k = rng.randrange(10)
    p = pwd_plain(rng)
    if k == 0:
        return mk(
            "connecting: host=",
            host(rng),
            " port=5432 dbname=app user=app password=",
            (p, "password"),
            " sslmode=require connect_timeout=5",
        )
    if k == 1:
        return mk(
            "connecting: host=",
            (ipv4(rng), "ipv4"),
            " user=replicator password='",
            (password(rng, "-_.!#@ "), "password"),
            "' application_name=walreceiver",
        )
    if k == 2:
        return mk(
            "jdbc:postgresql://",
            host(rng),
            ":5432/app?user=app&password=",
            (p, "password"),
            "&ssl=true&sslmode=verify-full",
        )
    if k == 3:
        return mk(
            "jdbc:sqlserver://",
            host(rng),
            ":1433;databaseName=app;user=sa;password=",
            (p, "password"),
            ";encrypt=true;trustServerCertificate=false",
        )
    if k == 4:
        return mk(
            "MONGO_URL=mongodb+srv://app:",
            (p, "url_password"),
            "@cluster0.",
            r(rng, LOWER + DIGITS, 5),
            ".mongodb.net/app?retryWrites=true&w=majority",
        )
    if k == 5:
        return mk("redis: connecting to rediss://default:", (p, "url_password"), "@", host(rng), ":6380/0")
    if k == 6:
        return mk("broker_url = amqps://celery:", (p, "url_password"), "@mq.example.net:5671/prod")
    if k == 7:
        return mk("redis://:", (p, "url_password"), "@", (ipv4(rng), "ipv4"), ":6379/2")
    if k == 8 and rng.random() < 0.4:
        return mk(
            "AZURE_STORAGE_CONNECTION_STRING='DefaultEndpointsProtocol=https;AccountName=",
            r(rng, LOWER, 10),
            ";AccountKey=",
            (azure_storage_key(rng), "azure_conn_key"),
            ";BlobEndpoint=https://",
            (ipv4(rng), "ipv4"),
            ":10000/'",
        )
    if k == 8:
        return mk(
            "spring.datasource.url=jdbc:mysql://", host(rng), ":3306/app\nspring.datasource.password=", (p, "password")
        )
    return mk("HikariPool-1 - jdbcUrl=jdbc:oracle:thin:app/", (p, "url_password"), "@//", host(rng), ":1521/ORCL")


def f_kafka(rng: R) -> Sample:
    k = rng.randrange(3)
    mod = rng.choice(["plain.PlainLoginModule", "scram.ScramLoginModule"])
    if k == 0:
        return mk(
            f'sasl.jaas.config=org.apache.kafka.common.security.{mod} required username="svc-orders" password="',
            (password(rng, "-_.!#@"), "password"),
            '";',
        )
    if k == 1:
        return mk(
            "KafkaServer {\n  org.apache.kafka.common.security.",
            mod,
            ' required\n  username="admin"\n  password="',
            (password(rng, "-_.!#"), "password"),
            '"\n  user_admin="',
            (password(rng, "-_.!#"), "password"),
            '";\n};',
        )
    return mk(
        "\tsasl.jaas.config = [hidden]\n\tsasl.mechanism = SCRAM-SHA-512\n\tssl.truststore.password = [hidden]\n\tclient.id = ",
        neg(rng, "uuid"),
    )


def f_rcfiles(rng: R) -> Sample:
    k = rng.randrange(8)
    if k == 0:
        return mk(
            "//registry.npmjs.org/:_authToken=",
            (npm(rng), "npm_token"),
            "\n@acme:registry=https://npm.pkg.github.com\n//npm.pkg.github.com/:_authToken=",
            (github_classic(rng), "github_token"),
        )
    if k == 1:
        return mk(
            "_auth=",
            (b64(f"ci:{pwd_plain(rng)}".encode()), "secret"),
            "\nalways-auth=true\nemail=",
            (email(rng), "email"),
        )
    if k == 2:
        return mk(
            "[pypi]\nusername = __token__\npassword = ", ("pypi-AgEIcHlwaS5vcmc" + mixed(rng, B64URL, 150), "password")
        )
    if k == 3:
        return mk(
            "[internal]\nrepository = https://pypi.example.com/simple/\nusername = deploy\npassword = ",
            (password(rng, "-_.!#"), "password"),
        )
    if k == 4:
        return mk(
            "machine api.github.com login octocat password ",
            (github_classic(rng), "github_token"),
            "\nmachine ftp.example.com login backup password ",
            (pwd_plain(rng), "password"),
        )
    if k == 5:
        return mk(
            '{\n\t"auths": {\n\t\t"ghcr.io": {\n\t\t\t"auth": "',
            (b64(f"bot:{github_classic(rng)}".encode()), "secret"),
            '"\n\t\t}\n\t},\n\t"credsStore": "desktop"\n}',
        )
    if k == 6:
        return mk(
            '{"auths":{"',
            r(rng, DIGITS, 12),
            '.dkr.ecr.us-east-1.amazonaws.com":{"auth":"',
            (b64(("AWS:" + mixed(rng, B64, 80)).encode()), "secret"),
            '","email":"',
            (email(rng), "email"),
            '"}}}',
        )
    return mk(
        '[url "https://',
        (github_fine(rng), "github_fine"),
        ':x-oauth-basic@github.com/"]\n\tinsteadOf = https://github.com/',
    )


def f_keys(rng: R) -> Sample:
    k = rng.randrange(5)
    if k == 0:
        head, body, foot = pem_parts(
            rng, "\n", rng.choice(["OPENSSH PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "PGP PRIVATE KEY BLOCK"])
        )
        return mk(f"{ts(rng)} loaded deploy key:\n", head, (body, "private_key"), foot)
    if k == 1:
        return mk(
            '{"level":"debug","ssh_key":"',
            *_pem_escaped(rng, "OPENSSH PRIVATE KEY"),
            '","fingerprint":"SHA256:',
            r(rng, B64, 43),
            '"}',
        )
    if k == 2:
        return mk("tls:\n  key: |\n    ", *_indented_pem(rng))
    if k == 3:
        return mk(
            'vault read -format=json pki/issue/web => {"data":{"private_key":"',
            *_pem_escaped(rng, rng.choice(["RSA PRIVATE KEY", "EC PRIVATE KEY"])),
            '","serial_number":"',
            ":".join(r(rng, HEX, 2) for _ in range(16)),
            '"}}',
        )
    return mk("gpg: key ", r(rng, HEX.upper(), 16), ": secret key imported\n", *_pgp(rng))


def _indented_pem(rng: R) -> list[Frag]:
    head, body, foot = pem_parts(rng, "\n    ", "PRIVATE KEY")
    return [head, (body, "private_key"), foot]


def _pgp(rng: R) -> list[Frag]:
    head, body, foot = pem_parts(rng, "\\n", "PGP PRIVATE KEY BLOCK")
    return ['PGP_KEY="', head, (body, "private_key"), foot, '"']


def f_pii(rng: R) -> Sample:
    k = rng.randrange(10)
    if k == 0:
        return mk(
            "sms dispatched to=",
            (phone(rng), "phone"),
            " ext. ",
            r(rng, DIGITS, 3),
            " template=otp id=",
            neg(rng, "ulid"),
        )
    if k == 1:
        return mk(
            "tel:",
            (phone(rng).replace(" ", "-").replace("(", "").replace(")", ""), "phone"),
            ";ext=",
            r(rng, DIGITS, 4),
            " dialed at ",
            neg(rng, "epoch_ms"),
        )
    if k == 2:
        return mk(
            'To: "',
            rng.choice(FIRST).capitalize(),
            '" <',
            (email(rng), "email"),
            ">, Cc: ",
            (email(rng), "email"),
            "\nMessage-ID: <",
            neg(rng, "uuid"),
            "@mx.example.com>",
        )
    if k == 3:
        return mk(
            "payment method card=",
            (card(rng), "credit_card"),
            " exp=",
            f"{rng.randrange(1, 13):02d}/{rng.randrange(26, 32)}",
            " bin_check=ok ref ",
            neg(rng, "luhn_invalid"),
        )
    if k == 4:
        return mk(
            "SEPA credit transfer debtor=",
            (iban(rng, True), "iban"),
            " creditor=",
            (iban(rng, False), "iban"),
            " e2e=",
            neg(rng, "order"),
        )
    if k == 5:
        return mk("kyc: ssn=", (ssn(rng), "ssn"), " dob=", neg(rng, "date"), " isbn=", neg(rng, "isbn"))
    if k == 6:
        v6 = ipv6(rng)
        return mk(
            "neighbor ",
            ("fe80::" + r(rng, HEX, 3) + ":" + r(rng, HEX, 4) + ":fe" + r(rng, HEX, 2) + ":" + r(rng, HEX, 4), "ipv6"),
            "%eth0 lladdr ",
            neg(rng, "mac"),
            " REACHABLE src ",
            (v6, "ipv6"),
        )
    if k == 7:
        return mk(
            "upstream [",
            (ipv6(rng), "ipv6"),
            "]:8443 -> ",
            (ipv4(rng), "ipv4"),
            ":",
            r(rng, DIGITS, 5),
            " bytes=",
            r(rng, DIGITS, 6),
        )
    if k == 8:
        return mk(
            "card_on_file amex=",
            (_group(_luhn_complete(rng, rng.choice(["34", "37"]), 15), rng.choice([" ", "-", ""])), "credit_card"),
            " diners=",
            (_group(_luhn_complete(rng, "36", 14), rng.choice([" ", "-", ""])), "credit_card"),
            " sku=",
            neg(rng, "isbn"),
        )
    return mk("contact: ", (email(rng), "email"), " / ", (phone(rng), "phone"), " / vendor ", neg(rng, "uuid"))


def f_negative(rng: R) -> Sample:
    k = rng.randrange(12)
    if k == 0:
        return mk(
            '<script src="https://cdn.example.com/app.',
            neg(rng, "sha1")[0][:8],
            '.js" integrity="',
            neg(rng, "sri"),
            '" crossorigin="anonymous"></script>',
        )
    if k == 1:
        return mk("  ", neg(rng, "sha512"), "  dist/app-", neg(rng, "version"), ".tar.gz")
    if k == 2:
        return mk(
            "k8s event uid=",
            neg(rng, "uuid"),
            " resourceVersion=",
            neg(rng, "resource_version"),
            " at ",
            neg(rng, "date"),
        )
    if k == 3:
        return mk(
            "trace_id=",
            neg(rng, "trace_id"),
            " span_id=",
            neg(rng, "span_id"),
            " parent_span_id=",
            neg(rng, "span_id"),
            " duration_ms=",
            r(rng, DIGITS, 3),
        )
    if k == 4:
        return mk(
            'Pulled image "ghcr.io/acme/api@',
            neg(rng, "digest"),
            '" in ',
            r(rng, DIGITS, 4),
            "ms ts=",
            neg(rng, "epoch_ms"),
        )
    if k == 5:
        return mk(
            "order ",
            neg(rng, "order"),
            " item isbn ",
            neg(rng, "isbn"),
            " gift card ",
            neg(rng, "luhn_invalid"),
            " (invalid)",
        )
    if k == 6:
        return mk(
            "ifconfig: ether ", neg(rng, "mac"), " txqueuelen 1000 file ", neg(rng, "path"), " see ", neg(rng, "url")
        )
    if k == 7:
        return mk('{"event":"config_loaded","payload_b64":"', neg(rng, "b64_text"), '","id":"', neg(rng, "ulid"), '"}')
    if k == 8:
        return mk(
            "Merge ",
            neg(rng, "git_sha"),
            " into ",
            neg(rng, "git_sha"),
            " (",
            neg(rng, "sha1"),
            ") release ",
            neg(rng, "version"),
        )
    if k == 9:
        return mk(
            "password: (sensitive value)  token: ********  secret_ref: ${{ secrets.DEPLOY_KEY }}  api_key: {{ .Values.apiKey }}  checksum ",
            neg(rng, "sha256"),
        )
    if k == 10:
        return mk(
            "tokenTTL: 3600s existingSecret: pg-auth passwordSecretRef: db-creds sha256sum=",
            neg(rng, "sha256"),
            " created ",
            neg(rng, "date"),
        )
    return mk(
        "Sending build context to Docker daemon  ",
        r(rng, DIGITS, 3),
        ".",
        r(rng, DIGITS, 1),
        "MB\nStep 3/9 : RUN pip install -r requirements.txt --hash=sha256:",
        neg(rng, "sha256"),
    )


def f_tokens(rng: R) -> Sample:
    """Provider tokens in the places these tools put them."""
    value, kind = provider(rng)
    k = rng.randrange(10)
    if k == 0:
        return mk('  + resource "kubernetes_secret" "api" { data = { token = "', (value, kind), '" } }')
    if k == 1:
        return mk(ts(rng), " ::add-mask::", (value, kind))
    if k == 2:
        return mk("Environment=API_TOKEN=", (value, kind), "\nExecStart=/usr/bin/api --port 8080")
    if k == 3:
        return mk("        - name: PROVIDER_KEY\n          value: ", (value, kind))
    if k == 4:
        return mk('ClientOptions { token: Some("', (value, kind), '"), retries: 3 }')
    if k == 5:
        return mk("Options(token='", (value, kind), "', base_url='https://api.example.com', retries=3)")
    if k == 6:
        return mk("&{Credential:", (value, kind), " Region:eu-west-1}")
    if k == 7:
        return mk("[HTTP/2] [3] [x-api-key: ", (value, kind), "]")
    if k == 8:
        return mk("docker run -e TOKEN=", (value, kind), " -p 8080:8080 ghcr.io/acme/api@", neg(rng, "digest"))
    return mk("- task: deploy  # key ", (value, kind), " rotated ", neg(rng, "date"))


def f_webhooks(rng: R) -> Sample:
    k = rng.randrange(3)
    if k == 0:
        return mk('notify: {"slack_url": "https://hooks.slack.com/services/', *_hook(rng), '", "channel": "#deploys"}')
    if k == 1:
        return mk("POST https://hooks.slack.com/services/", *_hook(rng), " -> 200 in ", r(rng, DIGITS, 3), "ms")
    return mk(
        "slack: token=",
        (slack_token(rng), "slack_token"),
        " channel=C",
        r(rng, UPPER + DIGITS, 10),
        " ts=",
        r(rng, DIGITS, 10),
        ".",
        r(rng, DIGITS, 6),
    )


FAMILIES: dict[str, Callable[[R], Sample]] = {
    "terraform": f_terraform, "ansible": f_ansible, "helm": f_helm, "kubectl_secret": f_kubectl_secret,
    "kubeconfig": f_kubeconfig, "ci": f_ci, "cloud_cli": f_cloud_cli, "shell": f_shell, "go": f_go, "rust": f_rust,
    "python": f_python, "grpc": f_grpc, "dsn": f_dsn, "kafka": f_kafka, "rcfiles": f_rcfiles, "keys": f_keys,
    "pii": f_pii, "negative": f_negative, "tokens": f_tokens, "webhooks": f_webhooks,
}  # fmt: skip
WEIGHTS = {"pii": 4, "negative": 3, "dsn": 2, "shell": 2, "tokens": 3}


def generate(seed: int = 6066, lines: int = 3000) -> list[Sample]:
    """`lines` labelled samples (one log record each; some span several physical lines) from the formats above."""
    return weighted_families(FAMILIES, WEIGHTS, seed, lines)
