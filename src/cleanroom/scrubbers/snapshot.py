"""Pure parsing of `torch.cuda.memory_snapshot()`: which device bytes are free, pending or in use.

Kept free of torch and CUDA so CI tests it on recorded snapshot structures (tests/fixtures/). Like every
format we parse, each length is bounds-checked before it is used, and anything unexpected raises
`SnapshotFormatError`: the scrub then fails closed rather than guess which bytes are free.

Snapshot layout relied on (torch/csrc/cuda/memory_snapshot.cpp, c10 CUDACachingAllocator::snapshot):
a list of segments, each ``{"device", "address", "total_size", "allocated_size", "active_size",
"requested_size", "stream", "segment_type", "segment_pool_id", "is_expandable", "frames", "blocks"}``;
each block ``{"address", "size", "requested_size", "state", "frames"}`` in address order, with state
``active_allocated`` (a live tensor), ``active_pending_free`` (freed, but a stream recorded on it may still
use it: NOT free yet) or ``inactive`` (free, cached, handed out as is). An expandable segment is reported
as one segment per contiguous mapped range: torch starts a segment only at a mapped block and stops at
the first unmapped one, so unmapped address space (which would fault the device if written) never
appears here. A segment with no blocks is still accepted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

BLOCK_STATES = frozenset({"active_allocated", "active_pending_free", "inactive"})


class SnapshotFormatError(ValueError):
    """A memory snapshot that does not have the structure the scrub relies on (fail closed)."""


@dataclass(frozen=True)
class SnapshotSummary:
    """What `parse_snapshot` found on one device. Sizes in bytes."""

    free_ranges: list[tuple[int, int]]  # merged `inactive` ranges, sorted by address
    inactive_bytes: int
    pending_free_bytes: int
    allocated_bytes: int
    reserved_bytes: int
    segments: int
    expandable_segments: int
    pools: frozenset[tuple[int, int]]


def _int(obj: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> int | None:
    if key not in obj:
        if required:
            raise SnapshotFormatError(f"{where}: missing {key!r}")
        return None
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SnapshotFormatError(f"{where}: {key!r} must be a non-negative int, got {value!r}")
    return value


def parse_snapshot(
    snapshot: Sequence[Mapping[str, Any]] | Mapping[str, Any], *, device: int | None = None
) -> SnapshotSummary:
    """Parse `torch.cuda.memory_snapshot()` (a list of segments) or `torch.cuda.memory._snapshot()`.

    Segment fields used: ``address``, ``total_size``, ``blocks``, and when present ``device`` (segments
    of other devices are skipped when `device` is given), ``segment_pool_id``, ``is_expandable``. Block
    fields: ``size``, ``state`` and, when present, ``address``. Torch reports blocks in address order
    from the segment's address, one segment per mapped range of an expandable segment (an unmapped head
    reports a segment with no blocks). Every length is checked before it is used: block sizes must add up
    to the segment's size, a block's ``address`` must match its position, a state must be one of
    `BLOCK_STATES` (an unknown state is not assumed free), and no two segments may overlap.
    """
    if isinstance(snapshot, Mapping):
        if "segments" not in snapshot:
            raise SnapshotFormatError("snapshot dict has no 'segments'")
        snapshot = snapshot["segments"]
    if not isinstance(snapshot, Sequence) or isinstance(snapshot, (str, bytes)):
        raise SnapshotFormatError("snapshot must be a list of segments")
    free: list[tuple[int, int]] = []
    spans: list[tuple[int, int]] = []
    inactive = pending = allocated = reserved = segments = expandable = 0
    pools: set[tuple[int, int]] = set()
    for i, seg in enumerate(snapshot):
        where = f"segment {i}"
        if not isinstance(seg, Mapping):
            raise SnapshotFormatError(f"{where}: not a dict")
        seg_device = _int(seg, "device", where, required=False)
        if device is not None and seg_device is not None and seg_device != device:
            continue
        base = _int(seg, "address", where)
        total = _int(seg, "total_size", where)
        assert base is not None and total is not None
        blocks = seg.get("blocks")
        if not isinstance(blocks, Sequence) or isinstance(blocks, (str, bytes)):
            raise SnapshotFormatError(f"{where}: 'blocks' must be a list")
        pool = seg.get("segment_pool_id", (0, 0))
        if isinstance(pool, Sequence) and len(pool) == 2:
            pools.add((int(pool[0]), int(pool[1])))
        segments += 1
        expandable += bool(seg.get("is_expandable", False))
        addr = base
        for j, block in enumerate(blocks):
            bwhere = f"{where} block {j}"
            if not isinstance(block, Mapping):
                raise SnapshotFormatError(f"{bwhere}: not a dict")
            size = _int(block, "size", bwhere)
            assert size is not None
            if size == 0:
                raise SnapshotFormatError(f"{bwhere}: zero-sized block")
            claimed = _int(block, "address", bwhere, required=False)
            if claimed is not None and claimed != addr:
                raise SnapshotFormatError(f"{bwhere}: address {claimed:#x} != expected {addr:#x}")
            state = block.get("state")
            if state not in BLOCK_STATES:
                raise SnapshotFormatError(f"{bwhere}: unknown state {state!r}")
            if state == "inactive":
                free.append((addr, size))
                inactive += size
            elif state == "active_pending_free":
                pending += size
            else:
                allocated += size
            addr += size
        if addr - base != total:
            raise SnapshotFormatError(f"{where}: blocks add up to {addr - base} bytes, total_size is {total}")
        reserved += total
        if total:
            spans.append((base, total))
    merge_ranges(spans)  # raises on overlapping segments
    return SnapshotSummary(
        free_ranges=merge_ranges(free),
        inactive_bytes=inactive,
        pending_free_bytes=pending,
        allocated_bytes=allocated,
        reserved_bytes=reserved,
        segments=segments,
        expandable_segments=expandable,
        pools=frozenset(pools),
    )


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort (address, length) ranges and merge the ones that touch; overlapping ranges raise."""
    out: list[tuple[int, int]] = []
    for addr, size in sorted(r for r in ranges if r[1] > 0):
        if out:
            last_addr, last_size = out[-1]
            end = last_addr + last_size
            if addr < end:
                raise SnapshotFormatError(f"ranges overlap at {addr:#x}")
            if addr == end:
                out[-1] = (last_addr, last_size + size)
                continue
        out.append((addr, size))
    return out


def free_ranges_from_snapshot(
    snapshot: Sequence[Mapping[str, Any]] | Mapping[str, Any], *, device: int | None = None
) -> list[tuple[int, int]]:
    """The merged `inactive` (address, length) ranges of a memory snapshot: what the scrub zeroes."""
    return parse_snapshot(snapshot, device=device).free_ranges


__all__ = [
    "BLOCK_STATES",
    "SnapshotFormatError",
    "SnapshotSummary",
    "free_ranges_from_snapshot",
    "merge_ranges",
    "parse_snapshot",
]
