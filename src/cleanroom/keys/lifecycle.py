"""Key lifecycle: rotation at every level and revocation at three scopes (DESIGN §2.6, docs/keys.md).

One `KeyManager` runs in whichever process owns the data dir: the server (through its admin API, so its
caches are purged in the same call) or, when no server runs, the CLI itself. Every change is one locked
registry update, so a crash leaves the old state or the new one, never a half-rotated tenant.

Revocation scopes and what the next request sees:
- credential: that API key gets 401 `credential_revoked`; the tenant's other keys keep working;
- tenant: every decryption for the tenant is refused, 403 `tenant_revoked`; other tenants unaffected;
- system: the master key is disabled in the KMS and the keyring sealed: every request 503 `system_sealed`
  until `keys restore --system`.

Where the parts live: revocation and per-tenant rotation are `KeyManager` here; `lifecycle_byok` (a
customer's own key layer), `lifecycle_rewrap` (every wrapped key to the newest master version) and
`lifecycle_status` (`keys status`, `RotationPolicy`) are plain functions it calls with its registry and
keyring. Every name is importable from here as before.
"""

from __future__ import annotations

import base64
import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cleanroom.crypto.aead import NONCE_BYTES, TAG_BYTES, zero_buffer
from cleanroom.errors import BadRequest, DecryptionFailed, NotFound
from cleanroom.keys.customer_kms import describe_layer, public_view
from cleanroom.keys.keyring import SYSTEM_SEALED_META, Keyring, decode_public_key, hpke_private_aad
from cleanroom.keys.lifecycle_byok import apply_byok
from cleanroom.keys.lifecycle_rewrap import rewrap_all
from cleanroom.keys.lifecycle_status import DAY_S, RotationPolicy, key_status
from cleanroom.keys.public_key import TenantPublicKey, sign_endorsement
from cleanroom.keys.registry import Document, Registry

__all__ = ["DAY_S", "EventSink", "KeyManager", "RotationPolicy"]

MAX_OVERLAP_S = 100 * 365 * 86_400.0  # as long as a credential may live (tenants.MAX_CREDENTIAL_LIFETIME_S)


class EventSink(Protocol):
    def record(self, event: Mapping[str, Any]) -> None: ...


class KeyManager:
    """Every key-lifecycle change for one data dir: each one a locked registry update, a cache purge and
    an audit record (`audit`, when given)."""

    def __init__(
        self,
        registry: Registry,
        keyring: Keyring,
        *,
        audit: EventSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry, self.keyring, self.kms = registry, keyring, keyring.kms
        self.audit, self._clock = audit, clock

    def _record(self, event: str, **fields: Any) -> None:
        if self.audit is not None:
            self.audit.record({"event": event, "time": self._clock(), **fields})

    # --- revocation -------------------------------------------------------------------------------
    def set_credential_revoked(self, credential_id: str, revoked: bool) -> dict[str, Any]:
        def change(doc: Document) -> dict[str, Any]:
            for tenant in doc["tenants"].values():
                for credential in tenant.get("credentials", []):
                    if credential["id"] == credential_id:
                        credential["revoked"] = revoked
                        return {"tenant_id": tenant["tenant_id"], "credential_id": credential_id}
            raise NotFound(f"no credential with id {credential_id!r}", code="unknown_credential")

        result: dict[str, Any] = self.registry.update(change)
        self._record("key.revoke" if revoked else "key.restore", scope="credential", **result)
        return {**result, "revoked": revoked}

    def set_tenant_revoked(self, name_or_id: str, revoked: bool) -> dict[str, Any]:
        tenant_id = self.registry.tenant(name_or_id)["tenant_id"]

        def change(doc: Document) -> None:
            doc["tenants"][tenant_id]["revoked"] = revoked

        self.registry.update(change)
        self.keyring.purge(tenant_id)
        self._record("key.revoke" if revoked else "key.restore", scope="tenant", tenant_id=tenant_id)
        return {"tenant_id": tenant_id, "revoked": revoked}

    def set_system_sealed(self, sealed: bool) -> dict[str, Any]:
        """Disable (or re-enable) the master key in the KMS and seal the keyring in this process, and record
        the seal in the registry, so every other process on the data dir refuses on its next request too
        (a remote KMS's disable does not reach keys they already unwrapped and cached)."""

        def record(doc: Document) -> None:
            if sealed:
                doc[SYSTEM_SEALED_META] = True
            else:
                doc.pop(SYSTEM_SEALED_META, None)

        if sealed:
            self.keyring.seal()
            self.registry.update(record)  # first: the other processes stop at once
            self.kms.disable(self.keyring.master_key_name)
        else:
            self.kms.enable(self.keyring.master_key_name)
            self.registry.update(record)
            self.keyring.unseal()
        self._record("key.revoke" if sealed else "key.restore", scope="system", key_id=self.keyring.master_key_name)
        return {"system_sealed": sealed}

    # --- rotation ---------------------------------------------------------------------------------
    def rotate_tenant_key(self, name_or_id: str) -> dict[str, Any]:
        """New tenant-key version; the tenant's HPKE private keys are re-encrypted under it at once."""
        tenant_id = self.registry.tenant(name_or_id)["tenant_id"]

        def change(doc: Document) -> int:
            record = doc["tenants"][tenant_id]
            keys = record["tenant_keys"]
            version = int(keys["latest_version"]) + 1
            new_key = bytearray(os.urandom(32))
            try:
                stored = self.keyring.wrap_tenant_key(tenant_id, new_key, version, keys.get("byok_key"))
                for hpke in record["hpke_keys"]:
                    self._reencrypt_hpke(record, hpke, new_key, version)
            finally:
                zero_buffer(new_key)
            keys["versions"][str(version)] = stored
            keys.setdefault("created", {})[str(version)] = self._clock()
            keys["latest_version"] = version
            return version

        version = self.registry.update(change)
        self.keyring.purge(tenant_id)
        self._record("key.rotate", scope="tenant_key", tenant_id=tenant_id, key_version=version)
        return {"tenant_id": tenant_id, "tenant_key_version": version}

    def _reencrypt_hpke(self, record: Document, hpke: Document, new_key: bytearray, version: int) -> None:
        tenant_id = record["tenant_id"]
        old_key = self.keyring.unwrap_tenant_key(record, int(hpke["tenant_key_version"]))
        blob = base64.b64decode(hpke["encrypted_private_key"])
        aad = hpke_private_aad(tenant_id, hpke["key_id"])
        scalar = bytearray(len(blob) - NONCE_BYTES - TAG_BYTES)
        try:
            AESGCM(old_key).decrypt_into(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad, scalar)
            nonce = os.urandom(NONCE_BYTES)
            sealed = AESGCM(new_key).encrypt(nonce, bytes(scalar), aad)
        except InvalidTag:
            raise DecryptionFailed(
                f"tenant HPKE key {hpke['key_id']} failed to authenticate", code="key_corrupt"
            ) from None
        finally:
            zero_buffer(scalar)
            zero_buffer(old_key)
        hpke["encrypted_private_key"] = base64.b64encode(nonce + sealed).decode("ascii")
        hpke["tenant_key_version"] = version

    def set_byok(
        self, name_or_id: str, key_name: str | None = None, *, vault: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Add (or, with neither argument, remove) a customer's own key as an extra layer around every
        tenant-key version (`lifecycle_byok.apply_byok`: proven and rewrapped before anything is stored)."""
        tenant_id, spec = apply_byok(self.registry, self.keyring, name_or_id, key_name, vault=vault)
        described = describe_layer(spec)
        self._record("key.byok", scope="tenant_key", tenant_id=tenant_id, key_id=described)
        return {"tenant_id": tenant_id, "byok_key": public_view(spec), "customer_key": described}

    def retire_tenant_key_versions(self, name_or_id: str, min_version: int) -> dict[str, Any]:
        """Raise the tenant's minimum key version: anything protected by an older one stops opening."""
        tenant_id = self.registry.tenant(name_or_id)["tenant_id"]

        def change(doc: Document) -> None:
            keys = doc["tenants"][tenant_id]["tenant_keys"]
            if not int(keys["min_version"]) <= min_version <= int(keys["latest_version"]):
                raise BadRequest(
                    f"minimum version must be between {keys['min_version']} and {keys['latest_version']}",
                    code="invalid_key_version",
                )
            keys["min_version"] = min_version

        self.registry.update(change)
        self.keyring.purge(tenant_id)
        self._record("key.retire", scope="tenant_key", tenant_id=tenant_id, key_version=min_version)
        return {"tenant_id": tenant_id, "min_version": min_version}

    def rotate_hpke_key(self, name_or_id: str, overlap_s: float) -> dict[str, Any]:
        """A new HPKE key pair becomes current; the previous ones keep opening for `overlap_s` seconds."""
        if not (math.isfinite(overlap_s) and 0 <= overlap_s <= MAX_OVERLAP_S):
            # NaN passed a `< 0` test and became an expiry no comparison ever reaches; inf a JSON `Infinity`
            raise BadRequest("overlap must be a finite number of seconds, 0 to 100 years", code="invalid_overlap")
        tenant = self.registry.tenant(name_or_id)
        tenant_id = tenant["tenant_id"]
        version = int(tenant["tenant_keys"]["latest_version"])
        tenant_key = self.keyring.unwrap_tenant_key(tenant, version)
        try:
            record = self.keyring.new_hpke_record(tenant_id, tenant_key, tenant_key_version=version)
        finally:
            zero_buffer(tenant_key)
        # The outgoing key endorses the new one, so clients pinned to it can follow the rotation.
        previous_id = tenant["current_key_id"]
        previous = self.keyring.hpke_private_key(tenant, previous_id)
        new_public = TenantPublicKey(tenant_id, str(record["key_id"]), decode_public_key(str(record["public_key"])))
        record["endorsed_by"] = previous_id
        record["endorsement"] = base64.b64encode(sign_endorsement(previous, new_public)).decode("ascii")
        expires_at = self._clock() + overlap_s

        def change(doc: Document) -> None:
            target = doc["tenants"][tenant_id]
            for old in target["hpke_keys"]:
                if old.get("expires_at") is None or old["expires_at"] > expires_at:
                    old["expires_at"] = expires_at
            target["hpke_keys"].append(record)
            target["current_key_id"] = record["key_id"]

        self.registry.update(change)
        self.keyring.purge(tenant_id)
        self._record("key.rotate", scope="hpke", tenant_id=tenant_id, key_id=record["key_id"])
        return {"tenant_id": tenant_id, "key_id": record["key_id"], "previous_keys_expire_at": expires_at}

    def rotate_master_key(self) -> dict[str, Any]:
        """New master version in the KMS, then every stored wrapped key rewrapped to it."""
        version = self.kms.rotate(self.keyring.master_key_name)
        rewrapped = self.rewrap_all()
        self._record("key.rotate", scope="master", key_id=self.keyring.master_key_name, key_version=version)
        return {"master_version": version, "rewrapped": rewrapped}

    def rewrap_all(self) -> int:
        """Move every wrapped tenant key, the pepper and the audit keys to the newest master version
        (idempotent; `lifecycle_rewrap.rewrap_all`)."""
        return rewrap_all(self.registry, self.keyring)

    # --- status -----------------------------------------------------------------------------------
    def status(self, policy: RotationPolicy) -> dict[str, Any]:
        """Every key's age against `policy` (`lifecycle_status.key_status`), as of this manager's clock."""
        return key_status(self.registry, self.keyring, policy, self._clock())
