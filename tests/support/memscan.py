"""Read another process's memory through /proc/PID/maps and /proc/PID/mem and count marker copies.

This is the attacker of DESIGN §1 who reads the host after a request: every readable mapping of the
server (heap, anonymous maps, stacks, libraries' code and data) is read and searched. Only the kernel's
own pages ([vvar], [vsyscall]) are skipped: they are not the process's memory and reading them fails.

Speed (a scan is ~1.2 GB for a server with torch and minilm, and the remanence tests run dozens): the
needles are searched in one Hyperscan pass per chunk (all needles at once; matches across a chunk edge
found in a small edge buffer): 4 markers x 3 encodings took 7.7 s with one `bytes.count` per
needle over `tail + chunk` copies, 0.9-1.0 s this way (most of it the kernel copying the pages out).
Without Hyperscan (it is an x86-64-only dependency) the fallback counts per needle without copying
each chunk. A scan that finds nothing proves nothing alone: every group of remanence tests has a control
that the same scanner does find a marker held in the server.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

_MAPS_RE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$")
CHUNK = 16 * 1024 * 1024
# Kernel-provided pages with no process data in them; reading [vvar] fails or faults.
_SKIPPED = ("[vvar]", "[vsyscall]", "[vvar_vclock]")

try:
    import hyperscan
except ImportError:  # platforms without the wheel: the slower, equivalent fallback below
    hyperscan = None  # type: ignore[assignment]


def encodings(marker: str) -> list[bytes]:
    return [marker.encode("utf-8"), marker.encode("utf-16-le"), marker.encode("utf-32-le")]


def _regions(pid: int) -> list[tuple[int, int, str]]:
    with open(f"/proc/{pid}/maps") as maps:
        found = [m.groups() for m in (_MAPS_RE.match(line) for line in maps) if m]
    return [
        (int(start, 16), int(end, 16), name or "[anon]")
        for start, end, perms, name in found
        if perms.startswith("r") and name not in _SKIPPED
    ]


def _read_region(fd: int, start: int, end: int) -> Iterator[bytes]:
    offset = start
    while offset < end:
        try:
            data = os.pread(fd, min(CHUNK, end - offset), offset)
        except OSError:  # a mapping the kernel will not let us read (e.g. unmapped meanwhile)
            return
        if not data:
            return
        yield data
        offset += len(data)


def _literal(needle: bytes) -> bytes:
    """A Hyperscan expression matching exactly `needle` (every byte escaped: NULs and metacharacters)."""
    return b"".join(b"\\x%02x" % byte for byte in needle)


def _scan_hyperscan(fd: int, regions: list[tuple[int, int, str]], needles: list[bytes]) -> dict[str, int]:
    # Block mode per chunk plus the chunk edge, as in the fallback: this wheel's stream mode crashed
    # (segfault in the match callback, hyperscan 0.9.1).
    db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    db.compile(
        expressions=[_literal(n) for n in needles],
        ids=list(range(len(needles))),
        elements=len(needles),
        flags=[0] * len(needles),
    )
    scratch = hyperscan.Scratch(db)
    longest = max(len(n) for n in needles)
    found = [0]
    edge_at = [-1]  # -1: count every match; else only the ones that straddle this offset (the tail's end)

    def on_match(index: int, _start: int, end: int, _flags: int, _context: object) -> None:
        if edge_at[0] < 0 or end - len(needles[index]) < edge_at[0] < end:
            found[0] += 1

    hits: dict[str, int] = {}
    for start, end, name in regions:
        tail = b""
        for data in _read_region(fd, start, end):
            found[0], edge_at[0] = 0, -1
            db.scan(data, on_match, 0, None, scratch)
            if tail:  # the matches that straddle the edge: they start in `tail` and end in `data`
                edge_at[0] = len(tail)
                db.scan(tail + data[: longest - 1], on_match, 0, None, scratch)
            if found[0]:
                hits[name] = hits.get(name, 0) + found[0]
            tail = data[-(longest - 1) :] if longest > 1 else b""
    return hits


def _scan_python(fd: int, regions: list[tuple[int, int, str]], needles: list[bytes]) -> dict[str, int]:
    hits: dict[str, int] = {}
    longest = max(len(n) for n in needles)
    for start, end, name in regions:
        tail = b""
        for data in _read_region(fd, start, end):
            count = sum(data.count(n) for n in needles)
            if tail:  # only the matches that straddle the edge: they start in `tail` and end in `data`
                edge = tail + data[: longest - 1]
                for n in needles:
                    at = edge.find(n)
                    while 0 <= at < len(tail):
                        count += at + len(n) > len(tail)
                        at = edge.find(n, at + 1)
            if count:
                hits[name] = hits.get(name, 0) + count
            tail = data[-(longest - 1) :] if longest > 1 else b""
    return hits


def scan_process(pid: int, needles: list[bytes]) -> dict[str, int]:
    """Occurrences of each needle in the readable memory of `pid`, keyed by the mapping's name."""
    regions = _regions(pid)
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    try:
        if hyperscan is not None:
            return _scan_hyperscan(fd, regions, needles)
        return _scan_python(fd, regions, needles)
    finally:
        os.close(fd)


def scan_files(root: Path, needles: list[bytes]) -> list[str]:
    """Files under `root` that contain any needle."""
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if any(n in data for n in needles):
                found.append(str(path))
    return found
