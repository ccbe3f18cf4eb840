"""Sealed responses produced after their request has ended (batch jobs), and request payloads opened in a
stream. A sharp internal: `runtime.batch_jobs` and `batch_client` use it.

Nothing here is a new format. A batch's results are an ordinary sealed response (docs/wire-format.md):
``b"CRS1" ‖ 0x01 ‖ request id (16) ‖ AES-256-GCM(plaintext) ‖ tag``, under the key and nonce that
`crypto.aead.MessageKey` derives from the submit request's content key (HKDF-SHA384, salt = request id,
info = ``cleanroom/v1 response key``), AAD = ``AAD_RESPONSE ‖ header ‖ request metadata JSON`` — so
`SealedRequest.open_response` of the submitting client opens it. Two things differ from the interactive
path, and both are compositions of `cryptography` primitives, not new cryptography:

- the server keeps only the 44 bytes of *response* key material (key ‖ nonce), derived when the batch was
  submitted, in a SecureBuffer until the results are fetched or the job expires — not the content key,
  which would also open the request payload;
- results can be larger than memory, so they are sealed with AES-GCM's incremental interface
  (`Cipher(AES, GCM).encryptor()`, `update_into`, then the tag). The ciphertext streams out as it is
  made; the client authenticates the whole message before it releases a byte.

The same key material, on the client, is what a CLI "batch ticket" holds (`DeferredResponseKey.export`):
enough to open the results, not enough to read the request.

Large request payloads are opened in a stream too (`open_payload_stream`): plaintext comes out segment by
segment into a caller's SecureBuffer *before* the tag is checked at the end, so the caller must treat it
as unauthenticated until `finish()` returns — `runtime.batch_jobs` writes it only into an encrypted spill
file and discards that file if `finish()` raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cleanroom.crypto.aead import KEY_BYTES, NONCE_BYTES, TAG_BYTES, Writable, hkdf_sha384, zero_buffer
from cleanroom.crypto.sealed import (
    AAD_REQUEST,
    AAD_RESPONSE,
    LABEL_REQUEST_KEY,
    LABEL_RESPONSE_KEY,
    REQUEST_ID_BYTES,
    RESPONSE_MAGIC,
    SUITE_P384_SHA384_AES256GCM,
    OpenedRequestKey,
    RequestMetadata,
    SealedRequest,
)
from cleanroom.errors import DecryptionFailed, InvalidSealedMessage
from cleanroom.memory.secure_buffer import SecureAllocator, SecureBuffer

MATERIAL_BYTES = KEY_BYTES + NONCE_BYTES  # 44
RESPONSE_HEADER_BYTES = len(RESPONSE_MAGIC) + 1 + REQUEST_ID_BYTES  # 21


def response_header(request_id: bytes) -> bytes:
    return RESPONSE_MAGIC + bytes([SUITE_P384_SHA384_AES256GCM]) + request_id


def _content_key_of(holder: OpenedRequestKey | SealedRequest) -> bytearray:
    # Both classes keep the CEK private; this module is the one place outside crypto/sealed.py that reads
    # it, only to derive the response key material at once (proposed: a public method on each).
    key: bytearray = holder._content_key
    return key


def _derive(content_key: bytearray, request_id: bytes, label: bytes, out: Writable) -> None:
    material = hkdf_sha384(content_key, salt=request_id, info=label, length=MATERIAL_BYTES)
    try:
        memoryview(out)[:MATERIAL_BYTES] = material
    finally:
        zero_buffer(material)


@dataclass(frozen=True)
class ResponseContext:
    """What a sealed response is bound to besides the key: the request id and the request metadata."""

    request_id: bytes
    metadata_raw: bytes

    @classmethod
    def of(cls, metadata: RequestMetadata, metadata_raw: bytes) -> ResponseContext:
        return cls(metadata.request_id, metadata_raw)

    @property
    def header(self) -> bytes:
        return response_header(self.request_id)

    @property
    def aad(self) -> bytes:
        return AAD_RESPONSE + self.header + self.metadata_raw


class DeferredResponseKey:
    """The response key ‖ nonce of one request, held in a SecureBuffer until one response is sealed.

    Server side (`from_opened`): it can seal exactly the one response the client expects; sealing the same
    plaintext again yields the same bytes (same key, nonce and AAD), which is why a batch's results are
    immutable once the job finished. Client side (`from_sealed`, `load`): it opens that response.
    """

    def __init__(self, material: SecureBuffer, context: ResponseContext) -> None:
        if material.size_bytes != MATERIAL_BYTES:
            raise ValueError(f"response key material is {MATERIAL_BYTES} bytes")
        self._material: SecureBuffer | None = material
        self.context = context

    @classmethod
    def from_opened(cls, opened: OpenedRequestKey, allocator: SecureAllocator) -> DeferredResponseKey:
        return cls._from_content_key(_content_key_of(opened), opened.metadata, opened.metadata_raw, allocator)

    @classmethod
    def from_sealed(cls, sealed: SealedRequest, allocator: SecureAllocator | None = None) -> DeferredResponseKey:
        return cls._from_content_key(
            _content_key_of(sealed), sealed.metadata, sealed._metadata_raw, allocator or SecureAllocator()
        )

    @classmethod
    def _from_content_key(
        cls, content_key: bytearray, metadata: RequestMetadata, metadata_raw: bytes, allocator: SecureAllocator
    ) -> DeferredResponseKey:
        material = allocator.allocate(MATERIAL_BYTES)
        try:
            _derive(content_key, metadata.request_id, LABEL_RESPONSE_KEY, material.view())
        except BaseException:
            material.close()
            raise
        return cls(material, ResponseContext.of(metadata, metadata_raw))

    @classmethod
    def load(
        cls,
        material: bytes | bytearray | memoryview,
        context: ResponseContext,
        allocator: SecureAllocator | None = None,
    ) -> DeferredResponseKey:
        """From exported material (a CLI ticket)."""
        if memoryview(material).nbytes != MATERIAL_BYTES or len(context.request_id) != REQUEST_ID_BYTES:
            raise ValueError("not response key material for a cleanroom request")
        buffer = (allocator or SecureAllocator()).allocate(MATERIAL_BYTES)
        buffer.view()[:] = memoryview(material).cast("B")
        return cls(buffer, context)

    def export(self) -> bytes:
        """The 44 bytes, for a client-side ticket file (mode 0600): they open the results, nothing else."""
        return bytes(self._live().view())

    def _live(self) -> SecureBuffer:
        if self._material is None:
            raise ValueError("the response key was shredded")
        return self._material

    # --- server: seal the one response, in a stream ----------------------------------------------------
    def seal_stream(self) -> StreamingSealer:
        view = self._live().view()
        encryptor = Cipher(algorithms.AES(view[:KEY_BYTES]), modes.GCM(bytes(view[KEY_BYTES:]))).encryptor()
        del view  # the Cipher object is dropped with it; OpenSSL holds its own key schedule until finalize
        encryptor.authenticate_additional_data(self.context.aad)
        return StreamingSealer(encryptor, self.context.header)

    # --- client: open it --------------------------------------------------------------------------------
    def open(self, sealed: bytes | bytearray | memoryview) -> bytearray:
        """Authenticate and decrypt the whole response; equal to `SealedRequest.open_response`."""
        view = memoryview(sealed)
        header = self.context.header
        if len(view) < len(header) + TAG_BYTES or bytes(view[:4]) != RESPONSE_MAGIC:
            raise InvalidSealedMessage("not a cleanroom sealed response (bad magic or too short)")
        if bytes(view[: len(header)]) != header:
            raise DecryptionFailed("sealed response belongs to another request")
        out = bytearray(len(view) - len(header) - TAG_BYTES)
        material = self._live().view()
        key = bytearray(material[:KEY_BYTES])
        try:
            AESGCM(key).decrypt_into(bytes(material[KEY_BYTES:]), view[len(header) :], self.context.aad, out)
        except InvalidTag:
            zero_buffer(out)
            raise DecryptionFailed(
                "sealed results do not authenticate: modified, truncated, or not the answer to this request"
            ) from None
        finally:
            zero_buffer(key)
            del material
        return out

    def close(self) -> None:
        """Shred: zero the key material. Safe to call twice."""
        if self._material is not None:
            self._material.close()
            self._material = None

    @property
    def closed(self) -> bool:
        return self._material is None

    def __enter__(self) -> DeferredResponseKey:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StreamingSealer:
    """AES-GCM over a response that arrives in pieces: `header`, then `update_into` per piece, then `finish`
    (the tag). Ciphertext is never secret; the plaintext pieces stay in the caller's buffers."""

    def __init__(self, encryptor: CipherContext, header: bytes) -> None:
        self._encryptor: CipherContext | None = encryptor
        self.header = header

    def update_into(self, plaintext: memoryview, out: bytearray) -> int:
        """Encrypt `plaintext` into `out` (at least len + 15 bytes); returns the ciphertext length."""
        if self._encryptor is None:
            raise ValueError("the response is already sealed")
        return self._encryptor.update_into(plaintext, out)

    def finish(self) -> bytes:
        if self._encryptor is None:
            raise ValueError("the response is already sealed")
        encryptor, self._encryptor = self._encryptor, None
        encryptor.finalize()
        tag: bytes = encryptor.tag  # type: ignore[attr-defined]
        return tag

    def abandon(self) -> None:
        self._encryptor = None


class PayloadStream:
    """A request payload opened piece by piece (see the module docstring: unauthenticated until `finish`)."""

    def __init__(self, decryptor: CipherContext, ciphertext: memoryview) -> None:
        self._decryptor: CipherContext | None = decryptor
        self._ciphertext = ciphertext
        self.size_bytes = ciphertext.nbytes

    def pieces(self, out: memoryview, piece_bytes: int) -> Iterator[int]:
        """Decrypt into `out` one piece (at most `piece_bytes`) at a time; yields each piece's length.

        `out` must hold `piece_bytes + 15` bytes. The caller consumes `out[:n]` before the next step.
        """
        if self._decryptor is None:
            raise ValueError("the payload stream is finished")
        if out.nbytes < piece_bytes + 15:
            raise ValueError("the output buffer needs piece_bytes + 15 bytes")
        for start in range(0, self.size_bytes, piece_bytes):
            yield self._decryptor.update_into(self._ciphertext[start : start + piece_bytes], out)

    def finish(self, tag: bytes) -> None:
        """Check the tag; raises DecryptionFailed. Everything produced before is unauthenticated until this
        returns."""
        if self._decryptor is None:
            raise ValueError("the payload stream is finished")
        decryptor, self._decryptor = self._decryptor, None
        try:
            decryptor.finalize_with_tag(tag)  # type: ignore[attr-defined]
        except InvalidTag:
            raise DecryptionFailed(
                "ciphertext failed to authenticate: it was modified, truncated, or sealed for another key or context"
            ) from None


def open_payload_stream(opened: OpenedRequestKey) -> PayloadStream:
    """The request payload of `opened`, to be decrypted in pieces (same key, nonce and AAD as
    `OpenedRequestKey.decrypt_payload_into`)."""
    parsed = opened.parsed
    ciphertext = parsed.payload_ciphertext
    material = bytearray(MATERIAL_BYTES)
    try:
        _derive(_content_key_of(opened), opened.metadata.request_id, LABEL_REQUEST_KEY, material)
        view = memoryview(material)
        decryptor = Cipher(algorithms.AES(view[:KEY_BYTES]), modes.GCM(bytes(view[KEY_BYTES:]))).decryptor()
        view.release()  # OpenSSL has its own copy of the key now; ours is zeroed below
    finally:
        zero_buffer(material)
    decryptor.authenticate_additional_data(AAD_REQUEST + bytes(parsed.header) + opened.metadata_raw)
    return PayloadStream(decryptor, ciphertext[: len(ciphertext) - TAG_BYTES])


def payload_tag(opened: OpenedRequestKey) -> bytes:
    ciphertext = opened.parsed.payload_ciphertext
    return bytes(ciphertext[len(ciphertext) - TAG_BYTES :])
