"""When the audit log signs a checkpoint, and how the signed line reaches the checkpoints file.

One job: checkpoints. After every `checkpoint_every_records` records, or `checkpoint_every_s` seconds
after the last one (a ticker thread queues the task even when appends stop), and at open and close, the
log syncs every record the checkpoint will cover, signs the tree head (P-384), appends one line to the
checkpoints file and fsyncs it. A checkpoint that cannot be written is retried at the next trigger; one
written to a file no longer in the directory breaks the log like a failed fsync.

It is separate from the write stage (`log_writer.py`) because a checkpoint is a different kind of write
(signed, to another file, on a timer as well as after records) with its own failure rules. Checkpoint
tasks run as group-commit slots, so they never interleave with a batch. `AuditLog` inherits this as a
mixin and keeps the state.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.audit.checkpoints import (
    CHECKPOINTS_FILE,
    ZERO_DIGEST,
    Checkpoint,
    sign_checkpoint,
)
from cleanroom.audit.commit import Slot
from cleanroom.audit.durability import Durability
from cleanroom.audit.fileio import require_in_place, write_fully
from cleanroom.audit.records import RecordCipher
from cleanroom.audit.recovery import LogState
from cleanroom.errors import AuditUnavailable

logger = logging.getLogger("cleanroom.audit")


class CheckpointSchedule:
    """Checkpoint writing and scheduling for `AuditLog` (a mixin; `AuditLog.__init__` sets the attributes)."""

    directory: Path
    _signing_key: ec.EllipticCurvePrivateKey
    _every_records: int
    _every_s: float
    _broken: str | None
    _durability: Durability
    _state: LogState
    _cipher: RecordCipher
    _written: int
    _cp_fd: int
    _last_cp: Checkpoint | None
    _last_cp_mono: float
    _stop: threading.Event

    if TYPE_CHECKING:  # provided by BatchWriter

        def _submit(self, slot: Slot, closing: bool = False) -> None: ...

    def _maybe_checkpoint(self) -> None:
        last_size = -1 if self._last_cp is None else self._last_cp.tree_size
        pending = self._state.seq - max(last_size, 0)
        due_time = time.monotonic() - self._last_cp_mono >= self._every_s
        if pending >= self._every_records or (pending > 0 and due_time) or last_size < 0:
            try:
                self._write_checkpoint()
            except OSError as exc:
                # Records are durable and chained; the checkpoint is retried at the next trigger.
                logger.error("audit log: checkpoint failed (%s); will retry", exc.strerror)

    def _write_checkpoint(self) -> Checkpoint:
        """Caller holds the busy flag. Syncs covered records first, then appends and fsyncs the line."""
        if self._broken is not None:
            raise AuditUnavailable(f"the audit log is unusable until reopened: {self._broken}")
        self._durability.sync_through(self._state.seq)  # every covered record durable first
        state = self._state
        last = self._last_cp
        checkpoint = sign_checkpoint(
            self._signing_key,
            index=0 if last is None else last.index + 1,
            log_id=self._cipher.log_id,
            tree=state.tree,
            chain_head=state.chain,
            prev_digest=ZERO_DIGEST if last is None else last.digest(),
            segment_index=state.segment,
            segment_offset=state.segment_size,
            last_record=state.last_record,
            time_ns=time.time_ns(),
        )
        size_before = os.fstat(self._cp_fd).st_size
        try:
            write_fully(self._cp_fd, (checkpoint.dumps() + "\n").encode("ascii"))
            os.fsync(self._cp_fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self._cp_fd, size_before)
            raise
        try:
            require_in_place(self._cp_fd, self.directory / CHECKPOINTS_FILE)
        except OSError as exc:
            # Checkpoints written to a file no longer in the directory are lost: stop, as for a failed fsync.
            self._broken = str(exc.strerror)
            error = AuditUnavailable(f"the audit log is unusable until reopened: {exc.strerror}")
            self._durability.fail(error)
            raise error from exc
        self._last_cp = checkpoint
        self._last_cp_mono = time.monotonic()
        return checkpoint

    def _checkpoint_task(self) -> Checkpoint:
        try:
            return self._write_checkpoint()
        except OSError as exc:
            raise AuditUnavailable(f"audit checkpoint could not be written: {exc.strerror}") from exc

    def _final_checkpoint_task(self) -> None:
        last = self._last_cp
        if self._broken is None and (last is None or last.tree_size < self._state.seq):
            try:
                self._write_checkpoint()
            except OSError as exc:
                logger.error("audit log: final checkpoint failed: %s", exc.strerror)

    def _timed_checkpoint_task(self) -> None:
        last = self._last_cp
        if (
            self._broken is None
            and (last is None or last.tree_size < self._state.seq)
            and time.monotonic() - self._last_cp_mono >= self._every_s
        ):
            try:
                self._write_checkpoint()
            except (OSError, AuditUnavailable) as exc:
                logger.error("audit log: timed checkpoint failed: %s", exc)

    def _tick(self) -> None:
        """Time-based checkpoints for records that arrived since the last one, even when appends stop."""
        while not self._stop.wait(min(self._every_s, 5.0)):
            last = self._last_cp  # unlocked reads: only deciding whether to queue a task
            if last is not None and last.tree_size == self._written:
                continue
            if time.monotonic() - self._last_cp_mono < self._every_s:
                continue
            try:
                self._submit(Slot(task=self._timed_checkpoint_task))
            except AuditUnavailable:
                return
