"""The spill file on disk: creating it nameless and private, the OS calls on it, and disposing of it.

Split from `spill.py` (which keeps the file object and its cipher state machine) because this is the part
that talks to the filesystem and holds no secret: a descriptor, its mode and links, its stale fallback
names, and the mapping of an `OSError` to the `SpillError` a caller sees. Tests inject faults here
(`SpillIO` subclasses failing `pwrite` with ENOSPC or EIO) without patching `os` globally. The names stay
importable from `cleanroom.runtime.spill`.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
from pathlib import Path

from cleanroom.errors import SpillError

log = logging.getLogger("cleanroom.spill")

FALLBACK_NAME_PREFIX = ".cleanroom-spill-"
_FILE_MODE = 0o600
# Errors that mean "this filesystem or kernel has no O_TMPFILE": fall back to create-and-unlink.
_NO_TMPFILE_ERRNOS = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})


class SpillIO:
    """The OS calls a SpillFile makes, in one injectable object.

    Tests pass a subclass that fails `pwrite` with ENOSPC or EIO (dependency injection instead of patching
    `os` globally); `use_tmpfile=False` forces the create-and-unlink fallback.
    """

    def __init__(self, *, use_tmpfile: bool = True) -> None:
        self.use_tmpfile = use_tmpfile

    def open_unlinked(self, directory: Path) -> int:
        """An O_RDWR descriptor on a new, nameless regular file in `directory`, mode 0600."""
        if self.use_tmpfile and hasattr(os, "O_TMPFILE"):
            try:
                return self.open_tmpfile(directory)
            except OSError as exc:
                if exc.errno not in _NO_TMPFILE_ERRNOS:
                    raise
                log.info("O_TMPFILE unsupported in the spill directory; using create-and-unlink")
        return self.create_and_unlink(directory)

    def open_tmpfile(self, directory: Path) -> int:
        """Linux O_TMPFILE: the inode never has a name, so no crash can leave one behind. O_EXCL keeps it
        that way (open(2)): without it, anyone who reaches /proc/PID/fd (the same uid) could give the file
        a name with linkat(AT_SYMLINK_FOLLOW or AT_EMPTY_PATH), and it would then outlive the process."""
        return os.open(directory, os.O_RDWR | os.O_CLOEXEC | os.O_TMPFILE | os.O_EXCL, _FILE_MODE)

    def create_and_unlink(self, directory: Path) -> int:
        """Fallback: a random name, O_EXCL|O_NOFOLLOW (no symlink games), mode 0600, unlinked at once.
        A crash between the two calls leaves an empty file named `.cleanroom-spill-*` (no data yet)."""
        flags = os.O_RDWR | os.O_CLOEXEC
        for _ in range(8):
            path = directory / f"{FALLBACK_NAME_PREFIX}{secrets.token_hex(16)}"
            try:
                fd = os.open(path, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, _FILE_MODE)
            except FileExistsError:
                continue
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass  # already unlinked (a start-up sweep, see sweep_stale_files); the fstat check follows
            except BaseException:
                os.close(fd)
                raise
            return fd
        raise FileExistsError(errno.EEXIST, "could not create a unique spill file name")

    def pwrite(self, fd: int, data: memoryview, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def preadinto(self, fd: int, buffer: memoryview, offset: int) -> int:
        return os.preadv(fd, [buffer], offset)

    def size_bytes(self, fd: int) -> int:
        return os.fstat(fd).st_size

    def discard(self, fd: int) -> None:
        """Drop the data blocks now (best effort), then close: a nameless inode is freed on last close."""
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)


def sweep_stale_files(directory: Path) -> int:
    """Remove what crashed create-and-unlink fallbacks left in `directory`: `.cleanroom-spill-*` names.

    Such a name exists only between the fallback's `open(O_EXCL)` and its `unlink` (no byte is written
    before the unlink), so a leftover is an empty file of a process that died in between. Run at start-up
    (the batch store does); a spill being created meanwhile by another process finds its name gone and
    carries on (its descriptor holds the inode). Only empty regular files of this user go: symlinks,
    directories, files with data and other users' files of that name are left alone (a shared directory,
    or a server run as root, must not delete what is not its own). Returns how many entries were removed."""
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(FALLBACK_NAME_PREFIX):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or info.st_size or info.st_uid != os.geteuid():
                continue
            os.unlink(entry.path)
            removed += 1
        except OSError:
            continue
    if removed:
        log.warning("removed %d stale spill file name(s) left by a crash in %s", removed, directory)
    return removed


def default_directory() -> Path:
    import tempfile

    return Path(tempfile.gettempdir())


def fill_random(view: memoryview) -> None:
    """Read the key from the kernel straight into the SecureBuffer: os.urandom would leave a heap copy."""
    with open("/dev/urandom", "rb", buffering=0) as source:
        filled = 0
        while filled < view.nbytes:
            count = source.readinto(view[filled:])
            if not count:
                raise OSError(errno.EIO, "short read from /dev/urandom")
            filled += count


def check_private_and_nameless(fd: int) -> None:
    """Refuse a descriptor that is not a regular file, mode 0600 or stricter, with no links: a fallback name
    renamed or hard-linked away in a shared directory is caught here."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o077 or info.st_nlink != 0:
        raise OSError(errno.EPERM, "spill file is not a private, unlinked regular file")


def spill_error(what: str, exc: OSError) -> SpillError:
    """The caller-facing error for an OS failure: names the errno, hints at a full disk."""
    name = errno.errorcode.get(exc.errno or 0, "unknown")
    log.warning("%s: %s (%s)", what, exc.strerror, name)
    hint = " (disk full?)" if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else ""
    return SpillError(f"{what}: {exc.strerror or exc} [{name}]{hint}; the partial spill file was discarded")
