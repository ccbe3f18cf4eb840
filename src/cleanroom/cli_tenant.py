"""`cleanroom tenant create|list|update|delete|keys`: tenants and their API keys, through the running
server's admin API when one serves the data dir, else on the data dir itself.

Its own module because it is the one command group that picks its backend (admin API or local files)
and the one place an API key is printed (once, to the operator who created it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cleanroom.cli_common import add_data_dir, positive_finite, settings_from_args


def _tenant_backend(args: argparse.Namespace, *, create: bool = False) -> tuple[Any, Any]:
    """The running server's admin API, or the data dir itself. Only `tenant create` may start a data dir:
    a mistyped `--data-dir` given to `list` or `delete` must not make a new master key and audit log."""
    from cleanroom.admin_client import AdminAPI, local_tenant_service, running_server
    from cleanroom.errors import ConfigurationError

    settings = settings_from_args(args)
    state = running_server(settings.data_dir)
    if state is not None:
        return AdminAPI(state), None
    if not create and not Path(settings.data_dir).is_dir():
        raise ConfigurationError(
            f"no data dir at {settings.data_dir}: give the --data-dir of a server, or create a tenant first"
        )
    return None, local_tenant_service(settings)


def cmd_tenant_create(args: argparse.Namespace) -> int:
    api, service = _tenant_backend(args, create=True)
    allow = args.allow or []
    if api is not None:
        created = api.request(
            "POST", "/v1/admin/tenants", json={"name": args.name, "weight": args.weight, "allow": allow}
        )
    else:
        created = service.create(args.name, weight=args.weight, allow=allow).to_json()
    if args.json:
        print(json.dumps(created))
    else:
        print(f"tenant:     {created['name']} ({created['tenant_id']})")
        # The one place an API key is shown: to the operator who created it, on their terminal, once.
        print(f"api key:    {created['api_key']}   (shown once: store it now)")
        print(f"public key: {created['public_key']}")
    return 0


def cmd_tenant_list(args: argparse.Namespace) -> int:
    api, service = _tenant_backend(args)
    tenants = api.request("GET", "/v1/admin/tenants")["tenants"] if api is not None else service.list_tenants()
    if args.json:
        print(json.dumps(tenants))
    else:
        for t in tenants:
            print(
                f"{t['tenant_id']}  {t['name']:<24} weight={t['weight']:g} keys={len(t['credentials'])}"
                f"{'  REVOKED' if t['revoked'] else ''}"
            )
    return 0


def cmd_tenant_delete(args: argparse.Namespace) -> int:
    api, service = _tenant_backend(args)
    deleted = (
        api.request("DELETE", f"/v1/admin/tenants/{args.name}")["deleted"]
        if api is not None
        else service.delete(args.name)
    )
    print(json.dumps({"deleted": deleted}) if args.json else f"deleted tenant {deleted}")
    return 0


def cmd_tenant_update(args: argparse.Namespace) -> int:
    api, service = _tenant_backend(args)
    allow = [] if args.clear_allow else args.allow
    if allow is None and args.weight is None:
        print("cleanroom tenant update: give --allow CIDR..., --clear-allow or --weight", file=sys.stderr)
        return 2
    body = {"weight": args.weight, "allow": allow}
    updated = (
        api.request("PATCH", f"/v1/admin/tenants/{args.name}", json=body)
        if api is not None
        else service.update(args.name, weight=args.weight, allow=allow)
    )
    print(
        json.dumps(updated)
        if args.json
        else f"{updated['name']}: weight={updated['weight']:g} allow={','.join(updated['allow']) or 'any address'}"
    )
    return 0


def cmd_tenant_keys(args: argparse.Namespace) -> int:
    api, service = _tenant_backend(args)
    base = f"/v1/admin/tenants/{args.name}/keys"
    if args.keys_command == "list":
        keys = api.request("GET", base)["credentials"] if api is not None else service.list_credentials(args.name)
        print(
            json.dumps(keys)
            if args.json
            else "\n".join(
                f"{k['id']}  {k['label']:<16} created={k['created_at']:.0f} expires={k['expires_at']} "
                f"last_used={k['last_used_at']}{'  REVOKED' if k['revoked'] else ''}"
                for k in keys
            )
        )
    elif args.keys_command == "add":
        expires_in_s = args.expires_in_days * 86400 if args.expires_in_days else None
        created = (
            api.request("POST", base, json={"label": args.label, "expires_in_s": expires_in_s})
            if api is not None
            else service.add_credential(args.name, label=args.label, expires_in_s=expires_in_s).to_json()
        )
        print(
            json.dumps(created)
            if args.json
            else f"credential {created['credential_id']}\napi key: {created['api_key']}   (shown once: store it now)"
        )
    else:
        result = (
            api.request("DELETE", f"{base}/{args.credential_id}")
            if api is not None
            else service.revoke_credential(args.name, args.credential_id)
        )
        print(json.dumps(result) if args.json else f"revoked {result['credential_id']}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tenant = sub.add_parser("tenant", help="manage tenants").add_subparsers(dest="tenant_command", required=True)
    create = tenant.add_parser("create", help="create a tenant; prints its API key once")
    create.add_argument("name")
    create.add_argument("--weight", type=positive_finite, default=1.0, help="scheduler share (default 1)")
    create.add_argument("--allow", nargs="+", metavar="CIDR", help="accept requests only from these networks")
    listing = tenant.add_parser("list", help="tenants, their weights and API key ids (never the keys)")
    for p, func in ((create, cmd_tenant_create), (listing, cmd_tenant_list)):
        add_data_dir(p)
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=func)
    update = tenant.add_parser("update", help="change a tenant's weight or IP allowlist")
    update.add_argument("name")
    update.add_argument("--weight", type=positive_finite, default=None)
    allow = update.add_mutually_exclusive_group()
    allow.add_argument("--allow", nargs="+", metavar="CIDR", default=None)
    allow.add_argument("--clear-allow", action="store_true", help="accept every address again")
    add_data_dir(update)
    update.add_argument("--json", action="store_true")
    update.set_defaults(func=cmd_tenant_update)

    keys = tenant.add_parser("keys", help="a tenant's API keys").add_subparsers(dest="keys_command", required=True)
    keys_list = keys.add_parser("list", help="the tenant's API keys: ids, labels, expiry, last use")
    keys_add = keys.add_parser("add", help="a new API key for the tenant (shown once)")
    keys_add.add_argument("--label", default="default")
    keys_add.add_argument("--expires-in-days", type=positive_finite, default=None)
    keys_revoke = keys.add_parser("revoke", help="revoke one API key by its id (ck_...)")
    for p in (keys_list, keys_add, keys_revoke):
        p.add_argument("name")
        add_data_dir(p)
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=cmd_tenant_keys)
    keys_revoke.add_argument("credential_id")

    delete = tenant.add_parser("delete", help="delete a tenant and its keys")
    delete.add_argument("name")
    add_data_dir(delete)
    delete.add_argument("--json", action="store_true")
    delete.set_defaults(func=cmd_tenant_delete)
