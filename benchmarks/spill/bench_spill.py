"""SpillFile write+read throughput against a plain file and raw AES-GCM, all in one run.

    python benchmarks/spill/bench_spill.py [--size-mib 64] [--dir DIR] [--repeats 5] [--json out.json]

For each segment size (64 KiB, 256 KiB, 1 MiB) and the same bytes, written in 1 MiB chunks and read back
into one reusable 1 MiB buffer:
- spill: SpillFile(dir).write(...) ; seek(0) ; readinto(...) ; close
- plain: an unencrypted unlinked file in the same directory, os.write then os.preadv (the disk baseline)
- raw AES-GCM: encrypt_into + decrypt_into of each segment in memory, no file (the crypto ceiling)
Reported: median seconds over `--repeats` interleaved runs, MB/s (10^6), and the ratios
spill/plain and spill/raw-AES-GCM (1.0 = no overhead). The page cache usually absorbs 64 MiB, so "plain"
measures memory-speed file I/O — the harshest baseline for the spill.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cleanroom.runtime.spill import SpillFile

CHUNK_BYTES = 1 << 20
SEGMENT_SIZES = (64 * 1024, 256 * 1024, 1024 * 1024)


def spill_round_trip(directory: Path, data: memoryview, segment_size: int, out: bytearray) -> tuple[float, float]:
    start = time.perf_counter()
    with SpillFile(directory, segment_size_bytes=segment_size) as spill:
        for offset in range(0, data.nbytes, CHUNK_BYTES):
            spill.write(data[offset : offset + CHUNK_BYTES])
        spill.seek(0)
        middle = time.perf_counter()
        while spill.readinto(out):
            pass
    end = time.perf_counter()
    return middle - start, end - middle


def plain_round_trip(directory: Path, data: memoryview, out: bytearray) -> tuple[float, float]:
    start = time.perf_counter()
    fd = os.open(directory, os.O_RDWR | os.O_TMPFILE | os.O_CLOEXEC, 0o600)
    try:
        for offset in range(0, data.nbytes, CHUNK_BYTES):
            view = data[offset : offset + CHUNK_BYTES]
            while view.nbytes:
                view = view[os.write(fd, view) :]
        middle = time.perf_counter()
        position = 0
        while count := os.preadv(fd, [out], position):
            position += count
    finally:
        os.close(fd)
    end = time.perf_counter()
    return middle - start, end - middle


def aesgcm_round_trip(data: memoryview, segment_size: int, out: bytearray, sealed: bytearray) -> tuple[float, float]:
    """In memory, into a pre-faulted buffer: the ceiling for any design that encrypts every byte once."""
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    nonce, aad = os.urandom(12), b"h" * 48
    start = time.perf_counter()
    spans = []
    position = 0
    for offset in range(0, data.nbytes, segment_size):
        piece = data[offset : offset + segment_size]
        aead.encrypt_into(nonce, piece, aad, memoryview(sealed)[position : position + piece.nbytes + 16])
        spans.append((position, piece.nbytes))
        position += piece.nbytes + 16
    middle = time.perf_counter()
    plain = memoryview(out)
    for position, size in spans:
        target = plain[:size] if size <= len(out) else memoryview(bytearray(size))
        aead.decrypt_into(nonce, memoryview(sealed)[position : position + size + 16], aad, target)
    end = time.perf_counter()
    return middle - start, end - middle


def median_times(runs: list[tuple[float, float]]) -> dict[str, float]:
    return {
        "write_s": statistics.median(r[0] for r in runs),
        "read_s": statistics.median(r[1] for r in runs),
        "total_s": statistics.median(r[0] + r[1] for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    data = memoryview(os.urandom(args.size_mib << 20))
    mb = data.nbytes / 1e6
    rows: list[dict[str, Any]] = []
    sealed = bytearray(data.nbytes + (data.nbytes // SEGMENT_SIZES[0] + 1) * 16)
    for segment_size in SEGMENT_SIZES:
        out = bytearray(max(CHUNK_BYTES, segment_size))
        runners: dict[str, Callable[[], tuple[float, float]]] = {
            "spill": lambda s=segment_size, o=out: spill_round_trip(args.dir, data, s, o),  # type: ignore[misc]
            "plain": lambda o=out: plain_round_trip(args.dir, data, o),  # type: ignore[misc]
            "aesgcm": lambda s=segment_size, o=out: aesgcm_round_trip(data, s, o, sealed),  # type: ignore[misc]
        }
        for runner in runners.values():  # warm-up: page cache, key schedules, allocator
            runner()
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in runners}
        for _ in range(args.repeats):  # interleaved, so background load hits all three alike
            for name, runner in runners.items():
                runs[name].append(runner())
        medians = {name: median_times(r) for name, r in runs.items()}
        row = {
            "segment_size_bytes": segment_size,
            "size_bytes": data.nbytes,
            **{f"{name}_{k}": round(v, 4) for name, m in medians.items() for k, v in m.items()},
            **{f"{name}_MBps": round(mb / m["total_s"], 1) for name, m in medians.items()},
            "spill_vs_plain": round(medians["plain"]["total_s"] / medians["spill"]["total_s"], 3),
            "spill_vs_aesgcm": round(medians["aesgcm"]["total_s"] / medians["spill"]["total_s"], 3),
        }
        rows.append(row)
        print(
            f"segment {segment_size // 1024:>5} KiB  spill {row['spill_MBps']:>7} MB/s  "
            f"plain {row['plain_MBps']:>7} MB/s  raw AES-GCM {row['aesgcm_MBps']:>7} MB/s  "
            f"spill/plain {row['spill_vs_plain']:.2f}x  spill/AES-GCM {row['spill_vs_aesgcm']:.2f}x",
            flush=True,
        )
    report = {
        "size_mib": args.size_mib,
        "repeats": args.repeats,
        "dir": str(args.dir),
        "cpu_count": os.cpu_count(),
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
