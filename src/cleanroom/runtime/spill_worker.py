"""The spill file's disk thread: `pwrite`/`preadv` run here while the caller's thread runs AES-GCM.

Why a thread: a spill costs about the sum of its cipher time and its file time (measured: 0.45-0.55x raw
AES-GCM on the 2-core dev VM with the page cache as fast as the cipher). `AESGCM.encrypt_into` /
`decrypt_into` and `os.pwrite` / `os.preadv` all release the GIL, so handing the file calls to a second
thread lets both run at once (write-behind while writing, read-ahead while reading).

What it may touch: **ciphertext buffers and the descriptor only** — never a key, a cipher object or a
plaintext buffer. A job is (buffer, offset); the buffer belongs to the worker from `submit` until the
job's `done` is set, and nobody else writes it meanwhile.

Lifetime: the thread starts on the first job and exits after `idle_exit_s` without work (an idle spill —
a batch job's input waiting for its next chunk — holds no thread). `stop()` wakes it, skips every job not
yet started and joins it, so after `stop()` no system call on the descriptor is running or will run: the
owner can truncate and close the descriptor without racing a late `pwrite` into a reused fd number.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import threading
from typing import Protocol

log = logging.getLogger("cleanroom.spill")


class FileCalls(Protocol):
    """The two calls the worker makes (a `SpillIO`; tests inject faults through it)."""

    def pwrite(self, fd: int, data: memoryview, offset: int) -> int: ...

    def preadinto(self, fd: int, buffer: memoryview, offset: int) -> int: ...


class ShortRead(Exception):
    """The file ended before the segment did (the owner turns this into an integrity error)."""


class Job:
    """One pwrite or pread of a whole ciphertext buffer. `error` is set before the job counts as done.

    Completion is a plain lock (held until the disk thread releases it) and, for writes, the job itself
    put back on the owner's `returns` queue: both C-level, so the disk thread holds the GIL for a few
    microseconds per job. (With a `threading.Event` per job and a `Condition` for a pending count, about one
    AES-GCM call in ten on the cipher thread took 40-100 µs instead of ~14 µs at 64 KiB segments, measured;
    GIL hand-offs to the disk thread are the likely cause.)
    """

    __slots__ = ("_done", "buffer", "error", "offset", "owner", "returns", "write")

    def __init__(
        self,
        write: bool,
        buffer: memoryview,
        offset: int,
        *,
        owner: bytearray | memoryview | None = None,
        returns: queue.SimpleQueue[Job] | None = None,
    ) -> None:
        self.write, self.buffer, self.offset, self.owner, self.returns = write, buffer, offset, owner, returns
        self.error: BaseException | None = None
        self._done = threading.Lock()
        self._done.acquire()

    def wait(self) -> None:
        """Block until the disk thread has finished (or skipped) this job."""
        with self._done:
            pass

    def finish(self) -> None:
        self._done.release()
        if self.returns is not None:
            self.returns.put(self)


def pwrite_all(calls: FileCalls, fd: int, data: memoryview, offset: int) -> None:
    while data.nbytes:
        written = calls.pwrite(fd, data, offset)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        data, offset = data[written:], offset + written


def pread_exact(calls: FileCalls, fd: int, buffer: memoryview, offset: int) -> None:
    while buffer.nbytes:
        count = calls.preadinto(fd, buffer, offset)
        if count <= 0:
            raise ShortRead("the spill file ended early")
        buffer, offset = buffer[count:], offset + count


class DiskWorker:
    """Runs jobs in submission order on one lazily started thread (see the module docstring)."""

    def __init__(self, calls: FileCalls, fd: int, *, idle_exit_s: float = 1.0) -> None:
        self._calls, self._fd, self._idle_exit_s = calls, fd, idle_exit_s
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # orders submit against the thread's idle exit and against stop
        self._thread: threading.Thread | None = None
        self._stopped = False
        # The first write error; later writes are skipped (the owner discards the whole file anyway).
        self.write_error: BaseException | None = None

    def submit(self, job: Job) -> Job:
        with self._lock:
            if self._stopped:
                raise RuntimeError("the spill's disk worker was stopped")
            self._jobs.put(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cleanroom-spill-io", daemon=True)
                self._thread.start()
        return job

    def stop(self) -> None:
        """Skip what has not started, wait for what has, and end the thread. Safe to call twice."""
        with self._lock:
            self._stopped = True
            thread = self._thread
            if thread is not None:
                self._jobs.put(None)  # wake it now instead of at its idle timeout
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _run(self) -> None:
        jobs, timeout = self._jobs, self._idle_exit_s
        while True:
            try:
                job = jobs.get(timeout=timeout)
            except queue.Empty:
                with self._lock:
                    if jobs.empty():  # nothing queued: exit; the next submit starts a new thread
                        self._thread = None
                        return
                continue
            if job is None:
                with self._lock:
                    if self._stopped:
                        self._skip_remaining()
                        self._thread = None
                        return
                continue
            self._execute(job)

    def _execute(self, job: Job) -> None:
        try:
            if self._stopped:
                job.error = RuntimeError("the spill was discarded")
            elif job.write:
                if self.write_error is None:
                    pwrite_all(self._calls, self._fd, job.buffer, job.offset)
                else:
                    job.error = self.write_error
            else:
                pread_exact(self._calls, self._fd, job.buffer, job.offset)
        except BaseException as exc:  # every error goes back to the owner's thread
            job.error = exc
            if job.write and self.write_error is None:
                self.write_error = exc
        finally:
            job.finish()

    def _skip_remaining(self) -> None:
        """Under the lock, after stop: answer every queued job without touching the file."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                job.error = RuntimeError("the spill was discarded")
                job.finish()


# --- extents: several consecutive segments per system call -------------------------------------------------
# One pwrite/pread per segment costs a thread hand-off per 64 KiB (measured: ~14 µs each, 0.24x of raw
# AES-GCM at 64 KiB segments). Segments are contiguous on disk, so the pipe groups them into extents of
# about these many bytes and hands the disk thread one extent at a time. Reading, every extent costs a
# wake-up of the waiting cipher thread, and 2 MiB extents in two buffers were faster than 1 MiB in three
# (64 KiB segments, 2-vCPU dev VM: read 0.54x -> 0.73x of raw AES-GCM together with the batched opening
# in stream.py). Writing, 512 KiB extents beat 1 MiB by a little (64 KiB segments, order shuffled each
# round, 6 rounds on a loaded box: 24.7 vs 26.5 ms for 64 MiB); mind the order when re-measuring, a spill
# run right after another one's close writes faster.
EXTENT_TARGET_BYTES = 512 * 1024
READ_EXTENT_TARGET_BYTES = 2 << 20


def segments_per_extent(segment_full_bytes: int, target_bytes: int = EXTENT_TARGET_BYTES) -> int:
    """Rounded up, so an extent holds the ciphertext of a whole number of 512 KiB (1 MiB for 1 MiB
    segments) of plaintext: extents then line up with the caller's usual power-of-two writes and reads
    (rounded down, 256 KiB segments made 768 KiB extents and a third more hand-offs)."""
    return max(1, -(-target_bytes // segment_full_bytes))


class ExtentWriter:
    """Sealed segments go into the current extent; a full extent goes to the disk thread.

    Extents are slots carved out of read-extent-sized arenas, so that the reader takes the arenas over
    with their pages already faulted in (fresh reader buffers cost 0.2 of the read time at 1 MiB
    segments, measured). At most `max_buffers` extents are being filled or written (back-pressure: taking
    the next extent waits for one to come back from the disk thread, and only then), so the memory is
    bounded whatever the file size. A spill that fits one extent never starts the thread: `flush` writes
    it from the caller's thread. A write error from the disk thread is raised (as OSError) when the next
    extent is taken or by `flush`.
    """

    def __init__(
        self,
        calls: FileCalls,
        fd: int,
        worker: DiskWorker,
        *,
        offset: int,
        segment_full_bytes: int,
        max_buffers: int = 3,
    ) -> None:
        self._calls, self._fd, self._worker = calls, fd, worker
        self._full = segment_full_bytes
        self._extent_bytes = segments_per_extent(segment_full_bytes) * segment_full_bytes
        self._arena_bytes = segments_per_extent(segment_full_bytes, READ_EXTENT_TARGET_BYTES) * segment_full_bytes
        self._arenas: list[bytearray] = []
        self._free: list[memoryview] = []  # slots never used yet
        self.offset = offset  # file offset of the current extent's first byte
        self._fill = 0
        self._current: memoryview | None = None
        self._returns: queue.SimpleQueue[Job] = queue.SimpleQueue()  # written extents, back from the thread
        self._in_flight = 0  # submitted and not yet taken back from _returns
        self._made, self._max_buffers = 0, max_buffers
        self._submitted = False

    def next_segment(self, size: int, *, last: bool) -> memoryview:
        """Where to encrypt the next segment (`size` = plaintext + tag); call `commit` once it is there."""
        fill = self._fill
        if self._current is None or fill + size > self._current.nbytes:  # the slow path, once per extent
            if last and self._current is None and not self._submitted and self._made == 0:
                self._current = memoryview(bytearray(size))  # a one-segment spill: no arena
                self._made += 1
            else:
                self._next_extent()
            fill = 0
        assert self._current is not None
        return self._current[fill : fill + size]

    def next_full_segments(self, wanted: int) -> tuple[memoryview, int]:
        """Room for up to `wanted` (>= 1) full segments, all in the current extent: (where, how many)."""
        full = self._full
        if self._current is None or self._fill + full > self._current.nbytes:
            self._next_extent()
        assert self._current is not None
        count = min(wanted, (self._current.nbytes - self._fill) // full)
        return self._current[self._fill : self._fill + count * full], count

    def commit(self, size: int) -> None:
        self._fill += size

    def flush(self) -> list[bytearray]:
        """Everything on disk (or the error raised); returns the arenas, to read with."""
        if self._current is not None and self._fill:
            if not self._submitted:  # it all fit in one extent: one write, here
                pwrite_all(self._calls, self._fd, self._current[: self._fill], self.offset)
                self.offset += self._fill
                self._fill = 0
            else:
                self._submit()
        self._current = None
        while self._in_flight:  # the barrier: every extent comes back once its pwrite is done or skipped
            self._take_back()
        self.raise_write_error()
        arenas, self._arenas, self._free = self._arenas, [], []
        return arenas

    def raise_write_error(self) -> None:
        error = self._worker.write_error
        if error is not None:
            if isinstance(error, OSError):
                raise OSError(error.errno or errno.EIO, error.strerror or str(error))
            raise OSError(errno.EIO, f"spill disk thread failed ({type(error).__name__})")

    def _next_extent(self) -> None:
        if self._current is not None:
            self._submit()
        self.raise_write_error()
        if self._made < self._max_buffers:
            self._made += 1
            if not self._free:
                arena = bytearray(self._arena_bytes)
                self._arenas.append(arena)
                slots = max(1, self._arena_bytes // self._extent_bytes)
                size = self._arena_bytes // slots // self._full * self._full
                self._free = [memoryview(arena)[i * size : (i + 1) * size] for i in reversed(range(slots))]
            self._current = self._free.pop()
        else:
            self._current = self._take_back()  # blocks until the disk thread returns one
        self._fill = 0

    def _submit(self) -> None:
        assert self._current is not None
        slot, fill = self._current, self._fill
        self._current, self._fill = None, 0
        self._submitted = True
        self._in_flight += 1
        self._worker.submit(Job(True, slot[:fill], self.offset, owner=slot, returns=self._returns))
        self.offset += fill

    def _take_back(self) -> memoryview:
        job = self._returns.get()
        self._in_flight -= 1
        assert isinstance(job.owner, memoryview)
        return job.owner


class ExtentReader:
    """Ciphertext of any segment, read an extent at a time; while the caller moves through the file in
    order, the next extents are already being read on the disk thread (read-ahead).

    `segment(i)` returns a view that stays valid until the next call. Random access (a jump to an extent
    that is not the next one) drops the read-ahead and reads the wanted extent on the caller's thread.
    Raises ShortRead if the file is shorter than the stream, OSError on an I/O error.
    """

    def __init__(
        self,
        calls: FileCalls,
        fd: int,
        worker: DiskWorker,
        *,
        header_bytes: int,
        segment_full_bytes: int,
        stream_size: int,
        buffers: list[bytearray],
        max_buffers: int = 2,
    ) -> None:
        self._calls, self._fd, self._worker = calls, fd, worker
        self._header, self._full, self._stream_size = header_bytes, segment_full_bytes, stream_size
        self._per_extent = segments_per_extent(segment_full_bytes, READ_EXTENT_TARGET_BYTES)
        self._extent_bytes = self._per_extent * segment_full_bytes
        self._extents = max(1, -(-(stream_size - header_bytes) // self._extent_bytes))
        self._spare = [buffer for buffer in buffers if len(buffer) >= self._extent_bytes]
        self._made, self._max_buffers = len(self._spare), max(max_buffers, len(self._spare))
        self._ahead: dict[int, tuple[Job, bytearray]] = {}
        self._current: tuple[int, bytearray] | None = None

    def loaded(self, index: int) -> bool:
        """Whether segment `index`'s ciphertext is already in memory (no file access to get it)."""
        return self._current is not None and self._current[0] == index // self._per_extent

    def segment(self, index: int) -> memoryview:
        extent, within = divmod(index, self._per_extent)
        if self._current is None or self._current[0] != extent:
            self._load(extent)
        assert self._current is not None
        start = within * self._full
        end = min(start + self._full, self._span(extent)[1])
        return memoryview(self._current[1])[start:end]

    def segments(self, index: int, wanted: int) -> tuple[memoryview, int]:
        """Ciphertext of up to `wanted` (>= 1) consecutive segments from `index` on that lie in one extent,
        back to back: (view valid until the next call, how many)."""
        extent, within = divmod(index, self._per_extent)
        if self._current is None or self._current[0] != extent:
            self._load(extent)
        assert self._current is not None
        span_end = self._span(extent)[1]
        count = min(wanted, -(-span_end // self._full) - within)
        start = within * self._full
        return memoryview(self._current[1])[start : min(start + count * self._full, span_end)], count

    def _span(self, extent: int) -> tuple[int, int]:
        """(file offset, length) of an extent."""
        offset = self._header + extent * self._extent_bytes
        return offset, min(self._extent_bytes, self._stream_size - offset)

    def _load(self, extent: int) -> None:
        sequential = extent == (self._current[0] + 1 if self._current is not None else 0)
        if self._current is not None:
            self._spare.append(self._current[1])
            self._current = None
        ahead = self._ahead.pop(extent, None)
        if not sequential:
            self.drop_read_ahead()
        else:
            for following in range(extent + 1, min(extent + self._max_buffers, self._extents)):
                if following not in self._ahead and not self._read_ahead(following):
                    break
        if ahead is not None:
            job, buffer = ahead
            job.wait()
            if job.error is not None:
                self._spare.append(buffer)
                raise job.error
        else:
            buffer = self._buffer()
            offset, length = self._span(extent)
            pread_exact(self._calls, self._fd, memoryview(buffer)[:length], offset)
        self._current = (extent, buffer)

    def _read_ahead(self, extent: int) -> bool:
        if not self._spare and self._made >= self._max_buffers:
            return False
        buffer = self._buffer()
        offset, length = self._span(extent)
        self._ahead[extent] = (
            self._worker.submit(Job(False, memoryview(buffer)[:length], offset, owner=buffer)),
            buffer,
        )
        return True

    def _buffer(self) -> bytearray:
        if self._spare:
            return self._spare.pop()
        self._made += 1
        return bytearray(self._extent_bytes)

    def drop_read_ahead(self) -> None:
        for job, buffer in self._ahead.values():
            job.wait()  # the disk thread owns the buffer until its read is done
            self._spare.append(buffer)
        self._ahead.clear()
