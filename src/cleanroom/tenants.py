"""Tenant lifecycle and authentication, on top of the registry and the keyring.

Used by the server's admin routes and, when no server is running on the data dir, by the CLI directly:
both paths run this same code, so a tenant created either way is identical.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from cleanroom.access import AddressNotAllowed, check_allowed, normalize_cidrs
from cleanroom.errors import (
    BadRequest,
    CredentialExpired,
    CredentialRevoked,
    NotFound,
    TenantRevoked,
    Unauthenticated,
)
from cleanroom.keys import api_keys
from cleanroom.keys.keyring import Keyring, decode_public_key
from cleanroom.keys.public_key import TenantPublicKey
from cleanroom.keys.registry import (
    Document,
    Registry,
    ensure_unique_name,
    new_id,
    validate_tenant_name,
)


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
        return {
            "tenant_id": self.tenant_id,
            "name": self.name,
            "api_key": self.api_key,
            "public_key": self.public_key,
            "key_id": self.key_id,
            "fingerprint": TenantPublicKey.parse(self.public_key).fingerprint(),
        }


CREDENTIAL_FIELDS = ("id", "label", "created_at", "expires_at", "last_used_at", "revoked")
LAST_USED_PERSIST_EVERY_S = 60.0


def credential_view(credential: Document, last_used: float | None = None) -> dict[str, Any]:
    view = {k: credential.get(k) for k in CREDENTIAL_FIELDS}
    if last_used is not None and (view["last_used_at"] is None or last_used > view["last_used_at"]):
        view["last_used_at"] = last_used
    return view


def public_view(record: Document, last_used: dict[str, float] | None = None) -> dict[str, Any]:
    """A tenant as `tenant list` shows it: no hashes, no wrapped keys."""
    last_used = last_used or {}
    return {
        "tenant_id": record["tenant_id"],
        "name": record["name"],
        "created_at": record["created_at"],
        "weight": record.get("weight", 1.0),
        "revoked": bool(record.get("revoked", False)),
        "current_key_id": record["current_key_id"],
        "allow": list(record.get("allow", [])),
        "credentials": [credential_view(c, last_used.get(c["id"])) for c in record.get("credentials", [])],
    }


@dataclass(frozen=True)
class CreatedCredential:
    tenant_id: str
    credential_id: str
    label: str
    api_key: str
    expires_at: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "credential_id": self.credential_id,
            "label": self.label,
            "api_key": self.api_key,
            "expires_at": self.expires_at,
        }


# A credential that outlives a century is a typo (or `1e400`, which JSON turns into an infinite expiry
# that cannot be written back as JSON: the key would be stored and every listing of it fail).
MAX_CREDENTIAL_LIFETIME_S = 100 * 365 * 86_400.0
# Labels end up in the CLI's listings and in logs: no control characters (C0, DEL, C1) and no invisible or
# bidirectional formatting characters (U+202E turned "ci-deploy" into what a terminal shows as "yolped-ic").
# One pattern for Python's `re` and pydantic's Rust regex alike; always `fullmatch` it: with `re.match`, "$"
# also matches before a trailing newline ("deploy\n" passed).
PRINTABLE_LABEL = r"^[^\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]+$"


def check_credential(record: Document, credential_id: str) -> None:
    """Raise unless the tenant `record` holds credential `credential_id`, unrevoked and unexpired.

    Run at admission (`authenticate`) and again when a queued request is opened: a credential revoked
    while its request waited stops it there, as a revoked tenant does (DESIGN §2, invariant 6: the next request)."""
    credential = next((c for c in record.get("credentials", []) if c["id"] == credential_id), None)
    if credential is None:
        raise CredentialRevoked("this API key no longer exists")
    if credential.get("revoked"):
        raise CredentialRevoked("this API key has been revoked")
    expires_at = credential.get("expires_at")
    if expires_at is not None and expires_at < time.time():
        raise CredentialExpired("this API key has expired")


def validate_weight(weight: float) -> None:
    if not 0 < weight <= 1000:
        raise BadRequest("weight must be in (0, 1000]", code="invalid_weight")


class TenantService:
    """Create, list, delete and authenticate tenants."""

    def __init__(self, registry: Registry, keyring: Keyring) -> None:
        self.registry, self.keyring = registry, keyring
        self._pepper: bytearray | None = None
        self._index: dict[str, tuple[str, str]] = {}
        self._index_generation = -1
        self._mutex = threading.Lock()
        self._last_used: dict[str, float] = {}
        self._last_persisted: dict[str, float] = {}
        self.audit: Any = None  # an AuditSink, set by the server so refusals are on record

    def _pepper_bytes(self) -> bytearray:
        if self._pepper is None:
            self._pepper = self.keyring.ensure_pepper()
        return self._pepper

    def _new_credential(self, label: str, expires_in_s: float | None) -> tuple[str, Document]:
        # Checked here, not only by the HTTP and CLI layers: the Python API stores what it is given.
        if not label or len(label) > 64 or not re.fullmatch(PRINTABLE_LABEL, label):
            raise BadRequest("credential labels are 1-64 characters, none a control character", code="invalid_label")
        if expires_in_s is not None and not 0 < expires_in_s <= MAX_CREDENTIAL_LIFETIME_S:  # NaN fails too
            raise BadRequest("expiry must be in the future and at most 100 years away", code="invalid_expiry")
        api_key = api_keys.generate_api_key()
        now = time.time()
        return api_key, {
            "id": new_id("ck"),
            "label": label,
            "hash": api_keys.keyed_hash(self._pepper_bytes(), api_key),
            "created_at": now,
            "expires_at": None if expires_in_s is None else now + expires_in_s,
            "last_used_at": None,
            "revoked": False,
        }

    def create(
        self, name: str, *, weight: float = 1.0, label: str = "default", allow: list[str] | None = None
    ) -> CreatedTenant:
        validate_tenant_name(name)
        validate_weight(weight)
        allow = normalize_cidrs(allow or [])
        tenant_id = new_id("t")
        api_key, credential = self._new_credential(label, None)
        tenant_keys, hpke_keys, key_id = self.keyring.new_tenant_keys(tenant_id)
        record = {
            "tenant_id": tenant_id,
            "name": name,
            "created_at": time.time(),
            "weight": weight,
            "revoked": False,
            "tenant_keys": tenant_keys,
            "hpke_keys": hpke_keys,
            "current_key_id": key_id,
            "credentials": [credential],
            "allow": allow,
        }

        def add(doc: Document) -> None:
            ensure_unique_name(doc, name)
            doc["tenants"][tenant_id] = record

        self.registry.update(add)
        self._record(
            "key.create", tenant_id=tenant_id, key_id=key_id, principal=credential["id"], details={"tenant_name": name}
        )
        token = TenantPublicKey(tenant_id, key_id, decode_public_key(str(hpke_keys[0]["public_key"]))).token()
        return CreatedTenant(tenant_id=tenant_id, name=name, api_key=api_key, public_key=token, key_id=key_id)

    def list_tenants(self) -> list[dict[str, Any]]:
        records = sorted(self.registry.tenants().values(), key=lambda r: r["created_at"])
        return [public_view(r, self._last_used) for r in records]

    def update(self, name_or_id: str, *, weight: float | None = None, allow: list[str] | None = None) -> dict[str, Any]:
        """Change a tenant's weight or IP allowlist (`allow=[]` clears it: every address allowed)."""
        tenant_id = self.registry.tenant(name_or_id)["tenant_id"]
        if weight is not None:
            validate_weight(weight)
        networks = normalize_cidrs(allow) if allow is not None else None

        def change(doc: Document) -> None:
            record = doc["tenants"][tenant_id]
            if weight is not None:
                record["weight"] = weight
            if networks is not None:
                record["allow"] = networks

        self.registry.update(change)
        self._record(
            "admin.tenant_update",
            tenant_id=tenant_id,
            details={"weight_changed": weight is not None, "allowlist_changed": networks is not None},
        )
        return public_view(self.registry.tenant(tenant_id), self._last_used)

    # --- credentials --------------------------------------------------------------------------------
    def add_credential(
        self, name_or_id: str, *, label: str = "default", expires_in_s: float | None = None
    ) -> CreatedCredential:
        tenant_id = self.registry.tenant(name_or_id)["tenant_id"]
        api_key, credential = self._new_credential(label, expires_in_s)

        def add(doc: Document) -> None:
            doc["tenants"][tenant_id]["credentials"].append(credential)

        self.registry.update(add)
        self._record("key.create", tenant_id=tenant_id, principal=credential["id"], purpose="api-key")
        return CreatedCredential(tenant_id, credential["id"], label, api_key, credential["expires_at"])

    def list_credentials(self, name_or_id: str) -> list[dict[str, Any]]:
        record = self.registry.tenant(name_or_id)
        return [credential_view(c, self._last_used.get(c["id"])) for c in record["credentials"]]

    def revoke_credential(self, name_or_id: str, credential_id: str) -> dict[str, Any]:
        tenant_id = self.registry.tenant(name_or_id)["tenant_id"]

        def revoke(doc: Document) -> None:
            for credential in doc["tenants"][tenant_id]["credentials"]:
                if credential["id"] == credential_id:
                    credential["revoked"] = True
                    return
            raise NotFound(f"tenant has no credential {credential_id!r}", code="unknown_credential")

        self.registry.update(revoke)
        self._record("key.revoke", tenant_id=tenant_id, principal=credential_id, purpose="api-key")
        return {"tenant_id": tenant_id, "credential_id": credential_id, "revoked": True}

    def rotate_credential(self, credential_id: str) -> dict[str, Any]:
        """A new API key in place of `credential_id`: same tenant, label and lifetime, the old one revoked,
        in one registry update (a crash leaves the old key working or both changes made, never neither key).

        `keys rotate --credential ID` (DESIGN §5 names the credential scope for rotate too). The new key is
        shown once, like `tenant keys add`; the old one is refused (401 `credential_revoked`) on the next
        request. A revoked or expired credential is not rotated: issue a fresh one with `tenant keys add`.
        """
        tenant_id, old = self._find_credential(credential_id)
        if old.get("revoked"):
            raise BadRequest(
                f"credential {credential_id!r} is revoked; add a new one instead", code="credential_already_revoked"
            )
        expires_at = old.get("expires_at")
        lifetime_s = None if expires_at is None else float(expires_at) - float(old.get("created_at") or time.time())
        if expires_at is not None and float(expires_at) <= time.time():
            raise BadRequest(
                f"credential {credential_id!r} has expired; add a new one instead", code="credential_expired"
            )
        api_key, credential = self._new_credential(old["label"], lifetime_s if lifetime_s and lifetime_s > 0 else None)

        def swap(doc: Document) -> None:
            credentials = doc["tenants"][tenant_id]["credentials"]
            current = next((c for c in credentials if c["id"] == credential_id), None)
            if current is None or current.get("revoked"):  # changed since we looked: do nothing
                raise NotFound(f"no active credential {credential_id!r}", code="unknown_credential")
            current["revoked"] = True
            credentials.append(credential)

        self.registry.update(swap)
        self._record("key.create", tenant_id=tenant_id, principal=credential["id"], purpose="api-key")
        self._record("key.revoke", tenant_id=tenant_id, principal=credential_id, purpose="api-key")
        created = CreatedCredential(tenant_id, credential["id"], old["label"], api_key, credential["expires_at"])
        return {**created.to_json(), "replaced": credential_id}

    def _find_credential(self, credential_id: str) -> tuple[str, Document]:
        for tenant_id, tenant in self.registry.tenants().items():
            for credential in tenant.get("credentials", []):
                if credential["id"] == credential_id:
                    return tenant_id, credential
        raise NotFound(f"no credential with id {credential_id!r}", code="unknown_credential")

    def _record(self, event: str, **fields: Any) -> None:
        """Key operations and admin actions go on the audit record (DESIGN §2.5), when one is attached."""
        if self.audit is not None:
            self.audit.record({"event": event, **fields})

    def _touch(self, credential_id: str, tenant_id: str) -> None:
        """Remember when a key was last used; persist it at most once a minute per key."""
        now = time.time()
        self._last_used[credential_id] = now
        if now - self._last_persisted.get(credential_id, 0.0) < LAST_USED_PERSIST_EVERY_S:
            return
        self._last_persisted[credential_id] = now

        def persist(doc: Document) -> None:
            for credential in doc["tenants"].get(tenant_id, {}).get("credentials", []):
                if credential["id"] == credential_id:
                    credential["last_used_at"] = now

        self.registry.update(persist)

    def delete(self, name_or_id: str) -> str:
        tenant_id = self.registry.tenant(name_or_id)["tenant_id"]

        def remove(doc: Document) -> None:
            doc["tenants"].pop(tenant_id, None)

        self.registry.update(remove)
        self.keyring.purge(tenant_id)
        self.keyring.customer_kms.drop(tenant_id)  # its client holds the customer's token: close it now
        self._record("key.delete", tenant_id=tenant_id, purpose="tenant")
        return str(tenant_id)

    def public_key(self, tenant_id: str) -> dict[str, Any]:
        """The current key, and the chain of endorsements that lets pinned clients follow rotations."""
        record = self.registry.tenant(tenant_id)
        key_id = record["current_key_id"]
        chain = []
        for key in record["hpke_keys"]:
            token = TenantPublicKey(record["tenant_id"], key["key_id"], decode_public_key(key["public_key"])).token()
            chain.append(
                {
                    "key_id": key["key_id"],
                    "public_key": token,
                    "endorsed_by": key.get("endorsed_by"),
                    "endorsement": key.get("endorsement"),
                    "expires_at": key.get("expires_at"),
                }
            )
        encoded = next(k["public_key"] for k in record["hpke_keys"] if k["key_id"] == key_id)
        public = TenantPublicKey(record["tenant_id"], key_id, decode_public_key(encoded))
        return {
            "tenant_id": public.tenant_id,
            "key_id": key_id,
            "public_key": public.token(),
            "fingerprint": public.fingerprint(),
            "chain": chain,
            "suite": "DHKEM(P-384,HKDF-SHA384)/HKDF-SHA384/AES-256-GCM",
        }

    def authenticate(self, api_key: str, source: str | None = None) -> Principal:
        """Resolve an API key to its tenant and check the caller's address against the tenant's allowlist.

        Runs before anything is decrypted; a refused address is an audit record and a 403.
        """
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
        check_credential(record, credential_id)
        if record.get("revoked"):
            raise TenantRevoked(f"tenant {record['name']!r} is revoked")
        if source is not None:
            try:
                check_allowed(record.get("allow", []), source, record["name"])
            except AddressNotAllowed:
                if self.audit is not None:
                    self.audit.record(
                        {
                            "event": "auth.address_refused",
                            "tenant_id": tenant_id,
                            "principal": credential_id,
                            "source": source,
                        }
                    )
                raise
        self._touch(credential_id, tenant_id)
        return Principal(tenant_id=tenant_id, tenant_name=record["name"], credential_id=credential_id)

    def close(self) -> None:
        if self._pepper is not None:
            from cleanroom.crypto.aead import zero_buffer

            zero_buffer(self._pepper)
            self._pepper = None
