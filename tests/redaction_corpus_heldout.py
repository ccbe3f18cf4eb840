"""A second, held-out labelled corpus for the log redactor, designed apart from tests/redaction_corpus.py.

The first corpus was written alongside the rules; this one was written afterwards, from the formats real
log pipelines emit rather than from what the rules look for, to measure how the redactor holds up on lines
it was not tuned on. It differs on purpose in three ways:
- **line formats**: logfmt with quoted fields, JSON lines with nested objects and `\\n` / `\\u0022` escapes,
  nginx/apache combined logs with query strings and percent-encoding, RFC 5424 syslog and journald, Python
  tracebacks with repr()'d dicts, Java/Go/klog/Rails prefixes, k8s events and env lists, YAML/INI/TOML/
  properties/XML config dumps, Go `%+v` structs, Java `toString`, Ruby/PHP hashes, `export`/`declare -x`
  env dumps, curl/mysql/docker command lines, SQL statements, raw HTTP header dumps, CSV rows;
- **placement**: values wrapped in (), [], <>, «», quotes, followed by `.` `,` `;`, at the very start or end
  of a line, next to non-ASCII text;
- **variants**: each provider's token shapes, NANP and ~30 countries' phone formats, cards of every brand
  at 13-19 digits in their usual groupings, IBANs of ~55 countries compact and grouped, IPv6 in full,
  compressed, zone-id, bracketed and IPv4-mapped forms.
Negatives (look-alikes that must survive byte for byte) cover ids, hashes, digests, trace context,
timestamps, versions, paths, plain URLs, checksum-invalid numbers and IBANs, pod names, MAC addresses,
colours, durations, ports, base64 of harmless data and low-entropy words.

Labels use the format of tests/redaction_corpus.py (`Sample.positives` / `Sample.negatives` as character
spans with a type or kind) and are scored by its `score`. Type names are the first corpus's where they
exist, so the same label map applies. Every sensitive value on a line is labelled (an unlabelled finding
counts against precision), including incidental ones such as the client address of an access log line.
"""

# ruff: noqa: E501  (test data: long literal tokens and log lines)

from __future__ import annotations

import base64
import ipaddress
import json
import random
import re
import string
import uuid
import zlib
from collections.abc import Callable

from redaction_corpus import Sample

ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"
B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


def _r(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _crc_b62(body: str) -> str:
    n = zlib.crc32(body.encode())
    out = ""
    while n:
        n, k = divmod(n, 62)
        out = B62[k] + out
    return out.rjust(6, "0")


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _luhn_sum(digits: str) -> int:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10


def _luhn(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + _r(rng, string.digits, length - len(prefix) - 1)
    for c in string.digits:
        if _luhn_sum(body + c) == 0:
            return body + c
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------------------------------------
# sensitive values
# ---------------------------------------------------------------------------------------------------------
def v_aws_key_id(rng: random.Random) -> str:
    return rng.choice(["AKIA", "ASIA", "AKIA"]) + _r(rng, string.ascii_uppercase + "234567", 16)


def v_aws_secret(rng: random.Random) -> str:
    while True:
        s = _r(rng, B64, 40)
        if any(c.isupper() for c in s) and any(c.islower() for c in s) and any(c.isdigit() for c in s):
            return s


def v_gcp(rng: random.Random) -> str:
    return "AIzaSy" + _r(rng, ALNUM + "_-", 33)


def v_github(rng: random.Random) -> str:
    k = rng.randrange(4)
    if k == 0:
        return "github_pat_11" + _r(rng, UPPER_DIGITS, 20) + "_" + _r(rng, ALNUM, 59)
    body = _r(rng, ALNUM, 30)
    return rng.choice(["ghp_", "gho_", "ghs_", "ghu_", "ghr_"]) + body + _crc_b62(body)


def v_gitlab(rng: random.Random) -> str:
    k = rng.randrange(3)
    if k == 0:
        return "glpat-" + _r(rng, ALNUM + "_-", 20)
    if k == 1:  # newer routable format: 27-char body, then .01.<base36 cell id>
        return "glpat-" + _r(rng, ALNUM + "_-", 27) + ".01." + _r(rng, string.ascii_lowercase + string.digits, 9)
    return rng.choice(["gldt-", "glrt-", "glptt-", "glcbt-"]) + _r(rng, ALNUM + "_-", 20)


def v_slack_token(rng: random.Random) -> str:
    k = rng.randrange(4)
    team, user = rng.randrange(10**9, 10**12), rng.randrange(10**9, 10**13)
    if k == 0:
        return f"xoxb-{team}-{user}-{_r(rng, ALNUM, 24)}"
    if k == 1:
        return f"xoxp-{team}-{user}-{rng.randrange(10**9, 10**12)}-{_r(rng, HEX, 32)}"
    if k == 2:
        return f"xapp-1-A{_r(rng, UPPER_DIGITS, 10)}-{rng.randrange(10**12, 10**13)}-{_r(rng, HEX, 64)}"
    return f"xoxe.xoxp-1-{_r(rng, ALNUM, 140)}"


def v_slack_webhook_path(rng: random.Random) -> str:
    return f"T{_r(rng, UPPER_DIGITS, 10)}/B{_r(rng, UPPER_DIGITS, 10)}/{_r(rng, ALNUM, 24)}"


def v_stripe(rng: random.Random) -> str:
    return rng.choice(["sk_live_", "sk_test_", "rk_live_", "rk_test_"]) + "51" + _r(rng, ALNUM, rng.choice([22, 97]))


def v_openai(rng: random.Random) -> str:
    k = rng.randrange(4)
    if k == 0:
        return "sk-proj-" + _r(rng, ALNUM + "_-", 74) + "T3BlbkFJ" + _r(rng, ALNUM + "_-", 74)
    if k == 1:
        return "sk-svcacct-" + _r(rng, ALNUM + "_-", 74) + "T3BlbkFJ" + _r(rng, ALNUM + "_-", 74)
    if k == 2:
        return "sk-" + _r(rng, ALNUM, 20) + "T3BlbkFJ" + _r(rng, ALNUM, 20)
    return "sk-admin-" + _r(rng, ALNUM + "_-", 58) + "T3BlbkFJ" + _r(rng, ALNUM + "_-", 58)


def v_anthropic(rng: random.Random) -> str:
    kind = rng.choice(["api03", "api03", "admin01"])
    return f"sk-ant-{kind}-" + _r(rng, ALNUM + "_-", 93) + "AA"


def v_hf(rng: random.Random) -> str:
    while True:
        body = _r(rng, string.ascii_letters, 34)
        if any(c.isupper() for c in body) and any(c.islower() for c in body):
            return "hf_" + body


def v_npm(rng: random.Random) -> str:
    body = _r(rng, ALNUM, 30)
    return "npm_" + body + _crc_b62(body)


def v_sendgrid(rng: random.Random) -> str:
    return "SG." + _r(rng, ALNUM + "_-", 22) + "." + _r(rng, ALNUM + "_-", 43)


def v_cleanroom(rng: random.Random) -> str:
    body = _r(rng, ALNUM, 30)
    return "cr_" + body + _crc_b62(body)


def v_jwt(rng: random.Random) -> str:
    alg = rng.choice(["RS256", "ES384", "HS512", "PS256", "EdDSA"])
    header: dict[str, object] = {"alg": alg}
    if rng.random() < 0.6:
        header["kid"] = _r(rng, ALNUM, 20)
    if rng.random() < 0.5:
        header["typ"] = rng.choice(["JWT", "at+jwt"])
    claims = {
        "iss": "https://idp.example.test/",
        "sub": _r(rng, ALNUM, 12),
        "exp": rng.randrange(1_700_000_000, 1_900_000_000),
    }
    if rng.random() < 0.5:
        claims["aud"] = rng.choice(["api", ["api", "web"]])
    sig = rng.randbytes(rng.choice([32, 64, 96, 256]))
    return ".".join(
        (
            _b64url(json.dumps(header, separators=(",", ":")).encode()),
            _b64url(json.dumps(claims).encode()),
            _b64url(sig),
        )
    )


def v_pem(rng: random.Random) -> str:
    kind = rng.choice(
        [
            "RSA PRIVATE KEY",
            "PRIVATE KEY",
            "EC PRIVATE KEY",
            "OPENSSH PRIVATE KEY",
            "ENCRYPTED PRIVATE KEY",
            "DSA PRIVATE KEY",
        ]
    )
    body = base64.b64encode(rng.randbytes(rng.choice([48, 121, 300, 1190]))).decode()
    rows = [body[i : i + 64] for i in range(0, len(body), 64)]
    return f"-----BEGIN {kind}-----\n" + "\n".join(rows) + f"\n-----END {kind}-----"


_PW_WORDS = [
    "Sunshine",
    "dragon",
    "Summer",
    "correct",
    "horse",
    "Winter",
    "monkey",
    "Qwerty",
    "letmein",
    "Autumn",
    "falcon",
    "Zebra",
]


def v_password(rng: random.Random) -> str:
    k = rng.randrange(6)
    if k == 0:
        return rng.choice(_PW_WORDS) + str(rng.randrange(1, 2030)) + rng.choice("!@#$%^&*")
    if k == 1:
        return _r(rng, ALNUM + "!#$%&()*+-.:=?@[]^_{}|~", rng.randrange(12, 33))
    if k == 2:
        return "".join(rng.choice(_PW_WORDS).lower() for _ in range(4))
    if k == 3:
        return _r(rng, string.ascii_lowercase, rng.randrange(6, 10)) + str(rng.randrange(10, 100))
    if k == 4:
        return _r(rng, HEX, 32)
    return _r(rng, ALNUM, rng.randrange(16, 40))


def v_url_password(rng: random.Random) -> str:
    k = rng.randrange(4)
    if k == 0:  # percent-encoded special characters, as a URL must carry them
        return _r(rng, ALNUM, 6) + rng.choice(["%40", "%23", "%2F", "%3A", "%21"]) + _r(rng, ALNUM, 6)
    if k == 1:
        return rng.choice(_PW_WORDS) + str(rng.randrange(100, 999))
    if k == 2:
        return _r(rng, ALNUM, rng.randrange(20, 41))
    return _r(rng, ALNUM + "-._~!$*+", rng.randrange(10, 20))


def v_api_key(rng: random.Random) -> str:
    k = rng.randrange(3)
    if k == 0:
        return _r(rng, ALNUM, 32)
    if k == 1:
        return _r(rng, HEX, 8) + "-" + _r(rng, HEX, 24)
    return "ak_" + ("live_" if rng.random() < 0.5 else "") + _r(rng, ALNUM, 28)


def v_generic(rng: random.Random) -> str:
    k = rng.randrange(3)
    if k == 0:
        return _r(rng, ALNUM, rng.randrange(24, 65))
    if k == 1:
        return base64.b64encode(rng.randbytes(rng.choice([24, 32, 48]))).decode()
    return _r(rng, ALNUM + "-_", rng.randrange(30, 60))


_NAMES = [
    "alice",
    "bob",
    "carol",
    "dmitri",
    "eun-ji",
    "fatima",
    "giulia",
    "hiro",
    "ines",
    "jamal",
    "kofi",
    "lena",
    "mateo",
    "noor",
    "oskar",
]
_SURNAMES = [
    "smith",
    "okafor",
    "nguyen",
    "schmidt",
    "rossi",
    "tanaka",
    "silva",
    "kowalski",
    "haddad",
    "andersson",
    "obrien",
    "dubois",
]
_MAIL_DOMAINS = [
    "example.com",
    "mail.example.org",
    "eu.corp-mail.example.net",
    "example.co.uk",
    "uni-example.de",
    "example.com.au",
    "sub.example.io",
    "example.travel",
    "example.museum",
    "student.example.edu",
]


def v_email(rng: random.Random) -> str:
    f, s = rng.choice(_NAMES), rng.choice(_SURNAMES)
    local = rng.choice(
        [
            f"{f}.{s}",
            f"{f}{rng.randrange(10, 99)}",
            f"{f[0]}.{s}+{rng.choice(['billing', 'ci', 'news'])}",
            f"{s}_{f}",
            f"{f}-{s}",
            f"{f.upper()}.{s.capitalize()}",
            f"{f}.{s}.{rng.randrange(1970, 2010)}",
        ]
    )
    return local + "@" + rng.choice(_MAIL_DOMAINS)


def _d(rng: random.Random, n: int) -> str:
    return str(rng.randrange(1, 10)) + _r(rng, string.digits, n - 1)


def v_phone(rng: random.Random) -> str:
    a, e, n = rng.randrange(201, 990), rng.randrange(201, 1000), rng.randrange(10000)
    nanp = [
        f"({a}) {e}-{n:04d}", f"({a}){e}-{n:04d}", f"{a}-{e}-{n:04d}", f"{a}.{e}.{n:04d}", f"+1 ({a}) {e}-{n:04d}",
        f"+1.{a}.{e}.{n:04d}", f"+1{a}{e}{n:04d}", f"1 ({a}) {e}-{n:04d}", f"+1-{a}-{e}-{n:04d} ext. {rng.randrange(10, 9999)}",
        f"{a}-{e}-{n:04d} x{rng.randrange(10, 999)}", f"1-{a}-{e}-{n:04d}",
    ]  # fmt: skip
    intl = [
        f"+44 (0)20 {_d(rng, 4)} {_d(rng, 4)}", f"+44 7{_d(rng, 3)} {_d(rng, 6)}", f"+442{_d(rng, 9)}", f"0044 20 {_d(rng, 4)} {_d(rng, 4)}",
        f"+49 (0)30 {_d(rng, 8)}", f"+49 151 {_d(rng, 8)}", f"+49-89-{_d(rng, 7)}", f"+33 1 {_d(rng, 2)} {_d(rng, 2)} {_d(rng, 2)} {_d(rng, 2)}",
        f"+33 6 {_d(rng, 2)} {_d(rng, 2)} {_d(rng, 2)} {_d(rng, 2)}", f"+33.6.{_d(rng, 2)}.{_d(rng, 2)}.{_d(rng, 2)}.{_d(rng, 2)}",
        f"+34 6{_d(rng, 2)} {_d(rng, 2)} {_d(rng, 2)} {_d(rng, 2)}", f"+39 06 {_d(rng, 4)} {_d(rng, 4)}", f"+39 3{_d(rng, 2)} {_d(rng, 7)}",
        f"+31 20 {_d(rng, 3)} {_d(rng, 4)}", f"+31 6 {_d(rng, 8)}", f"+41 44 {_d(rng, 3)} {_d(rng, 2)} {_d(rng, 2)}",
        f"+46 8 {_d(rng, 3)} {_d(rng, 3)} {_d(rng, 2)}", f"+47 {_d(rng, 3)} {_d(rng, 2)} {_d(rng, 3)}", f"+45 {_d(rng, 2)} {_d(rng, 2)} {_d(rng, 2)} {_d(rng, 2)}",
        f"+48 {_d(rng, 3)} {_d(rng, 3)} {_d(rng, 3)}", f"+353 1 {_d(rng, 3)} {_d(rng, 4)}", f"+351 21 {_d(rng, 3)} {_d(rng, 4)}",
        f"+81-3-{_d(rng, 4)}-{_d(rng, 4)}", f"+81 90-{_d(rng, 4)}-{_d(rng, 4)}", f"+86 138 {_d(rng, 4)} {_d(rng, 4)}", f"+86-10-{_d(rng, 8)}",
        f"+91 9{_d(rng, 4)} {_d(rng, 5)}", f"+91-9{_d(rng, 9)}", f"+55 (11) 9{_d(rng, 4)}-{_d(rng, 4)}", f"+55 21 {_d(rng, 4)}-{_d(rng, 4)}",
        f"+52 55 {_d(rng, 4)} {_d(rng, 4)}", f"+52 1 55 {_d(rng, 4)} {_d(rng, 4)}", f"+61 4{_d(rng, 2)} {_d(rng, 3)} {_d(rng, 3)}",
        f"+61 (02) {_d(rng, 4)} {_d(rng, 4)}", f"+27 82 {_d(rng, 3)} {_d(rng, 4)}", f"+7 495 {_d(rng, 3)}-{_d(rng, 2)}-{_d(rng, 2)}",
        f"+7 (912) {_d(rng, 3)}-{_d(rng, 2)}-{_d(rng, 2)}", f"+65 6{_d(rng, 3)} {_d(rng, 4)}", f"+82 10-{_d(rng, 4)}-{_d(rng, 4)}",
        f"+82-2-{_d(rng, 4)}-{_d(rng, 4)}", f"+971 50 {_d(rng, 3)} {_d(rng, 4)}", f"+234 803 {_d(rng, 3)} {_d(rng, 4)}",
        f"+90 212 {_d(rng, 3)} {_d(rng, 2)} {_d(rng, 2)}", f"+972-3-{_d(rng, 3)}-{_d(rng, 4)}", f"+64 21 {_d(rng, 3)} {_d(rng, 4)}",
        f"+43 1 {_d(rng, 7)}", f"+32 2 {_d(rng, 3)} {_d(rng, 2)} {_d(rng, 2)}", f"+420 {_d(rng, 3)} {_d(rng, 3)} {_d(rng, 3)}",
    ]  # fmt: skip
    return rng.choice(nanp) if rng.random() < 0.35 else rng.choice(intl)


def _group(digits: str, sizes: list[int], sep: str) -> str:
    out, i = [], 0
    for s in sizes:
        out.append(digits[i : i + s])
        i += s
    return sep.join(out)


def v_card(rng: random.Random) -> str:
    brand = rng.choice(
        [
            "visa16",
            "visa13",
            "visa19",
            "mc",
            "mc2",
            "amex",
            "disc",
            "disc65",
            "jcb",
            "diners",
            "unionpay",
            "unionpay19",
            "maestro",
        ]
    )
    prefix, n = {
        "visa16": ("4", 16), "visa13": ("4", 13), "visa19": ("4", 19), "mc": (str(rng.randrange(51, 56)), 16),
        "mc2": (str(rng.randrange(2221, 2721)), 16), "amex": (rng.choice(["34", "37"]), 15), "disc": ("6011", 16),
        "disc65": ("65", 16), "jcb": (str(rng.randrange(3528, 3590)), 16), "diners": (rng.choice(["300", "305", "36", "38"]), 14),
        "unionpay": ("62", 16), "unionpay19": ("62", 19), "maestro": (rng.choice(["5018", "5020", "6304"]), rng.choice([16, 18, 19])),
    }[brand]  # fmt: skip
    digits = _luhn(rng, prefix, n)
    sep = rng.choice(["", " ", "-", " ", "-"])
    if not sep:
        return digits
    sizes = {15: [4, 6, 5], 14: [4, 6, 4], 13: [4, 4, 5], 16: [4, 4, 4, 4], 18: [4, 4, 4, 4, 2], 19: [4, 4, 4, 4, 3]}[n]
    return _group(digits, sizes, sep)


def v_ssn(rng: random.Random) -> str:
    while True:
        area = rng.randrange(1, 900)
        if area != 666:
            break
    g, s = rng.randrange(1, 100), rng.randrange(1, 10000)
    return rng.choice([f"{area:03d}-{g:02d}-{s:04d}", f"{area:03d}-{g:02d}-{s:04d}", f"{area:03d} {g:02d} {s:04d}"])


# country -> BBAN layout: n digit, a upper letter, c upper alphanumeric (as in the national specs)
IBAN_LAYOUTS = {
    "AT": "16n", "BE": "12n", "BG": "4a6n8c", "CH": "5n12c", "CY": "8n16c", "CZ": "20n", "DE": "18n", "DK": "14n",
    "EE": "16n", "ES": "20n", "FI": "14n", "FR": "10n11c2n", "GB": "4a14n", "GR": "7n16c", "HR": "17n", "HU": "24n",
    "IE": "4a14n", "IS": "22n", "IT": "1a10n12c", "LI": "5n12c", "LT": "16n", "LU": "3n13c", "LV": "4a13c", "MT": "4a5n18c",
    "NL": "4a10n", "NO": "11n", "PL": "24n", "PT": "21n", "RO": "4a16c", "SE": "20n", "SI": "15n", "SK": "20n",
    "TR": "6n16c", "SA": "2n18c", "AE": "19n", "BR": "23n1a1c", "IL": "19n", "KZ": "3n13c", "QA": "4a21c", "UA": "6n19c",
    "MC": "10n11c2n", "AD": "8n12c", "GI": "4a15c", "JO": "4a4n18c", "PK": "4a16c", "KW": "4a22c", "EG": "25n",
    "GE": "2a16n", "AZ": "4a20c", "XK": "16n", "MU": "4a19n3a", "RS": "18n", "BA": "16n", "AL": "8n16c", "MD": "20c",
}  # fmt: skip


def _bban(rng: random.Random, layout: str) -> str:
    out = []
    for count, kind in re.findall(r"(\d+)([nac])", layout):
        alphabet = {"n": string.digits, "a": string.ascii_uppercase, "c": string.digits * 3 + string.ascii_uppercase}[
            kind
        ]
        out.append(_r(rng, alphabet, int(count)))
    return "".join(out)


def _iban_check(country: str, bban: str) -> int:
    return 98 - int("".join(str(int(c, 36)) for c in bban + country + "00")) % 97


def v_iban_compact(rng: random.Random) -> str:
    country = rng.choice(list(IBAN_LAYOUTS))
    bban = _bban(rng, IBAN_LAYOUTS[country])
    return f"{country}{_iban_check(country, bban):02d}{bban}"


def v_iban(rng: random.Random) -> str:
    iban = v_iban_compact(rng)
    if rng.random() < 0.5:
        return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    return iban


def v_ipv4(rng: random.Random) -> str:
    while True:
        k = rng.randrange(4)
        if k == 0:
            addr = ipaddress.IPv4Address(rng.getrandbits(32))
        elif k == 1:
            addr = ipaddress.IPv4Address(f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}")
        elif k == 2:
            addr = ipaddress.IPv4Address(f"192.168.{rng.randrange(256)}.{rng.randrange(1, 255)}")
        else:
            addr = ipaddress.IPv4Address(
                f"{rng.choice([34, 52, 81, 185, 203])}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            )
        if not (addr.is_loopback or addr.is_unspecified or addr.is_multicast or addr.is_reserved):
            return str(addr)


def v_ipv6(rng: random.Random) -> str:
    k = rng.randrange(7)
    g = [rng.getrandbits(16) for _ in range(8)]
    if k == 0:
        return str(ipaddress.IPv6Address(bytes.fromhex("20010db8") + rng.randbytes(12)).exploded)
    if k == 1:
        return str(ipaddress.IPv6Address((0x2A00 << 112) | rng.getrandbits(100)))
    if k == 2:
        return f"fe80::{g[4]:x}:{g[5]:x}:{g[6]:x}:{g[7]:x}%{rng.choice(['eth0', 'en0', 'wlan0', '3', 'ens5'])}"
    if k == 3:
        return f"::ffff:{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    if k == 4:
        return f"2001:db8:{g[2]:x}::{g[7]:x}"
    if k == 5:
        return str(ipaddress.IPv6Address((0x2600 << 112) | rng.getrandbits(96))).upper()
    return f"fd{rng.getrandbits(8):02x}:{g[1]:x}:{g[2]:x}:{g[3]:x}::{g[7] or 1:x}"


# ---------------------------------------------------------------------------------------------------------
# look-alikes that must survive
# ---------------------------------------------------------------------------------------------------------
def _iso(rng: random.Random) -> str:
    return f"2026-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(10**6):06d}Z"


def n_value(rng: random.Random, kind: str) -> str:
    if kind == "uuid":
        u = str(uuid.UUID(int=rng.getrandbits(128), version=rng.choice([1, 4, 4, 5])))
        return rng.choice([u, u.upper(), u.replace("-", ""), "{" + u + "}", "urn:uuid:" + u])
    if kind == "trace_id":
        return rng.choice(
            [
                f"00-{_r(rng, HEX, 32)}-{_r(rng, HEX, 16)}-0{rng.choice('01')}",
                _r(rng, HEX, 32),
                f"1-{_r(rng, HEX, 8)}-{_r(rng, HEX, 24)}",
                f"Root=1-{_r(rng, HEX, 8)}-{_r(rng, HEX, 24)};Sampled=1",
            ]
        )
    if kind == "span_id":
        return _r(rng, HEX, 16)
    if kind == "hash_hex":
        return _r(rng, HEX, rng.choice([32, 40, 64, 128]))
    if kind == "commit_hash":
        return _r(rng, HEX, rng.choice([7, 8, 10, 12, 40]))
    if kind == "docker_digest":
        return (
            rng.choice(["sha256:", "sha512:"]) + _r(rng, HEX, 64)
            if rng.random() < 0.8
            else f"ghcr.io/acme/api@sha256:{_r(rng, HEX, 64)}"
        )
    if kind == "timestamp":
        return rng.choice([
            _iso(rng), f"2026-11-{rng.randrange(1, 29):02d} {rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(1000):03d}+01:00",
            str(rng.randrange(1_600_000_000, 1_900_000_000)), f"{rng.randrange(1_600_000_000, 1_900_000_000)}.{rng.randrange(10**6):06d}",
            str(rng.randrange(1_600_000_000_000, 1_900_000_000_000)), str(rng.randrange(1_600_000_000_000_000, 1_900_000_000_000_000)),
            f"{rng.randrange(1, 29):02d}/Nov/2026:{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d} -0500",
            f"Fri, {rng.randrange(1, 29):02d} Nov 2026 {rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d} GMT",
            f"2026{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}T{rng.randrange(24):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}Z",
        ])  # fmt: skip
    if kind == "version":
        a, b, c = rng.randrange(0, 30), rng.randrange(0, 60), rng.randrange(0, 400)
        return rng.choice([
            f"{a}.{b}.{c}", f"v{a}.{b}.{c}", f"{a}.{b}.{c}-beta.{rng.randrange(1, 9)}", f"{a}.{b}.{c}+sha.{_r(rng, HEX, 7)}", f"{a}.{b}",
            f"{a}.{b}.{rng.randrange(1000, 30000)}.{rng.randrange(0, 9999)}", f"{a}.{b}rc{rng.randrange(1, 5)}", f"1.{rng.randrange(60, 90)}.0", f"go1.{rng.randrange(18, 24)}.{rng.randrange(0, 9)}",
            f"12.{rng.randrange(0, 9)}.{rng.randrange(0, 200)}", f"release-{a}.{b}",
        ])  # fmt: skip
    if kind == "file_path":
        return rng.choice([
            f"/usr/lib/python3.11/site-packages/{rng.choice(['httpx', 'uvicorn', 'torch'])}/_{rng.choice(['client', 'main', 'utils'])}.py",
            f"/var/lib/kubelet/pods/{uuid.UUID(int=rng.getrandbits(128), version=4)}/volumes/kubernetes.io~secret/token",
            f"C:\\Program Files\\Acme\\bin\\worker-{rng.randrange(9)}.exe", f"D:\\builds\\{rng.randrange(1000, 9999)}\\out\\app.dll",
            f"/opt/app/releases/20261128{rng.randrange(100000, 999999)}/config/settings.yaml", f"~/.config/acme/{rng.choice(['profile', 'state'])}.toml",
            f"../../fixtures/{rng.choice(['cards', 'iban', 'phones'])}_{rng.randrange(99)}.json", f"\\\\fileserver\\share\\reports\\q{rng.randrange(1, 5)}.xlsx",
        ])  # fmt: skip
    if kind == "plain_url":
        return rng.choice([
            f"https://api.example.com/v2/orders?page={rng.randrange(1, 99)}&per_page=100&sort=-created_at", "https://example.org/",
            f"https://registry.example.io/v2/acme/api/manifests/sha256:{_r(rng, HEX, 64)}", f"http://10-0-{rng.randrange(256)}-{rng.randrange(256)}.svc.example.internal:8080/ready",
            f"https://github.com/acme/api/pull/{rng.randrange(1, 9999)}/files#diff-{_r(rng, HEX, 64)}", f"wss://stream.example.com/socket?v={rng.randrange(1, 9)}&encoding=json",
            f"https://cdn.example.com/static/js/main.{_r(rng, HEX, 20)}.chunk.js", f"https://example.com/path/with%20space/{rng.randrange(100)}?utm_source=newsletter&utm_medium=email",
        ])  # fmt: skip
    if kind == "luhn_invalid_number":
        while True:
            p = rng.choice(["4", "51", "37", "6011", "35", "62"])
            n = rng.choice([15, 16]) if p == "37" else rng.choice([16, 16, 19, 13])
            digits = p + _r(rng, string.digits, n - len(p))
            if _luhn_sum(digits) != 0:
                break
        if len(digits) == 16 and rng.random() < 0.5:
            return _group(digits, [4, 4, 4, 4], rng.choice([" ", "-"]))
        return digits
    if kind == "iban_lookalike":
        iban = v_iban_compact(rng)
        bad = (int(iban[2:4]) + rng.randrange(1, 96)) % 97
        iban = iban[:2] + f"{max(bad, 2):02d}" + iban[4:]
        numeric = "".join(str(int(c, 36)) for c in iban[4:] + iban[:4])
        if int(numeric) % 97 == 1:  # the shifted check digits happened to be right: break the body instead
            iban = iban[:-1] + ("1" if iban[-1] != "1" else "2")
        return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4)) if rng.random() < 0.4 else iban
    if kind == "order_id":
        return rng.choice([f"ORD-{rng.randrange(2020, 2027)}-{rng.randrange(10**6):06d}", f"INV{rng.randrange(10**7, 10**8)}", f"PO#{rng.randrange(10**4, 10**5)}",
                           f"{rng.randrange(100, 999)}-{rng.randrange(1000000, 9999999)}-{rng.randrange(1000000, 9999999)}", f"ch_{rng.randrange(10**9)}"])  # fmt: skip
    if kind == "pod_name":
        return f"{rng.choice(['api', 'worker', 'billing-svc', 'ingress-nginx-controller'])}-{_r(rng, 'bcdfghjklmnpqrstvwxz2456789', 10)}-{_r(rng, 'bcdfghjklmnpqrstvwxz2456789', 5)}"
    if kind == "mac_address":
        m = [rng.randrange(256) for _ in range(6)]
        return rng.choice(
            [
                ":".join(f"{x:02x}" for x in m),
                ":".join(f"{x:02X}" for x in m),
                "-".join(f"{x:02X}" for x in m),
                f"{m[0]:02x}{m[1]:02x}.{m[2]:02x}{m[3]:02x}.{m[4]:02x}{m[5]:02x}",
            ]
        )
    if kind == "hex_colour":
        return "#" + _r(rng, HEX + "ABCDEF", rng.choice([3, 6, 8]))
    if kind == "duration":
        return rng.choice(
            [
                f"{rng.randrange(1, 24)}h{rng.randrange(60)}m{rng.randrange(60)}.{rng.randrange(1000)}s",
                f"{rng.randrange(1, 999)}.{rng.randrange(1000):03d}ms",
                f"{rng.randrange(1, 99)}µs",
                f"PT{rng.randrange(1, 9)}M{rng.randrange(60)}S",
                f"{rng.randrange(1, 59)}:{rng.randrange(60):02d}:{rng.randrange(60):02d}.{rng.randrange(10**6):06d}",
            ]
        )
    if kind == "port":
        return rng.choice(
            [
                f":{rng.randrange(1024, 65536)}",
                f"{rng.randrange(1024, 65536)}/tcp",
                f"0.0.0.0:{rng.randrange(1024, 65536)}",
                f"[::]:{rng.randrange(1024, 65536)}",
            ]
        )
    if kind == "base64_data":
        raw = rng.choice(
            [
                b'{"page":2,"size":50}',
                b"hello world, this is fine",
                b"user-agent check",
                b'{"cursor":"2026-11-28"}',
                b"lorem ipsum dolor sit",
            ]
        )
        return base64.b64encode(raw).decode()
    if kind == "secretish_field":
        return rng.choice([
            "token_type=Bearer", f"max_tokens={rng.randrange(16, 8192)}", f"tokens_used={rng.randrange(1, 99999)}", "password_changed=true",
            "secretName: app-tls", f"api_key_id=key-{rng.randrange(100, 999)}", "auth_method=oidc", "password=***", "password=<redacted>",
            'secret: null', f"{{\"password\": null, \"user\": \"u{rng.randrange(99)}\"}}", "passwordless=true", "token=${GITHUB_TOKEN}",
            "secretKeyRef: {name: db-creds, key: password}", "SECRET_NAME=prod/db", "key_rotation_days=90", "Authorization: <hidden>",
        ])  # fmt: skip
    if kind == "low_entropy_word":
        return rng.choice(
            [
                "aaaaaaaaaaaaaaaa",
                "localhost",
                "production",
                "changeme-later-please",
                "do-not-use",
                "read-only",
                "ReadOnlyAccess",
                "default-token",
                "keepalive",
                "tokenizer_config",
                "passthrough",
                "compass-rose",
                "bypass-cache",
                "secretariat",
                "keyboard-layout",
            ]
        )
    raise KeyError(kind)


# Neutral keys for negatives: names a real log would use for such values.
_NEG_KEYS = {
    "uuid": ["request_id", "correlationId", "tenant", "object_uid", "idempotency-key"], "trace_id": ["traceparent", "trace_id", "X-Amzn-Trace-Id", "otel.trace_id"],
    "span_id": ["span_id", "parentSpanId", "x-b3-spanid"], "hash_hex": ["etag", "checksum", "md5", "sha1", "sha256", "content_hash"],
    "commit_hash": ["commit", "GIT_COMMIT", "revision", "build_sha"], "docker_digest": ["image", "digest", "imageID"],
    "timestamp": ["ts", "@timestamp", "created_at", "Date", "time"], "version": ["version", "appVersion", "kubelet", "release", "sdk"],
    "file_path": ["path", "file", "config_file", "cwd", "source"], "plain_url": ["url", "redirect_uri", "href", "upstream", "Location"],
    "luhn_invalid_number": ["order_number", "tracking", "account_ref", "bytes_total", "msisdn_hash"], "iban_lookalike": ["reference", "ref", "batch", "mandate"],
    "order_id": ["order", "invoice", "po", "charge"], "pod_name": ["pod", "hostname", "involvedObject.name"], "mac_address": ["mac", "hwaddr", "bssid"],
    "hex_colour": ["color", "background", "theme.accent"], "duration": ["took", "elapsed", "latency", "uptime"], "port": ["listen", "bind", "port", "expose"],
    "base64_data": ["cursor", "next_page", "payload", "state"], "low_entropy_word": ["mode", "profile", "policy", "tokenizer", "cache", "word"],
    "secretish_field": ["field", "cfg", "line", "setting"],
}  # fmt: skip
NEGATIVE_KINDS = list(_NEG_KEYS)


# ---------------------------------------------------------------------------------------------------------
# line builder: a template with {X} slots; each slot is literal filler, a positive or a negative
# ---------------------------------------------------------------------------------------------------------
Part = tuple[str, str | None, bool]  # (text, kind or None, is_negative)


class Line:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.sample = Sample("")
        self.pos = 0

    def add(self, text: str, kind: str | None = None, negative: bool = False) -> Line:
        if kind is not None:
            (self.sample.negatives if negative else self.sample.positives).append(
                (self.pos, self.pos + len(text), kind)
            )
        self.parts.append(text)
        self.pos += len(text)
        return self

    def build(self) -> Sample:
        self.sample.line = "".join(self.parts)
        return self.sample


_SLOT = re.compile(r"\{([A-Z][A-Z0-9_]*)\}")


def render(template: str, slots: dict[str, Part]) -> Sample:
    """`template` with each `{NAME}` replaced by `slots[NAME]`, labelled as that slot says."""
    line = Line()
    pos = 0
    for m in _SLOT.finditer(template):
        line.add(template[pos : m.start()])
        text, kind, neg = slots[m.group(1)]
        line.add(text, kind, neg)
        pos = m.end()
    line.add(template[pos:])
    return line.build()


def _common_slots(rng: random.Random) -> dict[str, Part]:
    """Filler every template may use: neutral text, plus a client address that is itself PII."""
    return {
        "TS": (_iso(rng), None, False),
        "CLF": (
            f"{rng.randrange(1, 29):02d}/Nov/2026:{rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d} +0000",
            None,
            False,
        ),
        "SYSTS": (
            f"Nov {rng.randrange(1, 29):2d} {rng.randrange(24):02d}:{rng.randrange(60):02d}:{rng.randrange(60):02d}",
            None,
            False,
        ),
        "HOST": (
            rng.choice(["web-01", "api-7f9c", "ip-172-31-4-19", "node3.dc2.example.net", "worker.local"]),
            None,
            False,
        ),
        "PID": (str(rng.randrange(1, 65535)), None, False),
        "MS": (str(rng.randrange(1, 5000)), None, False),
        "STATUS": (rng.choice(["200", "201", "204", "301", "400", "401", "403", "404", "499", "502"]), None, False),
        "UA": (
            rng.choice(["curl/8.5.0", "python-httpx/0.27.0", "Go-http-client/2.0", "okhttp/4.12.0", "kube-probe/1.29"]),
            None,
            False,
        ),
        "RID": (str(uuid.UUID(int=rng.getrandbits(128), version=4)), None, False),
        "CLIENT": (v_ipv4(rng), "ipv4", False),
        "CLIENT6": (v_ipv6(rng), "ipv6", False),
    }


# Prefixes of common logging stacks; every one is free of sensitive values.
PREFIXES = [
    "{TS} INFO ",
    'time="{TS}" level=warning msg=',
    "<134>1 {TS} {HOST} api {PID} - - ",
    "{SYSTS} {HOST} app[{PID}]: ",
    "2026-11-28 21:15:49,123 WARN  [http-nio-8080-exec-3] c.a.billing.PaymentService - ",
    "2026/11/28 21:15:49 handler.go:88: ",
    "[2026-11-28 21:15:49,123] ERROR in app: ",
    "I1128 21:15:49.123456       1 controller.go:214] ",
    "api-1  | ",
    "I, [2026-11-28T21:15:49.123456 #{PID}]  INFO -- : ",
    "",
    "",
    "{TS} {HOST} ",
]


def _prefix(rng: random.Random) -> str:
    return rng.choice(PREFIXES)


# ---- keyed secrets: a key name that says what the value is, in many syntaxes ----------------------------
KEYED_TEMPLATES = [
    '{P}msg="loaded config" {K}={V} region=eu-west-1',
    '{P}msg="loaded config" {K}="{V}" attempt=2',
    '{"time":"{TS}","level":"DEBUG","logger":"cfg","config":{"db":{"host":"db.internal","{K}":"{V}","pool":10}}}',
    '{"ts":"{TS}","msg":"upstream request {\\"{K}\\":\\"{V}\\",\\"retry\\":true}"}',
    '{"ts":"{TS}","msg":"body: {\\u0022{K}\\u0022:\\u0022{V}\\u0022}"}',
    '{"level":"info","msg":"env dump:\\n{K}={V}\\nLOG_LEVEL=debug"}',
    "{P}settings={'{K}': '{V}', 'debug': False, 'port': 5432}",
    "Traceback (most recent call last):  File \"/app/db.py\", line 42, in connect    kwargs = {'host': 'db', '{K}': '{V}'}",
    "{P}Client(host='api.example.com', {K}='{V}', timeout=30.0)",
    "  {K}: {V}",
    '    {K}: "{V}"',
    '{K} = "{V}"',
    "{K}={V}",
    "export {KU}={V}",
    "export {KU}='{V}'",
    'declare -x {KU}="{V}"',
    "{P}docker run -d -e {KU}={V} -p 8080:8080 acme/api:1.4.2",
    "{P}{KH}: {V}",
    "{P}> {KH}: {V}\\r\\n",
    '{CLIENT} - - [{CLF}] "GET /v1/callback?{K}={V}&state=af0ifjsldkj HTTP/1.1" {STATUS} 512 "-" "{UA}"',
    "{P}POST /oauth/token body=grant_type=client_credentials&client_id=svc-{PID}&{K}={V}",
    "{P}exec: app --{KD}={V} --port 8080",
    "{P}exec: app --{KD} {V} --verbose",
    "{P}spring.datasource.{K}={V}",
    "{P}[{K}={V}]",
    "{P}({K}: {V})",
    "{P}{K}: {V}; retrying",
    "{P}{K}={V}, user=svc",
    "{P}config: {K}=«{V}» ünïcödé ok",
    "{P}<{K}>{V}</{K}>",
    "{P}<settings><server><id>nexus</id><{K}>{V}</{K}></server></settings>",
    '{P}env: [{"name":"{KU}","value":"{V}"},{"name":"LOG_LEVEL","value":"info"}]',
    "{P}env={name: {KU}, value: {V}}",
    "{P}cfg=&{Host:db.internal Port:5432 {KG}:{V} SSL:true}",
    "{P}DataSource{url='jdbc:h2:mem:x', {K}='{V}', pool=8}",
    '{P}params={:{KS}=>"{V}", :retries=>3}',
    "{P}$config = ['{K}' => '{V}', 'debug' => false];",
]
PASSWORD_KEYS = [
    "password",
    "DB_PASSWORD",
    "db_password",
    "passwd",
    "pass",
    "pwd",
    "PGPASSWORD",
    "redis_password",
    "adminPassword",
    "MYSQL_ROOT_PASSWORD",
    "smtp.password",
    "keystore_pass",
    "passphrase",
]
SECRET_KEYS = [
    "secret",
    "client_secret",
    "clientSecret",
    "app_secret",
    "SECRET_KEY",
    "JWT_SECRET",
    "webhook_secret",
    "consumer_secret",
]
APIKEY_KEYS = ["api_key", "apiKey", "APIKEY", "x-api-key", "API_KEY", "apikey"]
GENERIC_KEYS = [
    "access_token",
    "refresh_token",
    "auth_token",
    "session_token",
    "private_token",
    "SLACK_SIGNING_SECRET",
    "signing_key",
    "encryption_key",
    "master_key",
    "client_key",
    "bot_token",
    "deploy_key",
]

# ---- self-identifying values: may appear anywhere, bare ---------------------------------------------------
FREE_TEMPLATES = [
    "{P}using {V} for upstream",
    "{V} rejected by upstream",
    "{P}value ({V}) did not validate",
    "{P}candidates=[{V}]",
    "{P}got <{V}> from header",
    '{P}credential "{V}" expired',
    "{P}credential '{V}' expired",
    "{P}rotated {V}.",
    "{P}rotated {V}, next in 30d",
    "{P}found {V}; skipping",
    "{P}ended with {V}",
    "{P}Schlüssel {V} wurde widerrufen",
    "{P}令牌{V}已过期",
    "{P}клиент {V} отклонён",
    "{P}→ {V} ←",
    '{"ts":"{TS}","level":"warn","event":"leak-check","value":"{V}"}',
    "{P}k8s event: Warning  Failed  pod/api-6d4cf56db6-x2x7k  Error: env {V} invalid",
    "\tat com.acme.Client.call(Client.java:88) caused by: AuthException: bad credential {V}",
    "panic: auth failed for {V}\\n\\ngoroutine 1 [running]:",
]

# PII: free placement plus a few structured contexts
PII_TEMPLATES = [
    *FREE_TEMPLATES,
    "{P}{KEYP}={V} tenant=t-{PID}",
    '{"event":"signup","user":{"{KEYP}":"{V}","plan":"pro"}}',
    "{P}{'{KEYP}': '{V}', 'verified': True}",
    "{KEYP},{V},2026-11-28,active",
    '{PID},"{V}","Berlin","DE"',
    '  {KEYP}: "{V}"',
    "{P}{KEYP}: {V}",
    "<{KEYP}>{V}</{KEYP}>",
    '{"msg":"webhook body {\\u0022{KEYP}\\u0022:\\u0022{V}\\u0022}"}',
    '{"msg":"sent {\\"{KEYP}\\":\\"{V}\\"}"}',
]
PII_KEYS = {
    "email": ["email", "Email", "userEmail", "reply_to", "contact"], "phone": ["phone", "mobile", "tel", "phone_number", "msisdn"],
    "credit_card": ["card_number", "pan", "cc", "cardNumber"], "ssn": ["ssn", "SSN", "social_security_number", "tax_id"],
    "iban": ["iban", "IBAN", "payee_account", "debtor_iban"], "ipv4": ["client_ip", "remote_addr", "src", "peer"],
    "ipv6": ["client_ip", "remote_addr", "src", "peer"],
}  # fmt: skip


def _key_forms(key: str) -> dict[str, str]:
    snake = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", key).replace("-", "_").replace(".", "_")
    return {
        "K": key,
        "KU": snake.upper(),
        "KH": "-".join(w.capitalize() for w in snake.split("_")) if "api" not in snake.lower() else "X-Api-Key",
        "KD": snake.lower().replace("_", "-"),
        "KG": "".join(w.capitalize() for w in snake.split("_")),
        "KS": snake.lower(),
    }


def _fill(rng: random.Random, template: str, slots: dict[str, Part]) -> Sample:
    slots = {**_common_slots(rng), **slots}
    prefix = _prefix(rng)
    if "{P}" in template:
        template = template.replace("{P}", prefix, 1)
    return render(template, slots)


def _keyed(rng: random.Random, kind: str, value: str, keys: list[str]) -> Sample:
    template = rng.choice(KEYED_TEMPLATES)
    key = rng.choice(keys)
    slots: dict[str, Part] = {name: (form, None, False) for name, form in _key_forms(key).items()}
    if ("'{V}'" in template and "'" in value) or ('"{V}"' in template and '"' in value):
        value = value.replace("'", "").replace('"', "")
    if "?{K}=" in template or "&{K}=" in template:  # a query string or form body carries it percent-encoded
        value = re.sub(r"[^A-Za-z0-9._~-]", lambda m: f"%{ord(m.group()):02X}", value)
    if (
        "{V}\\r" in template
        or "{V}," in template
        or "{V};" in template
        or "{V}]" in template
        or "{V})" in template
        or "{V}»" in template
    ):
        value = re.sub(r"[\]),;»\[(]", "", value) or "x9Z"
    if (
        template.startswith(("{K}=", "export {KU}={V}", "  {K}: {V}", "{P}{KH}"))
        or " {V} " in template
        or "={V} " in template
    ):
        value = value.replace(" ", "")
    slots["V"] = (value, kind, False)
    return _fill(rng, template, slots)


def _free(rng: random.Random, kind: str, value: str, templates: list[str], key: str = "value") -> Sample:
    template = rng.choice(templates)
    if kind == "email" and rng.random() < 0.08:  # a query string carries the address percent-encoded
        template = '{CLIENT} - - [{CLF}] "GET /unsubscribe?{KEYP}={V}&list=news HTTP/1.1" {STATUS} 0 "-" "{UA}"'
        value = value.replace("@", "%40").replace("+", "%2B")
    if kind == "phone" and "x" not in value and rng.random() < 0.08:
        template = '{P}click-to-call href="tel:{V}"'
        value = value.replace("(", "").replace(") ", "-").replace(")", "-").replace(" ", "-")
    slots: dict[str, Part] = {"V": (value, kind, False), "KEYP": (key, None, False)}
    return _fill(rng, template, slots)


# type -> generator, key names (None: only keyed placements make sense), free placement allowed
SECRET_TYPES: dict[str, tuple[Callable[[random.Random], str], list[str], bool]] = {
    "aws_access_key_id": (v_aws_key_id, ["aws_access_key_id", "AccessKeyId", "accessKeyId"], True),
    "aws_secret_access_key": (v_aws_secret, ["aws_secret_access_key", "SecretAccessKey", "secretAccessKey", "AWS_SECRET_ACCESS_KEY", "aws.secretKey"], False),
    "gcp_api_key": (v_gcp, ["key", "GOOGLE_API_KEY", "maps_api_key"], True),
    "github_token": (v_github, ["GH_TOKEN", "github_token", "token"], True),
    "gitlab_token": (v_gitlab, ["CI_JOB_TOKEN", "private_token", "GITLAB_TOKEN"], True),
    "slack_token": (v_slack_token, ["SLACK_BOT_TOKEN", "slack_token", "token"], True),
    "stripe_key": (v_stripe, ["STRIPE_API_KEY", "stripe_secret", "key"], True),
    "openai_key": (v_openai, ["OPENAI_API_KEY", "openai.api_key", "key"], True),
    "anthropic_key": (v_anthropic, ["ANTHROPIC_API_KEY", "x-api-key", "anthropic_key"], True),
    "huggingface_token": (v_hf, ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "hf_token"], True),
    "npm_token": (v_npm, ["NPM_TOKEN", "_authToken", "NODE_AUTH_TOKEN"], True),
    "sendgrid_key": (v_sendgrid, ["SENDGRID_API_KEY", "sendgrid.apikey", "mail_key"], True),
    "cleanroom_key": (v_cleanroom, ["CLEANROOM_API_KEY", "api_key", "key"], True),
    "jwt": (v_jwt, ["id_token", "access_token", "jwt", "assertion"], True),
    "password": (v_password, PASSWORD_KEYS, False),
    "secret": (v_password, SECRET_KEYS, False),
    "api_key": (v_api_key, APIKEY_KEYS, False),
    "generic_secret": (v_generic, GENERIC_KEYS, False),
}  # fmt: skip

PII_TYPES: dict[str, Callable[[random.Random], str]] = {
    "email": v_email, "phone": v_phone, "credit_card": v_card, "ssn": v_ssn, "iban": v_iban, "ipv4": v_ipv4, "ipv6": v_ipv6,
}  # fmt: skip


def _special(rng: random.Random, kind: str) -> Sample:
    """Types whose natural form is a construct: connection strings, URLs, headers, PEM blocks, curl."""
    s: dict[str, Part] = {}
    if kind == "url_password":
        pw = v_url_password(rng)
        user = rng.choice(["admin", "app_user", "svc.reader", "deploy", "u%40corp", "x-access-token", "oauth2"])
        t = rng.choice([
            "{P}connecting to postgresql://{U}:{V}@db-primary.internal:5432/orders?sslmode=require",
            "{P}DATABASE_URL=mysql+pymysql://{U}:{V}@10-0-0-5.db.internal/app",
            '{"level":"error","msg":"redis unavailable","url":"rediss://:{V}@cache.internal:6380/0"}',
            "{P}Cloning into 'repo'... from https://{U}:{V}@git.example.com/acme/repo.git",
            "{P}pip install --index-url https://{U}:{V}@pypi.example.com/simple/ acme-sdk==2.1.0",
            "{P}broker=amqps://{U}:{V}@mq.example.com:5671/%2Fprod heartbeat=30",
            "{P}HTTPS_PROXY=http://{U}:{V}@proxy.corp.example:3128",
            "{P}mongo uri (mongodb+srv://{U}:{V}@cluster0.ab1cd.mongodb.net/test?retryWrites=true)",
            "{P}jdbc:sqlserver://sql.example.com:1433;databaseName=app;user={U};password={V};encrypt=true",
            "{P}Server=tcp:sql.example.com,1433;Database=app;User ID={U};Password={V};Encrypt=True;",
            "{P}jdbc:postgresql://db:5432/app?user={U}&password={V}&ssl=true",
            "{P}ftp://{U}:{V}@files.example.com/incoming/",
            "{P}curl -sS -u {U}:{V} https://api.example.com/v1/status",
            "{P}curl --user '{U}:{V}' -X POST https://ci.example.com/job/build",
            "{P}LOG:  statement: ALTER ROLE {U} WITH LOGIN PASSWORD '{V}' VALID UNTIL 'infinity'",
            "{P}mysql> CREATE USER '{U}'@'%' IDENTIFIED BY '{V}';",
            "{P}+ mysqldump -h db.internal -u {U} -p{V} --single-transaction app",
        ])  # fmt: skip
        if "password={V}" in t or "Password={V}" in t:
            pw = pw.replace(";", "").replace("&", "")
        if "'{V}'" in t:
            pw = pw.replace("'", "")
        s = {"U": (user, None, False), "V": (pw, kind, False)}
        return _fill(rng, t, s)
    if kind == "authorization":
        scheme = rng.choice(["Bearer", "Bearer", "Basic", "token", "Bearer"])
        if scheme == "Basic":
            cred = base64.b64encode(f"{rng.choice(_NAMES)}:{v_password(rng)}".encode()).decode()
        elif scheme == "token":
            cred = _r(rng, HEX, 40)
        else:
            cred = rng.choice(
                [_r(rng, ALNUM + "-._~+/", rng.randrange(20, 80)), v_jwt(rng), "ya29." + _r(rng, ALNUM + "_-", 120)]
            )
        t = rng.choice([
            "{P}curl -H 'Authorization: {S} {V}' https://api.example.com/v1/me",
            "{P}curl -H \"authorization: {S} {V}\" -H 'Accept: application/json' https://x.example.com",
            "{P}> GET /v1/me HTTP/1.1\\r\\n> Host: api.example.com\\r\\n> Authorization: {S} {V}\\r\\n",
            "{P}request headers: {'Host': 'api.example.com', 'Authorization': '{S} {V}', 'Accept': '*/*'}",
            '{"req":{"method":"GET","headers":{"authorization":"{S} {V}","user-agent":"{UA}"}}}',
            "{P}Proxy-Authorization: {S} {V}",
            "{P}http.request.header.authorization=[{S} {V}]",
            "{P}HTTP/1.1 headers Authorization={S} {V}, Connection=keep-alive",
            "Authorization: {S} {V}",
        ])  # fmt: skip
        return _fill(rng, t, {"S": (scheme, None, False), "V": (cred, kind, False)})
    if kind == "private_key":
        pem = v_pem(rng)
        style = rng.randrange(5)
        if style == 0:
            t = (
                '{"type":"service_account","project_id":"acme-prod","private_key":"{V}\\n","client_id":"'
                + str(rng.randrange(10**20, 10**21))
                + '"}'
            )
            return _fill(rng, t, {"V": (pem.replace("\n", "\\n"), kind, False)})
        if style == 1:
            t = '{"msg":"secret payload: {\\"tls.key\\": \\"{V}\\"}"}'
            return _fill(rng, t, {"V": (pem.replace("\n", "\\\\n"), kind, False)})
        if style == 2:
            return _fill(rng, '{P}TLS_KEY="{V}"', {"V": (pem.replace("\n", "\\n"), kind, False)})
        if style == 3:
            return _fill(rng, "{P}loaded key file:\n{V}\n", {"V": (pem, kind, False)})
        return _fill(rng, "tls.key: |\n    {V}", {"V": (pem.replace("\n", "\n    "), kind, False)})
    if kind == "azure_storage_key":
        key = base64.b64encode(rng.randbytes(64)).decode()
        t = rng.choice([
            "{P}AZURE_STORAGE_CONNECTION_STRING=DefaultEndpointsProtocol=https;AccountName=acme{PID};AccountKey={V};EndpointSuffix=core.windows.net",
            '{"storage":{"connectionString":"BlobEndpoint=https://acme.blob.core.windows.net/;AccountName=acme;AccountKey={V}"}}',
            "{P}az storage container list --account-name acme --account-key {V}",
        ])  # fmt: skip
        return _fill(rng, t, {"V": (key, kind, False)})
    if kind == "azure_connection_string":
        key = base64.b64encode(rng.randbytes(32)).decode()
        t = rng.choice([
            "{P}Endpoint=sb://acme-{PID}.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey={V};EntityPath=orders",
            '{"eventhub":"Endpoint=sb://hub.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey={V}"}',
        ])  # fmt: skip
        return _fill(rng, t, {"V": (key, kind, False)})
    if kind == "slack_webhook":
        t = rng.choice([
            '{"alerting":{"slack":{"webhook_url":"https://hooks.slack.com/services/{V}","channel":"#ops"}}}',
            "{P}POST https://hooks.slack.com/services/{V} status={STATUS}",
            "{P}SLACK_WEBHOOK_URL=https://hooks.slack.com/services/{V}",
        ])  # fmt: skip
        return _fill(rng, t, {"V": (v_slack_webhook_path(rng), kind, False)})
    raise KeyError(kind)


SPECIAL_TYPES = [
    "url_password",
    "authorization",
    "private_key",
    "azure_storage_key",
    "azure_connection_string",
    "slack_webhook",
]


# Access-log and multi-value lines: several positives per line, in formats built around addresses.
def _access_line(rng: random.Random) -> Sample:
    slots = _common_slots(rng)
    t = rng.choice([
        '{CLIENT} - - [{CLF}] "GET /api/v1/users?page=2 HTTP/1.1" {STATUS} 1532 "https://example.com/" "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"',
        '{CLIENT6} - - [{CLF}] "POST /v1/models/minilm/infer HTTP/2.0" {STATUS} 88 "-" "{UA}" rt={MS}',
        '{TS} sshd[{PID}]: Accepted publickey for deploy from {CLIENT} port 52144 ssh2: ED25519 SHA256:{B64S}',
        '{TS} haproxy[{PID}]: {CLIENT}:51234 [{CLF}] fe_https~ be_api/api-2 0/0/1/{MS}/{MS} {STATUS} 431 - - ---- 12/12/0/0/0 0/0 "GET /healthz HTTP/1.1"',
        '{"remote_addr":"{CLIENT}","x_forwarded_for":"{CLIENT2}, {CLIENT3}","request":"GET /x HTTP/1.1","status":{STATUS}}',
        '{TS} upstream [{CLIENT6B}]:8443 timed out after {MS}ms',
        'k8s event: Normal  Scheduled  pod/api-6d4cf56db6-x2x7k  Successfully assigned prod/api-6d4cf56db6-x2x7k to ip-10-0-3-17.ec2.internal, podIP {CLIENT}',
        '{SYSTS} {HOST} kernel: [UFW BLOCK] IN=eth0 OUT= MAC=00:16:3e:5e:6c:00:fe:ff:ff:ff:ff:ff:08:00 SRC={CLIENT} DST={CLIENT2} LEN=60 TOS=0x00 PROTO=TCP SPT=44512 DPT=22',
    ])  # fmt: skip
    slots["B64S"] = (_r(rng, B64, 43), None, False)
    slots["CLIENT2"] = (v_ipv4(rng), "ipv4", False)
    slots["CLIENT3"] = (v_ipv4(rng), "ipv4", False)
    six = v_ipv6(rng).split("%", 1)[0]
    slots["CLIENT6B"] = (six, "ipv6", False)
    return render(t, slots)


def _csv_line(rng: random.Random) -> Sample:
    line = Line()
    line.add(f"{rng.randrange(1, 99999)},")
    line.add(v_email(rng), "email").add(",")
    line.add(v_phone(rng), "phone").add(",")
    line.add(f"{rng.choice(_NAMES).capitalize()},")
    if rng.random() < 0.5:
        line.add(v_card(rng), "credit_card")
    else:
        line.add(v_iban(rng), "iban")
    line.add(",2026-11-28")
    return line.build()


def _negative_line(rng: random.Random, kind: str) -> Sample:
    value = n_value(rng, kind)
    key = rng.choice(_NEG_KEYS[kind])
    t = rng.choice([
        "{P}{K}={N} status={STATUS}", '{"level":"info","{K}":"{N}","msg":"ok"}', "{P}{K}: {N}", "{P}{'{K}': '{N}', 'n': 3}",
        "{N} processed in {MS}ms", "{P}done ({N})", "{P}[{N}]", "{P}saw {N}.", "{P}{K}=\"{N}\", next={N2}", "  {K}: \"{N}\"",
        "{P}{K}={N};", "{P}Wert {N} übernommen", "{P}<{K}>{N}</{K}>", "{K},{N},2026-11-28",
    ])  # fmt: skip
    slots: dict[str, Part] = {"K": (key, None, False), "N": (value, kind, True), "N2": (n_value(rng, kind), kind, True)}
    return _fill(rng, t, slots)


def generate(seed: int = 1337, per_type: int = 220, per_negative: int = 220) -> list[Sample]:
    """The held-out corpus: `per_type` lines per sensitive type and `per_negative` per look-alike kind."""
    rng = random.Random(seed)
    out: list[Sample] = []
    for kind, (gen, keys, free) in SECRET_TYPES.items():
        for _ in range(per_type):
            value = gen(rng)
            if free and rng.random() < 0.5:
                out.append(_free(rng, kind, value, FREE_TEMPLATES))
            else:
                out.append(_keyed(rng, kind, value, keys))
    for kind, gen in PII_TYPES.items():
        for _ in range(per_type):
            out.append(_free(rng, kind, gen(rng), PII_TEMPLATES, rng.choice(PII_KEYS[kind])))
    for kind in SPECIAL_TYPES:
        out.extend(_special(rng, kind) for _ in range(per_type))
    out.extend(_access_line(rng) for _ in range(per_type))
    out.extend(_csv_line(rng) for _ in range(per_type // 2))
    for kind in NEGATIVE_KINDS:
        out.extend(_negative_line(rng, kind) for _ in range(per_negative))
    rng.shuffle(out)
    return out


ALL_TYPES = list(SECRET_TYPES) + list(PII_TYPES) + SPECIAL_TYPES
