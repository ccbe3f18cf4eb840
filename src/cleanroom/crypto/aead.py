"""Buffer-based AES-256-GCM: plaintext goes into and comes out of caller-owned buffers, never `bytes`.

Invariant 3 of DESIGN §2: `AESGCM.decrypt` returns an immutable `bytes` that nobody can zero, so every
decryption here uses `decrypt_into` and every encryption `encrypt_into`. `decrypt_into` writes the
unauthenticated plaintext into the buffer *before* it raises `InvalidTag`, so the buffer is zeroed on every
failure path — callers get a `DecryptionFailed` and a clean buffer.

`MessageKey` is the one shape callers use: a single-use key and nonce derived with HKDF from a fresh
per-request content key (the same construction as HPKE's key schedule, RFC 9180 §5.1), so nobody picks a
nonce and no key ever encrypts twice.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from cleanroom.errors import DecryptionFailed, InvalidSealedMessage

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16

Writable = bytearray | memoryview


def zero_buffer(buf: Writable) -> None:
    """Overwrite a writable buffer with zeros in place (through ctypes, so it is not a dead store)."""
    view = memoryview(buf).cast("B")
    if len(view) == 0:
        return
    ctypes.memset(ctypes.addressof(ctypes.c_char.from_buffer(view)), 0, len(view))


def open_into(aead: AESGCM, nonce: bytes, ciphertext: bytes | memoryview, aad: bytes, out: Writable) -> None:
    """Authenticate and decrypt `ciphertext` (ct || tag) into `out`, which must be exactly len - 16 bytes."""
    if len(ciphertext) < TAG_BYTES:
        raise InvalidSealedMessage("ciphertext is shorter than its authentication tag")
    if len(out) != len(ciphertext) - TAG_BYTES:
        raise ValueError("output buffer size does not match the ciphertext")
    try:
        aead.decrypt_into(nonce, ciphertext, aad, out)
    except InvalidTag:
        zero_buffer(out)
        raise DecryptionFailed(
            "ciphertext failed to authenticate: it was modified, truncated, or sealed for another key or context"
        ) from None
    except BaseException:
        zero_buffer(out)
        raise


def seal_into(aead: AESGCM, nonce: bytes, plaintext: bytes | memoryview, aad: bytes, out: Writable) -> None:
    """Encrypt `plaintext` into `out` (exactly len + 16 bytes: ciphertext || tag)."""
    if len(out) != len(plaintext) + TAG_BYTES:
        raise ValueError("output buffer size does not match the plaintext")
    aead.encrypt_into(nonce, plaintext, aad, out)


def hkdf_sha384(ikm: bytes | bytearray, *, salt: bytes, info: bytes, length: int) -> bytearray:
    derived = HKDF(algorithm=hashes.SHA384(), length=length, salt=salt, info=info).derive(bytes(ikm))
    return bytearray(derived)


@dataclass
class MessageKey:
    """A key and nonce for exactly one message, derived from a content key. Use as a context manager."""

    label: bytes
    _key: bytearray
    _nonce: bytes
    _used: bool = field(default=False)

    @classmethod
    def derive(cls, content_key: bytes | bytearray, *, salt: bytes, label: bytes) -> MessageKey:
        material = hkdf_sha384(content_key, salt=salt, info=label, length=KEY_BYTES + NONCE_BYTES)
        key = material[:KEY_BYTES]
        nonce = bytes(material[KEY_BYTES:])
        zero_buffer(material)
        return cls(label=label, _key=key, _nonce=nonce)

    def _take(self) -> AESGCM:
        if self._used:
            raise RuntimeError("a MessageKey encrypts or decrypts exactly one message")
        self._used = True
        return AESGCM(self._key)

    def seal(self, plaintext: bytes | memoryview, aad: bytes) -> bytearray:
        out = bytearray(len(plaintext) + TAG_BYTES)
        seal_into(self._take(), self._nonce, plaintext, aad, out)
        return out

    def seal_into(self, plaintext: bytes | memoryview, aad: bytes, out: Writable) -> None:
        """`seal` into `out` (exactly len + 16 bytes), e.g. the tail of a message whose header is already
        written there: the ciphertext is not copied again to join the two."""
        seal_into(self._take(), self._nonce, plaintext, aad, out)

    def open_into(self, ciphertext: bytes | memoryview, aad: bytes, out: Writable) -> None:
        open_into(self._take(), self._nonce, ciphertext, aad, out)

    def close(self) -> None:
        zero_buffer(self._key)
        self._used = True

    def __enter__(self) -> MessageKey:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
