"""What every scrubber promises, the report it returns, and when the runtime must call it.

Two backends implement `Scrubber`: `scrubbers.gpu.GpuScrubber` (CUDA caching allocator, cuBLAS
workspaces, CuPy, pinned-host cache) and `scrubbers.cpu.CpuScrubber` (the CPU fallback). The runtime uses
them in two places (DESIGN §4 step 5):

1. `zero_request(tensors, buffers)` when a request ends: every tensor and buffer that held the request's
   data is zeroed in place and read back; a non-zero byte after zeroing is a fail-closed event.
2. `between_tenant_scrub()` before another tenant's work runs on the device (`ScrubGate` decides when,
   from the `ScrubPolicy`): every freed byte the next tenant could be handed is zeroed and verified.

Fail closed: when verification finds a non-zero byte, the scrubber sets `quarantined`, calls the
`on_quarantine` alert hook with the report, and raises `DeviceQuarantined` (503,
``device_quarantined``). A quarantined scrubber refuses all further work; the scheduler stops placing
requests on its device. Only a process restart clears it: the memory state is unknown.

Imports only numpy and (lazily) torch, so it runs on a bare GPU image (DESIGN §3).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from cleanroom.errors import DeviceQuarantined

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

ScrubMode = Literal["per_request", "per_tenant_switch"]
SCRUB_MODES: tuple[ScrubMode, ...] = ("per_request", "per_tenant_switch")


@dataclass(frozen=True)
class ScrubReport:
    """What one scrub did. Sizes in bytes, times in seconds; never any tenant data.

    `bytes_scrubbed` were written with zeros, `bytes_verified` were read back, and `nonzero_bytes` of
    those were not zero (anything but 0 means the scrub failed and the device is quarantined).
    `ranges` counts the merged address ranges (GPU) or distinct storages and buffers (request scrub).
    """

    device: str
    kind: Literal["request", "between_tenant"]
    bytes_scrubbed: int = 0
    bytes_verified: int = 0
    nonzero_bytes: int = 0
    seconds: float = 0.0
    ranges: int = 0
    first_nonzero_address: int | None = None
    pending_free_bytes: int = 0
    released_bytes: int = 0
    phase_seconds: Mapping[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return self.nonzero_bytes == 0

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["phase_seconds"] = dict(self.phase_seconds)
        out["notes"] = list(self.notes)
        return out


QuarantineHook = Callable[[ScrubReport], None]


@runtime_checkable
class Scrubber(Protocol):
    """The interface both backends implement (see the module docstring for the contract)."""

    device: str  # "cpu" or "cuda:N"

    @property
    def quarantined(self) -> bool: ...

    def zero_request(self, tensors: Iterable[torch.Tensor] = (), buffers: Iterable[Any] = ()) -> ScrubReport:
        """Zero the request's tensors (whole storages, `.grad` too) and writable buffers, then verify."""
        ...

    def between_tenant_scrub(self) -> ScrubReport:
        """Zero and verify everything the next tenant could be handed; raises `DeviceQuarantined`."""
        ...


@dataclass(frozen=True)
class ScrubPolicy:
    """When the between-tenant scrub runs, and whether cached memory is released after it.

    `mode` ``per_tenant_switch`` scrubs only when the next request belongs to another tenant than the
    last one on the device; ``per_request`` scrubs after every request (stronger: a tenant's own later
    requests never see its earlier leftovers, which matters when one tenant id fronts several users).
    `release_cached` runs `torch.cuda.empty_cache()` after the verified scrub; it returns whole free
    segments to the driver (the next allocation pays for cudaMalloc again). `None` picks the default
    for the mode: release on a tenant switch, keep the cache when scrubbing after every request.
    """

    mode: ScrubMode = "per_tenant_switch"
    release_cached: bool | None = None

    def __post_init__(self) -> None:
        if self.mode not in SCRUB_MODES:
            raise ValueError(f"scrub mode must be one of {SCRUB_MODES}, not {self.mode!r}")

    @property
    def empty_cache(self) -> bool:
        if self.release_cached is not None:
            return self.release_cached
        return self.mode == "per_tenant_switch"


def needs_between_tenant_scrub(mode: ScrubMode, last_tenant: str | None, next_tenant: str) -> bool:
    """Whether the device must be scrubbed before `next_tenant` runs after `last_tenant`.

    `last_tenant` is None when no tenant has run on the device since it was last scrubbed.
    """
    if mode not in SCRUB_MODES:
        raise ValueError(f"scrub mode must be one of {SCRUB_MODES}, not {mode!r}")
    if last_tenant is None:
        return False
    return mode == "per_request" or last_tenant != next_tenant


class ScrubGate:
    """The scheduler's per-device bookkeeping for `ScrubPolicy` (not thread-safe: hold the device lock).

    Usage per request: ``if gate.before(tenant): scrubber.between_tenant_scrub(); gate.scrubbed()`` then
    run the request, then ``gate.ran(tenant)``.
    """

    def __init__(self, policy: ScrubPolicy) -> None:
        self.policy = policy
        self._last: str | None = None

    @property
    def last_tenant(self) -> str | None:
        return self._last

    def before(self, tenant: str) -> bool:
        return needs_between_tenant_scrub(self.policy.mode, self._last, tenant)

    def scrubbed(self) -> None:
        self._last = None

    def ran(self, tenant: str) -> None:
        self._last = tenant


class ScrubberBase:
    """Quarantine state and the request-zeroing path shared by both backends."""

    def __init__(self, device: str, *, on_quarantine: QuarantineHook | None = None) -> None:
        self.device = device
        self._on_quarantine = on_quarantine
        self._quarantined = False
        self._quarantine_reason: str | None = None

    @property
    def quarantined(self) -> bool:
        return self._quarantined

    @property
    def quarantine_reason(self) -> str | None:
        return self._quarantine_reason

    def _check_usable(self) -> None:
        if self._quarantined:
            raise DeviceQuarantined(
                f"device {self.device} is quarantined ({self._quarantine_reason}); restart the process"
            )

    def _fail_closed(self, report: ScrubReport, reason: str) -> NoReturn:
        """Quarantine the device, raise the alert, and refuse: the next tenant must not run here."""
        self._quarantined = True
        self._quarantine_reason = reason
        log.critical("scrub failed on %s, device quarantined: %s", self.device, reason)
        if self._on_quarantine is not None:
            try:
                self._on_quarantine(report)
            except Exception:  # the alert path must not turn a quarantine into a different error
                log.exception("quarantine alert hook failed")
        raise DeviceQuarantined(f"device {self.device} is quarantined: {reason}")

    # --- request zeroing --------------------------------------------------------------------------
    def zero_request(self, tensors: Iterable[torch.Tensor] = (), buffers: Iterable[Any] = ()) -> ScrubReport:
        self._check_usable()
        t0 = time.perf_counter()
        storages = request_storages(tensors)
        # Byte views made up front, so the zero and verify phases time only the memory traffic: numpy
        # views of CPU storages and buffers, uint8 tensors over device storages.
        host: list[npt.NDArray[np.uint8]] = []
        device: list[torch.Tensor] = []
        for s in storages:
            view = storage_bytes(s)
            if view.device.type == "cpu":
                host.append(view.numpy())
            else:
                device.append(view)
        host += [buffer_bytes(b) for b in buffers]
        t1 = time.perf_counter()
        for arr in host:
            self._zero_buffer(arr)
        for view in device:
            view.zero_()  # on the current stream; the count below waits for it
        t2 = time.perf_counter()
        nonzero = sum(int(np.count_nonzero(arr)) for arr in host)
        if device:
            nonzero += sum(int(c) for c in [v.count_nonzero() for v in device])
        t3 = time.perf_counter()
        zeroed = sum(a.nbytes for a in host) + sum(v.numel() for v in device)
        report = ScrubReport(
            device=self.device,
            kind="request",
            bytes_scrubbed=zeroed,
            bytes_verified=zeroed,
            nonzero_bytes=nonzero,
            seconds=t3 - t0,
            ranges=len(host) + len(device),
            phase_seconds={"collect": t1 - t0, "zero": t2 - t1, "verify": t3 - t2},
        )
        self._after_request(storages)
        if nonzero:
            self._fail_closed(report, f"{nonzero} byte(s) of a request's memory still non-zero after zeroing")
        return report

    def _after_request(self, storages: list[torch.UntypedStorage]) -> None:
        """Hook for backends that keep track of what a request touched."""

    def _zero_buffer(self, arr: npt.NDArray[np.uint8]) -> None:
        # numpy's fill is a memset: the same code path as the baseline the bench measures against.
        arr.fill(0)


def storage_bytes(storage: torch.UntypedStorage) -> torch.Tensor:
    """A flat uint8 tensor over the whole storage (not only the part a view covers)."""
    import torch

    return torch.empty(0, dtype=torch.uint8, device=storage.device).set_(storage)


def request_storages(tensors: Iterable[torch.Tensor]) -> list[torch.UntypedStorage]:
    """The distinct storages behind `tensors`, their `.grad`s and sparse components.

    Whole storages, because a view's base holds the same request's data outside the view. Layouts
    without a plain storage (nested, quantized, meta with no data aside) raise `TypeError`: silently
    skipping one would leave plaintext behind.
    """
    import torch

    seen: set[tuple[str, int]] = set()
    out: list[torch.UntypedStorage] = []
    stack: list[torch.Tensor | None] = list(tensors)
    while stack:
        t = stack.pop()
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"zero_request takes tensors, got {type(t).__name__}")
        if t.is_leaf or t.retains_grad:  # .grad of a non-leaf warns and is always None
            stack.append(t.grad)
        if t.device.type == "meta":
            continue
        if t.layout == torch.sparse_coo:
            stack.extend([t._values(), t._indices()])
            continue
        if t.layout in (torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc):
            stack.extend([t.values(), *_compressed_indices(t)])
            continue
        if t.layout != torch.strided or t.is_nested or t.is_quantized:
            raise TypeError(f"cannot zero a tensor with layout {t.layout} (nested/quantized unsupported)")
        storage = t.untyped_storage()
        if storage.nbytes() == 0:
            continue
        key = (str(storage.device), storage.data_ptr())
        if key not in seen:
            seen.add(key)
            out.append(storage)
    return out


def _compressed_indices(t: torch.Tensor) -> list[torch.Tensor]:
    import torch

    if t.layout in (torch.sparse_csr, torch.sparse_bsr):
        return [t.crow_indices(), t.col_indices()]
    return [t.ccol_indices(), t.row_indices()]


def buffer_bytes(buf: Any) -> npt.NDArray[np.uint8]:
    """A writable uint8 numpy view of a buffer-protocol object, without a copy.

    `bytes` and other read-only buffers are refused: they cannot be zeroed, which is why plaintext must
    never be decrypted into them (DESIGN §2.3).
    """
    try:
        mv = memoryview(buf)
    except TypeError as exc:
        raise TypeError(f"zero_request takes buffer-protocol objects, got {type(buf).__name__}") from exc
    if mv.readonly:
        raise TypeError(f"cannot zero a read-only buffer ({type(buf).__name__}); decrypt into a bytearray")
    if not mv.c_contiguous:
        raise TypeError("cannot zero a non-contiguous buffer view; pass the underlying buffer")
    return np.frombuffer(mv.cast("B") if mv.nbytes else mv, dtype=np.uint8)


__all__ = [
    "SCRUB_MODES",
    "QuarantineHook",
    "ScrubGate",
    "ScrubMode",
    "ScrubPolicy",
    "ScrubReport",
    "Scrubber",
    "ScrubberBase",
    "buffer_bytes",
    "needs_between_tenant_scrub",
    "request_storages",
    "storage_bytes",
]
