"""Classifying the record stream for `verify`: what was modified, deleted, inserted or moved, and where.

Kept apart from `verify.py` (which walks files and checkpoints) because this is the part with lookahead:
telling a modified record from an inserted one, or a move from a deletion, needs to see the next
authentic record first.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from cleanroom.audit.checkpoints import Checkpoint
from cleanroom.audit.merkle import CompactTree, chain_genesis, chain_next, leaf_hash
from cleanroom.audit.records import AuditEvent
from cleanroom.audit.report import VerifyReport
from cleanroom.audit.segments import Damage, Frame

_MAX_TRACKED_GAP = 4096


@dataclass
class Item:
    segment: int
    last_segment: bool
    data: Frame | Damage
    leaf: bytes = b""

    @property
    def authentic(self) -> bool:
        return isinstance(self.data, Frame) and self.data.authentic is True

    @property
    def seq(self) -> int:
        assert isinstance(self.data, Frame)
        return self.data.header.seq


class RecordChecker:
    """Classifies the record stream. Holds back items until the next authentic record is seen, because
    telling a modified record from an inserted one (or a swap from a deletion) needs one record of lookahead.
    """

    def __init__(
        self,
        report: VerifyReport,
        log_id: bytes,
        targets: list[tuple[int, str, Checkpoint]],
        newest_size: int,
        keep_leaves: bool,
        checkpoints: list[Checkpoint] | None = None,
    ) -> None:
        self.report = report
        # Every record counts the checkpoints that existed when it was written: #ref-1 signed at most the
        # records before it, #ref (written later) at least the record itself. A chain signed afresh after
        # the old one was deleted breaks that even when every index is present again.
        self.by_index = {cp.index: cp for cp in checkpoints or ()}
        self.rewritten = False
        self.expected = 0
        self.chain: bytes | None = chain_genesis(log_id)
        self.pending: deque[Item] = deque()
        # Over every frame in file order, authentic or not: what the checkpoints signed.
        self.found_tree = CompactTree()
        self.found_chain = chain_genesis(log_id)
        self.targets = sorted(targets, key=lambda t: t[0])
        self.mismatches = 0
        self.newest_size = newest_size
        self.leaves: list[bytes] | None = [] if keep_leaves else None
        self.missing: dict[int, tuple[int, int]] = {}
        self.moved = False
        self.max_ref = 0
        self.max_ref_at: tuple[int, int, int] = (0, 0, 0)

    def feed(self, item: Item) -> None:
        if isinstance(item.data, Frame):
            item.leaf = leaf_hash(item.data.raw)
            self._add_leaf(item.leaf, item.segment, item.data)
        self.pending.append(item)
        if item.authentic:
            # Everything before this authentic record now has its lookahead.
            while len(self.pending) > 1:
                self._process()

    def finish(self) -> None:
        while self.pending:
            self._process()
        run: list[int] = []
        for seq in [*sorted(self.missing), -1]:
            if run and seq != run[-1] + 1:
                segment, offset = self.missing[run[0]]
                self._report_deleted(run[0], run[-1], segment, offset)
                run = []
            run.append(seq)

    def _note_gap(self, first: int, after: int, item: Item) -> None:
        # Remember small gaps: a missing record that shows up later was moved, not deleted.
        if after - first > _MAX_TRACKED_GAP:
            self._report_deleted(first, after - 1, item.segment, item.data.offset)
            return
        for seq in range(first, after):
            self.missing[seq] = (item.segment, item.data.offset)

    def _report_deleted(self, first: int, last: int, segment: int, offset: int) -> None:
        count = last - first + 1
        self.report.add(
            "record_deleted",
            f"{count} record(s) {first}" + (f"..{last}" if count > 1 else "") + " missing",
            seq=first,
            segment=segment,
            offset=offset,
        )

    def _add_leaf(self, leaf: bytes, segment: int, frame: Frame) -> None:
        self.found_tree.append(leaf)
        self.found_chain = chain_next(self.found_chain, leaf)
        if self.leaves is not None:
            self.leaves.append(leaf)
        while self.targets and self.targets[0][0] == self.found_tree.size:
            _, label, cp = self.targets.pop(0)
            if cp.root != self.found_tree.root() or cp.chain_head != self.found_chain:
                self.mismatches += 1
                if self.mismatches == 1 or label == "saved":
                    kind = "inconsistent_with_saved" if label == "saved" else "checkpoint_mismatch"
                    self.report.add(
                        kind,
                        f"{label} checkpoint signed a different log at size {cp.tree_size}: "
                        "records before it were changed, removed, added or reordered",
                        checkpoint=cp.index,
                        segment=cp.segment_index,
                        offset=cp.segment_offset,
                    )
            elif (cp.segment_index, cp.segment_offset, cp.last_record_segment, cp.last_record_offset) != (
                segment,
                frame.end,
                segment,
                frame.offset,
            ) and not self.moved:
                # Same records, different place: bytes that are not records were added or removed.
                self.moved = True
                self.report.add(
                    "checkpoint_position_mismatch",
                    f"{label} checkpoint ends its records at segment "
                    f"{cp.segment_index} offset {cp.segment_offset}; they now end at segment "
                    f"{segment} offset {frame.end}",
                    checkpoint=cp.index,
                    segment=segment,
                    offset=frame.end,
                )

    def _next_authentic_seq(self) -> int | None:
        """Seq of the first authentic record still pending (the item being processed is already popped)."""
        for item in self.pending:
            if item.authentic:
                return item.seq
        return None

    def _accept(self, item: Item, update_chain: bool = True) -> None:
        assert isinstance(item.data, Frame)
        frame = item.data
        if update_chain:
            if self.chain is not None and frame.header.prev_chain != self.chain:
                self.report.add(
                    "chain_broken",
                    "record does not chain to the record before it",
                    segment=item.segment,
                    offset=frame.offset,
                    seq=frame.header.seq,
                )
            self.chain = chain_next(frame.header.prev_chain, item.leaf)
        try:
            AuditEvent.from_json_bytes(frame.plaintext or b"")
        except ValueError as exc:
            self.report.add(
                "record_malformed",
                f"authentic record does not decode: {exc}",
                segment=item.segment,
                offset=frame.offset,
                seq=frame.header.seq,
            )
        self.report.records += 1
        if self.by_index and not self.rewritten:
            self._check_reference(item.segment, frame)
        if frame.header.checkpoint_ref > self.max_ref:
            self.max_ref, self.max_ref_at = frame.header.checkpoint_ref, (item.segment, frame.offset, frame.header.seq)

    def _check_reference(self, segment: int, frame: Frame) -> None:
        seq, ref = frame.header.seq, frame.header.checkpoint_ref
        before = self.by_index.get(ref - 1) if ref else None
        after = self.by_index.get(ref)
        if before is not None and before.tree_size > seq:
            problem = f"checkpoint #{before.index}, which existed when it was written, signs {before.tree_size} records"
        elif after is not None and after.tree_size <= seq:
            problem = f"checkpoint #{after.index}, written after it, signs only {after.tree_size} records"
        else:
            return
        self.rewritten = True
        self.report.add(
            "checkpoint_rewritten",
            f"record {seq} does not fit the checkpoint chain: {problem} "
            "(the checkpoints were deleted and a new chain signed over the records)",
            segment=segment,
            offset=frame.offset,
            seq=seq,
            checkpoint=ref if after is not None and before is None else ref - 1,
        )

    def _process(self) -> None:
        item = self.pending.popleft()
        where = {"segment": item.segment, "offset": item.data.offset}
        if item.authentic:
            seq = item.seq
            if seq == self.expected:
                self._accept(item)
                self.expected += 1
            elif seq > self.expected:
                self._note_gap(self.expected, seq, item)
                self.chain = None
                self._accept(item)
                self.expected = seq + 1
            elif seq in self.missing:
                del self.missing[seq]
                self.report.add(
                    "records_swapped",
                    f"record {seq} is out of order: found after record "
                    f"{self.expected - 1} (records were swapped or moved)",
                    seq=seq,
                    **where,
                )
                self._accept(item, update_chain=False)
            else:
                self.report.add(
                    "record_inserted", f"a second copy of record {seq} (replayed or duplicated)", seq=seq, **where
                )
            return
        data = item.data
        reason = data.reason if isinstance(data, Damage) else "does not authenticate under the audit key"
        next_seq = self._next_authentic_seq()
        at_end = (
            next_seq is None
            and item.last_segment
            and ((isinstance(data, Damage) and data.to_eof) or isinstance(data, Frame))
        )
        if at_end and self.expected >= self.newest_size and not self.pending:
            self.report.add(
                "torn_tail",
                f"incomplete or unreadable last record ({reason}); it is after the "
                "newest checkpoint, as a crash leaves it, and is removed when the log is reopened",
                seq=self.expected,
                **where,
            )
            return
        if next_seq is not None and next_seq == self.expected:
            self.report.add(
                "record_inserted",
                f"{data.end - data.offset} bytes that are not a record of this log ({reason})",
                seq=self.expected,
                **where,
            )
            return
        lost = 1
        if isinstance(data, Damage) and next_seq is not None and self._index_of_seq(next_seq) == 0:
            # Nothing else damaged before the next good record: this region held all the missing ones.
            lost = max(1, next_seq - self.expected)
        last = self.expected + lost - 1
        self.report.add(
            "record_corrupt",
            f"record{'s' if lost > 1 else ''} {self.expected}"
            + (f"..{last}" if lost > 1 else "")
            + f" modified: {reason}",
            seq=self.expected,
            **where,
        )
        self.expected += lost
        self.chain = None

    def _index_of_seq(self, seq: int) -> int:
        for index, item in enumerate(self.pending):
            if item.authentic and item.seq == seq:
                return index
        return len(self.pending)
