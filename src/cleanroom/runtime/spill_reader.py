"""Opening a finished spill for reading: every byte handed out belongs to a segment that authenticated.

Split from `spill.py` (which keeps the file object: positions, the write-then-read state machine, discard)
because this is the one job with its own trust decisions: it checks the file against what the writer
remembers (length, header) before any segment is opened, builds the decryptor, reads ciphertext through the
disk thread's read-ahead, and turns every way a file can be wrong — truncated, extended, a header swapped
for another valid one, a flipped or moved segment — into `SpillIntegrityError`, and I/O errors into
`SpillError`. The owner discards the spill on any error raised here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cleanroom.crypto.stream import HEADER_SIZE_BYTES, TAG_SIZE_BYTES, StreamDecryptor
from cleanroom.errors import CleanroomError, SpillIntegrityError
from cleanroom.runtime.spill_extents import ExtentReader
from cleanroom.runtime.spill_io import SpillIO, spill_error
from cleanroom.runtime.spill_worker import DiskWorker, ShortRead, pread_exact


class SegmentReader:
    """Authenticated segments of one spill file (built at the first read, after the last segment is sealed).

    The file's size and header are compared with the `stream_size` and `header` the writer kept in memory
    before any segment is opened: a valid header with another segment size moves every segment boundary,
    and a random-access read used to trip over that geometry with a ValueError before any tag was checked.
    """

    def __init__(
        self,
        calls: SpillIO,
        fd: int,
        worker: DiskWorker,
        key: memoryview,
        *,
        context: bytes,
        header: bytes,
        plaintext_size: int,
        stream_size: int,
        buffers: list[bytearray],
    ) -> None:
        self._calls, self._fd, self._stream_size = calls, fd, stream_size
        self._decryptor: StreamDecryptor | None = None
        self._extents: ExtentReader | None = None
        try:
            self._open(key, context, header, plaintext_size, worker, buffers)
        except BaseException:
            self.close()  # the key schedule goes at once, not at garbage collection
            raise

    def _open(
        self,
        key: memoryview,
        context: bytes,
        header: bytes,
        plaintext_size: int,
        worker: DiskWorker,
        buffers: list[bytearray],
    ) -> None:
        calls, fd, stream_size = self._calls, self._fd, self._stream_size
        try:
            self._check_size()
            on_disk = bytearray(HEADER_SIZE_BYTES)
            pread_exact(calls, fd, memoryview(on_disk), 0)
            # The on-disk size, not the remembered one: the last-segment flag then catches a changed length
            # even without _check_size (defence in depth).
            self._decryptor = StreamDecryptor(key, on_disk, calls.size_bytes(fd), context=context)
            if on_disk != header or self._decryptor.plaintext_size_bytes != plaintext_size:
                raise SpillIntegrityError("the spill file's header was replaced")
            self._extents = ExtentReader(
                calls,
                fd,
                worker,
                header_bytes=HEADER_SIZE_BYTES,
                # The header is the one written (checked above), so this is the segment size written.
                segment_full_bytes=self._decryptor.segment_size_bytes + TAG_SIZE_BYTES,
                stream_size=stream_size,
                buffers=buffers,
            )
            self._open_empty_last_segment()
        except SpillIntegrityError:
            raise
        except ShortRead:
            raise SpillIntegrityError("the spill file ended early") from None
        except CleanroomError as exc:
            raise SpillIntegrityError("the spill file does not authenticate") from exc
        except OSError as exc:
            raise spill_error("spill read failed", exc) from exc

    @property
    def segment_count(self) -> int:
        return self._live().segment_count

    def segment_plaintext_size(self, index: int) -> int:
        return self._live().segment_plaintext_size(index)

    def load_segment(self, index: int, target: memoryview) -> None:
        """Read and open one segment into `target`; raises SpillIntegrityError or SpillError."""
        decryptor = self._live()
        assert self._extents is not None
        with _read_failures(f"spill segment {index}"):
            if not self._extents.loaded(index):
                # Before using ciphertext that comes from the file: the size must be the one we wrote. (A
                # segment of the extent already in memory was read, and this checked, moments ago.)
                self._check_size()
            ciphertext = self._extents.segment(index)  # read ahead on the disk thread when in order
            decryptor.decrypt_segment_into(index, ciphertext, target)  # zeroes target on failure

    def load_segments(self, index: int, wanted: int, target: memoryview) -> int:
        """Read and open up to `wanted` segments from `index` on (as many as lie in one extent) into the
        front of `target`; returns the plaintext bytes. Raises SpillIntegrityError or SpillError."""
        decryptor = self._live()
        assert self._extents is not None
        with _read_failures(f"spill segments from {index} on"):
            if not self._extents.loaded(index):
                self._check_size()  # as in load_segment
            ciphertext, count = self._extents.segments(index, wanted)
            return decryptor.decrypt_segments_into(index, count, ciphertext, target)  # zeroes on failure

    def close(self) -> None:
        """Forget the key schedule and the extent buffers (the owner stops the disk thread first)."""
        if self._decryptor is not None:
            self._decryptor.close()
        self._decryptor = self._extents = None

    def _open_empty_last_segment(self) -> None:
        """An empty last segment carries no bytes, so no read would ever open it: authenticate it now, so
        that every segment of the file has been checked by the time a read reaches the end."""
        last = self.segment_count - 1
        if self.segment_plaintext_size(last) == 0:
            self.load_segment(last, memoryview(bytearray(0)))

    def _check_size(self) -> None:
        """The size we wrote is kept in memory: a truncated or extended file fails before any decryption."""
        if self._calls.size_bytes(self._fd) != self._stream_size:
            raise SpillIntegrityError("the spill file changed size: truncated or extended")

    def _live(self) -> StreamDecryptor:
        if self._decryptor is None:
            raise ValueError("the spill reader is closed")
        return self._decryptor


@contextmanager
def _read_failures(what: str) -> Iterator[None]:
    """Reading a spill back fails in two ways only: SpillIntegrityError (the file is not what was written:
    short, or a segment that does not authenticate) or SpillError (the OS failed the read)."""
    try:
        yield
    except SpillIntegrityError:
        raise
    except ShortRead:
        raise SpillIntegrityError("the spill file ended early") from None
    except CleanroomError as exc:
        raise SpillIntegrityError(f"{what} does not authenticate") from exc
    except OSError as exc:
        raise spill_error("spill read failed", exc) from exc
