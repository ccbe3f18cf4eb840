"""Logging for the runtime: structured JSON lines, with every handler behind a `RedactingFilter`.

`install_redaction()` is what `cleanroom serve` calls once, after any other logging configuration and
after uvicorn has set up its own loggers. It puts the filter on the HANDLERS of the root, `uvicorn`,
`uvicorn.error` and `uvicorn.access` loggers — a filter on a logger only sees records logged on that very
logger, never those propagated from its children — and on `logging.lastResort`.

Embedders who configure logging themselves use `logging_config()` (a `logging.config.dictConfig` dict,
also accepted by `uvicorn.run(log_config=...)`); the snippet is spelled out in docs/logging.md.

`register(subparsers)` adds the `cleanroom redact` command: stdin to stdout, one line out per line in.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any, TextIO

from cleanroom.scrubbers.logs import (
    _STANDARD_ATTRS,
    RedactingFilter,
    Redactor,
    default_redactor,
    redact_byte_stream,
)
from cleanroom.scrubbers.stdio import redact_standard_streams

REDACTED_LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access")
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r}")
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, then `extra` fields, exc and stack.

    Defence in depth: a record that did not pass a `RedactingFilter` (a handler someone added later) is
    redacted here before it is rendered.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self._filter = RedactingFilter(redactor)

    def format(self, record: logging.LogRecord) -> str:
        self._filter.filter(record)  # no-op (one dict lookup) when a handler filter already ran
        ct = record.created
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ct)) + f".{int(ct % 1 * 1000):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and key not in out:
                out[key] = value
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, default=str, ensure_ascii=False)


class RedactingTextFormatter(logging.Formatter):
    """Plain-text counterpart of `JsonFormatter` (for `json_logs=False`), with the same safety net."""

    def __init__(self, fmt: str = _TEXT_FORMAT, redactor: Redactor | None = None) -> None:
        super().__init__(fmt)
        self._filter = RedactingFilter(redactor)

    def format(self, record: logging.LogRecord) -> str:
        self._filter.filter(record)
        return super().format(record)


def logging_config(level: str = "info", json_logs: bool = True) -> dict[str, Any]:
    """A `logging.config.dictConfig` dict with redaction on every handler (also a uvicorn `log_config`)."""
    lvl = logging.getLevelName(_level(level))
    formatter = (
        {"()": "cleanroom.logging_setup.JsonFormatter"}
        if json_logs
        else {"()": "cleanroom.logging_setup.RedactingTextFormatter"}
    )
    handler = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
        "filters": ["redact"],
        "formatter": "default",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": "cleanroom.scrubbers.logs.RedactingFilter"}},
        "formatters": {"default": formatter},
        "handlers": {"default": dict(handler), "access": dict(handler)},
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": lvl, "propagate": False},
            "uvicorn.error": {"level": lvl},
            "uvicorn.access": {"handlers": ["access"], "level": lvl, "propagate": False},
        },
        "root": {"handlers": ["default"], "level": lvl},
    }


def install_redaction(
    level: str = "info",
    json_logs: bool = True,
    *,
    redactor: Redactor | None = None,
    stream: TextIO | None = None,
    redact_stdio: bool = True,
) -> None:
    """Put a `RedactingFilter` and a redacting formatter on every handler of the runtime's loggers.

    Idempotent. Handlers that already carry a `RedactingFilter` keep it; a logger that would otherwise
    fall through to `logging.lastResort` gets a handler of its own. With `redact_stdio` (the default),
    `sys.stdout` and `sys.stderr` are then replaced by redacting streams, so what a model prints is
    redacted too (`cleanroom.scrubbers.stdio`); the log handlers keep the original streams.
    """
    lvl = _level(level)
    redactor = redactor or default_redactor()
    flt = RedactingFilter(redactor)
    formatter: logging.Formatter = JsonFormatter(redactor) if json_logs else RedactingTextFormatter(redactor=redactor)
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(stream or sys.stderr))
    root.setLevel(lvl)
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if name:
            logger.setLevel(lvl)
            if not logger.handlers and not logger.propagate:
                logger.addHandler(logging.StreamHandler(stream or sys.stderr))
        for handler in logger.handlers:
            _protect(handler, flt, formatter)
    if logging.lastResort is not None:
        _protect(logging.lastResort, flt, formatter)
    if redact_stdio:
        redact_standard_streams(redactor)


def _protect(handler: logging.Handler, flt: RedactingFilter, formatter: logging.Formatter) -> None:
    if not any(isinstance(f, RedactingFilter) for f in handler.filters):
        handler.addFilter(flt)
    handler.setFormatter(formatter)


# --------------------------------------------------------------------------------------------------------
# `cleanroom redact`
# --------------------------------------------------------------------------------------------------------
def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `redact` (stdin -> stdout, one line out per line in) to the `cleanroom` command."""
    parser = subparsers.add_parser(
        "redact",
        help="redact secrets and PII from stdin to stdout, line by line",
        description="Copy stdin to stdout with every secret and piece of PII replaced by a typed "
        "placeholder such as [REDACTED:EMAIL]. One line out per line in; bytes that are not UTF-8 pass "
        "through unchanged.",
    )
    parser.add_argument("--keep-card-last4", action="store_true", help="keep the last 4 digits of payment cards")
    parser.add_argument(
        "--line-buffered",
        action="store_true",
        help="accepted for old scripts: output is always flushed as soon as it is ready",
    )
    parser.set_defaults(func=run_redact)


def run_redact(args: argparse.Namespace) -> int:
    if sys.stdin is None or sys.stdout is None:  # `cleanroom redact >&-`: say so, not "unexpected AttributeError"
        print("cleanroom: redact needs an open stdin and stdout", file=sys.stderr)
        return 2
    redactor = Redactor(keep_card_last4=True) if getattr(args, "keep_card_last4", False) else None
    # Every read's output is flushed at once, so --line-buffered is the default behaviour (kept for scripts).
    try:
        interrupted = redact_byte_stream(sys.stdin.buffer, sys.stdout.buffer, redactor=redactor)
    except BrokenPipeError:  # `cleanroom redact | head -1`: the reader left; stop quietly
        # Point stdout at /dev/null so the interpreter's final flush does not report the broken pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
    except KeyboardInterrupt:  # a second Ctrl-C while the rest was being flushed
        return 130
    return 130 if interrupted else 0


def main(argv: list[str] | None = None) -> int:
    """`python -m cleanroom.logging_setup redact` — the same command without the full CLI."""
    parser = argparse.ArgumentParser(prog="cleanroom")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
