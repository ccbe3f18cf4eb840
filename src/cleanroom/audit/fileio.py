"""Regular-file I/O for the audit directory, written for a directory an attacker may have touched.

Each helper answers one trap: a FIFO or device planted in place of a file (a hang), a symlink pointing
the writer elsewhere, a file renamed away under an open log, a sparse file of terabytes of zeros, a short
`write`, and a rename that is not durable until its directory is fsynced. Kept apart from the checkpoint
format so segment, key and checkpoint code share one copy.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path


def open_regular(path: Path, flags: int = os.O_RDONLY, mode: int = 0o600, *, follow: bool = True) -> int:
    """`os.open` for the audit directory's files: a FIFO, device or directory put in place of one is an
    OSError, never a hang (O_NONBLOCK: opening a FIFO does not wait for its other end; it has no effect
    on regular files). `follow=False` (the writer: it appends to and truncates what it opens) refuses a
    symlink (ELOOP): one planted in the data dir would point the writer at any file it may write."""
    nofollow = 0 if follow else os.O_NOFOLLOW
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC | nofollow, mode)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
    except BaseException:
        os.close(fd)
        raise
    return fd


def require_in_place(fd: int, path: Path) -> None:
    """OSError (ESTALE) unless `fd` is still the file at `path`: a file renamed over, or removed from
    under, an open log takes every later write with it, and records acknowledged as durable would be
    gone at the next open."""
    held = os.fstat(fd)
    try:
        there = os.lstat(path)
    except FileNotFoundError:
        there = None
    if held.st_nlink == 0 or there is None or (there.st_dev, there.st_ino) != (held.st_dev, held.st_ino):
        raise OSError(errno.ESTALE, f"{path.name} was replaced or removed while the log had it open")


def read_regular(path: Path) -> bytes:
    """The whole of a regular file (see `open_regular`)."""
    with os.fdopen(open_regular(path), "rb") as fh:
        return fh.read()


def data_extent(fd: int) -> tuple[int, int, int | None]:
    """(size, end of the first run of data, where data starts again after that hole or None).

    The writer only appends, so its files have no holes; a crash can leave an unwritten (zero) tail.
    A sparse file of any apparent size costs an attacker nothing, so readers stop at the first hole
    instead of reading (or searching) terabytes of zeros. Only a file with fewer blocks than its size
    is asked (SEEK_HOLE); a file system without hole reporting answers "no hole"."""
    st = os.fstat(fd)
    size = st.st_size
    if st.st_blocks * 512 >= size:
        return size, size, None
    try:
        hole = os.lseek(fd, 0, os.SEEK_HOLE)
    except OSError:
        return size, size, None
    if hole >= size:
        return size, size, None
    try:
        after = os.lseek(fd, hole, os.SEEK_DATA)
    except OSError:  # ENXIO: nothing but the hole up to the end of the file
        return size, hole, None
    return size, hole, after if after < size else None


@dataclass(frozen=True)
class FileBytes:
    """A file read up to its first hole (`data_extent`): `size` is the file's size; `data_after_hole`
    says the file goes on with data after a hole, which the audit log never leaves."""

    data: bytes
    size: int
    data_after_hole: int | None


def read_until_hole(path: Path) -> FileBytes:
    """Read a regular file up to its first hole, without mapping it: a writer may truncate it meanwhile
    (a rolled back batch), which would be a SIGBUS for a reader of a mapping."""
    fd = open_regular(path)
    try:
        size, end, after = data_extent(fd)
        chunks = []
        position = 0
        while position < end:
            chunk = os.pread(fd, min(end - position, 1 << 24), position)
            if not chunk:  # cut short meanwhile: what was read is what is there
                size, after = position, None
                break
            chunks.append(chunk)
            position += len(chunk)
    finally:
        os.close(fd)
    return FileBytes(b"".join(chunks), size, after)


def write_fully(fd: int, data: bytes) -> None:
    """os.write may write less than asked (signals, quotas); loop until done or an OSError."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError("write returned 0 bytes")
        view = view[written:]


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
