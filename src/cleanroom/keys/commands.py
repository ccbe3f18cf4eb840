"""`cleanroom keys rotate|revoke|restore|retire|status`: the key runbook (docs/keys.md) as commands.

With a server running on the data dir the command goes through its admin API, so caches in the serving
process are purged in the same call (effective on the very next request); otherwise it edits the data dir
directly through the same `KeyManager` code.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, TypeVar

ACTIONS = ("revoke", "restore", "rotate", "retire", "byok", "status")


def key_action(manager: Any, action: str, body: dict[str, Any], policy: Any, tenants: Any = None) -> dict[str, Any]:
    """Dispatch one key action to a KeyManager (API keys to the TenantService `tenants`, which holds the
    pepper they are hashed with); shared by the admin API and the CLI's local path."""
    from cleanroom.errors import BadRequest

    scope = body.get("scope")
    target = body.get("target")
    if action in ("revoke", "restore"):
        flag = action == "revoke"
        if scope == "credential" and target:
            return manager.set_credential_revoked(str(target), flag)  # type: ignore[no-any-return]
        if scope == "tenant" and target:
            return manager.set_tenant_revoked(str(target), flag)  # type: ignore[no-any-return]
        if scope == "system":
            return manager.set_system_sealed(flag)  # type: ignore[no-any-return]
    elif action == "rotate":
        if scope == "credential" and target and tenants is not None:
            return tenants.rotate_credential(str(target))  # type: ignore[no-any-return]
        if scope in ("master", "system"):
            return manager.rotate_master_key()  # type: ignore[no-any-return]
        if scope == "tenant" and target:
            return manager.rotate_tenant_key(str(target))  # type: ignore[no-any-return]
        if scope == "hpke" and target:
            overlap_s = _number(body, "overlap_s", float, 7 * 86400)
            return manager.rotate_hpke_key(str(target), overlap_s)  # type: ignore[no-any-return]
    elif action == "byok" and scope == "tenant" and target:
        vault = body.get("vault")
        if vault is not None and not isinstance(vault, dict):
            raise BadRequest("`vault` must be an object {addr, key, token, mount?, ca_cert?}", code="invalid_byok_spec")
        return manager.set_byok(str(target), body.get("key") or None, vault=vault)  # type: ignore[no-any-return]
    elif action == "retire" and scope == "tenant" and target:
        min_version = _number(body, "min_version", int, None)
        return manager.retire_tenant_key_versions(str(target), min_version)  # type: ignore[no-any-return]
    elif action == "status":
        return manager.status(policy)  # type: ignore[no-any-return]
    raise BadRequest(
        f"unsupported key action {action!r} with scope {scope!r} (or a missing target)", code="invalid_key_action"
    )


_N = TypeVar("_N", int, float)


def _number(body: dict[str, Any], name: str, kind: type[_N], default: _N | None) -> _N:
    """`body[name]` as `kind`, or a BadRequest naming it: the CLI's local path (no server running) calls
    `key_action` without the admin API's validation, and `float("nan")` / a missing field were a traceback."""
    from cleanroom.errors import BadRequest

    value = body.get(name, default)
    if value is None:
        raise BadRequest(f"{name} is required", code="invalid_key_action")
    try:
        if isinstance(value, bool):  # JSON true is not 1 second
            raise TypeError(name)
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        raise BadRequest(f"{name} must be a number, got {str(value)[:40]!r}", code="invalid_key_action") from None
    if not math.isfinite(number):
        raise BadRequest(f"{name} must be a finite number", code="invalid_key_action")
    return number


def _body_from_args(args: argparse.Namespace) -> dict[str, Any]:
    if getattr(args, "credential", None):
        return {"scope": "credential", "target": args.credential}
    if getattr(args, "system", False):
        return {"scope": "system"}
    if getattr(args, "master", False):
        return {"scope": "master"}
    if getattr(args, "hpke", False):
        return {"scope": "hpke", "target": args.tenant, "overlap_s": args.overlap_s}
    if getattr(args, "tenant", None):
        body: dict[str, Any] = {"scope": "tenant", "target": args.tenant}
        if args.key_action == "byok":
            body["key"] = None if args.remove else args.key
            if args.vault_addr:
                body["key"] = None
                body["vault"] = _customer_vault_from_args(args)
        if getattr(args, "min_version", None) is not None:
            body["min_version"] = args.min_version
        return body
    return {}


def _customer_vault_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The customer-Vault spec from `keys byok --vault-*`; the token from a file or the environment, never
    from the command line (where `ps` and shell history would show it)."""
    import os

    from cleanroom.errors import BadRequest

    if not args.vault_key:
        raise BadRequest("--vault-addr needs --vault-key (the customer's Transit key name)", code="invalid_byok_spec")
    if args.vault_token_file:
        try:
            token = Path(args.vault_token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise BadRequest(f"cannot read --vault-token-file: {exc.strerror}", code="invalid_byok_spec") from None
    else:
        token = os.environ.get("CLEANROOM_BYOK_VAULT_TOKEN", "").strip()
    if not token:
        raise BadRequest(
            "the customer's Vault token is missing: --vault-token-file PATH or CLEANROOM_BYOK_VAULT_TOKEN",
            code="invalid_byok_spec",
        )
    spec = {"addr": args.vault_addr, "key": args.vault_key, "token": token, "mount": args.vault_mount}
    if args.vault_ca_cert:
        spec["ca_cert"] = str(Path(args.vault_ca_cert).resolve())
    return spec


def run_key_command(args: argparse.Namespace) -> int:
    from cleanroom.admin_client import AdminAPI, local_key_manager, local_tenant_service, running_server
    from cleanroom.cli import settings_from_args

    if getattr(args, "hpke", False) and not getattr(args, "tenant", None):  # it used to be ignored silently
        print(
            "cleanroom keys rotate: --hpke rotates a tenant's HPKE key pair: give --tenant NAME_OR_ID", file=sys.stderr
        )
        return 2
    settings = settings_from_args(args)
    body = _body_from_args(args)
    state = running_server(settings.data_dir)
    if state is not None:
        api = AdminAPI(state)
        try:
            result = api.request("POST", f"/v1/admin/keys/{args.key_action}", json=body)
        finally:
            api.close()
    else:
        manager, policy = local_key_manager(settings)
        tenants = local_tenant_service(settings) if body.get("scope") == "credential" else None
        result = key_action(manager, args.key_action, body, policy, tenants)
    if args.json or args.key_action != "status":
        print(json.dumps(result, indent=None if args.json else 2))
    else:
        print_status(result)
    return 0


def print_status(status: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="cleanroom keys" + ("  [SYSTEM SEALED]" if status.get("system_sealed") else ""))
    for column in ("kind", "name", "version", "age (days)", "policy (days)", "state"):
        table.add_column(column)
    for row in status["keys"]:
        state = "REVOKED" if row.get("revoked") else "rotation due" if row["rotation_due"] else "ok"
        table.add_row(
            row["kind"],
            row["name"],
            "" if row["version"] is None else str(row["version"]),
            f"{row['age_days']:.1f}",
            f"{row['policy_days']:g}",
            state,
        )
    Console().print(table)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = subparsers.add_parser("keys", help="rotate, revoke and restore keys; show their age")
    actions = keys.add_subparsers(dest="key_action", required=True)

    def common(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--data-dir", type=Path, default=None)
        parser.add_argument("--json", action="store_true")
        parser.set_defaults(func=run_key_command)
        return parser

    for name, verb in (("revoke", "revoke"), ("restore", "restore")):
        parser = common(actions.add_parser(name, help=f"{verb} a credential, a tenant, or the whole system"))
        scope = parser.add_mutually_exclusive_group(required=True)
        scope.add_argument("--credential", metavar="ID", help="one API key (its id, e.g. ck_...)")
        scope.add_argument("--tenant", metavar="NAME_OR_ID")
        scope.add_argument(
            "--system",
            action="store_true",
            help="the master key: revoke refuses every request; restore serves them again",
        )

    rotate = common(
        actions.add_parser("rotate", help="rotate the master key, a tenant key or HPKE key pair, or an API key")
    )
    scope = rotate.add_mutually_exclusive_group(required=True)
    scope.add_argument("--credential", metavar="ID", help="one API key: a new key is shown once, the old one revoked")
    scope.add_argument("--tenant", metavar="NAME_OR_ID", help="the tenant's data key (with --hpke: its HPKE key pair)")
    scope.add_argument("--system", "--master", dest="master", action="store_true", help="the master key")
    rotate.add_argument("--hpke", action="store_true", help="rotate the tenant's HPKE key pair instead")
    rotate.add_argument(
        "--overlap-s",
        type=float,
        default=7 * 86400,
        help="how long requests sealed to the previous HPKE key still open (default 7 days)",
    )

    retire = common(actions.add_parser("retire", help="raise a tenant's minimum key version"))
    retire.add_argument("--tenant", metavar="NAME_OR_ID", required=True)
    retire.add_argument("--min-version", type=int, required=True)

    byok = common(actions.add_parser("byok", help="wrap a tenant's keys with the tenant's own KMS key as well"))
    byok.add_argument("--tenant", metavar="NAME_OR_ID", required=True)
    which = byok.add_mutually_exclusive_group(required=True)
    which.add_argument("--key", metavar="KMS_KEY_NAME", help="the customer's key in the configured KMS")
    which.add_argument("--vault-addr", metavar="URL", help="the customer's own Vault/OpenBao server")
    which.add_argument("--remove", action="store_true", help="drop the customer layer again")
    byok.add_argument("--vault-key", metavar="NAME", help="the customer's Transit key (with --vault-addr)")
    byok.add_argument("--vault-mount", metavar="PATH", default="transit", help="Transit mount (default transit)")
    byok.add_argument(
        "--vault-token-file",
        metavar="PATH",
        help="file holding the token the customer issued us (else CLEANROOM_BYOK_VAULT_TOKEN)",
    )
    byok.add_argument("--vault-ca-cert", metavar="PATH", help="CA bundle for the customer's server")

    common(actions.add_parser("status", help="each key's age against the rotation policy"))
