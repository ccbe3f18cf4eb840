"""Scrubbers: the between-tenant memory scrub (cpu, gpu) and the log redactor (logs).

`log_rules` is imported first so that the rule modules it splices in (`_redact_rules_external`,
`_redact_rules_devtools`, `_redact_rules_prose`, which use its helpers) can be imported in any order:
imported on their own, before it, they met a half-initialised `log_rules` (a circular import). Every
server and CLI path loads the redactor anyway.
"""

from cleanroom.scrubbers import log_rules as log_rules  # import order, see above
