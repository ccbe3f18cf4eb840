"""A cleanroom client written only from the public documents, to prove that they are enough.

Sources, and nothing else: docs/wire-format.md (byte layouts, labels, metadata, error codes), the README's
HTTP section, docs/openapi.json (routes, the public-key object, the error body) and DESIGN §4. It does not
import `cleanroom`; the primitives are `cryptography`'s HPKE (RFC 9180), HKDF and AES-GCM used directly.

The layers are split so that tests can build hostile requests with the same code that builds good ones:
`seal_request` makes a correct request, `frame_request` / `seal_hpke` / `encrypt_payload` are the pieces
it is made of, and `open_response` checks everything a client must check before it trusts an answer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

CONTENT_TYPE = "application/vnd.cleanroom.sealed"
SUITE_NAME = "DHKEM(P-384,HKDF-SHA384)/HKDF-SHA384/AES-256-GCM"
# RFC 9180 §7: DHKEM(P-384, HKDF-SHA384) 0x0011, HKDF-SHA384 0x0002, AES-256-GCM 0x0002.
HPKE_SUITE = hpke.Suite(hpke.KEM.P384, hpke.KDF.HKDF_SHA384, hpke.AEAD.AES_256_GCM)

REQUEST_MAGIC = b"CRQ1"
RESPONSE_MAGIC = b"CRS1"
SUITE_ID = 0x01
ENC_BYTES = 97  # uncompressed P-384 point
CEK_BYTES = 32
TAG_BYTES = 16
REQUEST_ID_BYTES = 16
RESPONSE_HEADER_BYTES = 4 + 1 + REQUEST_ID_BYTES
KEY_ID_PATTERN = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
HPKE_BLOB_MIN_BYTES, HPKE_BLOB_MAX_BYTES = 114, 4096

# Labels are the ASCII bytes shown in wire-format.md; only the two AAD labels end in a NUL byte.
HPKE_INFO_LABEL = b"cleanroom/v1 sealed request"
REQUEST_KEY_LABEL = b"cleanroom/v1 request key"
RESPONSE_KEY_LABEL = b"cleanroom/v1 response key"
REQUEST_AAD_LABEL = b"cleanroom/v1 request payload\0"
RESPONSE_AAD_LABEL = b"cleanroom/v1 response payload\0"


class ResponseRejected(Exception):
    """A response that this client must not trust (wrong framing, wrong request, failed tag)."""


class KeyRejected(Exception):
    """A public-key answer that does not parse or does not match its own fingerprint or tenant."""


@dataclass
class ServerRefused(Exception):
    """A non-200 answer, with its documented JSON error body."""

    status: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


@dataclass(frozen=True)
class TenantKey:
    """The tenant's HPKE public key, from a `cleanroom-pk:v1:<tenant id>:<key id>:<point>` token."""

    tenant_id: str
    key_id: str
    point: bytes

    @classmethod
    def from_token(cls, token: str) -> TenantKey:
        # Tenant ids and base64url have no ':'; a key id may (wire-format.md § Tenant public key token).
        head, _, encoded = token.rpartition(":")
        parts = head.split(":", 3)
        if len(parts) != 4 or parts[0] != "cleanroom-pk" or parts[1] != "v1":
            raise KeyRejected("not a cleanroom-pk:v1 token")
        _, _, tenant_id, key_id = parts
        if not tenant_id or not KEY_ID_PATTERN.fullmatch(key_id.encode()):
            raise KeyRejected("bad tenant id or key id in token")
        point = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        if len(point) != ENC_BYTES or point[0] != 0x04:
            raise KeyRejected("the key is not an uncompressed P-384 point")
        key = cls(tenant_id, key_id, point)
        key.public_key()  # refuses a point that is not on the curve
        return key

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.point).hexdigest()

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP384R1(), self.point)


def canonical_metadata(*, tenant_id: str, request_id: bytes, ts: int, model: str = "", path: str = "") -> bytes:
    """`{"model","path","request_id","tenant_id","ts","v"}`, keys sorted, no whitespace."""
    fields = {"model": model, "path": path, "request_id": request_id.hex(), "tenant_id": tenant_id, "ts": ts, "v": 1}
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def derive_key_nonce(cek: bytes, request_id: bytes, label: bytes) -> tuple[bytes, bytes]:
    """HKDF-SHA384(ikm=CEK, salt=the 16 raw request-id bytes, info=label, L=44) → key (32) ‖ nonce (12)."""
    okm = HKDF(algorithm=hashes.SHA384(), length=44, salt=request_id, info=label).derive(cek)
    return okm[:32], okm[32:]


def request_prefix(key_id: bytes) -> bytes:
    """Bytes 0..6+K: magic, suite, K, key id (the part bound through the HPKE info)."""
    return REQUEST_MAGIC + bytes([SUITE_ID, len(key_id) & 0xFF]) + key_id


def seal_hpke(public_key: ec.EllipticCurvePublicKey, prefix: bytes, hpke_plaintext: bytes) -> bytes:
    """HPKE single-shot base mode, info = label ‖ prefix, empty aad → enc (97) ‖ ciphertext ‖ tag."""
    return HPKE_SUITE.encrypt(hpke_plaintext, public_key, info=HPKE_INFO_LABEL + prefix)


def frame_request(prefix: bytes, hpke_blob: bytes, *, blob_length: int | None = None) -> bytes:
    """Bytes 0..8+K+E (everything before the payload ciphertext); `blob_length` overrides E for tests."""
    length = len(hpke_blob) if blob_length is None else blob_length
    return prefix + length.to_bytes(2, "big") + hpke_blob


def encrypt_payload(cek: bytes, request_id: bytes, header: bytes, metadata: bytes, payload: bytes) -> bytes:
    key, nonce = derive_key_nonce(cek, request_id, REQUEST_KEY_LABEL)
    return AESGCM(key).encrypt(nonce, payload, REQUEST_AAD_LABEL + header + metadata)


@dataclass(frozen=True)
class SealedRequest:
    body: bytes
    request_id: bytes
    cek: bytes = field(repr=False)
    metadata: bytes

    def open_response(self, body: bytes) -> bytes:
        return open_response(self, body)


def seal_request(
    key: TenantKey,
    payload: bytes,
    *,
    model: str = "",
    path: str = "",
    ts: int | None = None,
    request_id: bytes | None = None,
    cek: bytes | None = None,
    metadata: bytes | None = None,
    key_id: bytes | None = None,
) -> SealedRequest:
    """A correct sealed request; the keyword overrides exist so tests can build wrong ones the same way."""
    request_id = os.urandom(REQUEST_ID_BYTES) if request_id is None else request_id
    cek = os.urandom(CEK_BYTES) if cek is None else cek
    if metadata is None:
        now = int(time.time()) if ts is None else ts
        metadata = canonical_metadata(tenant_id=key.tenant_id, request_id=request_id, ts=now, model=model, path=path)
    prefix = request_prefix(key.key_id.encode() if key_id is None else key_id)
    header = frame_request(prefix, seal_hpke(key.public_key(), prefix, cek + metadata))
    body = header + encrypt_payload(cek, request_id, header, metadata, payload)
    return SealedRequest(body=body, request_id=request_id, cek=cek, metadata=metadata)


def open_response(request: SealedRequest, body: bytes) -> bytes:
    """Check framing, the request id and the tag; only then return the plaintext."""
    if len(body) < RESPONSE_HEADER_BYTES + TAG_BYTES:
        raise ResponseRejected("response shorter than its header and tag")
    if body[:4] != RESPONSE_MAGIC or body[4] != SUITE_ID:
        raise ResponseRejected("not a CRS1 suite-1 response")
    if body[5:RESPONSE_HEADER_BYTES] != request.request_id:
        raise ResponseRejected("response answers another request")
    key, nonce = derive_key_nonce(request.cek, request.request_id, RESPONSE_KEY_LABEL)
    aad = RESPONSE_AAD_LABEL + body[:RESPONSE_HEADER_BYTES] + request.metadata
    try:
        return AESGCM(key).decrypt(nonce, body[RESPONSE_HEADER_BYTES:], aad)
    except InvalidTag:
        raise ResponseRejected("response tag does not verify") from None


def seal_response(request: SealedRequest, plaintext: bytes) -> bytes:
    """The server's side of a response; used only to check the test vectors byte for byte."""
    header = RESPONSE_MAGIC + bytes([SUITE_ID]) + request.request_id
    key, nonce = derive_key_nonce(request.cek, request.request_id, RESPONSE_KEY_LABEL)
    return header + AESGCM(key).encrypt(nonce, plaintext, RESPONSE_AAD_LABEL + header + request.metadata)


def refusal(response: httpx.Response) -> ServerRefused:
    """Parse the documented error body; anything else is itself a contract violation."""
    if not response.headers.get("content-type", "").startswith("application/json"):
        raise AssertionError(f"{response.status_code} without a JSON body: {response.text[:200]!r}")
    error = response.json()["error"]
    if not isinstance(error.get("code"), str) or not isinstance(error.get("message"), str):
        raise AssertionError(f"{response.status_code} error body lacks code/message: {response.text[:200]!r}")
    return ServerRefused(response.status_code, error["code"], error["message"])


class IndependentClient:
    """Fetch the key, seal, POST, open: the whole client, on top of one `httpx.Client`."""

    def __init__(self, http: httpx.Client, api_key: str) -> None:
        self.http = http
        self.api_key = api_key
        self._key: TenantKey | None = None

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def fetch_key(self) -> TenantKey:
        response = self.http.get("/v1/tenants/self/public-key", headers=self.auth)
        if response.status_code != 200:
            raise refusal(response)
        answer: dict[str, Any] = response.json()
        key = TenantKey.from_token(answer["public_key"])
        if answer["suite"] != SUITE_NAME:
            raise KeyRejected(f"unexpected suite {answer['suite']!r}")
        if (key.tenant_id, key.key_id) != (answer["tenant_id"], answer["key_id"]):
            raise KeyRejected("token names another tenant or key than the answer")
        if answer["fingerprint"] != key.fingerprint:
            raise KeyRejected("fingerprint does not match the key")
        return key

    @property
    def key(self) -> TenantKey:
        if self._key is None:
            self._key = self.fetch_key()
        return self._key

    def seal(self, model: str, payload: bytes, **overrides: Any) -> SealedRequest:
        return seal_request(self.key, payload, model=model, **overrides)

    def post(self, model: str, body: bytes, content_type: str = CONTENT_TYPE) -> httpx.Response:
        headers = {**self.auth, "Content-Type": content_type}
        return self.http.post(f"/v1/models/{model}/infer", content=body, headers=headers)

    def infer(self, model: str, payload: bytes) -> bytes:
        sealed = self.seal(model, payload)
        response = self.post(model, sealed.body)
        if response.status_code != 200:
            raise refusal(response)
        if response.headers.get("content-type", "").split(";")[0].strip() != CONTENT_TYPE:
            raise ResponseRejected(f"200 with content type {response.headers.get('content-type')!r}")
        return sealed.open_response(response.content)
