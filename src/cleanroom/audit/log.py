"""The append-only, encrypted, hash-chained audit log with signed checkpoints (DESIGN invariant 5).

Two ways to append. `append` returns only when the record is durable under the fsync policy.
`append_ahead` returns once the record is *written* (sequence number, chain, in the page cache: it
survives a kill of this process) with an `AuditTicket` whose `wait_durable()` returns once it is durable
(`durability.py`): the request path writes the record before it decrypts and waits before any answer
leaves, so the fdatasync runs while it decrypts and computes. `append` is `append_ahead` + `wait_durable`;
`append_many` / `append_many_ahead` do the same for a batch of records written as one unit.

- "always": one append (one record, or one `append_many` batch) per write, `fdatasync` before the write
            stage moves on (the conservative reference; tickets are durable when issued);
- "group":  group commit in two stages. Appenders queue their record; whichever appender finds no write
            in progress becomes the leader, seals, chains and hashes every queued record, writes them in
            one `write`, and wakes the others. Durability is coalesced separately: one fdatasync at a
            time, each covering every record written before it started (`durability.py`), so writes go
            on while an fdatasync is in flight. `append_many` puts a whole batch in one slot;
- "none":   records reach the OS (`write`) before `append` returns: they survive a crash of this process,
            not a power loss. Checkpoints still fsync the records they cover first.

Failure handling (fail closed): a failed `write` fails the whole batch with `AuditUnavailable`, truncates
the segment back to the last durable byte and rolls the in-memory chain and tree back, so later appends
may succeed. A failed `fsync` cannot be retried safely (the kernel may already have dropped the dirty
pages: "fsyncgate"), so it breaks the log until it is reopened: every ticket it should have covered
fails, and so does every append and ticket after it; a later fsync that "succeeds" proves nothing.

Only one process may write a log: an exclusive `flock` on `.lock` in the directory enforces it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.audit.checkpoints import (
    CHECKPOINTS_FILE,
    ZERO_DIGEST,
    Checkpoint,
    open_regular,
    require_in_place,
    require_p384,
    sign_checkpoint,
    write_fully,
)
from cleanroom.audit.commit import GroupCommit, Slot
from cleanroom.audit.durability import AuditTicket, Durability
from cleanroom.audit.merkle import chain_next, leaf_hash
from cleanroom.audit.records import (
    FRAME_HEADER_LEN,
    SEGMENT_HEADER_LEN,
    TAG_LEN,
    AuditEvent,
    RecordCipher,
)
from cleanroom.audit.recovery import LogState, Repair, recover_log
from cleanroom.audit.segments import SegmentWriter
from cleanroom.errors import AuditUnavailable, ConfigurationError

logger = logging.getLogger("cleanroom.audit")

FsyncPolicy = Literal["always", "group", "none"]
DEFAULT_SEGMENT_MAX_BYTES = 64 * 1024 * 1024


def _encode(event: AuditEvent) -> bytes:
    """The record's plaintext; an event that cannot be written (over 64 KiB once encoded, or a string
    with a lone surrogate, which UTF-8 cannot hold) fails closed like any other audit failure, with the
    error the request path maps to 503, never a bare ValueError."""
    try:
        return event.to_json_bytes()
    except ValueError as exc:  # UnicodeEncodeError included
        raise AuditUnavailable(f"audit event rejected: {exc}") from exc


class AuditLog:
    """See the module docstring. `directory` is the audit directory itself (usually DATA_DIR/audit)."""

    def __init__(
        self,
        directory: Path,
        audit_key: bytes | bytearray,
        signing_key: ec.EllipticCurvePrivateKey,
        *,
        checkpoint_every_records: int = 1000,
        checkpoint_every_s: float = 60.0,
        segment_max_bytes: int = DEFAULT_SEGMENT_MAX_BYTES,
        fsync: FsyncPolicy = "group",
    ) -> None:
        if len(audit_key) != 32:
            raise ConfigurationError("audit key must be 32 bytes (AES-256)")
        try:
            require_p384(signing_key)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
        if checkpoint_every_records < 1 or checkpoint_every_s <= 0:
            raise ConfigurationError("checkpoint intervals must be positive")
        min_segment = SEGMENT_HEADER_LEN + FRAME_HEADER_LEN + TAG_LEN + 64 * 1024
        if segment_max_bytes < min_segment:
            raise ConfigurationError(f"segment_max_bytes must be at least {min_segment}")
        if fsync not in ("always", "group", "none"):
            raise ConfigurationError(f"unknown fsync policy {fsync!r}")
        self.directory = Path(directory)
        self._audit_key = bytearray(audit_key)
        self._signing_key = signing_key
        self._every_records = checkpoint_every_records
        self._every_s = checkpoint_every_s
        self._segment_max = segment_max_bytes
        self._fsync = fsync
        self._durability = Durability(self._sync_segment, self._mark_broken, sync_on_wait=fsync != "none")
        self._commit = GroupCommit(
            self._write_batch,
            one_at_a_time=fsync == "always",
            on_records_written=self._records_written,
            make_durable=self._durability.wait,
        )
        self._mutex = self._commit.mutex
        self._closed = False
        self._broken: str | None = None
        self._segments: SegmentWriter  # set by _open
        self._written = 0
        self._cp_fd = -1
        self._lock_fd = -1
        self._dir_lock_fd = -1
        self.repairs: list[Repair] = []
        self._last_cp: Checkpoint | None = None
        self._last_cp_mono = time.monotonic()
        try:
            self._open()
        except BaseException:
            self._closed = True  # never opened: nothing for __del__ to warn about
            self._release_files()
            self._wipe_keys()
            raise
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="cleanroom-audit-checkpoint", daemon=True)
        self._ticker.start()
        try:
            if self._last_cp is None or self._last_cp.tree_size < self._state.seq:
                # Records a crash left unsigned get signed now, so a reopened log never has an unsigned
                # tail longer than what the next crash could leave.
                self.checkpoint_now()
            for repair in self.repairs:
                self.append(
                    AuditEvent(
                        event="audit.tail_repaired",
                        details={
                            "file": repair.file,
                            "offset": repair.offset,
                            "bytes_removed": repair.bytes_removed,
                            "reason": repair.reason,
                        },
                    )
                )
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ public API
    @property
    def log_id(self) -> bytes:
        return self._cipher.log_id

    @property
    def size(self) -> int:
        """Records durably in the log (written, with fsync "none")."""
        if self._fsync == "none":
            with self._mutex:
                return self._written
        return self._durability.durable

    @property
    def fdatasyncs(self) -> int:
        """fdatasyncs run to make records durable (not counting rotations, rollbacks and checkpoints)."""
        return self._durability.syncs

    @property
    def group_commits(self) -> int:
        """Record batches written so far by this process (each one `write` and, unless fsync is "none",
        one fdatasync): records appended / group_commits is the mean group size."""
        return self._commit.batches_written

    @property
    def last_checkpoint(self) -> Checkpoint | None:
        return self._last_cp

    def append(self, event: AuditEvent) -> int:
        """Append one record; return its sequence number once durable. Raises AuditUnavailable.

        Same as `append_ahead` + `wait_durable`, but the batch's writer waits for the fdatasync and wakes
        this thread once, when the record is durable (commit.py)."""
        if not isinstance(event, AuditEvent):
            raise TypeError("append takes an AuditEvent")
        slot = Slot((_encode(event),), durable=True)
        self._submit(slot)
        if slot.error is not None:
            raise slot.error
        # Already durable (or failed, which raises the error every later wait raises): never syncs here.
        AuditTicket(self._durability, slot.seq, slot.seq + 1).wait_durable()
        return slot.seq

    def append_ahead(self, event: AuditEvent) -> AuditTicket:
        """Write one record and return once it is in the log file (not yet fsynced) with its ticket;
        `ticket.wait_durable()` before releasing anything the record vouches for. Raises AuditUnavailable
        if the record could not be written."""
        if not isinstance(event, AuditEvent):
            raise TypeError("append takes an AuditEvent")
        slot = Slot((_encode(event),))
        self._submit(slot)
        if slot.error is not None:
            raise slot.error
        return AuditTicket(self._durability, slot.seq, slot.seq + 1)

    def append_many(self, events: Sequence[AuditEvent]) -> range:
        """Append several records as one unit: contiguous, in order, durable together under one fsync.

        For a caller that audits a batch (one device thread opening a whole scheduler batch): one group
        commit instead of one per record. All or nothing: on AuditUnavailable none of them is durable.
        Returns the sequence numbers.
        """
        if not all(isinstance(event, AuditEvent) for event in events):
            raise TypeError("append_many takes AuditEvents")
        if not events:
            return range(0)
        slot = Slot(tuple(_encode(event) for event in events), durable=True)
        self._submit(slot)
        if slot.error is not None:
            raise slot.error
        AuditTicket(self._durability, slot.seq, slot.seq + len(events)).wait_durable()
        return range(slot.seq, slot.seq + len(events))

    def append_many_ahead(self, events: Sequence[AuditEvent]) -> AuditTicket:
        """`append_ahead` for a whole batch: write the records as one unit (contiguous, in order, one group
        commit, one `write`) and return one ticket for all of them; `wait_durable()` before releasing
        anything they vouch for. All or nothing: if AuditUnavailable is raised, none of them was written.

        The request path's batch runner writes every request's record with one call before it decrypts
        any of them: the slot, queueing, write syscall and checkpoint test are paid once per batch
        instead of once per request (docs/audit.md, 2026-11-29)."""
        if not all(isinstance(event, AuditEvent) for event in events):
            raise TypeError("append_many_ahead takes AuditEvents")
        if not events:
            return AuditTicket(self._durability, 0, 0)
        slot = Slot(tuple(_encode(event) for event in events))
        self._submit(slot)
        if slot.error is not None:
            raise slot.error
        return AuditTicket(self._durability, slot.seq, slot.seq + len(events))

    def record_many_ahead(self, fields: Sequence[Mapping[str, Any]]) -> AuditTicket:
        """`append_many_ahead` for mappings (the runtime's `AuditSink.record_many_ahead`); one malformed
        mapping rejects the whole batch (AuditUnavailable) before anything is written."""
        return self.append_many_ahead([self.event_from_fields(one) for one in fields])

    def record(self, fields: Mapping[str, Any]) -> int:
        """`append` for callers that hold a mapping (the runtime's `AuditSink.record` protocol)."""
        return self.append(self.event_from_fields(fields))

    def record_ahead(self, fields: Mapping[str, Any]) -> AuditTicket:
        """`append_ahead` for mappings (the runtime's `AuditSink.record_ahead`)."""
        return self.append_ahead(self.event_from_fields(fields))

    def record_many(self, fields: Sequence[Mapping[str, Any]]) -> range:
        """`append_many` for mappings: one group commit for a whole batch of requests."""
        return self.append_many([self.event_from_fields(one) for one in fields])

    @staticmethod
    def event_from_fields(fields: Mapping[str, Any]) -> AuditEvent:
        """`AuditEvent.from_fields`, with a malformed event turned into AuditUnavailable: it is a bug in
        the caller, but the request must still fail closed."""
        try:
            return AuditEvent.from_fields(fields)
        except (TypeError, ValueError) as exc:
            raise AuditUnavailable(f"audit event rejected: {exc}") from exc

    def checkpoint_now(self) -> Checkpoint:
        """Write a checkpoint covering every record appended before this call (e.g. before `prove`)."""
        slot = Slot(task=self._checkpoint_task)
        self._submit(slot)
        if slot.error is not None:
            raise slot.error
        assert isinstance(slot.result, Checkpoint)
        return slot.result

    def close(self) -> None:
        """Finish queued appends, write a final checkpoint, release files and zero the keys. Idempotent."""
        with self._mutex:
            if self._closed:
                return
            self._closed = True  # from here on, new appends are refused; queued ones still complete
        self._stop.set()
        if self._ticker is not threading.current_thread():
            self._ticker.join()
        try:
            self._submit(Slot(task=self._final_checkpoint_task), closing=True)
        finally:
            self._durability.close(self._release_files)  # no fdatasync may be running on a closing fd
            self._wipe_keys()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            logger.error(
                "AuditLog for %s was never closed; records after the last checkpoint are unsigned",
                getattr(self, "directory", "?"),
            )

    # ------------------------------------------------------------------ group commit
    def _check_usable(self) -> None:
        if self._closed:
            raise AuditUnavailable("the audit log is closed")
        if self._broken is not None:
            raise AuditUnavailable(f"the audit log is unusable until reopened: {self._broken}")

    def _submit(self, slot: Slot, closing: bool = False) -> None:
        self._commit.submit(slot, admit=None if closing else self._check_usable)

    def _records_written(self) -> None:
        self._written = self._state.seq

    def _mark_broken(self, reason: str) -> None:
        self._broken = reason

    def _write_batch(self, batch: list[Slot]) -> None:
        """Seal, chain and hash every record of the batch, write them (one `write` per segment touched)
        and fdatasync once. Runs in the leader thread, never concurrently with itself."""
        if self._broken is not None:
            # Slots queued before an fsync failed must not be reported durable by a later, "successful"
            # fsync: the kernel may have dropped the failed batch's pages, and these records chain to it.
            raise AuditUnavailable(f"the audit log is unusable until reopened: {self._broken}")
        before = self._state.copy()
        state = self._state
        seal, segment_max = self._cipher.seal, self._segment_max
        checkpoint_ref = 0 if self._last_cp is None else self._last_cp.index + 1  # constant within a batch
        seq, chain, tree_append = state.seq, state.chain, state.tree.append
        segment, segment_size, last_record = state.segment, state.segment_size, state.last_record
        frames: list[bytes] = []
        chunks: list[tuple[int, int, list[bytes]]] = [(segment, seq, frames)]  # (segment, first seq, frames)
        created: list[int] = []
        try:
            for slot in batch:
                slot.seq = seq
                for plaintext in slot.plaintexts:
                    frame_len = FRAME_HEADER_LEN + len(plaintext) + TAG_LEN
                    if segment_size + frame_len > segment_max and segment_size > SEGMENT_HEADER_LEN:
                        segment += 1
                        segment_size = SEGMENT_HEADER_LEN
                        frames = []
                        chunks.append((segment, seq, frames))
                    frame = seal(seq, segment, chain, plaintext, checkpoint_ref)
                    record_hash = leaf_hash(frame)
                    chain = chain_next(chain, record_hash)
                    tree_append(record_hash)
                    last_record = (segment, segment_size)
                    segment_size += len(frame)
                    frames.append(frame)
                    seq += 1
            state.seq, state.chain = seq, chain
            state.segment, state.segment_size, state.last_record = segment, segment_size, last_record
            for index, first_seq, chunk in chunks:
                if index != self._segments.index:
                    created.append(index)
                    self._rotate(index, first_seq)
                if chunk:
                    self._segments.write(chunk[0] if len(chunk) == 1 else b"".join(chunk))
        except OSError as exc:
            self._rollback(before, created)
            raise AuditUnavailable(f"audit log write failed: {exc.strerror or exc}") from exc
        except BaseException:
            self._rollback(before, created)
            raise
        self._durability.wrote(seq)
        if self._fsync == "always":
            self._durability.sync_through(seq)
        self._maybe_checkpoint()

    def _sync_segment(self) -> None:
        """The fdatasync behind every ticket; `Durability` runs it with the sync role held."""
        if self._segments.fd < 0:
            raise OSError(9, "the audit log is closed")
        self._segments.sync()

    def _rotate(self, index: int, first_seq: int) -> None:
        """Sync the full segment (every record before `first_seq` is then durable) and start the next one;
        the sync role is held so no fdatasync runs on the descriptor being swapped."""
        with self._durability.exclusive():
            try:
                self._segments.sync()
            except OSError as exc:
                self._broken = f"fsync failed ({exc.strerror})"
                error = AuditUnavailable(f"audit log fsync failed: {exc.strerror}")
                self._durability.fail(error)
                raise error from exc
            self._durability.covered(first_seq)
            self._segments.create(index, first_seq)
            self._segments.open(index)

    def _rollback(self, before: LogState, created: list[int]) -> None:
        with self._durability.exclusive():
            # A rotation inside the failed batch synced the old segment and reported the batch's records in
            # it durable; they are about to be cut off, and new records will reuse their numbers.
            self._durability.truncated(before.seq)
            try:
                # Cuts the failed batch off (records written before it stay) and fsyncs what is left.
                self._segments.roll_back(created, before.segment, before.segment_size)
            except OSError as exc:
                self._broken = f"could not roll back a failed write ({exc.strerror})"
                logger.error("audit log: %s", self._broken)
                # The rollback's fsync may have taken a writeback error of earlier, written records.
                self._durability.fail(AuditUnavailable(f"the audit log is unusable until reopened: {self._broken}"))
            else:
                self._durability.covered(before.seq)
        self._state = before

    # ------------------------------------------------------------------ checkpoints
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

    # ------------------------------------------------------------------ open and recovery
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
            self._state = LogState.empty(self.log_id)
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
