"""Read another process's memory through /proc/PID/maps and /proc/PID/mem and count marker copies.

This is the attacker of DESIGN §1 who reads the host after a request: every readable mapping of the
server (heap, anonymous maps, stacks, libraries' data) is read and searched.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_MAPS_RE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$")
CHUNK = 16 * 1024 * 1024


def encodings(marker: str) -> list[bytes]:
    return [marker.encode("utf-8"), marker.encode("utf-16-le"), marker.encode("utf-32-le")]


def scan_process(pid: int, needles: list[bytes]) -> dict[str, int]:
    """Occurrences of each needle in the readable memory of `pid`, keyed by the mapping's name."""
    hits: dict[str, int] = {}
    longest = max(len(n) for n in needles)
    with open(f"/proc/{pid}/maps") as maps:
        regions = [m.groups() for m in (_MAPS_RE.match(line) for line in maps) if m]
    fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
    try:
        for start_hex, end_hex, perms, name in regions:
            if not perms.startswith("r") or name in ("[vvar]", "[vsyscall]", "[vvar_vclock]"):
                continue
            start, end = int(start_hex, 16), int(end_hex, 16)
            offset = start
            tail = b""
            while offset < end:
                size = min(CHUNK, end - offset)
                try:
                    data = os.pread(fd, size, offset)
                except OSError:
                    break
                if not data:
                    break
                window = tail + data
                count = sum(window.count(n) for n in needles)
                if count:
                    hits[name or "[anon]"] = hits.get(name or "[anon]", 0) + count
                tail = window[-(longest - 1) :] if longest > 1 else b""
                offset += len(data)
    finally:
        os.close(fd)
    return hits


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
