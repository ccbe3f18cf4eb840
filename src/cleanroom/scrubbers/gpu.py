"""The between-tenant scrub of a CUDA device (DESIGN §2.2, §4 step 5, §6).

PyTorch's caching allocator hands a freed block to the next allocation as it is (`torch.empty` returns
stale data by design), `empty_cache()` only returns whole free segments to the driver and scrubs nothing,
and memory returned to the driver comes back from `cudaMalloc` in the same process unzeroed. So before
another tenant runs, `GpuScrubber.between_tenant_scrub` does, holding the device lock:

1. preconditions: the native allocator backend (cudaMallocAsync keeps its own invisible pool) and no
   CUDA graph capture in progress;
2. `torch.cuda.synchronize`, then free cuBLAS/cuBLASLt workspaces (they hold GEMM intermediates) so their
   blocks become free blocks, and check CuPy's own pool (it must be empty: see `route_cupy_through_torch`);
3. one tiny allocation, so the allocator processes completed stream events (`active_pending_free`
   blocks whose streams are done become `inactive`);
4. `torch.cuda.memory_snapshot()` over all pools (graph-private pools included), parsed by the pure
   `parse_snapshot`; a block still `active_pending_free` is not free and is never written: the scrub
   fails closed instead;
5. zero every merged `inactive` range with one kernel launch on torch's current stream, then count
   non-zero bytes over the same ranges with the verify kernel; any non-zero byte quarantines the device;
6. if torch returned memory to the driver since the last scrub (an OOM retry, a garbage-collection
   threshold, somebody's `empty_cache`), that memory left unscrubbed: sweep the driver's free memory
   (allocate it all with raw `cudaMalloc`, zero, verify, free);
7. empty the pinned-host cache (`torch._C._host_emptyCache()`, CuPy's pinned pool) and check torch's
   pinned cache holds no free block afterwards;
8. `torch.cuda.empty_cache()` if the policy says so (only after the verified zeroing).

Imports only torch, cupy, numpy (lazily); nothing here imports cryptography, fastapi or pydantic.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from cleanroom.errors import ConfigurationError
from cleanroom.scrubbers.base import QuarantineHook, ScrubberBase, ScrubPolicy, ScrubReport
from cleanroom.scrubbers.gpu_cupy import cupy_importable, cupy_routed_through_torch, route_cupy_through_torch
from cleanroom.scrubbers.snapshot import (
    BLOCK_STATES,
    SnapshotFormatError,
    SnapshotSummary,
    free_ranges_from_snapshot,
    merge_ranges,
    parse_snapshot,
)

if TYPE_CHECKING:
    import torch

    from cleanroom.kernels import ScrubKernels

_SWEEP_MIN_CHUNK = 2 << 20


def released_to_driver_since(baseline: tuple[int, int], now: tuple[int, int]) -> bool:
    """Whether torch may have returned memory to the driver between two readings of its counters
    ``(reserved_bytes.all.allocated, reserved_bytes.all.freed)`` (`torch.cuda.memory_stats`).

    Both are cumulative, but `torch.cuda.reset_accumulated_memory_stats()` (which any library may call)
    sets them back to 0: a release after a reset can leave `freed` below the old reading. So a `freed`
    that moved either way, or an `allocated` that went down (a reset), counts as a release; the cost of
    a false positive is one driver sweep, the cost of a false negative is stale memory handed out.
    """
    return now[1] != baseline[1] or now[0] < baseline[0]


def pinned_cached_free_bytes(stats: dict[str, Any]) -> tuple[int, str | None]:
    """Free pinned-host bytes torch's host allocator still caches, from `torch.cuda.host_memory_stats()`,
    and a note when the stats cannot say.

    The layout changed across torch 2.x. Newer: ``allocated_bytes`` = bytes of every block the allocator
    owns (active + cached), ``active_bytes`` = blocks handed out; both in rounded (power-of-two) sizes.
    Older: ``reserved_bytes`` = owned, ``allocated_bytes`` = handed out.
    """
    owned, active = stats.get("allocated_bytes.current"), stats.get("active_bytes.current")
    if owned is not None and active is not None:
        return max(0, int(owned) - int(active)), None
    owned, active = stats.get("reserved_bytes.current"), stats.get("allocated_bytes.current")
    if owned is not None and active is not None:
        return max(0, int(owned) - int(active)), None
    return 0, "pinned-host cache released, but torch's host stats cannot confirm it is empty"


class GpuScrubber(ScrubberBase):
    """`Scrubber` for one CUDA device. All work on the device must run under `lock` (see module doc).

    `kernels` is injectable (tests pass a faulty one to prove the fail-closed path); by default the CuPy
    kernels of `cleanroom.kernels` are compiled for the device. A bad configuration (no CUDA, another
    allocator backend, no CuPy) fails here, in the constructor, not at the first tenant switch.
    """

    def __init__(
        self,
        device: str = "cuda:0",
        *,
        on_quarantine: QuarantineHook | None = None,
        policy: ScrubPolicy | None = None,
        kernels: ScrubKernels | None = None,
        route_cupy: bool = True,
        sweep_on_release: bool = True,
        lock: threading.RLock | None = None,
    ) -> None:
        import torch

        if not torch.cuda.is_available():
            raise ConfigurationError("GpuScrubber needs a CUDA device; use CpuScrubber on this host")
        dev = torch.device(device)
        if dev.type != "cuda":
            raise ConfigurationError(f"GpuScrubber takes a cuda device, not {device!r}")
        self.index = dev.index if dev.index is not None else torch.cuda.current_device()
        super().__init__(f"cuda:{self.index}", on_quarantine=on_quarantine)
        self.policy = policy or ScrubPolicy()
        self.sweep_on_release = sweep_on_release
        self.lock = lock or threading.RLock()
        self._check_backend()
        if kernels is None:
            from cleanroom.kernels import KernelError, ScrubKernels

            try:
                kernels = ScrubKernels.load(self.index)
            except KernelError as exc:
                raise ConfigurationError(str(exc)) from exc
        self.kernels = kernels
        # Memory returned to the driver before this scrubber existed is of unknown content: the first
        # scrub sweeps the driver's free memory when `sweep_on_release` is set and anything was released.
        self._sweep_pending = False
        if route_cupy and cupy_importable():  # injected kernels on a host without CuPy: nothing to route
            self._sweep_pending = self._drop_cupy_pool()
            route_cupy_through_torch()
        torch.cuda.init()  # type: ignore[no-untyped-call]
        self._release_baseline = (0, 0) if sweep_on_release else self._release_counters()

    @staticmethod
    def _check_backend() -> None:
        import torch

        backend = torch.cuda.get_allocator_backend()
        if backend != "native":
            raise ConfigurationError(
                f"the GPU scrub needs PyTorch's native caching allocator, not {backend!r}: "
                "remove backend:cudaMallocAsync from PYTORCH_CUDA_ALLOC_CONF / PYTORCH_ALLOC_CONF"
            )

    def _release_counters(self) -> tuple[int, int]:
        """(reserved_bytes.all.allocated, reserved_bytes.all.freed) of this device: see
        `released_to_driver_since`."""
        import torch

        stats = torch.cuda.memory_stats(self.index)
        return int(stats.get("reserved_bytes.all.allocated", 0)), int(stats.get("reserved_bytes.all.freed", 0))

    def _stream_ptr(self) -> int:
        import torch

        return int(torch.cuda.current_stream(self.index).cuda_stream)

    def _snapshot(self) -> Any:
        import torch

        try:
            return torch.cuda.memory_snapshot(include_traces=False)  # type: ignore[no-untyped-call]
        except TypeError:  # torch before include_traces
            return torch.cuda.memory_snapshot()  # type: ignore[no-untyped-call]

    def between_tenant_scrub(self) -> ScrubReport:
        from cleanroom.errors import DeviceQuarantined

        self._check_usable()
        with self.lock:
            try:
                import torch

                self._check_backend()
                # Inside the try: entering the device context is a CUDA call too, and on a device that hit
                # a sticky error (an illegal address in the model's kernels, an Xid) it raises.
                with torch.cuda.device(self.index):
                    return self._scrub_locked()
            except DeviceQuarantined:
                raise
            except Exception as exc:  # a scrub that did not finish leaves the device in an unknown state
                self._fail_closed(
                    ScrubReport(self.device, "between_tenant"), f"scrub raised {type(exc).__name__}: {exc}"
                )

    def zero_request(self, tensors: Iterable[torch.Tensor] = (), buffers: Iterable[Any] = ()) -> ScrubReport:
        """`ScrubberBase.zero_request`, failing closed on a CUDA error: a device whose zeroing or read-back
        raised holds the request's plaintext in an unknown state (503 ``device_quarantined``, not a 500).
        A `TypeError` (a tensor layout or buffer that cannot be zeroed) is the caller's and propagates."""
        from cleanroom.errors import DeviceQuarantined

        self._check_usable()
        try:
            return super().zero_request(tensors, buffers)
        except (DeviceQuarantined, TypeError):
            raise
        except Exception as exc:
            self._fail_closed(
                ScrubReport(self.device, "request"), f"request zeroing raised {type(exc).__name__}: {exc}"
            )

    def _scrub_locked(self) -> ScrubReport:
        import torch

        phases: dict[str, float] = {}
        notes: list[str] = []
        t0 = time.perf_counter()
        if torch.cuda.is_current_stream_capturing():
            self._fail_closed(
                ScrubReport(self.device, "between_tenant"), "between-tenant scrub requested during CUDA graph capture"
            )
        torch.cuda.synchronize(self.index)
        if hasattr(torch._C, "_cuda_clearCublasWorkspaces"):
            torch._C._cuda_clearCublasWorkspaces()
        self._check_cupy_pool()
        drain = torch.empty(1, dtype=torch.uint8, device=self.device)  # processes finished events
        del drain
        t1 = time.perf_counter()
        summary = parse_snapshot(self._snapshot(), device=self.index)
        phases["snapshot"] = time.perf_counter() - t1
        ranges = np.asarray(summary.free_ranges, dtype=np.uint64).reshape(-1, 2)
        if summary.pending_free_bytes:
            self._fail_closed(
                ScrubReport(
                    self.device,
                    "between_tenant",
                    ranges=len(summary.free_ranges),
                    pending_free_bytes=summary.pending_free_bytes,
                ),
                f"{summary.pending_free_bytes} bytes still active_pending_free after synchronize",
            )
        t2 = time.perf_counter()
        stream = torch.cuda.current_stream(self.index)
        events = [torch.cuda.Event(enable_timing=True) for _ in range(3)]  # type: ignore[no-untyped-call]
        events[0].record(stream)
        zeroed = self.kernels.zero(ranges, int(stream.cuda_stream))
        events[1].record(stream)
        nonzero, first_bad = self.kernels.count_nonzero(ranges, int(stream.cuda_stream))  # waits
        events[2].record(stream)
        events[2].synchronize()
        phases["zero_and_verify"] = time.perf_counter() - t2
        phases["zero_gpu"] = events[0].elapsed_time(events[1]) / 1e3
        phases["verify_gpu"] = events[1].elapsed_time(events[2]) / 1e3
        verified = zeroed
        if (
            nonzero == 0
            and self.sweep_on_release
            and (self._sweep_pending or released_to_driver_since(self._release_baseline, self._release_counters()))
        ):
            t3 = time.perf_counter()
            swept, sweep_bad = self._sweep_driver_memory(int(stream.cuda_stream))
            phases["driver_sweep"] = time.perf_counter() - t3
            notes.append(f"driver sweep: memory went back to the driver unscrubbed; {swept} bytes zeroed")
            zeroed += swept
            verified += swept
            nonzero += sweep_bad
        report = ScrubReport(
            self.device,
            "between_tenant",
            bytes_scrubbed=zeroed,
            bytes_verified=verified,
            nonzero_bytes=nonzero,
            seconds=time.perf_counter() - t0,
            ranges=len(summary.free_ranges),
            first_nonzero_address=first_bad,
            phase_seconds=dict(phases),
            notes=tuple(notes),
        )
        if nonzero:
            self._fail_closed(report, f"verify found {nonzero} non-zero byte(s) in freed device memory")
        self._sweep_pending = False
        t4 = time.perf_counter()
        pinned_left, pinned_note = self._release_pinned_cache()
        phases["pinned"] = time.perf_counter() - t4
        if pinned_note:
            notes.append(pinned_note)
        if pinned_left:
            self._fail_closed(report, f"{pinned_left} bytes of free pinned-host blocks stayed cached")
        released = 0
        if self.policy.empty_cache:
            t5 = time.perf_counter()
            before = torch.cuda.memory_reserved(self.index)
            torch.cuda.empty_cache()  # only zeroed, verified blocks are free now
            released = before - torch.cuda.memory_reserved(self.index)
            phases["empty_cache"] = time.perf_counter() - t5
        self._release_baseline = self._release_counters()
        return dataclasses.replace(
            report,
            seconds=time.perf_counter() - t0,
            released_bytes=released,
            phase_seconds=phases,
            notes=tuple(notes),
        )

    def _drop_cupy_pool(self) -> bool:
        """Release what CuPy's own pool cached before routing; True if anything went to the driver."""
        import cupy

        with cupy.cuda.Device(self.index):
            pool = cupy.get_default_memory_pool()
            stale = int(pool.free_bytes())
            pool.free_all_blocks()
        return stale > 0

    def _check_cupy_pool(self) -> None:
        """CuPy's own device pool must hold no free chunk: those cannot be zeroed, only leaked."""
        try:
            import cupy
        except ImportError:
            return
        with cupy.cuda.Device(self.index):
            pool = cupy.get_default_memory_pool()
            stale = int(pool.free_bytes())
        if stale:
            self._fail_closed(
                ScrubReport(self.device, "between_tenant"),
                f"CuPy's own memory pool holds {stale} freed bytes that cannot be scrubbed; "
                "route CuPy through torch (GpuScrubber(route_cupy=True)) before any CuPy allocation",
            )

    def _release_pinned_cache(self) -> tuple[int, str | None]:
        """Release cached free pinned-host blocks; return the free bytes still cached (0 when clean) and a
        note when torch's host stats cannot say.

        Neither torch nor CuPy lets us enumerate free pinned blocks, so they cannot be zeroed in place:
        they are returned to the driver (cudaFreeHost unpins and unmaps them; the kernel zeroes pages
        before it reuses them). Request plaintext should not pass through this cache at all: it lives in
        the runtime's SecureBuffers (cudaHostRegister'ed) and is zeroed by `zero_request`.
        """
        import torch

        if hasattr(torch._C, "_host_emptyCache"):
            torch._C._host_emptyCache()
        try:
            import cupy

            cupy.get_default_pinned_memory_pool().free_all_blocks()
        except ImportError:
            pass
        try:
            stats = torch.cuda.host_memory_stats()
        except (AttributeError, RuntimeError):
            stats = {}
        return pinned_cached_free_bytes(stats)

    def _sweep_driver_memory(self, stream: int) -> tuple[int, int]:
        """Zero all device memory the driver would hand to `cudaMalloc` now: (bytes zeroed, non-zero)."""
        import cupy

        chunks: list[Any] = []
        size = 1 << 30
        with cupy.cuda.Device(self.index):
            try:
                while size >= _SWEEP_MIN_CHUNK:
                    try:
                        chunks.append(cupy.cuda.Memory(size))  # raw cudaMalloc: outside every pool
                    except (cupy.cuda.runtime.CUDARuntimeError, cupy.cuda.memory.OutOfMemoryError):
                        size //= 2
                ranges = [(int(c.ptr), int(c.size)) for c in chunks]
                swept = self.kernels.zero(ranges, stream)
                nonzero, _ = self.kernels.count_nonzero(ranges, stream)
            finally:
                # cudaFree each chunk, also when a launch raised: the traceback the quarantine keeps
                # (DeviceQuarantined.__context__) must not pin every byte of the device.
                chunks.clear()
        return swept, nonzero


__all__ = [
    "BLOCK_STATES",
    "GpuScrubber",
    "SnapshotFormatError",
    "SnapshotSummary",
    "cupy_routed_through_torch",
    "free_ranges_from_snapshot",
    "merge_ranges",
    "parse_snapshot",
    "route_cupy_through_torch",
]
