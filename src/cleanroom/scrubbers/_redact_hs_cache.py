"""A per-user disk cache of the log redactor's compiled Hyperscan databases.

Why: compiling the rule set, with the trial compile of each rule that decides its mode, costs 1.6-1.8 s of
every process that redacts (each `cleanroom serve` start, each `cleanroom redact`, each embedded worker),
about a third of a server's start-up. The databases depend only on the rules, the Hyperscan build and the
CPU, so one compile per rule set and machine is enough.

Trust: the cache holds no secret, but it decides which rules run, so a tampered database could keep a rule
from firing and let a secret into a log. It is therefore read only from a directory and a file owned by
this user and writable by nobody else (the rule OpenSSH applies to `~/.ssh`); whoever can write there
could as well edit the installed package. Any doubt (another owner, a loose mode, a file that does not
parse, a key that does not match, a database Hyperscan refuses to load) means: compile afresh. The cache
never fails a redactor, and a failed write is only a lost speed-up.

Where: `CLEANROOM_CACHE_DIR` (`off` or empty disables it), else `$XDG_CACHE_HOME/cleanroom`, else
`~/.cache/cleanroom`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import platform
import stat
import tempfile
from pathlib import Path
from typing import Any

FORMAT = "cleanroom-hyperscan-cache/1"


def cache_dir() -> Path | None:
    """The cache directory this process would use, or None when caching is off or there is no home."""
    configured = os.environ.get("CLEANROOM_CACHE_DIR")
    if configured is not None:
        return None if configured.strip().lower() in ("", "off", "0", "false", "none") else Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "cleanroom"
    try:
        home = Path.home()
    except (RuntimeError, KeyError):  # no HOME and no passwd entry (a bare container user)
        return None
    return home / ".cache" / "cleanroom"


def cache_key(hyperscan_version: str, inputs: Any) -> str:
    """A name for one rule set compiled by one Hyperscan build on one kind of CPU."""
    material = json.dumps([FORMAT, hyperscan_version, platform.machine(), inputs], sort_keys=True)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def _trusted(st: os.stat_result, *, directory: bool) -> bool:
    kind_ok = stat.S_ISDIR(st.st_mode) if directory else stat.S_ISREG(st.st_mode)
    return kind_ok and st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def load(key: str) -> dict[str, Any] | None:
    """The cached entry for `key` (its JSON fields, blobs decoded to bytes), or None on any doubt."""
    where = cache_dir()
    if where is None:
        return None
    path = where / f"hyperscan-{key}.json"
    try:
        if not _trusted(os.stat(where), directory=True):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not _trusted(os.fstat(fd), directory=False):
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            entry = json.loads(f.read(64 * 1024 * 1024))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    try:
        if entry["format"] != FORMAT or entry["key"] != key:
            return None
        entry["db"] = base64.b64decode(entry["db"], validate=True)
        if entry["anchor_db"] is not None:
            entry["anchor_db"] = base64.b64decode(entry["anchor_db"], validate=True)
    except (KeyError, TypeError, binascii.Error):
        return None
    return dict(entry)


def store(key: str, *, db: bytes, anchor_db: bytes | None, som_in_main: list[int], anchor_ids: list[int]) -> None:
    """Write the entry for `key` atomically (0600, in a 0700 directory); any failure is ignored."""
    where = cache_dir()
    if where is None:
        return
    entry = {
        "format": FORMAT,
        "key": key,
        "som_in_main": som_in_main,
        "anchor_ids": anchor_ids,
        "db": base64.b64encode(db).decode("ascii"),
        "anchor_db": None if anchor_db is None else base64.b64encode(anchor_db).decode("ascii"),
    }
    try:
        where.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not _trusted(os.stat(where), directory=True):
            return
        fd, tmp = tempfile.mkstemp(prefix=".hyperscan-", dir=where)  # 0600
        try:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                json.dump(entry, f)
            os.replace(tmp, where / f"hyperscan-{key}.json")
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError:
        return
