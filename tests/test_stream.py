"""Streaming AEAD: byte-exact vectors, an independent reference built from the spec, and mutation attacks.

The reference (`reference_seal`) is written from docs/wire-format-stream.md with plain HKDF and
AESGCM.encrypt, not from stream.py, so a vector match shows the code does what the document says.
Regenerate the vectors (only when the format version changes): `python tests/test_stream.py --write`.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cleanroom.crypto.stream import (
    HEADER_SIZE_BYTES,
    SEGMENT_SIZE_MAX_BYTES,
    SEGMENT_SIZE_MIN_BYTES,
    TAG_SIZE_BYTES,
    StreamDecryptor,
    StreamEncryptor,
    StreamHeader,
    ciphertext_size,
)
from cleanroom.errors import DecryptionFailed, InvalidSealedMessage

VECTORS_PATH = Path(__file__).parent / "vectors" / "stream-v1.json"
SEG = SEGMENT_SIZE_MIN_BYTES
KEY = bytes(range(32))


# --- an independent reference, from the documented layout -----------------------------------------
def reference_seal(
    key: bytes, salt: bytes, prefix: bytes, segment_size: int, context: bytes, plaintext: bytes
) -> tuple[bytes, bytes]:
    header = b"CRST" + bytes([1]) + struct.pack(">I", segment_size) + salt + prefix
    stream_key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=salt, info=b"cleanroom/stream/v1\x00" + context
    ).derive(key)
    aead = AESGCM(stream_key)
    chunks = [plaintext[i : i + segment_size] for i in range(0, len(plaintext), segment_size)] or [b""]
    out = [header]
    for index, chunk in enumerate(chunks):
        last = index == len(chunks) - 1
        nonce = prefix + struct.pack(">I", index) + (b"\x01" if last else b"\x00")
        out.append(aead.encrypt(nonce, chunk, header + context))
    return b"".join(out), stream_key


def pattern(length: int) -> bytes:
    """The plaintext rule the vectors use: byte i is i mod 251."""
    return bytes(i % 251 for i in range(length))


def seal(
    plaintext: bytes,
    *,
    key: bytes = KEY,
    context: bytes = b"ctx",
    segment_size: int = SEG,
    salt: bytes | None = None,
    prefix: bytes | None = None,
) -> bytes:
    if salt is None:
        encryptor = StreamEncryptor(key, context=context, segment_size_bytes=segment_size)
    else:
        assert prefix is not None
        encryptor = StreamEncryptor._with_fixed_header_for_test_vectors(
            key, context=context, segment_size_bytes=segment_size, salt=salt, nonce_prefix=prefix
        )
    parts = [encryptor.header]
    chunks = [plaintext[i : i + segment_size] for i in range(0, len(plaintext), segment_size)] or [b""]
    for index, chunk in enumerate(chunks):
        out = bytearray(len(chunk) + TAG_SIZE_BYTES)
        encryptor.encrypt_segment_into(chunk, out, last=index == len(chunks) - 1)
        parts.append(bytes(out))
    return b"".join(parts)


def open_all(stream: bytes, *, key: bytes = KEY, context: bytes = b"ctx") -> bytes:
    decryptor = StreamDecryptor(key, stream[:HEADER_SIZE_BYTES], len(stream), context=context)
    out = bytearray(decryptor.plaintext_size_bytes)
    position = 0
    for index in range(decryptor.segment_count):
        offset = decryptor.segment_offset(index)
        size = decryptor.segment_plaintext_size(index)
        decryptor.decrypt_segment_into(
            index, stream[offset : offset + size + TAG_SIZE_BYTES], memoryview(out)[position : position + size]
        )
        position += size
    return bytes(out)


# --- vectors ----------------------------------------------------------------------------------------
VECTOR_SPECS: list[dict[str, Any]] = [
    {"name": "empty", "segment_size": SEG, "context": "", "length": 0},
    {"name": "short", "segment_size": SEG, "context": "tenant=t1;purpose=spill", "length": 29},
    {"name": "exactly-one-segment", "segment_size": SEG, "context": "", "length": SEG},
    {"name": "three-segments", "segment_size": SEG, "context": "c", "length": 2 * SEG + 1000},
    {
        "name": "max-segment",
        "segment_size": SEGMENT_SIZE_MAX_BYTES,
        "context": "big",
        "length": SEGMENT_SIZE_MAX_BYTES + 1,
    },
]
FULL_HEX_LIMIT = 4096


def build_vector(spec: dict[str, Any], index: int) -> dict[str, Any]:
    key = hashlib.sha256(b"key" + bytes([index])).digest()
    salt = hashlib.sha256(b"salt" + bytes([index])).digest()
    prefix = hashlib.sha256(b"prefix" + bytes([index])).digest()[:7]
    plaintext = pattern(spec["length"])
    stream, stream_key = reference_seal(key, salt, prefix, spec["segment_size"], spec["context"].encode(), plaintext)
    seg_ct = spec["segment_size"] + TAG_SIZE_BYTES
    body = stream[HEADER_SIZE_BYTES:]
    tags = [body[i : i + seg_ct][-TAG_SIZE_BYTES:].hex() for i in range(0, len(body), seg_ct)]
    vector = {
        **spec,
        "plaintext_rule": "byte i = i mod 251",
        "key_hex": key.hex(),
        "salt_hex": salt.hex(),
        "nonce_prefix_hex": prefix.hex(),
        "stream_key_hex": stream_key.hex(),
        "header_hex": stream[:HEADER_SIZE_BYTES].hex(),
        "segment_tags_hex": tags,
        "ciphertext_length": len(stream),
        "ciphertext_sha256": hashlib.sha256(stream).hexdigest(),
    }
    if len(stream) <= FULL_HEX_LIMIT:
        vector["ciphertext_hex"] = stream.hex()
    return vector


def load_vectors() -> list[dict[str, Any]]:
    return list(json.loads(VECTORS_PATH.read_text())["vectors"])


@pytest.mark.parametrize("index", range(len(VECTOR_SPECS)), ids=[s["name"] for s in VECTOR_SPECS])
def test_vector_byte_for_byte(index: int) -> None:
    vector = load_vectors()[index]
    assert vector["name"] == VECTOR_SPECS[index]["name"]
    key, salt = bytes.fromhex(vector["key_hex"]), bytes.fromhex(vector["salt_hex"])
    prefix, context = bytes.fromhex(vector["nonce_prefix_hex"]), vector["context"].encode()
    plaintext = pattern(vector["length"])
    # 1) the document's construction reproduces the stored vector
    reference, stream_key = reference_seal(key, salt, prefix, vector["segment_size"], context, plaintext)
    assert stream_key.hex() == vector["stream_key_hex"]
    assert hashlib.sha256(reference).hexdigest() == vector["ciphertext_sha256"]
    # 2) the implementation produces exactly those bytes
    produced = seal(plaintext, key=key, context=context, segment_size=vector["segment_size"], salt=salt, prefix=prefix)
    assert len(produced) == vector["ciphertext_length"] == ciphertext_size(len(plaintext), vector["segment_size"])
    assert produced[:HEADER_SIZE_BYTES].hex() == vector["header_hex"]
    assert hashlib.sha256(produced).hexdigest() == vector["ciphertext_sha256"]
    if "ciphertext_hex" in vector:
        assert produced.hex() == vector["ciphertext_hex"]
    seg_ct = vector["segment_size"] + TAG_SIZE_BYTES
    body = produced[HEADER_SIZE_BYTES:]
    assert [body[i : i + seg_ct][-16:].hex() for i in range(0, len(body), seg_ct)] == vector["segment_tags_hex"]
    # 3) and opens them
    assert open_all(produced, key=key, context=context) == plaintext


def test_vectors_file_matches_specs() -> None:
    """Guards against a spec edit without regenerating (and against a hand-edited vector file)."""
    assert load_vectors() == [build_vector(spec, i) for i, spec in enumerate(VECTOR_SPECS)]


# --- header parsing -------------------------------------------------------------------------------
def test_header_layout_and_bounds() -> None:
    stream = seal(b"x")
    header = StreamHeader.parse(stream)
    assert header.segment_size_bytes == SEG and header.to_bytes() == stream[:HEADER_SIZE_BYTES]
    for length in range(HEADER_SIZE_BYTES):
        with pytest.raises(InvalidSealedMessage):
            StreamHeader.parse(stream[:length])
    for bad in (
        b"XRST" + stream[4:48],
        stream[:4] + b"\x02" + stream[5:48],
        stream[:5] + struct.pack(">I", SEG - 1) + stream[9:48],
        stream[:5] + struct.pack(">I", SEGMENT_SIZE_MAX_BYTES + 1) + stream[9:48],
        stream[:5] + b"\xff\xff\xff\xff" + stream[9:48],
    ):
        with pytest.raises(InvalidSealedMessage):
            StreamHeader.parse(bad)


def test_bad_configuration_fails_in_constructor() -> None:
    for size in (0, SEG - 1, SEGMENT_SIZE_MAX_BYTES + 1):
        with pytest.raises(ValueError):
            StreamEncryptor(KEY, context=b"", segment_size_bytes=size)
    with pytest.raises(ValueError):
        StreamEncryptor(KEY[:16], context=b"", segment_size_bytes=SEG)
    with pytest.raises(ValueError):
        StreamEncryptor(KEY, context=b"x" * 5000, segment_size_bytes=SEG)
    with pytest.raises(InvalidSealedMessage):
        StreamDecryptor(KEY, seal(b"")[:48], HEADER_SIZE_BYTES + 15, context=b"ctx")
    with pytest.raises(InvalidSealedMessage):  # tail shorter than a tag
        StreamDecryptor(KEY, seal(b"")[:48], HEADER_SIZE_BYTES + SEG + 16 + 5, context=b"ctx")


def test_encryptor_refuses_misuse() -> None:
    encryptor = StreamEncryptor(KEY, context=b"", segment_size_bytes=SEG)
    with pytest.raises(ValueError):  # a short non-last segment would shift every later segment
        encryptor.encrypt_segment_into(b"a" * 10, bytearray(26), last=False)
    with pytest.raises(ValueError):
        encryptor.encrypt_segment_into(b"a" * 10, bytearray(30), last=True)
    encryptor.encrypt_segment_into(b"a" * 10, bytearray(26), last=True)
    with pytest.raises(ValueError):  # nothing after the last segment: no nonce reuse, no extension
        encryptor.encrypt_segment_into(b"", bytearray(16), last=True)
    # two streams under one key never share salt/prefix
    headers = {StreamEncryptor(KEY, context=b"", segment_size_bytes=SEG).header for _ in range(50)}
    assert len(headers) == 50


# --- mutation attacks -----------------------------------------------------------------------------
def test_every_byte_flipped_small_stream_fails() -> None:
    stream = seal(b"a short secret for the stream")
    assert open_all(stream) == b"a short secret for the stream"
    for position in range(len(stream)):
        mutated = bytearray(stream)
        mutated[position] ^= 0x01
        with pytest.raises(InvalidSealedMessage):  # DecryptionFailed is a subclass
            open_all(bytes(mutated))


def test_flips_in_every_region_of_multi_segment_stream_fail() -> None:
    plaintext = random.Random(1).randbytes(2 * SEG + 777)
    stream = seal(plaintext)
    full = SEG + TAG_SIZE_BYTES
    positions = set(range(HEADER_SIZE_BYTES))  # every header byte
    for start in (HEADER_SIZE_BYTES, HEADER_SIZE_BYTES + full, HEADER_SIZE_BYTES + 2 * full):
        end = min(start + full, len(stream))
        positions |= {start, start + 1, (start + end) // 2, end - TAG_SIZE_BYTES - 1}
        positions |= set(range(end - TAG_SIZE_BYTES, end))  # every tag byte
    for position in sorted(positions):
        mutated = bytearray(stream)
        mutated[position] ^= 0x80
        with pytest.raises(InvalidSealedMessage):
            open_all(bytes(mutated))


def test_swapped_segments_fail() -> None:
    stream = seal(random.Random(2).randbytes(3 * SEG + 5))
    full = SEG + TAG_SIZE_BYTES
    segs = [stream[HEADER_SIZE_BYTES + i * full : HEADER_SIZE_BYTES + (i + 1) * full] for i in range(4)]
    for order in ([1, 0, 2, 3], [0, 2, 1, 3], [2, 1, 0, 3], [0, 0, 2, 3]):
        with pytest.raises(DecryptionFailed):
            open_all(stream[:HEADER_SIZE_BYTES] + b"".join(segs[i] for i in order))


def test_truncation_at_and_between_boundaries_fails() -> None:
    stream = seal(random.Random(3).randbytes(2 * SEG + 300))
    full = SEG + TAG_SIZE_BYTES
    cuts = set()
    for boundary in (HEADER_SIZE_BYTES, HEADER_SIZE_BYTES + full, HEADER_SIZE_BYTES + 2 * full):
        cuts |= {
            boundary - 1,
            boundary,
            boundary + 1,
            boundary + 15,
            boundary + 16,
            boundary + 17,
            boundary + full // 2,
        }
    cuts |= {len(stream) - 1, len(stream) - 16}
    for cut in sorted(c for c in cuts if 0 <= c < len(stream)):
        with pytest.raises(InvalidSealedMessage):
            open_all(stream[:cut])
    # every length of a small stream
    small = seal(b"0123456789")
    for cut in range(len(small)):
        with pytest.raises(InvalidSealedMessage):
            open_all(small[:cut])


def test_appended_data_fails() -> None:
    stream = seal(random.Random(4).randbytes(SEG + 10))
    full = SEG + TAG_SIZE_BYTES
    first_segment = stream[HEADER_SIZE_BYTES : HEADER_SIZE_BYTES + full]
    last_segment = stream[HEADER_SIZE_BYTES + full :]
    for extra in (b"\x00", b"\x00" * 16, first_segment, last_segment, seal(b"other")[HEADER_SIZE_BYTES:]):
        with pytest.raises(InvalidSealedMessage):
            open_all(stream + extra)


def test_longer_stream_with_same_header_cannot_be_cut_down() -> None:
    """Even a stream sharing key, salt and prefix (only possible via the test hook) cannot be truncated
    into a valid shorter one, because its former middle segment lacks the last flag."""
    salt, prefix = b"s" * 32, b"p" * 7
    long = seal(pattern(3 * SEG), salt=salt, prefix=prefix)
    with pytest.raises(DecryptionFailed):
        open_all(long[: HEADER_SIZE_BYTES + 2 * (SEG + TAG_SIZE_BYTES)])


def test_segment_from_another_stream_or_context_or_key_fails() -> None:
    plaintext = pattern(2 * SEG + 9)
    a, b = seal(plaintext), seal(plaintext)  # same key and plaintext, different salt and prefix
    full = SEG + TAG_SIZE_BYTES
    spliced = (
        a[: HEADER_SIZE_BYTES + full]
        + b[HEADER_SIZE_BYTES + full : HEADER_SIZE_BYTES + 2 * full]
        + a[HEADER_SIZE_BYTES + 2 * full :]
    )
    with pytest.raises(DecryptionFailed):
        open_all(spliced)
    with pytest.raises(DecryptionFailed):  # b's header on a's body
        open_all(b[:HEADER_SIZE_BYTES] + a[HEADER_SIZE_BYTES:])
    with pytest.raises(DecryptionFailed):
        open_all(a, context=b"ctx2")
    with pytest.raises(DecryptionFailed):
        open_all(a, key=bytes(32))


def test_failed_decrypt_zeroes_the_output_buffer() -> None:
    """The decrypt_into trap: on InvalidTag the buffer already holds unauthenticated plaintext."""
    plaintext = b"S" * SEG
    stream = bytearray(seal(plaintext + b"tail"))
    stream[HEADER_SIZE_BYTES + 5] ^= 1  # ciphertext byte, not the tag: the rest still decrypts to 'S'
    decryptor = StreamDecryptor(KEY, stream[:HEADER_SIZE_BYTES], len(stream), context=b"ctx")
    out = bytearray(b"\xaa" * (SEG + 100))
    with pytest.raises(DecryptionFailed):
        decryptor.decrypt_segment_into(0, stream[HEADER_SIZE_BYTES : HEADER_SIZE_BYTES + SEG + 16], out)
    assert out[:SEG] == bytes(SEG)  # zeroed, no 'S' left
    assert out[SEG:] == b"\xaa" * 100  # beyond the segment: untouched


def test_wrong_sized_inputs_are_rejected_before_slicing() -> None:
    stream = seal(pattern(SEG + 3))
    decryptor = StreamDecryptor(KEY, stream[:HEADER_SIZE_BYTES], len(stream), context=b"ctx")
    with pytest.raises(InvalidSealedMessage):
        decryptor.decrypt_segment_into(0, stream[HEADER_SIZE_BYTES : HEADER_SIZE_BYTES + SEG], bytearray(SEG))
    with pytest.raises(ValueError):
        decryptor.decrypt_segment_into(0, stream[HEADER_SIZE_BYTES : HEADER_SIZE_BYTES + SEG + 16], bytearray(SEG - 1))
    for index in (-1, 2):
        with pytest.raises(ValueError):
            decryptor.segment_offset(index)


# --- random access and properties -----------------------------------------------------------------
def test_random_access_segment_k_alone() -> None:
    plaintext = random.Random(5).randbytes(4 * SEG + 17)
    stream = seal(plaintext)
    decryptor = StreamDecryptor(KEY, stream[:HEADER_SIZE_BYTES], len(stream), context=b"ctx")
    assert decryptor.segment_count == 5 and decryptor.plaintext_size_bytes == len(plaintext)
    for index in (3, 0, 4, 1):
        offset, size = decryptor.segment_offset(index), decryptor.segment_plaintext_size(index)
        out = bytearray(size)
        decryptor.decrypt_segment_into(index, stream[offset : offset + size + 16], out)
        assert out == plaintext[index * SEG : index * SEG + size]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    segment_size=st.integers(SEGMENT_SIZE_MIN_BYTES, 3 * SEGMENT_SIZE_MIN_BYTES),
    segments=st.floats(0, 3.5),
    seed=st.integers(0, 2**32 - 1),
    context=st.binary(max_size=64),
)
def test_property_round_trip(segment_size: int, segments: float, seed: int, context: bytes) -> None:
    plaintext = random.Random(seed).randbytes(int(segments * segment_size))
    stream = seal(plaintext, segment_size=segment_size, context=context)
    assert len(stream) == ciphertext_size(len(plaintext), segment_size)
    assert open_all(stream, context=context) == plaintext


def write_vectors() -> None:
    VECTORS_PATH.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "format": "cleanroom streaming AEAD v1 (docs/wire-format-stream.md)",
        "vectors": [build_vector(spec, i) for i, spec in enumerate(VECTOR_SPECS)],
    }
    VECTORS_PATH.write_text(json.dumps(document, indent=1) + "\n")


if __name__ == "__main__":
    if "--write" in sys.argv:
        write_vectors()
