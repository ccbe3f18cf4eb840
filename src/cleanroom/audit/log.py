"""The append-only, encrypted, hash-chained audit log with signed checkpoints (DESIGN invariant 5).

`AuditLog.append` returns only when the record is durable under the fsync policy, so a caller that audits
a decryption *before* releasing the plaintext can rely on the record surviving a crash:

- "always": one record per write, `fdatasync` before returning (the conservative reference);
- "group":  group commit. Appenders queue their record; whichever appender finds no flush in progress
            becomes the leader, writes every queued record in one `write` and one `fdatasync`, and wakes
            the others. With k concurrent appenders one fsync covers about k records;
- "none":   records reach the OS (`write`) before `append` returns: they survive a crash of this process,
            not a power loss. Checkpoints still fsync the records they cover first.

Failure handling (fail closed): a failed `write` fails the whole batch with `AuditUnavailable`, truncates
the segment back to the last durable byte and rolls the in-memory chain and tree back, so later appends
may succeed. A failed `fsync` cannot be retried safely (the kernel may already have dropped the dirty
pages: "fsyncgate"), so it breaks the log until it is reopened.

Only one process may write a log: an exclusive `flock` on `.lock` in the directory enforces it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import mmap
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.audit.checkpoints import (
    CHECKPOINTS_FILE,
    ZERO_DIGEST,
    Checkpoint,
    fsync_directory,
    read_last_checkpoint,
    require_p384,
    sign_checkpoint,
    write_fully,
)
from cleanroom.audit.merkle import CompactTree, chain_genesis, chain_next, leaf_hash
from cleanroom.audit.records import (
    FRAME_HEADER_LEN,
    SEGMENT_HEADER_LEN,
    TAG_LEN,
    AuditEvent,
    RecordCipher,
    RecordFormatError,
    parse_frame_header,
    parse_segment_header,
)
from cleanroom.audit.segments import Damage, Frame, list_segments, scan_frames, segment_name
from cleanroom.errors import AuditUnavailable, ConfigurationError

logger = logging.getLogger("cleanroom.audit")

FsyncPolicy = Literal["always", "group", "none"]
DEFAULT_SEGMENT_MAX_BYTES = 64 * 1024 * 1024


def _held_lock() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass
class _Slot:
    """One queued unit of work: a record to write, or a task (a checkpoint, the final close) run in order.

    `wake` is held from creation. It is released exactly once per wait, waking only its owner: either
    the slot is done, or (`lead`) the owner must write the next batch. Waking one thread per record,
    instead of every waiter on every flush, is what keeps group commit cheap with hundreds of threads.
    """

    plaintext: bytes | None = None
    task: Callable[[], object] | None = None
    seq: int = -1
    result: object = None
    done: bool = False
    lead: bool = False
    error: AuditUnavailable | None = None
    wake: threading.Lock = field(default_factory=_held_lock)


@dataclass
class _State:
    """Everything that advances with each record; copied before a batch so a failure can roll back."""

    seq: int
    chain: bytes
    tree: CompactTree
    segment: int
    segment_size: int
    last_record: tuple[int, int] | None

    def copy(self) -> _State:
        return _State(self.seq, self.chain, self.tree.copy(), self.segment, self.segment_size, self.last_record)


@contextlib.contextmanager
def _mapped(path: Path) -> Iterator[bytes | mmap.mmap]:
    """A read-only map of a file: recovery touches only the pages after the last checkpoint."""
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            yield b""
            return
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            yield mapped
        finally:
            mapped.close()


@dataclass(frozen=True)
class Repair:
    """What `AuditLog` changed on disk at open (a torn tail after a crash), for the operator to see."""

    file: str
    offset: int
    bytes_removed: int
    reason: str


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
        self._mutex = threading.Lock()
        self._queue: list[_Slot] = []
        self._busy = False
        self._closed = False
        self._broken: str | None = None
        self._unsynced = False
        self._seg_fd = -1
        self._open_segment = 0
        self._durable = 0
        self._cp_fd = -1
        self._lock_fd = -1
        self.repairs: list[Repair] = []
        self._last_cp: Checkpoint | None = None
        self._last_cp_mono = time.monotonic()
        try:
            self._open()
        except BaseException:
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
                self.append(AuditEvent(
                    event="audit.tail_repaired",
                    details={"file": repair.file, "offset": repair.offset,
                             "bytes_removed": repair.bytes_removed, "reason": repair.reason},
                ))
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ public API
    @property
    def log_id(self) -> bytes:
        return self._cipher.log_id

    @property
    def size(self) -> int:
        """Records durably in the log."""
        with self._mutex:
            return self._durable

    @property
    def last_checkpoint(self) -> Checkpoint | None:
        return self._last_cp

    def append(self, event: AuditEvent) -> int:
        """Append one record; return its sequence number once durable. Raises AuditUnavailable."""
        if not isinstance(event, AuditEvent):
            raise TypeError("append takes an AuditEvent")
        slot = _Slot(plaintext=event.to_json_bytes())
        self._submit(slot)
        if slot.error is not None:
            raise slot.error
        return slot.seq

    def record(self, fields: Mapping[str, Any]) -> int:
        """`append` for callers that hold a mapping (the runtime's `AuditSink.record` protocol)."""
        try:
            event = AuditEvent.from_fields(fields)
        except (TypeError, ValueError) as exc:
            # A malformed event is a bug in the caller, but the request must still fail closed.
            raise AuditUnavailable(f"audit event rejected: {exc}") from exc
        return self.append(event)

    def checkpoint_now(self) -> Checkpoint:
        """Write a checkpoint covering every record appended before this call (e.g. before `prove`)."""
        slot = _Slot(task=self._checkpoint_task)
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
            self._submit(_Slot(task=self._final_checkpoint_task), closing=True)
        finally:
            self._release_files()
            self._wipe_keys()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            logger.error("AuditLog for %s was never closed; records after the last checkpoint are unsigned",
                         getattr(self, "directory", "?"))

    # ------------------------------------------------------------------ group commit
    def _check_usable(self) -> None:
        if self._closed:
            raise AuditUnavailable("the audit log is closed")
        if self._broken is not None:
            raise AuditUnavailable(f"the audit log is unusable until reopened: {self._broken}")

    def _submit(self, slot: _Slot, closing: bool = False) -> None:
        """Queue `slot` and return once it is done. Whoever finds no batch running leads one."""
        with self._mutex:
            if not closing:
                self._check_usable()
            self._queue.append(slot)
            lead = not self._busy
            self._busy = True
        if not lead:
            slot.wake.acquire()
            if slot.done:
                return
        self._lead_once()  # our slot is first in the queue, so this batch completes it

    def _lead_once(self) -> None:
        """Write one batch (every record queued so far, or one task), wake its owners, hand over."""
        with self._mutex:
            if self._queue[0].task is not None:
                batch = [self._queue.pop(0)]
            else:
                count = 0
                limit = 1 if self._fsync == "always" else len(self._queue)
                while count < limit and self._queue[count].task is None:
                    count += 1
                batch = self._queue[:count]
                del self._queue[:count]
        error: AuditUnavailable | None = None
        try:
            if batch[0].task is not None:
                batch[0].result = batch[0].task()
            else:
                self._write_batch(batch)
        except AuditUnavailable as exc:
            error = exc
        except Exception as exc:  # a bug must still fail closed, never release plaintext unaudited
            logger.exception("audit log: unexpected error while writing")
            error = AuditUnavailable("the audit log could not record the event")
            error.__cause__ = exc
        with self._mutex:
            if error is None and batch[0].task is None:
                self._durable = self._state.seq
            for slot in batch:
                slot.done = True
                slot.error = error
            successor = self._queue[0] if self._queue else None
            if successor is not None:
                successor.lead = True
            else:
                self._busy = False
        for slot in batch:
            slot.wake.release()
        if successor is not None:
            successor.wake.release()

    def _write_batch(self, batch: list[_Slot]) -> None:
        before = self._state.copy()
        state = self._state
        chunks: list[tuple[int, list[bytes]]] = [(state.segment, [])]
        created: list[int] = []
        try:
            for slot in batch:
                assert slot.plaintext is not None
                frame_len = FRAME_HEADER_LEN + len(slot.plaintext) + TAG_LEN
                if state.segment_size + frame_len > self._segment_max and state.segment_size > SEGMENT_HEADER_LEN:
                    state.segment += 1
                    state.segment_size = SEGMENT_HEADER_LEN
                    chunks.append((state.segment, []))
                checkpoint_ref = 0 if self._last_cp is None else self._last_cp.index + 1
                frame = self._cipher.seal(state.seq, state.segment, state.chain, slot.plaintext, checkpoint_ref)
                record_hash = leaf_hash(frame)
                state.chain = chain_next(state.chain, record_hash)
                state.tree.append(record_hash)
                state.last_record = (state.segment, state.segment_size)
                state.segment_size += len(frame)
                chunks[-1][1].append(frame)
                slot.seq = state.seq
                state.seq += 1
            for segment, frames in chunks:
                if segment != self._open_segment:
                    created.append(segment)
                    self._rotate_to(segment, first_seq=self._first_seq_of(batch, chunks, segment))
                if frames:
                    write_fully(self._seg_fd, b"".join(frames))
            self._unsynced = True
        except OSError as exc:
            self._rollback(before, created)
            raise AuditUnavailable(f"audit log write failed: {exc.strerror or exc}") from exc
        except BaseException:
            self._rollback(before, created)
            raise
        if self._fsync != "none":
            try:
                os.fdatasync(self._seg_fd)
            except OSError as exc:
                self._broken = f"fsync failed ({exc.strerror})"
                raise AuditUnavailable(f"audit log fsync failed: {exc.strerror}") from exc
            self._unsynced = False
        self._maybe_checkpoint()

    def _first_seq_of(self, batch: list[_Slot], chunks: list[tuple[int, list[bytes]]], segment: int) -> int:
        first = batch[0].seq
        for seg, frames in chunks:
            if seg == segment:
                return first
            first += len(frames)
        raise AssertionError("segment not in batch")

    def _rollback(self, before: _State, created: list[int]) -> None:
        try:
            for segment in created:
                if self._open_segment == segment:
                    os.close(self._seg_fd)
                    self._seg_fd = -1
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / segment_name(segment)).unlink()
            if self._open_segment != before.segment:
                self._open_segment_fd(before.segment)
            os.ftruncate(self._seg_fd, before.segment_size)
            os.fsync(self._seg_fd)
        except OSError as exc:
            self._broken = f"could not roll back a failed write ({exc.strerror})"
            logger.error("audit log: %s", self._broken)
        self._state = before

    def _rotate_to(self, segment: int, first_seq: int) -> None:
        os.fsync(self._seg_fd)  # every segment but the last is complete on disk
        self._create_segment(segment, first_seq)
        os.close(self._seg_fd)
        self._seg_fd = -1
        self._open_segment_fd(segment)

    def _create_segment(self, segment: int, first_seq: int) -> None:
        """Header via temp file + rename, so a segment file never exists with a torn header."""
        path = self.directory / segment_name(segment)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            write_fully(fd, self._cipher.make_segment_header(segment, first_seq))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        fsync_directory(self.directory)

    def _open_segment_fd(self, segment: int) -> None:
        self._seg_fd = os.open(self.directory / segment_name(segment), os.O_WRONLY | os.O_APPEND)
        self._open_segment = segment

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
        if self._unsynced:
            try:
                os.fdatasync(self._seg_fd)
            except OSError as exc:
                self._broken = f"fsync failed ({exc.strerror})"
                raise AuditUnavailable(f"audit log fsync failed: {exc.strerror}") from exc
            self._unsynced = False
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
        if self._broken is None and (last is None or last.tree_size < self._state.seq) \
                and time.monotonic() - self._last_cp_mono >= self._every_s:
            try:
                self._write_checkpoint()
            except (OSError, AuditUnavailable) as exc:
                logger.error("audit log: timed checkpoint failed: %s", exc)

    def _tick(self) -> None:
        """Time-based checkpoints for records that arrived since the last one, even when appends stop."""
        while not self._stop.wait(min(self._every_s, 5.0)):
            last = self._last_cp  # unlocked reads: only deciding whether to queue a task
            if last is not None and last.tree_size == self._durable:
                continue
            if time.monotonic() - self._last_cp_mono < self._every_s:
                continue
            try:
                self._submit(_Slot(task=self._timed_checkpoint_task))
            except AuditUnavailable:
                return

    # ------------------------------------------------------------------ open and recovery
    def _open(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise AuditUnavailable(f"audit log {self.directory} is in use by another process") from exc
        cp_path = self.directory / CHECKPOINTS_FILE
        line, torn_offset = read_last_checkpoint(cp_path)
        if torn_offset is not None:
            self._truncate(cp_path, torn_offset, "unterminated checkpoint line (crash mid-append)")
        if line is not None:
            if line.checkpoint is None:
                raise AuditUnavailable(f"latest audit checkpoint (byte {line.offset}) is malformed: "
                                       f"{line.error}; run `cleanroom audit verify`")
            if not line.checkpoint.signature_valid(self._signing_key.public_key()):
                raise AuditUnavailable(f"latest audit checkpoint (byte {line.offset}) has an invalid "
                                       "signature; run `cleanroom audit verify`")
            self._last_cp = line.checkpoint
        segments = list_segments(self.directory)
        if [i for i, _ in segments] != list(range(1, len(segments) + 1)):
            raise AuditUnavailable(f"audit segments are not contiguous: {[i for i, _ in segments]}; "
                                   "run `cleanroom audit verify`")
        if not segments:
            if self._last_cp is not None:
                raise AuditUnavailable("audit checkpoints exist but every segment is missing")
            self._cipher = RecordCipher(self._audit_key, os.urandom(16))
            self._create_segment(1, 0)
            self._state = _State(0, chain_genesis(self.log_id), CompactTree(), 1, SEGMENT_HEADER_LEN, None)
            self._durable = 0
        else:
            self._recover(segments)
        self._open_segment_fd(self._state.segment)
        self._cp_fd = os.open(cp_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _recover(self, segments: list[tuple[int, Path]]) -> None:
        cp = self._last_cp
        if cp is not None:
            log_id = cp.log_id
        else:
            try:
                with segments[0][1].open("rb") as fh:
                    log_id = parse_segment_header(fh.read(SEGMENT_HEADER_LEN)).log_id
            except RecordFormatError as exc:
                raise AuditUnavailable(f"audit segment 1 is unreadable: {exc}") from exc
        self._cipher = RecordCipher(self._audit_key, log_id)
        if cp is None:
            state = _State(0, chain_genesis(log_id), CompactTree(), 1, SEGMENT_HEADER_LEN, None)
        else:
            tree = cp.compact_tree()
            if tree is None or cp.segment_index > len(segments):
                raise AuditUnavailable("latest audit checkpoint does not match the log; run `audit verify`")
            state = _State(cp.tree_size, cp.chain_head, tree, cp.segment_index, cp.segment_offset,
                           None if cp.last_record_segment is None or cp.last_record_offset is None
                           else (cp.last_record_segment, cp.last_record_offset))
            self._check_checkpoint_tail(cp, state)
        last_index = len(segments)
        for index in range(state.segment, last_index + 1):
            with _mapped(self.directory / segment_name(index)) as data:
                items, size = self._scan_for_recovery(data, index, state)
            for position, item in enumerate(items):
                if isinstance(item, Frame) and item.authentic and item.header.seq == state.seq \
                        and item.header.prev_chain == state.chain:
                    record_hash = leaf_hash(item.raw)
                    state.chain = chain_next(state.chain, record_hash)
                    state.tree.append(record_hash)
                    state.last_record = (index, item.offset)
                    state.segment_size = item.end
                    state.seq += 1
                    continue
                torn = index == last_index and position == len(items) - 1 and (
                    (isinstance(item, Damage) and item.to_eof)
                    or (isinstance(item, Frame) and item.authentic is False and item.end == size)
                )
                if not torn:
                    raise AuditUnavailable(
                        f"audit segment {index} is damaged at offset {item.offset} (expected record "
                        f"{state.seq}); run `cleanroom audit verify`")
                reason = item.reason if isinstance(item, Damage) else "last record does not authenticate"
                self._truncate(self.directory / segment_name(index), item.offset, reason)
        self._state = state
        self._durable = state.seq

    def _scan_for_recovery(
        self, data: bytes | mmap.mmap, index: int, state: _State
    ) -> tuple[list[Frame | Damage], int]:
        """Check segment `index`'s header and list what follows the resume point (only that part is read)."""
        try:
            header = self._cipher.check_segment_header(bytes(data[:SEGMENT_HEADER_LEN]))
        except RecordFormatError as exc:
            raise AuditUnavailable(f"audit segment {index}: {exc}; run `cleanroom audit verify`") from exc
        if header.segment_index != index or (index > state.segment and header.first_seq != state.seq):
            raise AuditUnavailable(f"audit segment {index} is out of place; run `cleanroom audit verify`")
        start = state.segment_size if index == state.segment else SEGMENT_HEADER_LEN
        if len(data) < start:
            raise AuditUnavailable(f"audit segment {index} is shorter than the latest checkpoint says")
        state.segment, state.segment_size = index, start
        return list(scan_frames(data, start, index, self._cipher)), len(data)

    def _check_checkpoint_tail(self, cp: Checkpoint, state: _State) -> None:
        """The record the checkpoint ends on must still be there and chain to the signed head."""
        path = self.directory / segment_name(cp.segment_index)
        if path.stat().st_size < cp.segment_offset:
            raise AuditUnavailable(f"audit log truncated: segment {cp.segment_index} is shorter than the "
                                   f"signed checkpoint {cp.index} says; run `cleanroom audit verify`")
        if state.last_record is None:
            if cp.tree_size:
                raise AuditUnavailable("latest audit checkpoint lacks its last-record position")
            return
        segment, offset = state.last_record
        ok = False
        with _mapped(self.directory / segment_name(segment)) as data:
            try:
                header = parse_frame_header(data, offset)
                frame = bytes(data[offset : offset + header.frame_len])
                ok = header.seq == cp.tree_size - 1 and len(frame) == header.frame_len and \
                    chain_next(header.prev_chain, leaf_hash(frame)) == cp.chain_head
            except RecordFormatError:
                ok = False
        if not ok:
            raise AuditUnavailable(f"audit record {cp.tree_size - 1} no longer matches the signed checkpoint "
                                   f"{cp.index}; run `cleanroom audit verify`")

    def _truncate(self, path: Path, offset: int, reason: str) -> None:
        size = path.stat().st_size
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, offset)
            os.fsync(fd)
        finally:
            os.close(fd)
        repair = Repair(path.name, offset, size - offset, reason)
        self.repairs.append(repair)
        logger.warning("audit log: repaired torn tail of %s at offset %d (%d bytes removed): %s",
                       path.name, offset, size - offset, reason)

    def _release_files(self) -> None:
        for name in ("_seg_fd", "_cp_fd", "_lock_fd"):
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
