"""Cross-tenant leak probes: does tenant B get to read what tenant A left behind?

Both probes play the attack the scrub defends against (DESIGN §2.2):
1. tenant A allocates many tensors of many sizes, writes marked random words into them, and frees them
   (with a fragmentation pattern, so the allocator's free lists are split and merged);
2. the scrub runs (or not: ``scrubber=None`` is the control run that shows the probe can see a leak);
3. tenant B allocates `torch.empty` blocks covering the memory A freed and searches them for A's words.

A's 64-bit words are ``(marker << 16) | random16``, with a 47-bit random marker drawn per run, so B's
search is exact (a false match has probability 2**-47 per word) and `leaked_bytes` counts 8 bytes per
aligned word of A's found in B's memory. Leaks smaller than one aligned word are not counted; the GPU
scrub's verify kernel, which counts every non-zero byte of freed memory, covers those.

What the CPU probe can observe: the heap chunks glibc hands back to B's allocations of the same sizes
(tcache, fastbins, small and large bins), i.e. whether the request's tensors were zeroed before they
were freed. What it cannot: pages returned to the kernel (mmap'd chunks, trimmed heap; the kernel zeroes
them), memory B's allocations are not given, and copies torch made internally and freed without telling
the scrubber. The GPU probe sees the caching allocator's blocks (B allocates each A size and then one
tensor per remaining inactive block) and reports how much of the freed memory B's tensors covered.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from cleanroom.scrubbers.base import Scrubber, ScrubReport
from cleanroom.scrubbers.snapshot import merge_ranges, parse_snapshot

if TYPE_CHECKING:
    import torch

    from cleanroom.kernels import ScrubKernels

MARKER_SHIFT = 16
MARKER_BITS = 47  # (marker << 16) stays below 2**63: a valid int64 for torch
MARKER_MASK = ((1 << MARKER_BITS) - 1) << MARKER_SHIFT
Pattern = Literal["contiguous", "interleaved"]

DEFAULT_CPU_SIZES = (64, 200, 512, 1000, 4096, 10_000, 65_536, 100_000, 1 << 20, 3 << 20)


@dataclass(frozen=True)
class LeakProbeResult:
    """Outcome of one probe. `leaked_bytes` must be 0 after a scrub."""

    device: str
    scrubbed: bool
    pattern: str
    tenant_a_bytes: int
    tenant_b_bytes: int
    leaked_bytes: int
    nonzero_bytes_seen: int  # every non-zero byte B saw, A's or not (informational on CPU)
    free_bytes_before_b: int | None  # GPU: inactive bytes when B started
    covered_free_bytes: int | None  # GPU: of those, bytes B's tensors landed on
    seconds: float
    scrub_report: ScrubReport | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["scrub_report"] = self.scrub_report.to_dict() if self.scrub_report else None
        return out


def new_marker(rng: np.random.Generator) -> int:
    return int(rng.integers(1, 1 << MARKER_BITS))


def _fill_cpu(t: torch.Tensor, pattern: int, rng: np.random.Generator) -> None:
    arr = t.numpy()
    n_words = arr.nbytes // 8
    if n_words:
        words = arr[: n_words * 8].view(np.uint64)
        # In place: a temporary holding marked words would be a copy nobody scrubs (the probe finds it).
        words[:] = rng.integers(0, 1 << MARKER_SHIFT, n_words, dtype=np.uint64)
        words |= np.uint64(pattern)
    arr[n_words * 8 :] = rng.integers(1, 256, arr.nbytes - n_words * 8, dtype=np.uint8)


def _search_cpu(t: torch.Tensor, pattern: int) -> tuple[int, int]:
    arr = t.numpy()
    n_words = arr.nbytes // 8
    words = arr[: n_words * 8].view(np.uint64)
    hits = int(np.count_nonzero((words & np.uint64(MARKER_MASK)) == np.uint64(pattern)))
    return hits * 8, int(np.count_nonzero(arr))


def cpu_leak_probe(
    scrubber: Scrubber | None,
    *,
    sizes: Sequence[int] = DEFAULT_CPU_SIZES,
    copies: int = 8,
    pattern: Pattern = "interleaved",
    seed: int | None = None,
) -> LeakProbeResult:
    """The probe on torch CPU tensors (numpy views): see the module docstring for what it observes.

    With a scrubber, A's tensors go through `zero_request` before they are freed (what the runtime does
    when a request ends) and `between_tenant_scrub` runs before B allocates.
    """
    import torch

    rng = np.random.default_rng(seed)
    marker = new_marker(rng)
    word = marker << MARKER_SHIFT
    t0 = time.perf_counter()
    a_sizes = [int(s) for s in sizes for _ in range(copies)]
    tensors = [torch.empty(s, dtype=torch.uint8) for s in a_sizes]
    for t in tensors:
        _fill_cpu(t, word, rng)
    if pattern == "interleaved":
        # Free every other tensor early (its request ended), then allocate and fill a second wave of
        # other sizes into the holes, so B's allocations meet split and coalesced chunks.
        early, tensors = tensors[::2], tensors[1::2]
        if scrubber is not None:
            scrubber.zero_request(early)
        del early
        wave = [torch.empty(max(8, s // 3), dtype=torch.uint8) for s in a_sizes[::2]]
        for t in wave:
            _fill_cpu(t, word, rng)
        tensors += wave
    a_bytes = sum(t.numel() for t in tensors)
    if scrubber is not None:
        scrubber.zero_request(tensors)
    del tensors
    gc.collect()
    report = scrubber.between_tenant_scrub() if scrubber is not None else None
    b_tensors = [torch.empty(s, dtype=torch.uint8) for s in a_sizes]
    b_tensors += [torch.empty(max(8, s // 3), dtype=torch.uint8) for s in a_sizes[::2]]
    leaked = nonzero = 0
    for t in b_tensors:
        hit, nz = _search_cpu(t, word)
        leaked += hit
        nonzero += nz
    b_bytes = sum(t.numel() for t in b_tensors)
    return LeakProbeResult(
        device="cpu",
        scrubbed=scrubber is not None,
        pattern=pattern,
        tenant_a_bytes=a_bytes,
        tenant_b_bytes=b_bytes,
        leaked_bytes=leaked,
        nonzero_bytes_seen=nonzero,
        free_bytes_before_b=None,
        covered_free_bytes=None,
        seconds=time.perf_counter() - t0,
        scrub_report=report,
    )


def gpu_sizes(total_bytes: int, rng: np.random.Generator) -> list[int]:
    """A mix of small-pool (<= 1 MiB) and large-pool sizes adding up to about `total_bytes`."""
    sizes: list[int] = []
    left = total_bytes
    big = max(2 << 20, total_bytes // 16)
    while left > 0:
        small = rng.random() < 0.5  # up to 1 MiB: small pool; else large pool
        s = int(rng.integers(1, 2048)) * 512 if small else int(rng.integers(2 << 20, big + 1)) // 512 * 512
        s = min(s, max(512, left // 512 * 512))
        sizes.append(s)
        left -= s
    return sizes


def _overlap(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> int:
    """Bytes in both sets of disjoint sorted ranges."""
    total = i = j = 0
    while i < len(a) and j < len(b):
        lo = max(a[i][0], b[j][0])
        hi = min(a[i][0] + a[i][1], b[j][0] + b[j][1])
        total += max(0, hi - lo)
        if a[i][0] + a[i][1] < b[j][0] + b[j][1]:
            i += 1
        else:
            j += 1
    return total


def _torch_snapshot() -> Any:
    import torch

    try:
        return torch.cuda.memory_snapshot(include_traces=False)  # type: ignore[no-untyped-call]
    except TypeError:
        return torch.cuda.memory_snapshot()  # type: ignore[no-untyped-call]


def _inactive_blocks(device_index: int) -> list[tuple[int, int]]:
    out = []
    for seg in _torch_snapshot():
        if seg.get("device", device_index) != device_index:
            continue
        addr = seg["address"]
        for b in seg["blocks"]:
            if b["state"] == "inactive":
                out.append((addr, b["size"]))
            addr += b["size"]
    return out


def gpu_leak_probe(
    scrubber: Scrubber | None,
    kernels: ScrubKernels,
    *,
    device: str = "cuda:0",
    total_bytes: int = 256 << 20,
    pattern: Pattern = "interleaved",
    seed: int | None = None,
) -> LeakProbeResult:
    """The probe on the CUDA caching allocator. `kernels` searches B's memory (no torch temporaries)."""
    import torch

    dev = torch.device(device)
    rng = np.random.default_rng(seed)
    marker = new_marker(rng)
    word = marker << MARKER_SHIFT
    t0 = time.perf_counter()

    def fill(s: int) -> torch.Tensor:
        t = torch.empty(s, dtype=torch.uint8, device=dev)
        t.view(torch.int64).random_(0, 1 << MARKER_SHIFT).bitwise_or_(word)
        return t

    a_sizes = gpu_sizes(total_bytes, rng)
    tensors = [fill(s) for s in a_sizes]
    if pattern == "interleaved":
        tensors = tensors[1::2]  # the other half is freed with A's data in it
        tensors += [fill(max(512, s // 3 // 512 * 512)) for s in a_sizes[::2]]
    a_bytes = sum(t.numel() for t in tensors)
    torch.cuda.synchronize(dev)
    if scrubber is not None:
        scrubber.zero_request(tensors)
    del tensors
    report = scrubber.between_tenant_scrub() if scrubber is not None else None
    torch.cuda.synchronize(dev)
    summary = parse_snapshot(_torch_snapshot(), device=dev.index or 0)
    free_before = summary.free_ranges
    # B: A's sizes first (B's model asks for similar shapes), then one tensor per remaining free block.
    b_tensors = [torch.empty(s, dtype=torch.uint8, device=dev) for s in a_sizes]
    # A request can split a larger block and leave a remainder, or land in a new segment: a few rounds
    # take what is left; coverage reports how much of A's freed memory B's tensors actually got.
    for _ in range(4):
        blocks = sorted((size for addr, size in _inactive_blocks(dev.index or 0)), reverse=True)
        if not blocks:
            break
        b_tensors += [torch.empty(s, dtype=torch.uint8, device=dev) for s in blocks]
    ranges = merge_ranges((t.data_ptr(), t.numel()) for t in b_tensors if t.numel())
    stream = int(torch.cuda.current_stream(dev).cuda_stream)
    hits = kernels.count_marker_words(ranges, MARKER_MASK, word, stream)
    nonzero, _ = kernels.count_nonzero(ranges, stream)
    b_bytes = sum(length for _, length in ranges)
    covered = _overlap(free_before, ranges)
    del b_tensors
    return LeakProbeResult(
        device=str(dev),
        scrubbed=scrubber is not None,
        pattern=pattern,
        tenant_a_bytes=a_bytes,
        tenant_b_bytes=b_bytes,
        leaked_bytes=hits * 8,
        nonzero_bytes_seen=nonzero,
        free_bytes_before_b=summary.inactive_bytes,
        covered_free_bytes=covered,
        seconds=time.perf_counter() - t0,
        scrub_report=report,
    )


__all__ = [
    "DEFAULT_CPU_SIZES",
    "MARKER_MASK",
    "MARKER_SHIFT",
    "LeakProbeResult",
    "cpu_leak_probe",
    "gpu_leak_probe",
    "gpu_sizes",
    "new_marker",
]
