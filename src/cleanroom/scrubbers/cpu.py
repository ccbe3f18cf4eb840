"""The CPU fallback scrubber: same interface and same verification as the GPU one.

On a CPU host there is no allocator snapshot to walk: glibc does not tell us which freed chunks hold
what. So the CPU scrub works on what the runtime can name:

- `zero_request` zeroes every storage and buffer of the request in place (numpy fill, a memset) and
  reads it back (numpy count_nonzero); a non-zero byte after zeroing quarantines the scrubber.
- The request's tensors are remembered by weak reference. `between_tenant_scrub` reads back those still
  alive (a stale reference that wrote into a zeroed tensor after the request ended is caught here, before
  the next tenant runs), then trims the heap with `malloc_trim(0)` so freed pages go back to the kernel
  (which zeroes pages before it hands them out again).

What it cannot see: memory freed by code that never handed it to the scrubber (temporaries inside torch
ops, Python `bytes`); that is what DESIGN §4's allocator hardening (`glibc.malloc.perturb`,
`tcache_count=0`) is for. docs/scrub-verification.md says what the CPU leak probe does and does not
observe.
"""

from __future__ import annotations

import ctypes
import platform
import time
import weakref
from typing import TYPE_CHECKING

import numpy as np

from cleanroom.scrubbers.base import QuarantineHook, ScrubberBase, ScrubPolicy, ScrubReport, storage_bytes

if TYPE_CHECKING:
    import torch


def malloc_trim() -> bool | None:
    """Call glibc's `malloc_trim(0)`: True if memory was released, False if not, None if unavailable."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        fn = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return bool(fn(0))


class CpuScrubber(ScrubberBase):
    """`Scrubber` for CPU-only hosts (and for CPU tensors of a request on any host)."""

    def __init__(
        self, *, on_quarantine: QuarantineHook | None = None, policy: ScrubPolicy | None = None, trim_heap: bool = True
    ) -> None:
        super().__init__("cpu", on_quarantine=on_quarantine)
        self.policy = policy or ScrubPolicy()
        self.trim_heap = trim_heap
        # Storages zeroed since the last between-tenant scrub. Weak (torch keeps one Python object per
        # storage while any tensor uses it): the scrubber must not keep request memory alive.
        self._zeroed: list[weakref.ref[torch.UntypedStorage]] = []

    def _after_request(self, storages: list[torch.UntypedStorage]) -> None:
        for s in storages:
            if s.device.type == "cpu":
                self._zeroed.append(weakref.ref(s))

    def between_tenant_scrub(self) -> ScrubReport:
        self._check_usable()
        t0 = time.perf_counter()
        verified = nonzero = count = 0
        # Storages freed since are gone from Python's view (their memory is the heap's again): skipped.
        alive = [s for s in (r() for r in self._zeroed) if s is not None]
        for storage in alive:
            arr = storage_bytes(storage).numpy()
            verified += arr.nbytes
            nonzero += int(np.count_nonzero(arr))
            count += 1
        t1 = time.perf_counter()
        self._zeroed.clear()
        trimmed = malloc_trim() if self.trim_heap else None
        t2 = time.perf_counter()
        notes = ("malloc_trim unavailable (not glibc)",) if self.trim_heap and trimmed is None else ()
        report = ScrubReport(
            device=self.device,
            kind="between_tenant",
            bytes_verified=verified,
            nonzero_bytes=nonzero,
            seconds=t2 - t0,
            ranges=count,
            phase_seconds={"verify": t1 - t0, "trim": t2 - t1},
            notes=notes,
        )
        if nonzero:
            self._fail_closed(report, f"{nonzero} byte(s) of an ended request's memory are non-zero again")
        return report
