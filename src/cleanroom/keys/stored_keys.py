"""Wrapped keys the master key protects outside the tenant registry: the audit log's own keys.

`DATA_DIR/audit/keys.json` holds the audit AES key and the checkpoint signing key, each wrapped by the
master key (cleanroom.audit.keys). Master rotation must move them too: once the old master version is
retired (`set_min_decryption_version`), anything still wrapped by it no longer opens, and for the audit
keys that means a server that cannot start and an audit trail nobody can verify.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cleanroom.keys.kms import KMS, WrappedKey
from cleanroom.storage import atomic_write_bytes

AUDIT_KEYS = ("audit", "keys.json")


def _audit_document(data_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    path = Path(data_dir).joinpath(*AUDIT_KEYS)
    try:
        document = json.loads(path.read_text("ascii"))
    except FileNotFoundError:
        return None
    return path, document


def _ours(document: dict[str, Any], kms: KMS, master_key_name: str, field: str) -> WrappedKey | None:
    wrapped = WrappedKey.from_json(document[field])
    if wrapped.kms != kms.name or wrapped.key_name != master_key_name:
        return None  # wrapped by another KMS or key: not ours to move
    return wrapped


def audit_keys_below(data_dir: Path, kms: KMS, master_key_name: str, latest: int) -> int:
    """How many of the audit keys are wrapped by a master version older than `latest`."""
    found = _audit_document(data_dir)
    if found is None:
        return 0
    _, document = found
    wrapped = [_ours(document, kms, master_key_name, f) for f in ("audit_key", "signing_key")]
    return sum(1 for w in wrapped if w is not None and w.version < latest)


def rewrap_audit_keys(data_dir: Path, kms: KMS, master_key_name: str, latest: int) -> int:
    """Rewrap the audit keys to the newest master version (atomic replace; the keys themselves and every
    other field stay as they are, so the log and its checkpoints verify as before). Returns how many moved."""
    from cleanroom.audit.keys import AES_CONTEXT, SIGNING_CONTEXT

    found = _audit_document(data_dir)
    if found is None:
        return 0
    path, document = found
    count = 0
    for field, context in (("audit_key", AES_CONTEXT), ("signing_key", SIGNING_CONTEXT)):
        wrapped = _ours(document, kms, master_key_name, field)
        if wrapped is not None and wrapped.version < latest:
            document[field] = kms.rewrap(wrapped, context).to_json()
            count += 1
    if count:
        atomic_write_bytes(path, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("ascii"))
    return count
