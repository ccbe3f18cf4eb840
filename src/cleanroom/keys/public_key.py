"""The tenant public-key token clients seal to: `cleanroom-pk:v1:<tenant id>:<key id>:<base64url point>`.

One string carries everything a client needs (which tenant, which key version, the P-384 point), so it can
be pasted into a config file or pinned, and a key swapped by a proxy is a different string.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
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
        return cls(tenant_id=tenant_id, key_id=key_id,
                   key=ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP384R1(), raw))
