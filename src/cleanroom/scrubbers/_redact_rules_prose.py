"""A credential key named in prose: `the DB_PASSWORD is Winter!2025db`, `the secret is 7bNihdIGnJXlq8Mx`,
`the SecretAccessKey is xaQW…`, `the _authToken is <uuid>` (issue #7, the grid's cause 5: only
`password`/`passphrase`/`passwd` were read in prose, by log_rules' `password-in-prose`).

The key is any name the assignment rules judge a credential (`_tier`), and the value must pass both the
prose test (letters with digits or symbols, or 6+ digits: `the token is expired`, `the key is 256 bits`
stay) and the assignment's judgement of that key (a bare `token` only when random-looking: `the token is
3600s` stays; `refresh_token` takes any value, as `refresh_token=3600s` does). An article or possessive
before the key (`the`, `my`, `our`, …) marks a sentence.
Spliced into `log_rules.SECRET_RULES` with the other rule modules; import log_rules first.
"""

from __future__ import annotations

import re

from cleanroom.scrubbers.log_rules import (
    _ASSIGN_KEYS,
    _W,
    LabelledSpan,
    Rule,
    Span,
    _judge,
    _tier,
    confirm_prose_password,
    full_key,
)

_DETERMINERS = r"(?:the|my|your|our|their|this|that|its|new|old)"
_KEY_IS = _DETERMINERS + r"[ \t]+[\w.-]{0,48}?(?P<k>" + _ASSIGN_KEYS + r")[`\"']?[ \t]+(?:is|was)[ \t]"
# The prefilter's superset: without the determiner and the bounded run before the key, which made
# Hyperscan's scan of a clean `the request is …` line 0.2 us slower
_KEY_IS_HINT = r"(?:" + _ASSIGN_KEYS + r")[`\"']?[ \t]+(?:is|was)[ \t]"


def _confirm_key_in_prose(text: str, m: re.Match[str], span: Span) -> LabelledSpan | None:
    kept = confirm_prose_password(text, m, span)
    if kept is None:
        return None
    low_key = full_key(text, *m.span("k")).lower()
    tier = _tier(low_key)
    if tier is None:
        return None
    return _judge(text, low_key, tier, (kept[0], kept[1]))


PROSE_RULES: tuple[Rule, ...] = (
    Rule("key-in-prose", "SECRET",
         _KEY_IS + r"*:?[ \t]*"
         r"(?:\"(?P<v>[^\"\r\n]{4,128})\"|'(?P<v2>[^'\r\n]{4,128})'|(?P<v3>[^\s\"'`]{4,128})|`(?P<v4>[^`\r\n]{4,128})`)",
         (" is ", " was ", " is\t", " was\t"), caseless=True, priority=54, confirm=_confirm_key_in_prose,
         left_guard=_W, hint=_KEY_IS_HINT),
)  # fmt: skip
