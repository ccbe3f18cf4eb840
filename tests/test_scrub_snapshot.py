"""Snapshot parsing and range merging on recorded `torch.cuda.memory_snapshot()` structures.

The fixtures in tests/fixtures/ are written by hand in the exact layout torch produces
(torch/csrc/cuda/memory_snapshot.cpp): several pools (a CUDA graph private pool among them), expandable
segments reported per mapped range (one with an unmapped head, so no blocks), `active_pending_free`
blocks, adjacent inactive blocks inside a segment and across two back-to-back segments, and a second
device. Expected ranges below are worked out by hand from the fixture comments, not by the parser.
"""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleanroom.scrubbers.gpu import free_ranges_from_snapshot as gpu_free_ranges
from cleanroom.scrubbers.snapshot import (
    SnapshotFormatError,
    free_ranges_from_snapshot,
    merge_ranges,
    parse_snapshot,
)

FIXTURES = Path(__file__).parent / "fixtures"
MiB = 1 << 20
S1 = 0x7F3A00000000
S2 = S1 + 2 * MiB
S3 = 0x7F3B00000000
S4 = 0x7F4000000000
S6 = S4 + 80 * MiB


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def multi() -> list[dict[str, Any]]:
    return load("snapshot_multi_pool.json")  # type: ignore[no-any-return]


def test_free_ranges_of_recorded_multi_pool_snapshot(multi: list[dict[str, Any]]) -> None:
    assert free_ranges_from_snapshot(multi, device=0) == [
        (S1 + 512, 1536),  # two adjacent inactive blocks (1024 + 512) merged
        # S1's last inactive block runs into S2's first one: back-to-back segments merge
        (S1 + 2560, (2 * MiB - 2560) + 4 * MiB),
        (S2 + 12 * MiB, 8 * MiB),  # after an active_pending_free block, which is NOT included
        (S3 + 2 * MiB, 18 * MiB),  # graph private pool
        (S4 + 20 * MiB, 40 * MiB),  # expandable segment, first mapped range
        (S6, 20 * MiB),  # expandable segment, second mapped range after an unmapped gap
    ]
    assert gpu_free_ranges is free_ranges_from_snapshot  # the GPU scrubber's public name


def test_summary_counts_pending_and_pools(multi: list[dict[str, Any]]) -> None:
    s = parse_snapshot(multi, device=0)
    assert s.pending_free_bytes == 512 + 2 * MiB
    assert s.inactive_bytes == sum(length for _, length in s.free_ranges)
    assert s.allocated_bytes == 512 + 6 * MiB + 2 * MiB + 20 * MiB + 20 * MiB
    assert s.reserved_bytes == s.inactive_bytes + s.pending_free_bytes + s.allocated_bytes
    assert s.segments == 6  # device 1 skipped; the blockless expandable head counts as a segment
    assert s.expandable_segments == 3
    assert s.pools == {(0, 0), (1, 0)}


def test_pending_free_bytes_never_in_free_ranges(multi: list[dict[str, Any]]) -> None:
    ranges = free_ranges_from_snapshot(multi, device=0)
    for seg in multi:
        for b in seg["blocks"]:
            if b["state"] != "inactive" and seg["device"] == 0:
                for addr, length in ranges:
                    assert b["address"] + b["size"] <= addr or addr + length <= b["address"]


def test_device_filter_and_all_devices(multi: list[dict[str, Any]]) -> None:
    assert free_ranges_from_snapshot(multi, device=1) == [(0x7F6000000000, 2 * MiB)]
    all_devices = free_ranges_from_snapshot(multi)
    assert (0x7F6000000000, 2 * MiB) in all_devices and len(all_devices) == 7


def test_dict_form_of_private_snapshot() -> None:
    d = load("snapshot_dict_form.json")
    assert free_ranges_from_snapshot(d) == [(0x7F7000000000, MiB), (0x7F7100000000, 20 * MiB)]
    with pytest.raises(SnapshotFormatError):
        parse_snapshot({"device_traces": []})


def test_blocks_without_address_key_use_their_position(multi: list[dict[str, Any]]) -> None:
    # Older torch versions report no block address; positions follow from the sizes.
    stripped = copy.deepcopy(multi)
    for seg in stripped:
        for b in seg["blocks"]:
            del b["address"]
    assert free_ranges_from_snapshot(stripped, device=0) == free_ranges_from_snapshot(multi, device=0)


def _mutate(multi: list[dict[str, Any]], fn: Any) -> list[dict[str, Any]]:
    m = copy.deepcopy(multi)
    fn(m)
    return m


@pytest.mark.parametrize(
    ("why", "mutation"),
    [
        (
            "the docstring's state name is not what torch emits",
            lambda m: m[0]["blocks"][1].update(state="active_awaiting_free"),
        ),
        ("missing state", lambda m: m[0]["blocks"][1].pop("state")),
        ("sizes do not add up", lambda m: m[1]["blocks"][0].update(size=4 * MiB - 512)),
        ("total_size too large", lambda m: m[1].update(total_size=m[1]["total_size"] + 512)),
        ("address out of place", lambda m: m[0]["blocks"][2].update(address=m[0]["blocks"][2]["address"] + 16)),
        ("zero-sized block", lambda m: m[0]["blocks"].insert(1, {"address": S1 + 512, "size": 0, "state": "inactive"})),
        ("negative size", lambda m: m[0]["blocks"][1].update(size=-1024)),
        ("bool size", lambda m: m[0]["blocks"][1].update(size=True)),
        ("string address", lambda m: m[2].update(address=str(S3))),
        ("missing blocks", lambda m: m[2].pop("blocks")),
        ("blocks not a list", lambda m: m[2].update(blocks="[]")),
        ("segments overlap", lambda m: m[2].update(address=S2 + MiB) or [b.pop("address") for b in m[2]["blocks"]]),
        ("segment not a dict", lambda m: m.append([1, 2])),
    ],
)
def test_malformed_snapshots_fail_closed(multi: list[dict[str, Any]], why: str, mutation: Any) -> None:
    with pytest.raises(SnapshotFormatError):
        parse_snapshot(_mutate(multi, mutation), device=0)


def test_not_a_snapshot() -> None:
    for bad in ("segments", b"x", 42, None):
        with pytest.raises(SnapshotFormatError):
            parse_snapshot(bad)  # type: ignore[arg-type]


def test_merge_ranges() -> None:
    assert merge_ranges([(100, 10), (0, 50), (50, 50), (120, 0), (110, 5)]) == [(0, 115)]
    assert merge_ranges([]) == []
    with pytest.raises(SnapshotFormatError):
        merge_ranges([(0, 100), (99, 10)])


STATES = ("active_allocated", "active_pending_free", "inactive")


@st.composite
def snapshots(draw: st.DrawFn) -> list[dict[str, Any]]:
    segs = []
    addr = 4096
    for _ in range(draw(st.integers(0, 5))):
        addr += draw(st.sampled_from([0, 0, 512, 4096]))  # sometimes back to back
        blocks = []
        a = addr
        for _ in range(draw(st.integers(0, 6))):
            size = draw(st.integers(1, 8)) * 512
            blocks.append({"address": a, "size": size, "state": draw(st.sampled_from(STATES))})
            a += size
        segs.append(
            {
                "device": 0,
                "address": addr,
                "total_size": a - addr,
                "blocks": blocks,
                "segment_pool_id": (0, 0),
                "is_expandable": draw(st.booleans()),
            }
        )
        addr = a
    return segs


@settings(max_examples=200, deadline=None)
@given(snapshots())
def test_free_ranges_cover_exactly_the_inactive_bytes(segs: list[dict[str, Any]]) -> None:
    inactive: set[int] = set()
    other: set[int] = set()
    for seg in segs:
        for b in seg["blocks"]:
            (inactive if b["state"] == "inactive" else other).update(range(b["address"], b["address"] + b["size"]))
    ranges = free_ranges_from_snapshot(segs)
    covered: set[int] = set()
    for addr, length in ranges:
        covered.update(range(addr, addr + length))
    assert covered == inactive
    assert not covered & other
    # merged: no two ranges touch
    assert all(a1 + l1 < a2 for (a1, l1), (a2, _) in itertools.pairwise(ranges))
