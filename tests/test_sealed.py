"""The sealed format: byte-exact vectors, mutation of every byte, truncation, and context binding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.crypto.sealed import (
    RequestMetadata,
    open_request_key,
    parse_request,
    seal_payload,
    seal_request,
    seal_response,
)
from cleanroom.errors import DecryptionFailed, InvalidSealedMessage

VECTORS = json.loads((Path(__file__).parent / "vectors" / "sealed-v1.json").read_text())
RECIPIENT = ec.derive_private_key(int(VECTORS["recipient_private_scalar"], 16), ec.SECP384R1())


def open_payload(body: bytes, key: ec.EllipticCurvePrivateKey = RECIPIENT) -> tuple[bytes, RequestMetadata]:
    parsed = parse_request(body)
    with open_request_key(parsed, key) as opened:
        out = bytearray(parsed.payload_size_bytes)
        opened.decrypt_payload_into(out)
        return bytes(out), opened.metadata


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_vector_opens_to_the_recorded_payload(case: dict) -> None:
    payload, metadata = open_payload(bytes.fromhex(case["sealed_request"]))
    assert payload == bytes.fromhex(case["payload"])
    assert metadata.encode().decode() == case["metadata"]
    assert (metadata.tenant_id, metadata.model, metadata.path, metadata.ts) == (
        case["tenant_id"],
        case["model"],
        case["path"],
        case["ts"],
    )


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["name"])
def test_vector_payload_and_response_are_byte_exact(case: dict) -> None:
    body = bytes.fromhex(case["sealed_request"])
    header = body[: case["header_length"]]
    metadata = RequestMetadata.decode(case["metadata"].encode())
    cek = bytes.fromhex(case["content_key"])
    ciphertext = seal_payload(cek, metadata, case["metadata"].encode(), header, bytes.fromhex(case["payload"]))
    assert bytes(ciphertext).hex() == case["payload_ciphertext"]
    assert body == header + bytes(ciphertext)
    response = seal_response(cek, metadata, case["metadata"].encode(), bytes.fromhex(case["response_plaintext"]))
    assert bytes(response).hex() == case["sealed_response"]


def test_every_byte_flip_and_truncation_fails() -> None:
    body = bytes.fromhex(VECTORS["cases"][0]["sealed_request"])
    for position in range(len(body)):
        for bit in (0, 7):
            tampered = bytearray(body)
            tampered[position] ^= 1 << bit
            with pytest.raises((InvalidSealedMessage, DecryptionFailed)):
                open_payload(bytes(tampered))
    for length in range(len(body)):
        with pytest.raises((InvalidSealedMessage, DecryptionFailed)):
            open_payload(body[:length])
    with pytest.raises((InvalidSealedMessage, DecryptionFailed)):
        open_payload(body + b"\0")


def test_failed_payload_decryption_leaves_a_zeroed_buffer() -> None:
    body = bytearray(bytes.fromhex(VECTORS["cases"][0]["sealed_request"]))
    body[-20] ^= 0xFF  # payload ciphertext, not the tag: decrypt_into writes plaintext before failing
    parsed = parse_request(bytes(body))
    out = bytearray(b"\xaa" * parsed.payload_size_bytes)
    with open_request_key(parsed, RECIPIENT) as opened, pytest.raises(DecryptionFailed):
        opened.decrypt_payload_into(out)
    assert out == bytearray(len(out))


def test_wrong_recipient_key_fails() -> None:
    other = ec.generate_private_key(ec.SECP384R1())
    with pytest.raises(DecryptionFailed):
        open_payload(bytes.fromhex(VECTORS["cases"][0]["sealed_request"]), other)


def test_response_is_bound_to_its_request() -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    first = seal_request(key.public_key(), "k1", b"one", tenant_id="t", model="echo")
    second = seal_request(key.public_key(), "k1", b"two", tenant_id="t", model="echo")
    parsed = parse_request(first.body)
    with open_request_key(parsed, key) as opened:
        response = opened.seal_response(b"answer")
    assert first.open_response(bytes(response)) == b"answer"
    with pytest.raises((DecryptionFailed, InvalidSealedMessage)):
        second.open_response(bytes(response))


def test_metadata_must_be_canonical() -> None:
    raw = RequestMetadata(b"\1" * 16, "t", "m", "", 5).encode()
    assert RequestMetadata.decode(raw).ts == 5
    with pytest.raises(InvalidSealedMessage):
        RequestMetadata.decode(raw.replace(b",", b", ", 1))
    with pytest.raises(InvalidSealedMessage):
        RequestMetadata.decode(raw.replace(b'"ts":5', b'"ts":true'))
