"""Bring-your-own-key: add, change or remove a customer's key as an extra layer around a tenant's keys.

The one lifecycle operation that calls out to a KMS the customer runs (their Vault/OpenBao Transit key,
or a key in our own KMS backend): it proves the new layer works and rewraps every live tenant-key
version before anything is stored, so a bad spec changes nothing. Kept apart from `KeyManager` for
that validation and the all-or-nothing rewrap; the manager records the audit event around it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cleanroom.crypto.aead import zero_buffer
from cleanroom.errors import BadRequest
from cleanroom.keys.customer_kms import ByokSpec
from cleanroom.keys.keyring import Keyring
from cleanroom.keys.registry import Document, Registry


def apply_byok(
    registry: Registry,
    keyring: Keyring,
    name_or_id: str,
    key_name: str | None = None,
    *,
    vault: Mapping[str, Any] | None = None,
) -> tuple[str, ByokSpec | None]:
    """Add (or, with neither argument, remove) a customer's own key as an extra layer around every
    tenant-key version; returns the tenant id and the layer's spec now stored (None: removed).

    `key_name`: a key in our own KMS backend. `vault`: the customer's own Vault/OpenBao Transit key —
    `{"addr", "key", "token", "mount"?, "ca_cert"?}`; the token is stored wrapped by our master key.
    The new layer is proven (wrap + unwrap of a random value) and every version is rewrapped before
    anything is stored: a bad spec changes nothing."""
    tenant = registry.tenant(name_or_id)
    tenant_id = tenant["tenant_id"]
    spec: ByokSpec | None = None
    if vault is not None:
        if key_name is not None:
            raise BadRequest("give either a key in our KMS or a customer Vault key, not both", code="invalid_byok_spec")
        missing = [f for f in ("addr", "key", "token") if not vault.get(f)]
        if missing:
            raise BadRequest(f"customer Vault spec lacks {', '.join(missing)}", code="invalid_byok_spec")
        spec = keyring.customer_kms.new_spec(
            tenant_id,
            addr=str(vault["addr"]),
            key=str(vault["key"]),
            token=str(vault["token"]),
            mount=str(vault.get("mount") or "transit"),
            ca_cert=vault.get("ca_cert") or None,
        )
    elif key_name is not None:
        keyring.kms.describe(key_name)  # a clear error now rather than on the next request
        spec = key_name
    if isinstance(spec, dict):
        keyring.customer_kms.probe(tenant_id, spec, tenant["name"])

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
            key = keyring.unwrap_tenant_key(record, int(version))
            try:
                rewrapped[version] = keyring.wrap_tenant_key(tenant_id, key, int(version), spec)
            finally:
                zero_buffer(key)
        # Only now, with every version rewrapped, does the record change (a failure above leaves it whole).
        keys["versions"].update(rewrapped)
        keys["byok_key"] = spec

    try:
        registry.update(change)
    except BaseException:
        registry.refresh(force=True)  # drop any in-memory state of the failed change
        raise
    finally:
        keyring.customer_kms.drop(tenant_id)
        keyring.purge(tenant_id)
    return tenant_id, spec


def _same_customer_key(old: ByokSpec | None, new: ByokSpec | None) -> bool:
    """Both specs name the same key in the same customer KMS (they may differ in credential or CA)."""
    fields = ("kind", "addr", "mount", "key")
    return isinstance(old, dict) and isinstance(new, dict) and all(old.get(f) == new.get(f) for f in fields)
