"""Key lifecycle: rotation at every level and revocation at three scopes (DESIGN §2.6, docs/keys.md).

One `KeyManager` runs in whichever process owns the data dir: the server (through its admin API, so its
caches are purged in the same call) or, when no server runs, the CLI itself. Every change is one locked
registry update, so a crash leaves the old state or the new one, never a half-rotated tenant.

Revocation scopes and what the next request sees:
- credential: that API key gets 401 `credential_revoked`; the tenant's other keys keep working;
- tenant: every decryption for the tenant is refused, 403 `tenant_revoked`; other tenants unaffected;
- system: the master key is disabled in the KMS and the keyring sealed: every request 503 `system_sealed`
  until `keys restore --system`.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cleanroom.crypto.aead import NONCE_BYTES, TAG_BYTES, zero_buffer
from cleanroom.errors import BadRequest, DecryptionFailed, NotFound
from cleanroom.keys.customer_kms import ByokSpec, credential_context, describe_layer, public_view
from cleanroom.keys.keyring import (
    SYSTEM_SEALED_META,
    Keyring,
    decode_public_key,
    hpke_private_aad,
    pepper_context,
    tenant_key_context,
)
from cleanroom.keys.kms import WrappedKey
from cleanroom.keys.public_key import TenantPublicKey, sign_endorsement
from cleanroom.keys.registry import Document, Registry
from cleanroom.keys.stored_keys import audit_keys_below, rewrap_audit_keys

DAY_S = 86_400.0


class EventSink(Protocol):
    def record(self, event: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class RotationPolicy:
    """How old each kind of key may get before `keys status` calls it due (defaults: DESIGN/issue 5)."""

    tenant_key_days: float = 91.0  # data keys quarterly
    master_key_days: float = 365.0  # master yearly
    credential_days: float = 91.0  # API keys quarterly
    hpke_key_days: float = 91.0


class KeyManager:
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
        tenant-key version.

        `key_name`: a key in our own KMS backend. `vault`: the customer's own Vault/OpenBao Transit key —
        `{"addr", "key", "token", "mount"?, "ca_cert"?}`; the token is stored wrapped by our master key.
        The new layer is proven (wrap + unwrap of a random value) and every version is rewrapped before
        anything is stored: a bad spec changes nothing."""
        tenant = self.registry.tenant(name_or_id)
        tenant_id = tenant["tenant_id"]
        spec: ByokSpec | None = None
        if vault is not None:
            if key_name is not None:
                raise BadRequest(
                    "give either a key in our KMS or a customer Vault key, not both", code="invalid_byok_spec"
                )
            missing = [f for f in ("addr", "key", "token") if not vault.get(f)]
            if missing:
                raise BadRequest(f"customer Vault spec lacks {', '.join(missing)}", code="invalid_byok_spec")
            spec = self.keyring.customer_kms.new_spec(
                tenant_id,
                addr=str(vault["addr"]),
                key=str(vault["key"]),
                token=str(vault["token"]),
                mount=str(vault.get("mount") or "transit"),
                ca_cert=vault.get("ca_cert") or None,
            )
        elif key_name is not None:
            self.kms.describe(key_name)  # a clear error now rather than on the next request
            spec = key_name
        if isinstance(spec, dict):
            self.keyring.customer_kms.probe(tenant_id, spec, tenant["name"])

        def change(doc: Document) -> None:
            record = doc["tenants"][tenant_id]
            keys = record["tenant_keys"]
            if _same_customer_key(keys.get("byok_key"), spec):
                # Only the credential changes (the customer issued a new token, e.g. after revoking the old
                # one): the wrapped versions stay as they are, and the old token need not work any more.
                keys["byok_key"] = spec
                return
            rewrapped: dict[str, Any] = {}
            for version in list(keys["versions"]):
                if int(version) < int(keys["min_version"]):
                    continue  # retired: never opened again, so its form does not matter
                key = self.keyring.unwrap_tenant_key(record, int(version))
                try:
                    rewrapped[version] = self.keyring.wrap_tenant_key(tenant_id, key, int(version), spec)
                finally:
                    zero_buffer(key)
            # Only now, with every version rewrapped, does the record change (a failure above leaves it whole).
            keys["versions"].update(rewrapped)
            keys["byok_key"] = spec

        try:
            self.registry.update(change)
        except BaseException:
            self.registry.refresh(force=True)  # drop any in-memory state of the failed change
            raise
        finally:
            self.keyring.customer_kms.drop(tenant_id)
            self.keyring.purge(tenant_id)
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
        if overlap_s < 0:
            raise BadRequest("overlap must be >= 0 seconds", code="invalid_overlap")
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
        (idempotent)."""
        latest = self.kms.describe(self.keyring.master_key_name).latest_version
        if not self._anything_below(latest):
            return 0  # the common case for the background check: no registry write at all

        def change(doc: Document) -> int:
            count = 0
            for tenant_id, record in doc["tenants"].items():
                for version, wrapped_doc in record["tenant_keys"]["versions"].items():
                    wrapped = WrappedKey.from_json(wrapped_doc)
                    if wrapped.version < latest:
                        context = tenant_key_context(tenant_id, int(version))
                        record["tenant_keys"]["versions"][version] = self.kms.rewrap(wrapped, context).to_json()
                        count += 1
                byok = record["tenant_keys"].get("byok_key")
                if isinstance(byok, dict) and WrappedKey.from_json(byok["token"]).version < latest:
                    token = WrappedKey.from_json(byok["token"])  # the customer's credential we hold, wrapped
                    byok["token"] = self.kms.rewrap(token, credential_context(tenant_id)).to_json()
                    count += 1
            if doc.get("pepper") is not None:
                wrapped = WrappedKey.from_json(doc["pepper"])
                if wrapped.version < latest:
                    doc["pepper"] = self.kms.rewrap(wrapped, pepper_context()).to_json()
                    count += 1
            return count

        count: int = self.registry.update(change)
        count += rewrap_audit_keys(self._data_dir, self.kms, self.keyring.master_key_name, latest)
        self.keyring.purge()
        return count

    @property
    def _data_dir(self) -> Path:
        return self.registry.path.parent

    def _anything_below(self, latest: int) -> bool:
        return self._count_below(latest) > 0

    def _count_below(self, latest: int) -> int:
        """How many stored wrapped keys a master version older than `latest` protects."""
        doc = self.registry.snapshot()
        wrapped = [v for t in doc["tenants"].values() for v in t["tenant_keys"]["versions"].values()]
        wrapped += [
            t["tenant_keys"]["byok_key"]["token"]
            for t in doc["tenants"].values()
            if isinstance(t["tenant_keys"].get("byok_key"), dict)
        ]
        if doc.get("pepper") is not None:
            wrapped.append(doc["pepper"])
        below = sum(1 for w in wrapped if int(w["version"]) < latest)
        return below + audit_keys_below(self._data_dir, self.kms, self.keyring.master_key_name, latest)

    # --- status -----------------------------------------------------------------------------------
    def status(self, policy: RotationPolicy) -> dict[str, Any]:
        now = self._clock()
        master = self.kms.describe(self.keyring.master_key_name)
        rows: list[dict[str, Any]] = [
            _row(
                "master",
                master.name,
                master.latest_version,
                now - master.rotated_at,
                policy.master_key_days,
                enabled=master.enabled,
            )
        ]
        for tenant in self.registry.tenants().values():
            keys = tenant["tenant_keys"]
            latest = str(keys["latest_version"])
            created = keys.get("created", {}).get(latest, tenant["created_at"])
            rows.append(
                _row(
                    "tenant_key",
                    tenant["name"],
                    int(latest),
                    now - created,
                    policy.tenant_key_days,
                    min_version=keys["min_version"],
                    revoked=tenant.get("revoked", False),
                    customer_key=describe_layer(keys.get("byok_key")) or None,
                )
            )
            current = next(k for k in tenant["hpke_keys"] if k["key_id"] == tenant["current_key_id"])
            rows.append(
                _row(
                    "hpke",
                    f"{tenant['name']}/{current['key_id']}",
                    None,
                    now - current["created_at"],
                    policy.hpke_key_days,
                )
            )
            for credential in tenant.get("credentials", []):
                rows.append(
                    _row(
                        "credential",
                        f"{tenant['name']}/{credential['id']}",
                        None,
                        now - credential["created_at"],
                        policy.credential_days,
                        revoked=credential.get("revoked", False),
                    )
                )
        return {
            "keys": rows,
            "system_sealed": not master.enabled or self.keyring.sealed,
            # docs/keys.md §4: retire old master versions only once this is 0
            "wrapped_below_latest_master": self._count_below(master.latest_version),
        }


def _same_customer_key(old: ByokSpec | None, new: ByokSpec | None) -> bool:
    """Both specs name the same key in the same customer KMS (they may differ in credential or CA)."""
    fields = ("kind", "addr", "mount", "key")
    return isinstance(old, dict) and isinstance(new, dict) and all(old.get(f) == new.get(f) for f in fields)


def _row(kind: str, name: str, version: int | None, age_s: float, max_days: float, **extra: Any) -> dict[str, Any]:
    age_days = age_s / DAY_S
    return {
        "kind": kind,
        "name": name,
        "version": version,
        "age_days": round(age_days, 2),
        "policy_days": max_days,
        "rotation_due": age_days >= max_days,
        **extra,
    }
