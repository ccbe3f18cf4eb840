"""SecureBuffer: zeroed on close, kept out of dumps and children, and locking that degrades gracefully."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cleanroom.memory.secure_buffer import SecureAllocator, SecureBuffer


def smaps_flags(address: int) -> str:
    with open("/proc/self/smaps") as smaps:
        lines = smaps.read().splitlines()
    for i, line in enumerate(lines):
        start = int(line.split("-")[0], 16) if "-" in line.split()[0] else -1
        if start == address:
            return next(entry for entry in lines[i:] if entry.startswith("VmFlags:"))
    raise AssertionError("mapping not found")


def test_zeroed_on_close_even_while_a_tensor_still_views_it() -> None:
    buffer = SecureBuffer(10_000)
    buffer.view()[:6] = b"secret"
    tensor = buffer.as_tensor()
    assert bytes(tensor[:6].numpy()) == b"secret"
    buffer.close()
    assert int(tensor.sum()) == 0
    assert buffer.closed
    with pytest.raises(ValueError):
        buffer.view()


def test_mapping_is_locked_not_dumped_and_wiped_on_fork() -> None:
    with SecureBuffer(4096) as buffer:
        flags = smaps_flags(buffer.address)
        assert " dd" in flags  # MADV_DONTDUMP
        assert " wf" in flags  # MADV_WIPEONFORK
        assert buffer.locked and " lo" in flags


def test_zero_length_buffer() -> None:
    with SecureBuffer(0) as buffer:
        assert len(buffer.view()) == 0
        assert buffer.as_tensor().numel() == 0


def test_lock_stats_track_locked_bytes() -> None:
    allocator = SecureAllocator()
    with allocator.allocate(8192):
        assert allocator.stats.locked_bytes == 8192
    assert allocator.stats.locked_bytes == 0
    assert allocator.stats.lock_failures == 0


UNPRIVILEGED_PROBE = """
import json
from cleanroom.memory.secure_buffer import SecureAllocator
allocator = SecureAllocator()
big = allocator.allocate(32 * 1024 * 1024)   # past the 8 MiB RLIMIT_MEMLOCK
big.view()[:4] = b"data"
ok = bytes(big.view()[:4]) == b"data"
big.close()
print(json.dumps({"locked": big.locked, "failures": allocator.stats.lock_failures,
                  "error": allocator.stats.last_error, "usable": ok, "zero": big.is_zero()}))
"""


def test_lock_failure_without_cap_ipc_lock_degrades_and_is_counted() -> None:
    """As an unprivileged deployment: no CAP_IPC_LOCK, RLIMIT_MEMLOCK 8 MiB -> ENOMEM, reported, not fatal."""
    command = [
        "setpriv",
        "--bounding-set",
        "-ipc_lock",
        "--inh-caps",
        "-ipc_lock",
        "prlimit",
        "--memlock=8388608:8388608",
        sys.executable,
        "-c",
        UNPRIVILEGED_PROBE,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == {"locked": False, "failures": 1, "error": "ENOMEM", "usable": True, "zero": True}
