"""Sealed requests and responses: the client-to-server format of DESIGN §4 (layout in docs/wire-format.md).

A client draws a fresh 256-bit content key (CEK) per request and seals `CEK || metadata` to the tenant's
public key with single-shot HPKE (RFC 9180 base mode; DHKEM(P-384, HKDF-SHA384), HKDF-SHA384,
AES-256-GCM). The payload is encrypted under a key and nonce derived from the CEK (`MessageKey`), with the
whole header and the metadata as AAD; the response under a second derived key, bound to the request.

Sealed request, all integers big-endian:

    offset  size  field
    0       4     magic  b"CRQ1"
    4       1     suite  0x01
    5       1     K = key id length, 1..64
    6       K     key id (ASCII): which of the tenant's HPKE keys this is sealed to
    6+K     2     E = length of the HPKE blob, 114..4096 (enc 97 + tag 16 + at least 1)
    8+K     E     HPKE blob = enc (97) || Seal(CEK (32) || metadata JSON), info = INFO_REQUEST || bytes 0..6+K
    8+K+E   rest  payload ciphertext || 16-byte tag, AAD = AAD_REQUEST || bytes 0..8+K+E || metadata JSON

Metadata JSON (UTF-8, keys sorted, no spaces): {"model", "path", "request_id" (32 hex), "tenant_id",
"ts" (unix seconds), "v": 1}. The server checks tenant and model/path against the call it arrived on, the
timestamp against the replay window, and the request id against the seen-id cache.

Sealed response: b"CRS1" || 0x01 || request id (16) || ciphertext || tag, AAD = AAD_RESPONSE || those 21
header bytes || metadata JSON of the request.
"""

from __future__ import annotations

import json
import os
import re
import struct
import time
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.crypto.aead import KEY_BYTES, TAG_BYTES, MessageKey, Writable, zero_buffer
from cleanroom.errors import DecryptionFailed, InvalidSealedMessage

REQUEST_MAGIC = b"CRQ1"
RESPONSE_MAGIC = b"CRS1"
SUITE_P384_SHA384_AES256GCM = 0x01
INFO_REQUEST = b"cleanroom/v1 sealed request"
AAD_REQUEST = b"cleanroom/v1 request payload\x00"
AAD_RESPONSE = b"cleanroom/v1 response payload\x00"
LABEL_REQUEST_KEY = b"cleanroom/v1 request key"
LABEL_RESPONSE_KEY = b"cleanroom/v1 response key"
MAX_KEY_ID_BYTES = 64
MAX_HPKE_BLOB_BYTES = 4096
MAX_METADATA_BYTES = 2048
REQUEST_ID_BYTES = 16
HPKE_ENC_BYTES = 97  # uncompressed P-384 point
CONTENT_TYPE = "application/vnd.cleanroom.sealed"
# fullmatch, never match with ^...$: "$" also matches before a trailing newline ("hk_1\n" passed the check).
_KEY_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,64}")

SUITE = hpke.Suite(hpke.KEM.P384, hpke.KDF.HKDF_SHA384, hpke.AEAD.AES_256_GCM)


@dataclass(frozen=True)
class RequestMetadata:
    """What a sealed request says about itself; authenticated by HPKE, checked by the server."""

    request_id: bytes
    tenant_id: str
    model: str
    path: str
    ts: int

    def encode(self) -> bytes:
        doc = {
            "model": self.model,
            "path": self.path,
            "request_id": self.request_id.hex(),
            "tenant_id": self.tenant_id,
            "ts": self.ts,
            "v": 1,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def decode(cls, raw: bytes) -> RequestMetadata:
        # Every reason below is our own words: a library's exception text (a codec's guess at UTF-16, a
        # parser's position) would put attacker-shaped detail into the answer and the logs.
        try:
            doc: Any = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidSealedMessage("sealed request metadata is malformed (not UTF-8)") from None
        except (ValueError, RecursionError):  # RecursionError: ~1000 nested brackets fit in the 2048 bytes
            raise InvalidSealedMessage("sealed request metadata is malformed (not JSON)") from None
        if not isinstance(doc, dict) or doc.get("v") != 1:
            raise InvalidSealedMessage("sealed request metadata is malformed (unknown metadata version)")
        missing = sorted({"request_id", "tenant_id", "model", "path", "ts"} - doc.keys())
        if missing:
            raise InvalidSealedMessage(f"sealed request metadata is malformed (missing {', '.join(missing)})")
        fields = (doc["tenant_id"], doc["model"], doc["path"])
        if not isinstance(doc["request_id"], str) or not all(isinstance(f, str) for f in fields):
            raise InvalidSealedMessage("sealed request metadata is malformed (a field is not a string)")
        try:
            request_id = bytes.fromhex(doc["request_id"])
        except ValueError:
            request_id = b""
        if len(request_id) != REQUEST_ID_BYTES:
            raise InvalidSealedMessage(
                f"sealed request metadata is malformed (request_id is not {REQUEST_ID_BYTES} hex bytes)"
            )
        if not isinstance(doc["ts"], int) or isinstance(doc["ts"], bool):
            raise InvalidSealedMessage("sealed request metadata is malformed (ts is not an integer)")
        meta = cls(request_id=request_id, tenant_id=fields[0], model=fields[1], path=fields[2], ts=doc["ts"])
        if meta.encode() != raw:
            raise InvalidSealedMessage("sealed request metadata is not in canonical form")
        return meta


@dataclass(frozen=True)
class ParsedRequest:
    """A sealed request split into its fields; nothing is decrypted yet."""

    key_id: str
    header: memoryview  # bytes 0 .. 8+K+E: everything the payload AAD covers before the metadata
    hpke_info: bytes
    hpke_blob: memoryview
    payload_ciphertext: memoryview

    @property
    def payload_size_bytes(self) -> int:
        return len(self.payload_ciphertext) - TAG_BYTES


def parse_request(body: bytes | memoryview) -> ParsedRequest:
    """Split a sealed request, checking every length before it is used (no decryption)."""
    view = memoryview(body)
    if len(view) < 8 or bytes(view[:4]) != REQUEST_MAGIC:
        raise InvalidSealedMessage("not a cleanroom sealed request (bad magic or too short)")
    if view[4] != SUITE_P384_SHA384_AES256GCM:
        raise InvalidSealedMessage(f"unsupported cipher suite 0x{view[4]:02x}")
    key_id_len = view[5]
    if not 1 <= key_id_len <= MAX_KEY_ID_BYTES or len(view) < 8 + key_id_len:
        raise InvalidSealedMessage("sealed request key id length is out of range")
    try:
        key_id = bytes(view[6 : 6 + key_id_len]).decode("ascii")
    except UnicodeDecodeError:
        raise InvalidSealedMessage("sealed request key id is not ASCII") from None
    if not _KEY_ID_RE.fullmatch(key_id):
        raise InvalidSealedMessage("sealed request key id has invalid characters")
    (blob_len,) = struct.unpack_from(">H", view, 6 + key_id_len)
    blob_start = 8 + key_id_len
    if not HPKE_ENC_BYTES + TAG_BYTES < blob_len <= MAX_HPKE_BLOB_BYTES:
        raise InvalidSealedMessage("sealed request HPKE blob length is out of range")
    payload_start = blob_start + blob_len
    if len(view) < payload_start + TAG_BYTES:
        raise InvalidSealedMessage("sealed request is truncated")
    return ParsedRequest(
        key_id=key_id,
        header=view[:payload_start],
        hpke_info=INFO_REQUEST + bytes(view[: 6 + key_id_len]),
        hpke_blob=view[blob_start:payload_start],
        payload_ciphertext=view[payload_start:],
    )


class OpenedRequestKey:
    """The CEK and metadata of a request after HPKE decryption. Zero it (context manager) when done."""

    def __init__(self, parsed: ParsedRequest, content_key: bytearray, metadata_raw: bytes) -> None:
        self.parsed = parsed
        self._content_key = content_key
        self.metadata_raw = metadata_raw
        self.metadata = RequestMetadata.decode(metadata_raw)

    def decrypt_payload_into(self, out: Writable) -> None:
        """Decrypt the payload straight into `out` (e.g. a SecureBuffer view); zeroed on failure."""
        aad = AAD_REQUEST + bytes(self.parsed.header) + self.metadata_raw
        with MessageKey.derive(self._content_key, salt=self.metadata.request_id, label=LABEL_REQUEST_KEY) as key:
            key.open_into(self.parsed.payload_ciphertext, aad, out)

    def seal_response(self, plaintext: bytes | memoryview) -> bytearray:
        """Seal a response to the client from `plaintext`'s memory (e.g. an output tensor's buffer)."""
        return seal_response(self._content_key, self.metadata, self.metadata_raw, plaintext)

    def close(self) -> None:
        zero_buffer(self._content_key)

    def __enter__(self) -> OpenedRequestKey:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_request_key(parsed: ParsedRequest, private_key: ec.EllipticCurvePrivateKey) -> OpenedRequestKey:
    """HPKE-open the CEK and metadata. The payload stays encrypted until `decrypt_payload_into`."""
    try:
        # HPKE single-shot returns `bytes`; it holds the CEK and metadata, never the payload. We copy the
        # CEK into a buffer we can zero; the bytes object is freed at once (allocator hardening wipes it).
        inner = SUITE.decrypt(bytes(parsed.hpke_blob), private_key, info=parsed.hpke_info)
    except (InvalidTag, ValueError):
        raise DecryptionFailed("sealed request key does not open: sealed to another key, or modified") from None
    if not KEY_BYTES < len(inner) <= KEY_BYTES + MAX_METADATA_BYTES:
        raise InvalidSealedMessage("sealed request key block has the wrong size")
    content_key = bytearray(inner[:KEY_BYTES])
    metadata_raw = inner[KEY_BYTES:]
    del inner
    try:
        return OpenedRequestKey(parsed, content_key, metadata_raw)
    except BaseException:
        zero_buffer(content_key)
        raise


def _response_header(request_id: bytes) -> bytes:
    return RESPONSE_MAGIC + bytes([SUITE_P384_SHA384_AES256GCM]) + request_id


def seal_response(
    content_key: bytes | bytearray, metadata: RequestMetadata, metadata_raw: bytes, plaintext: bytes | memoryview
) -> bytearray:
    header = _response_header(metadata.request_id)
    aad = AAD_RESPONSE + header + metadata_raw
    # One allocation, the ciphertext written after the header: no second copy of the answer to join them.
    sealed = bytearray(len(header) + len(plaintext) + TAG_BYTES)
    sealed[: len(header)] = header
    with MessageKey.derive(content_key, salt=metadata.request_id, label=LABEL_RESPONSE_KEY) as key:
        key.seal_into(plaintext, aad, memoryview(sealed)[len(header) :])
    return sealed


@dataclass
class SealedRequest:
    """What the client sends, and what it needs to open the answer: `Client.seal_request` returns one."""

    body: bytes
    metadata: RequestMetadata
    _content_key: bytearray
    _metadata_raw: bytes

    def open_response(self, sealed: bytes | memoryview) -> bytes:
        """Authenticate and decrypt the server's response (returns `bytes`: this runs on the client)."""
        view = memoryview(sealed)
        header = _response_header(self.metadata.request_id)
        if len(view) < len(header) + TAG_BYTES or bytes(view[:4]) != RESPONSE_MAGIC:
            raise InvalidSealedMessage("not a cleanroom sealed response (bad magic or too short)")
        if bytes(view[: len(header)]) != header:
            raise DecryptionFailed("sealed response belongs to another request")
        out = bytearray(len(view) - len(header) - TAG_BYTES)
        aad = AAD_RESPONSE + header + self._metadata_raw
        with MessageKey.derive(self._content_key, salt=self.metadata.request_id, label=LABEL_RESPONSE_KEY) as key:
            key.open_into(view[len(header) :], aad, out)
        return bytes(out)

    def close(self) -> None:
        zero_buffer(self._content_key)


def seal_request(
    public_key: ec.EllipticCurvePublicKey,
    key_id: str,
    payload: bytes | memoryview,
    *,
    tenant_id: str,
    model: str = "",
    path: str = "",
    request_id: bytes | None = None,
    ts: int | None = None,
    content_key: bytes | None = None,
) -> SealedRequest:
    """Seal `payload` for the tenant key `public_key`/`key_id` (client side).

    `request_id`, `ts` and `content_key` are drawn fresh when omitted; pass them only to reproduce test
    vectors.
    """
    key_id_raw = key_id.encode("ascii")
    if not _KEY_ID_RE.fullmatch(key_id):
        raise ValueError("key id must be 1..64 characters of [A-Za-z0-9._:-]")
    metadata = RequestMetadata(
        request_id=request_id or os.urandom(REQUEST_ID_BYTES),
        tenant_id=tenant_id,
        model=model,
        path=path,
        ts=int(time.time()) if ts is None else ts,
    )
    metadata_raw = metadata.encode()
    if len(metadata_raw) > MAX_METADATA_BYTES:
        raise ValueError("request metadata is too long")
    cek = bytearray(content_key if content_key is not None else os.urandom(KEY_BYTES))
    prefix = REQUEST_MAGIC + bytes([SUITE_P384_SHA384_AES256GCM, len(key_id_raw)]) + key_id_raw
    blob = SUITE.encrypt(bytes(cek) + metadata_raw, public_key, info=INFO_REQUEST + prefix)
    header = prefix + struct.pack(">H", len(blob)) + blob
    message = bytearray(len(header) + len(payload) + TAG_BYTES)  # header || ciphertext || tag, written once
    message[: len(header)] = header
    seal_payload_into(cek, metadata, metadata_raw, header, payload, memoryview(message)[len(header) :])
    return SealedRequest(body=bytes(message), metadata=metadata, _content_key=cek, _metadata_raw=metadata_raw)


def seal_payload(
    content_key: bytes | bytearray,
    metadata: RequestMetadata,
    metadata_raw: bytes,
    header: bytes,
    payload: bytes | memoryview,
) -> bytearray:
    """The deterministic half of a sealed request: the payload ciphertext for a given CEK and header."""
    out = bytearray(len(payload) + TAG_BYTES)
    seal_payload_into(content_key, metadata, metadata_raw, header, payload, out)
    return out


def seal_payload_into(
    content_key: bytes | bytearray,
    metadata: RequestMetadata,
    metadata_raw: bytes,
    header: bytes,
    payload: bytes | memoryview,
    out: Writable,
) -> None:
    """`seal_payload` into `out` (exactly len(payload) + 16 bytes)."""
    aad = AAD_REQUEST + header + metadata_raw
    with MessageKey.derive(content_key, salt=metadata.request_id, label=LABEL_REQUEST_KEY) as key:
        key.seal_into(payload, aad, out)
