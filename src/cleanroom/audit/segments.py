"""Segment files: naming, listing, and a frame scanner that survives damage.

The scanner walks the frames of one segment and reports every byte range as either a frame or a damaged
region. After damage it resynchronises on the next frame magic that parses (and, given the audit key,
authenticates), so one flipped length field does not hide every later record from `verify`.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cleanroom.audit.fileio import fsync_directory, open_regular, require_in_place, write_fully
from cleanroom.audit.records import (
    FRAME_HEADER_LEN,
    FRAME_MAGIC,
    FrameHeader,
    RecordCipher,
    RecordFormatError,
    parse_frame_header,
)

SEGMENT_RE = re.compile(r"^segment-(\d{8})\.log$")


def segment_name(index: int) -> str:
    return f"segment-{index:08d}.log"


def list_segments(audit_dir: Path) -> list[tuple[int, Path]]:
    """(index, path) of every segment file, by index. Other files are ignored."""
    found = []
    for path in audit_dir.iterdir() if audit_dir.is_dir() else ():
        match = SEGMENT_RE.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


@dataclass(frozen=True)
class Frame:
    """A well-framed record. `plaintext` is None when no cipher was given or it did not authenticate."""

    offset: int
    raw: bytes
    header: FrameHeader
    authentic: bool | None
    plaintext: bytes | None

    @property
    def end(self) -> int:
        return self.offset + len(self.raw)


@dataclass(frozen=True)
class Damage:
    """Bytes that are not a frame. `to_eof`: the damage runs to the end of the file (torn-tail shape)."""

    offset: int
    length: int
    reason: str
    claimed_seq: int | None
    to_eof: bool

    @property
    def end(self) -> int:
        return self.offset + self.length


Buffer = bytes | mmap.mmap


def _try_frame(
    data: Buffer, offset: int, cipher: RecordCipher | None, segment_index: int, limit: int
) -> tuple[Frame | None, str, FrameHeader | None]:
    if limit - offset < FRAME_HEADER_LEN:
        return None, "frame header cut short", None
    try:
        header = parse_frame_header(data, offset)
    except RecordFormatError as exc:
        return None, str(exc), None
    end = offset + header.frame_len
    if end > limit:
        return None, f"frame of {header.frame_len} bytes runs past the end of the file", header
    raw = data[offset:end]
    if cipher is None:
        return Frame(offset, raw, header, None, None), "", header
    try:
        _, plaintext = cipher.open(raw, segment_index, header)
    except RecordFormatError as exc:
        return Frame(offset, raw, header, False, None), str(exc), header
    return Frame(offset, raw, header, True, plaintext), "", header


def _next_valid(data: Buffer, start: int, cipher: RecordCipher | None, segment_index: int, limit: int) -> Frame | None:
    pos = data.find(FRAME_MAGIC, start, limit)
    while pos >= 0:
        frame, _, _ = _try_frame(data, pos, cipher, segment_index, limit)
        if frame is not None and frame.authentic is not False:
            return frame
        pos = data.find(FRAME_MAGIC, pos + 1, limit)
    return None


def scan_frames(
    data: Buffer, start: int, segment_index: int, cipher: RecordCipher | None = None, end: int | None = None
) -> Iterator[Frame | Damage]:
    """Yield frames and damaged regions covering data[start:end] in order, without gaps."""
    limit = len(data) if end is None else min(end, len(data))
    offset = start
    while offset < limit:
        frame, reason, header = _try_frame(data, offset, cipher, segment_index, limit)
        if frame is not None and frame.authentic is not False:
            yield frame
            offset = frame.end
            continue
        following = _next_valid(data, offset + 1, cipher, segment_index, limit)
        ends_cleanly = frame is not None and (
            (following is None and frame.end == limit) or (following is not None and following.offset == frame.end)
        )
        if frame is not None and ends_cleanly:
            # Framing is intact, only the contents fail: a modified (or forged) record.
            yield frame
            offset = frame.end
            continue
        stop = limit if following is None else following.offset
        yield Damage(
            offset=offset,
            length=stop - offset,
            reason=reason,
            claimed_seq=None if header is None else header.seq,
            to_eof=following is None,
        )
        offset = stop


def with_hole_tail(items: Iterator[Frame | Damage], data_end: int, size: int) -> Iterator[Frame | Damage]:
    """`scan_frames` items of data[:data_end], then the file's unread rest [data_end, size) as damage running
    to the end of the file (merged with a damaged region that already ran to data_end)."""
    last: Frame | Damage | None = None
    for item in items:
        if last is not None:
            yield last
        last = item
    if data_end >= size:
        if last is not None:
            yield last
        return
    if isinstance(last, Damage) and last.end == data_end:
        yield Damage(last.offset, size - last.offset, last.reason, last.claimed_seq, to_eof=True)
        return
    if last is not None:
        yield last
    yield Damage(data_end, size - data_end, f"{size - data_end} bytes of holes (never written)", None, to_eof=True)


class SegmentWriter:
    """The segment being appended to: creates, rotates, syncs and rolls back segment files.

    Segments are created as a temp file holding the header, fsynced, then renamed into place (and the
    directory fsynced), so a segment file never exists with a torn header. Before rotating away from a
    segment it is fsynced: every segment but the last is complete on disk whatever the fsync policy.
    """

    def __init__(self, directory: Path, cipher: RecordCipher) -> None:
        self.directory = directory
        self._cipher = cipher
        self.fd = -1
        self.index = 0
        self.unsynced = False

    def create(self, index: int, first_seq: int) -> None:
        path = self.directory / segment_name(index)
        tmp = path.with_name(path.name + ".tmp")
        # A stale temp file (a crash mid-rotation) is removed, never opened: O_EXCL | O_NOFOLLOW, so a
        # symlink planted under this name cannot make the writer truncate and fill the file it names.
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            write_fully(fd, self._cipher.make_segment_header(index, first_seq))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        fsync_directory(self.directory)

    def open(self, index: int) -> None:
        self.close()
        self.fd = open_regular(self.directory / segment_name(index), os.O_WRONLY | os.O_APPEND, follow=False)
        self.index = index

    def rotate_to(self, index: int, first_seq: int) -> None:
        os.fsync(self.fd)
        self.create(index, first_seq)
        self.open(index)

    def write(self, data: bytes) -> None:
        self.unsynced = True
        write_fully(self.fd, data)

    def sync(self) -> None:
        """fdatasync, then check that the file synced is still the segment in the directory (two stat
        calls per fdatasync); an OSError here must not be retried (the caller marks the log broken)."""
        os.fdatasync(self.fd)
        self.unsynced = False
        require_in_place(self.fd, self.directory / segment_name(self.index))

    def roll_back(self, created: list[int], index: int, size: int) -> None:
        """Undo a failed batch: remove segments it created, cut segment `index` back to `size` bytes."""
        for segment in created:
            if self.index == segment:
                self.close()
            with contextlib.suppress(FileNotFoundError):
                (self.directory / segment_name(segment)).unlink()
        if created:
            # Persist the removal: after a power loss a resurrected segment would hold a first_seq that
            # the records written since then reuse, and the log would refuse to open.
            fsync_directory(self.directory)
        if self.index != index or self.fd < 0:
            self.open(index)
        os.ftruncate(self.fd, size)
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
