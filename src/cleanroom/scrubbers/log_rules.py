"""The redaction rules: what a secret or a piece of PII looks like in a log line.

Each `Rule` is a regex plus, optionally, a `confirm` step (checksum, entropy, context) that accepts a
candidate and says which span to replace. Patterns are written here from public format facts (provider
documentation, the gitleaks and Nosey Parker rule sets); none is copied. Rules that start with a literal
prefix are cheap; PII rules have no literal and rely on the prefilter to run only on candidate lines.

Conventions that keep the engine simple and the rules safe:
- the replaced span is the first participating group whose name starts with `v`, else the whole match;
- `keywords` are lowercase literals, one of which occurs in every match: the pure-Python prefilter runs a
  rule only on text that contains one; a rule without keywords runs on every line that reaches it;
- nothing a rule matches crosses a newline except the PEM rule, so long texts can be split into lines.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

from cleanroom.scrubbers import _redact_validators as v

Span = tuple[int, int]
LabelledSpan = tuple[int, int, str]
# confirm(text, match, span) -> None (reject), the span to replace, or that span with its own label. The
# span returned lies within the span given: the engine skips confirming a candidate that a finding of a
# higher-priority rule already covers, which is exact only if confirming cannot make the candidate larger.
Confirm = Callable[[str, "re.Match[str]", Span], Span | LabelledSpan | None]
# widen(text, match, span) -> the candidate's full span, for a value that extends past what the pattern can
# express (an email's local part before `@`, an unquoted value past a closing bracket); runs before confirm.
Widen = Callable[[str, "re.Match[str]", Span], Span]


@dataclass(frozen=True)
class Rule:
    """One detector: `pattern` finds candidates, `confirm` accepts them (returning the span to replace)."""

    name: str
    label: str
    pattern: str
    keywords: tuple[str, ...] = ()
    caseless: bool = False
    priority: int = 50
    confirm: Confirm | None = None
    label_of: Callable[[re.Match[str]], str] | None = None
    widen: Widen | None = None
    # A simpler pattern matching a superset of `pattern`, for prefilter engines that cannot compile the
    # full one cheaply (Hyperscan, RE2). Defaults to `pattern` itself with lookarounds removed.
    hint: str | None = None
    # Characters that must not immediately precede the match (the token would be part of a longer word).
    left_guard: str = ""
    # A lookaround-free regex such that `pattern` is `anchor` followed by the rest: every match of `pattern`
    # starts where an `anchor` match starts. Hyperscan then reports those starts (SOM) and the engine tries
    # `regex.match(text, start)` there instead of searching the whole line: a rule with no literal prefix
    # (a keyword alternation, an optional prefix) costs one anchored match per occurrence, not a scan.
    # Exact: for matches of `anchor` ending at the same offset, Hyperscan reports the leftmost start, and
    # `pattern` matches there whenever it matches at a later one (the rest only sees text from that end).
    anchor: str | None = None
    # starts_of(text) -> (start, limit) for every offset where a match may begin (a superset, in order),
    # with an offset no match from there ends past, computed without the regex: for a rule whose pattern
    # starts with a class most characters are in, so that `finditer` would try a match at nearly every
    # character. The engine then matches only there, as with `anchor`, and not at all where a finding of
    # a higher priority already covers `start:limit` (the match would be dropped as covered).
    starts_of: Callable[[str], list[tuple[int, int]]] | None = None

    def compile(self, *, ignore_case: bool = False) -> re.Pattern[str]:
        """Caseless rules are written in lowercase and run on lowercased text (`ignore_case=False`), which
        is 4x faster in `re` than IGNORECASE; `ignore_case=True` is the fallback for text whose
        lowercase form has another length (a few non-ASCII characters)."""
        return re.compile(self.pattern, re.ASCII | (re.IGNORECASE if ignore_case else 0))


# --------------------------------------------------------------------------------------------------------
# confirm helpers
# --------------------------------------------------------------------------------------------------------
_PLACEHOLDER_VALUES = frozenset(
    [
        "null", "none", "nil", "undefined", "true", "false", "yes", "no", "on", "off", "required",
        "optional", "redacted", "hidden", "masked", "secret", "password", "*", "**", "***",
        "****", "*****", "******", "n/a", "na", "empty", "unset", "default",
        # the literal password GitHub documents for a token sent as the user (`https://<token>:x-oauth-basic@`)
        "x-oauth-basic",
        # what Ansible prints in place of a `no_log` module parameter
        "value_specified_in_no_log_parameter",
        # Python statement keywords: a traceback's source line `if password == confirm_password: return
        # True` reads as `confirm_password: return` (not `pass`: a real, weak password in compose files)
        "return", "raise", "continue", "break", "yield", "await", "lambda", "del", "assert", "global",
        "nonlocal", "import", "elif", "except", "finally", "async", "def", "class",
    ]
)  # fmt: skip
# YAML block scalar indicators (`key: |`, `key: >-`): the value follows on the next lines
_BLOCK_SCALARS = frozenset(("|", "|-", "|+", ">", ">-", ">+"))
_STOPWORDS = ("example", "redacted", "placeholder", "xxxxxx", "your_", "your-", "<", "${", "{{", "%s", "%(")
_STOPWORD_RE = re.compile("|".join(re.escape(w) for w in _STOPWORDS))
# What `.env.example` files and READMEs of AI apps write for a key: its prefix and dots or x's
_PREFIX_THEN_MASK = re.compile(r"[a-z][a-z0-9]{0,9}(?:[-_][a-z0-9]{1,9}){0,3}[-_](?:\.{3,}|…|x{3,}|\*{3,}|•{3,})")
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX_RE = re.compile(r"[0-9a-fA-F]+")
_NUMBER_RE = re.compile(r"[+-]?[0-9][0-9_.,]*")


# (`$1`: a shell script's positional parameter, `curl --user "$1:$2"`)
# `%NUGET_PASSWORD%`: a Windows environment reference (cmd and NuGet.Config expand it), upper case only, so
# a password that merely starts and ends with `%` is still judged; `${{ secrets.X }}`: a GitHub Actions
# expression (the `${…}` branch stops at its first `}`)
_TEMPLATE_RE = re.compile(
    r"\$\{[^}]*\}?|\$\{\{.*|\$[A-Z_][A-Z0-9_]*|\$[a-z_][A-Za-z_]*|\$\d|%[sdr]|%\([^)]*\)[sdr]|%[A-Z_][A-Z0-9_]{1,64}%|"
    r"<[^<>]*>?|\{\{.*|\{%.*|\$\(.*"
)
# What masking tools print instead of a value: `[MASKED]` (GitLab), `(sensitive value)` (Terraform, cut at
# its space when unquoted), `[FILTERED]` (Rails), `<hidden>`, `(redacted)`
_MASK_WORD_RE = re.compile(
    r"[\[(<{]?[ \t]*(?:masked|filtered|redacted|hidden|sensitive(?:[ _]value)?|removed|omitted|scrubbed|censored|"
    r"secret|not[ _]shown)[ \t]*[\])>}]?"
)


# A YAML tag standing where the value would be: Ansible Vault (`password: !vault |`, the ciphertext follows),
# CloudFormation intrinsics (`MasterUserPassword: !Ref DbPassword`, `!Sub '{{resolve:…}}'`), Home
# Assistant's `!secret wifi_password`, `!env_var`, `!include`: a reference, never the value itself
_YAML_TAG_RE = re.compile(
    r"!(?:vault|ref|sub|getatt|importvalue|findinmap|join|select|split|base64|cidr|getazs|if|equals|not|and|or|"
    r"condition|transform|secret|env_var|env|include|reference|unsafe)"
)
# A Go composite literal opening where the value would be (`"x-api-key":[]string{"…"}`, `map[string]string{`):
# the value is the quoted element after it (see `_go_composite_element`)
_GO_COMPOSITE_RE = re.compile(r"(?:\[\]|map\[[\w.*]*\])[\w.*]+(?:[ \t]*\{)?")


def is_placeholder(value: str) -> bool:
    """Values that are not secrets: empty, null-ish, booleans, masks, templates, our own placeholder."""
    value = value.strip()
    if _PREFIX_THEN_MASK.fullmatch(value.lower()):
        return True  # `sk-...`, `hf_xxxxxxxx`, `sk-ant-api03-...`: a provider's prefix shown with a mask
    if value[-1:] in (".", ",", ";", ":", "!", "?"):
        value = value.rstrip(".,;:!?")  # `secret: null.` ends a sentence
    low = value.lower()
    if not low or low in _PLACEHOLDER_VALUES or low.startswith("[redacted"):
        return True
    if not low.strip("*x•#.-_ "):
        return True
    if low in _BLOCK_SCALARS:
        return True  # `private_key: |`: the value is on the lines below (a PEM there has its own rule)
    if low[0] in "[(<{" and (not low.strip("[({<") or _MASK_WORD_RE.fullmatch(low)):
        return True  # a mask word, or only the opening bracket of a nested value (`"accessKey":{`)
    if low[0] == "!" and _YAML_TAG_RE.fullmatch(low):
        return True
    return _TEMPLATE_RE.fullmatch(value) is not None


def _value_span(m: re.Match[str], rule_groups: tuple[int, ...]) -> Span:
    for g in rule_groups:
        if m.start(g) >= 0:
            return m.span(g)
    return m.span()


def _group_text(text: str, span: Span) -> str:
    return text[span[0] : span[1]]


def _confirm_not_placeholder(text: str, m: re.Match[str], span: Span) -> Span | None:
    return None if is_placeholder(_group_text(text, span)) else span


# Placeholder words that are still a password where nothing but a password can stand (a URL's user-info
# after `:`, an ADO.NET/JDBC `Password=`, a credential constructor's password argument):
# `postgresql://user:secret@host` connects with the password `secret` (Nosey Parker's examples). Masks,
# empty values and templates still survive there; under a generic key (`secret: secret`) the word stays.
_PASSWORD_WORDS = frozenset(("secret", "password", "default", "changeme", "pass", "passwd"))


def _confirm_password_position(text: str, m: re.Match[str], span: Span) -> Span | None:
    value = _group_text(text, span)
    return span if value.lower() in _PASSWORD_WORDS else _confirm_not_placeholder(text, m, span)


def _confirm_jwt(text: str, m: re.Match[str], span: Span) -> Span | None:
    token = _group_text(text, span)
    end = span[1]
    while token.endswith("."):  # a sentence-ending dot is not part of the token
        token, end = token[:-1], end - 1
    if token.count(".") < 2:
        # an unsecured JWT (RFC 7519 §6, `"alg":"none"`) ends in the dot before its empty signature: a
        # JSON header and a JSON payload (`eyJ…`) then a dot
        if token.count(".") == 1 and end < span[1] and token.split(".")[1].startswith("eyJ") and v.jwt_header_ok(token):
            return (span[0], end + 1)
        return None
    return (span[0], end) if v.jwt_header_ok(token) else None


def _confirm_mixed_letters(text: str, m: re.Match[str], span: Span) -> Span | None:
    body = _group_text(text, span).split("_", 1)[-1]
    return span if any(c.isupper() for c in body) and any(c.islower() for c in body) else None


def _confirm_has_digit(text: str, m: re.Match[str], span: Span) -> Span | None:
    return span if any(c.isdigit() for c in _group_text(text, span)) else None


def _confirm_digit_after_prefix(text: str, m: re.Match[str], span: Span) -> Span | None:
    """A digit after the 3-character prefix: `A3-XXXXXX-…` (1Password's own placeholder) is no key."""
    return span if any(c.isdigit() for c in _group_text(text, span)[3:]) else None


def _confirm_openai(text: str, m: re.Match[str], span: Span) -> Span | None:
    value = _group_text(text, span)
    if value.startswith(("sk-proj-", "sk-svcacct-", "sk-admin-", "sk-None-")) or "T3BlbkFJ" in value:
        return span
    body = value[3:]
    has_digit = any(c.isdigit() for c in body)
    has_alpha = any(c.isalpha() for c in body)
    return span if has_digit and has_alpha and v.entropy_at_least(body, 3.0) else None


def _confirm_random(text: str, m: re.Match[str], span: Span) -> Span | None:
    """A token with no checksum: letters and digits, and the entropy of random text (not `AAAA…`, words)."""
    value = _group_text(text, span)
    has_digit = any(c.isdigit() for c in value)
    has_alpha = any(c.isalpha() for c in value)
    return span if has_digit and has_alpha and v.entropy_at_least(value, 3.5) else None


def _confirm_random_after_padding(text: str, m: re.Match[str], span: Span) -> Span | None:
    """Twitter app-only bearer tokens start with ~21 `A`s (zero bytes in base64); what follows is random."""
    start = span[0]
    while start < span[1] and text[start] == "A":
        start += 1
    return span if _confirm_random(text, m, (start, span[1])) is not None else None


def _confirm_discord_token(text: str, m: re.Match[str], span: Span) -> Span | None:
    """A Discord bot token's first part is the bot's numeric user id in base64."""
    head = _group_text(text, span).split(".", 1)[0]
    try:
        user_id = base64.b64decode(head + "=" * (-len(head) % 4), altchars=b"-_", validate=True)
    except (ValueError, binascii.Error):
        return None
    return span if user_id.isdigit() and 15 <= len(user_id) <= 20 else None


def _confirm_aws_secret_standalone(text: str, m: re.Match[str], span: Span) -> Span | None:
    value = _group_text(text, span)
    if value.count("/") > 2 or value.startswith("/"):
        return None
    if v.char_classes(value) < 3 or not v.entropy_at_least(value, 4.0):
        return None
    return span


def _confirm_base64_key(text: str, m: re.Match[str], span: Span) -> Span | None:
    value = _group_text(text, span)
    if text[max(0, span[0] - 7) : span[0]].lower().endswith(("sha512-", "sha512:", "sha512=", "base64,")):
        return None  # a digest, or inline content (`data:image/png;base64,…==`)
    return span if v.char_classes(value.rstrip("=")) >= 3 else None


def _confirm_bearer(text: str, m: re.Match[str], span: Span) -> Span | None:
    value = _group_text(text, span)
    if is_placeholder(value):
        return None
    has_digit = any(c.isdigit() for c in value)
    if (has_digit and v.char_classes(value) >= 2) or (len(value) >= 20 and v.entropy_at_least(value, 3.5)):
        return span
    return None


def _confirm_authorization_value(text: str, m: re.Match[str], span: Span) -> Span | None:
    """Not a placeholder, and not only an opening bracket: Go's `"Authorization":[]string{"Bearer x"}` is a
    list whose `Bearer x` the bearer rule takes."""
    value = _group_text(text, span)
    return None if not value.strip("[({<") or is_placeholder(value) else span


def _b64_decode(value: str) -> bytes | None:
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (ValueError, binascii.Error):
        return None


def _confirm_base64_pem(text: str, m: re.Match[str], span: Span) -> Span | None:
    decoded = _b64_decode(_group_text(text, span)[:4096].rstrip("="))
    return span if decoded is not None and b"PRIVATE KEY" in decoded[:80] else None


_CREDENTIAL_JSON_KEYS = (b'"auth"', b'"password"', b'"token"', b'"secret"', b'"private_key"', b'"client_secret"',
                         b'"api_key"', b'"identitytoken"')  # fmt: skip


def _confirm_base64_json_credentials(text: str, m: re.Match[str], span: Span) -> Span | None:
    decoded = _b64_decode(_group_text(text, span).rstrip("="))
    if decoded is None:
        return None
    low = decoded.lower()
    return span if any(k in low for k in _CREDENTIAL_JSON_KEYS) else None


def _confirm_pgpass(text: str, m: re.Match[str], span: Span) -> Span | None:
    """The host names a host (letters or dots, or `*`), not the first group of a MAC or IPv6 address."""
    host = m.group("host")
    if host != "*" and not any(c.isalpha() or c == "." for c in host):
        return None
    return _confirm_not_placeholder(text, m, span)


_WORDLIKE_RUN = re.compile(r"[a-z]{4,}|[A-Z][a-z]{3,}")
# Keys and prefixes after which a random-looking string is an id or a digest, not a credential
_ID_BEFORE = re.compile(
    r"(?:\bid|[_-]id|ids|uid|guid|hash|digest|checksum|etag|nonce|integrity|fingerprint|version|revision|commit|"
    # OAuth's `state` and PKCE's `code_challenge` (RFC 7636 §4.2, a SHA-256 of the verifier) are random by
    # design and grant nothing; a pagination `cursor` is an opaque position; ad click ids (`gclid`, `fbclid`,
    # `msclkid`) are ids
    r"request|trace|span|correlation|x-amz-id-2|x-amz-cf-id|challenge|state|cursor|clid|clkid)"
    r"[\"']?[ \t]*[:=]?[ \t]*[\"']?$|"
    # a JWKS public key's modulus and curve points (`"n":"…"`, `"x":"…"`) and certificate chain (`"x5c":["…`)
    r"[\"'](?:n|x|y|x5c)[\"'][ \t]*:[ \t]*\[?[ \t]*[\"']$|"
    # inline content (`data:image/png;base64,…`), not a credential
    r";base64,$|"
    r"(?:sha\d*|md5|h1|blake2b?|xxh\d*)[-:]$",
    re.IGNORECASE,
)


# Two capitals with 1-8 other token characters between: all but 4 in 100 000 random 32-character tokens
# have such a pair (and all of 50 000 at 40 and 43 characters)
_CAPITAL_PAIR_PATTERN = r"[A-Z][a-z0-9_-]{1,8}[A-Z]"
# Base64 DER of a certificate: SEQUENCE of 2-byte length, then the tbsCertificate SEQUENCE (`MII?..CCA`); a
# PKCS#1/PKCS#8 private key continues with an INTEGER instead (`MIIEvQIBADAN…`, `MIIEowIBAAKCAQEA…`)
_CERTIFICATE_DER = re.compile(r"MII[A-Za-z0-9+/]{3}CCA")
_CAPITAL_PAIR = re.compile(_CAPITAL_PAIR_PATTERN)
_UPPER_PREFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ_-"
# (no `=`: padding only ends base64, and walking back through `key=` would hide the key)
_BASE64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-")
_DIGEST_PREFIX = re.compile(r"(?:sha\d+|md5|blake2b?)[-_]", re.IGNORECASE)


def _readable_base64(value: str) -> bool:
    """`value` decodes (standard or URL-safe base64) to mostly printable text: an encoded message, not key
    material (random bytes are printable ~37% of the time)."""
    body = value.rstrip("=")
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_" if "-" in body or "_" in body else None)
    except (ValueError, binascii.Error):
        return False
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in raw)
    return bool(raw) and printable >= 0.9 * len(raw)


# A 256-byte `bytes.translate` table: token characters to `a`, everything else to a space. The text is
# encoded with `ascii`/`replace` first, which writes one `?` per non-ASCII character (so offsets stay string
# offsets, and a non-ASCII character ends a run as it ends the pattern's ASCII class). `bytes.translate` is
# one table lookup per byte; `str.translate` with a dict a dict lookup per character (as slow as the regex
# it replaces), and it left non-ASCII characters as they were, so a run "ended" past them (a token right
# after `é` was never tried)
_TOKEN_RUN_BYTES = bytes(
    ord("a") if (c < 128 and (chr(c).isalnum() or chr(c) in "_-")) else ord(" ") for c in range(256)
)
_MIN_RUN_BYTES = b"a" * 32


def random_token_starts(text: str) -> list[tuple[int, int]]:
    """Where `random-token` may match, each with where its run of token characters ends (no match from
    there ends later): the start of every run of 32+ token characters, and for a run over 512 characters
    the offset 512 before its end (the only other place its bounded pattern can start). One `translate`
    and a few `find`s in C instead of `re` trying the pattern at every character (2.2 us a line on the
    secret-dense corpus)."""
    mapped = text.encode("ascii", "replace").translate(_TOKEN_RUN_BYTES)
    out: list[tuple[int, int]] = []
    pos = mapped.find(_MIN_RUN_BYTES)
    while pos >= 0:
        end = mapped.find(b" ", pos + 32)
        if end < 0:
            end = len(mapped)
        out.append((pos, end))
        if end - pos > 512:
            out.append((end - 512, end))
        pos = mapped.find(_MIN_RUN_BYTES, end)
    return out


# The typed ids of LLM APIs: a lowercase object type, then `_`/`-`, then a random body (Anthropic
# `msgbatch_01…`, `toolu_01…`; OpenAI `chatcmpl-…`, `file-…`, `asst_…`, `ftjob-…`, `ftckpt_…`): ids, not keys
_LLM_ID_PREFIX = re.compile(
    r"(?:chatcmpl|cmpl|msg|msgbatch|toolu|srvtoolu|req|file|asst|thread|run|step|batch|ftjob|ftckpt|ft|org|proj|"
    r"call|resp|vs|modr|embd|compl)[-_]"
)


_NAME_PART = re.compile(r"[A-Za-z]+[0-9]{0,3}|[A-Za-z0-9]{1,4}")


def _is_name_of_parts(value: str) -> bool:
    """A name joined from 3+ parts that are each a word (with up to 3 digits after it) or at most 4
    characters (model repos `paraphrase-multilingual-MiniLM-L12-v2`, `Qwen2-VL-72B-Instruct-GGUF-Q4_K_M`):
    random base64url has parts longer than 4 with letters and digits mixed."""
    parts = value.replace("_", "-").split("-")
    return len(parts) >= 3 and all(_NAME_PART.fullmatch(p) for p in parts)


def confirm_random_token(text: str, m: re.Match[str], span: Span) -> Span | None:
    """A string of 32+ characters with no key and no known prefix is a credential when it looks random:
    upper case, lower case and digits, no run of word-like letters (`AbstractProxyFactoryBean2` is a name),
    not base64 of readable text, not after an id/digest key (`request_id=`, `sha512-`, `h1:`)."""
    start, end = span
    value = text[start:end]
    if value.isdigit() or value.islower() or value.isupper():
        return None
    if text[end : end + 1] == "/":
        return None  # a directory in a path; a token in a URL path is its last segment
    if not any(c.isdigit() for c in value) or not any(c.isupper() for c in value):
        return None
    if not any(c.islower() for c in value):
        return None
    if not any(c.isupper() for c in value.lstrip(_UPPER_PREFIX)) or not _CAPITAL_PAIR.search(value):
        return None  # capitals only in a type prefix: `TASK0123…abcdef`, `ORD_9f8e…` are ids
    # random 32-64 character tokens: at most 0.5-0.78 of their characters in such runs (20 000 samples);
    # identifiers (`getUserAccountSettingsByEmailV2Handler`) 0.8-0.97; words joined by `--` (Hugging Face
    # cache directories `models--org--all-MiniLM-L6-v2`) from half
    wordlike = sum(len(w) for w in _WORDLIKE_RUN.findall(value))
    if wordlike * 4 >= len(value) * 3 or ("--" in value and wordlike * 2 >= len(value)):
        return None
    if _is_name_of_parts(value):
        return None
    if not v.entropy_at_least(value, 3.8) or _readable_base64(value):
        return None
    # the whole base64 word it sits in (`sha512-AbC/<run>`): its prefix and the key before it decide
    word = start
    lo = max(0, start - 600)
    while word > lo and text[word - 1] in _BASE64_CHARS:
        word -= 1
    if word < start and _DIGEST_PREFIX.match(text, word, start):
        return None
    if _LLM_ID_PREFIX.match(text, word) and (word == 0 or not text[word - 1].isalnum()):
        return None
    if _ID_BEFORE.search(text, max(0, word - 24), word):
        return None
    if _CERTIFICATE_DER.match(text, word) or _PUBLIC_KEY_DER.match(text, word):
        return None  # an X.509 certificate (`<ds:X509Certificate>MIIDdzCCAl+g…`) or a public key is public
    if text.startswith("AAAA", word) and _ssh_public_blob(text, word):
        return None  # `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5…`: an SSH public key (authorized_keys, known_hosts)
    if "-----BEGIN" in text and _in_public_pem(text, word):
        return None
    return span


# SubjectPublicKeyInfo DER (RFC 5280 §4.1.2.7): RSA (SEQUENCE, rsaEncryption, BIT STRING `AAOC`; a PKCS#8
# private key has INTEGER 0 and an OCTET STRING there: `MIIEvQIBADAN…AASC`), EC P-256 and P-384
_PUBLIC_KEY_DER = re.compile(
    r"MII[A-Za-z0-9+/]{3}ANBgkqhkiG9w0BAQEFAAOC|MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE|MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAE"
)
# The SSH wire format of a public key starts with its type as a length-prefixed string (RFC 4253 §6.6):
# `AAAAC3NzaC1lZDI1NTE5` is `\0\0\0\x0bssh-ed25519`. An OpenSSH private key starts `b3BlbnNzaC1rZXkt`
# (`openssh-key-v1`), and its PEM rule covers the whole block whatever this says
_SSH_BLOB_HEAD = re.compile(r"AAAA[A-Za-z0-9+/]{44}")
_SSH_KEY_TYPE = re.compile(rb"(?:ssh|ecdsa|sk)-[a-z0-9@.-]{2,40}")


def _ssh_public_blob(text: str, word: int) -> bool:
    head = _SSH_BLOB_HEAD.match(text, word)
    if head is None:
        return False
    raw = base64.b64decode(head.group())  # 48 base64 characters: 36 bytes, no padding needed
    n = int.from_bytes(raw[:4], "big")
    return 7 <= n <= 32 and _SSH_KEY_TYPE.fullmatch(raw[4 : 4 + n]) is not None


# Public PEM blocks: a certificate, a CSR, a CRL, a public key. Their body lines are public; a line alone
# cannot be told from a secret's base64, so the block's BEGIN line must be in the text the rule sees (a
# logging record, a multi-line message; the streaming redactor holds only PRIVATE KEY blocks, so there a
# certificate's body lines arrive one by one and stay redacted: safe). Never a PRIVATE KEY block's body:
# the nearest BEGIN before the line decides, and every line between must be a body line (no END, no key)
_PUBLIC_PEM_BEGIN = re.compile(
    r"-----BEGIN (?:TRUSTED |NEW )?(?:CERTIFICATE(?: REQUEST)?|X509 CRL|(?:RSA |EC )?PUBLIC KEY)-----[ \t]*\r?\n"
)
_PEM_BODY_LINE = r"[ \t]*[A-Za-z0-9+/]{4,76}={0,2}[ \t]*\r?"
_PEM_BODY_LINES = re.compile(r"(?:" + _PEM_BODY_LINE + r"\n)*+")
_PEM_ONE_LINE = re.compile(_PEM_BODY_LINE)


def _in_public_pem(text: str, pos: int) -> bool:
    """`pos` lies on a body line of a public PEM block whose BEGIN line the text holds."""
    begin = text.rfind("-----BEGIN", 0, pos)
    if begin < 0:
        return False
    opened = _PUBLIC_PEM_BEGIN.match(text, begin)
    if opened is None:
        return False
    line_start = text.rfind("\n", 0, pos) + 1
    if _PEM_BODY_LINES.match(text, opened.end(), line_start).end() != line_start:  # type: ignore[union-attr]
        return False
    line_end = text.find("\n", pos)
    return _PEM_ONE_LINE.fullmatch(text, line_start, len(text) if line_end < 0 else line_end) is not None


def _confirm_userinfo_token(text: str, m: re.Match[str], span: Span) -> Span | None:
    """A URL's user-info that is a key, not a user name: 32+ hex digits, or mixed case with digits."""
    value = _group_text(text, span)
    if len(value) >= 32 and _HEX_RE.fullmatch(value) and not value.isdigit():
        return span
    if not (any(c.isupper() for c in value) and any(c.islower() for c in value) and any(c.isdigit() for c in value)):
        return None
    return span if v.entropy_at_least(value, 3.5) and not _readable_base64(value) else None


def _confirm_basic(text: str, m: re.Match[str], span: Span) -> Span | None:
    return span if v.basic_credentials_ok(_group_text(text, span)) else None


# --- key = value assignments ---------------------------------------------------------------------------
# "Password" in the languages logs are most often written in besides English (German, French, Spanish,
# Portuguese, Dutch, Swedish, Polish, Hungarian, Czech, Danish, Norwegian, Finnish, Russian, Japanese,
# Chinese, Korean), with and without their diacritics. Alternations, not classes: the Hyperscan prefilter
# gets non-ASCII characters as UTF-8 byte sequences (`_redact_prefilter._hs_expression`).
_OTHER_LANGUAGE_WORDS = (
    r"passwort|kennwort|mot[ _-]?de[ _-]?passe|contrase(?:n|ñ)a|senha|wachtwoord|l(?:o|ö)senord|has(?:l|ł)o|"
    r"jelsz(?:o|ó)|heslo|adgangskode|passord|salasana|parola|пароль|パスワード|密码|密碼|口令|비밀번호"
)
_OTHER_LANGUAGE_KEY = re.compile(r"(?:" + _OTHER_LANGUAGE_WORDS + r")$", re.IGNORECASE)
# Tier A keys: the value is a secret whatever it looks like (passwords are often low-entropy).
_TIER_A = re.compile(
    r"(?:" + _OTHER_LANGUAGE_WORDS + r"|"
    r"pass(?:word|wd|phrase)?s?|pwd|secret|api[_-]?key|apikey|access[_-]?key|private[_-]?key|"
    r"secret[_-]?key(?:[_-]?base)?|"
    r"(?:auth|access|refresh|session|id|bearer|api|secret|private|personal[_-]?access|oauth|bot|deploy)[_-]?token|"
    # an AI provider's name then `key` (`OPENAI_KEY`, `AZURE_OPENAI_KEY`, `ANTHROPIC_KEY`): the provider's
    # API key, whatever it looks like (Azure OpenAI's are 32 hex digits, which a generic `*_key` reads as an id)
    r"(?:openai|anthropic|claude|cohere|mistral|groq|gemini|perplexity|pplx|together|fireworks|deepseek|xai|grok|"
    r"replicate|openrouter|voyage|jina|elevenlabs|deepgram|assemblyai|pinecone|wandb|comet|kaggle)[_-]?key|"
    # an application key (Laravel `APP_KEY`, Datadog's application key, a LoRaWAN device's `AppKey`, often
    # 32 hex digits): the credential itself
    r"app(?:lication)?[_-]?key|"
    r"authtoken|credentials?)$",
    re.IGNORECASE,
)
_SHORT_KEYS = frozenset(("pass", "pwd", "secret"))
# Keys that name where a secret is kept, not the secret: Helm charts' `existingSecret: pg-auth`,
# `existingPasswordSecret`, `auth.existingSecret` (the name of a Kubernetes Secret object)
_REFERENCE_KEY = re.compile(r"existing[_-]?(?:[a-z]+[_-]?)?secret$", re.IGNORECASE)
_GRAPHQL_TYPE = re.compile(r"\[?[A-Z][A-Za-z0-9_]*!?\]?!?")


@functools.lru_cache(maxsize=4096)
def assignment_label(key: str) -> str:
    k = key.lower().replace("-", "_")
    if "pass" in k or k.endswith("pwd") or _OTHER_LANGUAGE_KEY.search(k):
        return "PASSWORD"
    if "token" in k:
        return "TOKEN"
    if k.replace("_", "") in ("apikey",) or k.endswith(("api_key", "apikey")):
        return "API_KEY"
    return "SECRET"


def _looks_like_id_or_data(value: str) -> bool:
    """The stopword/shape guard of the generic rule: ids, hashes, numbers, paths, URLs, words."""
    low = value.lower()
    if _UUID_RE.fullmatch(value) or _NUMBER_RE.fullmatch(value):
        return True
    if value.startswith(("./", "../", "~/")) or "://" in value or value.startswith("\\\\"):
        return True
    if value.startswith("/"):
        # a path, unless it is one segment of base64 that happens to start with `/` (`/yCWr0l...+J`)
        return "/" in value[1:] or "." in value or v.char_classes(value[1:]) < 3
    return _STOPWORD_RE.search(low) is not None


@functools.lru_cache(maxsize=4096)  # key names repeat (password, api_key, token); bounded for odd input
def _tier(low_key: str) -> str | None:
    """'A' (any value is a secret), 'B' (generic: only random-looking values) or None (not a secret key)."""
    if _REFERENCE_KEY.search(low_key):
        return None
    if _TIER_A.search(low_key):
        return "A"
    if _TIER_B_KEY.search(low_key):
        return "B"
    return None


_NEXT_FIELD = re.compile(r"(?:[a-z_][a-z0-9_.-]*|[A-Z_][A-Z0-9_]*)[=:]")
_CLOSERS = ")]}>"
_EXTENDERS = ")]}>&"
_TOKEN_END = frozenset(" \t\r\n\"'`,;)]}>")
_OPENERS = {")": "(", "]": "[", "}": "{", ">": "<"}
_UNQUOTED_RUN = re.compile(r"(?:[^\s\"'`,;&)\]}><]++|<(?!/)|&(?![A-Za-z_][\w.-]*=))*+")


def _after_escape(text: str, start: int) -> bool:
    """The letter before `start` ends an escape (`\\n`, `\\t`, `\\u0022`), not a word. (The engine has a
    fuller one for left guards; this module cannot import the engine, which imports it.)"""
    if start >= 2 and text[start - 2] == "\\":
        return True
    return start >= 6 and text[start - 6] == "\\" and text[start - 5] in "uU"


def _unquoted_end(text: str, key_start: int, start: int, end: int, through_amp: bool) -> int:
    """Where an unquoted value that stopped at a closing bracket really ends.

    The value pattern stops at `)`, `]`, `}`, `>` so that `(password=x)` keeps its bracket; but a
    generated password may hold brackets (`SECRET=ab)c]d`), and stopping there would leak the rest. A
    closer ends the value only when it ends a token (end, space, quote, separator, another closer or an
    escaped line break follows), the value has no unmatched opener of its kind, and the line before the
    key has one: `(SECRET_KEY: x)`, `{Password:x} ok`, but `&{Password:a}b SSL:true}` keeps `a}b`.
    `&` followed by `name=` ends a value only after `=` (`?password=x&next=1`); after `:` (a header, YAML)
    it is part of it (`X-Password: a&b=c`) when `through_amp`."""
    line_start = text.rfind("\n", 0, key_start) + 1
    before = text[line_start:key_start]
    pos = end
    n = len(text)
    while pos < n and text[pos] in _EXTENDERS:
        closer = text[pos]
        if closer == "&":
            if not through_amp:
                break
            m = _UNQUOTED_RUN.match(text, pos + 1)
            pos = m.end() if m else pos + 1
            continue
        opener = _OPENERS[closer]
        nxt = text[pos + 1 : pos + 2]
        after = text[pos + 2 : pos + 3]
        at_boundary = (
            not nxt
            or nxt in _TOKEN_END
            or (nxt == "\\" and after in ("n", "r", "t", '"', "'"))  # an escaped line break or quote (JSON in JSON)
            or (nxt in ".:!?" and (not after or after.isspace()))  # the end of a sentence
        )
        value = text[start:pos]
        if at_boundary and value.count(opener) <= value.count(closer) and before.count(opener) > before.count(closer):
            break
        m = _UNQUOTED_RUN.match(text, pos + 1)
        pos = m.end() if m else pos + 1
    return pos


def _key_start(text: str, start: int) -> int:
    """Where the key name that contains the keyword at `start` begins (see `full_key`)."""
    return _key_run_start(text, max(0, start - _MAX_KEY_CHARS), start)


_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]*")


def confirm_xml_element(text: str, m: re.Match[str], span: Span) -> LabelledSpan | None:
    """`<db_password>value</db_password>`: the element's whole name decides, as a key would."""
    kw_start, kw_end = m.span("k")
    start = _key_start(text, kw_start)
    if start >= 2 and text[start - 1] == ":":  # a namespace prefix: `<wsse:Password Type="…">`
        start = _key_start(text, start - 1)
    if start == 0 or text[start - 1] != "<":
        return None
    name = text[start:kw_end]
    if not _XML_NAME.fullmatch(name) or not text.startswith(f"</{name}>", span[1]):
        return None
    low_key = name.lower().rsplit(".", 1)[-1].rsplit(":", 1)[-1]
    tier = _tier(low_key)
    if tier is None:
        return None
    return _judge(text, low_key, tier, span)


# `name` (k8s env, ECS) or `key` (Ansible `item={'key': 'DB_PASS', 'value': …}`, dict2items, AWS tags)
_NAME_FIELD = re.compile(r"(?:name|key)\\?[\"']?[ \t]*[:=][ \t]*\\?[\"']?$", re.IGNORECASE)


def confirm_name_value(text: str, m: re.Match[str], span: Span) -> LabelledSpan | None:
    """`{"name": "DB_PASSWORD", "value": "..."}` (k8s env, ECS task definitions): the secret's key is
    the value of a `name` field and its value follows as `value`."""
    kw_start = m.start("k")
    start = _key_start(text, kw_start)
    if not _NAME_FIELD.search(text, max(0, start - 16), start):
        return None
    return confirm_assignment(text, m, span)


def _judge(text: str, low_key: str, tier: str, span: Span, *, checked: bool = False) -> LabelledSpan | None:
    """Tier A: any value but a placeholder is a secret; tier B (generic): only a random-looking one.
    `checked`: the caller has already ruled out a placeholder."""
    value = _group_text(text, span)
    if not checked and is_placeholder(value):
        return None
    if tier == "A":
        return (span[0], span[1], assignment_label(low_key))
    if _UUID_RE.fullmatch(value):
        # a UUID under a credential key is the credential (legacy npm `_authToken`, Heroku API keys,
        # reset and invite tokens); the same UUID under an id key never reaches here
        return (span[0], span[1], "GENERIC_SECRET")
    if len(value) < 12 or _looks_like_id_or_data(value):
        return None
    if (
        not low_key.endswith("token")
        and _HEX_RE.fullmatch(value)
        and len(value) in (32, 40, 64)
        and not _KEY_MATERIAL_KEY.search(low_key)
    ):
        return None  # a bare hash under a *_key name is an id, not a credential
    if low_key.endswith("token") and _HEX_RE.fullmatch(value) and len(set(value)) >= 8 and not value.isdigit():
        return (span[0], span[1], "GENERIC_SECRET")  # 16 random hex digits fall short of 3.0 bits a third of the time
    if v.char_classes(value) < 2 or not v.entropy_at_least(value, 3.0):
        return None
    return (span[0], span[1], "GENERIC_SECRET")


# A value that is a call wrapping the secret: pydantic's `SecretStr('**********')`, `Secret("x")`
_CALL_OPEN = re.compile(r"[A-Za-z_][\w.]*\(")
_CALL_ARG = re.compile(r"b?(?:'[^'\r\n]*'|\"[^\"\r\n]*\"|[^\s()'\"]*)\)")
_CALL_VALUE = re.compile(r"[A-Za-z_][\w.]*\(b?(?P<q>['\"]?)(?P<arg>[^'\"()\r\n]*)(?P=q)\)")


def widen_unquoted_value(text: str, m: re.Match[str], span: Span) -> Span:
    """An unquoted assignment value that stopped at a closing bracket or `&`, through to its real end; a
    value that opens a call (`SecretStr(`) through its quoted argument and `)`."""
    if m.group("v4") is not None and _CALL_OPEN.fullmatch(text, span[0], span[1]):
        call = _CALL_ARG.match(text, span[1])
        if call:
            return (span[0], call.end())
    if m.group("v4") is not None and span[1] < len(text) and text[span[1]] in _EXTENDERS:
        key_start = _key_start(text, m.start("k"))
        # `&name=` ends the value of a query-string or form parameter (`?password=x&next=1`); after an
        # environment-style `KEY=` that does not follow `?`/`&`/`;` (`"POSTGRES_PASSWORD=a&b=c"`) it is
        # part of the value
        # (`#`: an OAuth implicit-flow redirect carries its tokens in the fragment)
        in_query = m.group("sep") == "=" and key_start > 0 and text[key_start - 1] in "?&;#"
        return (span[0], _unquoted_end(text, m.start("k"), span[0], span[1], not in_query))
    return span


def confirm_assignment(text: str, m: re.Match[str], span: Span) -> LabelledSpan | None:
    """`span` (widened by `widen_unquoted_value`) is a secret when the whole key name says so."""
    # Cheapest rejections first: the key's tier is cached per key name.
    kw_start, kw_end = m.span("k")
    low_key = full_key(text, kw_start, kw_end).lower()
    tier = _tier(low_key)
    if tier is None:
        low_key = _provider_key(text, kw_start, low_key)  # `config.facebook.key`, `FACEBOOK_KEY`
        if not low_key:
            return None
        tier = "B"
    value = _group_text(text, span)
    if value == "{" and _STRING_VALUE.match(text, span[1]):
        # Triton's model configuration as JSON (`"parameters":{"api_key":{"string_value":"v"}}`), OpenAI
        # Realtime sessions (`"client_secret":{"value":"ek_…","expires_at":…}`): the value one level down
        return _judge(text, low_key, tier, _STRING_VALUE.match(text, span[1]).span(1))  # type: ignore[union-attr]
    if is_placeholder(value):
        return _connection_string_password(text, kw_start, low_key, span)
    if m.group("sep") == "=" and value[:1] == "=" and m.group("v4") is not None and text[span[0] - 1] == "=":
        return None  # `password == "x"`: a comparison, the comparison rule takes the quoted operand
    if value in ("new", "New", "new-object", "New-Object") and text[span[1] : span[1] + 1] == " ":
        return None  # `Credentials = new NetworkCredential(…)`: a constructor, its arguments have a rule
    if value[-1:] == "[" and text[span[1] : span[1] + 1] in "\"'" and _SUBSCRIPT.fullmatch(value):
        return None  # `password = request.form["password"]`: code reading the value, not the value
    call = _CALL_VALUE.fullmatch(value)
    if call is not None and is_placeholder(call.group("arg")):
        return None  # `api_key=SecretStr('**********')`: the wrapper already masks it
    if call is not None and not call.group("q") and _CODE_CALL.fullmatch(value):
        return None  # `hashed_password = users.get(username)`, `secret = load()`: code computing the value
    if _CALL_KWARG_OPEN.fullmatch(value):
        return None  # `credentials: Credentials(access_key='…'`: an object's repr, its fields are judged one by one
    if value[:1] == "&" and _GO_STRUCT_OPEN.fullmatch(value):
        return None  # Go's `%#v`: `auth: &registry.AuthConfig{Username:"u", Password:"p"}`, fields judged alone
    if (value[:1] in "[m" and _GO_COMPOSITE_RE.fullmatch(value)) or value == "Slice([":
        # (`Slice([`: the OpenTelemetry collector's debug exporter prints a header attribute as
        # `http.request.header.api-key: Slice(["v"])`)
        return _go_composite_element(text, low_key, tier, span[1])
    keyword = text[kw_start:kw_end]
    prev = text[kw_start - 1] if kw_start > 0 else " "
    if (
        keyword.lower() in _SHORT_KEYS
        and prev.isalpha()
        and not (prev.islower() and keyword[0].isupper())
        and not _after_escape(text, kw_start)
        and not _COMPOUND_SECRET_KEY.search(low_key)
    ):
        return None  # `bypass=`, `compass:`, `topsecret` — the short keyword ends another word
    if low_key.endswith("pwd") and value[:1] in "/~":
        return None  # the shell's $PWD is a directory
    if value.isdigit() and text.startswith(" bytes", span[1]):
        return None  # `kubectl describe secret`: `password:  16 bytes` is the value's size
    if value in ("N", "n") and text.startswith("'", span[1]):
        return None  # T-SQL's `PASSWORD = N'p'`: `N` marks a Unicode literal, the sql-password rule takes `p`
    if prev == "$" and _GRAPHQL_TYPE.fullmatch(value):
        return None  # a GraphQL variable definition: `($password: String!)`
    after_space = text[span[0] - 1] in " \t"
    if after_space and m.group("sep") == "=" and m.group("v4") is not None and _NEXT_FIELD.match(value):
        return None  # `password= next_key=1`: the value is empty and the next field follows
    return _judge(text, low_key, tier, span, checked=True)


_CALL_KWARG_OPEN = re.compile(r"[A-Za-z_][\w.]*\([A-Za-z_]\w*[=:]")
_GO_STRUCT_OPEN = re.compile(r"&[A-Za-z_][\w.]*\{(?:[A-Z]\w*:)?")
_SUBSCRIPT = re.compile(r"[A-Za-z_][\w.]*\[")
# a method call on an identifier argument, or any call without arguments
_CODE_CALL = re.compile(r"[A-Za-z_]\w*\.[\w.]*\([A-Za-z_][\w.]*\)|[A-Za-z_][\w.]*\(\)")
# A credential word glued to `secret` (`jwtsecret:`, `clientsecret=`): a key, not `topsecret`/`bypass`
_COMPOUND_SECRET_KEY = re.compile(
    r"(?:jwt|client|app|api|shared|webhook|consumer|oauth|session|signing|token|hmac|master|cookie|auth|admin)secret$"
)
# A provider's name as the segment before a bare `key` (`config.facebook.key`, `twitter.key`): its API key
# or app secret, often 32 hex digits (which a generic `*_key` reads as an id); not `cache.key`, `map.key`
_PROVIDER_SEGMENT = re.compile(
    r"(?:facebook|fb|twitter|github|google|linkedin|instagram|stripe|twilio|sendgrid|mailgun|postmark|newrelic|"
    r"pusher|algolia|mapbox|sonar)[._-]$",
    re.IGNORECASE,
)
_PROVIDER_KEY_NAME = re.compile(
    r"(?:^|[_-])(?:facebook|fb|twitter|github|google|linkedin|instagram|stripe|twilio|sendgrid|mailgun|postmark|"
    r"newrelic|pusher|algolia|mapbox|sonar)[_-]?key$"
)
# ADO.NET / ODBC / JDBC connection strings: `Server=h;User Id=u;Password=p;`
_CONNECTION_KEY = re.compile(
    r"(?:server|data source|host|user id|uid|user|database|initial catalog|provider|driver)[ \t]*=", re.IGNORECASE
)


def _provider_key(text: str, kw_start: int, low_key: str) -> str:
    """`facebook_key` for `FACEBOOK_KEY` and for the `key` of `config.facebook.key` (the key name reads
    up to the last dot), or '' when the key names no provider."""
    if low_key != "key":
        return low_key if _PROVIDER_KEY_NAME.search(low_key) else ""
    seg = _PROVIDER_SEGMENT.search(text, max(0, kw_start - 12), kw_start)
    if seg is None or seg.end() != kw_start or (seg.start() > 0 and text[seg.start() - 1].isalnum()):
        return ""
    return text[seg.start() : kw_start - 1].lower() + "_key"


def _connection_string_password(text: str, kw_start: int, low_key: str, span: Span) -> LabelledSpan | None:
    """A placeholder word that is the password of a connection string (`…;User Id=u;Password=secret;`):
    the database takes it as the password (policy in docs/logging.md: a password position)."""
    if low_key not in ("password", "pwd") or _group_text(text, span).lower() not in _PASSWORD_WORDS:
        return None
    before = text[max(0, kw_start - 200) : kw_start].rstrip(" \t")
    if not before.endswith(";") or text[span[1] : span[1] + 1] not in ("", ";", '"', "'"):
        return None
    return (span[0], span[1], "PASSWORD") if _CONNECTION_KEY.search(before) else None


_STRING_VALUE = re.compile(r"[ \t]*\\?\"(?:string_)?value\\?\"[ \t]*:[ \t]*\\?\"([^\"\\\r\n]{1,512})\\?\"")
_GO_ELEMENT = re.compile(r"[ \t]*\{?[ \t]*\"([^\"\\\r\n]{1,512})\"")


def confirm_bold_assignment(text: str, m: re.Match[str], span: Span) -> LabelledSpan | None:
    """`**Password:** p`: an assignment only when `**` opened the key, so the `**` after the colon closes it
    (`password:** p` with no opener is the main rule's, which reads `**` as part of the value)."""
    kw_start = m.start("k")
    # (bounded: a window of 50 characters before the key, each try at most 50 steps)
    if _BOLD_OPENER.search(text, max(0, kw_start - 50), kw_start) is None:
        return None
    return confirm_assignment(text, m, span)


def _go_composite_element(text: str, low_key: str, tier: str, end: int) -> LabelledSpan | None:
    """`"x-api-key":[]string{"v"}` (Go's `%#v` of gRPC metadata or http.Header): judge the first element."""
    m = _GO_ELEMENT.match(text, end)
    if m is None:
        return None
    return _judge(text, low_key, tier, m.span(1))


def label_for_field(key: str, value: str) -> str | None:
    """The placeholder label for a structured field (`extra=`, a dict) whose NAME makes it a secret."""
    low_key = key.lower()
    tier = _tier(low_key)
    if tier is None or is_placeholder(value):
        return None
    if tier == "A":
        return assignment_label(low_key)
    if len(value) < 12 or _looks_like_id_or_data(value) or v.char_classes(value) < 2:
        return None
    return "GENERIC_SECRET" if v.entropy_at_least(value, 3.0) else None


def _label_authorization(m: re.Match[str]) -> str:
    scheme = (m.group("scheme") or "").lower()
    return {"bearer": "BEARER_TOKEN", "basic": "BASIC_AUTH"}.get(scheme, "AUTHORIZATION")


_PATHISH = re.compile(r"(?:~|\.{1,2})?(?:/[A-Za-z0-9_.-]+)+/?$|[A-Za-z]:\\|\\\\")
_KEY_FILE = re.compile(r"\.(?:pem|key|crt|cer|der|p8|p12|pfx|jks|json|ya?ml|txt|asc|gpg|pub)$", re.IGNORECASE)
_HTTP_CLIENT = re.compile(r"curl|wget|http|https?://", re.IGNORECASE)


# A flag named in a sentence, not given a value: Docker's own `WARNING! Using --password via the CLI is
# insecure.` (the tenth corpus: 64 false PASSWORD findings on `via`); function words only, never a password
_FLAG_PROSE_WORDS = frozenset(("via", "on", "in", "is", "was", "for", "from", "with", "and", "or", "the", "to"))


def _confirm_flag(text: str, m: re.Match[str], span: Span) -> Span | None:
    value = _group_text(text, span)
    if is_placeholder(value) or value in _FLAG_PROSE_WORDS:
        return None
    key = m.group("k").lower()
    if (key.endswith("-key") or key == "pwd") and (_PATHISH.match(value) or _KEY_FILE.search(value)):
        return None  # `--private-key ./deploy.pem`, `--client-key client.key`, `--pwd /srv` name files
    return span


def _confirm_cli_user(text: str, m: re.Match[str], span: Span) -> Span | None:
    if m.group("v") is None:
        # `curl -u "<key>:"`: an API key sent as the user with an empty password; a plain user name stays
        span = m.span("user")
        user = _group_text(text, span)
        if len(user) < 8 or v.char_classes(user) < 3 or is_placeholder(user):
            return None
    value = _group_text(text, span)
    if is_placeholder(value) or (value.isdigit() and m.group("user").isdigit()):
        return None  # `-u 1000:1000` is a uid:gid
    line_start = text.rfind("\n", 0, m.start()) + 1
    while line_start >= 2 and text[: line_start - 1].rstrip(" \t\r").endswith("\\"):
        line_start = text.rfind("\n", 0, line_start - 1) + 1  # a continued command: `curl … \` above
    line_end = text.find("\n", span[1])
    line_end = len(text) if line_end < 0 else line_end
    on_http_line = _HTTP_CLIENT.search(text, line_start, m.start()) or _HTTP_CLIENT.search(text, span[1], line_end)
    return span if on_http_line else None


_JAAS_LINE = re.compile(r"[ \t]*user_[A-Za-z0-9_.-]{1,64}=\"[^\"\r\n]*\"[ \t]*;?[ \t]*(?:\r?\n|$)")


def _confirm_jaas_user(text: str, m: re.Match[str], span: Span) -> Span | None:
    if is_placeholder(_group_text(text, span)):
        return None
    if text.rfind("LoginModule", 0, m.start()) >= 0:
        return span
    line_start = text.rfind("\n", 0, m.start()) + 1
    return span if _JAAS_LINE.match(text, line_start) else None


def _confirm_random_password_result(text: str, m: re.Match[str], span: Span) -> Span | None:
    """The nearest Terraform `random_*` resource before the value is a `random_password` (a
    `random_integer` or `random_uuid` has a `result` too, and it is no secret)."""
    kind = text.rfind("random_", 0, m.start())
    if kind < 0 or not text.startswith("random_password", kind) or is_placeholder(_group_text(text, span)):
        return None
    return span


# The password flag's case per tool (the rule runs on lowercased text): OpenLDAP's `-w p` (`-W` prompts),
# sqlcmd/bcp `-P p` (`-p` prints statistics), MongoDB, rabbitmqadmin and `az login` `-p p`
_TOOL_FLAG = (("ldap", "-w"), ("sqlcmd", "-P"), ("bcp", "-P"))


def confirm_named_value(text: str, m: re.Match[str], span: Span) -> LabelledSpan | None:
    """A value whose key name sits in a group `k` of its own (a registry value name, a PHP serialized
    string): judged like an assignment by that name."""
    low_key = m.group("k").lower()
    tier = _tier(low_key)
    return None if tier is None else _judge(text, low_key, tier, span)


# OAuth 2.0: a `code` parameter is an authorization code only in an OAuth exchange (RFC 6749 §4.1.2, §4.1.3)
_OAUTH_CONTEXT = re.compile(r"state=|grant_type=|redirect_uri=|oauth|callback|authorize|/token", re.IGNORECASE)


def _confirm_oauth_code(text: str, m: re.Match[str], span: Span) -> Span | None:
    value = _group_text(text, span)
    if is_placeholder(value) or not any(c.isdigit() for c in value) or not any(c.isalpha() for c in value):
        return None
    line_start = text.rfind("\n", 0, span[0]) + 1
    line_end = text.find("\n", span[1])
    return span if _OAUTH_CONTEXT.search(text, line_start, len(text) if line_end < 0 else line_end) else None


def _confirm_tool_flag(text: str, m: re.Match[str], span: Span) -> Span | None:
    flag = text.rfind("-", m.start(), span[0])
    if flag < 0:
        return None
    tool = text[m.start() : m.start() + 6].lower()
    want = next((f for name, f in _TOOL_FLAG if tool.startswith(name)), "-p")
    if text[flag : flag + 2] != want:
        return None
    return _confirm_tool_argument(text, m, span)


_FOR_CLAUSE = re.compile(r"[ \t]for[ \t]", re.IGNORECASE)
_IS_WAS = re.compile(r"[ \t]+(?:is|was)[ \t]", re.IGNORECASE)


def _confirm_sql_password(text: str, m: re.Match[str], span: Span) -> Span | None:
    """Not the user of a sentence: in `the password for user 'postgres' is 'admin'` the quoted word after
    `for` is a user name (the prose rule takes `admin`); SQL's `PASSWORD FOR 'u'@'h'` is followed by `=`."""
    if _FOR_CLAUSE.search(text, m.start(), span[0]) and _IS_WAS.match(text, span[1] + 1):
        return None
    return _confirm_not_placeholder(text, m, span)


def _confirm_tool_argument(text: str, m: re.Match[str], span: Span) -> Span | None:
    value = _group_text(text, span)
    if is_placeholder(value) or value.startswith("-"):
        return None  # `rabbitmqctl add_user svc --pre-hashed-password`: a flag, not the password
    return span


def _label_set_to(m: re.Match[str]) -> str:
    return assignment_label(m.group("k"))


def _label_flag(m: re.Match[str]) -> str:
    return assignment_label(m.group("k"))


def _label_azure(m: re.Match[str]) -> str:
    return "AZURE_STORAGE_KEY" if m.group("k").lower() == "accountkey" else "AZURE_SHARED_ACCESS_KEY"


# Keys for the assignment rule: tier A (any value) and tier B (generic, high-entropy values only).
# The regex only finds `<keyword><sep>`; `full_key` then reads the whole key name backwards, and the
# confirm step decides the tier from it.
_ASSIGN_KEYS = r"pass(?:word|wd|phrase)?s?|pwd|secret|key|token|credentials?|auth|jwt|bearer|creds?"
_TIER_B_KEY = re.compile(
    r"(?:token|secret|auth|jwt|bearer|creds?|credentials?|(?:signing|encryption|master|client|app|auth|"
    r"license|account|service|storage|subscription|consumer|session|webhook|shared|admin|ssh|deploy|bot|"
    r"integration|upload|write|read|cookie|hmac|jwt|api|access|private|secret|functions?|"
    # ThingsBoard's device provisioning key (`provisionDeviceKey`), its secret's pair
    r"provision(?:[_-]?device)?)[_-]?key)$",
    re.IGNORECASE,
)


# Key names whose value is key material, which is often written in hex (an HMAC or AES key, Azure's
# `Ocp-Apim-Subscription-Key`): a 32/40/64-hex value under them is the key, not an id or a digest
# (`license_key`: New Relic's license key is 40 hex digits; `<provider>_key` from `_provider_key`)
_KEY_MATERIAL_KEY = re.compile(
    r"(?:encryption|signing|master|hmac|subscription|shared|webhook|license|facebook|fb|twitter|github|google|"
    r"linkedin|instagram|stripe|twilio|sendgrid|mailgun|postmark|newrelic|pusher|algolia|mapbox|sonar)[_-]?key$"
)

_MAX_KEY_CHARS = 64


# Everything up to and including the last non-key character: where it ends, the key name begins. Possessive,
# so one linear pass (a backwards search for the key would cost O(64^2) on long words).
_UP_TO_KEY = re.compile(r"(?:[A-Za-z0-9_.-]*+[^A-Za-z0-9_.-])*+")


def full_key(text: str, start: int, end: int) -> str:
    """The whole key name ending at `end` (`DB_PASSWORD`, `x-api-key`, `spring.datasource.password`):
    key characters back from `start`, at most 64 before `end`."""
    i = _key_run_start(text, max(0, end - _MAX_KEY_CHARS), start)
    return text[i:end].lstrip("-._").rsplit(".", 1)[-1]


def _key_run_start(text: str, lo: int, start: int) -> int:
    """The first of the key characters that end at `start`, not before `lo`."""
    if start <= lo:
        return start
    return _UP_TO_KEY.match(text, lo, start).end()  # type: ignore[union-attr]  # matches the empty string


_VALUE = (
    r"(?:\\\"(?P<v>[^\"\\\r\n]{1,512})\\\""
    # a double-quoted value without escapes is one character-class run (the whole match on an 88-character
    # key: 0.4 us, against 3.2 us repeating the unit `char or escape`); with escapes, the unit repeat,
    # possessive (a 930-character JSON-escaped PEM fails in 10 us instead of 28). Same spans both: a `"`
    # never sits where a unit starts, so giving back a unit never helps
    r"|\"(?P<v2>[^\"\\\r\n]{1,512}+(?=\")|(?:[^\"\\\r\n]|\\.){1,512}+)\"|'(?P<v3>[^'\r\n]{1,512})'"
    # backticks: Markdown-rendered messages, chat-ops bots, Go struct tags (`password: `hunter2``)
    r"|`(?P<v6>[^`\r\n]{1,512})`"
    r"|\\u00(?:22|27)(?P<v5>[^\"'\\\r\n]{1,512})\\u00(?:22|27)"
    # unquoted: up to whitespace, a quote, `,` `;` a closing bracket, or `&` that starts the next `key=`;
    # possessive (no backtracking, 4x faster than a bounded group repeat) and unbounded, so nothing of a
    # long value survives
    # a value may start with closing brackets when more value follows (`secret=)m@N~1^#`); an escaped
    # quote that no quoted branch could close (a value over 512 characters) is not a value of its own
    r"|(?!\\[\"'])(?P<v4>(?:[)\]}>]++(?=[^\s\"'`,;&)\]}><]))?(?:[^\s\"'`,;&)\]}><]++|<(?!/)|&(?![A-Za-z_][\w.-]*=))++))"
)
# (`]`: PHP's `print_r` writes `[password] => x`)
ASSIGNMENT_HINT = r"(?:" + _ASSIGN_KEYS + r")(?:\\?[\"'])?[ \t]*(?:=>|:=|[:=])"
ASSIGNMENT_PATTERN = r"(?P<k>" + _ASSIGN_KEYS + r")(?:\\?[\"'])?[ \t]*(?P<sep>=>|:=|[:=])[ \t]*" + _VALUE
# PHP's `print_r` (`[password] => x`) and Markdown bold (`- **Password**: x`): a rule of its own, gated by its
# literals; `[\]*]{0,2}` in ASSIGNMENT_HINT made every clean line's Hyperscan scan ~1 us slower (2.4 -> 3.4 us)
_BRACKETED_ASSIGNMENT_HINT = r"(?:" + _ASSIGN_KEYS + r")(?:\]|\*\*)[ \t]*(?:=>|:=|[:=])"
_BRACKETED_ASSIGNMENT_PATTERN = r"(?P<k>" + _ASSIGN_KEYS + r")(?:\]|\*\*)[ \t]*(?P<sep>=>|:=|[:=])[ \t]*" + _VALUE
# Markdown bold with the colon inside (`- **Password:** p`): the closing `**` is skipped only when the key was
# opened with `**` (`confirm_bold_assignment`): skipping `**` after any separator swallowed real passwords that
# start with `**` (`password: **x`, the red-team corpus)
_BOLD_COLON_ASSIGNMENT_HINT = r"(?:" + _ASSIGN_KEYS + r"):\*\*"
_BOLD_COLON_ASSIGNMENT_PATTERN = r"(?P<k>" + _ASSIGN_KEYS + r")(?P<sep>:)\*\*[ \t]*" + _VALUE
# A full-width colon or equals sign (U+FF1A, U+FF1D: CJK input methods) after an English key (`password` then
# U+FF1A then the value; the foreign-word rule below takes them after `パスワード`): gated by the two characters
_FULL_WIDTH_SEP = "\uff1a|\uff1d"  # (the characters themselves: the prefilter turns them into UTF-8 bytes)
# (the separators alone: a hint led by the key alternation cost the mix ~6% of its throughput)
_FULL_WIDTH_ASSIGNMENT_HINT = _FULL_WIDTH_SEP
_FULL_WIDTH_ASSIGNMENT_PATTERN = (
    r"(?P<k>" + _ASSIGN_KEYS + r")(?:\\?[\"'])?[ \t]*(?P<sep>" + _FULL_WIDTH_SEP + r")[ \t]*" + _VALUE
)
# The bold opener before a key: `**` then at most 48 word characters and spaces (`**DB password:**`). Also a
# `**` that CommonMark would read as closing an earlier bold (`**a** password:** x`): a leak costs more there
_BOLD_OPENER = re.compile(r"\*\*[A-Za-z0-9 _.-]{0,48}$")
# The same with the key's closing quote written `\u0022`/`\u0027` (System.Text.Json output nested in JSON).
# A rule of its own: an optional escape in ASSIGNMENT_HINT made every line's Hyperscan scan 0.3 us slower
# (start-of-match tracking); this one is gated by the escape literal and searched only where it occurs.
# `, value` on one line, or the next line of a YAML list item (`- name: DB_PASSWORD` / `  value: p`, the
# Kubernetes env of `kubectl get deploy -o yaml`)
_NAME_VALUE_ANCHOR = r"(?:" + _ASSIGN_KEYS + r")(?:\\?[\"'])?[ \t]*(?:,|\r?\n)"
_KEY_VALUE_WORD_ANCHOR = r"(?:" + _ASSIGN_KEYS + r")(?:\\?[\"'])?[ \t]+value(?:\\?[\"'])?[ \t]*[:=]"
ESCAPED_ASSIGNMENT_HINT = r"\\u00(?:22|27)[ \t]*(?:=>|:=|[:=])"
ESCAPED_ASSIGNMENT_PATTERN = r"(?P<k>" + _ASSIGN_KEYS + r")\\u00(?:22|27)[ \t]*(?P<sep>=>|:=|[:=])[ \t]*" + _VALUE
_KEY_BASE_HINT = r"key[_-]?base(?:\\?[\"'])?[ \t]*(?:=>|:=|[:=])"
_KEY_BASE_PATTERN = r"(?P<k>key[_-]?base)(?:\\?[\"'])?[ \t]*(?P<sep>=>|:=|[:=])[ \t]*" + _VALUE
_ASSIGN_KEYWORDS = (
    "pass", "pwd", "secret", "key", "token", "credential", "auth", "jwt", "bearer", "cred",
)  # fmt: skip
# `passwort=`, `contraseña:`, `パスワード` and a full-width colon (U+FF1A, CJK text): a rule of its own, gated by
# its literals, so the main assignment rule's scan is unchanged. The key is already a whole word here.
_FOREIGN_ASSIGNMENT_PATTERN = (
    r"(?P<k>" + _OTHER_LANGUAGE_WORDS + r")(?:\\?[\"'])?[ \t]*(?P<sep>=>|:=|[:=]|\uff1a|\uff1d)[ \t]*" + _VALUE
)
_FOREIGN_KEYWORDS = (
    "passwort", "kennwort", "passe", "contrase", "senha", "wachtwoord", "senord", "haslo", "hasło", "jelsz",
    "heslo", "adgangskode", "passord", "salasana", "parola", "пароль", "パスワード", "密码", "密碼", "口令", "비밀번호",
)  # fmt: skip


def confirm_encoded_assignment(text: str, m: re.Match[str], span: Span) -> LabelledSpan | None:
    """An assignment whose quotes or `=` arrive encoded (HTML `&quot;`, URL `%3D`): judged as a plain one,
    by its whole key name."""
    kw_start, kw_end = m.span("k")
    low_key = full_key(text, kw_start, kw_end).lower()
    tier = _tier(low_key)
    return None if tier is None else _judge(text, low_key, tier, span)


_PROSE_SYMBOLS = frozenset("!@#$%^&*+=?~_/\\|")
# What a sentence says a password is, quoted: a state, not the password
_PROSE_WORDS = frozenset(
    (
        "required", "expired", "invalid", "incorrect", "wrong", "correct", "empty", "missing", "changed", "reset",
        "weak", "strong", "valid", "blank", "same", "different", "unknown", "secure", "insecure", "protected",
        "saved", "stored", "encrypted", "hashed", "optional", "mandatory", "disabled", "enabled", "locked",
        "unlocked", "good", "okay", "fine", "none", "null", "hidden", "masked", "redacted",
    )
)  # fmt: skip


def confirm_prose_password(text: str, m: re.Match[str], span: Span) -> Span | None:
    """`the password is hunter2`: only a value no sentence would have — letters with digits or symbols, or
    six or more digits — so `password is required/expired/too short` stays."""
    start, end = span
    while m.group("v3") is not None and end > start and text[end - 1] in ".,;:!?)":
        end -= 1  # unquoted, it may end a sentence
    value = text[start:end]
    if len(value) < 4 or is_placeholder(value):
        return None
    letters = any(ch.isalpha() for ch in value)
    digits = any(ch.isdigit() for ch in value)
    if (letters and (digits or any(ch in _PROSE_SYMBOLS for ch in value))) or (value.isdigit() and len(value) >= 6):
        return (start, end)
    if (
        m.group("v3") is None
        and m.group("k").lower().startswith("pass")
        and value.replace("-", "").isalpha()
        and value.lower() not in _PROSE_WORDS
    ):
        return (start, end)  # quoted, a word is the password: `the default password is 'blooberry'`
    return None


_HTML_QUOTE = r"(?:&quot;|&#34;|&#x22;|&#39;|&#x27;|&apos;)"  # a quote, HTML-escaped
_AUTH_PARAM = r"[a-z0-9_-]+=(?:\\?\"[^\"\r\n]*\"|[^\s,\"]+)"  # `name="value"` or `name=value` (RFC 7235)
TOK = "A-Za-z0-9"
_W: str = TOK + "_"  # left guard: a token must not continue a word
_WD: str = _W + "-"


def _provider(
    name: str, label: str, pattern: str, *keywords: str, guard: str = _W, confirm: Confirm | None = None
) -> Rule:
    return Rule(name, label, pattern, keywords, priority=90, confirm=confirm, left_guard=guard)


# A token body `[C]{m,n}` followed by `(?![C])` is possessive (`{m,n}+`): giving back characters can never
# help (the next character is in C again), and without it a long run of C costs n steps per occurrence of
# the prefix (`sk-sk-sk-…`: 3.4 us per byte, measured). Exact, and bounded on hostile input.
# Patterns start with their literal prefix (so `re` finds candidates with a fast literal search) and keep
# the "not inside a longer word" check as `left_guard`, which the engine applies: a leading lookbehind
# would cost 3-5x on every line that reaches the rule (measured, CPython 3.11).
# A password argument: quoted, or a shell word
_ARG_VALUE = r"(?:'(?P<v>[^'\r\n]+)'|\"(?P<v2>[^\"\r\n]+)\"|(?P<v3>[^\s'\"]+))"
_SMB_TOOLS = r"smbclient|rpcclient|smbmap|smbcacls|net[ \t]+(?:rpc|ads)"


_NETRC_SEP = r"(?:[ \t]+|[ \t]*\r?\n[ \t]*)"  # fields on one line, or one a line

# The rules written from the public rule sets' examples and the tenth corpus's developer-tooling rules live
# in modules of their own, which build them from the helpers above: imported here, after those helpers,
# because those modules import them from this one
from cleanroom.scrubbers._redact_rules_devtools import DEVTOOLS_RULES  # noqa: E402
from cleanroom.scrubbers._redact_rules_external import EXTERNAL_RULES  # noqa: E402
from cleanroom.scrubbers._redact_rules_prose import PROSE_RULES  # noqa: E402

SECRET_RULES: tuple[Rule, ...] = (
    # ---- private keys ------------------------------------------------------------------------------------
    Rule(
        "private-key-pem",
        "PRIVATE_KEY",
        r"-----BEGIN[ A-Z0-9]{0,30}PRIVATE KEY(?: BLOCK)?-----(?:[\s\S]{0,20000}?-----END[ A-Z0-9]{0,30}"
        r"PRIVATE KEY(?: BLOCK)?-----|(?:\\[nr]|[A-Za-z0-9+/=\s:,.-]){0,20000})",
        ("private key",),
        priority=100,
        hint=r"-----BEGIN[ A-Z0-9]{0,30}PRIVATE KEY(?: BLOCK)?-----",
    ),
    Rule("age-secret-key", "PRIVATE_KEY", r"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}",
         ("age-secret-key-1",), priority=100),
    # ---- provider tokens with unambiguous prefixes ----------------------------------------------------
    _provider("aws-access-key-id", "AWS_ACCESS_KEY_ID",
              rf"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{{16}}(?![{TOK}])",
              "akia", "asia", "abia", "acca", "a3t", guard=TOK),
    _provider("gcp-api-key", "GCP_API_KEY", rf"AIza[{TOK}_-]{{33,40}}+(?![{TOK}_-])", "aiza", guard=_WD),
    _provider("gcp-oauth-secret", "GCP_OAUTH_SECRET", rf"GOCSPX-[{TOK}_-]{{28}}+(?![{TOK}_-])", "gocspx-"),
    _provider("gcp-access-token", "GCP_ACCESS_TOKEN", rf"ya29\.[{TOK}_-]{{20,}}", "ya29."),
    _provider("azure-ad-client-secret", "AZURE_CLIENT_SECRET",
              r"[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.-]{31,34}+(?![A-Za-z0-9_~.-])", "q~", guard=_WD + "~."),
    _provider("github-token", "GITHUB_TOKEN", rf"gh[pousr]_[{TOK}]{{36,251}}+(?![{TOK}_])",
              "ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
    _provider("github-fine-grained-pat", "GITHUB_TOKEN", rf"github_pat_[{TOK}_]{{22,255}}+(?![{TOK}_])",
              "github_pat_"),
    _provider("gitlab-token", "GITLAB_TOKEN",
              r"gl(?:pat|dt|ptt|rt|cbt|imt|oas|soat|ffct|agent|ft)-[A-Za-z0-9_-]{20,300}+(?:\.[0-9a-z]{2,12}){0,2}"
              r"(?![A-Za-z0-9_-])",
              "glpat-", "gldt-", "glptt-", "glrt-", "glcbt-", "glimt-", "gloas-", "glsoat-", "glffct-",
              "glagent-", "glft-", guard=_WD),
    _provider("gitlab-runner-registration", "GITLAB_TOKEN", r"GR1348941[A-Za-z0-9_-]{20,}", "gr1348941"),
    _provider("slack-token", "SLACK_TOKEN", r"xox[abposer](?:\.xox[a-z])?-[A-Za-z0-9-]{10,250}+(?![A-Za-z0-9_-])",
              "xox", guard=_WD, confirm=_confirm_has_digit),
    _provider("slack-app-token", "SLACK_TOKEN", r"xapp-\d-[A-Za-z0-9-]{10,250}", "xapp-", guard=_WD),
    _provider("slack-webhook", "SLACK_WEBHOOK",
              r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<v>[A-Za-z0-9_/-]{20,})",
              "hooks.slack.com", guard=""),
    _provider("stripe-key", "STRIPE_KEY", rf"[rs]k_(?:live|test|prod)_[{TOK}]{{10,247}}+(?![{TOK}_])",
              "sk_live_", "sk_test_", "sk_prod_", "rk_live_", "rk_test_", "rk_prod_"),
    _provider("stripe-webhook-secret", "STRIPE_WEBHOOK_SECRET", rf"whsec_[{TOK}]{{24,}}", "whsec_"),
    _provider("anthropic-api-key", "ANTHROPIC_API_KEY",
              r"sk-ant-(?:[a-z]{2,8}\d{2}-)?[A-Za-z0-9_-]{20,400}+(?![A-Za-z0-9_-])", "sk-ant-", guard=_WD),
    _provider("openai-api-key", "OPENAI_API_KEY",
              r"sk-(?!ant-)(?:(?:proj|svcacct|admin|None)-)?[A-Za-z0-9_-]{20,400}+(?![A-Za-z0-9_-])", "sk-",
              guard=_WD, confirm=_confirm_openai),
    _provider("huggingface-token", "HUGGINGFACE_TOKEN", rf"(?:hf_|api_org_)[{TOK}]{{30,40}}+(?![{TOK}_])",
              "hf_", "api_org_", confirm=_confirm_mixed_letters),
    _provider("npm-token", "NPM_TOKEN", rf"npm_[{TOK}]{{36}}+(?![{TOK}_])", "npm_"),
    _provider("sendgrid-api-key", "SENDGRID_API_KEY",
              r"SG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{30,50}+(?![A-Za-z0-9_-])", "sg.", guard=_WD + "."),
    _provider("cleanroom-api-key", "CLEANROOM_API_KEY", rf"cr_[{TOK}]{{36}}+(?![{TOK}_])", "cr_"),
    _provider("pypi-token", "PYPI_TOKEN", r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}", "pypi-ageichlwas5vcmc"),
    _provider("digitalocean-token", "DIGITALOCEAN_TOKEN", r"do[opr]_v1_[a-f0-9]{64}", "doo_v1_", "dop_v1_",
              "dor_v1_"),
    _provider("shopify-token", "SHOPIFY_TOKEN", r"shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}", "shpat_", "shpca_",
              "shppa_", "shpss_"),
    _provider("databricks-token", "DATABRICKS_TOKEN", r"dapi[a-f0-9]{32}(?:-\d)?", "dapi", guard=TOK),
    _provider("vault-token", "VAULT_TOKEN", r"hv[sb]\.[A-Za-z0-9_-]{24,}", "hvs.", "hvb.", guard=TOK),
    _provider("grafana-token", "GRAFANA_TOKEN",
              r"gl(?:sa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}|c_[A-Za-z0-9+/]{32,}={0,2})", "glsa_", "glc_"),
    _provider("postman-key", "POSTMAN_API_KEY", r"PMAK-[a-fA-F0-9]{24}-[a-fA-F0-9]{34}", "pmak-"),
    _provider("linear-key", "LINEAR_API_KEY", r"lin_api_[A-Za-z0-9]{40}", "lin_api_"),
    _provider("groq-key", "GROQ_API_KEY", r"gsk_[A-Za-z0-9]{48,56}", "gsk_"),
    _provider("replicate-token", "REPLICATE_TOKEN", r"r8_[A-Za-z0-9]{37}+(?![A-Za-z0-9_])", "r8_"),
    _provider("docker-pat", "DOCKER_TOKEN", r"dckr_pat_[A-Za-z0-9_-]{27,}", "dckr_pat_"),
    _provider("sentry-token", "SENTRY_TOKEN", r"sntry[su]_[A-Za-z0-9+/=_]{40,}", "sntrys_", "sntryu_"),
    _provider("atlassian-token", "ATLASSIAN_TOKEN", r"ATATT3[A-Za-z0-9_=-]{150,}", "atatt3"),
    _provider("mailgun-key", "MAILGUN_API_KEY", r"key-[a-f0-9]{32}(?![A-Za-z0-9])", "key-", guard=_WD),
    _provider("telegram-bot-token", "TELEGRAM_BOT_TOKEN", r"\d{8,10}:AA[A-Za-z0-9_-]{33}", ":aa",
              guard="0123456789"),
    _provider("square-token", "SQUARE_TOKEN", r"sq0(?:atp|csp)-[A-Za-z0-9_-]{22,43}", "sq0atp-", "sq0csp-"),
    # ---- more providers (formats from their documentation and public rule sets; see module docstring) ------
    _provider("twilio-api-key", "TWILIO_API_KEY", r"SK[0-9a-fA-F]{32}(?![0-9A-Za-z])", "sk", guard=TOK),
    _provider("mailchimp-api-key", "MAILCHIMP_API_KEY", r"[0-9a-f]{32}-us\d{1,2}(?![0-9A-Za-z])", "-us",
              guard=TOK),
    # New Relic: user/admin keys `NRAK-`/`NRAA-` + 27 (upper case, or hex in older admin keys), browser
    # `NRJS-`, and the 40-character ingest license key that ends in `NRAL` (Nosey Parker's examples)
    _provider("new-relic-key", "NEW_RELIC_KEY",
              r"NR(?:AK|II|AA)-(?:[A-Z0-9]{27}|[a-f0-9]{27})(?![A-Za-z0-9])|NRJS-[a-f0-9]{19}",
              "nrak-", "nrii-", "nraa-", "nrjs-"),
    _provider("new-relic-license-key", "NEW_RELIC_KEY", r"[a-z0-9]{36}NRAL(?![A-Za-z0-9])", "nral", guard=TOK),
    _provider("pulumi-token", "PULUMI_TOKEN", r"pul-[a-f0-9]{40}(?![A-Za-z0-9])", "pul-", guard=_WD),
    # a Doppler service token names its config: `dp.st.dev.<40-44>`
    _provider("doppler-token", "DOPPLER_TOKEN",
              r"dp\.(?:pt|st|sa|ct|scim|audit)\.(?:[a-z0-9_-]{1,32}\.)?[A-Za-z0-9]{40,44}", "dp."),
    _provider("fly-token", "FLY_TOKEN", r"(?:fo1_[A-Za-z0-9_-]{39,43}|fm[12][ar]?_[A-Za-z0-9+/=_-]{100,})", "fo1_",
              "fm1a_", "fm1r_", "fm2_"),
    _provider("supabase-token", "SUPABASE_TOKEN", r"sb(?:p|_secret)_[A-Za-z0-9_-]{32,64}+(?![A-Za-z0-9_-])", "sbp_",
              "sb_secret_"),
    _provider("planetscale-token", "PLANETSCALE_TOKEN", r"pscale_(?:tkn|pw|oauth)_[A-Za-z0-9_=.-]{32,64}",
              "pscale_"),
    _provider("notion-token", "NOTION_TOKEN", r"(?:secret_[A-Za-z0-9]{43}|ntn_\d{11}[A-Za-z0-9]{35})(?![A-Za-z0-9])",
              "secret_", "ntn_", confirm=_confirm_random),
    _provider("mapbox-secret-token", "MAPBOX_TOKEN", r"sk\.eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}", "sk.eyj"),
    _provider("dropbox-token", "DROPBOX_TOKEN", r"sl\.[A-Za-z0-9_=-]{60,200}+(?![A-Za-z0-9_=-])", "sl.",
              guard=_WD + ".", confirm=_confirm_random),
    _provider("facebook-token", "FACEBOOK_TOKEN", r"EAA[A-Za-z0-9]{40,}+(?![A-Za-z0-9])", "eaa", guard=TOK,
              confirm=_confirm_random),
    _provider("twitter-bearer-token", "TWITTER_BEARER_TOKEN", r"A{20}[A-Za-z0-9%]{32,}+(?![A-Za-z0-9%])",
              "aaaaaaaaaaaaaaaaaaaa", guard=TOK, confirm=_confirm_random_after_padding),
    _provider("discord-webhook", "DISCORD_WEBHOOK",
              r"discord(?:app)?\.com/api/webhooks/\d+/(?P<v>[A-Za-z0-9_-]{60,70})", "discord", guard=""),
    # (`%`: the `@` between the two GUIDs arrives URL-encoded, `%40`, or twice, `%2540`, in Markdown links)
    _provider("teams-webhook", "TEAMS_WEBHOOK",
              r"(?:webhook\.office\.com/webhookb2|outlook\.office\.com/webhook)/(?P<v>[A-Za-z0-9@%/_-]{40,})",
              "webhook.office.com", "outlook.office.com/webhook", guard=""),
    _provider("zapier-webhook", "ZAPIER_WEBHOOK", r"hooks\.zapier\.com/hooks/catch/(?P<v>\d+/[A-Za-z0-9]+)",
              "hooks.zapier.com", guard=""),
    _provider("okta-token", "OKTA_TOKEN", r"SSWS[ \t]+(?P<v>00[A-Za-z0-9_-]{38,40})(?![A-Za-z0-9_-])", "ssws"),
    _provider("shippo-token", "SHIPPO_TOKEN", r"shippo_(?:live|test)_[a-f0-9]{40}", "shippo_"),
    _provider("linear-oauth", "LINEAR_API_KEY", r"lin_oauth_[a-f0-9]{64}", "lin_oauth_"),
    _provider("xai-api-key", "XAI_API_KEY", r"xai-[A-Za-z0-9]{70,90}+(?![A-Za-z0-9])", "xai-", guard=_WD),
    # Fireworks AI `fw_` + 24 base62 (too short for the random-token rule's 32)
    _provider("fireworks-api-key", "FIREWORKS_API_KEY", r"fw_[A-Za-z0-9]{20,40}+(?![A-Za-z0-9_])", "fw_",
              confirm=_confirm_random),
    # Weights & Biases keys are 40 hex digits (`local-` + 40 on a self-hosted server) with no prefix: after
    # `wandb login [--relogin] KEY` and in `wandb.login(key="KEY")` (notebooks)
    Rule("wandb-login", "WANDB_API_KEY",
         r"wandb(?:[ \t]+login(?:[ \t]+--?[a-z-]+(?:=[^\s'\"]+)?){0,4}[ \t]+['\"]?"
         r"|\.login\([^)\r\n]{0,80}?\bkey[ \t]*=[ \t]*['\"])(?P<v>(?:local-)?[a-f0-9]{40})(?![A-Za-z0-9])",
         ("wandb",), priority=90),
    _provider("perplexity-api-key", "PERPLEXITY_API_KEY", r"pplx-[A-Za-z0-9]{40,56}+(?![A-Za-z0-9])", "pplx-",
              guard=_WD),
    _provider("rubygems-token", "RUBYGEMS_TOKEN", r"rubygems_[a-f0-9]{48}", "rubygems_"),
    _provider("alibaba-access-key", "ALIBABA_ACCESS_KEY_ID", r"LTAI[A-Za-z0-9]{12,20}+(?![A-Za-z0-9])", "ltai",
              guard=TOK, confirm=_confirm_has_digit),
    _provider("contentful-token", "CONTENTFUL_TOKEN", r"CFPAT-[A-Za-z0-9_-]{43}", "cfpat-"),
    _provider("dynatrace-token", "DYNATRACE_TOKEN", r"dt0[a-z]\d{2}\.[A-Z0-9]{24}\.[A-Z0-9]{64}", "dt0"),
    _provider("easypost-key", "EASYPOST_API_KEY", r"EZ[AT]K[A-Za-z0-9]{54}", "ezak", "eztk", guard=TOK),
    _provider("figma-token", "FIGMA_TOKEN", r"figd_[A-Za-z0-9_-]{40,}", "figd_"),
    _provider("frameio-token", "FRAMEIO_TOKEN", r"fio-u-[A-Za-z0-9_=-]{64}", "fio-u-"),
    _provider("jfrog-key", "JFROG_API_KEY", r"AKCp[A-Za-z0-9]{69}+(?![A-Za-z0-9])", "akcp", guard=TOK),
    _provider("openshift-token", "OPENSHIFT_TOKEN", r"sha256~[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])", "sha256~"),
    _provider("plaid-token", "PLAID_TOKEN",
              r"access-(?:sandbox|development|production)-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
              "access-sandbox-", "access-development-", "access-production-"),
    _provider("prefect-token", "PREFECT_TOKEN", r"pnu_[A-Za-z0-9]{36}", "pnu_"),
    _provider("readme-key", "README_API_KEY", r"rdme_[a-z0-9]{70}", "rdme_"),
    _provider("brevo-key", "BREVO_API_KEY", r"xkeysib-[a-f0-9]{64}-[A-Za-z0-9]{16}", "xkeysib-"),
    _provider("typeform-token", "TYPEFORM_TOKEN", r"tfp_[A-Za-z0-9_.=-]{59}", "tfp_"),
    _provider("clojars-token", "CLOJARS_TOKEN", r"CLOJARS_[a-z0-9]{60}", "clojars_"),
    _provider("duffel-token", "DUFFEL_TOKEN", r"duffel_(?:test|live)_[A-Za-z0-9_=-]{43}", "duffel_"),
    _provider("flutterwave-key", "FLUTTERWAVE_KEY", r"FLW(?:SECK|PUBK)(?:_TEST)?-[a-h0-9]{32}-X", "flwseck", "flwpubk"),
    _provider("hubspot-token", "HUBSPOT_TOKEN",
              r"pat-(?:na|eu)\d-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "pat-na", "pat-eu"),
    _provider("nuget-key", "NUGET_API_KEY", r"oy2[a-z0-9]{43}(?![a-z0-9])", "oy2", guard=TOK),
    _provider("onepassword-token", "ONEPASSWORD_TOKEN", r"ops_eyJ[A-Za-z0-9+/=_-]{100,}", "ops_eyj"),
    _provider("sourcegraph-token", "SOURCEGRAPH_TOKEN", r"sgp_(?:[a-f0-9]{16}_|local_)?[a-f0-9]{40}", "sgp_"),
    # 1Password account secret key (`A3-` + account id + 26 characters in dashed groups) and 42 School
    # (intra) OAuth client secrets `s-s4t2ud-`/`s-s4t2af-` + 64 hex (gitleaks' examples)
    _provider("onepassword-secret-key", "ONEPASSWORD_TOKEN",
              r"A3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5}"
              r"(?![A-Za-z0-9])", "a3-", guard=_WD,
              confirm=_confirm_digit_after_prefix),
    _provider("intra42-secret", "INTRA42_SECRET", r"s-s4t2(?:ud|af)-[a-f0-9]{64}(?![A-Za-z0-9])", "s-s4t2",
              guard=_WD),
    # Bundler's per-host credentials `BUNDLE_<HOST>=user:password` (`__` stands for a dot in the host:
    # `BUNDLE_ENTERPRISE__CONTRIBSYS__COM`, Sidekiq Enterprise's gem server); `BUNDLE_PATH: vendor` has no `__`
    Rule("bundler-credentials", "PASSWORD",
         r"bundle_[a-z0-9_]*?__[a-z0-9_]+[\"']?[ \t]*[:=][ \t]*[\"']?[^\s:\"']{1,64}:(?P<v>[^\s\"']+)",
         ("bundle_",), caseless=True, priority=60, left_guard=_W),
    _provider("tailscale-key", "TAILSCALE_KEY",
              r"tskey-(?:api|auth|client|scim|webhook)-[A-Za-z0-9]{6,}-[A-Za-z0-9]{20,}", "tskey-"),
    _provider("harness-token", "HARNESS_TOKEN", r"pat\.[A-Za-z0-9_-]{22}\.[a-f0-9]{24}\.[A-Za-z0-9]{20}", "pat."),
    _provider("scalingo-token", "SCALINGO_TOKEN", r"tk-us-[A-Za-z0-9_-]{48}", "tk-us-"),
    _provider("octopus-key", "OCTOPUS_API_KEY", r"API-[A-Z0-9]{26,32}+(?![A-Za-z0-9])", "api-", guard=_WD,
              confirm=_confirm_has_digit),
    _provider("heroku-token", "HEROKU_TOKEN", r"HRKU-[A-Za-z0-9_-]{60}", "hrku-"),
    _provider("cloudflare-origin-ca", "CLOUDFLARE_ORIGIN_CA_KEY", r"v1\.0-[a-f0-9]{24}-[a-f0-9]{146}", "v1.0-"),
    _provider("adafruit-key", "ADAFRUIT_KEY", r"aio_[A-Za-z]{4}\d{2}[A-Za-z0-9]{22}", "aio_"),
    _provider("airtable-token", "AIRTABLE_TOKEN", r"pat[A-Za-z0-9]{14}\.[a-f0-9]{64}", "pat", guard=TOK),
    _provider("bitbucket-token", "BITBUCKET_TOKEN", r"ATBB[A-Za-z0-9_=.-]{32,}", "atbb", guard=TOK),
    _provider("netlify-token", "NETLIFY_TOKEN", r"nfp_[A-Za-z0-9]{36}", "nfp_"),
    _provider("render-key", "RENDER_API_KEY", r"rnd_[A-Za-z0-9]{32}", "rnd_"),
    _provider("langsmith-key", "LANGSMITH_API_KEY", r"lsv2_(?:pt|sk)_[a-f0-9]{32}_[a-f0-9]{10}", "lsv2_"),
    # LangSmith's legacy keys: `ls__` + 32 hex
    _provider("langsmith-legacy-key", "LANGSMITH_API_KEY", r"ls__[a-f0-9]{32}+(?![A-Za-z0-9_])", "ls__"),
    _provider("pinecone-key", "PINECONE_API_KEY", r"pcsk_[A-Za-z0-9]{5,6}_[A-Za-z0-9]{60,}", "pcsk_"),
    _provider("resend-key", "RESEND_API_KEY", r"re_[A-Za-z0-9]{8}_[A-Za-z0-9]{24}(?![A-Za-z0-9_])", "re_",
              confirm=_confirm_random),
    _provider("firebase-fcm-key", "FIREBASE_SERVER_KEY", r"AAAA[A-Za-z0-9_-]{7}:APA91b[A-Za-z0-9_-]{100,}", ":apa91b",
              guard=TOK),
    _provider("google-refresh-token", "GCP_REFRESH_TOKEN", r"1//0[A-Za-z0-9_-]{40,}", "1//0", guard=TOK + "/"),
    Rule("discord-bot-token", "DISCORD_TOKEN",
         r"[MNO][A-Za-z0-9_-]{23,27}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,40}+(?![A-Za-z0-9_-])", (), priority=85,
         confirm=_confirm_discord_token, left_guard=_WD + "."),
    Rule("jwt", "JWT", r"eyJ[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]*){2,4}", ("eyj",), priority=85,
         confirm=_confirm_jwt, left_guard=_WD),
    # ---- cloud secrets that need their context ------------------------------------------------------------
    Rule("aws-secret-access-key", "AWS_SECRET_ACCESS_KEY",
         r"(?:aws)?[_. -]?secret[_. -]?(?:access)?[_. -]?key(?:\\?[\"'])?[ \t]*(?:=>|:=|[:=])[ \t]*"
         r"(?:\\?[\"'])?(?P<v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])", ("secret",), caseless=True, priority=80,
         anchor=r"(?:aws)?[_. -]?secret"),
    Rule("aws-secret-access-key-near-aws", "AWS_SECRET_ACCESS_KEY",
         r"(?i:aws)[^\n]{0,300}?(?<![A-Za-z0-9/+=])(?P<v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])", ("aws",),
         priority=75, confirm=_confirm_aws_secret_standalone, anchor=r"(?i)aws"),
    Rule("azure-connection-key", "AZURE_STORAGE_KEY",
         r"(?P<k>accountkey|sharedaccesskey|sharedsecretvalue)[ \t]*=[ \t]*(?P<v>[A-Za-z0-9+/]{20,}={0,2})",
         ("accountkey", "sharedaccesskey", "sharedsecretvalue"), caseless=True, priority=80,
         label_of=_label_azure, anchor=r"(?:accountkey|sharedaccesskey|sharedsecretvalue)"),
    Rule("azure-sas-signature", "AZURE_SAS_TOKEN", r"[?&;]sig=(?P<v>[A-Za-z0-9%+/=_-]{16,})", ("sig=",),
         caseless=True, priority=80),
    Rule("azure-storage-key-standalone", "AZURE_STORAGE_KEY",
         r"(?P<v>[A-Za-z0-9+/]{86}==)(?![A-Za-z0-9+/=])", ("==",), priority=70, confirm=_confirm_base64_key,
         left_guard=TOK + "+/"),
    # ---- HTTP credentials -----------------------------------------------------------------------------------
    Rule("authorization-header", "AUTHORIZATION",
         # the value may sit in brackets (`authorization=[Bearer x]`, a list-valued header dump)
         r"(?:proxy-)?authorization(?:\\?[\"'])?[ \t]*[:=][ \t]*(?:\\?[\"']|[\[(<])?(?:(?P<scheme>bearer|basic|token|"
         r"digest|negotiate|ntlm|apikey|api-key|bot|sso-key|aws4-hmac-sha256|hmac|dpop|ssws|sharedkey|sharedkeylite|"
         r"splunk|key|mac|signature|gitlab|otoken|oauth|hawk)[ \t]+"
         # any other scheme word before a credential (`Api-Token 22cb…`, RFC 7235 `auth-scheme token68`)
         r"|[a-z][a-z0-9-]{1,30}[ \t]+(?=[a-z0-9._~+/-]{8,}))?"
         # (`;` inside later parameters: AWS SigV4's `SignedHeaders=host;x-amz-date, Signature=...`)
         r"(?P<v>[^\s\"',;\\\])>]+(?:[ \t]*,[ \t]*[A-Za-z]+=[^\s\"',\\\])>]+)*)",
         ("authorization",), caseless=True, priority=70, confirm=_confirm_authorization_value,
         label_of=_label_authorization, anchor=r"(?:proxy-)?authorization"),
    Rule("bearer-token", "BEARER_TOKEN", r"bearer[ \t]+(?P<v>[A-Za-z0-9._~+/%-]{8,}=*)", ("bearer",),
         caseless=True, priority=65, confirm=_confirm_bearer, left_guard=_WD),
    Rule("basic-credentials", "BASIC_AUTH", r"basic[ \t]+(?P<v>[A-Za-z0-9+/]{6,}+={0,2}+)(?![A-Za-z0-9+/=])",
         ("basic",), caseless=True, priority=65, confirm=_confirm_basic, left_guard=_WD),
    Rule("cookie-header", "COOKIE",
         r"(?:set-)?cookie(?:\\?[\"'])?[ \t]*:[ \t]*(?:\\?[\"'])?(?P<v>[^\r\n\"'\\]+)",
         ("cookie",), caseless=True, priority=60, confirm=_confirm_not_placeholder, left_guard=_WD,
         anchor=r"(?:set-)?cookie"),
    # A credential as the whole user-info of a URL, with no password after it: Sentry DSNs
    # (`https://<32 hex>@o1.ingest.sentry.io/2`), `https://<token>@host/repo.git` clones. Only a value that
    # looks random (a 32+ hex key, or mixed case and digits), so `ssh://git@host` and names stay
    Rule("url-userinfo-token", "SECRET",
         r"://(?P<v>[A-Za-z0-9_-]{20,128})@(?=[A-Za-z0-9])", ("://",), priority=65,
         confirm=_confirm_userinfo_token),
    Rule("url-password", "PASSWORD",
         r"://[^\s:/?#@\"'<>\[\]]{0,128}:(?P<v>[^\s/?#\"'<>]{1,256})@(?=[^\s/?#@\"'<>])", ("://",),
         priority=70, confirm=_confirm_password_position),
    # Oracle connect strings put the password after a slash: `jdbc:oracle:thin:app/p@//host:1521/ORCL`,
    # `sqlplus -s scott/tiger@orcl`, `expdp userid=system/p@db`
    Rule("oracle-connect-password", "PASSWORD",
         r"(?:jdbc:oracle:(?:thin|oci8?):|sqlplus(?:[ \t]+-[A-Za-z]+)*[ \t]+|userid=)"
         r"[\"']?[A-Za-z0-9_$#.]{1,128}/(?P<v>[^\s/@\"']{1,256})@",
         ("oracle:thin:", "oracle:oci", "sqlplus", "userid="), caseless=True, priority=70,
         confirm=_confirm_not_placeholder, left_guard=_W,
         hint=r"(?:oracle:(?:thin|oci8?):|sqlplus[ \t]|userid=)[^\n]*/[^\n]*@"),
    # Kafka JAAS `PlainLoginModule required username="u" password="p" user_alice="p2";`: every
    # `user_<name>` is a user's password (in the same text as the LoginModule, or a line of a JAAS file
    # holding nothing else)
    Rule("jaas-user-password", "PASSWORD", r"user_[A-Za-z0-9_.-]{1,64}=\"(?P<v>[^\"\r\n]{1,256})\"", ("user_",),
         priority=60, confirm=_confirm_jaas_user, left_guard=_WD, hint=r"user_[A-Za-z0-9_.-]{1,64}=\""),
    # Terraform state: a `random_password` resource's `"result"` is the generated password (sensitive in
    # state, printed by `terraform show -json` and state dumps)
    Rule("terraform-random-password", "PASSWORD", r"\"result\"[ \t]*:[ \t]*\"(?P<v>[^\"\\\r\n]{1,512})\"",
         ("\"result\"",), priority=60, confirm=_confirm_random_password_result,
         hint=r"random_password[\s\S]*\"result\"[ \t]*:"),
    # Signed URLs: the signature (and a session token) grants access until it expires; S3 SigV4
    # `X-Amz-Signature`, GCS V4 `X-Goog-Signature`, CloudFront `Signature=`, `X-Amz-Security-Token`
    Rule("url-signature", "URL_SIGNATURE",
         r"[?&;](?:x-(?:amz|goog)-signature|signature|x-amz-security-token|x-goog-security-token)="
         r"(?P<v>[A-Za-z0-9%+/=_.~-]{16,})",
         ("signature=", "security-token="), caseless=True, priority=80, confirm=_confirm_not_placeholder),
    # SMTP `AUTH PLAIN <base64 of \0user\0password>` / `AUTH LOGIN <base64>` / XOAUTH2 (smtplib debug output)
    Rule("smtp-auth", "AUTHORIZATION",
         r"auth[ \t]+(?:plain|login|xoauth2|oauthbearer)[ \t]+(?P<v>[A-Za-z0-9+/]{8,}+={0,2}+)(?![A-Za-z0-9+/=])",
         ("auth plain", "auth login", "auth xoauth2", "auth oauthbearer"), caseless=True, priority=70,
         left_guard=_W),
    # GitHub Actions `::add-mask::VALUE`: the workflow itself says the value is secret
    Rule("actions-add-mask", "SECRET", r"::add-mask::(?P<v>[^\s\"']+)", ("::add-mask::",), priority=70,
         confirm=_confirm_not_placeholder),
    # A PEM private key, base64-encoded once more (k8s Secret `tls.key:`, Helm values, env vars)
    Rule("private-key-base64", "PRIVATE_KEY", r"LS0tLS1CRUdJTi[A-Za-z0-9+/]{20,}={0,2}", ("ls0tls1crudjti",),
         priority=100, confirm=_confirm_base64_pem, left_guard=TOK + "+/"),
    # Base64 JSON holding credentials (`.dockerconfigjson: eyJhdXRocyI6...`, k8s/ECS secret blobs); a JWT
    # has dots and is the rule above. Possessive (see the note above SECRET_RULES): on every JWT the run
    # stops at a `.` that the lookahead refuses, and giving the run back char by char cost 1.9 us a line
    Rule("base64-json-credentials", "SECRET", r"eyJ[A-Za-z0-9+/]{16,}+={0,2}+(?![A-Za-z0-9+/=._-])", ("eyj",),
         priority=84, confirm=_confirm_base64_json_credentials, left_guard=_WD + "."),
    # .netrc: `machine host login user password secret`, on one line or one field a line
    Rule("netrc-password", "PASSWORD",
         r"machine[ \t]+\S+" + _NETRC_SEP + r"(?:login[ \t]+\S+" + _NETRC_SEP + r")?(?:account[ \t]+\S+" + _NETRC_SEP
         + r")?password[ \t]+(?P<v>\S+)",
         ("machine",), priority=60, confirm=_confirm_not_placeholder, left_guard=_W),
    # .pgpass: `host:port:database:user:password`, one per line (`\:` escapes a colon in a field)
    Rule("pgpass-line", "PASSWORD",
         r"^[ \t]*+(?P<host>[A-Za-z0-9_.-]++|\*):(?:\d{1,5}|\*):(?:[^:\s\\]|\\.)++:"
         r"(?:[^:\s\\]|\\.)++:(?P<v>(?:[^:\s\\]|\\.)++)[ \t]*$",
         (":",), priority=60, confirm=_confirm_pgpass,
         # one line per record: a text holding several lines is matched at its start only (long texts are
         # split into lines); anchoring the hint's start cost every line's scan 0.3 us
         hint=r":(?:\d{1,5}|\*):[^:\s]+:[^:\s]+:[^:\s]+[ \t]*\n?$"),
    # Terraform plans: `~ password = "old" -> "new"`: the new value too
    Rule("terraform-diff", "SECRET",
         r"(?P<k>" + _ASSIGN_KEYS + r")[ \t]*=[ \t]*\"[^\"\r\n]*\"[ \t]*->[ \t]*\"(?P<v>[^\"\r\n]{1,512})\"",
         ("->",), caseless=True, priority=60, confirm=confirm_encoded_assignment,
         hint=r"(?:" + _ASSIGN_KEYS + r")[ \t]*=[^\n]*->"),
    # A random-looking string standing alone, no key, no known prefix (`echo <token> | docker login
    # --password-stdin`, a token in a URL path or an argv list): the lowest priority, so any rule with a
    # label of its own wins
    Rule("random-token", "RANDOM_TOKEN", r"[A-Za-z0-9_-]{32,512}+(?![A-Za-z0-9_+=]|\.[A-Za-z0-9])", (),
         priority=20, confirm=confirm_random_token, left_guard=TOK + "_+.@%-", starts_of=random_token_starts,
         # the prefilter gate is the capital pair the confirm step requires: `[A-Za-z0-9_-]{32}` fired on
         # every UUID and hex id (a clean line 1.7 -> 5.8 us) and a length bound on a capital cost every
         # line's scan 0.3-0.7 us; this one ~0.07 us, and no clean line without CamelCase reaches the rule
         hint=_CAPITAL_PAIR_PATTERN),
    # ---- assignments: password=, "secret": "...", X-Api-Key: ..., --password ... -------------------------
    Rule("assignment", "SECRET", ASSIGNMENT_PATTERN, _ASSIGN_KEYWORDS, caseless=True, priority=60,
         confirm=confirm_assignment, widen=widen_unquoted_value, hint=ASSIGNMENT_HINT, anchor=ASSIGNMENT_HINT),
    # Rails' `secret_key_base`, the one common secret key name that ends past its keyword. A rule of its own,
    # gated by its literal: `key(?:_base)?` in ASSIGNMENT_HINT made every line's scan slower (mix 90 -> 79 MB/s)
    Rule("assignment-key-base", "SECRET", _KEY_BASE_PATTERN, ("key_base", "key-base", "keybase"), caseless=True,
         priority=60, confirm=confirm_assignment, widen=widen_unquoted_value, hint=_KEY_BASE_HINT),
    Rule("assignment-bracketed", "SECRET", _BRACKETED_ASSIGNMENT_PATTERN, ("]", "**"), caseless=True, priority=60,
         confirm=confirm_assignment, widen=widen_unquoted_value, hint=_BRACKETED_ASSIGNMENT_HINT),
    Rule("assignment-full-width", "SECRET", _FULL_WIDTH_ASSIGNMENT_PATTERN, ("\uff1a", "\uff1d"), caseless=True,
         priority=60, confirm=confirm_assignment, widen=widen_unquoted_value, hint=_FULL_WIDTH_ASSIGNMENT_HINT),
    Rule("assignment-bold-colon", "SECRET", _BOLD_COLON_ASSIGNMENT_PATTERN, (":**",), caseless=True, priority=60,
         confirm=confirm_bold_assignment, widen=widen_unquoted_value, hint=_BOLD_COLON_ASSIGNMENT_HINT),
    Rule("assignment-foreign-password", "PASSWORD", _FOREIGN_ASSIGNMENT_PATTERN, _FOREIGN_KEYWORDS, caseless=True,
         priority=60, confirm=confirm_assignment, widen=widen_unquoted_value, hint=_OTHER_LANGUAGE_WORDS),
    Rule("assignment-escaped-quote", "SECRET", ESCAPED_ASSIGNMENT_PATTERN, ("\\u0022", "\\u0027"), caseless=True,
         priority=60, confirm=confirm_assignment, widen=widen_unquoted_value, hint=ESCAPED_ASSIGNMENT_HINT),
    # The same assignments with their quotes HTML-escaped (a JSON body shown in an HTML page or an XML
    # attribute: `&quot;password&quot;:&quot;x&quot;`) or their `=` URL-encoded (`password%3Dx%26user%3D…`,
    # a form body logged as one encoded parameter)
    Rule("assignment-html-escaped", "SECRET",
         r"(?P<k>" + _ASSIGN_KEYS + r")" + _HTML_QUOTE + r"[ \t]*(?::|=)[ \t]*" + _HTML_QUOTE
         + r"(?P<v>(?:[^&\r\n<]++|&(?!quot;|#34;|#x22;|#39;|#x27;|apos;))++)",
         ("&quot;", "&#34;", "&#x22;", "&#39;", "&#x27;", "&apos;"), caseless=True, priority=60,
         confirm=confirm_encoded_assignment, hint=r"(?:" + _ASSIGN_KEYS + r")" + _HTML_QUOTE + r"[ \t]*[:=]"),
    Rule("assignment-url-encoded", "SECRET",
         r"(?P<k>" + _ASSIGN_KEYS + r")%3d(?P<v>(?:[^%&\s\"'<>]++|%(?!26|3b|20|0a|0d))++)",
         ("%3d",), caseless=True, priority=60, confirm=confirm_encoded_assignment,
         hint=r"(?:" + _ASSIGN_KEYS + r")%3d"),
    # Prose: `the password is hunter2`, `password was "Summer2024!"` (a value no sentence would have)
    Rule("password-in-prose", "PASSWORD",
         r"(?P<k>password|passphrase|passwd)"
         # `the password for (the) user 'postgres' is 'admin'`
         r"(?:[ \t]+for[ \t]+(?:the[ \t]+)?(?:user[ \t]+|account[ \t]+)?(?:\"[^\"\r\n]{1,64}\"|'[^'\r\n]{1,64}'|"
         r"[^\s\"']{1,64}))?[ \t]+(?:is|was)[ \t]*:?[ \t]*"
         r"(?:\"(?P<v>[^\"\r\n]{4,128})\"|'(?P<v2>[^'\r\n]{4,128})'|(?P<v3>[^\s\"']{4,128}))",
         ("password", "passphrase", "passwd"), caseless=True, priority=55, confirm=confirm_prose_password,
         left_guard=_W, hint=r"(?:password|passphrase|passwd)[ \t]+(?:is|was|for)"),
    # `set `API_KEY` to `x``, `changed DB_PASSWORD to "x"`: a secret-named key set to a value in prose
    # (chat-ops bots, CI summaries, audit messages); the same value test as above
    Rule("secret-set-to", "SECRET",
         r"(?P<k>pass(?:word|wd|phrase)|secret|api[_-]?key|apikey|token)[`\"']?[ \t]+to[ \t]+"
         r"(?:`(?P<v>[^`\r\n]{4,256})`|\"(?P<v2>[^\"\r\n]{4,256})\"|'(?P<v4>[^'\r\n]{4,256})'|(?P<v3>[^\s\"'`]{4,256}))",
         ("pass", "secret", "api", "token"), caseless=True, priority=55, confirm=confirm_prose_password,
         label_of=_label_set_to,
         left_guard=TOK, hint=r"(?:password|passwd|passphrase|secret|api[_-]?key|apikey|token)[`\"']?[ \t]+to[ \t]"),
    # HTTP Digest, OAuth 1.0, Hawk: every parameter goes (a Digest `response` hash can be cracked offline
    # back to the password; OAuth's consumer key and signature are credentials)
    Rule("authorization-digest", "AUTHORIZATION",
         r"authorization(?:\\?[\"'])?[ \t]*[:=][ \t]*(?:\\?[\"'])?(?:digest|oauth|hawk)[ \t]+"
         r"(?P<v>" + _AUTH_PARAM + r"(?:[ \t]*,[ \t]*" + _AUTH_PARAM + r")*)",
         ("digest", "oauth", "hawk"), caseless=True, priority=71, anchor=r"authorization"),
    # `--db-password x`, `--pgpassword=x`, `--master-key x`: a compound word may end in password/secret/token
    # (`pass` only as its own word: `--bypass x` is not a password); a `*-key` flag's value must not be a
    # file path (`--private-key ./id.pem`)
    Rule("xml-element", "SECRET",
         # keyword `</`, not the key words: with those (`token` is in every `tokens=` line) the keyword
         # prefilter would search every such line once more per rule
         # (attributes too: WS-Security's `<wsse:Password Type="…#PasswordText">x</wsse:Password>`)
         r"(?P<k>" + _ASSIGN_KEYS + r")(?:[ \t][^<>\r\n]{0,512})?>(?P<v>[^<>\r\n]{1,512})</", ("</",), caseless=True,
         priority=60, confirm=confirm_xml_element, hint=r"(?:" + _ASSIGN_KEYS + r")(?:[ \t][^<>\n]*)?>"),
    Rule("name-value-pair", "SECRET",
         r"(?P<k>" + _ASSIGN_KEYS + r")(?:\\?[\"'])?[ \t]*(?:,|\r?\n)[ \t]*(?:\\?[\"'])?value(?:\\?[\"'])?[ \t]*"
         r"(?P<sep>[:=])[ \t]*"
         + _VALUE, ("value",), caseless=True, priority=60, confirm=confirm_name_value, widen=widen_unquoted_value,
         hint=_NAME_VALUE_ANCHOR, anchor=_NAME_VALUE_ANCHOR),
    # Redis: `MONITOR` output (`"AUTH" "default" "p"`, `"CONFIG" "SET" "requirepass" "p"`) and redis.conf
    # / `CONFIG SET` lines (`requirepass p`, `masterauth p`)
    Rule("redis-auth", "PASSWORD",
         r"(?:\"auth\"(?:[ \t]+\"[^\"\r\n]{1,256}\")?|\"(?:requirepass|masterauth)\")[ \t]+\"(?P<v>[^\"\r\n]{1,256})\""
         r"|(?:requirepass|masterauth)[ \t]+(?P<v2>[^\s\"']{1,256})",
         ("\"auth\"", "requirepass", "masterauth"), caseless=True, priority=60, confirm=_confirm_not_placeholder,
         left_guard=_W),
    # `redis-cli -a PASSWORD` (also `--pass`, `--askpass` takes none)
    Rule("redis-cli-password", "PASSWORD",
         r"redis-cli(?:[ \t][^\n]{0,200}?)?[ \t](?:-a|--pass)[ \t]+"
         r"(?:'(?P<v>[^'\r\n]+)'|\"(?P<v2>[^\"\r\n]+)\"|(?P<v3>[^\s'\"]+))",
         ("redis-cli",), priority=60, confirm=_confirm_not_placeholder, left_guard=_W,
         hint=r"redis-cli[ \t]"),
    # Container registry logins take the password as `-p`/`--password` (`docker login -u ci -p x reg`), and
    # `sshpass -p x ssh host`; `--password-stdin` takes none
    Rule("login-password-flag", "PASSWORD",
         r"(?:(?:docker|podman|buildah|skopeo|nerdctl|oras|helm[ \t]+registry)[ \t]+login(?:[ \t][^\n]{0,200}?)?"
         r"[ \t](?:-p|--password)(?:=|[ \t]+)|sshpass[ \t]+-p[ \t]*)"
         r"(?:'(?P<v>[^'\r\n]+)'|\"(?P<v2>[^\"\r\n]+)\"|(?P<v3>[^\s'\"]+))",
         ("login", "sshpass"), priority=60, confirm=_confirm_not_placeholder, left_guard=_W,
         hint=r"(?:docker|podman|buildah|skopeo|nerdctl|oras|registry)[ \t]+login|sshpass[ \t]+-p"),
    # Tools that take a password as a short flag or a positional argument, from shell history and CI logs:
    # Java `keytool -storepass p -keypass p` (not `-storepass:env VAR`), OpenLDAP `ldapsearch -w p`, `az login
    # -p`, MongoDB and SQL Server clients (`mongosh -u u -p p`, `sqlcmd -P p`), `rabbitmqctl add_user u p`,
    # `htpasswd -b file u p` / `-nb u p`, Samba's `-U user%p`, `echo p | docker login --password-stdin`
    Rule("java-keytool-password", "PASSWORD",
         r"-(?:src|dest|new)?(?:store|key)pass[ \t]+" + _ARG_VALUE,
         ("storepass", "keypass"), caseless=True, priority=60, confirm=_confirm_not_placeholder, left_guard=_W,
         hint=r"(?:store|key)pass[ \t]"),
    Rule("tool-password-flag", "PASSWORD",
         r"(?:ldap[a-z]*[ \t](?:[^\n]{0,200}?[ \t])?-w|(?:mongo(?:sh|dump|restore|export|import|stat|top)?|"
         r"sqlcmd|bcp|rabbitmqadmin)[ \t](?:[^\n]{0,200}?[ \t])?-p|az[ \t]+login[ \t](?:[^\n]{0,200}?[ \t])?-p)"
         r"[ \t]+" + _ARG_VALUE,
         ("ldap", "mongo", "sqlcmd", "bcp", "rabbitmqadmin", "az login"), caseless=True, priority=60,
         confirm=_confirm_tool_flag, left_guard=_WD,
         hint=r"(?:ldap[a-z]*|mongo[a-z]*|sqlcmd|bcp|rabbitmqadmin|az[ \t]+login)[ \t][^\n]*-[pw][ \t]"),
    Rule("tool-password-argument", "PASSWORD",
         r"(?:rabbitmqctl(?:[ \t]+-[^\s]+)*[ \t]+(?:add_user|change_password)[ \t]+[^\s]+[ \t]+"
         # `-nb user p` (to stdout) or `-b file user p`
         r"|htpasswd[ \t]+(?:-(?=[a-z]*n)(?=[a-z]*b)[a-z]+|-(?![a-z]*n)(?=[a-z]*b)[a-z]+[ \t]+[^\s-][^\s]*)[ \t]+"
         r"[^\s-][^\s]*[ \t]+"
         r"|(?:" + _SMB_TOOLS + r")[ \t][^\n]{0,200}?(?:-u|--user(?:=|[ \t]))[ \t]*[\"']?[^\s%\"']+%)"
         + _ARG_VALUE,
         ("rabbitmqctl", "htpasswd", "smbclient", "rpcclient", "smbmap", "smbcacls", "net rpc", "net ads"),
         caseless=True, priority=60, confirm=_confirm_tool_argument, left_guard=_WD,
         hint=r"rabbitmqctl[^\n]*(?:add_user|change_password)|htpasswd[ \t]+-|(?:" + _SMB_TOOLS
         + r")[ \t][^\n]*%"),
    Rule("password-stdin-echo", "PASSWORD",
         r"(?:echo(?:[ \t]+-[ne]+)?|printf(?:[ \t]+['\"]?%s['\"]?)?)[ \t]+"
         + _ARG_VALUE + r"[ \t]*\|[^\n|]{0,200}?--password-stdin",
         ("password-stdin",), caseless=True, priority=60, confirm=_confirm_not_placeholder, left_guard=_WD,
         hint=r"(?:echo|printf)[ \t][^\n]*\|[^\n]*--password-stdin"),
    # AWS: a SecureString parameter's `"Value"` (`aws ssm get-parameter --with-decryption`) and a secret's
    # `"SecretString"` (`aws secretsmanager get-secret-value`) are the secret itself
    Rule("aws-secure-value", "SECRET",
         r"\"type\"[ \t]*:[ \t]*\"securestring\"[^{}\n]{0,300}?\"value\"[ \t]*:[ \t]*"
         r"\"(?P<v>[^\"\\\r\n]{1,4096})\""
         r"|\"secretstring\"[ \t]*:[ \t]*\"(?P<v2>[^\"\\\r\n]{1,4096})\"",
         ("securestring", "secretstring"), caseless=True, priority=60, confirm=_confirm_not_placeholder,
         hint=r"\"(?:type\"[ \t]*:[ \t]*\"securestring|secretstring)\""),
    # PowerShell (script block logging, transcripts): `ConvertTo-SecureString 'p' -AsPlainText -Force` (not a
    # `$variable`)
    Rule("powershell-securestring", "PASSWORD",
         r"convertto-securestring(?:[ \t]+-(?:asplaintext|force))*[ \t]+(?:-string[ \t]+)?"
         r"(?:'(?P<v>[^'\r\n]{1,256})'|\"(?P<v2>[^\"\r\n]{1,256})\"|(?P<v3>[^\s'\"()$-][^\s'\"()]{0,255}))",
         ("convertto-securestring",), caseless=True, priority=60, confirm=_confirm_not_placeholder, left_guard=_WD),
    # `Property: spring.datasource.password Value: "x"` (Spring Boot's bind errors), `DB_PASSWORD value: x`:
    # a key, then the word `value` and a separator
    Rule("key-then-value-word", "SECRET",
         r"(?P<k>" + _ASSIGN_KEYS + r")(?:\\?[\"'])?[ \t]+value(?:\\?[\"'])?[ \t]*(?P<sep>[:=])[ \t]*" + _VALUE,
         ("value",), caseless=True, priority=60, confirm=confirm_assignment, widen=widen_unquoted_value,
         hint=_KEY_VALUE_WORD_ANCHOR, anchor=_KEY_VALUE_WORD_ANCHOR),
    # SQL: `ALTER ROLE x PASSWORD 'p'`, `CREATE USER .. IDENTIFIED BY 'p'` (a quoted word, no spaces)
    Rule("sql-password", "PASSWORD",
         r"(?:password(?:[ \t]+for[ \t]+[^\s=]{1,128})?(?:[ \t]+|[ \t]*=[ \t]*)n?|"
         r"identified[ \t]+(?:with[ \t]+[a-z0-9_]{1,64}[ \t]+)?by[ \t]+)"
         r"(?:'(?P<v>[^'\s]{1,256})'|\"(?P<v2>[^\"\s]{1,256})\")",
         ("password", "identified"), caseless=True, priority=61, confirm=_confirm_sql_password, left_guard=_W,
         hint=r"password[ \t]+for[ \t]|password[ \t]*=?[ \t]*n?['\"]|"
         r"identified[ \t]+(?:with[ \t]+[a-z0-9_]{1,64}[ \t]+)?by[ \t]+['\"]"),
    # MySQL/MariaDB clients take the password glued to `-p`: `mysqldump -u app -pS3cret db`
    Rule("mysql-password", "PASSWORD",
         r"(?:mysql|mariadb)[a-z]*[ \t][^\n]{0,200}?[ \t]-p"
         r"(?:'(?P<v>[^'\r\n]+)'|\"(?P<v2>[^\"\r\n]+)\"|(?P<v3>[^\s'\"]+))",
         ("mysql", "mariadb"), priority=60, confirm=_confirm_not_placeholder, left_guard=_W,
         hint=r"(?:mysql|mariadb)[a-z]*[ \t]"),
    Rule("cli-flag", "SECRET",
         r"--(?:[a-z0-9]+-)*(?P<k>[a-z0-9]*(?:password|passwd|passphrase|secret|token)|pass|pwd|api-key|apikey|"
         r"access-key|secret-key|client-secret|(?:master|encryption|signing|private|deploy|client|app|webhook|"
         r"license|ssh)-key)(?:=|[ \t]+)"
         r"(?:\"(?P<v>[^\"\r\n]+)\"|'(?P<v2>[^'\r\n]+)'|(?P<v3>[^\s\"'-]\S*))",
         ("--",), caseless=True, priority=60, confirm=_confirm_flag, label_of=_label_flag,
         left_guard=TOK + "-"),
    # curl/httpie credentials: `curl -u user:pass`, `--user 'user:pass'`, `--proxy-user u:p`; only on a line
    # that names an HTTP client or URL, and not `-u 1000:1000` (docker's uid:gid)
    Rule("cli-user-password", "PASSWORD",
         r"-(?:u|-user|-proxy-user|-auth|U)(?:=|[ \t]+)[\"']?(?P<user>[^\s:\"']{0,128})[\"']?:"
         r"(?:[\"']?(?P<v>[^\s\"']{1,256})|(?=[\"'\s]|$))",
         ("-u ", "-u\t", "-u=", "--user", "--proxy-user", "--auth"), priority=60, confirm=_confirm_cli_user,
         left_guard=TOK + "-"),
    *EXTERNAL_RULES,
    *DEVTOOLS_RULES,
    *PROSE_RULES,
    # ---- client, desktop and export formats (the ninth corpus) ---------------------------------------------
    # PHP `serialize()`: `s:8:"password";s:12:"p";` (session files, cache dumps): the string after a key's
    Rule("php-serialized", "SECRET",
         r"s:\d{1,4}:\"(?P<k>[A-Za-z0-9_.-]{1,64})\";s:\d{1,5}:\"(?P<v>[^\"\r\n]{1,512})\"", ('";s:',),
         priority=60, confirm=confirm_named_value),
    # Windows registry: `reg query` output (`    DefaultPassword    REG_SZ    p`) and `reg add … /v ApiKey /d v`
    Rule("registry-value", "SECRET",
         r"(?P<k>[A-Za-z0-9_.-]{1,64})[ \t]+reg_(?:sz|expand_sz|multi_sz)[ \t]+(?P<v>[^\r\n]{1,512})",
         ("reg_sz", "reg_expand_sz", "reg_multi_sz"), caseless=True, priority=60, confirm=confirm_named_value,
         left_guard=_WD, hint=r"[ \t]reg_(?:sz|expand_sz|multi_sz)[ \t]"),
    Rule("registry-add", "SECRET",
         r"reg(?:\.exe)?[ \t]+add[ \t][^\n]{0,300}?/v[ \t]+\"?(?P<k>[A-Za-z0-9_.-]{1,64})\"?[ \t][^\n]{0,120}?/d[ \t]+"
         r"(?:\"(?P<v>[^\"\r\n]{1,512})\"|(?P<v2>[^\s\"]{1,512}))",
         ("reg add", "reg.exe add"), caseless=True, priority=60, confirm=confirm_named_value, left_guard=_WD,
         hint=r"reg(?:\.exe)?[ \t]+add[ \t]"),
    # Windows command lines (Sysmon, 4688 process creation, PowerShell history): `net user u p /add`,
    # `net use Z: \\srv\share p /user:u`, `cmdkey /pass:p`, `psexec \\host -u u -p p` (`*` prompts for it)
    Rule("windows-cli-password", "PASSWORD",
         r"(?:net[ \t]+user[ \t]+[^\s/]{1,128}[ \t]+|net[ \t]+use[ \t]+(?:[a-z]:[ \t]+)?\\\\[^\s]{1,256}[ \t]+|"
         r"/pass:|psexec(?:64)?(?:\.exe)?[ \t][^\n]{0,200}?[ \t]-p[ \t]+)"
         r"(?:\"(?P<v>[^\"\r\n]{1,256})\"|(?P<v2>[^\s\"/*][^\s\"]{0,255}))",
         ("net user", "net use", "/pass:", "psexec"), caseless=True, priority=60, confirm=_confirm_tool_argument,
         left_guard=_WD, hint=r"net[ \t]+use?r?[ \t]|/pass:|psexec[^\n]*[ \t]-p[ \t]"),
    # Mosquitto clients take the password as `-P` (`-p` is the port) or `--pw`
    Rule("mosquitto-password", "PASSWORD",
         r"mosquitto_(?:pub|sub|rr)[ \t](?:[^\n]{0,200}?[ \t])?(?:-P|--pw)[ \t]+" + _ARG_VALUE,
         ("mosquitto_",), priority=60, confirm=_confirm_tool_argument, left_guard=_WD,
         hint=r"mosquitto_(?:pub|sub|rr)[ \t][^\n]*(?:-P|--pw)[ \t]"),
    # One-time codes sent by mail or SMS: `Your verification code is 482913` grants a login
    Rule("one-time-code", "PASSWORD",
         r"(?:one-time[ \t]+(?:password|passcode|code)|(?:verification|security|confirmation|login|2fa|otp)[ \t]+code|"
         r"passcode|code[ \t]+de[ \t]+v(?:e|é)rification|c(?:o|ó)digo[ \t]+de[ \t]+verificaci(?:o|ó)n)"
         r"(?:[ \t]+is)?[ \t]*:?[ \t]*(?P<v>\d{4,8})(?![\d.,]\d)",
         ("one-time", "code", "passcode", "código"), caseless=True, priority=55, left_guard=_W,
         hint=r"(?:one-time|verification|security|confirmation|login|2fa|otp|passcode|de)[ \t]+"
         r"(?:password|passcode|code|v(?:e|é)rification|verificaci(?:o|ó)n)|passcode"),
    # Django's request `META` (debug pages, error mails): `HTTP_COOKIE = 'sessionid=…'`
    Rule("http-cookie-meta", "COOKIE", r"http_cookie[\"']?[ \t]*(?:[:=][ \t]*)?[\"'](?P<v>[^\"'\r\n]+)",
         ("http_cookie",), caseless=True, priority=60, confirm=_confirm_not_placeholder, left_guard=_W),
    # Password hashes crack offline back to the password: bcrypt, argon2, Django's PBKDF2; crypt(3)'s
    # md5crypt `$1$`, sha256crypt `$5$` (22/43 characters after the salt) and sha512crypt `$6$` (86), Cisco
    # IOS type 8/9 (`$8$`/`$9$`: 14-character salt, 43), and a Kerberos AS-REP (`$krb5asrep$23$`, what
    # AS-REP roasting cracks). A shell's `$1$2` has no salt-and-hash body, so it stays.
    Rule("password-hash", "PASSWORD_HASH",
         r"\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}|\$argon2(?:id|i|d)\$v=\d{1,3}\$m=\d{1,8},t=\d{1,4},p=\d{1,4}"
         r"\$[A-Za-z0-9+/]{8,128}\$[A-Za-z0-9+/]{16,128}|pbkdf2_sha(?:1|256|512)\$\d{1,8}\$[A-Za-z0-9./+]{1,64}"
         r"\$[A-Za-z0-9./+]{16,128}={0,2}"
         r"|\$1\$[./A-Za-z0-9]{1,8}\$[./A-Za-z0-9]{22}(?![./A-Za-z0-9])"
         r"|\$[56]\$(?:rounds=\d{4,9}\$)?[./A-Za-z0-9]{1,16}\$(?:[./A-Za-z0-9]{86}|[./A-Za-z0-9]{43})(?![./A-Za-z0-9])"
         r"|\$[89]\$[./A-Za-z0-9]{14}\$[./A-Za-z0-9]{43}(?![./A-Za-z0-9])"
         r"|\$krb5asrep\$(?:17|18|23)\$(?:[^\s$:]{1,256}:)?[a-f0-9]{24,64}\$[a-f0-9]{64,}",
         ("$2", "$argon2", "pbkdf2_sha", "$1$", "$5$", "$6$", "$8$", "$9$", "$krb5asrep$"), priority=80),
    # Firebase Cloud Messaging registration tokens (`<instance id>:APA91b…`), which address one device
    Rule("fcm-registration-token", "FIREBASE_TOKEN", r"[A-Za-z0-9_-]{11,64}:APA91b[A-Za-z0-9_-]{100,}",
         (":apa91b",), priority=80, left_guard=_WD),
    # A cookie header as a name/value pair: HAR (`{"name": "Cookie", "value": "…"}`), Sentry's header list
    # (`["Cookie","session=…"]`)
    Rule("cookie-name-value", "COOKIE",
         r"cookie\\?[\"'][ \t]*,[ \t]*(?:\\?[\"']value\\?[\"'][ \t]*:[ \t]*)?\\?[\"'](?P<v>[^\"'\\\r\n]+)",
         ("cookie",), caseless=True, priority=60, confirm=_confirm_not_placeholder, left_guard=_WD,
         hint=r"cookie\\?[\"'][ \t]*,"),
    # A Markdown table row `| password | p |`: the cell after a secret-named one
    Rule("markdown-table-value", "SECRET",
         r"\|[ \t]*`?(?P<k>[A-Za-z0-9_.-]{0,48}(?:pass(?:word|wd)?|secret|key|token|pwd))`?[ \t]*\|[ \t]*`?"
         r"(?P<v>[^|`\s][^|`\r\n]{0,511}?)`?[ \t]*\|",
         ("pass", "secret", "key", "token", "pwd"), caseless=True, priority=60, confirm=confirm_named_value,
         hint=r"(?:pass(?:word|wd)?|secret|key|token|pwd)`?[ \t]*\|"),
    # Laravel's `'key' => 'base64:…'` (config/app.php) and `APP_KEY=base64:…`: 32 random bytes
    Rule("laravel-app-key", "SECRET",
         r"(?:app_key|key)[\"']?[ \t]*(?:=>|[:=])[ \t]*[\"']?(?P<v>base64:[A-Za-z0-9+/]{43}=)",
         ("base64:",), caseless=True, priority=61, left_guard=_W),
    # PHP `var_dump`: `["password"]=>` then, on the next line, `string(8) "p"`
    Rule("php-var-dump", "SECRET",
         r"\[\"(?P<k>[A-Za-z0-9_.-]{1,64})\"\]=>\r?\n[ \t]{0,32}string\(\d{1,5}\)[ \t]\"(?P<v>[^\"\r\n]{1,512})\"",
         ('"]=>',), priority=60, confirm=confirm_named_value),
    # An environment variable set by a call: PowerShell `[Environment]::SetEnvironmentVariable("NAME", "v")`,
    # `os.environ.setdefault("NAME", "v")`, `putenv`/`setenv`, or read with a hard-coded default
    # (`GetEnvOrDefault("api_token", "v")`, `os.getenv("API_KEY", "v")`): judged by the variable's name
    Rule("setenv-call", "SECRET",
         r"(?:setenvironmentvariable|setdefault|putenv|setenv|getenv(?:_?or_?default)?|environ\.get)\("
         r"[ \t]*[\"'](?P<k>[A-Za-z0-9_.-]{1,64})[\"']"
         r"[ \t]*,[ \t]*[\"'](?P<v>[^\"'\r\n]{1,512})[\"']",
         ("setenvironmentvariable", "setdefault", "putenv", "setenv", "getenv", "environ.get"), caseless=True,
         priority=61,
         confirm=confirm_named_value, left_guard=_W),
    # OAuth authorization codes and PKCE verifiers in a callback URL or token request body
    Rule("oauth-code", "OAUTH_CODE", r"[?&#](?:code|code_verifier)=(?P<v>[A-Za-z0-9._~/%-]{16,512})",
         ("code=", "code_verifier="), priority=60, confirm=_confirm_oauth_code),
)  # fmt: skip
