"""Offline verification of an audit directory: says what is wrong and where, or that it is intact.

Checks, in one streaming pass (memory O(log n), plus 32 bytes per record with `since_checkpoint`):
- every checkpoint line parses, is signed by the audit key (ECDSA P-384), names this log, and chains to the
  previous one (index + SHA-256 digest of its signed body);
- segment files are contiguous and each header authenticates under the audit key and names its own index;
- every record authenticates (AES-256-GCM, AAD binds log, segment, seq and header), seqs run 0,1,2,... in
  file order, and each header's chain value equals the recomputed chain;
- the Merkle root and chain head recomputed at each checkpoint's size equal the signed ones, and the log
  is not shorter than the newest checkpoint (or than a checkpoint saved earlier with `audit checkpoint`);
- with `since_checkpoint`, an RFC 6962 consistency proof from the saved tree to the newest one verifies.

Finding kinds. Warnings (the log is still intact): torn_tail (a crash artefact after the newest
checkpoint), unsigned_tail (records after the newest checkpoint). Errors: record_corrupt, record_deleted,
record_inserted, records_swapped, record_malformed, chain_broken, tail_truncated, segment_missing,
segment_replaced, checkpoint_forged, checkpoint_malformed, checkpoint_foreign, checkpoint_chain_broken,
checkpoint_missing, checkpoint_mismatch, checkpoint_position_mismatch, saved_checkpoint_invalid,
inconsistent_with_saved, audit_dir_missing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.audit.checkpoints import (
    CHECKPOINTS_FILE,
    ZERO_DIGEST,
    Checkpoint,
    CheckpointFormatError,
    load_saved_checkpoint,
    public_key_id,
    scan_checkpoint_file,
)
from cleanroom.audit.merkle import CompactTree, MerkleTree, chain_genesis, chain_next, leaf_hash, verify_consistency
from cleanroom.audit.records import (
    SEGMENT_HEADER_LEN,
    AuditEvent,
    RecordCipher,
    RecordFormatError,
    parse_segment_header,
)
from cleanroom.audit.segments import Damage, Frame, list_segments, scan_frames

Severity = Literal["error", "warning"]
_MAX_TRACKED_GAP = 4096


@dataclass(frozen=True)
class Finding:
    kind: str
    message: str
    severity: Severity = "error"
    segment: int | None = None
    offset: int | None = None
    seq: int | None = None
    checkpoint: int | None = None

    def where(self) -> str:
        parts = []
        if self.segment is not None:
            parts.append(f"segment {self.segment}")
        if self.offset is not None:
            parts.append(f"offset {self.offset}")
        if self.seq is not None:
            parts.append(f"record {self.seq}")
        if self.checkpoint is not None:
            parts.append(f"checkpoint {self.checkpoint}")
        return ", ".join(parts)

    def __str__(self) -> str:
        where = self.where()
        return f"{self.severity.upper()} {self.kind}" + (f" [{where}]" if where else "") + f": {self.message}"


@dataclass
class VerifyReport:
    directory: Path
    records: int = 0
    segments: int = 0
    checkpoints: int = 0
    latest_checkpoint: Checkpoint | None = None
    uncovered_records: int = 0
    consistency_proof: list[bytes] | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.severity == "error" for f in self.findings)

    def kinds(self) -> set[str]:
        return {f.kind for f in self.findings}

    def add(self, kind: str, message: str, **where: int | None) -> None:
        severity: Severity = "warning" if kind in ("torn_tail", "unsigned_tail") else "error"
        self.findings.append(Finding(kind, message, severity, **where))

    def summary(self) -> str:
        head = "INTACT" if self.ok else "TAMPERED OR DAMAGED"
        cp = self.latest_checkpoint
        lines = [
            f"audit log {self.directory}: {head}",
            f"  {self.records} records in {self.segments} segments; {self.checkpoints} valid checkpoints"
            + (f", newest covers {cp.tree_size} records (root {cp.root.hex()[:16]}...)" if cp else ""),
        ]
        if self.uncovered_records:
            lines.append(f"  {self.uncovered_records} records after the newest checkpoint are not yet signed")
        lines.extend(f"  {f}" for f in self.findings)
        return "\n".join(lines)


@dataclass
class _Item:
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


class _RecordChecker:
    """Classifies the record stream. Holds back items until the next authentic record is seen, because
    telling a modified record from an inserted one (or a swap from a deletion) needs one record of lookahead.
    """

    def __init__(self, report: VerifyReport, log_id: bytes, targets: list[tuple[int, str, Checkpoint]],
                 newest_size: int, keep_leaves: bool) -> None:
        self.report = report
        self.expected = 0
        self.chain: bytes | None = chain_genesis(log_id)
        self.pending: deque[_Item] = deque()
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

    def feed(self, item: _Item) -> None:
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

    def _note_gap(self, first: int, after: int, item: _Item) -> None:
        # Remember small gaps: a missing record that shows up later was moved, not deleted.
        if after - first > _MAX_TRACKED_GAP:
            self._report_deleted(first, after - 1, item.segment, item.data.offset)
            return
        for seq in range(first, after):
            self.missing[seq] = (item.segment, item.data.offset)

    def _report_deleted(self, first: int, last: int, segment: int, offset: int) -> None:
        count = last - first + 1
        self.report.add("record_deleted", f"{count} record(s) {first}" + (f"..{last}" if count > 1 else "")
                        + " missing", seq=first, segment=segment, offset=offset)

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
                    self.report.add(kind, f"{label} checkpoint signed a different log at size {cp.tree_size}: "
                                    "records before it were changed, removed, added or reordered",
                                    checkpoint=cp.index, segment=cp.segment_index, offset=cp.segment_offset)
            elif (cp.segment_index, cp.segment_offset, cp.last_record_segment, cp.last_record_offset) != (
                    segment, frame.end, segment, frame.offset) and not self.moved:
                # Same records, different place: bytes that are not records were added or removed.
                self.moved = True
                self.report.add("checkpoint_position_mismatch", f"{label} checkpoint ends its records at segment "
                                f"{cp.segment_index} offset {cp.segment_offset}; they now end at segment "
                                f"{segment} offset {frame.end}", checkpoint=cp.index, segment=segment,
                                offset=frame.end)

    def _next_authentic_seq(self) -> int | None:
        """Seq of the first authentic record still pending (the item being processed is already popped)."""
        for item in self.pending:
            if item.authentic:
                return item.seq
        return None

    def _accept(self, item: _Item, update_chain: bool = True) -> None:
        assert isinstance(item.data, Frame)
        frame = item.data
        if update_chain:
            if self.chain is not None and frame.header.prev_chain != self.chain:
                self.report.add("chain_broken", "record does not chain to the record before it",
                                segment=item.segment, offset=frame.offset, seq=frame.header.seq)
            self.chain = chain_next(frame.header.prev_chain, item.leaf)
        try:
            AuditEvent.from_json_bytes(frame.plaintext or b"")
        except ValueError as exc:
            self.report.add("record_malformed", f"authentic record does not decode: {exc}",
                            segment=item.segment, offset=frame.offset, seq=frame.header.seq)
        self.report.records += 1
        if frame.header.checkpoint_ref > self.max_ref:
            self.max_ref, self.max_ref_at = frame.header.checkpoint_ref, (item.segment, frame.offset,
                                                                          frame.header.seq)

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
                self.report.add("records_swapped", f"record {seq} is out of order: found after record "
                                f"{self.expected - 1} (records were swapped or moved)", seq=seq, **where)
                self._accept(item, update_chain=False)
            else:
                self.report.add("record_inserted", f"a second copy of record {seq} (replayed or duplicated)",
                                seq=seq, **where)
            return
        data = item.data
        reason = data.reason if isinstance(data, Damage) else "does not authenticate under the audit key"
        next_seq = self._next_authentic_seq()
        at_end = next_seq is None and item.last_segment and (
            (isinstance(data, Damage) and data.to_eof) or isinstance(data, Frame))
        if at_end and self.expected >= self.newest_size and not self.pending:
            self.report.add("torn_tail", f"incomplete or unreadable last record ({reason}); it is after the "
                            "newest checkpoint, as a crash leaves it, and is removed when the log is reopened",
                            seq=self.expected, **where)
            return
        if next_seq is not None and next_seq == self.expected:
            self.report.add("record_inserted", f"{data.end - data.offset} bytes that are not a record of this "
                            f"log ({reason})", seq=self.expected, **where)
            return
        lost = 1
        if isinstance(data, Damage) and next_seq is not None and self._index_of_seq(next_seq) == 0:
            # Nothing else damaged before the next good record: this region held all the missing ones.
            lost = max(1, next_seq - self.expected)
        last = self.expected + lost - 1
        self.report.add("record_corrupt", f"record{'s' if lost > 1 else ''} {self.expected}"
                        + (f"..{last}" if lost > 1 else "") + f" modified: {reason}", seq=self.expected, **where)
        self.expected += lost
        self.chain = None

    def _index_of_seq(self, seq: int) -> int:
        for index, item in enumerate(self.pending):
            if item.authentic and item.seq == seq:
                return index
        return len(self.pending)


def _check_checkpoints(
    report: VerifyReport, directory: Path, public_key: ec.EllipticCurvePublicKey
) -> list[Checkpoint]:
    scan = scan_checkpoint_file(directory / CHECKPOINTS_FILE)
    if scan.torn_tail_offset is not None:
        tail = (directory / CHECKPOINTS_FILE).read_bytes()[scan.torn_tail_offset :].rstrip(b"\x00")
        if all(0x20 <= byte < 0x7F for byte in tail):
            report.add("torn_tail", "checkpoints.jsonl ends in an unterminated line (crash mid-append)",
                       offset=scan.torn_tail_offset)
        else:  # a crash leaves a prefix of a JSON line (maybe zero-filled), never other bytes
            report.add("checkpoint_malformed", "checkpoints.jsonl ends in bytes no checkpoint line contains",
                       offset=scan.torn_tail_offset)
    valid: list[Checkpoint] = []
    for line in scan.lines:
        cp = line.checkpoint
        if cp is None:
            report.add("checkpoint_malformed", f"line {line.line_no} of checkpoints.jsonl: {line.error}",
                       offset=line.offset)
            continue
        if not cp.signature_valid(public_key):
            report.add("checkpoint_forged", f"line {line.line_no}: signature does not verify under the audit "
                       "public key (edited or signed by another key)", checkpoint=cp.index)
            continue
        if cp.key_id != public_key_id(public_key) or cp.compact_tree() is None:
            report.add("checkpoint_malformed", f"line {line.line_no}: key id or Merkle frontier hint does not "
                       "match the signed checkpoint", checkpoint=cp.index)
        prev = valid[-1] if valid else None
        if prev is None and (cp.index != 0 or cp.prev_digest != ZERO_DIGEST):
            report.add("checkpoint_chain_broken", f"first checkpoint is #{cp.index}: earlier ones were removed",
                       checkpoint=cp.index)
        elif prev is not None and (cp.index != prev.index + 1 or cp.prev_digest != prev.digest()
                                   or cp.tree_size < prev.tree_size):
            report.add("checkpoint_chain_broken", f"line {line.line_no} does not follow checkpoint "
                       f"#{prev.index} (removed, reordered or replaced checkpoint)", checkpoint=cp.index)
        valid.append(cp)
    return valid


def verify(
    directory: Path,
    audit_key: bytes | bytearray,
    public_key: ec.EllipticCurvePublicKey,
    since_checkpoint: Path | None = None,
) -> VerifyReport:
    """Verify the audit directory (DATA_DIR/audit). Never raises for damage: it is reported."""
    directory = Path(directory)
    report = VerifyReport(directory)
    if not directory.is_dir():
        report.add("audit_dir_missing", f"{directory} does not exist")
        return report
    checkpoints = _check_checkpoints(report, directory, public_key)
    segments = list_segments(directory)
    saved: Checkpoint | None = None
    if since_checkpoint is not None:
        try:
            saved = load_saved_checkpoint(since_checkpoint)
        except (OSError, CheckpointFormatError) as exc:
            report.add("saved_checkpoint_invalid", f"{since_checkpoint}: {exc}")
        else:
            if not saved.signature_valid(public_key):
                report.add("saved_checkpoint_invalid", f"{since_checkpoint}: signature does not verify")
                saved = None
    log_id = _log_id(checkpoints, segments, saved)
    if log_id is None:
        if segments or checkpoints:
            report.add("segment_replaced", "no segment header or checkpoint names this log", segment=1)
        return report
    foreign = [cp for cp in checkpoints if cp.log_id != log_id]
    for cp in foreign:
        report.add("checkpoint_foreign", "checkpoint belongs to another audit log", checkpoint=cp.index)
    checkpoints = [cp for cp in checkpoints if cp.log_id == log_id]
    if saved is not None and saved.log_id != log_id:
        report.add("inconsistent_with_saved", "the saved checkpoint belongs to another audit log")
        saved = None
    report.checkpoints = len(checkpoints)
    newest = checkpoints[-1] if checkpoints else None
    report.latest_checkpoint = newest
    newest_size = newest.tree_size if newest else 0
    targets = [(cp.tree_size, f"#{cp.index}", cp) for cp in checkpoints if cp.tree_size > 0]
    if saved is not None and saved.tree_size > 0:
        targets.append((saved.tree_size, "saved", saved))
    checker = _RecordChecker(report, log_id, targets, newest_size, keep_leaves=saved is not None)
    with RecordCipher(audit_key, log_id) as cipher:
        _scan_segments(report, directory, segments, cipher, checker, newest)
    checker.finish()
    if checker.mismatches > 1:
        report.add("checkpoint_mismatch", f"{checker.mismatches - 1} later checkpoint(s) do not match either")
    found = checker.found_tree.size
    for label, cp in ([("newest", newest)] if newest else []) + ([("saved", saved)] if saved else []):
        if found < cp.tree_size:
            report.add("tail_truncated", f"the log holds {found} records but the {label} checkpoint (#{cp.index})"
                       f" signed {cp.tree_size}: the last {cp.tree_size - found} were removed",
                       segment=cp.segment_index, offset=cp.segment_offset, seq=found, checkpoint=cp.index)
    report.uncovered_records = max(0, checker.expected - newest_size)
    if report.uncovered_records:
        report.add("unsigned_tail", f"the last {report.uncovered_records} record(s) are not covered by a signed "
                   "checkpoint yet (normal while the log is being written or after a crash; removing them "
                   "would go unnoticed without a saved checkpoint)", seq=newest_size)
    indices = {cp.index for cp in checkpoints}
    if checker.max_ref and checker.max_ref - 1 not in indices:
        segment, offset, seq = checker.max_ref_at
        report.add("checkpoint_missing", f"record {seq} was written after checkpoint #{checker.max_ref - 1}, "
                   "which is gone (checkpoints were deleted)", segment=segment, offset=offset, seq=seq,
                   checkpoint=checker.max_ref - 1)
    if saved is not None and newest is not None and checker.leaves is not None \
            and saved.tree_size <= newest.tree_size <= len(checker.leaves):
        tree = MerkleTree(checker.leaves[: newest.tree_size])
        proof = tree.consistency_proof(saved.tree_size)
        report.consistency_proof = proof
        if not verify_consistency(saved.tree_size, newest.tree_size, saved.root, newest.root, proof):
            report.add("inconsistent_with_saved", f"RFC 6962 consistency proof from the saved tree "
                       f"({saved.tree_size}) to checkpoint #{newest.index} ({newest.tree_size}) fails")
    # Causes first, in file order; checkpoint-level findings (often consequences) after them.
    report.findings.sort(key=lambda f: (f.kind.startswith(("checkpoint_", "saved_", "inconsistent_", "unsigned_")),
                                        f.segment if f.segment is not None else 1 << 32, f.offset or 0))
    return report


def _log_id(checkpoints: list[Checkpoint], segments: list[tuple[int, Path]], saved: Checkpoint | None) -> bytes | None:
    if checkpoints:
        return checkpoints[-1].log_id
    if saved is not None:
        return saved.log_id
    for _, path in segments:
        try:
            with path.open("rb") as fh:
                return parse_segment_header(fh.read(SEGMENT_HEADER_LEN)).log_id
        except (OSError, RecordFormatError):
            continue
    return None


def _scan_segments(
    report: VerifyReport,
    directory: Path,
    segments: list[tuple[int, Path]],
    cipher: RecordCipher,
    checker: _RecordChecker,
    newest: Checkpoint | None,
) -> None:
    present = dict(segments)
    last_index = max([*present, newest.segment_index if newest else 0, 0])
    report.segments = len(segments)
    for index in range(1, last_index + 1):
        path = present.get(index)
        if path is None:
            report.add("segment_missing", "segment file is missing", segment=index)
            continue
        data = path.read_bytes()
        try:
            header = cipher.check_segment_header(data[:SEGMENT_HEADER_LEN])
        except RecordFormatError as exc:
            report.add("segment_replaced", f"{path.name}: {exc}", segment=index)
            continue
        if header.segment_index != index:
            report.add("segment_replaced", f"{path.name} holds segment {header.segment_index}", segment=index)
            continue
        is_last = index == max(present)
        for item in scan_frames(data, SEGMENT_HEADER_LEN, index, cipher):
            checker.feed(_Item(index, is_last, item))
