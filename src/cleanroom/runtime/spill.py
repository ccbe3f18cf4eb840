"""`SpillFile`: a temp file that only ever holds ciphertext (DESIGN invariant 8).

Data too large for memory is written here and read back later. What reaches the disk is a streaming-AEAD
stream (`cleanroom.crypto.stream`) under a random per-file key that exists only in a `SecureBuffer` in this
process (mlocked best-effort, excluded from core dumps): closing the file zeroes the key, and a crash takes
it with the process, so the ciphertext left behind — if any — can never be opened (crypto-shredding).

The file itself has no name: it is created with `O_TMPFILE` (or, where the filesystem lacks it, created
with `O_EXCL`, mode 0600, and unlinked at once), so a crash leaves no directory entry and the kernel frees
the blocks when the descriptor goes. Plaintext exists only in SecureBuffers (the segment being written, the
segment last decrypted) and in the buffers callers pass to `readinto`.

Model: write everything, then `seek` (which seals the last segment), then read — sequentially or at any
offset (random access decrypts only the segment needed). Writing after the first seek is refused. Any write
error (ENOSPC, EIO, EFBIG) raises `SpillError`, discards the file and shreds the key: nothing half-written
stays readable. Any authentication failure on read raises `SpillIntegrityError` and does the same.
Not thread-safe: one owner at a time, like any file object.

This module is the file object: its state machine, sealing on write, positions, and discard. The rest is
split by job: `spill_io` creates the nameless file and makes the OS calls (no secrets there; tests inject
faults through it), `spill_reader` checks a finished file against what was written and opens segments, and
`spill_worker` is the disk thread — `pwrite`/`preadv` of ~512 KiB ciphertext extents behind (writing) or
ahead of (reading) the AES-GCM on the owner's thread; it only ever holds ciphertext. A write error it meets
surfaces on the next `write` or at the first `seek`, with the same discard-and-shred as a synchronous one.
"""

from __future__ import annotations

import contextlib
import io
import logging
import operator
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from types import TracebackType

from cleanroom.crypto.stream import (
    HEADER_SIZE_BYTES,
    KEY_SIZE_BYTES,
    TAG_SIZE_BYTES,
    StreamEncryptor,
    WritableBuffer,
    ciphertext_size,
)
from cleanroom.errors import SpillError
from cleanroom.memory.secure_buffer import SecureAllocator, SecureBuffer
from cleanroom.runtime.spill_extents import ExtentWriter
from cleanroom.runtime.spill_io import (
    FALLBACK_NAME_PREFIX,
    SpillIO,
    check_private_and_nameless,
    default_directory,
    fill_random,
    spill_error,
    sweep_stale_files,
)
from cleanroom.runtime.spill_reader import SegmentReader
from cleanroom.runtime.spill_worker import DiskWorker, pwrite_all

# The public names, importable from here as before the split (three of them now live in spill_io).
__all__ = ["FALLBACK_NAME_PREFIX", "SPILL_CONTEXT", "SpillFile", "SpillIO", "sweep_stale_files"]

log = logging.getLogger("cleanroom.spill")

DEFAULT_SEGMENT_SIZE_BYTES = 256 * 1024
SPILL_CONTEXT = b"cleanroom.runtime.spill.v1"


class _State(Enum):
    WRITING = "writing"
    READING = "reading"
    CLOSED = "closed"
    FAILED = "failed"


class SpillFile:
    """A write-then-read temporary file whose disk contents are ciphertext only. Use as a context manager.

    `readinto(buffer)` is the primary read path: plaintext goes from a SecureBuffer (or, for whole aligned
    segments, straight from the cipher) into the caller's buffer. `read()` returns `bytes` as a
    convenience and so makes a copy on the Python heap that cannot be zeroed — avoid it for secrets.
    """

    def __init__(
        self,
        directory: Path | None = None,
        *,
        segment_size_bytes: int = DEFAULT_SEGMENT_SIZE_BYTES,
        allocator: SecureAllocator | None = None,
        spill_io: SpillIO | None = None,
    ) -> None:
        self._state = _State.FAILED  # until fully built, so __del__ and close() of a half-built one are safe
        self._fd: int | None = None
        self._key: SecureBuffer | None = None
        self._staging: SecureBuffer | None = None
        self._encryptor: StreamEncryptor | None = None
        self._segments: SegmentReader | None = None
        self._worker: DiskWorker | None = None
        self._writer: ExtentWriter | None = None
        self._extent_buffers: list[bytearray] = []  # the writer's, handed on to the reader
        self.directory = Path(directory) if directory is not None else default_directory()
        if not self.directory.is_dir():
            raise SpillError("the spill directory does not exist or is not a directory", code="spill_misconfigured")
        ciphertext_size(0, segment_size_bytes)  # ValueError for an out-of-range segment size, here and now
        self.segment_size_bytes = segment_size_bytes
        self._io = spill_io or SpillIO()
        allocator = allocator or SecureAllocator()
        with self._discarding("could not create the spill file"):
            self._key = allocator.allocate(KEY_SIZE_BYTES)
            fill_random(self._key.view())
            self._staging = allocator.allocate(segment_size_bytes)
            self._encryptor = StreamEncryptor(
                self._key.view(), context=SPILL_CONTEXT, segment_size_bytes=segment_size_bytes
            )
            self._fd = self._io.open_unlinked(self.directory)
            check_private_and_nameless(self._fd)
            # Not secret (salt and nonce prefix): kept to check the header on disk before reading.
            self._header = bytes(self._encryptor.header)
            pwrite_all(self._io, self._fd, memoryview(self._header), 0)
            self._worker = DiskWorker(self._io, self._fd)  # its thread starts with the first extent
            self._writer = ExtentWriter(
                self._io,
                self._fd,
                self._worker,
                offset=HEADER_SIZE_BYTES,
                segment_full_bytes=segment_size_bytes + TAG_SIZE_BYTES,
            )
        self._staged = 0
        self._plaintext_size = 0
        self._stream_size = 0
        self._position = 0
        self._cached_segment = -1
        self._state = _State.WRITING

    # --- writing --------------------------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append `data`. Whole segments of `data` are sealed straight from it (no copy) as non-last
        segments; a partial segment is staged in a SecureBuffer until it fills up or writing ends.

        So a spill whose writes end on a segment boundary ends with an empty last segment (16 bytes: a
        valid stream, wire-format-stream.md) instead of a copy of its final segment: the copy used to cost
        up to a quarter of the spill's time (measured; all of it with 1 MiB writes and 1 MiB segments).
        """
        self._require_open()
        if self._state is not _State.WRITING:
            raise io.UnsupportedOperation("SpillFile is write-then-read: writing after seek/read is not supported")
        assert self._staging is not None
        source = _byte_view(data, "write")
        segment, total, done = self.segment_size_bytes, source.nbytes, 0
        # Anything part-way (ENOSPC, an interrupt, a fault hook raising something odd): bytes may be staged
        # or sealed that the size does not count, so the spill cannot be trusted any more.
        with self._discarding("spill write failed"), self._staging.view() as staging:
            while done < total:
                if self._staged == segment:  # full, and more bytes follow: not the last segment
                    self._seal(staging, last=False)
                if self._staged == 0 and total - done >= segment:
                    # Whole segments: sealed from the caller's buffer (no copy), as many per call as
                    # the current extent holds.
                    done += self._seal_whole(source[done:], (total - done) // segment)
                    continue
                take = min(segment - self._staged, total - done)
                staging[self._staged : self._staged + take] = source[done : done + take]
                self._staged += take
                done += take
        self._plaintext_size += total
        return total

    def _seal(self, plaintext: memoryview, *, last: bool) -> None:
        """Encrypt one segment here, into the writer's extent buffer; full extents go to the disk thread."""
        assert self._encryptor is not None and self._writer is not None
        out = self._writer.next_segment(plaintext.nbytes + TAG_SIZE_BYTES, last=last)  # raises earlier errors
        self._writer.commit(self._encryptor.encrypt_segment_into(plaintext, out, last=last))
        self._staged = 0

    def _seal_whole(self, source: memoryview, wanted: int) -> int:
        """Seal up to `wanted` full non-last segments from the front of `source`; returns bytes consumed."""
        assert self._encryptor is not None and self._writer is not None
        out, count = self._writer.next_full_segments(wanted)  # raises an earlier write error as OSError
        consumed = count * self.segment_size_bytes
        self._writer.commit(self._encryptor.encrypt_segments_into(source[:consumed], out))
        return consumed

    def _finish_writing(self) -> None:
        """Seal what is staged as the last segment, wait until every extent is on disk, and forget the
        encryptor (no more nonces from it)."""
        assert self._encryptor is not None and self._staging is not None and self._writer is not None
        with self._discarding("spill write failed"):
            with self._staging.view() as staging:
                self._seal(staging[: self._staged], last=True)
            self._extent_buffers = self._writer.flush()
        self._staging.zero()
        self._encryptor.close()
        self._encryptor = None
        self._stream_size = self._writer.offset
        self._writer = None
        self._state = _State.READING

    # --- positioning ----------------------------------------------------------------------------
    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the read position; the first seek ends writing (seals the last segment).

        The arguments are checked first (TypeError for a non-integer offset, as `io` does; ValueError for a
        bad whence or a negative position), so a bad call changes nothing. While writing, the current
        position is the end (what `tell()` says)."""
        self._require_open()
        offset = operator.index(offset)
        if whence not in (io.SEEK_SET, io.SEEK_CUR, io.SEEK_END):
            raise ValueError(f"invalid whence {whence!r}")
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.tell(), io.SEEK_END: self._plaintext_size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        if self._state is _State.WRITING:
            self._finish_writing()
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        self._require_open()
        return self._plaintext_size if self._state is _State.WRITING else self._position

    @property
    def size_bytes(self) -> int:
        """Plaintext bytes written so far."""
        return self._plaintext_size

    # --- reading --------------------------------------------------------------------------------
    def readinto(self, buffer: WritableBuffer) -> int:
        """Decrypt from the current position into `buffer`; returns the byte count (0 at end of file).

        Every byte returned belongs to a segment that authenticated. On an integrity failure the bytes
        this call wrote into `buffer` are zeroed, the spill is discarded and SpillIntegrityError raised.
        A read-only or non-contiguous `buffer` is refused (TypeError) before anything is read.
        """
        self._require_open()
        out = _byte_view(buffer, "readinto")
        if out.readonly:
            raise TypeError("readinto needs a writable buffer (bytearray, memoryview of one, SecureBuffer.view())")
        reader = self._reader()
        done = 0
        try:
            while done < out.nbytes and self._position < self._plaintext_size:
                index, within = divmod(self._position, self.segment_size_bytes)
                segment_size = reader.segment_plaintext_size(index)
                room = out.nbytes - done
                if within == 0 and room >= segment_size and index != self._cached_segment:
                    # Whole segments straight into the caller's buffer: as many per call as fit in it
                    # and lie in one extent (a segment is at most segment_size_bytes).
                    wanted = max(1, min(room // self.segment_size_bytes, reader.segment_count - index))
                    count = reader.load_segments(index, wanted, out[done:])
                else:
                    assert self._staging is not None
                    with self._staging.view() as staging:
                        if index != self._cached_segment:
                            self._cached_segment = -1
                            reader.load_segment(index, staging)
                            self._cached_segment = index
                        count = min(segment_size - within, room)
                        out[done : done + count] = staging[within : within + count]
                done += count
                self._position += count
        except BaseException:
            # An integrity or I/O failure (already a SpillIntegrityError/SpillError), or anything else
            # part-way: the failed segment's target was zeroed by the decryptor, the rest of this call's
            # bytes are zeroed here, and the spill is not used again.
            out[:done] = bytes(done)
            self._discard()
            raise
        return done

    def read(self, size: int | None = -1) -> bytes:
        """Convenience: returns a `bytes` copy on the Python heap (cannot be zeroed); prefer `readinto`."""
        size = -1 if size is None else operator.index(size)
        self._reader()
        available = max(0, self._plaintext_size - self._position)
        size = available if size < 0 else min(size, available)
        scratch = bytearray(size)
        try:
            count = self.readinto(scratch)
            return bytes(scratch[:count])
        finally:
            scratch[:] = bytes(len(scratch))

    def _reader(self) -> SegmentReader:
        """The authenticated read side, built on first read (spill_reader checks the file's size and header
        against what was written). Any error building it discards the spill."""
        self._require_open()
        if self._state is _State.WRITING:
            self._finish_writing()
        if self._segments is None:
            assert self._key is not None and self._fd is not None and self._worker is not None
            try:
                self._segments = SegmentReader(
                    self._io,
                    self._fd,
                    self._worker,
                    self._key.view(),
                    context=SPILL_CONTEXT,
                    header=self._header,
                    plaintext_size=self._plaintext_size,
                    stream_size=self._stream_size,
                    buffers=self._extent_buffers,
                )
            except BaseException:
                self._discard()
                raise
            self._extent_buffers = []
        return self._segments

    # --- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        """Shred: zero the key and every plaintext buffer, then drop the file. Safe to call twice."""
        if self._state is _State.CLOSED:
            return
        self._discard()
        self._state = _State.CLOSED

    @contextlib.contextmanager
    def _discarding(self, what: str) -> Iterator[None]:
        """Any error in the block discards the spill (key zeroed, file truncated and closed); an OSError
        comes out as the SpillError naming its errno, anything else as it was."""
        try:
            yield
        except BaseException as exc:
            self._discard()
            if isinstance(exc, OSError):
                raise spill_error(what, exc) from exc
            raise

    def _discard(self) -> None:
        """Zero and release everything; afterwards the file (if any bytes survive) can never be opened."""
        self._state = _State.FAILED
        self._cached_segment = -1
        if self._worker is not None:
            # First: no pwrite/pread may run once the descriptor is truncated and closed (its number could
            # be reused by then). stop() skips the jobs not yet started and waits for the one running.
            self._worker.stop()
        self._worker = self._writer = None
        self._extent_buffers = []
        if self._encryptor is not None:
            self._encryptor.close()
        if self._segments is not None:
            self._segments.close()
        self._encryptor = self._segments = None
        for buffer in (self._key, self._staging):
            if buffer is not None:
                buffer.close()  # zeroes first
        self._key = self._staging = None
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                self._io.discard(fd)

    def _require_open(self) -> None:
        if self._state is _State.CLOSED:
            raise ValueError("I/O operation on a closed SpillFile")
        if self._state is _State.FAILED:
            raise SpillError("this spill file failed earlier and was discarded; its data is gone")

    @property
    def closed(self) -> bool:
        return self._state is _State.CLOSED

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return self._state is _State.WRITING

    def seekable(self) -> bool:
        return True

    def flush(self) -> None:
        """Nothing to flush: segments reach the file when sealed; the last one on the first seek."""

    def __enter__(self) -> SpillFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_state", _State.CLOSED) is not _State.CLOSED and (
            getattr(self, "_key", None) is not None or getattr(self, "_fd", None) is not None
        ):
            log.error("SpillFile was never closed; shredding it at garbage collection")
            self._discard()

    def __repr__(self) -> str:
        return (
            f"SpillFile(state={self._state.value}, size_bytes={self.size_bytes}, "
            f"segment_size_bytes={self.segment_size_bytes})"
        )


def _byte_view(data: object, what: str) -> memoryview:
    """A flat byte view of `data` without copying it; TypeError for what cannot be one."""
    try:
        return memoryview(data).cast("B")  # type: ignore[arg-type]
    except TypeError as exc:
        raise TypeError(
            f"SpillFile.{what} needs a C-contiguous bytes-like object (bytes, bytearray, memoryview, array): {exc}"
        ) from None
