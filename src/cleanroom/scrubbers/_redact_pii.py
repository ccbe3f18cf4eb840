"""PII rules: emails, phone numbers, payment cards, US SSNs, IBANs, IPv4 and IPv6 addresses.

These have no literal prefix, so their precision rests on boundaries and validators: Luhn plus an issuer
prefix for cards, ISO 13616 mod-97 and the country's length for IBANs, SSA rules for SSNs, `ipaddress` for
IPv6, and context checks so version strings, timestamps, UUIDs, hashes and URL user names survive.
"""

from __future__ import annotations

import re

from cleanroom.scrubbers import _redact_validators as v
from cleanroom.scrubbers.log_rules import Rule, Span, _after_escape

# File extensions that look like top-level domains after an `@` (`icon@2x.png`).
_FILE_TLDS = frozenset(
    [
        "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "js", "mjs", "ts", "css", "map",
        "json", "yaml", "yml", "toml", "txt", "log", "md", "html", "htm", "xml", "csv", "py", "pyc",
        "so", "dll", "exe", "bin", "gz", "tgz", "zip", "tar", "whl", "jar", "class", "go", "rs", "rb",
        "java", "c", "h", "cc", "cpp", "hpp", "sh", "lock", "pem", "crt", "key"
    ]
)  # fmt: skip
_VERSION_CONTEXT = re.compile(
    r"\b(?:version|ver|release|build|revision|firmware|fw|sdk|oid)[\s:=\"'_-]*$|(?:==|~=|<=|>=|\^)$", re.I
)


_DROP_ASCII_NON_DIGITS = str.maketrans(dict.fromkeys(c for c in map(chr, range(128)) if not c.isdigit()))


def _digits(s: str) -> str:
    """The digits of `s` (`str.isdigit`); one `translate` for ASCII, 5x faster than a join per character."""
    if s.isascii():
        return s.translate(_DROP_ASCII_NON_DIGITS)
    return "".join(c for c in s if c.isdigit())


_WORD_ASCII = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")


# (also amounts: ISO 8583 field 4 `<field id="4" value="005968213618"/>` is a zero-padded amount)
_ID_KEY_BEFORE = re.compile(
    r"(?:id|account|acct|number|no|ref|value|amount|amt|total|balance)\\?[\"']?[ \t]*[:=][ \t]*\\?[\"']?$",
    re.IGNORECASE,
)


def _confirm_phone_intl(text: str, m: re.Match[str], span: Span) -> Span | None:
    value = text[span[0] : span[1]]
    start = span[0]
    if value.isdigit() and _SEED_OR_SERIAL_KEY.search(text, max(0, start - 24), start):
        return None  # `serial 0070248003182`, `seed=0049…`: not `00` + a country code
    if value.startswith("00") and start >= 2 and text[start - 1] in " -" and text[start - 2].isdigit():
        return None  # `7485 0085 4257`: one more group of a longer number (an account, a reference)
    if text[span[1] : span[1] + 1] == "-" and text[span[1] + 1 : span[1] + 2].isalnum():
        return None  # `00330-80000-00000-AA526` (a Windows product id): the dashed groups go on
    if span[1] < len(text) and text[span[1]] in _WORD_ASCII:
        return None  # `sha512:0039425972a9...`: digits that run into letters are part of a token. Checked
        # here, not as a lookahead: `(?![0-9A-Za-z_])` backtracks over every split of the digit groups
        # (1.4 -> 5.2 us per line holding a long number, measured)
    if value.startswith("00") and start >= 1 and text[start - 1] == ":":
        return None  # `arn:aws:iam::009238840501:role/x`: an account id, not `00` + a country code
    if value.startswith("00") and value.isdigit() and _ID_KEY_BEFORE.search(text, max(0, start - 24), start):
        return None  # `"accountId":"005026290701"`: a zero-padded id, not `00` + a country code
    if (
        value.startswith("00")
        and value.isdigit()
        and (
            (start >= 1 and text[start - 1] == "/")
            or (text[span[1] : span[1] + 1] == "." and text[span[1] + 1 : span[1] + 2].isalpha())
        )
    ):
        # a zero-padded id as a path segment (`/runs/0060791735`) or a host label
        # (`001506389885.dkr.ecr.us-east-1.amazonaws.com`, an AWS account id), not `00` + a country code
        return None
    digits = _digits(value.replace("(0)", ""))
    low, high = (10, 15) if value.startswith("00") else (8, 15)
    return span if low <= len(digits) <= high else None


def _confirm_phone_nanp(text: str, m: re.Match[str], span: Span) -> Span | None:
    """`415 555 0123` separated by spaces only is a phone number unless it is three columns of a row of
    numbers (an ALB log's `200 200 749 7084`: status codes and byte counts): another number right before
    it or after it, one space away."""
    start, end = span
    value = text[start:end]
    spaced = value[:1].isdigit() and value[3:4] == " " and value[7:8] == " "
    if spaced and (
        (start >= 2 and text[start - 1] == " " and text[start - 2].isdigit())
        or (text[end : end + 1] == " " and text[end + 1 : end + 2].isdigit())
    ):
        return None
    return span


def _confirm_card_percent_encoded(text: str, m: re.Match[str], span: Span) -> Span | None:
    digits = text[span[0] : span[1]].replace("%20", "").replace("+", "")
    return span if v.card_iin_ok(digits) and v.luhn_ok(digits) else None


def _confirm_nanp_percent_encoded(text: str, m: re.Match[str], span: Span) -> Span | None:
    """Only what the plain NANP rule cannot read: a number with an encoded space or bracket."""
    value = text[span[0] : span[1]].lower()
    if "%20" not in value and "%28" not in value:
        return None
    digits = _digits(value.replace("%20", "").replace("%28", "").replace("%29", "").replace("%2b", ""))
    return span if len(digits) in (10, 11) else None


def _confirm_phone_encoded(text: str, m: re.Match[str], span: Span) -> Span | None:
    digits = _digits(text[span[0] : span[1]].lower().replace("%20", " ").replace("%2b", "+"))
    return span if 8 <= len(digits) <= 15 else None


def _continues_grouped_id(text: str, start: int) -> bool:
    """The digits follow `XX99 ` / `2506-`: a 4-character group holding a digit, joined by the separator
    the number itself uses, so they are the middle of a longer grouped identifier (an IBAN-like reference),
    not a card on its own (`card 4111 ...` is preceded by a word without digits)."""
    if start < 5 or text[start - 1] not in " -" or text[start + 4 : start + 5] != text[start - 1]:
        return False
    group = text[start - 5 : start - 1]
    if not (group.isascii() and group.isalnum()) or not any(c.isdigit() for c in group):
        return False
    # (not a timestamp's fraction: `…31.890Z 6525 7467 …` is a time, then a card)
    return start == 5 or not (text[start - 6].isalnum() or text[start - 6] in ".:")


# Keys whose numbers are process, thread or stream positions, never cards (`[pid 5:tid 374949614257091]`)
_COUNTER_KEY = re.compile(r"(?:\b|_)(?:pid|tid|thread(?:[_ ]?id)?|inode|offset|seq|lsn|xid|txid)[ \t]*[:=#]?[ \t]*$",
                          re.IGNORECASE)  # fmt: skip


# Keys whose numbers are random seeds or hardware serial numbers, never cards or phones: `seed=…`,
# `torch.manual_seed(…)`, TGI's `seed: Some(…)`, `'seed': …`, nvidia-smi/DCGM `serial 1320321009546` (a
# 64-bit seed has 19-20 digits, Luhn-valid one time in ten, often with an issuer's first digits)
_SEED_OR_SERIAL_KEY = re.compile(
    r"(?:\b|_)(?:seed|serial(?:[_ -]?(?:no|num|number))?)\\?[\"']?[ \t]*(?:[:=#(]|:[ \t]*Some\()?[ \t]*\\?[\"']?$",
    re.IGNORECASE,
)


# Google Vertex AI resource names hold 16-19 digit ids (`projects/…/endpoints/4539578763621486123`), as do
# their `*_id` fields: never cards
_RESOURCE_ID_BEFORE = re.compile(
    r"(?:/(?:endpoints|models|deployedModels|operations|customJobs|batchPredictionJobs|trainingPipelines|"
    r"hyperparameterTuningJobs|pipelineJobs|tuningJobs|indexEndpoints|indexes|datasets|featurestores|"
    r"tensorboards|studies|notebookRuntimes)/"
    r"|(?:\b|_)(?:endpoint|deployed[_-]?model|model|job|operation|pipeline|index)[_ -]?id"
    r"\\?[\"']?[ \t]*[:=][ \t]*\\?[\"']?)$",
    re.IGNORECASE,
)


# Keys whose numbers are product codes (EAN-13/GTIN-14/UPC barcodes pass Luhn one time in ten and start
# with the digits of an issuer) or the 64-bit ids of network flows and log records (Suricata `flow_id`),
# never cards. Also in JSON and XML attribute form (`"flow_id":4227…`, `ean="400…"`).
_NOT_A_CARD_KEY = re.compile(
    r"(?:\b|_)(?:ean(?:13|8)?|gtin(?:14|13|12)?|upc(?:[_-]?a)?|isbn(?:13)?|barcode|sku|"
    # (`trace`, `span`, `parent`: Datadog writes its 64-bit trace and span ids in decimal, `dd.trace_id=4…`)
    r"(?:flow|session|conn|connection|event|record|correlation|trace|span|parent)[_ .-]?id)"
    r"\\?[\"']?[ \t]*[:=#>]?[ \t]*\\?[\"']?$",
    re.IGNORECASE,
)


def _confirm_card(text: str, m: re.Match[str], span: Span) -> Span | None:
    start, end = span
    value = text[start:end]
    if _continues_grouped_id(text, start):
        return None
    if value.isdigit() and (
        _COUNTER_KEY.search(text, max(0, start - 16), start)
        or _NOT_A_CARD_KEY.search(text, max(0, start - 24), start)
        or _SEED_OR_SERIAL_KEY.search(text, max(0, start - 24), start)
        or _RESOURCE_ID_BEFORE.search(text, max(0, start - 32), start)
    ):
        return None
    # A grouped number may have taken one more short group (`4111 1111 1111 1111 12 items`): drop trailing
    # groups until the digits fit an issuer's length, as long as at least 13 digits remain. Not a 3-digit
    # group after 4-4-4-4: that is the 19-digit layout (UnionPay, Maestro), one number whose Luhn check
    # failed; its first 16 digits pass Luhn one time in ten and are no card of their own.
    while True:
        digits = _digits(value)
        if v.card_iin_ok(digits) and v.luhn_ok(digits):
            return (start, start + len(value))
        cut = max(value.rfind(" "), value.rfind("-"))
        if cut < 0 or len(digits) <= 13 or (len(digits) == 19 and len(value) - cut - 1 == 3):
            return None
        value = value[:cut]


def _confirm_ssn(text: str, m: re.Match[str], span: Span) -> Span | None:
    d = _digits(text[span[0] : span[1]])
    return span if len(d) == 9 and v.ssn_ok(d[:3], d[3:5], d[5:]) else None


def _confirm_iban(text: str, m: re.Match[str], span: Span) -> Span | None:
    start, end = span
    value = text[start:end]
    # Print form groups with spaces, some exports with dashes; one separator per IBAN. Lowercase IBANs
    # (`de89 3704 ...`, typed into forms, lowercased by normalisers) are checked as their uppercase.
    sep = "-" if "-" in value else " "
    if sep == "-" and " " in value:
        value = value[: value.index(" ")]
    # A trailing separated word may have been taken as one more group: drop groups until it fits.
    while True:
        if v.iban_ok(value.replace("-", " ").upper()):
            return (start, start + len(value))
        cut = value.rfind(sep)
        if cut < 0:
            return None
        value = value[:cut]


def _ipv4_after_colon_is_tail(text: str, colon: int) -> bool:
    j = colon
    lo = max(0, colon - 40)
    while j > lo and text[j - 1] in _HEX_OR_COLON:
        j -= 1
    run = text[j : colon + 1]
    return "::" in run or run.count(":") >= 2


def _confirm_ipv6(text: str, m: re.Match[str], span: Span) -> Span | None:
    start, end = span
    if start > 0:
        prev = text[start - 1]
        if prev in _WORD_ASCII and not _after_escape(text, start):
            # the match began in the hex tail of a key (`remote:2001:db8::1` matched from `e:`); the address
            # follows the key's colon. Anything else inside a word (`Name::ab`, `sha1:ab:cd`) is no address
            colon = text.find(":", start, end)
            if colon < 0 or any(c not in _HEX_CHARS for c in text[start:colon]):
                return None
            start = colon + 1
            if not v.ipv6_ok(text[start:end]) or _ends_colon_hex_run(text, colon):
                return None
            return (start, end)
        if prev == ":" and _ends_colon_hex_run(text, start - 1):
            return None
    return (start, end) if v.ipv6_ok(text[start:end]) else None


_H = "[0-9A-Fa-f]"
# Everything up to and including the last character that cannot be in a local part: where the match ends,
# the local part begins (one possessive, linear match instead of a walk back one character at a time).
_UP_TO_LOCAL_PART = re.compile(r"(?:[A-Za-z0-9._%+-]*+[^A-Za-z0-9._%+-])*+")
_LOCAL_PART_MAX = 64


def _closing_quote(text: str, at: int) -> str:
    """The quote that ends at `at` as written: `"`, `\\"` (any number of backslashes), `""`, `&quot;`,
    `&#34;`; "" when none does."""
    if text[at - 1] == ";":
        return next((q for q in ("&quot;", "&#34;") if text.startswith(q, at - len(q))), "")
    k = 0
    while k < at - 1 and text[at - 2 - k] == "\\":
        k += 1
    if k:
        return text[at - 1 - k : at]
    return '""' if text[at - 2] == '"' else '"'


def _widen_email(text: str, m: re.Match[str], span: Span) -> Span:
    """The regex starts at '@' (a literal: fast in `re`); the local part is read backwards here."""
    at, end = span
    lo = max(0, at - _LOCAL_PART_MAX)
    start = _UP_TO_LOCAL_PART.match(text, lo, at).end() if at > lo else at  # type: ignore[union-attr]
    if start == at and at >= 3 and text[at - 1] in '";':
        # a quoted local part (RFC 5322 §3.4.1): `"jane doe"@example.com`, its quotes escaped as the
        # value's format escapes them: `\"john smith\"@` (JSON, YAML, logfmt; `\\\"` nested), `&quot;`
        # (XML attributes), `""` (CSV)
        quote = _closing_quote(text, at)
        if quote:
            opening = text.rfind(quote, lo, at - len(quote))
            inner = text[opening + len(quote) : at - len(quote)] if opening >= 0 else ""
            if inner and "\n" not in inner and "\\" not in inner and '"' not in inner:
                return (opening, end)
    if start > lo and text[start - 1] == "=" and "." in text[start:at]:
        # `=` is left out of a local part so `email=jane@x` keeps its key, but a VERP bounce address holds
        # one (`list+jane=example.com@bounces.example.org`: the recipient after `=`, `+` tagging the local
        # part); there the tagged part before `=` is the same address (bounded: one more match in 64 chars)
        tagged = _UP_TO_LOCAL_PART.match(text, lo, start - 1).end()  # type: ignore[union-attr]
        if "+" in text[tagged : start - 1]:
            start = tagged
    if start >= 1 and text[start - 1] == "\\" and text[start : start + 1] in ("u", "U"):
        start += 5  # `\u0022jane@...`: the escape is not part of the address
    while start < at and not text[start].isalnum():
        start += 1  # a local part starts with a letter or digit
    return (start, end)


# A Go module path and version (`go: verifying github.com/x/testify@v2.8.25-alpha.fdbfddd: checksum
# mismatch`): a pre-release ending in letters reads as a top-level domain
_MODULE_VERSION = re.compile(r"@v\d{1,4}\.\d{1,6}\.\d{1,6}[-+.]")


def _confirm_email(text: str, m: re.Match[str], span: Span) -> Span | None:
    start, end = span
    at = m.start()
    if start == at:
        return None
    if text.startswith("@v", at) and _MODULE_VERSION.match(text, at):
        return None
    if text[end - 1] != "]":  # `jane@[192.0.2.1]`: an address literal has no top-level domain
        tld = text[text.rindex(".", at, end) + 1 : end].lower()
        if tld in _FILE_TLDS:
            return None
    # `scheme://user@host` or `scheme://user:pass@host`: the part before `@` is URL userinfo, not a mailbox.
    line_start = text.rfind("\n", 0, start) + 1
    scheme = text.rfind("://", line_start, start)
    if scheme >= 0 and not any(c in text[scheme + 3 : start] for c in "/?#& \t\"'<>,;"):
        return None
    if text[start:at] == "git" and text[end : end + 1] == ":":
        return None  # scp-style `git@github.com:org/repo.git`
    if start >= 1 and text[start - 1] == "/" and _ORACLE_USER_BEFORE.search(text, max(0, start - 160), start):
        return None  # `jdbc:oracle:thin:scott/tiger@db:1521:ORCL`: a password and a host, not a mailbox
    if _UUID_LOCAL.fullmatch(text, start, at):
        return None  # `<1d51fe35-…@mx.example.com>`: a generated id (Message-ID, bounce address), no one's mailbox
    if _in_message_id(text, start):
        return None  # `Message-ID: <CAF=x1@mail.gmail.com>`, `In-Reply-To:`, `References:`: RFC 5322 §3.6.4 ids
    if _CALL_ID_KEY.search(text, max(0, start - 24), start):
        return None  # SIP `Call-ID: a84b4c76e66710@pc33.example.com` (RFC 3261 §20.8): a dialog id, no mailbox
    return (start, end)


def _in_message_id(text: str, start: int) -> bool:
    """The address-like text opens a `<…>` (its id may hold `=`, `$`, which end a local part) that follows
    a Message-ID, In-Reply-To or References key."""
    lt = text.rfind("<", max(0, start - _LOCAL_PART_MAX), start)
    if lt < 0 or any(c in text[lt + 1 : start] for c in " \t\n>,;\"'"):
        return False
    return _MESSAGE_ID_KEY.search(text, max(0, lt - 200), lt) is not None


_ORACLE_USER_BEFORE = re.compile(
    r"(?:oracle:(?:thin|oci8?):|sqlplus(?:[ \t]+-[A-Za-z]+)*[ \t]+|userid=)[\"']?[\w$#.]{1,128}/$", re.I
)
_UUID_LOCAL = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# the id list of `References:` may hold several `<…>` before this one
# SIP's `Call-ID:` header (and `callid=`/`"call_id":` in PBX logs) right before the address-like text
_CALL_ID_KEY = re.compile(r"call[_-]?id\\?[\"']?[ \t]*[:=][ \t]*\\?[\"']?<?$", re.IGNORECASE)
_MESSAGE_ID_KEY = re.compile(r"(?:message-?id|in-reply-to|references|msg-?id)\\?[\"']?[ \t]*[:=][^\n]*$", re.IGNORECASE)


_PRODUCT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


def _after_product_token(text: str, start: int) -> bool:
    """`Chrome/120.0.0.0`, `Edg/120.0.0.0`: a `product/version` token (RFC 9110 §10.1.5 User-Agent), i.e.
    a word starting with a letter, itself at the start of a token, right before `/`. A path segment
    (`/hosts/10.0.0.5`, `://10.0.0.5`) is preceded by `/` and stays an address."""
    if start < 2 or text[start - 1] != "/":
        return False
    i = start - 1
    lo = max(0, i - 40)
    while i > lo and text[i - 1] in _PRODUCT_CHARS:
        i -= 1
    if i == start - 1 or not text[i].isalpha():
        return False
    if any(c.isdigit() or c == "." for c in text[i : start - 1]):
        return False  # a host name (`worker-3/10.0.1.23`, kubectl's `Node: ip-10-0-1-23.ec2.internal/10.0.1.23`)
    return i == 0 or text[i - 1] in " \t(\"'[;,"


_HEX_OR_COLON = frozenset("0123456789abcdefABCDEF:")
_HEX_CHARS = frozenset("0123456789abcdefABCDEF")


def _ends_colon_hex_run(text: str, colon: int) -> bool:
    """The `:` at `colon` ends a run of colon-separated hex groups (`::ffff:`, `fe80::1:`, a MAC address's
    `00:1a:`), not a key (`ip:`, `LocalAddr:`, `node:`): the address after it is a tail of that run."""
    j = colon
    lo = max(0, colon - 40)
    while j > lo and text[j - 1] in _HEX_OR_COLON:
        j -= 1
    run = text[j : colon + 1]
    if "::" in run or run.count(":") >= 2:
        return True
    # one group before the colon: a key only if it is the hex tail of a longer word (`node:`, `remote:`)
    if j == colon:
        return False  # no hex before the colon: a key (`addr:`)
    return not (j > 0 and text[j - 1] in _WORD_ASCII)


_HOST_REST = re.compile(r"(?:\.[A-Za-z0-9-]{1,63}){1,8}")
# Kubernetes DNS for pods: `<address, dashed>.<namespace>.pod.<cluster domain>` (the name is made from the
# address alone; a pod's own host name is its pod name)
_POD_DNS = re.compile(r"\.[A-Za-z0-9-]{1,63}\.pod\.", re.IGNORECASE)
_INTERNAL_DOMAIN = re.compile(r"\.(?:internal|local|localdomain|lan|intranet|corp|home\.arpa)$", re.IGNORECASE)


def _confirm_dashed_ipv4(text: str, m: re.Match[str], span: Span) -> Span | None:
    if m.group("p").startswith("ip-"):
        return None  # EC2's private DNS name (`ip-10-0-1-23.ec2.internal`): the node's own host name
    octets = text[span[0] : span[1]].split("-")
    if len(octets) != 4 or any(int(o) > 255 or (len(o) > 1 and o[0] == "0") for o in octets):
        return None
    if _POD_DNS.match(text, span[1]):
        return span  # a pod's DNS record (`10-0-3-7.default.pod.cluster.local`) is its address, not a host name
    domain = _HOST_REST.match(text, span[1])
    if domain is not None and _INTERNAL_DOMAIN.search(domain.group()):
        return None  # `10-0-3-7.ec2.internal`, `….svc.cluster.local`: a private host's name, not a client's
    return span


def _confirm_ipv4(text: str, m: re.Match[str], span: Span) -> Span | None:
    value = text[span[0] : span[1]]
    octets = value.split(".")
    # Zero-padded octets are an address only in the fixed-width form (`010.001.002.003`, printf `%03d`,
    # some firewall and Windows logs): all four three digits. A mixed padding (`1.02.3.04`) is a version
    # or a section number. docs/logging.md states this.
    padded = all(len(octet) == 3 for octet in octets)
    for octet in octets:
        if int(octet) > 255 or (len(octet) > 1 and octet[0] == "0" and not padded):
            return None
    # after `key:` (`ip:10.0.0.5`, Go's `{LocalAddr:10.0.0.5:80}`) it is an address; after `::ffff:` the
    # tail of an IPv6 one (that rule's)
    if span[0] > 0 and text[span[0] - 1] == ":" and _ipv4_after_colon_is_tail(text, span[0] - 1):
        return None
    before = text[max(0, span[0] - 24) : span[0]]
    if _VERSION_CONTEXT.search(before) or _after_product_token(text, span[0]):
        return None
    return span


# A `\u0022`-style escape right before a value (System.Text.Json escapes quotes so in nested JSON) ends
# the escape, not a word: the lookbehinds that keep numbers from starting mid-word accept it. Written as a
# nested lookbehind (`(?<!(?<!ESC_HEAD)\w\d)`): +0.4 us on a line where the card rule runs, against +1.1 us
# for an alternation of two lookbehinds (measured, CPython 3.11).
# Any `\uXXXX`, not only U+00xx: JSON with ensure_ascii writes CJK text as `\u306f` and a card, SSN or IBAN
# follows it with no space (`\u756a\u53f7\u306f4111111111111111`)
_ESC_HEAD = r"\\u[0-9A-Fa-f]{3}"  # the escape up to its last hex digit, which the lookbehind's class sees
_NUM_GUARD = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.+-"


# A national-format number (`(020) 7946 0958`, `030 12345678`, `06 12 34 56 78`) has no shape of its own
# that a log's other numbers lack; right after a phone-ish key it is a phone number.
_PHONE_KEYS = (
    r"(?:tele?phone|phone|tel|mobile|cell(?:phone)?|fax|msisdn|whatsapp|sms|(?:contact|callback)[ _-]?number)"
    r"(?:[ _-]?(?:no|num|number|nr))?"
)
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_DATE_LIKE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4}")


def _confirm_keyed_phone(text: str, m: re.Match[str], span: Span) -> Span | None:
    """7-15 digits that are not a date, a time or a dotted version/address."""
    value = text[span[0] : span[1]].rstrip(" \t-.")
    digits = sum(ch.isdigit() for ch in value)
    if not 7 <= digits <= 15 or _DATE_LIKE.search(value) or (value.count(".") >= 2 and " " not in value):
        return None
    return (span[0], span[0] + len(value))


# Letters beyond ASCII, without the punctuation blocks (general, CJK, fullwidth) that end an address in text
_NON_ASCII_LETTERS = "\u00c0-\u1fff\u2070-\u2fff\u3040-\ufeff\uff10-\uff19\uff21-\uff3a\uff41-\uff5a\uff66-\uffdc"
_EMAIL_LOCAL = "A-Za-z0-9._%+\\-" + _NON_ASCII_LETTERS
_EMAIL_LOCAL_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-"
_IDN = "A-Za-z0-9" + _NON_ASCII_LETTERS
_IDN_ALPHA = "A-Za-z" + _NON_ASCII_LETTERS


def _confirm_spelled_email(text: str, m: re.Match[str], span: Span) -> Span | None:
    local = m.group("local")
    if any(c in "._%+-" or c.isdigit() for c in local) or m.group().lower().count(" dot ") >= 2:
        return span
    return None


def _confirm_non_ascii(text: str, m: re.Match[str], span: Span) -> Span | None:
    """Only what the ASCII email rule cannot see: an address with a non-ASCII character."""
    return None if text[span[0] : span[1]].isascii() else span


def _confirm_card_dotted(text: str, m: re.Match[str], span: Span) -> Span | None:
    digits = _digits(text[span[0] : span[1]])
    return span if v.card_iin_ok(digits) and v.luhn_ok(digits) else None


_CARD_GROUPS = (
    r"\d{3}(?:-\d{4}-(?:\d{4}-\d{4}(?:-\d{1,3})?|\d{5})| \d{4} (?:\d{4} \d{4}(?: \d{1,3})?|\d{5})"
    r"|[ -]\d{6}[ -]\d{4,5}|\d{9,15}"
    # two spaces between groups (fixed-width reports, text pulled out of PDFs)
    r"|  \d{4}  (?:\d{4}  \d{4}(?:  \d{1,3})?|\d{5})|  \d{6}  \d{4,5})"
)
_SSN_GROUPS = r"(?:\d{2}-\d{2}-\d{4}|\d{2} \d{2} \d{4})"
_IBAN_BODY = r"[A-Z]\d{2}(?:[ -]?[A-Z0-9]{4}){2,7}(?:[ -]?[A-Z0-9]{1,4})?"
_IBAN_HEX_COUNTRIES = "|".join(sorted(c.lower() for c in v.IBAN_LENGTHS if set(c.lower()) <= set("abcdef")))
_IPV4_TAIL = r"\d{0,2}(?:\.\d{1,3}){3}"

# `@` and `.` escaped: JSON's `\u0040`/`\u002e` (System.Text.Json and other encoders that escape HTML-sensitive
# characters), HTML's `&#64;`/`&#x40;`/`&#46;` (the tenth corpus: 147 of 888 addresses)
_ESCAPED_AT = r"(?:\\u0040|&#64;|&#x40;)"
_ESCAPED_DOT = r"(?:\.|\\u002e|&#46;|&#x2e;)"
# The local part read backwards: local-part characters and escaped dots (`nguyen\u002echidi\u0040…`), one
# unit a step, at most 64 units (linear: a regex search ending at `@` would retry from every start)
_LOCAL_ESCAPED_DOTS = ("\\u002e", "\\u002E", "&#46;", "&#x2e;", "&#x2E;")


def _widen_escaped_email(text: str, m: re.Match[str], span: Span) -> Span:
    at, end = span
    start = at
    for _ in range(_LOCAL_PART_MAX):
        # (the escape first: `\u002e` ends in local-part characters)
        dot = next((d for d in _LOCAL_ESCAPED_DOTS if text.endswith(d, 0, start)), None)
        if dot is not None:
            start -= len(dot)
        elif start > 0 and text[start - 1] in _EMAIL_LOCAL_CHARS:
            start -= 1
        else:
            break
    while start < at and not text[start].isalnum():
        start += 1
    if start >= 1 and text[start - 1] == "\\" and text[start : start + 1] in ("u", "U"):
        start += 5  # `\u0022jane\u0040…`: an escape (a quote) is not part of the address
    return (start, end)


def _confirm_escaped_email(text: str, m: re.Match[str], span: Span) -> Span | None:
    start, end = span
    if start == m.start():
        return None
    tld = re.split(_ESCAPED_DOT, text[m.end("d") : end].lower())[-1]
    return None if tld in _FILE_TLDS else span


# Patterns start with a character class or literal so `re` can skip ahead quickly; boundaries that would
# need a leading lookbehind sit right after the first character or in `left_guard`.
PII_RULES: tuple[Rule, ...] = (
    Rule("email", "EMAIL",
         r"@(?:(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}(?![A-Za-z0-9-])"
         r"|\[(?:\d{1,3}\.){3}\d{1,3}\])",
         ("@",), priority=40, confirm=_confirm_email, widen=_widen_email,
         hint=r"[A-Za-z0-9._%+\x22;-]@(?:(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}"
         r"|\[\d{1,3}\.)"),
    # Addresses written to dodge harvesters: `jane [at] example [dot] com`, `jane(at)example.com`,
    # `jane.doe at example dot com` (the spelled-out form only with a dotted/digit local part or two `dot`s,
    # so `look at the dot com` stays prose)
    Rule("email-obfuscated", "EMAIL",
         r"[a-z0-9._%+-]{1,64}[ \t]*(?:[\[({<]at[\])}>])[ \t]*"
         r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.|[ \t]*[\[({<]dot[\])}>][ \t]*)){1,8}[a-z]{2,24}"
         r"(?![a-z0-9-])",
         ("[at]", "(at)", "{at}", "<at>"), caseless=True, priority=40, left_guard=_EMAIL_LOCAL_CHARS,
         hint=r"[\[({<]at[\])}>]"),
    Rule("email-spelled-out", "EMAIL",
         r"(?P<local>[a-z0-9._%+-]{1,64})[ \t]+at[ \t]+(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?[ \t]+dot[ \t]+){1,8}"
         r"[a-z]{2,24}(?![a-z0-9-])",
         (" dot ",), caseless=True, priority=40, confirm=_confirm_spelled_email, left_guard=_EMAIL_LOCAL_CHARS,
         hint=r"[ \t]at[ \t][^\n]*[ \t]dot[ \t]"),
    # `email=jane.doe%40example.com` in a query string or form body
    # Internationalised addresses (`jöhn@exämple.de`, RFC 6531): the rule above is ASCII; this one runs only
    # where the prefilter saw a non-ASCII byte next to an `@`
    Rule("email-international", "EMAIL",
         "[" + _EMAIL_LOCAL + "]{1,64}@(?:[" + _IDN + "](?:[" + _IDN + "-]{0,61}[" + _IDN + "])?\\.){1,8}"
         "[" + _IDN_ALPHA + "]{2,24}(?![" + _IDN + "-])", ("@",), priority=40, confirm=_confirm_non_ascii,
         left_guard=_EMAIL_LOCAL_CHARS,
         hint=r"[\x80-\xff][^\n]*@|@[^\n]*[\x80-\xff]"),
    Rule("email-escaped", "EMAIL",
         _ESCAPED_AT + r"(?P<d>)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?" + _ESCAPED_DOT + r"){1,8}[a-z]{2,24}"
         r"(?![a-z0-9-])",
         ("\\u0040", "&#64;", "&#x40;"), caseless=True, priority=40, confirm=_confirm_escaped_email,
         widen=_widen_escaped_email),
    Rule("email-percent-encoded", "EMAIL",
         r"%40(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}(?![A-Za-z0-9-])",
         ("%40",), priority=40, confirm=_confirm_email, widen=_widen_email),
    # `phone=%2B44%2020%207946%200958` in a query string or form body: `+` and spaces percent-encoded
    Rule("phone-percent-encoded", "PHONE",
         r"%2b[1-9]\d{0,2}(?:(?:%20|[.-])?(?:\(0\)|%280%29))?(?:(?:%20|[.-])?\d{1,5}+){2,6}+(?![0-9a-z_])",
         ("%2b",), caseless=True, priority=40,
         confirm=_confirm_phone_encoded, left_guard=_ALNUM + "%"),
    Rule("phone-nanp", "PHONE",
         r"(?:(?:\+1|001|1)[ .-]?)?(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}"
         r"(?:[ ]?(?:x|ext\.?)[ ]?\d{1,6})?(?![0-9A-Za-z_]|[.-]\d)", priority=40, left_guard=_NUM_GUARD,
         confirm=_confirm_phone_nanp),
    Rule("phone-international", "PHONE",
         r"(?:\+|00)[1-9]\d{0,2}(?:[ .-]?\(0\))?(?:[ .-]?\(?\d{1,5}+\)?){2,6}+(?!\d)",
         priority=40, confirm=_confirm_phone_intl, left_guard=_NUM_GUARD),
    Rule("phone-after-key", "PHONE",
         # right after the key (`phone: x`, `"mobile": "x"`), or a few words on and after `to`/`at`/`on`
         # (`sms gateway: delivered to x`, `call me at x`)
         _PHONE_KEYS + r"(?:\.?[ \t]*(?:\\?[\"'`])?[ \t]*(?:[:=>]|is|#)?[ \t]*(?:\\?[\"'`])?[ \t]*"
         r"|(?:[ \t:]+[a-z]+){0,3}[ \t]+(?:to|at|on)[ \t]+)"
         r"(?P<v>\+?\(?\d[\d \t()./-]{5,24}\d)(?![\d])",
         ("phone", "tel", "mobile", "cell", "fax", "msisdn", "whatsapp", "sms", "number"), caseless=True,
         priority=39, confirm=_confirm_keyed_phone, left_guard=_ALNUM),
    # National formats with no key and no country code, in the groupings their numbering plans print:
    # French `06 12 34 56 78` / `01.23.45.67.89`, UK `020 7946 0958` / `07700 900123`, German
    # `030 12345678` / `0151 23456789`, Japanese `03-1234-5678` / `090-1234-5678`, Australian and
    # Brazilian area codes in brackets `(02) 9876 5432` / `(11) 91234-5678`, Australian mobiles
    # `0412 345 678`. A trunk `0` then a non-zero digit; the numbering plan's group sizes
    Rule("phone-national", "PHONE",
         r"(?<![0-9A-Za-z_.+-])(?<!\d[ .-])"
         r"(?:0[1-9](?:(?: \d{2}){4}|(?:\.\d{2}){4})|0[1-9]\d{1,3} \d{3,4} \d{4}|0[1-9]\d{1,4} \d{6,8}"
         r"|0[1-9]\d{0,2}-\d{3,4}-\d{4}|\(0?[1-9]\d?\) ?\d{4,5}[ -]\d{4}|04\d{2} \d{3} \d{3})"
         # not the middle of a longer grouped number (`5135 0155 3317 9801`, an IBAN's groups)
         r"(?![0-9A-Za-z_]|[.-]\d| \d)", priority=40,
         # a plain lookbehind boundary (no escape exception: `\u0022020 7946 0958` is missed) that the hint
         # can hold: the shapes themselves as the hint cost every line's scan 0.45 us (digit classes on
         # every digit), this superset ~0.07 us
         hint=r"(?:^|[^0-9A-Za-z_.+-])(?:0[1-9][0-9 .-]{7,12}[0-9]|\(0?[1-9][0-9]?\) ?[0-9]{4})"),
    Rule("payment-card", "CREDIT_CARD",
         # 4-4-4-4 with an optional 1-3 digit tail (17-19 digits: Visa, Maestro, UnionPay), 4-4-5 (13-digit
         # Visa), 4-6-4/5 (Amex, Diners), or 13-19 contiguous digits. The first group's `\d{3}` is factored
         # out of the alternatives: 20% faster than the unfactored form on lines with long numbers.
         r"\d(?<!(?<!" + _ESC_HEAD + r")[A-Za-z0-9.+-]\d)" + _CARD_GROUPS + r"(?![A-Za-z0-9]|[.-]\d)",
         priority=45, confirm=_confirm_card),
    # `4111.1111.1111.1111`: the dotted grouping some UIs and exports use (dots are excluded above, where they
    # would let versions and addresses in); exactly four groups of four, Luhn and issuer checked
    Rule("payment-card-dotted", "CREDIT_CARD", r"\d{4}\.\d{4}\.\d{4}\.\d{4}(?![A-Za-z0-9_]|\.\d)", priority=45,
         confirm=_confirm_card_dotted, left_guard=_NUM_GUARD),
    Rule("us-ssn", "SSN",
         r"\d(?<!(?<!" + _ESC_HEAD + r")[\w.+-]\d)" + _SSN_GROUPS + r"(?![\w]|[.-]\d)",
         priority=45, confirm=_confirm_ssn),
    Rule("us-ssn-context", "SSN",
         # `ssn=\`523481766\``, `the ssn is 523481766`, `<ssn>523481766</ssn>` (grid cause 4, 5)
         r"(?:ssn|social[_ -]?security)(?:[_ -]?(?:number|num|no|nr))?(?:\\?[\"'`])?[ \t]*#?(?:[:=>]|is)?[ \t]*"
         r"(?:\\?[\"'`])?"
         r"(?P<v>\d{9})(?!\d)", ("ssn", "social"), caseless=True, priority=45, confirm=_confirm_ssn,
         anchor=r"(?:ssn|social)"),
    Rule("iban", "IBAN",
         r"[A-Z](?<!(?<!" + _ESC_HEAD + r")[A-Za-z0-9][A-Z])" + _IBAN_BODY + r"(?![A-Za-z0-9])",
         priority=45, confirm=_confirm_iban),
    # Lowercase IBANs: the boundary is a plain lookbehind, without the escape exception the engine's left
    # guards make (`\u0022de89...` is missed), so the prefilter hint can hold it: a hint accepting the
    # escapes cost every line's scan 0.4 us, a country-code alternation 0.45 us. The hint's first two
    # letters: a non-hex letter, or one of the six codes written in hex letters, so a hex id fires the
    # rule ~1% of the time instead of 5.5% (each such line cost 7 us); the country is checked in confirm
    Rule("iban-lowercase", "IBAN",
         r"[a-z](?<![A-Za-z0-9][a-z])[a-z]\d{2}(?:[ -]?[a-z0-9]{4}){2,7}(?:[ -]?[a-z0-9]{1,4})?(?![A-Za-z0-9])",
         priority=45, confirm=_confirm_iban,
         hint=r"(?:^|[^A-Za-z0-9])(?:[a-z][g-z]|[g-z][a-z]|" + _IBAN_HEX_COUNTRIES + r")\d{2}[ -]?[a-z0-9]{4}"
         r"[ -]?[a-z0-9]{4}"),
    Rule("ipv4", "IPV4", r"\d(?<!(?<!" + _ESC_HEAD + r")[\w.]\d)" + _IPV4_TAIL + r"(?![\w]|\.\d)", priority=40,
         confirm=_confirm_ipv4),
    Rule("ipv6", "IPV6",
         rf"(?:(?:{_H}{{1,4}}:){{7}}{_H}{{1,4}}|(?:{_H}{{1,4}}(?::{_H}{{1,4}}){{0,6}})?::"
         rf"(?:(?:{_H}{{1,4}}:){{0,6}}(?:\d{{1,3}}(?:\.\d{{1,3}}){{3}}|{_H}{{1,4}}))?)(?:%[A-Za-z0-9_.-]+)?"
         # Apache's `[client 2001:db8::1:52341]` appends the port with a bare colon: after a 5-digit group, a
         # full 8 groups or an IPv4 tail, `:` and 4-5 digits cannot be part of the address, so it ends there
         r"(?:(?=:\d{4,5}(?![\w:.]))|(?![\w:]|\.\w))", priority=40, confirm=_confirm_ipv6, left_guard="."),
    # Cards in a query string or form body with `%20` or `+` between the groups (`?card=4111%201111%20…`,
    # `card=4111+1111+1111+1111`)
    Rule("payment-card-percent-encoded", "CREDIT_CARD",
         r"\d{4}(?:%20|\+)(?:\d{4}(?:%20|\+)\d{4}(?:%20|\+)\d{4}(?:(?:%20|\+)\d{1,3})?|\d{6}(?:%20|\+)\d{4,5})"
         r"(?![A-Za-z0-9])", ("%20", "+"),
         priority=45, confirm=_confirm_card_percent_encoded, left_guard=_NUM_GUARD),
    # A NANP number in a query string: `phone=(415)%20555-0123`, `%28415%29%20555%200123`
    Rule("phone-nanp-percent-encoded", "PHONE",
         r"(?:(?:%2b)?1(?:%20|[.-]))?(?:\(\d{3}\)|%28\d{3}%29|\d{3})(?:%20|[.-])?\d{3}(?:%20|[.-])\d{4}(?![0-9a-z_]|[.-]\d)",
         ("%20", "%28"), caseless=True, priority=40, confirm=_confirm_nanp_percent_encoded, left_guard=_NUM_GUARD,
         # the value holds `%20` or `%28` (confirm): a hint without them fired on every dashed number
         hint=r"%28[0-9]{3}%29|[0-9)]%20[0-9(%]"),
    # Magnetic-stripe track 1 (`%B4111…^DOE/JANE^2812…?`) in POS and terminal logs: the PAN after `%B`
    Rule("payment-card-track1", "CREDIT_CARD", r"%B(?P<v>\d{12,19})\^", ("%b",), priority=45,
         confirm=_confirm_card_dotted),
    # HL7 v2 (`|`-separated segments): PID-19 is the patient's SSN, written without separators; an XTN
    # phone (PID-13/14, NK1-5) in components `^PRN^PH^^1^415^5550123` (use, equipment, -, country, area,
    # local number) has no phone shape of its own
    Rule("hl7-pid-ssn", "SSN",
         r"PID\|(?:[^|\r\n]*\|){18}(?P<v>\d{3}-?\d{2}-?\d{4})(?=[|^~\r\n]|\\r|$)", ("pid|",), priority=45,
         confirm=_confirm_ssn, hint=r"PID\|"),
    Rule("hl7-xtn-phone", "PHONE",
         r"\^(?:prn|orn|wpn|vhn|asn|emr|bpn|prs)\^(?:ph|cp|fx|md|bp|sat)?\^[^|^~\r\n]*\^"
         r"(?P<v>(?:\d{1,3})?\^\d{2,5}\^\d{4,10})(?!\d)",
         ("^prn^", "^orn^", "^wpn^", "^vhn^", "^asn^", "^emr^", "^bpn^", "^prs^"), caseless=True, priority=40,
         hint=r"\^(?:prn|orn|wpn|vhn|asn|emr|bpn|prs)\^"),
    # SWIFT MT940 `:86:` subfields: `?31` (the counterparty's account) then the IBAN, no space after the code
    Rule("iban-mt940-subfield", "IBAN", r"\?3[0-9](?P<v>[A-Z]{2}\d{2}[A-Z0-9]{11,30})(?![A-Za-z0-9])", ("?3",),
         priority=45, confirm=_confirm_iban, hint=r"\?3[0-9][A-Z]{2}[0-9]{2}"),
    # A reverse-DNS name of one IPv6 address (`b.a.9.8.7.6.5.0.…8.b.d.0.1.0.0.2.ip6.arpa`, all 32 nibbles;
    # a shorter name is a zone, a network)
    Rule("ipv6-reverse-dns", "IPV6", r"(?<![0-9a-z.])(?P<v>(?:[0-9a-f]\.){31}[0-9a-f])\.ip6\.arpa",
         ("ip6.arpa",), caseless=True, priority=40),
    # tcpdump/pf print `address.port`: `10.0.0.1.51234 > 10.0.0.2.22: Flags [S]`, `fe80::1.546 > ff02::1:2.547:`
    Rule("ipv4-dot-port", "IPV4",
         r"\d(?<![\w.]\d)\d{0,2}(?:\.\d{1,3}){3}(?=\.\d{1,5}(?: > |: ))", (" > ",), priority=40,
         confirm=_confirm_ipv4, hint=r"[0-9](?:\.[0-9]{1,5}){4}(?: > |: )"),
    Rule("ipv6-dot-port", "IPV6",
         rf"(?<![\w:.])(?:(?:{_H}{{1,4}}:){{7}}{_H}{{1,4}}|(?:{_H}{{1,4}}(?::{_H}{{1,4}}){{0,6}})?::"
         rf"(?:(?:{_H}{{1,4}}:){{0,6}}{_H}{{1,4}})?)(?=\.\d{{1,5}}(?: > |: ))", (" > ",), priority=40,
         confirm=_confirm_ipv6, hint=r":[0-9A-Fa-f]{0,4}\.[0-9]{1,5}(?: > |: )"),
    # An address inside a reverse-DNS name, written with dashes as a host label before its domain: EC2's
    # public `ec2-54-12-34-56.compute-1.amazonaws.com`, ISPs' subscriber names (`c-73-15-22-101.hsd1…`,
    # `pool-71-105-12-9.…`, `81-2-3-4.static.isp.net`: a `Received:` header's or an access log's client)
    # and wildcard DNS (`10-0-1-23.sslip.io`); the dotted `10.0.1.23.nip.io` is the plain IPv4 rule's. Not
    # EC2's private DNS name `ip-10-0-1-23…`: it is the node's own host name, in every syslog line's prefix,
    # and names a private address (docs/logging.md, "Seventh corpus")
    Rule("ipv4-in-hostname", "IPV4",
         r"(?<![0-9a-z_.-])(?P<p>(?:[a-z][a-z0-9]{0,15}-){0,2})(?P<v>\d{1,3}-\d{1,3}-\d{1,3}-\d{1,3})(?=\.[a-z])",
         caseless=True, priority=40, confirm=_confirm_dashed_ipv4,
         hint=r"[0-9]{1,3}-[0-9]{1,3}-[0-9]{1,3}-[0-9]{1,3}\.[A-Za-z]"),
)  # fmt: skip
