"""The CPU fallback scrubber: zeroing, verification, fail-closed quarantine, and the CPU leak probe."""

from __future__ import annotations

import gc
from typing import Any

import numpy as np
import pytest
import torch

from cleanroom.errors import DeviceQuarantined
from cleanroom.scrubbers.base import (
    Scrubber,
    ScrubGate,
    ScrubPolicy,
    ScrubReport,
    needs_between_tenant_scrub,
)
from cleanroom.scrubbers.cpu import CpuScrubber, malloc_trim
from cleanroom.scrubbers.verify import cpu_leak_probe


def test_is_a_scrubber() -> None:
    s = CpuScrubber()
    assert isinstance(s, Scrubber)
    assert s.device == "cpu" and not s.quarantined


@pytest.mark.parametrize("pattern", ["contiguous", "interleaved"])
def test_leak_probe_finds_nothing_after_scrub(pattern: Any) -> None:
    result = cpu_leak_probe(CpuScrubber(), pattern=pattern)
    assert result.scrubbed
    assert result.leaked_bytes == 0, result
    assert result.tenant_a_bytes > 1 << 20 and result.tenant_b_bytes > 1 << 20
    assert result.scrub_report is not None and result.scrub_report.clean


def test_leak_probe_sees_the_leak_without_scrub() -> None:
    # The control run: without the scrub, B reads A's words back. A probe that cannot see this proves nothing.
    result = cpu_leak_probe(None, pattern="interleaved")
    assert result.leaked_bytes > 4096, result


def test_zero_request_zeroes_whole_storage_grad_and_buffers() -> None:
    base = torch.arange(1, 1001, dtype=torch.float32)
    view = base[10:20]  # the request only names a view; the rest of the storage is its data too
    leaf = torch.ones(64, requires_grad=True)
    (leaf * 3).sum().backward()
    assert leaf.grad is not None
    sparse = torch.sparse_coo_tensor(torch.tensor([[0, 3]]), torch.tensor([5.0, 7.0]), (8,), check_invariants=True)
    buf = bytearray(b"secret" * 100)
    arr = np.full(333, 9, dtype=np.int16)
    part = bytearray(b"x" * 64)
    report = CpuScrubber().zero_request([view, leaf, sparse], [buf, arr, memoryview(part)[8:24]])
    assert not base.any() and not leaf.detach().any() and not leaf.grad.any()
    assert not sparse._values().any() and not sparse._indices().any()
    assert not any(buf) and not arr.any()
    assert part == b"x" * 8 + bytes(16) + b"x" * 40  # only the view that was handed over
    assert report.kind == "request" and report.clean
    assert report.bytes_scrubbed == report.bytes_verified >= 4000 + 256 + len(buf) + arr.nbytes + 16
    assert set(report.phase_seconds) == {"collect", "zero", "verify"}


def test_shared_storage_counted_once() -> None:
    t = torch.ones(256, dtype=torch.uint8)
    report = CpuScrubber().zero_request([t, t[:10], t.view(torch.int32)])
    assert report.ranges == 1 and report.bytes_scrubbed == 256


@pytest.mark.parametrize("bad", [b"plaintext", memoryview(b"ro"), "text"])
def test_unzeroable_buffers_refused(bad: Any) -> None:
    with pytest.raises(TypeError):
        CpuScrubber().zero_request([], [bad])


def test_non_contiguous_view_refused() -> None:
    arr = np.ones((8, 8), dtype=np.uint8)
    with pytest.raises(TypeError):
        CpuScrubber().zero_request([], [arr[:, ::2]])  # numpy exports strided buffers


def test_non_tensor_refused() -> None:
    with pytest.raises(TypeError):
        CpuScrubber().zero_request([np.ones(3)])  # type: ignore[list-item]


class LeavesOneByte(CpuScrubber):
    """A zeroing routine that misses one byte: verification must catch it."""

    def _zero_buffer(self, arr: Any) -> None:
        arr.fill(0)
        if arr.nbytes:
            arr[arr.nbytes // 2] = 0x5A


def test_planted_byte_after_zeroing_quarantines() -> None:
    alerts: list[ScrubReport] = []
    s = LeavesOneByte(on_quarantine=alerts.append)
    t = torch.ones(1000, dtype=torch.uint8)
    with pytest.raises(DeviceQuarantined) as exc:
        s.zero_request([t])
    assert exc.value.status == 503 and exc.value.code == "device_quarantined"
    assert s.quarantined and s.quarantine_reason
    assert len(alerts) == 1 and alerts[0].nonzero_bytes == 1 and alerts[0].device == "cpu"
    # fail closed from now on: nothing more is accepted
    with pytest.raises(DeviceQuarantined):
        s.zero_request([torch.zeros(4)])
    with pytest.raises(DeviceQuarantined):
        s.between_tenant_scrub()


def test_write_after_request_end_caught_before_next_tenant() -> None:
    alerts: list[ScrubReport] = []
    s = CpuScrubber(on_quarantine=alerts.append)
    t = torch.full((4096,), 7, dtype=torch.uint8)
    s.zero_request([t])
    t[4000] = 1  # a stale reference writes into the zeroed request memory
    with pytest.raises(DeviceQuarantined):
        s.between_tenant_scrub()
    assert alerts and alerts[0].kind == "between_tenant" and alerts[0].nonzero_bytes == 1


def test_between_tenant_scrub_verifies_live_and_skips_freed() -> None:
    s = CpuScrubber()
    keep = torch.ones(2048, dtype=torch.uint8)
    gone = torch.ones(1 << 20, dtype=torch.uint8)
    s.zero_request([keep, gone])
    del gone
    gc.collect()
    report = s.between_tenant_scrub()
    assert report.clean and report.bytes_verified == 2048 and report.ranges == 1
    assert s.between_tenant_scrub().bytes_verified == 0  # each request is re-verified once


def test_failing_alert_hook_does_not_mask_quarantine() -> None:
    def boom(_: ScrubReport) -> None:
        raise RuntimeError("pager down")

    with pytest.raises(DeviceQuarantined):
        LeavesOneByte(on_quarantine=boom).zero_request([], [bytearray(b"abc")])


def test_malloc_trim_on_glibc() -> None:
    import platform

    result = malloc_trim()
    if platform.libc_ver()[0] == "glibc":
        assert isinstance(result, bool)
    else:
        assert result is None


def test_policy_and_gate() -> None:
    assert ScrubPolicy().mode == "per_tenant_switch" and ScrubPolicy().empty_cache
    assert not ScrubPolicy("per_request").empty_cache
    assert ScrubPolicy("per_request", release_cached=True).empty_cache
    with pytest.raises(ValueError):
        ScrubPolicy("sometimes")  # type: ignore[arg-type]
    assert not needs_between_tenant_scrub("per_tenant_switch", None, "a")
    assert not needs_between_tenant_scrub("per_tenant_switch", "a", "a")
    assert needs_between_tenant_scrub("per_tenant_switch", "a", "b")
    assert needs_between_tenant_scrub("per_request", "a", "a")
    gate = ScrubGate(ScrubPolicy())
    assert not gate.before("a")
    gate.ran("a")
    assert not gate.before("a") and gate.before("b")
    gate.scrubbed()
    assert gate.last_tenant is None and not gate.before("b")
