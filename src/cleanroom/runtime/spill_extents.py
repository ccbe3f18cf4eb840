"""Extents: the spill file's segments grouped into one system call each, on the disk thread.

`ExtentWriter` packs sealed segments into ~512 KiB extents and hands each full one to the `DiskWorker`
(write-behind); `ExtentReader` loads ~2 MiB extents ahead of the segment the caller is opening
(read-ahead). Both deal in ciphertext only, like the worker itself.
"""

from __future__ import annotations

import errno
import queue

from cleanroom.runtime.spill_worker import DiskWorker, FileCalls, Job, pread_exact, pwrite_all

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
