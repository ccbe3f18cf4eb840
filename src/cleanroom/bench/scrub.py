"""`cleanroom bench scrub`: the scrub-verification benchmark operators run on their hosts.

The command only: argument parsing, progress, exit status. What is measured and how is documented in
`scrub_measure` (`run_bench`); the tables and the plot are `scrub_report`. Every name this module used
to define is still importable from it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cleanroom.bench.scrub_measure import (
    DEFAULT_SIZES,
    GOALS,
    PATTERNS,
    Row,
    human_size,
    parse_size,
    resolve_device,
    run_bench,
)
from cleanroom.bench.scrub_report import PlainConsole, plain_table, plot, rich_table

__all__ = [
    "DEFAULT_SIZES",
    "GOALS",
    "PATTERNS",
    "Row",
    "add_parser",
    "cmd_bench_scrub",
    "human_size",
    "main",
    "parse_size",
    "plain_table",
    "plot",
    "register",
    "resolve_device",
    "run_bench",
]


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


# What every other command prints before a one-line error (`cleanroom serve: ...`); soft_wrap: one line even
# when stderr is not a terminal (rich wraps at 80 columns there).
_PREFIX = "cleanroom bench scrub: "


def cmd_bench_scrub(args: argparse.Namespace) -> int:
    from cleanroom.errors import DeviceQuarantined

    try:
        from rich.console import Console

        err: Any = Console(stderr=True)
        has_rich = True
    except ImportError:
        err, has_rich = PlainConsole(), False
    try:
        sizes = [parse_size(s) for s in args.sizes.split(",")] if args.sizes else None
        patterns = [p.strip() for p in args.patterns.split(",")]
        n_rows = len(sizes or DEFAULT_SIZES[resolve_device(args.device).split(":")[0]]) * len(patterns)
    except ValueError as exc:
        err.print(f"{_PREFIX}{exc}", soft_wrap=True)
        return 2
    try:
        result = _run_with_progress(args, sizes, patterns, n_rows)
    except (ValueError, DeviceQuarantined) as exc:
        err.print(f"{_PREFIX}{exc}", soft_wrap=True)
        return 1 if isinstance(exc, DeviceQuarantined) else 2
    result["args"] = {k: getattr(args, k) for k in ("device", "sizes", "patterns", "repeats", "seed")}
    if not has_rich:
        print(plain_table(result))
    else:
        Console(width=None if sys.stdout.isatty() else 140).print(rich_table(result))  # logs: no squeezed columns
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.plot:
        try:
            plot(result, Path(args.plot))
        except RuntimeError as exc:
            err.print(f"{_PREFIX}{exc}", soft_wrap=True)
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
