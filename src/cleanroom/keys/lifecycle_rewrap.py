"""Master-key rotation's second half: move every stored wrapped key to the newest master version.

After `kms.rotate`, tenant keys, customer-KMS tokens, the pepper and the audit keys are still wrapped
under older master versions; an old version may be retired in the KMS only once nothing depends on it
(docs/keys.md §4). This module finds what still does (`count_wrapped_below`) and rewraps it
(`rewrap_all`). Separate from `KeyManager` because the server's background check calls the same
operation, and because it touches every tenant at once while the manager's other operations touch one.
"""

from __future__ import annotations

from pathlib import Path

from cleanroom.keys.customer_kms import credential_context
from cleanroom.keys.keyring import Keyring, pepper_context, tenant_key_context
from cleanroom.keys.kms import WrappedKey
from cleanroom.keys.registry import Document, Registry
from cleanroom.keys.stored_keys import audit_keys_below, rewrap_audit_keys


def data_dir_of(registry: Registry) -> Path:
    """The data dir the registry lives in (the audit keys sit next to it)."""
    return registry.path.parent


def rewrap_all(registry: Registry, keyring: Keyring) -> int:
    """Move every wrapped tenant key, the pepper and the audit keys to the newest master version
    (idempotent). Returns how many were rewrapped."""
    kms = keyring.kms
    latest = kms.describe(keyring.master_key_name).latest_version
    if not count_wrapped_below(registry, keyring, latest) > 0:
        return 0  # the common case for the background check: no registry write at all

    def change(doc: Document) -> int:
        count = 0
        for tenant_id, record in doc["tenants"].items():
            for version, wrapped_doc in record["tenant_keys"]["versions"].items():
                wrapped = WrappedKey.from_json(wrapped_doc)
                if wrapped.version < latest:
                    context = tenant_key_context(tenant_id, int(version))
                    record["tenant_keys"]["versions"][version] = kms.rewrap(wrapped, context).to_json()
                    count += 1
            byok = record["tenant_keys"].get("byok_key")
            if isinstance(byok, dict) and WrappedKey.from_json(byok["token"]).version < latest:
                token = WrappedKey.from_json(byok["token"])  # the customer's credential we hold, wrapped
                byok["token"] = kms.rewrap(token, credential_context(tenant_id)).to_json()
                count += 1
        if doc.get("pepper") is not None:
            wrapped = WrappedKey.from_json(doc["pepper"])
            if wrapped.version < latest:
                doc["pepper"] = kms.rewrap(wrapped, pepper_context()).to_json()
                count += 1
        return count

    count: int = registry.update(change)
    count += rewrap_audit_keys(data_dir_of(registry), kms, keyring.master_key_name, latest)
    keyring.purge()
    return count


def count_wrapped_below(registry: Registry, keyring: Keyring, latest: int) -> int:
    """How many stored wrapped keys a master version older than `latest` protects."""
    doc = registry.snapshot()
    wrapped = [v for t in doc["tenants"].values() for v in t["tenant_keys"]["versions"].values()]
    wrapped += [
        t["tenant_keys"]["byok_key"]["token"]
        for t in doc["tenants"].values()
        if isinstance(t["tenant_keys"].get("byok_key"), dict)
    ]
    if doc.get("pepper") is not None:
        wrapped.append(doc["pepper"])
    below = sum(1 for w in wrapped if int(w["version"]) < latest)
    return below + audit_keys_below(data_dir_of(registry), keyring.kms, keyring.master_key_name, latest)
