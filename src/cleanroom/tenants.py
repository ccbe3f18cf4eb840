"""Tenant lifecycle and authentication, on top of the registry and the keyring.

Used by the server's admin routes and, when no server is running on the data dir, by the CLI directly:
both paths run this same code, so a tenant created either way is identical.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from cleanroom.errors import CredentialExpired, CredentialRevoked, TenantRevoked, Unauthenticated
from cleanroom.keys import api_keys
from cleanroom.keys.keyring import Keyring, decode_public_key
from cleanroom.keys.public_key import TenantPublicKey
from cleanroom.keys.registry import Document, Registry, ensure_unique_name, new_id, validate_tenant_name


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant and the credential (by id, never the key)."""

    tenant_id: str
    tenant_name: str
    credential_id: str


@dataclass(frozen=True)
class CreatedTenant:
    tenant_id: str
    name: str
    api_key: str
    public_key: str
    key_id: str

    def to_json(self) -> dict[str, str]:
        return {"tenant_id": self.tenant_id, "name": self.name, "api_key": self.api_key,
                "public_key": self.public_key, "key_id": self.key_id}


def public_view(record: Document) -> dict[str, Any]:
    """A tenant as `tenant list` shows it: no hashes, no wrapped keys."""
    return {
        "tenant_id": record["tenant_id"], "name": record["name"], "created_at": record["created_at"],
        "weight": record.get("weight", 1.0), "revoked": bool(record.get("revoked", False)),
        "current_key_id": record["current_key_id"],
        "credentials": [{k: c.get(k) for k in ("id", "label", "created_at", "expires_at", "revoked")}
                        for c in record.get("credentials", [])],
    }


class TenantService:
    """Create, list, delete and authenticate tenants."""

    def __init__(self, registry: Registry, keyring: Keyring) -> None:
        self.registry, self.keyring = registry, keyring
        self._pepper: bytearray | None = None
        self._index: dict[str, tuple[str, str]] = {}
        self._index_generation = -1
        self._mutex = threading.Lock()

    def _pepper_bytes(self) -> bytearray:
        if self._pepper is None:
            self._pepper = self.keyring.ensure_pepper()
        return self._pepper

    def create(self, name: str, *, weight: float = 1.0, label: str = "default") -> CreatedTenant:
        validate_tenant_name(name)
        if not 0 < weight <= 1000:
            from cleanroom.errors import BadRequest

            raise BadRequest("weight must be in (0, 1000]", code="invalid_weight")
        pepper = self._pepper_bytes()
        tenant_id = new_id("t")
        tenant_keys, hpke_keys, key_id = self.keyring.new_tenant_keys(tenant_id)
        api_key = api_keys.generate_api_key()
        credential = {"id": new_id("ck"), "label": label, "hash": api_keys.keyed_hash(pepper, api_key),
                      "created_at": time.time(), "expires_at": None, "revoked": False}
        record = {"tenant_id": tenant_id, "name": name, "created_at": time.time(), "weight": weight,
                  "revoked": False, "tenant_keys": tenant_keys, "hpke_keys": hpke_keys,
                  "current_key_id": key_id, "credentials": [credential]}

        def add(doc: Document) -> None:
            ensure_unique_name(doc, name)
            doc["tenants"][tenant_id] = record

        self.registry.update(add)
        token = TenantPublicKey(tenant_id, key_id, decode_public_key(str(hpke_keys[0]["public_key"]))).token()
        return CreatedTenant(tenant_id=tenant_id, name=name, api_key=api_key, public_key=token, key_id=key_id)

    def list(self) -> list[dict[str, Any]]:
        return [public_view(r) for r in sorted(self.registry.tenants().values(), key=lambda r: r["created_at"])]

    def delete(self, name_or_id: str) -> str:
        tenant_id = self.registry.tenant(name_or_id)["tenant_id"]

        def remove(doc: Document) -> None:
            doc["tenants"].pop(tenant_id, None)

        self.registry.update(remove)
        self.keyring.purge(tenant_id)
        return str(tenant_id)

    def public_key(self, tenant_id: str) -> dict[str, str]:
        record = self.registry.tenant(tenant_id)
        key_id = record["current_key_id"]
        encoded = next(k["public_key"] for k in record["hpke_keys"] if k["key_id"] == key_id)
        public = TenantPublicKey(record["tenant_id"], key_id, decode_public_key(encoded))
        return {"tenant_id": public.tenant_id, "key_id": key_id, "public_key": public.token(),
                "fingerprint": public.fingerprint(),
                "suite": "DHKEM(P-384,HKDF-SHA384)/HKDF-SHA384/AES-256-GCM"}

    def authenticate(self, api_key: str) -> Principal:
        """Resolve an API key to its tenant; constant-time on the hash, clear errors otherwise."""
        if not api_keys.is_well_formed(api_key):
            raise Unauthenticated("API key is missing or malformed (expected `cr_` + 36 characters)")
        digest = api_keys.keyed_hash(self._pepper_bytes(), api_key)
        with self._mutex:
            self.registry.refresh()
            if self._index_generation != self.registry.generation:
                self._index = self.registry.credential_index()
                self._index_generation = self.registry.generation
            # A dict lookup on an HMAC output leaks nothing useful: the attacker cannot choose digests
            # without the pepper, so there is no timing oracle to guard with compare_digest.
            found = self._index.get(digest)
        if found is None:
            raise Unauthenticated("API key is not recognised")
        tenant_id, credential_id = found
        record = self.registry.tenant(tenant_id)
        credential = next(c for c in record["credentials"] if c["id"] == credential_id)
        if credential.get("revoked"):
            raise CredentialRevoked("this API key has been revoked")
        expires_at = credential.get("expires_at")
        if expires_at is not None and expires_at < time.time():
            raise CredentialExpired("this API key has expired")
        if record.get("revoked"):
            raise TenantRevoked(f"tenant {record['name']!r} is revoked")
        return Principal(tenant_id=tenant_id, tenant_name=record["name"], credential_id=credential_id)

    def close(self) -> None:
        if self._pepper is not None:
            from cleanroom.crypto.aead import zero_buffer

            zero_buffer(self._pepper)
            self._pepper = None
