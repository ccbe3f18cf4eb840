"""`RequestOpener.end_request`: a verified request scrub is trusted, anything less is zeroed again."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from cleanroom.errors import DeviceQuarantined
from cleanroom.memory.secure_buffer import SecureAllocator
from cleanroom.runtime.models import RequestScope
from cleanroom.runtime.session import RequestOpener, verified_zero
from cleanroom.scrubbers.base import ScrubReport
from cleanroom.scrubbers.cpu import CpuScrubber


def opener(scrubber: Any) -> RequestOpener:
    return RequestOpener(
        registry=None,  # type: ignore[arg-type]
        keyring=None,  # type: ignore[arg-type]
        replay=None,  # type: ignore[arg-type]
        allocator=SecureAllocator(lock=False),
        audit=None,  # type: ignore[arg-type]
        scrubber=scrubber,
    )


def filled_scope(allocator: SecureAllocator) -> tuple[RequestScope, torch.Tensor, Any]:
    scope = RequestScope(allocator)
    tensor = torch.full((64,), 7, dtype=torch.int64)
    scope.track(tensor)
    buffer = scope.new_buffer(100)
    buffer.view()[:] = b"\x42" * 100
    return scope, tensor, buffer


class LyingScrubber:
    """Says it scrubbed without touching anything, and reads back less than it claims to have written."""

    def zero_request(self, tensors: Any = (), buffers: Any = ()) -> ScrubReport:
        return ScrubReport(device="cpu", kind="request", bytes_scrubbed=612, bytes_verified=0, nonzero_bytes=0)


class FailingScrubber:
    def zero_request(self, tensors: Any = (), buffers: Any = ()) -> ScrubReport:
        raise DeviceQuarantined("planted failure")


def test_verified_scrub_leaves_everything_zero_and_released() -> None:
    runner = opener(CpuScrubber(trim_heap=False))
    scope, tensor, buffer = filled_scope(runner.allocator)
    runner.end_request(scope)
    assert not tensor.any()
    assert buffer.closed
    assert scope.tensors == [] and scope.buffers == []


@pytest.mark.parametrize("scrubber", [LyingScrubber(), FailingScrubber()])
def test_unverified_or_failed_scrub_is_zeroed_by_the_session(scrubber: Any) -> None:
    runner = opener(scrubber)
    scope, tensor, buffer = filled_scope(runner.allocator)
    if isinstance(scrubber, FailingScrubber):
        with pytest.raises(DeviceQuarantined):
            runner.end_request(scope)
    else:
        runner.end_request(scope)
    assert not tensor.any()
    assert buffer.closed
    assert scope.tensors == [] and scope.buffers == []


def test_verified_zero_needs_a_clean_request_report_that_read_back_all_it_wrote() -> None:
    assert verified_zero(ScrubReport(device="cpu", kind="request", bytes_scrubbed=8, bytes_verified=8))
    assert not verified_zero(None)
    assert not verified_zero(ScrubReport(device="cpu", kind="request", bytes_scrubbed=8, bytes_verified=4))
    assert not verified_zero(
        ScrubReport(device="cpu", kind="request", bytes_scrubbed=8, bytes_verified=8, nonzero_bytes=1)
    )
    assert not verified_zero(ScrubReport(device="cpu", kind="between_tenant", bytes_scrubbed=8, bytes_verified=8))
