"""What `cleanroom bench scrub` measures: leaks, scrub/verify bandwidth against a baseline, switch latency.

Only measurement lives here (no printing, no plotting, no argument parsing), so the numbers come from one
place whether the CLI, `benchmarks/gpu/check.sh` or a test asks for them; `scrub_report` renders them
and `scrub` is the command.

For each size and fragmentation pattern, in one process and one run:
- tenant A fills tensors, they are freed, the scrub runs, tenant B searches what it can allocate for A's
  bytes (`scrubbers.verify` probes) -> ``leaked_bytes`` (must be 0);
- scrub (zero) and verify bandwidth: GPU: the kernels alone, timed with CUDA events over the free ranges
  of the caching allocator; CPU: the zero and verify phases of `zero_request` over A's tensors;
- a baseline of the same size, measured in the same run: GPU a plain `cudaMemsetAsync` and a
  device-to-device copy; CPU a NumPy memset (``ndarray.fill(0)``);
- the between-tenant switch latency: the whole `between_tenant_scrub` after A's work (GPU: without the
  optional `empty_cache`, which is timed apart as ``empty_cache_s``).

Each timing is the best of ``--repeats`` runs (the median is reported too). Bandwidths are bytes of the
buffer per second: a copy of N bytes counts N (it moves 2N), reported as ``copy_bytes_per_s``.
The summary keys come from the largest size with the ``interleaved`` pattern (the realistic one).
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

PATTERNS = ("contiguous", "interleaved")
DEFAULT_SIZES = {"cpu": ("1M", "16M", "64M"), "cuda": ("64M", "1G", "8G")}
GOALS = {"leaked_bytes": 0, "scrub_vs_baseline": 0.8, "verify_vs_copy": 0.8, "switch_latency_s_8GiB": 0.005}
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_size(text: str) -> int:
    """``"64M"`` -> 67108864 (binary units K, M, G; an optional trailing ``B`` or ``iB``)."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not m or int(m.group(1)) <= 0:
        raise ValueError(f"not a size: {text!r} (examples: 4096, 64K, 16M, 8G)")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def human_size(n: int) -> str:
    for unit in ("G", "M", "K"):
        if n >= _UNITS[unit] and n % _UNITS[unit] == 0:
            return f"{n // _UNITS[unit]}{unit}"
    return str(n)


@dataclass
class Row:
    size_bytes: int
    pattern: str
    ranges: int
    scrub_bytes_per_s: float
    verify_bytes_per_s: float
    baseline_bytes_per_s: float
    copy_bytes_per_s: float | None
    switch_latency_s: float
    switch_latency_median_s: float
    leaked_bytes: int
    scrub_vs_baseline: float
    verify_vs_copy: float | None
    empty_cache_s: float | None = None


def _best(samples: Sequence[float]) -> tuple[float, float]:
    return min(samples), statistics.median(samples)


# --- CPU --------------------------------------------------------------------------------------------
def _piece_sizes(size: int, pattern: str, rng: np.random.Generator) -> list[int]:
    if pattern == "contiguous":
        return [size]
    pieces, left = [], size
    while left > 0:
        s = min(left, int(rng.integers(4 << 10, 256 << 10)) // 64 * 64 or 64)
        pieces.append(s)
        left -= s
    return pieces


def _cpu_row(size: int, pattern: str, repeats: int, rng: np.random.Generator) -> Row:
    import torch

    from cleanroom.scrubbers.cpu import CpuScrubber
    from cleanroom.scrubbers.verify import cpu_leak_probe

    scrubber = CpuScrubber()
    pieces = _piece_sizes(size, pattern, rng)
    tensors = [torch.empty(s, dtype=torch.uint8) for s in pieces]
    baseline = np.empty(size, dtype=np.uint8)
    zero_t, verify_t, base_t, switch_t = [], [], [], []
    for _ in range(repeats):
        for t in tensors:
            t.numpy().fill(0xA5)
        report = scrubber.zero_request(tensors)
        zero_t.append(report.phase_seconds["zero"])
        verify_t.append(report.phase_seconds["verify"])
        baseline.fill(0xA5)  # same state as A's tensors: resident, just written
        t0 = time.perf_counter()
        baseline.fill(0)
        base_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        scrubber.between_tenant_scrub()
        switch_t.append(time.perf_counter() - t0)
    del tensors, baseline
    leak = cpu_leak_probe(scrubber, sizes=pieces, copies=1, pattern=pattern)  # type: ignore[arg-type]
    scrub_bw, verify_bw, base_bw = size / min(zero_t), size / min(verify_t), size / min(base_t)
    best_switch, median_switch = _best(switch_t)
    return Row(
        size,
        pattern,
        len(pieces),
        scrub_bw,
        verify_bw,
        base_bw,
        None,
        best_switch,
        median_switch,
        leak.leaked_bytes,
        scrub_bw / base_bw,
        None,
    )


# --- GPU --------------------------------------------------------------------------------------------
class _GpuBench:
    def __init__(self, device: str) -> None:
        import torch

        from cleanroom.scrubbers.base import ScrubPolicy
        from cleanroom.scrubbers.gpu import GpuScrubber

        self.torch = torch
        self.dev = torch.device(device)
        self.scrubber = GpuScrubber(device, policy=ScrubPolicy(release_cached=False))
        self.kernels = self.scrubber.kernels

    def _time(self, fn: Callable[[], Any]) -> float:
        torch = self.torch
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end)) / 1e3

    def _tenant_a(self, size: int, pattern: str, rng: np.random.Generator) -> None:
        from cleanroom.scrubbers.verify import gpu_sizes

        torch = self.torch
        sizes = [size] if pattern == "contiguous" else gpu_sizes(size, rng)
        keep = []
        for i, s in enumerate(sizes):
            t = torch.empty(s, dtype=torch.uint8, device=self.dev)
            t.fill_(0xA5)
            if pattern == "interleaved" and i % 2:
                keep.append(t)  # freed later than its neighbours: fragments the free lists
        del t
        keep.clear()
        torch.cuda.synchronize(self.dev)

    def _baselines(self, size: int, repeats: int, stream: int) -> tuple[list[float], list[float]]:
        """cudaMemsetAsync and a device-to-device copy of `size` bytes, same stream, same run."""
        import cupy

        torch = self.torch
        src = torch.empty(size, dtype=torch.uint8, device=self.dev).fill_(1)
        dst = torch.empty_like(src)
        memset_t = [
            self._time(lambda: cupy.cuda.runtime.memsetAsync(dst.data_ptr(), 0, size, stream)) for _ in range(repeats)
        ]
        copy_t = [self._time(lambda: dst.copy_(src)) for _ in range(repeats)]
        return memset_t, copy_t

    def row(self, size: int, pattern: str, repeats: int, rng: np.random.Generator) -> Row:
        from cleanroom.scrubbers.base import ScrubPolicy
        from cleanroom.scrubbers.snapshot import free_ranges_from_snapshot
        from cleanroom.scrubbers.verify import gpu_leak_probe

        torch = self.torch
        switch_t = []
        for _ in range(repeats):
            self._tenant_a(size, pattern, rng)
            t0 = time.perf_counter()
            self.scrubber.between_tenant_scrub()
            switch_t.append(time.perf_counter() - t0)
        snap = torch.cuda.memory_snapshot()
        ranges = free_ranges_from_snapshot(snap, device=self.dev.index or 0)
        stream = int(torch.cuda.current_stream(self.dev).cuda_stream)
        scrubbed = sum(length for _, length in ranges)
        zero_t = [self._time(lambda: self.kernels.zero(ranges, stream)) for _ in range(repeats)]
        verify_t = [self._time(lambda: self.kernels.count_nonzero(ranges, stream)) for _ in range(repeats)]
        memset_t, copy_t = self._baselines(size, repeats, stream)
        leak = gpu_leak_probe(self.scrubber, self.kernels, device=str(self.dev), total_bytes=size, pattern=pattern)  # type: ignore[arg-type]
        # One scrub with the release policy, for what `empty_cache` adds on a tenant switch. Released
        # through the scrubber (not behind its back), so the next scrub does not need a driver sweep.
        policy = self.scrubber.policy
        self.scrubber.policy = ScrubPolicy(release_cached=True)
        try:
            empty_cache_s = self.scrubber.between_tenant_scrub().phase_seconds.get("empty_cache")
        finally:
            self.scrubber.policy = policy
        scrub_bw, verify_bw = scrubbed / min(zero_t), scrubbed / min(verify_t)
        memset_bw, copy_bw = size / min(memset_t), size / min(copy_t)
        best_switch, median_switch = _best(switch_t)
        return Row(
            size,
            pattern,
            len(ranges),
            scrub_bw,
            verify_bw,
            memset_bw,
            copy_bw,
            best_switch,
            median_switch,
            leak.leaked_bytes,
            scrub_bw / memset_bw,
            verify_bw / copy_bw,
            empty_cache_s,
        )


def resolve_device(device: str) -> str:
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, not {device!r}")
    if device == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda:0" if device in ("auto", "cuda") else device
    if device == "auto":
        return "cpu"
    raise ValueError("--device cuda asked for, but torch sees no CUDA device")


def run_bench(
    device: str = "auto",
    sizes: Sequence[int] | None = None,
    patterns: Sequence[str] = PATTERNS,
    repeats: int = 5,
    seed: int | None = None,
    on_row: Callable[[Row], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark and return the result document (see the module docstring for its keys)."""
    import torch

    dev = resolve_device(device)
    kind = "cpu" if dev == "cpu" else "cuda"
    sizes = list(sizes or [parse_size(s) for s in DEFAULT_SIZES[kind]])
    for p in patterns:
        if p not in PATTERNS:
            raise ValueError(f"pattern must be one of {PATTERNS}, not {p!r}")
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    rng = np.random.default_rng(seed)
    gpu = _GpuBench(dev) if kind == "cuda" else None
    rows: list[Row] = []
    for size in sizes:
        for pattern in patterns:
            row = gpu.row(size, pattern, repeats, rng) if gpu else _cpu_row(size, pattern, repeats, rng)
            rows.append(row)
            if on_row:
                on_row(row)
    largest = max(r.size_bytes for r in rows)
    top = [r for r in rows if r.size_bytes == largest]
    head = next((r for r in top if r.pattern == "interleaved"), top[0])
    name = torch.cuda.get_device_name(dev) if kind == "cuda" else _cpu_name()
    return {
        "device": dev,
        "device_name": name,
        "leaked_bytes": sum(r.leaked_bytes for r in rows),
        "scrub_bytes_per_s": head.scrub_bytes_per_s,
        "verify_bytes_per_s": head.verify_bytes_per_s,
        "baseline_bytes_per_s": head.baseline_bytes_per_s,
        "baseline": "numpy_memset" if kind == "cpu" else "cuda_memset",
        "copy_bytes_per_s": head.copy_bytes_per_s,
        "switch_latency_s": head.switch_latency_s,
        "scrub_vs_baseline": head.scrub_vs_baseline,
        "verify_vs_copy": head.verify_vs_copy,
        "summary_row": {"size_bytes": head.size_bytes, "pattern": head.pattern},
        "goals": GOALS,
        "repeats": repeats,
        "rows": [asdict(r) for r in rows],
        "torch_version": str(torch.__version__),
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _cpu_name() -> str:
    from cleanroom.runtime.device import describe_cpu

    return describe_cpu().model or "cpu"
