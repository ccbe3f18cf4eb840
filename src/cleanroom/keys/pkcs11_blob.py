"""The byte layout of a PKCS#11 `WrappedKey.ciphertext` and the GCM associated data that binds it.

One job: turn the three parts of an envelope into bytes and back, checking every length before it is used
to slice. It is separate from `pkcs11.py` because it is pure (no token, no python-pkcs11 import), so the
parser can be tested against truncation and mutation without an HSM, and a format change is one file.

Layout (see `pkcs11.py` for why an envelope):
    format (1, = 0x01) || wrapped item key length L (2, big-endian) || KWP(item key) (L)
    || GCM nonce (12) || GCM ciphertext || GCM tag (16)
"""

from __future__ import annotations

import struct

from cleanroom.errors import DecryptionFailed

FORMAT_V1 = 0x01
NONCE_BYTES = 12
TAG_BYTES = 16
MIN_WRAPPED_ITEM_KEY = 24  # KWP output is 8 bytes longer than its input, padded to 8; >= 16 + 8
MAX_WRAPPED_ITEM_KEY = 512
AAD_TAG = b"cleanroom/pkcs11-kms/v1\x00"


def item_aad(key_name: str, version: int, context: bytes) -> bytes:
    """GCM AAD = domain tag || len(name) (u16) || name || master version (u32) || context.

    Binding the master version stops a blob being moved to another version; the length prefix stops a
    name/context boundary from sliding (name "a" + context "bc" vs name "ab" + context "c").
    """
    name = key_name.encode()
    return AAD_TAG + struct.pack(">H", len(name)) + name + struct.pack(">I", version) + bytes(context)


def encode_blob(wrapped_item_key: bytes, nonce: bytes, sealed: bytes) -> bytes:
    return bytes([FORMAT_V1]) + struct.pack(">H", len(wrapped_item_key)) + wrapped_item_key + nonce + sealed


def decode_blob(blob: bytes) -> tuple[bytes, bytes, bytes]:
    """-> (KWP-wrapped item key, GCM nonce, GCM ciphertext || tag); every length checked before slicing."""
    if len(blob) < 3 + MIN_WRAPPED_ITEM_KEY + NONCE_BYTES + TAG_BYTES:
        raise DecryptionFailed("wrapped key is truncated")
    if blob[0] != FORMAT_V1:
        raise DecryptionFailed(f"unknown PKCS#11 wrapped-key format {blob[0]:#04x}")
    (length,) = struct.unpack(">H", blob[1:3])
    if not MIN_WRAPPED_ITEM_KEY <= length <= MAX_WRAPPED_ITEM_KEY or length % 8:
        raise DecryptionFailed("wrapped key has an invalid item-key length")
    body = blob[3:]
    if len(body) < length + NONCE_BYTES + TAG_BYTES:
        raise DecryptionFailed("wrapped key is truncated")
    return body[:length], body[length : length + NONCE_BYTES], body[length + NONCE_BYTES :]
