"""Rules written from the two public rule sets' examples (tests/redaction_external_examples.py; issue #7).

Moved out of log_rules.py (then 1780 lines) as one block: the same `Rule` objects, spliced back into
`log_rules.SECRET_RULES` where they were, so order and priorities are unchanged. This module builds them
from log_rules' helpers, and log_rules imports `EXTERNAL_RULES` once those helpers exist: import log_rules
(or the engine) first; importing this module first would find log_rules half-built (a circular import).
"""

from __future__ import annotations

import re

from cleanroom.scrubbers.log_rules import (
    _ARG_VALUE,
    _ASSIGN_KEYS,
    _W,
    _WD,
    TOK,
    Rule,
    Span,
    _b64_decode,
    _confirm_password_position,
    _confirm_random,
    _confirm_tool_argument,
    _group_text,
    _provider,
    confirm_assignment,
    confirm_named_value,
)


def _confirm_grafana_key(text: str, m: re.Match[str], span: Span) -> Span | None:
    """A Grafana API key is base64 of `{"k":"…","n":"<name>","id":<n>}`."""
    decoded = _b64_decode(_group_text(text, span).rstrip("="))
    return span if decoded is not None and b'"n":' in decoded and b'"id":' in decoded else None


def _confirm_letters_and_digits(text: str, m: re.Match[str], span: Span) -> Span | None:
    value = _group_text(text, span)
    return span if any(c.isdigit() for c in value) and any(c.isalpha() for c in value) else None


_AZURE_DEVOPS_HOST = re.compile(r"dev\.azure\.com|visualstudio\.com", re.IGNORECASE)


def _confirm_azure_devops_line(text: str, m: re.Match[str], span: Span) -> Span | None:
    """A 52-character base32 run is an Azure DevOps PAT only on a line that names Azure DevOps."""
    line_start = text.rfind("\n", 0, span[0]) + 1
    line_end = text.find("\n", span[1])
    found = _AZURE_DEVOPS_HOST.search(text, line_start, len(text) if line_end < 0 else line_end)
    return None if found is None else _confirm_letters_and_digits(text, m, span)


_ARG = r"(?:\"[^\"\r\n]{0,256}\"|'[^'\r\n]{0,256}'|[\w.$@\\]{1,128})"  # a constructor argument
_QUOTED_ARG = r"(?:\"(?P<v>[^\"\r\n]{1,256})\"|'(?P<v2>[^'\r\n]{1,256})')"
_UUID_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_COMPARISON_ANCHOR = r"(?:" + _ASSIGN_KEYS + r")(?:\\?[\"'])?\]?[ \t]*(?:===?|!==?)[ \t]*[\"']"

# Formats from the two public rule sets' examples (tests/redaction_external_examples.py; issue #7), each
# written here from the format; each has a look-alike that survives in tests/test_redaction_external.py
EXTERNAL_RULES: tuple[Rule, ...] = (
    # `password == "team10"`, `creds.Secret != 'open-sesame'`: code comparing input with a hard-coded
    # credential; quoted operands only (`password == expected` compares two variables)
    Rule("assignment-comparison", "SECRET",
         r"(?P<k>" + _ASSIGN_KEYS + r")(?:\\?[\"'])?\]?[ \t]*(?P<sep>===?|!==?)[ \t]*"
         r"(?:\"(?P<v>[^\"\r\n]{1,256})\"|'(?P<v2>[^'\r\n]{1,256})')",
         ("==", "!="), caseless=True, priority=60, confirm=confirm_assignment, hint=_COMPARISON_ANCHOR,
         anchor=_COMPARISON_ANCHOR),
    # Facebook app access token `<app id>|<app secret>` (15-16 digits, 27 characters): the part after `|`
    Rule("facebook-app-token", "FACEBOOK_TOKEN", r"\d{15,16}\|(?P<v>[A-Za-z0-9_-]{27})(?![A-Za-z0-9_-])", ("|",),
         priority=90, confirm=_confirm_random, left_guard=TOK),
    # Salesforce session id / access token: the 15- or 18-character org id (`00D…`), `!`, the session part
    _provider("salesforce-session", "SALESFORCE_TOKEN",
              r"00D[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?![A-Za-z0-9._]{80,}+(?![A-Za-z0-9._])", "00d", guard=TOK),
    # Vault's long service/batch tokens before the `hvs.`/`hvb.` prefixes: `s.CAES…` (base64url protobuf)
    _provider("vault-token-legacy", "VAULT_TOKEN", r"[sb]\.CAES[A-Za-z0-9_-]{40,}", "s.caes", "b.caes",
              guard=TOK + "."),
    # Vault unseal key shares as `vault operator init` prints them (`Unseal Key 2: <44 base64>`) and as
    # `vault operator unseal <key>` takes them (base64 of 33 bytes, or hex)
    Rule("vault-unseal-key", "VAULT_UNSEAL_KEY",
         r"unseal(?:[ \t]+key[ \t]+\d{1,2}[ \t]*:|(?:[ \t]+-[a-z-]+)*)[ \t]+"
         r"(?P<v>[a-z0-9+/]{43,44}={0,2}|[a-f0-9]{64,66})(?![a-z0-9+/=])",
         ("unseal",), caseless=True, priority=80, left_guard=_W),
    # Grafana API keys: base64 of `{"k":"…","n":"…","id":…}`, always starting `eyJrIjoi`
    _provider("grafana-api-key", "GRAFANA_TOKEN", r"eyJrIjoi[A-Za-z0-9+/]{30,}+={0,2}", "eyjrijoi",
              confirm=_confirm_grafana_key),
    # Amazon Bedrock long-lived API keys: `ABSK` + 128 characters of base64 of `BedrockAPIKey-…`
    _provider("bedrock-api-key", "AWS_BEDROCK_KEY",
              r"ABSKQmVkcm9ja0FQSUtleS[A-Za-z0-9+/]{108,110}={0,2}(?![A-Za-z0-9+/=])",
              "abskqmvkcm9ja0fqsutles"),
    # Azure DevOps personal access tokens: 52 characters of lowercase base32, only with context (a `*pat`
    # key, or Azure DevOps's host on the line): alone they look like any base32 id
    Rule("azure-devops-pat", "AZURE_DEVOPS_PAT",
         r"(?i:pat)(?:\\?[\"'])?[ \t]*(?:=>|:=|[:=])[ \t]*(?:\\?[\"'])?(?P<v>[a-z2-7]{52})(?![A-Za-z0-9])",
         ("pat",), priority=80, left_guard=TOK, confirm=_confirm_letters_and_digits),
    Rule("azure-devops-pat-host", "AZURE_DEVOPS_PAT", r"[a-z2-7]{52}(?![A-Za-z0-9])",
         ("dev.azure.com", "visualstudio.com"), priority=80, left_guard=TOK, confirm=_confirm_azure_devops_line,
         hint=r"(?i)dev\.azure\.com|visualstudio\.com"),
    # ThingsBoard device access tokens travel in the URL: `/api/v1/<token>/telemetry`
    Rule("thingsboard-url-token", "THINGSBOARD_TOKEN",
         r"/api/v1/(?P<v>[A-Za-z0-9_-]{16,40})/(?:telemetry|attributes|rpc|claim|firmware|software)",
         ("/api/v1/",), priority=80, confirm=_confirm_letters_and_digits),
    # .NET credential constructors: `new NetworkCredential(user, "p")`, `new DirectoryEntry(path, user, "p")`
    # (arguments may continue on the next lines), and PowerCLI `Connect-VIServer … -Password p`
    Rule("network-credential", "PASSWORD",
         r"networkcredential\([ \t]*" + _ARG + r"[ \t]*,[ \t]*" + _QUOTED_ARG,
         ("networkcredential",), caseless=True, priority=60, confirm=_confirm_password_position, left_guard=_W),
    Rule("directory-entry-password", "PASSWORD",
         r"directoryentry\([ \t]*" + _ARG + r"[ \t]*,\s{0,40}" + _ARG + r"[ \t]*,\s{0,40}" + _QUOTED_ARG,
         ("directoryentry",), caseless=True, priority=60, confirm=_confirm_password_position, left_guard=_W),
    Rule("viserver-password", "PASSWORD",
         r"connect-viserver[ \t](?:[^\n]{0,300}?[ \t])?-password[ \t]+" + _ARG_VALUE,
         ("connect-viserver",), caseless=True, priority=60, confirm=_confirm_tool_argument, left_guard=_WD),
    # SonarQube tokens (40 hex, or `squ_`/`sqp_`/`sqa_` + 40) under `sonar.login`/`sonar.token`/`$sonarLogin`
    Rule("sonar-token", "SONAR_TOKEN",
         r"sonar[._-]?(?:login|token)[\"']?[ \t]*(?:=>|[:=,])[ \t]*[\"']?[ \t]*(?P<v>(?:sq[pua]_)?[a-f0-9]{40})"
         r"(?![a-z0-9])",
         ("sonar",), caseless=True, priority=80),
    # Postmark server and account tokens are UUIDs: under a `postmark` key (not `postmark_message_id`)
    Rule("postmark-token", "POSTMARK_TOKEN",
         r"postmark(?:[_-]?(?:api|server|account))?(?:[_-]?(?:token|key))?[\"']?[ \t]*(?:=>|[:=])[ \t]*[\"']?"
         r"(?P<v>" + _UUID_PATTERN + r")",
         ("postmark",), caseless=True, priority=80, left_guard=_W),
    # Android Gradle `buildConfigField 'String', 'API_KEY', '"v"'`: judged by the field's name
    Rule("gradle-build-config-field", "SECRET",
         r"buildconfigfield[ \t]*\(?[ \t]*[\"']string[\"'][ \t]*,[ \t]*[\"'](?P<k>[a-z0-9_.-]{1,64})[\"'][ \t]*,"
         r"[ \t]*[\"']\\?\"?(?P<v>[^\"'\\\r\n]{1,512})",
         ("buildconfigfield",), caseless=True, priority=60, confirm=confirm_named_value, left_guard=_W),
    # An AWS secret key written right after its access key id (`'AKIA…''<40>'`, `AKIA…,<40>` in a CSV)
    Rule("aws-secret-after-key-id", "AWS_SECRET_ACCESS_KEY",
         r"(?:A3T[A-Z0-9]|AKIA|ASIA)[A-Z0-9]{16}[\"' \t,;:|=]{1,6}(?P<v>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
         ("akia", "asia", "a3t"), priority=80, confirm=_confirm_random, left_guard=TOK),
    # Jenkins' first-start banner: the initial admin password two lines below
    Rule("jenkins-initial-password", "PASSWORD",
         r"following password to proceed to installation:\s{1,8}(?P<v>[a-f0-9]{32})(?![a-z0-9])",
         ("proceed to installation",), caseless=True, priority=80),
)  # fmt: skip
