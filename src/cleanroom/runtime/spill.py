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

Throughput: the file calls run on a disk thread (`spill_worker`) while the owner's thread runs AES-GCM —
write-behind of sealed segments grouped into ~1 MiB extents (at most three in flight, so memory stays
bounded) and read-ahead of the next extents when reading in order. That thread only ever holds ciphertext.
A write error found by the disk thread surfaces on the next `write` or at the first `seek` (which waits
for every pending write), with the same discard-and-shred as a synchronous one.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import operator
import os
import secrets
import stat
from enum import Enum
from pathlib import Path
from types import TracebackType

from cleanroom.crypto.stream import (
    HEADER_SIZE_BYTES,
    KEY_SIZE_BYTES,
    TAG_SIZE_BYTES,
    StreamDecryptor,
    StreamEncryptor,
    WritableBuffer,
    ciphertext_size,
)
from cleanroom.errors import CleanroomError, SpillError, SpillIntegrityError
from cleanroom.memory.secure_buffer import SecureAllocator, SecureBuffer
from cleanroom.runtime.spill_worker import DiskWorker, ExtentReader, ExtentWriter, ShortRead, pread_exact, pwrite_all

log = logging.getLogger("cleanroom.spill")

DEFAULT_SEGMENT_SIZE_BYTES = 256 * 1024
SPILL_CONTEXT = b"cleanroom.runtime.spill.v1"
FALLBACK_NAME_PREFIX = ".cleanroom-spill-"
_FILE_MODE = 0o600
# Errors that mean "this filesystem or kernel has no O_TMPFILE": fall back to create-and-unlink.
_NO_TMPFILE_ERRNOS = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})


class SpillIO:
    """The OS calls a SpillFile makes, in one injectable object.

    Tests pass a subclass that fails `pwrite` with ENOSPC or EIO (dependency injection instead of patching
    `os` globally); `use_tmpfile=False` forces the create-and-unlink fallback.
    """

    def __init__(self, *, use_tmpfile: bool = True) -> None:
        self.use_tmpfile = use_tmpfile

    def open_unlinked(self, directory: Path) -> int:
        """An O_RDWR descriptor on a new, nameless regular file in `directory`, mode 0600."""
        if self.use_tmpfile and hasattr(os, "O_TMPFILE"):
            try:
                return self.open_tmpfile(directory)
            except OSError as exc:
                if exc.errno not in _NO_TMPFILE_ERRNOS:
                    raise
                log.info("O_TMPFILE unsupported in the spill directory; using create-and-unlink")
        return self.create_and_unlink(directory)

    def open_tmpfile(self, directory: Path) -> int:
        """Linux O_TMPFILE: the inode never has a name, so no crash can leave one behind. O_EXCL keeps it
        that way (open(2)): without it, anyone who reaches /proc/PID/fd (the same uid) could give the file
        a name with linkat(AT_SYMLINK_FOLLOW or AT_EMPTY_PATH), and it would then outlive the process."""
        return os.open(directory, os.O_RDWR | os.O_CLOEXEC | os.O_TMPFILE | os.O_EXCL, _FILE_MODE)

    def create_and_unlink(self, directory: Path) -> int:
        """Fallback: a random name, O_EXCL|O_NOFOLLOW (no symlink games), mode 0600, unlinked at once.
        A crash between the two calls leaves an empty file named `.cleanroom-spill-*` (no data yet)."""
        flags = os.O_RDWR | os.O_CLOEXEC
        for _ in range(8):
            path = directory / f"{FALLBACK_NAME_PREFIX}{secrets.token_hex(16)}"
            try:
                fd = os.open(path, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, _FILE_MODE)
            except FileExistsError:
                continue
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass  # already unlinked (a start-up sweep, see sweep_stale_files); the fstat check follows
            except BaseException:
                os.close(fd)
                raise
            return fd
        raise FileExistsError(errno.EEXIST, "could not create a unique spill file name")

    def pwrite(self, fd: int, data: memoryview, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def preadinto(self, fd: int, buffer: memoryview, offset: int) -> int:
        return os.preadv(fd, [buffer], offset)

    def size_bytes(self, fd: int) -> int:
        return os.fstat(fd).st_size

    def discard(self, fd: int) -> None:
        """Drop the data blocks now (best effort), then close: a nameless inode is freed on last close."""
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)


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
        self._decryptor: StreamDecryptor | None = None
        self._worker: DiskWorker | None = None
        self._writer: ExtentWriter | None = None
        self._extent_reader: ExtentReader | None = None
        self._extent_buffers: list[bytearray] = []  # the writer's, handed on to the reader
        self.directory = Path(directory) if directory is not None else Path(_default_directory())
        if not self.directory.is_dir():
            raise SpillError("the spill directory does not exist or is not a directory", code="spill_misconfigured")
        ciphertext_size(0, segment_size_bytes)  # ValueError for an out-of-range segment size, here and now
        self.segment_size_bytes = segment_size_bytes
        self._io = spill_io or SpillIO()
        allocator = allocator or SecureAllocator()
        try:
            self._key = allocator.allocate(KEY_SIZE_BYTES)
            _fill_random(self._key.view())
            self._staging = allocator.allocate(segment_size_bytes)
            self._encryptor = StreamEncryptor(
                self._key.view(), context=SPILL_CONTEXT, segment_size_bytes=segment_size_bytes
            )
            self._fd = self._io.open_unlinked(self.directory)
            _check_private_and_nameless(self._fd)
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
        except OSError as exc:
            self._discard()
            raise _spill_error("could not create the spill file", exc) from exc
        except BaseException:
            self._discard()
            raise
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
        try:
            with self._staging.view() as staging:
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
        except OSError as exc:
            self._discard()
            raise _spill_error("spill write failed", exc) from exc
        except BaseException:
            # Anything else part-way (an interrupt, a fault hook raising something odd): bytes may be staged
            # or sealed that the size does not count, so the spill cannot be trusted any more.
            self._discard()
            raise
        self._plaintext_size += total
        return total

    def _seal(self, plaintext: memoryview, *, last: bool) -> None:
        """Encrypt one segment here, into the writer's extent buffer; full extents go to the disk thread."""
        assert self._encryptor is not None and self._writer is not None
        size = plaintext.nbytes + TAG_SIZE_BYTES
        out = self._writer.next_segment(size, last=last)  # raises an earlier write error as OSError
        self._encryptor.encrypt_segment_into(plaintext, out, last=last)
        self._writer.commit(size)
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
        try:
            with self._staging.view() as staging:
                self._seal(staging[: self._staged], last=True)
            self._extent_buffers = self._writer.flush()
        except OSError as exc:
            self._discard()
            raise _spill_error("spill write failed", exc) from exc
        except BaseException:
            self._discard()
            raise
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
        decryptor = self._reader()
        done = 0
        try:
            while done < out.nbytes and self._position < self._plaintext_size:
                index, within = divmod(self._position, self.segment_size_bytes)
                segment_size = decryptor.segment_plaintext_size(index)
                room = out.nbytes - done
                if within == 0 and room >= segment_size and index != self._cached_segment:
                    # Whole segments straight into the caller's buffer: as many per call as fit in it
                    # and lie in one extent (a segment is at most segment_size_bytes).
                    wanted = max(1, min(room // self.segment_size_bytes, decryptor.segment_count - index))
                    count = self._load_segments(index, wanted, out[done:])
                else:
                    assert self._staging is not None
                    with self._staging.view() as staging:
                        if index != self._cached_segment:
                            self._cached_segment = -1
                            self._load_segment(index, staging)
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

    def _reader(self) -> StreamDecryptor:
        """The decryptor, built on first read from the header and size found on disk."""
        self._require_open()
        if self._state is _State.WRITING:
            self._finish_writing()
        if self._decryptor is None:
            assert self._key is not None
            header = bytearray(HEADER_SIZE_BYTES)
            assert self._fd is not None
            try:
                self._check_size()
                self._pread_exact(memoryview(header), 0)
                # The on-disk size, not the remembered one: the last-segment flag then catches a changed
                # length even without _check_size (defence in depth).
                self._decryptor = StreamDecryptor(
                    self._key.view(), header, self._io.size_bytes(self._fd), context=SPILL_CONTEXT
                )
                # The header must also be the one written: another valid one (another segment size moves
                # every segment boundary) would otherwise fail only once a segment is opened, and a
                # random-access read tripped over the other geometry first (ValueError, spill not discarded).
                if header != self._header or self._decryptor.plaintext_size_bytes != self._plaintext_size:
                    raise SpillIntegrityError("the spill file's header was replaced")
                assert self._worker is not None
                self._extent_reader = ExtentReader(
                    self._io,
                    self._fd,
                    self._worker,
                    header_bytes=HEADER_SIZE_BYTES,
                    segment_full_bytes=self.segment_size_bytes + TAG_SIZE_BYTES,
                    stream_size=self._stream_size,
                    buffers=self._extent_buffers,
                )
                self._extent_buffers = []
                self._open_empty_last_segment()
            except SpillIntegrityError:
                self._discard()
                raise
            except CleanroomError as exc:
                self._discard()
                raise SpillIntegrityError("the spill file does not authenticate") from exc
            except OSError as exc:
                self._discard()
                raise _spill_error("spill read failed", exc) from exc
        return self._decryptor

    def _open_empty_last_segment(self) -> None:
        """An empty last segment carries no bytes, so no read would ever open it: authenticate it now, so
        that every segment of the file has been checked by the time a read reaches the end."""
        assert self._decryptor is not None
        last = self._decryptor.segment_count - 1
        if self._decryptor.segment_plaintext_size(last) == 0:
            self._load_segment(last, memoryview(bytearray(0)))

    def _load_segment(self, index: int, target: memoryview) -> None:
        """Read and open one segment into `target`; raises SpillIntegrityError or SpillError (caller discards)."""
        assert self._decryptor is not None and self._extent_reader is not None
        try:
            if not self._extent_reader.loaded(index):
                # Before using ciphertext that comes from the file: the size must be the one we wrote. (A
                # segment of the extent already in memory was read, and this checked, moments ago.)
                self._check_size()
            ciphertext = self._extent_reader.segment(index)  # read ahead on the disk thread when in order
            self._decryptor.decrypt_segment_into(index, ciphertext, target)  # zeroes target on failure
        except SpillIntegrityError:
            raise
        except ShortRead:
            raise SpillIntegrityError("the spill file ended early") from None
        except CleanroomError as exc:
            raise SpillIntegrityError(f"spill segment {index} does not authenticate") from exc
        except OSError as exc:
            raise _spill_error("spill read failed", exc) from exc

    def _load_segments(self, index: int, wanted: int, target: memoryview) -> int:
        """Read and open up to `wanted` segments from `index` on into the front of `target`; returns the
        plaintext bytes. Raises SpillIntegrityError or SpillError (caller discards)."""
        assert self._decryptor is not None and self._extent_reader is not None
        try:
            if not self._extent_reader.loaded(index):
                self._check_size()  # as in _load_segment
            ciphertext, count = self._extent_reader.segments(index, wanted)
            return self._decryptor.decrypt_segments_into(index, count, ciphertext, target)  # zeroes on failure
        except SpillIntegrityError:
            raise
        except ShortRead:
            raise SpillIntegrityError("the spill file ended early") from None
        except CleanroomError as exc:
            raise SpillIntegrityError(f"spill segments from {index} on do not authenticate") from exc
        except OSError as exc:
            raise _spill_error("spill read failed", exc) from exc

    def _check_size(self) -> None:
        """The size we wrote is kept in memory: a truncated or extended file fails before any decryption."""
        assert self._fd is not None
        if self._io.size_bytes(self._fd) != self._stream_size:
            raise SpillIntegrityError("the spill file changed size: truncated or extended")

    def _pread_exact(self, buffer: memoryview, offset: int) -> None:
        assert self._fd is not None
        try:
            pread_exact(self._io, self._fd, buffer, offset)
        except ShortRead:
            raise SpillIntegrityError("the spill file ended early") from None

    # --- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        """Shred: zero the key and every plaintext buffer, then drop the file. Safe to call twice."""
        if self._state is _State.CLOSED:
            return
        self._discard()
        self._state = _State.CLOSED

    def _discard(self) -> None:
        """Zero and release everything; afterwards the file (if any bytes survive) can never be opened."""
        self._state = _State.FAILED
        self._cached_segment = -1
        if self._worker is not None:
            # First: no pwrite/pread may run once the descriptor is truncated and closed (its number could
            # be reused by then). stop() skips the jobs not yet started and waits for the one running.
            self._worker.stop()
        self._worker = self._writer = self._extent_reader = None
        self._extent_buffers = []
        for cipher in (self._encryptor, self._decryptor):
            if cipher is not None:
                cipher.close()
        self._encryptor = self._decryptor = None
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


def _default_directory() -> str:
    import tempfile

    return tempfile.gettempdir()


def _byte_view(data: object, what: str) -> memoryview:
    """A flat byte view of `data` without copying it; TypeError for what cannot be one."""
    try:
        return memoryview(data).cast("B")  # type: ignore[arg-type]
    except TypeError as exc:
        raise TypeError(
            f"SpillFile.{what} needs a C-contiguous bytes-like object (bytes, bytearray, memoryview, array): {exc}"
        ) from None


def sweep_stale_files(directory: Path) -> int:
    """Remove what crashed create-and-unlink fallbacks left in `directory`: `.cleanroom-spill-*` names.

    Such a name exists only between the fallback's `open(O_EXCL)` and its `unlink` (no byte is written
    before the unlink), so a leftover is an empty file of a process that died in between. Run at start-up
    (the batch store does); a spill being created meanwhile by another process finds its name gone and
    carries on (its descriptor holds the inode). Only empty regular files of this user go: symlinks,
    directories, files with data and other users' files of that name are left alone (a shared directory,
    or a server run as root, must not delete what is not its own). Returns how many entries were removed."""
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(FALLBACK_NAME_PREFIX):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or info.st_size or info.st_uid != os.geteuid():
                continue
            os.unlink(entry.path)
            removed += 1
        except OSError:
            continue
    if removed:
        log.warning("removed %d stale spill file name(s) left by a crash in %s", removed, directory)
    return removed


def _fill_random(view: memoryview) -> None:
    """Read the key from the kernel straight into the SecureBuffer: os.urandom would leave a heap copy."""
    with open("/dev/urandom", "rb", buffering=0) as source:
        filled = 0
        while filled < view.nbytes:
            count = source.readinto(view[filled:])
            if not count:
                raise OSError(errno.EIO, "short read from /dev/urandom")
            filled += count


def _check_private_and_nameless(fd: int) -> None:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o077 or info.st_nlink != 0:
        raise OSError(errno.EPERM, "spill file is not a private, unlinked regular file")


def _spill_error(what: str, exc: OSError) -> SpillError:
    name = errno.errorcode.get(exc.errno or 0, "unknown")
    log.warning("%s: %s (%s)", what, exc.strerror, name)
    hint = " (disk full?)" if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else ""
    return SpillError(f"{what}: {exc.strerror or exc} [{name}]{hint}; the partial spill file was discarded")
