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


# --- the whole between-tenant scrub on an emulated device (fake torch, fake CuPy, numpy "HBM") ----------
class FakeDevice:
    """One GPU's memory as a numpy array, a caching allocator that reports `memory_snapshot()` in torch's
    layout, the driver's free list behind it, and the release counters of `torch.cuda.memory_stats()`."""

    BASE = 0x7F0000000000

    def __init__(self, size: int = 64 * MiB) -> None:
        import numpy as np

        self.np = np
        self.hbm = np.zeros(size, dtype=np.uint8)
        self.driver_free: list[tuple[int, int]] = [(self.BASE, size)]  # what cudaMalloc can hand out
        self.segments: list[dict[str, Any]] = []
        self.allocated = self.freed = 0  # reserved_bytes.all.{allocated,freed}

    def view(self, addr: int, size: int) -> Any:
        return self.hbm[addr - self.BASE : addr - self.BASE + size]

    def cuda_malloc(self, size: int) -> int | None:
        for i, (addr, free) in enumerate(self.driver_free):
            if free >= size:
                self.driver_free[i] = (addr + size, free - size)
                return addr
        return None

    def tenant_frees_segment(self, size: int, byte: int) -> int:
        """A segment the allocator got from the driver, written by a tenant, now free (inactive)."""
        addr = self.cuda_malloc(size)
        assert addr is not None
        self.allocated += size
        self.view(addr, size)[:] = byte
        self.segments.append({"device": 0, "address": addr, "total_size": size, "blocks": [{"size": size}]})
        self.segments[-1]["blocks"][0]["state"] = "inactive"
        return addr

    def empty_cache(self) -> None:  # whole free segments back to the driver, contents as they are
        for seg in [s for s in self.segments if all(b["state"] == "inactive" for b in s["blocks"])]:
            self.segments.remove(seg)
            self.freed += seg["total_size"]
            self.driver_free.insert(0, (seg["address"], seg["total_size"]))

    def snapshot(self, include_traces: bool = True) -> list[dict[str, Any]]:
        return copy.deepcopy(self.segments)


class FakeKernels:
    """`ScrubKernels`' interface over the fake device's memory."""

    def __init__(self, dev: FakeDevice) -> None:
        self.dev = dev

    def zero(self, ranges: Any, stream_ptr: int) -> int:
        pairs = [(int(a), int(n)) for a, n in ranges]
        for addr, n in pairs:
            self.dev.view(addr, n)[:] = 0
        return sum(n for _, n in pairs)

    def count_nonzero(self, ranges: Any, stream_ptr: int) -> tuple[int, int | None]:
        np = self.dev.np
        bad = [(int(np.count_nonzero(self.dev.view(int(a), int(n)))), int(a)) for a, n in ranges]
        firsts = [a for k, a in bad if k]
        return sum(k for k, _ in bad), (min(firsts) if firsts else None)


def fake_torch_and_cupy(dev: FakeDevice) -> tuple[Any, Any]:
    import contextlib
    from types import SimpleNamespace

    class Event:
        def __init__(self, enable_timing: bool = False) -> None:
            pass

        def record(self, stream: Any = None) -> None:
            pass

        def synchronize(self) -> None:
            pass

        def elapsed_time(self, other: Any) -> float:
            return 0.0

    def device(spec: Any) -> Any:
        kind, _, index = str(spec).partition(":")
        return SimpleNamespace(type=kind, index=int(index) if index else None)

    cuda = SimpleNamespace(
        is_available=lambda: True,
        current_device=lambda: 0,
        get_allocator_backend=lambda: "native",
        init=lambda: None,
        device=lambda i: contextlib.nullcontext(),
        synchronize=lambda i=None: None,
        is_current_stream_capturing=lambda: False,
        current_stream=lambda i=None: SimpleNamespace(cuda_stream=0),
        memory_stats=lambda i=None: {
            "reserved_bytes.all.allocated": dev.allocated,
            "reserved_bytes.all.freed": dev.freed,
        },
        memory_snapshot=dev.snapshot,
        memory_reserved=lambda i=None: sum(s["total_size"] for s in dev.segments),
        empty_cache=dev.empty_cache,
        host_memory_stats=lambda: {"allocated_bytes.current": 0, "active_bytes.current": 0},
        Event=Event,
    )
    torch = SimpleNamespace(
        cuda=cuda,
        device=device,
        uint8="uint8",
        empty=lambda *a, **k: object(),
        _C=SimpleNamespace(_cuda_clearCublasWorkspaces=lambda: None, _host_emptyCache=lambda: None),
    )

    class OutOfMemoryError(Exception):
        pass

    class Memory:  # raw cudaMalloc, as the driver sweep uses it
        def __init__(self, size: int) -> None:
            ptr = dev.cuda_malloc(size)
            if ptr is None:
                raise OutOfMemoryError(size)
            self.ptr, self.size = ptr, size

    pool = SimpleNamespace(free_bytes=lambda: 0, free_all_blocks=lambda: None)
    cupy_cuda = SimpleNamespace(
        Device=lambda i=None: contextlib.nullcontext(SimpleNamespace(id=0)),
        Memory=Memory,
        runtime=SimpleNamespace(CUDARuntimeError=RuntimeError),
        memory=SimpleNamespace(OutOfMemoryError=OutOfMemoryError),
        set_allocator=lambda fn: None,
        get_allocator=lambda: None,
    )
    cupy = SimpleNamespace(
        cuda=cupy_cuda, get_default_memory_pool=lambda: pool, get_default_pinned_memory_pool=lambda: pool
    )
    return torch, cupy


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> FakeDevice:
    import sys

    dev = FakeDevice()
    torch, cupy = fake_torch_and_cupy(dev)
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    return dev


def test_scrub_sequence_on_an_emulated_device(fake_gpu: FakeDevice) -> None:
    from cleanroom.scrubbers.base import ScrubPolicy
    from cleanroom.scrubbers.gpu import GpuScrubber

    dev = fake_gpu
    a = dev.tenant_frees_segment(8 * MiB, 0xAB)
    s = GpuScrubber("cuda:0", kernels=FakeKernels(dev), policy=ScrubPolicy(release_cached=True))  # type: ignore[arg-type]
    report = s.between_tenant_scrub()
    assert report.clean and report.bytes_scrubbed == 8 * MiB and not dev.view(a, 8 * MiB).any()
    assert report.released_bytes == 8 * MiB and not report.notes  # no release before: no driver sweep
    assert not dev.hbm.any()


def test_release_after_a_stats_reset_still_triggers_the_driver_sweep(fake_gpu: FakeDevice) -> None:
    # torch.cuda.reset_accumulated_memory_stats() zeroes reserved_bytes.all.freed: a later unscrubbed
    # release smaller than what the scrubber had seen released must still be noticed.
    from cleanroom.scrubbers.base import ScrubPolicy
    from cleanroom.scrubbers.gpu import GpuScrubber

    dev = fake_gpu
    dev.tenant_frees_segment(8 * MiB, 0xAB)
    s = GpuScrubber("cuda:0", kernels=FakeKernels(dev), policy=ScrubPolicy(release_cached=True))  # type: ignore[arg-type]
    s.between_tenant_scrub()  # zeroes and releases 8 MiB: the scrubber has now seen freed == 8 MiB
    assert dev.freed == 8 * MiB
    b = dev.tenant_frees_segment(4 * MiB, 0xCD)
    dev.allocated = dev.freed = 0  # somebody's torch.cuda.reset_accumulated_memory_stats()
    dev.empty_cache()  # ...and somebody's empty_cache: 4 MiB of tenant data back to the driver
    assert dev.freed == 4 * MiB and dev.view(b, 4 * MiB).all()
    report = s.between_tenant_scrub()
    assert any("driver sweep" in n for n in report.notes), report
    assert not dev.hbm.any()  # the driver's free memory was zeroed


def test_released_to_driver_since() -> None:
    from cleanroom.scrubbers.gpu import released_to_driver_since

    assert not released_to_driver_since((10, 4), (10, 4))
    assert not released_to_driver_since((10, 4), (12, 4))  # grew: new segments, nothing released
    assert released_to_driver_since((10, 4), (10, 6))  # released
    assert released_to_driver_since((10, 4), (0, 0))  # stats reset
    assert released_to_driver_since((10, 8), (3, 2))  # reset, then released less than before


def test_pinned_cached_free_bytes_both_stats_layouts() -> None:
    from cleanroom.scrubbers.gpu import pinned_cached_free_bytes

    new = {"allocated_bytes.current": 4096 + 1024, "active_bytes.current": 4096}  # torch 2.13: owned, handed out
    old = {"reserved_bytes.current": 8192, "allocated_bytes.current": 4096}  # older 2.x: owned, handed out
    assert pinned_cached_free_bytes(new) == (1024, None)
    assert pinned_cached_free_bytes(old) == (4096, None)
    left, note = pinned_cached_free_bytes({})
    assert left == 0 and note and "cannot confirm" in note


# --- CUDA errors during a scrub fail closed (503 device_quarantined), never a raw RuntimeError (500) ------
CUDA_ERROR = "CUDA error: an illegal memory access was encountered"


def _raise_cuda_error(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError(CUDA_ERROR)


def test_cuda_error_entering_the_device_quarantines(fake_gpu: FakeDevice) -> None:
    # After a sticky CUDA error every CUDA call raises, entering torch.cuda.device(i) included; that call
    # used to sit outside the scrub's fail-closed handler and escaped as a RuntimeError.
    import sys

    from cleanroom.errors import DeviceQuarantined
    from cleanroom.scrubbers.gpu import GpuScrubber

    alerts: list[Any] = []
    s = GpuScrubber("cuda:0", kernels=FakeKernels(fake_gpu), on_quarantine=alerts.append)  # type: ignore[arg-type]
    sys.modules["torch"].cuda.device = _raise_cuda_error
    with pytest.raises(DeviceQuarantined, match="illegal memory access"):
        s.between_tenant_scrub()
    assert s.quarantined and len(alerts) == 1
    with pytest.raises(DeviceQuarantined):
        s.between_tenant_scrub()


def test_kernel_launch_error_quarantines(fake_gpu: FakeDevice) -> None:
    from cleanroom.errors import DeviceQuarantined
    from cleanroom.scrubbers.gpu import GpuScrubber

    fake_gpu.tenant_frees_segment(2 * MiB, 0xAB)
    kernels = FakeKernels(fake_gpu)
    kernels.zero = _raise_cuda_error  # type: ignore[method-assign]
    s = GpuScrubber("cuda:0", kernels=kernels)  # type: ignore[arg-type]
    with pytest.raises(DeviceQuarantined, match="RuntimeError"):
        s.between_tenant_scrub()
    assert s.quarantined


def test_cuda_error_zeroing_a_request_quarantines(fake_gpu: FakeDevice, monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    import cleanroom.scrubbers.base as base
    from cleanroom.errors import DeviceQuarantined
    from cleanroom.scrubbers.gpu import GpuScrubber

    def storages(tensors: Any) -> list[str]:
        if any(not isinstance(t, str) for t in tensors):
            raise TypeError("cannot zero a tensor with layout torch.jagged")
        return ["storage"]

    view = SimpleNamespace(device=SimpleNamespace(type="cuda"), zero_=_raise_cuda_error, numel=lambda: 16)
    monkeypatch.setattr(base, "request_storages", storages)
    monkeypatch.setattr(base, "storage_bytes", lambda storage: view)
    s = GpuScrubber("cuda:0", kernels=FakeKernels(fake_gpu))  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # a tensor that cannot be zeroed is the caller's error, not the device's
        s.zero_request([object()])  # type: ignore[list-item]
    assert not s.quarantined
    with pytest.raises(DeviceQuarantined, match="request zeroing raised RuntimeError"):
        s.zero_request(["a cuda tensor"])  # type: ignore[list-item]
    assert s.quarantined


def test_failed_driver_sweep_frees_what_it_took(fake_gpu: FakeDevice) -> None:
    # The sweep takes every free byte; a launch error there quarantines, and the chunks must still be
    # freed rather than kept alive by the traceback the DeviceQuarantined carries.
    from cleanroom.errors import DeviceQuarantined
    from cleanroom.scrubbers.gpu import GpuScrubber

    dev = fake_gpu
    dev.tenant_frees_segment(4 * MiB, 0xAB)
    dev.empty_cache()  # released unscrubbed: the next scrub sweeps
    kernels = FakeKernels(dev)
    real_zero = kernels.zero

    def zero(ranges: Any, stream_ptr: int) -> int:
        if sum(int(n) for _, n in ranges) >= 32 * MiB:  # the sweep's ranges, not the free list's
            raise RuntimeError(CUDA_ERROR)
        return real_zero(ranges, stream_ptr)

    kernels.zero = zero  # type: ignore[method-assign]
    s = GpuScrubber("cuda:0", kernels=kernels)  # type: ignore[arg-type]
    with pytest.raises(DeviceQuarantined) as caught:
        s.between_tenant_scrub()
    frames = []
    tb = caught.value.__context__.__traceback__ if caught.value.__context__ else None
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    held = [v for f in frames for v in f.f_locals.values() if isinstance(v, list) and v and hasattr(v[0], "ptr")]
    assert not held  # no frame of the traceback still holds the sweep's chunks (cudaFree'd)
