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
