"""The batched stream calls the spill uses (`encrypt_segments_into`, `decrypt_segments_into`): byte-identical
to one call per segment (so the wire format, and the vectors in test_stream.py, are unchanged), and every
check of the one-segment calls — bounds before slicing, last-segment flag, tamper, zeroing on failure."""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cleanroom.crypto.stream import HEADER_SIZE_BYTES, TAG_SIZE_BYTES, StreamDecryptor, StreamEncryptor
from cleanroom.errors import DecryptionFailed, InvalidSealedMessage

SEG = 64 * 1024
FULL = SEG + TAG_SIZE_BYTES
KEY = bytes(range(32))
SALT, PREFIX, CONTEXT = bytes(range(100, 132)), bytes(range(7)), b"ctx"


def fixed_encryptor() -> StreamEncryptor:
    return StreamEncryptor._with_fixed_header_for_test_vectors(
        KEY, context=CONTEXT, segment_size_bytes=SEG, salt=SALT, nonce_prefix=PREFIX
    )


def plaintext(size: int) -> bytes:
    return bytes(i % 251 for i in range(size))


def sealed_batched(data: bytes, batches: list[int]) -> bytes:
    """Full segments in batches of the given counts, then the rest as the last segment."""
    encryptor = fixed_encryptor()
    out = [encryptor.header]
    position = 0
    for count in batches:
        buffer = bytearray(count * FULL)
        assert encryptor.encrypt_segments_into(data[position : position + count * SEG], buffer) == len(buffer)
        out.append(bytes(buffer))
        position += count * SEG
    last = bytearray(len(data) - position + TAG_SIZE_BYTES)
    encryptor.encrypt_segment_into(data[position:], last, last=True)
    out.append(bytes(last))
    return b"".join(out)


def sealed_reference(data: bytes) -> bytes:
    """From the documented layout (docs/wire-format-stream.md) with plain HKDF and AESGCM.encrypt."""
    header = b"CRST\x01" + struct.pack(">I", SEG) + SALT + PREFIX
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=SALT, info=b"cleanroom/stream/v1\x00" + CONTEXT).derive(KEY)
    aead = AESGCM(key)
    chunks = [data[i : i + SEG] for i in range(0, len(data), SEG)]
    if not chunks or len(chunks[-1]) == SEG:
        chunks.append(b"")  # the spill's layout: a stream ending on a boundary ends with an empty last segment
    parts = [header]
    for index, chunk in enumerate(chunks):
        flag = b"\x01" if index == len(chunks) - 1 else b"\x00"
        parts.append(aead.encrypt(PREFIX + struct.pack(">I", index) + flag, chunk, header + CONTEXT))
    return b"".join(parts)


@pytest.mark.parametrize(
    ("size", "batches"),
    [(5 * SEG + 123, [5]), (5 * SEG + 123, [1, 3, 1]), (4 * SEG, [2, 2]), (SEG, [1]), (7 * SEG + 1, [7])],
)
def test_batched_sealing_is_byte_identical_to_the_documented_layout(size: int, batches: list[int]) -> None:
    data = plaintext(size)
    assert sealed_batched(data, batches) == sealed_reference(data)


def test_encrypt_segments_into_checks_sizes_and_refuses_after_the_last_segment() -> None:
    encryptor = fixed_encryptor()
    with pytest.raises(ValueError, match="multiple"):
        encryptor.encrypt_segments_into(bytes(SEG + 1), bytearray(2 * FULL))
    with pytest.raises(ValueError, match="multiple"):
        encryptor.encrypt_segments_into(b"", bytearray(0))
    with pytest.raises(ValueError, match="exactly"):
        encryptor.encrypt_segments_into(bytes(2 * SEG), bytearray(2 * FULL - 1))
    encryptor.encrypt_segments_into(bytes(SEG), bytearray(FULL))
    encryptor.encrypt_segment_into(b"", bytearray(TAG_SIZE_BYTES), last=True)
    with pytest.raises(ValueError, match="finished"):
        encryptor.encrypt_segments_into(bytes(SEG), bytearray(FULL))


def decryptor_for(stream: bytes) -> StreamDecryptor:
    return StreamDecryptor(KEY, stream[:HEADER_SIZE_BYTES], len(stream), context=CONTEXT)


def test_decrypt_segments_into_matches_one_call_per_segment() -> None:
    data = plaintext(6 * SEG + 777)
    stream = sealed_reference(data)
    decryptor = decryptor_for(stream)
    assert decryptor.segment_count == 7
    for first, count in [(0, 7), (0, 1), (2, 3), (4, 3), (6, 1)]:
        start = HEADER_SIZE_BYTES + first * FULL
        end = min(start + count * FULL, len(stream))
        out = bytearray(count * SEG + 5)
        written = decryptor.decrypt_segments_into(first, count, stream[start:end], out)
        assert out[:written] == data[first * SEG : first * SEG + written]
        assert written == min(count * SEG, len(data) - first * SEG)


def test_decrypt_segments_into_checks_bounds_before_slicing() -> None:
    data = plaintext(3 * SEG)
    stream = sealed_reference(data)  # 3 full segments and an empty last one
    decryptor = decryptor_for(stream)
    body = stream[HEADER_SIZE_BYTES:]
    with pytest.raises(ValueError, match="outside"):
        decryptor.decrypt_segments_into(3, 2, body, bytearray(4 * SEG))
    with pytest.raises(ValueError, match="outside"):
        decryptor.decrypt_segments_into(0, 0, b"", bytearray(0))
    with pytest.raises(InvalidSealedMessage):
        decryptor.decrypt_segments_into(0, 2, body[: 2 * FULL - 1], bytearray(2 * SEG))
    with pytest.raises(ValueError, match="needs"):
        decryptor.decrypt_segments_into(0, 2, body[: 2 * FULL], bytearray(2 * SEG - 1))
    # The whole stream, the empty last segment included, in one call.
    out = bytearray(3 * SEG)
    assert decryptor.decrypt_segments_into(0, 4, body, out) == 3 * SEG and out == data


@pytest.mark.parametrize("flipped_segment", [0, 1, 2])
def test_tampered_segment_fails_and_zeroes_everything_the_call_wrote(flipped_segment: int) -> None:
    data = plaintext(3 * SEG + 10)
    stream = bytearray(sealed_reference(data))
    stream[HEADER_SIZE_BYTES + flipped_segment * FULL + 100] ^= 0x01
    decryptor = decryptor_for(bytes(stream))
    out = bytearray(b"\xaa" * (4 * SEG))
    with pytest.raises(DecryptionFailed, match=f"segment {flipped_segment}"):
        decryptor.decrypt_segments_into(0, 3, stream[HEADER_SIZE_BYTES : HEADER_SIZE_BYTES + 3 * FULL], out)
    assert out[: 3 * SEG] == bytes(3 * SEG)  # the segments before the bad one were authentic, and zeroed too
    assert out[3 * SEG :] == b"\xaa" * SEG  # beyond what the call was given: untouched


def test_swapped_and_truncated_segments_fail_in_a_batch() -> None:
    data = plaintext(3 * SEG + 10)
    stream = sealed_reference(data)
    body = stream[HEADER_SIZE_BYTES:]
    swapped = body[FULL : 2 * FULL] + body[:FULL] + body[2 * FULL :]
    with pytest.raises(DecryptionFailed):
        decryptor_for(stream).decrypt_segments_into(0, 2, swapped[: 2 * FULL], bytearray(2 * SEG))
    # Cut after segment 1: segment 1 is now the last and must carry the last flag, which it does not.
    cut = stream[: HEADER_SIZE_BYTES + 2 * FULL]
    with pytest.raises(DecryptionFailed):
        decryptor_for(cut).decrypt_segments_into(0, 2, cut[HEADER_SIZE_BYTES:], bytearray(2 * SEG))
