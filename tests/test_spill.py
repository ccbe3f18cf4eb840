"""SpillFile: ciphertext-only temp files. Every test attacks a property of DESIGN invariant 8.

Tampering goes through the spill's own descriptor (`spill._fd`), as an attacker with access to the file
would; disk errors come from an injected SpillIO (no global monkeypatching) and, in a child process, from
the kernel itself via RLIMIT_FSIZE; the crash is a real SIGKILL of a child mid-write.
"""

from __future__ import annotations

import errno
import gc
import io
import json
import logging
import os
import random
import secrets
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleanroom.crypto.stream import HEADER_SIZE_BYTES, TAG_SIZE_BYTES
from cleanroom.errors import DecryptionFailed, InvalidSealedMessage, SpillError, SpillIntegrityError
from cleanroom.memory.secure_buffer import SecureAllocator, SecureBuffer
from cleanroom.runtime.spill import FALLBACK_NAME_PREFIX, SpillFile, SpillIO
from cleanroom.runtime.spill_extents import EXTENT_TARGET_BYTES

SEG = 64 * 1024
FULL = SEG + TAG_SIZE_BYTES
SRC = str(Path(__file__).resolve().parents[1] / "src")


class RecordingAllocator(SecureAllocator):
    """Keeps every SecureBuffer handed out, to show where plaintext and the key live and that they die."""

    def __init__(self) -> None:
        super().__init__()
        self.buffers: list[SecureBuffer] = []

    def allocate(self, size_bytes: int) -> SecureBuffer:
        buffer = super().allocate(size_bytes)
        self.buffers.append(buffer)
        return buffer


class FailingIO(SpillIO):
    """A disk that fills up (or breaks) after `budget_bytes`: a short write first, then the errno."""

    def __init__(self, budget_bytes: int, error: int = errno.ENOSPC, *, use_tmpfile: bool = True) -> None:
        super().__init__(use_tmpfile=use_tmpfile)
        self.budget_bytes, self.error, self.written = budget_bytes, error, 0
        self.discarded: list[int] = []

    def pwrite(self, fd: int, data: memoryview, offset: int) -> int:
        room = self.budget_bytes - self.written
        if room <= 0:
            raise OSError(self.error, os.strerror(self.error))
        count = super().pwrite(fd, data[:room], offset)
        self.written += count
        return count

    def discard(self, fd: int) -> None:
        self.discarded.append(fd)
        super().discard(fd)


def wait_for_size(path: str, at_least: int, timeout_s: float) -> int:
    """The size of `path` once it reaches `at_least` bytes, or its size when `timeout_s` runs out."""
    deadline = time.monotonic() + timeout_s
    size = os.stat(path).st_size
    while size < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
        size = os.stat(path).st_size
    return size


def marker_chunk(marker: bytes, size: int) -> bytes:
    return (marker + b"|plaintext|") * (size // (len(marker) + 11)) + b"\0" * (size % (len(marker) + 11))


def files_containing(needle: bytes, paths: Iterable[str]) -> list[str]:
    """Regular files among `paths` (symlinks followed, so /proc/self/fd/N reaches deleted files too)."""
    hits = []
    for path in paths:
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                continue
            with open(path, "rb") as handle:
                tail = b""
                while chunk := handle.read(1 << 20):
                    if needle in tail + chunk:
                        hits.append(path)
                        break
                    tail = chunk[-len(needle) :]
        except OSError:
            continue
    return hits


def disk_hits(needle: bytes, directory: Path) -> list[str]:
    under_dir = [str(p) for p in directory.rglob("*")]
    open_fds = [f"/proc/self/fd/{n}" for n in os.listdir("/proc/self/fd")]
    return files_containing(needle, under_dir + open_fds)


def new_spill(directory: Path, data: bytes, *, segment_size: int = SEG) -> SpillFile:
    spill = SpillFile(directory, segment_size_bytes=segment_size)
    spill.write(data)
    spill.seek(0)  # seals the last segment
    return spill


# --- basic behaviour ------------------------------------------------------------------------------
def test_round_trip_seek_tell_and_random_access(tmp_path: Path) -> None:
    data = random.Random(0).randbytes(5 * SEG + 321)
    with SpillFile(tmp_path, segment_size_bytes=SEG) as spill:
        for start in range(0, len(data), 40_000):
            assert spill.write(data[start : start + 40_000]) == len(data[start : start + 40_000])
        assert spill.tell() == spill.size_bytes == len(data)
        assert spill.seek(0) == 0
        out = bytearray(len(data))
        assert spill.readinto(out) == len(data) and out == data
        assert spill.readinto(bytearray(10)) == 0 and spill.read() == b""
        for index in (3, 0, 5, 1):  # segment k alone
            spill.seek(index * SEG)
            assert spill.read(SEG) == data[index * SEG : (index + 1) * SEG]
        spill.seek(SEG - 7)  # across a boundary, small buffers
        assert spill.read(20) == data[SEG - 7 : SEG + 13] and spill.tell() == SEG + 13
        assert spill.seek(-10, io.SEEK_END) == len(data) - 10 and spill.read() == data[-10:]
        assert spill.seek(5, io.SEEK_CUR) == len(data) + 5 and spill.read(3) == b""
        with pytest.raises(ValueError):
            spill.seek(-1)


def test_empty_and_exact_segment_spills(tmp_path: Path) -> None:
    with SpillFile(tmp_path, segment_size_bytes=SEG) as spill:
        spill.seek(0)
        assert spill.read() == b""
    data = random.Random(1).randbytes(2 * SEG)
    with new_spill(tmp_path, data) as spill:
        # Whole segments are sealed from the caller's buffer without a copy, so writing ends with an empty
        # last segment (a tag alone).
        assert os.fstat(spill._fd).st_size == HEADER_SIZE_BYTES + 2 * FULL + TAG_SIZE_BYTES  # type: ignore[arg-type]
        assert spill.read() == data
    with SpillFile(tmp_path, segment_size_bytes=SEG) as spill:
        spill.write(data[: SEG + 1])  # one segment sealed, one byte staged...
        spill.write(data[SEG + 1 :])  # ...and completed here: the staged segment becomes a full last one
        spill.seek(0)
        assert os.fstat(spill._fd).st_size == HEADER_SIZE_BYTES + 2 * FULL  # type: ignore[arg-type]
        assert spill.read() == data


@pytest.mark.parametrize("attack", ["flip-tag", "drop-it", "append"])
def test_empty_last_segment_is_authenticated_before_any_read(tmp_path: Path, attack: str) -> None:
    data = random.Random(2).randbytes(2 * SEG)
    spill = new_spill(tmp_path, data)
    fd = spill._fd
    assert fd is not None
    end = HEADER_SIZE_BYTES + 2 * FULL
    if attack == "flip-tag":
        flip(fd, end + 5)
    elif attack == "drop-it":
        os.ftruncate(fd, end)
    else:
        os.pwrite(fd, os.pread(fd, TAG_SIZE_BYTES, end), end + TAG_SIZE_BYTES)
    out = bytearray(SEG)
    with pytest.raises(SpillIntegrityError):
        spill.readinto(out)  # the first segment is intact, but the empty last one is checked first
    assert out == bytes(SEG)
    spill.close()


def test_write_after_read_and_use_after_close_are_refused(tmp_path: Path) -> None:
    spill = new_spill(tmp_path, b"abc")
    assert spill.read(1) == b"a"
    with pytest.raises(io.UnsupportedOperation, match="write-then-read"):
        spill.write(b"more")
    spill.close()
    spill.close()  # twice is fine
    assert spill.closed
    for call in (lambda: spill.read(), lambda: spill.write(b"x"), lambda: spill.seek(0), spill.tell):
        with pytest.raises(ValueError, match="closed"):
            call()


def test_bad_configuration_fails_in_constructor(tmp_path: Path) -> None:
    with pytest.raises(SpillError) as caught:
        SpillFile(tmp_path / "missing")
    assert caught.value.code == "spill_misconfigured"
    for size in (SEG - 1, 1024 * 1024 + 1):
        with pytest.raises(ValueError):
            SpillFile(tmp_path, segment_size_bytes=size)
    assert list(tmp_path.iterdir()) == []


# --- the file on disk -----------------------------------------------------------------------------
@pytest.mark.parametrize("use_tmpfile", [True, False], ids=["O_TMPFILE", "create-unlink"])
def test_file_is_nameless_private_and_gone_after_close(tmp_path: Path, use_tmpfile: bool) -> None:
    with SpillFile(tmp_path, segment_size_bytes=SEG, spill_io=SpillIO(use_tmpfile=use_tmpfile)) as spill:
        spill.write(b"x" * (3 * SEG))
        fd = spill._fd
        assert fd is not None
        info = os.fstat(fd)
        assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o600
        assert info.st_nlink == 0 and list(tmp_path.iterdir()) == []  # no directory entry while open
        assert os.readlink(f"/proc/self/fd/{fd}").endswith("(deleted)")
        assert os.get_inheritable(fd) is False  # O_CLOEXEC: children never get the descriptor
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OSError):
        os.fstat(fd)


def test_falls_back_when_filesystem_lacks_o_tmpfile(tmp_path: Path) -> None:
    class NoTmpfile(SpillIO):
        def open_tmpfile(self, directory: Path) -> int:
            raise OSError(errno.EOPNOTSUPP, "not supported")

    with SpillFile(tmp_path, segment_size_bytes=SEG, spill_io=NoTmpfile()) as spill:
        spill.write(b"y" * 10)
        assert os.fstat(spill._fd).st_nlink == 0  # type: ignore[arg-type]
        assert list(tmp_path.iterdir()) == [] and spill.read() == b"y" * 10


def test_scanner_positive_control(tmp_path: Path) -> None:
    """The scan used below does find plaintext, both by directory and through an open descriptor."""
    marker = secrets.token_hex(16).encode()
    (tmp_path / "plain").write_bytes(b"a" * 5_000_000 + marker)
    fd = os.open(tmp_path, os.O_RDWR | os.O_TMPFILE, 0o600)
    try:
        os.write(fd, b"b" * (1 << 20) + marker)
        hits = disk_hits(marker, tmp_path)
        assert str(tmp_path / "plain") in hits and f"/proc/self/fd/{fd}" in hits
    finally:
        os.close(fd)


def test_no_plaintext_on_disk_during_and_after_large_write(tmp_path: Path) -> None:
    marker = b"MARKER-" + secrets.token_hex(16).encode()
    chunk = marker_chunk(marker, 1 << 20)
    allocator = RecordingAllocator()
    with SpillFile(tmp_path, allocator=allocator) as spill:  # default 256 KiB segments
        for i in range(32):  # 32 MiB
            spill.write(chunk)
            if i == 15:
                assert disk_hits(marker, tmp_path) == []  # during the write
        spill.seek(0)  # last segment sealed and written
        assert disk_hits(marker, tmp_path) == []
        assert os.fstat(spill._fd).st_size > 32 << 20  # type: ignore[arg-type]
        # Reading back: the decrypted segment lands in a SecureBuffer, never on disk.
        assert spill.read(1000) == chunk[:1000]
        assert any(marker in bytes(b.view()) for b in allocator.buffers if not b.closed)
        spill.seek(0)
        out = bytearray(len(chunk))
        for _ in range(32):
            assert spill.readinto(out) == len(chunk) and out == chunk
        assert disk_hits(marker, tmp_path) == []
        key = [b for b in allocator.buffers if b.size_bytes == 32]
        assert len(key) == 1 and key[0].locked in (True, False)
    assert list(tmp_path.iterdir()) == []
    assert all(b.closed for b in allocator.buffers)  # key and plaintext staging zeroed and released
    assert disk_hits(marker, tmp_path) == []


# --- tampering ------------------------------------------------------------------------------------
DATA = random.Random(7).randbytes(3 * SEG + 100)  # four segments, the last one short
LAST_START = HEADER_SIZE_BYTES + 3 * FULL
LAST_END = LAST_START + 100 + TAG_SIZE_BYTES
SEGMENT_SPANS = [(HEADER_SIZE_BYTES + i * FULL, HEADER_SIZE_BYTES + (i + 1) * FULL) for i in range(3)] + [
    (LAST_START, LAST_END)
]
FLIP_POSITIONS = {f"header-{p}": p for p in (0, 3, 4, 5, 8, 9, 40, 41, 47)}
for _i, (_start, _end) in enumerate(SEGMENT_SPANS):
    FLIP_POSITIONS |= {
        f"seg{_i}-first": _start,
        f"seg{_i}-middle": (_start + _end - 16) // 2,
        f"seg{_i}-last-ct": _end - 17,
        f"seg{_i}-tag-first": _end - 16,
        f"seg{_i}-tag-last": _end - 1,
    }


def flip(fd: int, position: int) -> None:
    """XOR, never overwrite: the ciphertext is random per spill, so a constant could already be there."""
    os.pwrite(fd, bytes([os.pread(fd, 1, position)[0] ^ 0x04]), position)


def assert_rejected(spill: SpillFile, *, read_at: int = 0) -> None:
    spill.seek(read_at)
    out = bytearray(len(DATA))
    with pytest.raises(SpillIntegrityError):
        spill.readinto(out)
    assert out == bytes(len(out))  # nothing (authenticated or not) handed out by the failed call
    with pytest.raises(SpillError):  # discarded: the key is gone, no second try
        spill.read()
    spill.close()


@pytest.mark.parametrize("position", FLIP_POSITIONS.values(), ids=FLIP_POSITIONS.keys())
def test_flipped_byte_is_rejected(tmp_path: Path, position: int) -> None:
    spill = new_spill(tmp_path, DATA)
    fd = spill._fd
    assert fd is not None and os.fstat(fd).st_size == LAST_END
    flip(fd, position)
    assert_rejected(spill)


def test_flip_in_one_segment_leaves_others_readable_by_random_access(tmp_path: Path) -> None:
    spill = new_spill(tmp_path, DATA)
    flip(spill._fd, SEGMENT_SPANS[2][0] + 10)  # type: ignore[arg-type]
    spill.seek(3 * SEG)
    assert spill.read() == DATA[3 * SEG :]  # the last segment alone authenticates
    spill.seek(0)
    assert spill.read(SEG) == DATA[:SEG]
    assert_rejected(spill, read_at=2 * SEG)


def test_swapped_segments_are_rejected(tmp_path: Path) -> None:
    spill = new_spill(tmp_path, DATA)
    fd = spill._fd
    assert fd is not None
    first, second = os.pread(fd, FULL, SEGMENT_SPANS[0][0]), os.pread(fd, FULL, SEGMENT_SPANS[1][0])
    os.pwrite(fd, second, SEGMENT_SPANS[0][0])
    os.pwrite(fd, first, SEGMENT_SPANS[1][0])
    assert_rejected(spill)


@pytest.mark.parametrize(
    "length",
    [
        HEADER_SIZE_BYTES,
        SEGMENT_SPANS[1][0],
        LAST_START,
        LAST_START + 1,
        SEGMENT_SPANS[1][0] - 1,
        SEGMENT_SPANS[1][0] + 17,
        LAST_END - 1,
        10,
    ],
)
def test_truncation_at_and_between_boundaries_is_rejected(tmp_path: Path, length: int) -> None:
    spill = new_spill(tmp_path, DATA)
    os.ftruncate(spill._fd, length)  # type: ignore[arg-type]
    assert_rejected(spill)


@pytest.mark.parametrize("what", ["copy-of-segment-0", "copy-of-last", "one-byte", "tag-sized"])
def test_appended_segment_is_rejected(tmp_path: Path, what: str) -> None:
    spill = new_spill(tmp_path, DATA)
    fd = spill._fd
    assert fd is not None
    extra = {
        "copy-of-segment-0": os.pread(fd, FULL, SEGMENT_SPANS[0][0]),
        "copy-of-last": os.pread(fd, LAST_END - LAST_START, LAST_START),
        "one-byte": b"\0",
        "tag-sized": b"\0" * 16,
    }[what]
    os.pwrite(fd, extra, LAST_END)
    assert_rejected(spill)


@pytest.mark.parametrize("what", ["whole-file", "one-segment", "header"])
def test_data_from_another_spill_is_rejected(tmp_path: Path, what: str) -> None:
    victim, other = new_spill(tmp_path, DATA), new_spill(tmp_path, DATA)  # same plaintext, same length
    src, dst = other._fd, victim._fd
    assert src is not None and dst is not None
    start, end = {"whole-file": (0, LAST_END), "one-segment": SEGMENT_SPANS[1], "header": (0, HEADER_SIZE_BYTES)}[what]
    os.pwrite(dst, os.pread(src, end - start, start), start)
    assert other.read() == DATA  # the donor itself is fine
    other.close()
    assert_rejected(victim)


def test_integrity_error_chains_the_crypto_error(tmp_path: Path) -> None:
    spill = new_spill(tmp_path, DATA)
    os.pwrite(spill._fd, b"\x00" * 4, 0)  # type: ignore[arg-type]  # magic
    with pytest.raises(SpillIntegrityError) as caught:
        spill.read()
    assert isinstance(caught.value.__cause__, InvalidSealedMessage)
    assert caught.value.code == "spill_integrity_failed" and caught.value.status == 503
    spill = new_spill(tmp_path, DATA)
    flip(spill._fd, 100)  # type: ignore[arg-type]
    with pytest.raises(SpillIntegrityError) as caught:
        spill.read()
    assert isinstance(caught.value.__cause__, DecryptionFailed)
    spill.close()


# --- disk errors ----------------------------------------------------------------------------------
@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EIO])
@pytest.mark.parametrize(
    "budget",
    [10, HEADER_SIZE_BYTES + FULL + 1000, HEADER_SIZE_BYTES + 3 * FULL + 20],
    ids=["in-header", "mid-write", "at-last-segment"],
)
def test_write_error_fails_cleanly(tmp_path: Path, error: int, budget: int) -> None:
    failing = FailingIO(budget, error)
    allocator = RecordingAllocator()
    with pytest.raises(SpillError) as caught:
        spill = SpillFile(tmp_path, segment_size_bytes=SEG, allocator=allocator, spill_io=failing)
        fd = spill._fd
        assert fd is not None
        witness = os.dup(fd)  # someone holding the descriptor still finds nothing afterwards
        try:
            spill.write(DATA)
            spill.seek(0)  # the last segment is written here
        finally:
            assert os.fstat(witness).st_size == 0  # partial file truncated away
            os.close(witness)
    assert caught.value.code == "spill_failed" and caught.value.status == 503
    assert errno.errorcode[error] in caught.value.message
    assert len(failing.discarded) == 1 and list(tmp_path.iterdir()) == []
    assert all(b.closed for b in allocator.buffers)  # key shredded
    if budget > HEADER_SIZE_BYTES:
        with pytest.raises(SpillError, match="failed earlier"):
            spill.read()


def test_file_size_limit_from_the_kernel_fails_cleanly(tmp_path: Path) -> None:
    """A real EFBIG: the child lowers RLIMIT_FSIZE (Python ignores SIGXFSZ, so write returns EFBIG)."""
    script = textwrap.dedent(f"""
        import json, os, resource
        from pathlib import Path
        from cleanroom.errors import SpillError
        from cleanroom.runtime.spill import SpillFile
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        spill = SpillFile(Path({str(tmp_path)!r}), segment_size_bytes=65536)
        try:
            spill.write(b"x" * (4 << 20))
            spill.seek(0)
            print(json.dumps({{"error": None}}))
        except SpillError as exc:
            print(json.dumps({{"error": exc.code, "message": exc.message, "fd": spill._fd,
                               "entries": os.listdir({str(tmp_path)!r})}}))
    """)
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["error"] == "spill_failed" and "EFBIG" in report["message"]
    assert report["fd"] is None and report["entries"] == []


# --- crash ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("use_tmpfile", [True, False], ids=["O_TMPFILE", "create-unlink"])
def test_sigkill_mid_write_leaves_nothing_readable(tmp_path: Path, use_tmpfile: bool) -> None:
    marker = b"CRASH-" + secrets.token_hex(16).encode()
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from cleanroom.runtime.spill import SpillFile, SpillIO
        spill = SpillFile(Path({str(tmp_path)!r}), segment_size_bytes=65536,
                          spill_io=SpillIO(use_tmpfile={use_tmpfile}))
        chunk = sys.stdin.buffer.read()
        for _ in range(8):
            spill.write(chunk)
        print(spill._fd, flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    try:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(marker_chunk(marker, 1 << 20))
        child.stdin.close()
        fd = int(child.stdout.readline())
        target = f"/proc/{child.pid}/fd/{fd}"
        assert os.readlink(target).endswith("(deleted)") and list(tmp_path.iterdir()) == []
        # The disk thread writes whole extents behind the writer's back: wait until everything but the
        # extent still being filled (and the staged last segment) is on disk, then scan the file.
        expected = (8 << 20) - EXTENT_TARGET_BYTES - 2 * 65536
        assert wait_for_size(target, expected, timeout_s=30) >= expected
        assert files_containing(marker, [target]) == []  # only ciphertext, even mid-job
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert list(tmp_path.iterdir()) == []  # no name, no blocks: the inode died with the descriptor
    assert not any(p.name.startswith(FALLBACK_NAME_PREFIX) for p in tmp_path.iterdir())


def test_unclosed_spill_is_shredded_at_garbage_collection(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    allocator = RecordingAllocator()
    spill = SpillFile(tmp_path, segment_size_bytes=SEG, allocator=allocator)
    spill.write(b"secret" * 100)
    fd = spill._fd
    assert fd is not None
    with caplog.at_level(logging.ERROR, logger="cleanroom.spill"):
        del spill
        gc.collect()
    assert "never closed" in caplog.text
    assert all(b.closed for b in allocator.buffers)
    with pytest.raises(OSError):
        os.fstat(fd)


# --- property -------------------------------------------------------------------------------------
@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(
    segment_size=st.integers(64 * 1024, 1024 * 1024),
    segments=st.floats(0, 2.5),
    seed=st.integers(0, 2**32 - 1),
    write_sizes=st.lists(st.integers(1, 400_000), min_size=1, max_size=8),
    read_sizes=st.lists(st.integers(1, 600_000), min_size=1, max_size=8),
)
def test_property_random_chunks_round_trip(
    tmp_path: Path, segment_size: int, segments: float, seed: int, write_sizes: list[int], read_sizes: list[int]
) -> None:
    rng = random.Random(seed)
    data = rng.randbytes(int(segments * segment_size))
    with SpillFile(tmp_path, segment_size_bytes=segment_size) as spill:
        position, turn = 0, 0
        while position < len(data):
            size = write_sizes[turn % len(write_sizes)]
            spill.write(memoryview(data)[position : position + size])
            position, turn = position + size, turn + 1
        spill.seek(0)
        collected, turn = bytearray(), 0
        while True:
            out = bytearray(read_sizes[turn % len(read_sizes)])
            count = spill.readinto(out)
            if count == 0:
                break
            collected += out[:count]
            turn += 1
        assert collected == data
        if data:
            offset = rng.randrange(len(data))
            spill.seek(offset)
            assert spill.read(read_sizes[0]) == data[offset : offset + read_sizes[0]]


# --- many extents: batched sealing and opening, read-ahead, random access ----------------------------
def test_round_trip_across_many_extents_with_large_and_odd_calls(tmp_path: Path) -> None:
    """Several write extents and read extents per call: whole segments are sealed and opened many per call,
    straight from and into the caller's buffers; odd sizes and seeks go through the staging path."""
    rng = random.Random(7)
    data = rng.randbytes(13 * (1 << 20) + 12345)
    with SpillFile(tmp_path, segment_size_bytes=SEG) as spill:
        position = 0
        for size in [3 << 20, 1, SEG - 1, 5 << 20, 70_001] * 4:
            spill.write(memoryview(data)[position : position + size])
            position += size
            if position >= len(data):
                break
        spill.write(memoryview(data)[position:])
        spill.seek(0)
        collected = bytearray()
        for size in [5 << 20, (1 << 20) + 1, 70_000, 8 << 20] * 4:
            out = bytearray(size)
            count = spill.readinto(out)
            collected += out[:count]
        assert collected == data
        for offset in [9 << 20, 5, 2 * SEG, len(data) - 3, (4 << 20) + 17, 0]:
            spill.seek(offset)
            assert spill.read(3 << 20) == data[offset : offset + (3 << 20)]


def test_tampered_segment_inside_a_large_read_zeroes_the_whole_call(tmp_path: Path) -> None:
    data = secrets.token_bytes(6 << 20)
    spill = SpillFile(tmp_path, segment_size_bytes=SEG)
    spill.write(data)
    spill.seek(0)
    fd = spill._fd
    assert fd is not None
    flip(fd, HEADER_SIZE_BYTES + 50 * FULL + 99)  # segment 50: in the second read extent
    out = bytearray(b"\xaa" * (8 << 20))
    with pytest.raises(SpillIntegrityError):
        spill.readinto(out)
    assert out[: 50 * SEG] == bytes(50 * SEG)  # the authentic segments before it were zeroed too
    assert not out.strip(b"\x00\xaa")  # and no plaintext anywhere: zeroed, or never written (0xaa)
    with pytest.raises(SpillError):
        spill.read()
    spill.close()
