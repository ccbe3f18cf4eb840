"""Crash-safe small-file storage for the data dir: atomic replace, 0600, and an inter-process lock.

Keys and registries are small JSON documents. A half-written key file would lose a tenant's data for
good, so every write goes to a temp file in the same directory, is fsynced, then renamed over the old one
(and the directory fsynced): a crash leaves either the old or the new file, never a mix.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def ensure_private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    os.chmod(path, PRIVATE_DIR_MODE)
    return path


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = PRIVATE_FILE_MODE) -> None:
    ensure_private_dir(path.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_json(path: Path, document: Any, *, mode: int = PRIVATE_FILE_MODE) -> None:
    atomic_write_bytes(path, json.dumps(document, indent=2, sort_keys=True).encode("utf-8"), mode=mode)


def change_stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    """What tells a reload that a file changed under us. Size and ctime too, not only mtime and inode: an
    atomic replace may reuse a freed inode within one coarse mtime tick, and a missed reload of the
    registry or the key file would be a missed revocation."""
    return (st.st_mtime_ns, st.st_ino, st.st_size, st.st_ctime_ns)


def read_json(path: Path) -> Any:
    with open(path, "rb") as handle:
        return json.load(handle)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock shared by the server and CLI commands acting on one data dir."""
    ensure_private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
