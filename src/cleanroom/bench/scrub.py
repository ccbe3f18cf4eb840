"""`cleanroom bench scrub`: the scrub-verification benchmark operators run on their hosts.

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

import argparse
import json
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
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


def plot(result: dict[str, Any], path: Path) -> None:
    """Bandwidth against size, one line per measure and pattern. Needs matplotlib (the `plot` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise RuntimeError("--plot needs matplotlib: pip install 'cleanroom[plot]'") from exc
    fig, ax = plt.subplots(figsize=(8, 5))
    keys = [
        ("scrub_bytes_per_s", "scrub"),
        ("verify_bytes_per_s", "verify"),
        ("baseline_bytes_per_s", result["baseline"]),
        ("copy_bytes_per_s", "d2d copy"),
    ]
    for pattern in PATTERNS:
        rows = sorted((r for r in result["rows"] if r["pattern"] == pattern), key=lambda r: r["size_bytes"])
        if not rows:
            continue
        for key, label in keys:
            if rows[0][key] is None:
                continue
            ax.plot(
                [r["size_bytes"] for r in rows],
                [r[key] / 1e9 for r in rows],
                marker="o",
                linestyle="-" if pattern == "interleaved" else "--",
                label=f"{label} ({pattern})",
            )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bytes")
    ax.set_ylabel("GB/s")
    ax.set_title(f"cleanroom scrub bandwidth on {result['device_name']} ({result['device']})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


_COLUMNS = (
    "size",
    "pattern",
    "ranges",
    "scrub GB/s",
    "verify GB/s",
    "{base} GB/s",
    "scrub/base",
    "copy GB/s",
    "switch ms",
    "leaked bytes",
)


def _table_rows(result: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    base = "memset" if result["baseline"] == "cuda_memset" else "np memset"
    header = [c.format(base=base) for c in _COLUMNS]
    rows = []
    for r in result["rows"]:
        copy = r["copy_bytes_per_s"]
        rows.append(
            [
                human_size(r["size_bytes"]),
                r["pattern"],
                str(r["ranges"]),
                f"{r['scrub_bytes_per_s'] / 1e9:.1f}",
                f"{r['verify_bytes_per_s'] / 1e9:.1f}",
                f"{r['baseline_bytes_per_s'] / 1e9:.1f}",
                f"{r['scrub_vs_baseline']:.2f}",
                "-" if copy is None else f"{copy / 1e9:.1f}",
                f"{r['switch_latency_s'] * 1e3:.2f}",
                str(r["leaked_bytes"]),
            ]
        )
    return header, rows


def _table(result: dict[str, Any]) -> Any:
    from rich.table import Table

    header, rows = _table_rows(result)
    table = Table(title=f"scrub bench: {result['device_name']} ({result['device']})")
    for col in header:
        table.add_column("\n".join(col.rsplit(" ", 1)), justify="right", no_wrap=True)
    for row in rows:
        leaked = row[-1]
        table.add_row(*row[:-1], f"[{'red' if leaked != '0' else 'green'}]{leaked}")
    return table


def plain_table(result: dict[str, Any]) -> str:
    """The result table as plain text, for hosts without `rich` (a stock CUDA image may lack it)."""
    header, rows = _table_rows(result)
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(header)]
    lines = [f"scrub bench: {result['device_name']} ({result['device']})"]
    lines += ["  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)) for line in [header, *rows]]
    return "\n".join(lines)


class _PlainConsole:
    """What `cmd_bench_scrub` uses of rich's Console and Progress, as plain lines on stderr."""

    def print(self, text: Any) -> None:
        print(re.sub(r"\[/?(?:red|green)\]", "", str(text)), file=sys.stderr)


def _run_with_progress(args: argparse.Namespace, sizes: list[int] | None, patterns: list[str], n_rows: int) -> Any:
    try:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    except ImportError:  # bare GPU image: one line per finished row instead of a bar
        done = [0]

        def on_plain_row(row: Row) -> None:
            done[0] += 1
            print(f"[{done[0]}/{n_rows}] {human_size(row.size_bytes)} {row.pattern}", file=sys.stderr, flush=True)

        return run_bench(args.device, sizes, patterns, args.repeats, args.seed, on_plain_row)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task("scrub bench", total=n_rows)

        def on_row(row: Row) -> None:
            progress.update(task, advance=1, description=f"{human_size(row.size_bytes)} {row.pattern}")

        return run_bench(args.device, sizes, patterns, args.repeats, args.seed, on_row)


def cmd_bench_scrub(args: argparse.Namespace) -> int:
    from cleanroom.errors import DeviceQuarantined

    try:
        from rich.console import Console

        err: Any = Console(stderr=True)
        has_rich = True
    except ImportError:
        err, has_rich = _PlainConsole(), False
    try:
        sizes = [parse_size(s) for s in args.sizes.split(",")] if args.sizes else None
        patterns = [p.strip() for p in args.patterns.split(",")]
        n_rows = len(sizes or DEFAULT_SIZES[resolve_device(args.device).split(":")[0]]) * len(patterns)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 2
    try:
        result = _run_with_progress(args, sizes, patterns, n_rows)
    except (ValueError, DeviceQuarantined) as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 1 if isinstance(exc, DeviceQuarantined) else 2
    result["args"] = {k: getattr(args, k) for k in ("device", "sizes", "patterns", "repeats", "seed")}
    if not has_rich:
        print(plain_table(result))
    else:
        Console(width=None if sys.stdout.isatty() else 140).print(_table(result))  # logs: no squeezed columns
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.plot:
        try:
            plot(result, Path(args.plot))
        except RuntimeError as exc:
            err.print(f"[red]error:[/red] {exc}")
            return 2
    if result["leaked_bytes"]:
        err.print(f"[red]LEAK:[/red] tenant B read {result['leaked_bytes']} bytes of tenant A's data")
        return 1
    return 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p: argparse.ArgumentParser = sub.add_parser(
        "scrub", help="measure the between-tenant scrub: leaks, bandwidth vs memset/copy, switch latency"
    )
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument(
        "--sizes",
        default=None,
        help="comma-separated sizes, e.g. 1M,64M,8G (default: 1M,16M,64M on CPU; 64M,1G,8G on GPU)",
    )
    p.add_argument("--patterns", default=",".join(PATTERNS), help="contiguous,interleaved (default: both)")
    p.add_argument("--repeats", type=int, default=5, help="timed repetitions per row; the best is kept")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--json", metavar="F", default=None, help="write the results as JSON to F")
    p.add_argument("--plot", metavar="F.png", default=None, help="plot bandwidth vs size (needs matplotlib)")
    p.set_defaults(func=cmd_bench_scrub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m cleanroom.bench.scrub ...`: the same command without the full CLI (bare GPU images)."""
    parser = argparse.ArgumentParser(prog="python -m cleanroom.bench.scrub")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(["scrub", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `bench` group with its `scrub` command (HELPERS.md plugin contract)."""
    bench = subparsers.add_parser("bench", help="benchmarks")
    sub = bench.add_subparsers(dest="bench_command", metavar="BENCH", required=True)
    add_parser(sub)


if __name__ == "__main__":
    raise SystemExit(main())
