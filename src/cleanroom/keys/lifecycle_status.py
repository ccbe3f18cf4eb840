"""`keys status`: how old every key is against the rotation policy, and what still needs the old master.

Read-only: it changes nothing and records nothing, so it is kept apart from the operations of
`KeyManager` that do. The rows are the contract of `cleanroom keys status --json` (docs/keys.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cleanroom.keys.customer_kms import describe_layer
from cleanroom.keys.keyring import Keyring
from cleanroom.keys.lifecycle_rewrap import count_wrapped_below
from cleanroom.keys.registry import Registry

DAY_S = 86_400.0


@dataclass(frozen=True)
class RotationPolicy:
    """How old each kind of key may get before `keys status` calls it due (defaults: DESIGN/issue 5)."""

    tenant_key_days: float = 91.0  # data keys quarterly
    master_key_days: float = 365.0  # master yearly
    credential_days: float = 91.0  # API keys quarterly
    hpke_key_days: float = 91.0


def key_status(registry: Registry, keyring: Keyring, policy: RotationPolicy, now: float) -> dict[str, Any]:
    """One row per key (master, tenant key, current HPKE key, credential) with its age and whether its
    rotation is due under `policy`, as of `now`."""
    master = keyring.kms.describe(keyring.master_key_name)
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
    for tenant in registry.tenants().values():
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
        "system_sealed": not master.enabled or keyring.sealed,
        # docs/keys.md §4: retire old master versions only once this is 0
        "wrapped_below_latest_master": count_wrapped_below(registry, keyring, master.latest_version),
    }


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
