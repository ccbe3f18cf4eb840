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

Where the parts live: `log_writer` (the group commit's write stage: seal, chain, rotate, roll back),
`log_checkpoints` (when and how checkpoints are signed and appended), `log_files` (lock, recover, open,
release). `AuditLog` combines them (as mixins over one set of state) behind the public append API here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.audit.checkpoints import Checkpoint, require_p384
from cleanroom.audit.commit import GroupCommit, Slot
from cleanroom.audit.durability import AuditTicket, Durability
from cleanroom.audit.log_checkpoints import CheckpointSchedule
from cleanroom.audit.log_files import LogFiles
from cleanroom.audit.log_writer import BatchWriter
from cleanroom.audit.records import FRAME_HEADER_LEN, SEGMENT_HEADER_LEN, TAG_LEN, AuditEvent
from cleanroom.audit.recovery import Repair
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


class AuditLog(BatchWriter, CheckpointSchedule, LogFiles):
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
