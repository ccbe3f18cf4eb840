"""The host server's access log, kept free of query strings once `CleanroomMiddleware` is in the process.

The query of a sealed call is bound to the request (a proxy cannot change it) but travels and is logged in
clear: uvicorn's access record is `METHOD path?query`, and a query is where callers put identifiers and
tokens the redactor has no pattern for (`?email=...`, `?q=<anything>`). `cleanroom serve` drops it from its
own access log (`server.app.AccessLogWithoutQuery`); a middleware inside someone else's server does the same
on the access loggers of the servers it knows: uvicorn's and hypercorn's (filters on the LOGGER, so they run
before any handler formats the record). Process-wide and idempotent: every path's query goes, sealed or not.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping

from cleanroom.server.app import QUERY_DROPPED, AccessLogWithoutQuery


class HypercornAccessWithoutQuery(logging.Filter):
    """hypercorn logs `access_log_format % atoms` (`hypercorn.logging.AccessLogAtoms`, a dict): its default
    format uses `r` (no query), but an operator's `--access-logformat` may name `R`, `Uq` or `q`, the atoms
    that carry the query. Those lose it."""

    def filter(self, record: logging.LogRecord) -> bool:
        atoms = record.args
        # Changed in place: the atoms are built for this one record, and their class answers "-" for a
        # header the format names and the request lacks (a plain dict copy would raise KeyError instead).
        if isinstance(atoms, MutableMapping):
            for key in ("R", "Uq"):
                value = atoms.get(key)
                if isinstance(value, str) and "?" in value:
                    head, _, rest = value.partition("?")
                    # "R" is "METHOD path?query PROTOCOL": the protocol after the query stays.
                    tail = " " + rest.rsplit(" ", 1)[1] if key == "R" and " " in rest else ""
                    atoms[key] = head + QUERY_DROPPED + tail
            if atoms.get("q"):
                atoms["q"] = QUERY_DROPPED[1:]
        return True


def guard_access_logs() -> None:
    """Idempotent: the query-dropping filters on `uvicorn.access` and `hypercorn.access`."""
    for name, kind in (("uvicorn.access", AccessLogWithoutQuery), ("hypercorn.access", HypercornAccessWithoutQuery)):
        logger = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())
