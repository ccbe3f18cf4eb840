"""The backup archive's encryption layer: file objects that let `tarfile` write into and read out of a
streaming AEAD (`cleanroom.crypto.stream`) one segment at a time, so neither side ever holds the whole
archive in plaintext. Both zero their segment buffers when done (`finish`, `wipe`)."""

from __future__ import annotations

import io
from typing import Any, BinaryIO

from cleanroom.crypto.aead import zero_buffer
from cleanroom.crypto.stream import TAG_SIZE_BYTES, StreamDecryptor, StreamEncryptor


def stream_context(header: bytes) -> bytes:
    return b"cleanroom/backup/v1\x00" + header


class SealingWriter(io.RawIOBase):
    """A write-only file that seals whatever is written, one full segment at a time, into `out`."""

    def __init__(self, encryptor: StreamEncryptor, out: BinaryIO) -> None:
        self._encryptor, self._out = encryptor, out
        self._pending = bytearray()
        self._segment = encryptor.segment_size_bytes
        self._sealed = bytearray(self._segment + TAG_SIZE_BYTES)

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._pending += data
        # Keep at least one byte back: the last segment must be sealed with the last flag at close.
        while len(self._pending) > self._segment:
            self._encryptor.encrypt_segment_into(memoryview(self._pending)[: self._segment], self._sealed, last=False)
            self._out.write(self._sealed)
            del self._pending[: self._segment]
        return len(data)

    def finish(self) -> None:
        sealed = bytearray(len(self._pending) + TAG_SIZE_BYTES)
        self._encryptor.encrypt_segment_into(self._pending, sealed, last=True)
        self._out.write(sealed)
        zero_buffer(self._pending)
        zero_buffer(self._sealed)


class OpeningReader(io.RawIOBase):
    """A read-only file over the decrypted stream, segment by segment (any bad segment raises)."""

    def __init__(self, decryptor: StreamDecryptor, source: BinaryIO, stream_start: int) -> None:
        self._decryptor, self._source, self._start = decryptor, source, stream_start
        self._index = 0
        self._buffer = bytearray()
        self._plain = bytearray(decryptor.segment_size_bytes)

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer and self._index < self._decryptor.segment_count:
            size = self._decryptor.segment_plaintext_size(self._index)
            self._source.seek(self._start + self._decryptor.segment_offset(self._index))
            ciphertext = self._source.read(size + TAG_SIZE_BYTES)
            written = self._decryptor.decrypt_segment_into(self._index, ciphertext, self._plain)
            self._buffer += self._plain[:written]
            self._index += 1
        count = min(len(target), len(self._buffer))
        target[:count] = self._buffer[:count]
        del self._buffer[:count]
        return count

    def wipe(self) -> None:
        zero_buffer(self._plain)
