"""Opening an existing audit log: resume from the newest checkpoint and repair a crash-torn tail.

Cost is O(records after the newest checkpoint): only the last checkpoint line is read, it is checked
(signature, frontier, the record it ends on), and the segments are memory-mapped so only the pages after
it are touched. A damaged *last* record of the *last* segment is what a crash leaves (a partial frame,
a zero-filled tail, or a full-length frame whose contents never reached the disk); it is truncated and
reported. Damage anywhere else refuses to open: it is never "repaired" away.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.audit.checkpoints import CHECKPOINTS_FILE, Checkpoint, read_last_checkpoint
from cleanroom.audit.fileio import data_extent, open_regular
from cleanroom.audit.merkle import CompactTree, chain_genesis, chain_next, leaf_hash
from cleanroom.audit.records import (
    SEGMENT_HEADER_LEN,
    RecordCipher,
    RecordFormatError,
    parse_frame_header,
    parse_segment_header,
)
from cleanroom.audit.segments import (
    Damage,
    Frame,
    list_segments,
    scan_frames,
    segment_name,
    with_hole_tail,
)
from cleanroom.errors import AuditUnavailable

logger = logging.getLogger("cleanroom.audit")


@dataclass
class LogState:
    """Everything that advances with each record; copied before a batch so a failure can roll back."""

    seq: int
    chain: bytes
    tree: CompactTree
    segment: int
    segment_size: int
    last_record: tuple[int, int] | None

    def copy(self) -> LogState:
        return LogState(self.seq, self.chain, self.tree.copy(), self.segment, self.segment_size, self.last_record)

    @classmethod
    def empty(cls, log_id: bytes) -> LogState:
        return cls(0, chain_genesis(log_id), CompactTree(), 1, SEGMENT_HEADER_LEN, None)


@dataclass(frozen=True)
class Repair:
    """What opening the log changed on disk (a torn tail after a crash), for the operator to see."""

    file: str
    offset: int
    bytes_removed: int
    reason: str


@dataclass
class Recovered:
    """`cipher` and `state` are None for a directory without segments (a new log)."""

    cipher: RecordCipher | None
    state: LogState | None
    last_checkpoint: Checkpoint | None
    repairs: list[Repair] = field(default_factory=list)


@contextlib.contextmanager
def mapped(path: Path) -> Iterator[bytes | mmap.mmap]:
    """A read-only map of a file: recovery touches only the pages after the last checkpoint."""
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            yield b""
            return
        region = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            yield region
        finally:
            region.close()


def recover_log(directory: Path, audit_key: bytes | bytearray, public_key: ec.EllipticCurvePublicKey) -> Recovered:
    """Caller holds the writer lock. Raises AuditUnavailable naming what is wrong and where."""
    repairs: list[Repair] = []
    cp_path = directory / CHECKPOINTS_FILE
    try:
        line, torn_offset = read_last_checkpoint(cp_path)
    except OSError as exc:
        raise AuditUnavailable(
            f"{CHECKPOINTS_FILE} cannot be read ({exc.strerror or exc}); run `cleanroom audit verify`"
        ) from exc
    if torn_offset is not None:
        repairs.append(_truncate(cp_path, torn_offset, "unterminated checkpoint line (crash mid-append)"))
    cp: Checkpoint | None = None
    if line is not None:
        if line.checkpoint is None:
            raise AuditUnavailable(
                f"latest audit checkpoint (byte {line.offset}) is malformed: {line.error}; run `cleanroom audit verify`"
            )
        if not line.checkpoint.signature_valid(public_key):
            raise AuditUnavailable(
                f"latest audit checkpoint (byte {line.offset}) has an invalid signature; run `cleanroom audit verify`"
            )
        cp = line.checkpoint
    segments = list_segments(directory)
    if [i for i, _ in segments] != list(range(1, len(segments) + 1)):
        raise AuditUnavailable(
            f"audit segments are not contiguous: {[i for i, _ in segments]}; run `cleanroom audit verify`"
        )
    if not segments:
        if cp is not None:
            raise AuditUnavailable("audit checkpoints exist but every segment is missing")
        return Recovered(None, None, None, repairs)
    if cp is not None:
        log_id = cp.log_id
    else:
        try:
            with segments[0][1].open("rb") as fh:
                log_id = parse_segment_header(fh.read(SEGMENT_HEADER_LEN)).log_id
        except RecordFormatError as exc:
            raise AuditUnavailable(f"audit segment 1 is unreadable: {exc}") from exc
    cipher = RecordCipher(audit_key, log_id)
    try:
        state = _resume_point(directory, cp, log_id, len(segments))
        newest_ref = _replay_tail(directory, cipher, state, len(segments), repairs)
    except BaseException:
        cipher.close()
        raise
    existing = 0 if cp is None else cp.index + 1
    if newest_ref > existing:
        # A record counts the checkpoints that existed when it was written. Fewer now means checkpoints
        # were deleted: signing a fresh chain over the records would hide it once its indices catch up.
        cipher.close()
        raise AuditUnavailable(
            f"audit record {state.seq - 1} was written after checkpoint #{newest_ref - 1}, but the newest "
            f"checkpoint in {CHECKPOINTS_FILE} is "
            + ("none" if cp is None else f"#{cp.index}")
            + ": checkpoints were deleted; run `cleanroom audit verify`"
        )
    return Recovered(cipher, state, cp, repairs)


def _resume_point(directory: Path, cp: Checkpoint | None, log_id: bytes, segment_count: int) -> LogState:
    if cp is None:
        return LogState.empty(log_id)
    tree = cp.compact_tree()
    if tree is None or cp.segment_index > segment_count:
        raise AuditUnavailable("latest audit checkpoint does not match the log; run `cleanroom audit verify`")
    last = (
        None
        if cp.last_record_segment is None or cp.last_record_offset is None
        else (cp.last_record_segment, cp.last_record_offset)
    )
    state = LogState(cp.tree_size, cp.chain_head, tree, cp.segment_index, cp.segment_offset, last)
    _check_checkpoint_tail(directory, cp, state)
    return state


def _check_checkpoint_tail(directory: Path, cp: Checkpoint, state: LogState) -> None:
    """The record the checkpoint ends on must still be there and chain to the signed head."""
    path = directory / segment_name(cp.segment_index)
    if path.stat().st_size < cp.segment_offset:
        raise AuditUnavailable(
            f"audit log truncated: segment {cp.segment_index} is shorter than the "
            f"signed checkpoint {cp.index} says; run `cleanroom audit verify`"
        )
    if state.last_record is None:
        if cp.tree_size:
            raise AuditUnavailable("latest audit checkpoint lacks its last-record position")
        return
    segment, offset = state.last_record
    ok = False
    with mapped(directory / segment_name(segment)) as data:
        try:
            header = parse_frame_header(data, offset)
            frame = bytes(data[offset : offset + header.frame_len])
            ok = (
                header.seq == cp.tree_size - 1
                and len(frame) == header.frame_len
                and chain_next(header.prev_chain, leaf_hash(frame)) == cp.chain_head
            )
        except RecordFormatError:
            ok = False
    if not ok:
        raise AuditUnavailable(
            f"audit record {cp.tree_size - 1} no longer matches the signed checkpoint "
            f"{cp.index}; run `cleanroom audit verify`"
        )


def _replay_tail(directory: Path, cipher: RecordCipher, state: LogState, last_index: int, repairs: list[Repair]) -> int:
    """Authenticate every record after the resume point, advancing `state`; repair a torn last record.
    Returns the largest checkpoint reference among those records (0 if none)."""
    newest_ref = 0
    for index in range(state.segment, last_index + 1):
        with mapped(directory / segment_name(index)) as data:
            items, size = _scan_segment(directory, data, index, state, cipher)
        for position, item in enumerate(items):
            if (
                isinstance(item, Frame)
                and item.authentic
                and item.header.seq == state.seq
                and item.header.prev_chain == state.chain
            ):
                newest_ref = max(newest_ref, item.header.checkpoint_ref)
                record_hash = leaf_hash(item.raw)
                state.chain = chain_next(state.chain, record_hash)
                state.tree.append(record_hash)
                state.last_record = (index, item.offset)
                state.segment_size = item.end
                state.seq += 1
                continue
            torn = (
                index == last_index
                and position == len(items) - 1
                and (
                    (isinstance(item, Damage) and item.to_eof)
                    or (isinstance(item, Frame) and item.authentic is False and item.end == size)
                )
            )
            if not torn:
                raise AuditUnavailable(
                    f"audit segment {index} is damaged at offset {item.offset} (expected record "
                    f"{state.seq}); run `cleanroom audit verify`"
                )
            reason = item.reason if isinstance(item, Damage) else "last record does not authenticate"
            repairs.append(_truncate(directory / segment_name(index), item.offset, reason))
    return newest_ref


def _scan_segment(
    directory: Path, data: bytes | mmap.mmap, index: int, state: LogState, cipher: RecordCipher
) -> tuple[list[Frame | Damage], int]:
    """Check segment `index`'s header and list what follows the resume point (only that part is read)."""
    try:
        header = cipher.check_segment_header(bytes(data[:SEGMENT_HEADER_LEN]))
    except RecordFormatError as exc:
        raise AuditUnavailable(f"audit segment {index}: {exc}; run `cleanroom audit verify`") from exc
    if header.segment_index != index or (index > state.segment and header.first_seq != state.seq):
        raise AuditUnavailable(f"audit segment {index} is out of place; run `cleanroom audit verify`")
    start = state.segment_size if index == state.segment else SEGMENT_HEADER_LEN
    if len(data) < start:
        raise AuditUnavailable(f"audit segment {index} is shorter than the latest checkpoint says")
    fd = open_regular(directory / segment_name(index))
    try:
        _, data_end, data_after = data_extent(fd)
    finally:
        os.close(fd)
    if data_after is not None or data_end < start:
        # The writer only appends: a hole with data after it, or inside signed records, was made on purpose.
        raise AuditUnavailable(
            f"audit segment {index} has a hole at offset {data_end} that no crash leaves; run `cleanroom audit verify`"
        )
    state.segment, state.segment_size = index, start
    frames = scan_frames(data, start, index, cipher, end=data_end)
    return list(with_hole_tail(frames, data_end, len(data))), len(data)


def _truncate(path: Path, offset: int, reason: str) -> Repair:
    size = path.stat().st_size
    fd = open_regular(path, os.O_WRONLY, follow=False)
    try:
        os.ftruncate(fd, offset)
        os.fsync(fd)
    finally:
        os.close(fd)
    logger.warning(
        "audit log: repaired torn tail of %s at offset %d (%d bytes removed): %s",
        path.name,
        offset,
        size - offset,
        reason,
    )
    return Repair(path.name, offset, size - offset, reason)
