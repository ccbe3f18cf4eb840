"""The write stage of the audit log's group commit: seal, chain and hash a batch, write it, roll it back.

One job: turn a batch of queued record plaintexts into frames on disk, all or nothing. The leader thread
of `commit.GroupCommit` runs `_write_batch`, never concurrently with itself: it seals each record under
its own key, extends the hash chain and Merkle tree, rotates to a new segment when the current one is
full (syncing the full one first, so a rotation is a durability point), writes one `write` per segment
touched, and on a failed write truncates the segment back and restores the in-memory state, so later
appends may succeed. A failed fsync cannot be retried ("fsyncgate"): it marks the log broken.

It is separate from `log.py` (the public append API, opening and closing) and from `log_checkpoints.py`
(signing) because this is the part that must never leave a half-written batch behind, and it is easier
to read that guarantee in one place. `AuditLog` inherits it as a mixin: the state it works on (the
segment writer, the durability tracker, the chain state) is the log's own, which the tests inspect.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from cleanroom.audit.checkpoints import Checkpoint
from cleanroom.audit.commit import GroupCommit, Slot
from cleanroom.audit.durability import Durability
from cleanroom.audit.merkle import chain_next, leaf_hash
from cleanroom.audit.records import FRAME_HEADER_LEN, SEGMENT_HEADER_LEN, TAG_LEN, RecordCipher
from cleanroom.audit.recovery import LogState
from cleanroom.audit.segments import SegmentWriter
from cleanroom.errors import AuditUnavailable

logger = logging.getLogger("cleanroom.audit")


class BatchWriter:
    """The group-commit write stage of `AuditLog` (a mixin; `AuditLog.__init__` sets the attributes)."""

    _closed: bool
    _broken: str | None
    _commit: GroupCommit
    _durability: Durability
    _written: int
    _state: LogState
    _cipher: RecordCipher
    _segments: SegmentWriter
    _segment_max: int
    _fsync: str
    _last_cp: Checkpoint | None

    if TYPE_CHECKING:  # provided by CheckpointSchedule

        def _maybe_checkpoint(self) -> None: ...

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
