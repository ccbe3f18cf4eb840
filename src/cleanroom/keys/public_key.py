"""The tenant public-key token clients seal to: `cleanroom-pk:v1:<tenant id>:<key id>:<base64url point>`.

One string carries everything a client needs (which tenant, which key version, the P-384 point), so it can
be pasted into a config file or pinned, and a key swapped by a proxy is a different string.

Rotation and pinning: when a tenant's HPKE key rotates, the previous key signs the new one (ECDSA P-384,
SHA-384, over `endorsement_message`). A client pinned to an old key accepts a new one only through an
unbroken chain of such endorsements starting at its pin — a server or proxy that swaps in its own key
cannot produce one. (The same P-384 key pair serves HPKE and these signatures; the signed message has its
own domain-separation label, and ECDH and ECDSA share no outputs.)
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

PREFIX = "cleanroom-pk:v1:"


@dataclass(frozen=True)
class TenantPublicKey:
    tenant_id: str
    key_id: str
    key: ec.EllipticCurvePublicKey

    def point(self) -> bytes:
        return self.key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)

    def token(self) -> str:
        encoded = base64.urlsafe_b64encode(self.point()).decode("ascii").rstrip("=")
        return f"{PREFIX}{self.tenant_id}:{self.key_id}:{encoded}"

    def fingerprint(self) -> str:
        """SHA-256 of the point, hex: what a client pins."""
        return hashlib.sha256(self.point()).hexdigest()

    @classmethod
    def parse(cls, token: str) -> TenantPublicKey:
        token = token.strip()
        if not token.startswith(PREFIX):
            raise ValueError(f"a tenant public key starts with {PREFIX!r}")
        parts = token[len(PREFIX) :].split(":")
        if len(parts) != 3 or not all(parts):
            raise ValueError("a tenant public key has the form cleanroom-pk:v1:TENANT:KEY_ID:POINT")
        tenant_id, key_id, encoded = parts
        raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        return cls(
            tenant_id=tenant_id, key_id=key_id, key=ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP384R1(), raw)
        )


class KeyPinMismatch(Exception):
    """The server offered a tenant key that the client's pin does not lead to."""


def endorsement_message(tenant_id: str, key_id: str, point: bytes) -> bytes:
    return b"cleanroom/v1 key endorsement\x00" + tenant_id.encode() + b"\x00" + key_id.encode() + b"\x00" + point


def sign_endorsement(previous: ec.EllipticCurvePrivateKey, new: TenantPublicKey) -> bytes:
    return previous.sign(endorsement_message(new.tenant_id, new.key_id, new.point()), ec.ECDSA(hashes.SHA384()))


def follow_pin(pinned_fingerprint: str, current: TenantPublicKey, chain: Sequence[dict[str, Any]]) -> TenantPublicKey:
    """Accept `current` if it is the pinned key or is reached from it by valid endorsements.

    `chain` is what the public-key route lists: every key of the tenant with `key_id`, `public_key` (token),
    `endorsed_by` and `endorsement` (base64 signature by the key named in `endorsed_by`).
    """
    if current.fingerprint() == pinned_fingerprint:
        return current
    by_id: dict[str, tuple[TenantPublicKey, dict[str, Any]]] = {}
    for entry in chain:
        try:
            key = TenantPublicKey.parse(str(entry["public_key"]))
        except (ValueError, KeyError, TypeError):
            # A server-chosen document: a malformed entry is a refusal, never a stray library exception.
            raise KeyPinMismatch("the key chain holds a malformed entry") from None
        if key.tenant_id != current.tenant_id or key.key_id != entry.get("key_id"):
            raise KeyPinMismatch("the key chain mixes tenants or mislabels a key")
        by_id[key.key_id] = (key, entry)
    node = by_id.get(current.key_id)
    if node is None or node[0].fingerprint() != current.fingerprint():
        raise KeyPinMismatch("the current key is not in the key chain")
    seen: set[str] = set()
    while node[0].fingerprint() != pinned_fingerprint:
        key, entry = node
        signer_id = entry.get("endorsed_by")
        if not signer_id or signer_id in seen or signer_id not in by_id:
            raise KeyPinMismatch("the server's key does not chain back to the pinned key; refusing to seal to it")
        seen.add(signer_id)
        signer = by_id[signer_id][0]
        try:
            signer.key.verify(
                base64.b64decode(str(entry.get("endorsement", ""))),
                endorsement_message(key.tenant_id, key.key_id, key.point()),
                ec.ECDSA(hashes.SHA384()),
            )
        except (InvalidSignature, ValueError):
            raise KeyPinMismatch(f"endorsement of key {key.key_id} by {signer_id} does not verify") from None
        node = by_id[signer_id]
    return current
