"""How a `cleanroom bench scrub` result is shown: a rich table, a plain-text table, a bandwidth plot.

Rendering only: it reads the result document `scrub_measure.run_bench` returns and measures nothing.
Kept apart because its dependencies are optional (`rich`, `matplotlib`: a stock CUDA image may lack both)
and are imported only when a table or plot is asked for.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from cleanroom.bench.scrub_measure import PATTERNS, human_size


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


def rich_table(result: dict[str, Any]) -> Any:
    """The result table for a terminal (a `rich` Table); the leak column is red unless it is 0."""
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


class PlainConsole:
    """What `cmd_bench_scrub` uses of rich's Console and Progress, as plain lines on stderr."""

    def print(self, text: Any, soft_wrap: bool = True) -> None:
        print(re.sub(r"\[/?(?:red|green)\]", "", str(text)), file=sys.stderr)
