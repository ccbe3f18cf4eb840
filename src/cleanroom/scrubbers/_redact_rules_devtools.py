"""Rules for developer tooling's credentials (the tenth corpus, tests/test_redaction_tenth.py; issue #7).

Package managers, registries and their CLIs print credentials in shapes no generic rule reads: yarn's
`npmAuthIdent`, `nuget setapikey <uuid>`, `dotnet nuget add source … -p p`, `TF_TOKEN_<host>=` environment
variables, Honeycomb's team header, htpasswd's `$apr1$`/`{SHA}` hashes, and JSON escaped three levels
deep. Each rule is gated by a literal (its `keywords`), so a line without one never reaches its regex.
Spliced into `log_rules.SECRET_RULES` after `EXTERNAL_RULES`; like that module, this one imports its
helpers from log_rules, so import log_rules (or the engine) first.
"""

from __future__ import annotations

import base64
import binascii
import re

from cleanroom.scrubbers.log_rules import (
    _ARG_VALUE,
    _ASSIGN_KEYS,
    _W,
    _WD,
    TOK,
    LabelledSpan,
    Rule,
    Span,
    _confirm_not_placeholder,
    _confirm_tool_argument,
    _group_text,
    _provider,
    confirm_assignment,
    is_placeholder,
)

_USER_PASS = re.compile(r"[^:\s]{1,128}:([^\s]{1,256})")


def _confirm_auth_ident(text: str, m: re.Match[str], span: Span) -> LabelledSpan | None:
    """yarn's `npmAuthIdent` is `user:password` or base64 of it (Yarn Berry's .yarnrc.yml): the password
    alone (the user name stays readable), or the whole base64 value when it decodes to `user:password`."""
    value = _group_text(text, span)
    if is_placeholder(value):
        return None
    plain = _USER_PASS.fullmatch(value)
    if plain is not None:
        if is_placeholder(plain.group(1)):
            return None
        return (span[0] + plain.start(1), span[1], "PASSWORD")
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except (ValueError, binascii.Error):
        return None
    return (span[0], span[1], "REGISTRY_AUTH") if b":" in raw[1:] else None


def _confirm_honeycomb_key(text: str, m: re.Match[str], span: Span) -> Span | None:
    """A team header's value: a 22-character configuration key or 32 hex digits (older), letters and digits."""
    value = _group_text(text, span)
    has_digit = any(c.isdigit() for c in value)
    return span if has_digit and any(c.isalpha() for c in value) and not is_placeholder(value) else None


def _confirm_atlas_token(text: str, m: re.Match[str], span: Span) -> Span | None:
    """Both random parts vary (gitleaks' own look-alike is `xxxxxxxxxxxxxx.atlasv1.xxxx…`, a mask)."""
    value = _group_text(text, span)
    return span if len(set(value[:14])) >= 6 and len(set(value[23:])) >= 12 else None


# Keys before `\\\"` (`\\\"password\\\":\\\"p\\\"`): JSON inside a JSON string inside a JSON string, where the
# main assignment rule's one optional backslash sees only backslashes (2**n - 1 of them, n levels deep)
_DEEP_ESCAPED_ANCHOR = r"(?:" + _ASSIGN_KEYS + r")\\{3,15}\"[ \t]*:"

DEVTOOLS_RULES: tuple[Rule, ...] = (
    Rule("deep-escaped-assignment", "SECRET",
         r"(?P<k>" + _ASSIGN_KEYS + r")\\{3,15}\"[ \t]*(?P<sep>:)[ \t]*\\{3,15}\"(?P<v>[^\"\\\r\n]{1,512})\\",
         ('\\\\\\"',), caseless=True, priority=60, confirm=confirm_assignment, hint=_DEEP_ESCAPED_ANCHOR,
         anchor=_DEEP_ESCAPED_ANCHOR),
    # yarn (Berry) `.yarnrc.yml`: `npmAuthIdent: "user:password"` or its base64
    Rule("yarn-npm-auth-ident", "PASSWORD",
         r"npmauthident[\"']?[ \t]*[:=][ \t]*[\"']?(?P<v>[^\s\"']{4,512})",
         ("npmauthident",), caseless=True, priority=80, confirm=_confirm_auth_ident, left_guard=_W),
    # `nuget setapikey <key> -Source <feed>`: an Azure Artifacts / Nexus / ProGet key is often a UUID (the
    # nuget.org `oy2…` keys have their own rule)
    Rule("nuget-setapikey", "NUGET_API_KEY",
         r"setapikey[ \t]+[\"']?(?P<v>[^\s\"'-][^\s\"']{7,255})",
         ("setapikey",), caseless=True, priority=80, confirm=_confirm_not_placeholder, left_guard=_W),
    # `dotnet nuget add source <url> -n name -u user -p password`, `nuget sources add … -Password p`
    Rule("nuget-source-password", "PASSWORD",
         r"(?:nuget[ \t]+(?:add|update)[ \t]+source|nuget(?:\.exe)?[ \t]+sources?[ \t]+(?:add|update))[ \t]"
         r"[^\n]{0,400}?[ \t](?:-p|--password|-password)[ \t]+" + _ARG_VALUE,
         ("nuget",), caseless=True, priority=60, confirm=_confirm_tool_argument, left_guard=_WD,
         hint=r"nuget(?:\.exe)?[ \t]+(?:add|update|sources?)[ \t]"),
    # Terraform CLI credentials from the environment: `TF_TOKEN_app_terraform_io=<token>` (the host with `.`
    # written `_`), any token format
    Rule("terraform-env-token", "TERRAFORM_TOKEN",
         r"TF_TOKEN_[A-Za-z0-9_-]{1,128}[ \t]*=[ \t]*[\"']?(?P<v>[^\s\"']{8,512})",
         ("tf_token_",), priority=80, confirm=_confirm_not_placeholder, left_guard=_W),
    # Terraform Cloud / Enterprise API tokens: 14 characters, `.atlasv1.`, 60-70 more
    _provider("terraform-api-token", "TERRAFORM_TOKEN", r"[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,}+",
              "atlasv1", guard=TOK, confirm=_confirm_atlas_token),
    # Honeycomb: ingest keys `hcaik_`/`hcxik_` + 58 (a ULID and 32 hex digits); any key under the team header
    # (`X-Honeycomb-Team: k`, OpenTelemetry's `OTEL_EXPORTER_OTLP_HEADERS=x-honeycomb-team=k`)
    _provider("honeycomb-ingest-key", "HONEYCOMB_KEY", r"hc[ax]ik_[a-z0-9]{58}(?![A-Za-z0-9])",
              "hcaik_", "hcxik_", guard=TOK),
    Rule("honeycomb-team-header", "HONEYCOMB_KEY",
         r"x-honeycomb-team[\"']?[ \t]*[:=][ \t]*[\"']?(?P<v>[a-z0-9_]{20,96})(?![a-z0-9_])",
         ("x-honeycomb-team",), caseless=True, priority=80, confirm=_confirm_honeycomb_key, left_guard=_WD),
    # htpasswd: Apache's MD5 (`$apr1$` + 8-character salt + 22) and unsalted SHA-1 (`{SHA}` + base64 of 20
    # bytes), salted SHA-1 (`{SSHA}`, OpenLDAP): each cracks offline back to the password
    Rule("password-hash-htpasswd", "PASSWORD_HASH",
         r"\$apr1\$[./A-Za-z0-9]{1,8}\$[./A-Za-z0-9]{22}(?![./A-Za-z0-9])|\{SHA\}[A-Za-z0-9+/]{27}="
         r"|\{SSHA\}[A-Za-z0-9+/]{32,}={0,2}",
         ("$apr1$", "{sha}", "{ssha}"), priority=80),
)  # fmt: skip
