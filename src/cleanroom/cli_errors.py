"""How `cleanroom` reports an error no command turned into a `CleanroomError`: one redacted line, never a
traceback (CLEANROOM_DEBUG=1 shows it).

Separate from cli.py because it knows the failures of every library the commands use (httpx, pydantic-
settings, tomllib, json, the OS) and must not leak what they quote: a key, a token, a payload.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path


def describe_failure(exc: BaseException) -> str:
    """One line for an error no command turned into a `CleanroomError`: a file that cannot be read or
    parsed, a server that cannot be reached, a bad value. Never a traceback (CLEANROOM_DEBUG=1 shows it);
    the text is redacted, since a library's message may quote what it was given."""
    import re
    import tomllib

    import httpx
    from pydantic_settings import SettingsError

    if isinstance(exc, httpx.HTTPError):
        where = ""
        with contextlib.suppress(RuntimeError):  # .request is unset on some errors
            where = f" {exc.request.url.copy_with(query=None)}"
        text = f"cannot reach{where}: {type(exc).__name__}: {exc}"
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            text += (
                " (the server's certificate is not trusted: for the dev certificate give"
                " --cacert DATA_DIR/tls/dev-cert.pem)"
            )
    elif isinstance(exc, SettingsError):
        # e.g. CLEANROOM_MODELS=echo: list and dict settings are JSON in the environment
        match = re.search(r'field "(\w+)"', str(exc))
        name = f"CLEANROOM_{match.group(1).upper()}" if match else "a CLEANROOM_* variable"
        text = f"cannot parse {name}: list and dict settings take JSON, e.g. CLEANROOM_MODELS='[\"echo\"]'"
    elif isinstance(exc, tomllib.TOMLDecodeError):
        text = f"CLEANROOM_CONFIG={os.environ.get('CLEANROOM_CONFIG')} is not valid TOML: {exc}"
    elif isinstance(exc, json.JSONDecodeError):
        path = _failing_path(exc)
        text = f"{path or 'a file'} is not valid JSON ({exc.msg}, line {exc.lineno}): corrupt or truncated?"
    elif isinstance(exc, OSError):
        text = f"{exc.strerror or type(exc).__name__}: {exc.filename}" if exc.filename else f"{exc}"
    elif isinstance(exc, ValueError):
        text = str(exc) or type(exc).__name__
    else:
        path = _failing_path(exc)
        text = (
            f"unexpected {type(exc).__name__} ({exc})"
            + (f" while reading {path}" if path else "")
            + "; a file in the data dir may be corrupt or from another version (CLEANROOM_DEBUG=1 for details)"
        )
    return _redacted(" ".join(text.split()))[:500]


def _failing_path(exc: BaseException) -> str | None:
    """The file a failure was about, when a frame of ours on its way up held one in `path` or `self.path`."""
    found: str | None = None
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_globals.get("__name__", "").startswith("cleanroom."):
            candidate = frame.f_locals.get("path")
            owner = frame.f_locals.get("self")
            if candidate is None and owner is not None:
                candidate = getattr(owner, "path", None)
            if isinstance(candidate, str | Path):
                found = str(candidate)
        tb = tb.tb_next
    return found


def _redacted(text: str) -> str:
    try:
        from cleanroom.scrubbers.logs import redact
    except ImportError:  # pragma: no cover - the redaction module ships with every release
        return text
    return redact(text)
