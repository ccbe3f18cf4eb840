"""Opening an audit log directory (lock, recover, open for appending) and releasing it again.

One job: the log's files and keys from open to close. Opening takes an exclusive `flock` on `.lock` and
on the directory itself (only one process may write a log: two writers would interleave records with the
same numbers), runs `recovery.recover_log` (which verifies what is there and cuts off a torn tail,
reporting each repair), and opens the current segment and the checkpoints file for appending, refusing
symlinks. Releasing closes every descriptor and zeroes the audit key and the cipher's root key.

It is separate from `log.py` because start-up and shutdown are where file-system traps live (a symlink
planted in place of a segment, a deleted `.lock`), and none of it runs on the append path. `AuditLog`
inherits it as a mixin; the descriptors are the log's own attributes.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.audit.checkpoints import CHECKPOINTS_FILE, Checkpoint
from cleanroom.audit.durability import Durability
from cleanroom.audit.fileio import open_regular
from cleanroom.audit.records import RecordCipher
from cleanroom.audit.recovery import LogState, Repair, recover_log
from cleanroom.audit.segments import SegmentWriter
from cleanroom.errors import AuditUnavailable

logger = logging.getLogger("cleanroom.audit")


class LogFiles:
    """Open and release for `AuditLog` (a mixin; `AuditLog.__init__` sets the attributes)."""

    directory: Path
    repairs: list[Repair]
    _audit_key: bytearray
    _signing_key: ec.EllipticCurvePrivateKey
    _lock_fd: int
    _dir_lock_fd: int
    _cp_fd: int
    _last_cp: Checkpoint | None
    _cipher: RecordCipher
    _segments: SegmentWriter
    _state: LogState
    _written: int
    _durability: Durability

    def _open(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            self._lock_fd = open_regular(self.directory / ".lock", os.O_RDWR | os.O_CREAT, follow=False)
        except OSError as exc:
            raise AuditUnavailable(f"audit lock file cannot be opened: {exc.strerror}") from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise AuditUnavailable(f"audit log {self.directory} is in use by another process") from exc
        # The directory itself is locked too: deleting `.lock` (by hand, or a clean-up of *.lock files)
        # would otherwise let a second writer in, and two writers interleave records with the same
        # numbers. Best effort: a file system that cannot lock a directory keeps the `.lock` lock alone.
        self._dir_lock_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(self._dir_lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise AuditUnavailable(f"audit log {self.directory} is in use by another process") from exc
        except OSError as exc:
            logger.warning("audit log: cannot lock the directory %s (%s)", self.directory, exc.strerror)
        recovered = recover_log(self.directory, self._audit_key, self._signing_key.public_key())
        self.repairs = recovered.repairs
        self._last_cp = recovered.last_checkpoint
        if recovered.cipher is None or recovered.state is None:
            self._cipher = RecordCipher(self._audit_key, os.urandom(16))
            self._segments = SegmentWriter(self.directory, self._cipher)
            self._segments.create(1, 0)
            self._state = LogState.empty(self._cipher.log_id)
        else:
            self._cipher, self._state = recovered.cipher, recovered.state
            self._segments = SegmentWriter(self.directory, self._cipher)
        self._written = self._state.seq
        # Recovered records past the newest checkpoint may still be only in the page cache: the
        # checkpoint written at open syncs them.
        covered = 0 if self._last_cp is None else self._last_cp.tree_size
        self._durability.reset(written=self._state.seq, durable=covered)
        try:
            self._segments.open(self._state.segment)
        except OSError as exc:  # a symlink or other non-regular file in place of the segment
            raise AuditUnavailable(
                f"audit segment {self._state.segment} cannot be opened for appending ({exc.strerror}); "
                "run `cleanroom audit verify`"
            ) from exc
        try:
            self._cp_fd = open_regular(
                self.directory / CHECKPOINTS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, follow=False
            )
        except OSError as exc:
            raise AuditUnavailable(f"{CHECKPOINTS_FILE} cannot be opened for appending: {exc.strerror}") from exc

    def _release_files(self) -> None:
        segments: SegmentWriter | None = getattr(self, "_segments", None)
        if segments is not None:
            segments.close()
        for name in ("_cp_fd", "_lock_fd", "_dir_lock_fd"):
            fd = getattr(self, name)
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
                setattr(self, name, -1)

    def _wipe_keys(self) -> None:
        self._audit_key[:] = bytes(len(self._audit_key))
        cipher = getattr(self, "_cipher", None)
        if cipher is not None:
            cipher.close()
