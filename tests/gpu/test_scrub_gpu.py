"""Real kernels and the real between-tenant scrub on a CUDA device (run by benchmarks/gpu/check.sh).

Every test carries the `gpu` marker: tests/conftest.py skips them where torch sees no CUDA device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from cleanroom.scrubbers.base import ScrubPolicy

pytestmark = pytest.mark.gpu

MiB = 1 << 20


@pytest.fixture(scope="module")
def kernels() -> Any:
    from cleanroom.kernels import ScrubKernels

    return ScrubKernels.load(0)


def _stream() -> int:
    import torch

    return int(torch.cuda.current_stream().cuda_stream)


def _free_ranges() -> list[tuple[int, int]]:
    import torch

    from cleanroom.scrubbers.snapshot import free_ranges_from_snapshot

    torch.cuda.synchronize()
    return free_ranges_from_snapshot(torch.cuda.memory_snapshot(), device=torch.cuda.current_device())


def test_zero_exactly_the_ranges_with_unaligned_heads_and_tails(kernels: Any) -> None:
    import torch

    buf = torch.full((8 * MiB,), 0xFF, dtype=torch.uint8, device="cuda")
    base = buf.data_ptr()
    rel = [(3, 1000), (4096 + 7, 13), (65536 + 1, 3 * MiB + 5), (7 * MiB, 15), (7 * MiB + 100, 1)]
    kernels.zero([(base + o, n) for o, n in rel], _stream())
    expected = np.full(8 * MiB, 0xFF, dtype=np.uint8)
    for o, n in rel:
        expected[o : o + n] = 0
    assert np.array_equal(buf.cpu().numpy(), expected)


def test_verify_counts_every_nonzero_byte(kernels: Any) -> None:
    import torch

    g = torch.Generator(device="cuda").manual_seed(1)
    buf = (torch.rand(16 * MiB, device="cuda", generator=g) < 0.001).to(torch.uint8)  # sparse non-zeros
    base = buf.data_ptr()
    rel = [(5, 3 * MiB), (4 * MiB + 9, 77), (5 * MiB, 11 * MiB - 3)]
    host = buf.cpu().numpy()
    expected = sum(int(np.count_nonzero(host[o : o + n])) for o, n in rel)
    count, first = kernels.count_nonzero([(base + o, n) for o, n in rel], _stream())
    assert count == expected > 0
    assert first is not None and base <= first < base + 16 * MiB and host[(first - base) : (first - base) + 16].any()
    clean = torch.zeros(MiB, dtype=torch.uint8, device="cuda")
    assert kernels.count_nonzero([(clean.data_ptr() + 1, MiB - 2)], _stream()) == (0, None)


def test_single_planted_byte_found(kernels: Any) -> None:
    import torch

    buf = torch.zeros(64 * MiB, dtype=torch.uint8, device="cuda")
    buf[33 * MiB + 12345] = 1
    count, first = kernels.count_nonzero([(buf.data_ptr(), 64 * MiB)], _stream())
    assert count == 1 and first is not None and first <= buf.data_ptr() + 33 * MiB + 12345


def test_ten_thousand_ranges_one_launch(kernels: Any) -> None:
    import torch

    buf = torch.full((10_000 * 1024,), 7, dtype=torch.uint8, device="cuda")
    ranges = [(buf.data_ptr() + i * 1024 + 512, 512) for i in range(10_000)]
    kernels.zero(ranges, _stream())
    view = buf.view(10_000, 1024)
    assert int(view[:, :512].eq(7).sum()) == 10_000 * 512 and int(view[:, 512:].count_nonzero()) == 0


def test_marker_search(kernels: Any) -> None:
    import torch

    from cleanroom.scrubbers.verify import MARKER_MASK, MARKER_SHIFT

    word = 0x1234_5678_9AB << MARKER_SHIFT
    buf = torch.zeros(4 * MiB // 8, dtype=torch.int64, device="cuda")
    buf[::1000] = word | 0xBEEF
    n = kernels.count_marker_words([(buf.data_ptr(), 4 * MiB)], MARKER_MASK, word, _stream())
    assert n == len(range(0, 4 * MiB // 8, 1000))


def test_more_ranges_than_one_descriptor_table(kernels: Any) -> None:
    import torch

    from cleanroom.kernels import DEFAULT_RANGES_PER_LAUNCH

    n = 2 * DEFAULT_RANGES_PER_LAUNCH + 3  # three launches per call
    buf = torch.full((n * 64,), 0x5A, dtype=torch.uint8, device="cuda")
    ranges = [(buf.data_ptr() + 64 * i + 1, 33) for i in range(n)]  # unaligned heads and tails
    assert kernels.zero(ranges, _stream()) == 33 * n
    rows = buf.view(n, 64)
    assert int(rows[:, 1:34].count_nonzero()) == 0
    assert bool(rows[:, 0].eq(0x5A).all()) and bool(rows[:, 34:].eq(0x5A).all())
    planted = buf.data_ptr() + 64 * (n - 1) + 20  # in the last table's last range
    buf[64 * (n - 1) + 20] = 1
    count, first = kernels.count_nonzero(ranges, _stream())
    assert count == 1 and first is not None and 0 <= planted - first < 16  # the 16-byte word holding it


def test_range_over_4gib_with_unaligned_ends(kernels: Any) -> None:
    import torch

    size = (5 << 30) + 64
    buf = torch.full((size,), 0x3C, dtype=torch.uint8, device="cuda")
    start, length = 7, (5 << 30) + 9  # u64 tile offsets past 4 GiB; 9-byte last tile
    kernels.zero([(buf.data_ptr() + start, length)], _stream())
    assert kernels.count_nonzero([(buf.data_ptr() + start, length)], _stream()) == (0, None)
    assert int(buf[:start].eq(0x3C).sum()) == start
    assert int(buf[start + length :].eq(0x3C).sum()) == size - start - length
    buf[start + length - 1] = 2
    assert kernels.count_nonzero([(buf.data_ptr() + start, length)], _stream())[0] == 1
    del buf
    torch.cuda.empty_cache()


def test_scrub_on_a_full_device_with_a_long_free_list() -> None:
    # The scrub runs when the device is full. It used to cudaMalloc a bigger descriptor table for a free
    # list over 1024 ranges: OOM there quarantined a healthy device.
    import torch

    from cleanroom.kernels import DEFAULT_RANGES_PER_LAUNCH

    s = _scrubber(policy=ScrubPolicy(release_cached=False))
    small = [torch.full((512,), 0x42, dtype=torch.uint8, device="cuda") for _ in range(3 * DEFAULT_RANGES_PER_LAUNCH)]
    del small[::2]  # ~12k freed 512-byte blocks between live ones: as many separate free ranges
    hog: list[Any] = []
    try:
        for chunk in (1 << 30, 2 << 20):
            try:
                while True:
                    hog.append(torch.empty(chunk, dtype=torch.uint8, device="cuda"))
            except torch.OutOfMemoryError:
                pass
        report = s.between_tenant_scrub()
        assert report.clean and report.ranges > DEFAULT_RANGES_PER_LAUNCH and not s.quarantined
    finally:
        del hog, small
        torch.cuda.empty_cache()
    s.between_tenant_scrub()  # what went back to the driver unscrubbed is swept


def _scrubber(**kw: Any) -> Any:
    from cleanroom.scrubbers.gpu import GpuScrubber

    return GpuScrubber("cuda:0", **kw)


def test_between_tenant_scrub_zeroes_all_free_blocks() -> None:
    import torch

    s = _scrubber()
    ts = [torch.full((n,), 0xAB, dtype=torch.uint8, device="cuda") for n in (512, 4096, 3 * MiB, 30 * MiB)]
    keep = ts[1]
    del ts
    report = s.between_tenant_scrub()
    assert report.clean and report.bytes_scrubbed >= 3 * MiB + 30 * MiB
    assert set(report.phase_seconds) >= {"snapshot", "zero_gpu", "verify_gpu"}
    assert keep.eq(0xAB).all()  # live tensors untouched
    from cleanroom.kernels import ScrubKernels

    count, _ = ScrubKernels.load(0).count_nonzero(_free_ranges(), _stream())
    assert count == 0


@pytest.mark.parametrize("pattern", ["contiguous", "interleaved"])
def test_leak_probe_zero_after_scrub_and_positive_without(kernels: Any, pattern: Any) -> None:
    from cleanroom.scrubbers.verify import gpu_leak_probe

    control = gpu_leak_probe(None, kernels, total_bytes=64 * MiB, pattern=pattern)
    assert control.leaked_bytes > 0  # the probe can see a leak
    s = _scrubber(policy=ScrubPolicy(release_cached=False))
    result = gpu_leak_probe(s, kernels, total_bytes=64 * MiB, pattern=pattern)
    assert result.leaked_bytes == 0, result
    assert result.covered_free_bytes is not None and result.free_bytes_before_b is not None


def test_pending_free_blocks_are_drained_then_scrubbed() -> None:
    import torch

    s = _scrubber(policy=ScrubPolicy(release_cached=False))
    side = torch.cuda.Stream()
    t = torch.full((8 * MiB,), 0xCD, dtype=torch.uint8, device="cuda")
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(10_000_000)  # keep the side stream busy
        t.add_(1)
    t.record_stream(side)
    del t  # freed, but pending on `side`
    report = s.between_tenant_scrub()
    assert report.clean and report.pending_free_bytes == 0


class _SkippingKernels:
    """Kernels whose zero launch does nothing: the verify must catch it."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def zero(self, ranges: Any, stream: int) -> int:
        return int(np.asarray(ranges, dtype=np.uint64).reshape(-1, 2)[:, 1].sum())

    def count_nonzero(self, ranges: Any, stream: int) -> Any:
        return self.real.count_nonzero(ranges, stream)


def test_failed_zeroing_quarantines_device(kernels: Any) -> None:
    import torch

    from cleanroom.errors import DeviceQuarantined

    alerts: list[Any] = []
    s = _scrubber(kernels=_SkippingKernels(kernels), on_quarantine=alerts.append)
    t = torch.full((4 * MiB,), 0x11, dtype=torch.uint8, device="cuda")
    del t
    with pytest.raises(DeviceQuarantined):
        s.between_tenant_scrub()
    assert s.quarantined and alerts and alerts[0].nonzero_bytes >= 4 * MiB
    assert alerts[0].first_nonzero_address is not None
    with pytest.raises(DeviceQuarantined):
        s.between_tenant_scrub()
    _scrubber().between_tenant_scrub()  # a working scrubber cleans up after the test


def test_cupy_allocations_go_through_torch_and_get_scrubbed() -> None:
    import cupy
    import torch

    from cleanroom.scrubbers.gpu import cupy_routed_through_torch

    # release_cached=False: the freed block stays cached, so it must be among the scrubbed free ranges (with
    # empty_cache its segment could be released and the check below would hold vacuously).
    s = _scrubber(policy=ScrubPolicy(release_cached=False))
    assert cupy_routed_through_torch()
    before = torch.cuda.memory_allocated()
    a = cupy.full((4 * MiB,), 0x77, dtype=cupy.uint8)
    assert torch.cuda.memory_allocated() >= before + 4 * MiB
    ptr = int(a.data.ptr)
    del a
    assert cupy.get_default_memory_pool().free_bytes() == 0
    s.between_tenant_scrub()
    from cleanroom.kernels import ScrubKernels

    free = _free_ranges()
    assert any(addr <= ptr < addr + n for addr, n in free)
    assert ScrubKernels.load(0).count_nonzero(free, _stream())[0] == 0


def test_cublas_workspace_and_graph_pool_scrubbed() -> None:
    import torch

    s = _scrubber(policy=ScrubPolicy(release_cached=False))
    a = torch.randn(1024, 1024, device="cuda")
    b = a @ a  # allocates a cuBLAS workspace
    g = torch.cuda.CUDAGraph()
    static = torch.randn(256, 256, device="cuda")
    torch.cuda.synchronize()
    with torch.cuda.graph(g):
        tmp = static * 2
        out = (tmp + 1).sum()
        del tmp
    g.replay()
    del a, b
    report = s.between_tenant_scrub()
    assert report.clean
    snap = torch.cuda.memory_snapshot()
    assert any(tuple(seg.get("segment_pool_id", (0, 0))) != (0, 0) for seg in snap)  # a graph pool exists
    from cleanroom.kernels import ScrubKernels

    assert ScrubKernels.load(0).count_nonzero(_free_ranges(), _stream())[0] == 0
    del g, out, static


def test_scrub_refused_during_graph_capture() -> None:
    import torch

    from cleanroom.errors import DeviceQuarantined

    s = _scrubber()
    g = torch.cuda.CUDAGraph()
    x = torch.ones(16, device="cuda")
    torch.cuda.synchronize()
    with pytest.raises(DeviceQuarantined), torch.cuda.graph(g):
        _ = x * 2
        s.between_tenant_scrub()
    assert s.quarantined


def test_expandable_segments_scrubbed() -> None:
    import torch

    torch.cuda.memory._set_allocator_settings("expandable_segments:True")
    try:
        s = _scrubber(policy=ScrubPolicy(release_cached=False))
        ts = [torch.full((n * MiB,), 0x3C, dtype=torch.uint8, device="cuda") for n in (30, 50, 70)]
        del ts[1]
        del ts
        report = s.between_tenant_scrub()
        assert report.clean
        from cleanroom.kernels import ScrubKernels

        assert ScrubKernels.load(0).count_nonzero(_free_ranges(), _stream())[0] == 0
    finally:
        torch.cuda.memory._set_allocator_settings("expandable_segments:False")


def test_memory_released_behind_our_back_triggers_driver_sweep() -> None:
    import torch

    s = _scrubber()
    s.between_tenant_scrub()
    t = torch.full((64 * MiB,), 0x5A, dtype=torch.uint8, device="cuda")
    del t
    torch.cuda.empty_cache()  # unscrubbed memory goes back to the driver
    report = s.between_tenant_scrub()
    assert report.clean and any("driver sweep" in n for n in report.notes)
    assert report.bytes_scrubbed >= 64 * MiB


def test_zero_request_on_cuda_tensors() -> None:
    import torch

    s = _scrubber()
    base = torch.full((1000,), 3.0, device="cuda")
    pinned = torch.full((4096,), 9, dtype=torch.uint8).pin_memory()
    report = s.zero_request([base[10:20], pinned])
    assert report.clean and not base.any() and not pinned.any()
    del base, pinned
    # the pinned block is now cached free by torch's host allocator: the scrub must release it, not fail
    after = s.between_tenant_scrub()
    assert after.clean
    stats = torch.cuda.host_memory_stats()
    if "active_bytes.current" in stats:
        assert stats["allocated_bytes.current"] == stats["active_bytes.current"]


def test_release_after_stats_reset_triggers_driver_sweep() -> None:
    import torch

    s = _scrubber()
    s.between_tenant_scrub()  # releases (empty_cache by policy): the scrubber has seen freed > 0
    t = torch.full((32 * MiB,), 0x6B, dtype=torch.uint8, device="cuda")
    del t
    torch.cuda.reset_accumulated_memory_stats()  # freed goes back to 0...
    torch.cuda.empty_cache()  # ...and this release leaves it below what the scrubber saw
    report = s.between_tenant_scrub()
    assert report.clean and any("driver sweep" in n for n in report.notes), report
