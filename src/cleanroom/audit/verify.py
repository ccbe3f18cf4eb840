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
segment_replaced, segment_unreadable, segment_sparse, checkpoint_forged, checkpoint_malformed,
checkpoint_foreign, checkpoint_chain_broken, checkpoint_missing, checkpoint_rewritten, checkpoint_mismatch,
checkpoint_position_mismatch, checkpoints_unreadable, saved_checkpoint_invalid, inconsistent_with_saved,
audit_dir_missing.

Files are read as regular files only, never mapped (a writer may truncate them meanwhile) and only up to
their first hole: a FIFO or a terabyte-sized sparse file is a finding, not a hang or a MemoryError.
"""

from __future__ import annotations

from pathlib import Path

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
from cleanroom.audit.fileio import read_until_hole
from cleanroom.audit.merkle import MerkleTree, verify_consistency
from cleanroom.audit.records import (
    SEGMENT_HEADER_LEN,
    RecordCipher,
    RecordFormatError,
    parse_segment_header,
)
from cleanroom.audit.report import Finding, VerifyReport
from cleanroom.audit.segments import list_segments, scan_frames, with_hole_tail
from cleanroom.audit.verify_records import Item, RecordChecker

__all__ = ["Finding", "VerifyReport", "verify"]


def _check_checkpoints(
    report: VerifyReport, directory: Path, public_key: ec.EllipticCurvePublicKey
) -> list[Checkpoint]:
    try:
        scan = scan_checkpoint_file(directory / CHECKPOINTS_FILE)
    except (OSError, MemoryError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "too large to read"
        report.add("checkpoints_unreadable", f"{CHECKPOINTS_FILE} cannot be read: {reason}")
        return []
    if scan.torn_tail_offset is not None:
        tail = scan.torn_tail.rstrip(b"\x00")
        if all(0x20 <= byte < 0x7F for byte in tail):
            report.add(
                "torn_tail",
                "checkpoints.jsonl ends in an unterminated line (crash mid-append)",
                offset=scan.torn_tail_offset,
            )
        else:  # a crash leaves a prefix of a JSON line (maybe zero-filled), never other bytes
            report.add(
                "checkpoint_malformed",
                "checkpoints.jsonl ends in bytes no checkpoint line contains",
                offset=scan.torn_tail_offset,
            )
    valid: list[Checkpoint] = []
    for line in scan.lines:
        cp = line.checkpoint
        if cp is None:
            report.add(
                "checkpoint_malformed", f"line {line.line_no} of checkpoints.jsonl: {line.error}", offset=line.offset
            )
            continue
        if not cp.signature_valid(public_key):
            report.add(
                "checkpoint_forged",
                f"line {line.line_no}: signature does not verify under the audit "
                "public key (edited or signed by another key)",
                checkpoint=cp.index,
            )
            continue
        if cp.key_id != public_key_id(public_key) or cp.compact_tree() is None:
            report.add(
                "checkpoint_malformed",
                f"line {line.line_no}: key id or Merkle frontier hint does not match the signed checkpoint",
                checkpoint=cp.index,
            )
        prev = valid[-1] if valid else None
        if prev is None and (cp.index != 0 or cp.prev_digest != ZERO_DIGEST):
            report.add(
                "checkpoint_chain_broken",
                f"first checkpoint is #{cp.index}: earlier ones were removed",
                checkpoint=cp.index,
            )
        elif prev is not None and (
            cp.index != prev.index + 1 or cp.prev_digest != prev.digest() or cp.tree_size < prev.tree_size
        ):
            report.add(
                "checkpoint_chain_broken",
                f"line {line.line_no} does not follow checkpoint "
                f"#{prev.index} (removed, reordered or replaced checkpoint)",
                checkpoint=cp.index,
            )
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
    checker = RecordChecker(
        report, log_id, targets, newest_size, keep_leaves=saved is not None, checkpoints=checkpoints
    )
    with RecordCipher(audit_key, log_id) as cipher:
        _scan_segments(report, directory, segments, cipher, checker, newest)
    checker.finish()
    if checker.mismatches > 1:
        report.add("checkpoint_mismatch", f"{checker.mismatches - 1} later checkpoint(s) do not match either")
    found = checker.found_tree.size
    for label, cp in ([("newest", newest)] if newest else []) + ([("saved", saved)] if saved else []):
        if found < cp.tree_size:
            report.add(
                "tail_truncated",
                f"the log holds {found} records but the {label} checkpoint (#{cp.index})"
                f" signed {cp.tree_size}: the last {cp.tree_size - found} were removed",
                segment=cp.segment_index,
                offset=cp.segment_offset,
                seq=found,
                checkpoint=cp.index,
            )
    report.uncovered_records = max(0, checker.expected - newest_size)
    if report.uncovered_records:
        report.add(
            "unsigned_tail",
            f"the last {report.uncovered_records} record(s) are not covered by a signed "
            "checkpoint yet (normal while the log is being written or after a crash; removing them "
            "would go unnoticed without a saved checkpoint)",
            seq=newest_size,
        )
    indices = {cp.index for cp in checkpoints}
    if checker.max_ref and checker.max_ref - 1 not in indices:
        segment, offset, seq = checker.max_ref_at
        report.add(
            "checkpoint_missing",
            f"record {seq} was written after checkpoint #{checker.max_ref - 1}, "
            "which is gone (checkpoints were deleted)",
            segment=segment,
            offset=offset,
            seq=seq,
            checkpoint=checker.max_ref - 1,
        )
    if (
        saved is not None
        and newest is not None
        and checker.leaves is not None
        and saved.tree_size <= newest.tree_size <= len(checker.leaves)
    ):
        tree = MerkleTree(checker.leaves[: newest.tree_size])
        proof = tree.consistency_proof(saved.tree_size)
        report.consistency_proof = proof
        if not verify_consistency(saved.tree_size, newest.tree_size, saved.root, newest.root, proof):
            report.add(
                "inconsistent_with_saved",
                f"RFC 6962 consistency proof from the saved tree "
                f"({saved.tree_size}) to checkpoint #{newest.index} ({newest.tree_size}) fails",
            )
    # Causes first, in file order; checkpoint-level findings (often consequences) after them.
    report.findings.sort(
        key=lambda f: (
            f.kind.startswith(("checkpoint_", "saved_", "inconsistent_", "unsigned_")),
            f.segment if f.segment is not None else 1 << 32,
            f.offset or 0,
        )
    )
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
    checker: RecordChecker,
    newest: Checkpoint | None,
) -> None:
    present = dict(segments)
    last_index = max([*present, newest.segment_index if newest else 0, 0])
    report.segments = len(segments)
    newest_present = max(present, default=0)
    previous = 0
    # Missing segments are reported as runs: an empty `segment-99999999.log` must not cost a finding (and a
    # loop turn) for each of the 99,999,998 names before it.
    for index, path in [*sorted(present.items()), (last_index + 1, None)]:
        if index > previous + 1:
            first, last = previous + 1, index - 1
            report.add(
                "segment_missing",
                "segment file is missing" if first == last else f"segment files {first}..{last} are missing",
                segment=first,
            )
        previous = index
        if path is None:
            break
        try:
            segment = read_until_hole(path)
        except (OSError, MemoryError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "too large to read"
            report.add("segment_unreadable", f"{path.name} cannot be read: {reason}", segment=index)
            continue
        data = segment.data
        try:
            header = cipher.check_segment_header(data[:SEGMENT_HEADER_LEN])
        except RecordFormatError as exc:
            report.add("segment_replaced", f"{path.name}: {exc}", segment=index)
            continue
        if header.segment_index != index:
            report.add("segment_replaced", f"{path.name} holds segment {header.segment_index}", segment=index)
            continue
        if segment.data_after_hole is not None:
            report.add(
                "segment_sparse",
                f"{path.name} has a hole at offset {len(data)} and data again at offset "
                f"{segment.data_after_hole}: the writer never leaves one; nothing after the hole was read",
                segment=index,
                offset=len(data),
            )
        is_last = index == newest_present
        frames = scan_frames(data, SEGMENT_HEADER_LEN, index, cipher)
        for item in with_hole_tail(frames, len(data), segment.size):
            checker.feed(Item(index, is_last, item))
