"""The `cleanroom` command (DESIGN §5). Each command group lives beside the code it drives; this module
only parses arguments, builds `Settings`, and dispatches."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from cleanroom import __version__
from cleanroom.errors import CleanroomError

# Command groups contributed by other packages: each module has `register(subparsers)`.
_PLUGIN_MODULES = (
    "cleanroom.logging_setup",  # redact
    "cleanroom.audit.commands",  # audit verify|show|prove
    "cleanroom.bench.scrub",  # bench scrub
    "cleanroom.keys.commands",  # keys rotate|revoke|restore|status
    "cleanroom.doctor",  # doctor
    "cleanroom.backup",  # backup create|restore
    "cleanroom.server.mtls",  # client-cert bind|unbind|list
    "cleanroom.batch_cli",  # batch submit|status|fetch|cancel
)


def settings_from_args(args: argparse.Namespace, **overrides: Any) -> Any:
    from cleanroom.config import Settings
    from cleanroom.errors import ConfigurationError

    config_path = os.environ.get("CLEANROOM_CONFIG")
    if config_path and not Path(config_path).is_file():
        # pydantic-settings reads a missing TOML file as empty: every setting in it would be dropped unseen.
        raise ConfigurationError(f"CLEANROOM_CONFIG names {config_path}, which is not a file")
    values: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    if getattr(args, "data_dir", None) is not None:
        values["data_dir"] = args.data_dir
    return Settings(**values)


def perturb_byte(text: str) -> int:
    """`--perturb-byte`: 1..255 (0x.. accepted). glibc ignores an out-of-range `glibc.malloc.perturb`
    and 0 turns it off, so either would leave freed memory unwiped without a word."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= 255:
        raise argparse.ArgumentTypeError(f"must be 1..255 (0 or more than a byte disables the wipe), got {text}")
    return value


def positive_finite(text: str) -> float:
    """A float flag that must be a real, positive number (argparse's `float` takes inf and nan)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive, finite number, got {text}")
    return value


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="data directory (default: $CLEANROOM_DATA_DIR or ./cleanroom-data)"
    )


# --- serve -----------------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace) -> int:
    from cleanroom.memory.hardening import allocator_hardened, reexec_self_hardened

    if args.tls_key and (args.no_tls or args.dev_tls):  # else silently ignored (--no-tls) or a confusing pair error
        other = "--no-tls" if args.no_tls else "--dev-tls"
        print(f"cleanroom: --tls-key goes with --tls-cert, not with {other}", file=sys.stderr)
        return 2
    tls_mode = "off" if args.no_tls else "files" if args.tls_cert or args.tls_key else "dev" if args.dev_tls else None
    user_models: dict[str, str] = {}
    builtin: list[str] | None = None
    if args.models is not None:
        builtin = [m.strip() for m in args.models.split(",") if m.strip()]
    for spec in args.model or []:
        name, sep, target = spec.partition("=")
        if not sep or not name or not target:
            print(f"cleanroom: --model takes NAME=package.module:factory, got {spec!r}", file=sys.stderr)
            return 2
        user_models[name] = target
    client_cert = "required" if args.client_cert_required else "optional" if args.client_cert_optional else None
    settings = settings_from_args(
        args,
        host=args.host,
        port=args.port,
        tls_mode=tls_mode,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        models=builtin,
        user_models=user_models or None,
        tls_client_ca=args.client_ca,
        tls_client_cert=client_cert,
        torch_threads=args.torch_threads,
    )
    from cleanroom.admin_client import running_server

    running = running_server(settings.data_dir)
    if running is not None and int(running["pid"]) != os.getpid():  # after the re-exec the pid is ours
        where = running.get("url") or running.get("admin_socket")
        print(
            f"cleanroom: a server (pid {running['pid']}, {where}) already uses {settings.data_dir}: stop it "
            "or give another --data-dir (if that pid is no cleanroom process, remove the stale server.json)",
            file=sys.stderr,
        )
        return 1
    refusal = listen_problem(settings)
    if refusal is not None:
        print(f"cleanroom: {refusal}", file=sys.stderr)
        return 1
    if settings.torch_threads is not None:  # before the re-exec: the environment carries it to OpenMP
        from cleanroom.runtime.torch_threads import limit_torch_threads

        limit_torch_threads(settings.torch_threads)
    if settings.allocator_hardening and not allocator_hardened() and not args.no_reexec:
        reexec_self_hardened(settings.malloc_perturb_byte)
    install_logging(settings)
    from cleanroom.server.runner import run_server

    return run_explaining_bind_failures(settings, run_server)


# uvicorn's exit status when it cannot start (`uvicorn.config.STARTUP_FAILURE`), e.g. a failed bind.
UVICORN_STARTUP_FAILURE = 3


def run_explaining_bind_failures(settings: Any, run: Any) -> int:
    """`run(settings)`, but a bind that fails after `listen_problem` passed (another process took the port
    while the models loaded) ends like the early check: one line naming host:port, exit 1 — not uvicorn's
    bare `[Errno 98]` and exit 3."""
    try:
        return int(run(settings))
    except SystemExit as exc:
        if exc.code == UVICORN_STARTUP_FAILURE and (problem := listen_problem(settings)) is not None:
            print(f"cleanroom: {problem}", file=sys.stderr)
            return 1
        raise


def listen_problem(settings: Any) -> str | None:
    """Why `serve` cannot listen where it was told, checked before any model loads (and before the
    re-exec): plain HTTP off loopback, or an address that cannot be bound (a port in use, a privileged
    port, an address this host does not have). None when it can."""
    import errno
    import socket

    from cleanroom.config import loopback_problem

    if settings.tls_mode == "off":
        problem = loopback_problem(settings.host)
        if problem is not None:
            return f"--no-tls is refused on {settings.host!r}: plain HTTP only on loopback ({problem})"
    where = f"{settings.host}:{settings.port}" if ":" not in settings.host else f"[{settings.host}]:{settings.port}"
    try:
        infos = socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        return f"cannot listen on {where}: the host does not resolve ({exc})"
    for family, kind, proto, _name, address in infos:
        # As the server will bind (asyncio's create_server): SO_REUSEADDR, IPv6 sockets v6-only.
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                why = {
                    errno.EADDRINUSE: "the port is already in use (another server? give another --port)",
                    errno.EACCES: "permission denied (ports below 1024 need privileges)",
                    errno.EADDRNOTAVAIL: "this host has no such address (give one of its own, or 0.0.0.0)",
                }.get(exc.errno or 0, exc.strerror or str(exc))
                return f"cannot listen on {where}: {why}"
    return None


def install_logging(settings: Any) -> None:
    try:
        from cleanroom.logging_setup import install_redaction
    except ImportError:  # redaction module not present: plain logging (never in a release)
        import logging

        logging.basicConfig(level=settings.log_level.upper())
        return
    install_redaction(level=settings.log_level, json_logs=settings.log_json)


# --- tenant ----------------------------------------------------------------------------------------
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


# --- infer -----------------------------------------------------------------------------------------
def cmd_infer(args: argparse.Namespace) -> int:
    from cleanroom.client import Client

    if args.cacert and not Path(args.cacert).exists():
        print(f"cleanroom: --cacert {args.cacert}: no such file", file=sys.stderr)
        return 2
    verify: Any = args.cacert if args.cacert else True
    check_url_arg(args.url)
    check_api_key_arg(args.api_key)
    public_key = public_key_arg(args.public_key)
    try:  # an unusable --cacert (not PEM) or --pin is a usage error, found before stdin is read
        client = Client(args.url, api_key=args.api_key, public_key=public_key, verify=verify, pin=args.pin)
    except ValueError as exc:
        print(f"cleanroom: {exc}", file=sys.stderr)
        return 2
    payload = sys.stdin.buffer.read()
    with client:
        result = client.infer(args.model, payload)
    sys.stdout.buffer.write(result)
    sys.stdout.buffer.flush()
    return 0


def check_url_arg(value: str) -> None:
    """`--url`: an http(s) URL with a host, refused as a usage error (exit 2) before stdin is read, not
    reported as an unreachable server."""
    import httpx

    try:
        url = httpx.URL(value)
        usable = url.scheme in ("http", "https") and bool(url.host)
    except (httpx.InvalidURL, TypeError, ValueError):
        usable = False
    if not usable:
        print(f"cleanroom: --url {value!r} is not an http(s) URL such as https://127.0.0.1:8443", file=sys.stderr)
        raise SystemExit(2)


def check_api_key_arg(value: str) -> None:
    """An empty `--api-key` (an unset shell variable) or one with whitespace cannot go in a header; httpx
    would refuse it only after connecting, as an 'Illegal header value' that reads like a network fault."""
    if not value or any(c.isspace() or not c.isprintable() for c in value):
        print("cleanroom: --api-key is empty or holds whitespace: give the tenant's API key (cr_...)", file=sys.stderr)
        raise SystemExit(2)


def public_key_arg(value: str | None) -> Any:
    """`--public-key`: a token, or a file holding one (or `tenant create --json` output); a clear exit 2
    for anything else, rather than a parser's message about whatever the path's text happened to be."""
    if value is None:
        return None
    from cleanroom.client import load_public_key

    try:
        return load_public_key(value)
    except (OSError, ValueError, KeyError, TypeError):
        what = (
            "not a valid public-key token"
            if value.startswith("cleanroom-pk:")
            else "no such file"
            if not Path(value).exists()
            else "the file holds no public-key token"
        )
        print(
            f"cleanroom: --public-key {value}: {what}; give a public-key token (cleanroom-pk:v1:...) or a file "
            "holding one, such as the output of `cleanroom tenant create --json`",
            file=sys.stderr,
        )
        raise SystemExit(2) from None


# --- exec ------------------------------------------------------------------------------------------
def cmd_exec(args: argparse.Namespace) -> int:
    from cleanroom.memory.hardening import apply_process_hardening, exec_hardened, preloaded_allocators

    # Only the separator goes: a `--` inside COMMAND is the command's own (`python -c ... -- x`).
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("cleanroom exec: give the command after --", file=sys.stderr)
        return 2
    preloaded = preloaded_allocators()
    if preloaded:
        print(
            f"cleanroom exec: warning: LD_PRELOAD replaces glibc's malloc ({', '.join(preloaded)}); the freed-memory "
            "wiping applies to glibc's malloc only, so the command's freed plaintext may stay in memory",
            file=sys.stderr,
        )
    # RLIMIT_CORE=0 survives execve and the allocator settings travel in the environment; dumpability
    # does not (the kernel resets it on exec), so embedded cleanroom code (the ASGI middleware, the Ray
    # and Triton integrations) turns it off again inside the target process.
    apply_process_hardening(disable_core_dumps=True, not_dumpable=False)
    try:
        exec_hardened(command, args.perturb_byte)
    except FileNotFoundError:
        print(f"cleanroom exec: command not found: {command[0]}", file=sys.stderr)
        return 127
    except PermissionError:  # a file that is there but may not be run: 126, as a shell answers
        print(f"cleanroom exec: not executable: {command[0]}", file=sys.stderr)
        return 126


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2), as every other error of the command:
    `cleanroom infer: the following arguments are required: --url (see cleanroom infer --help)`.
    Subcommand parsers, the plugins' included, are made from this class too."""

    def error(self, message: str) -> Any:
        for action in self._actions:  # `required: tenant_command` names a variable; say what may go there
            if isinstance(action, argparse._SubParsersAction) and action.dest and action.choices:
                message = message.replace(action.dest, "{" + ",".join(action.choices) + "}")
        self.exit(2, f"{self.prog}: {' '.join(message.split())} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="cleanroom", description="GPU-aware secure inference runtime")
    parser.add_argument("--version", action="version", version=f"cleanroom {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve model endpoints")
    add_data_dir(serve)
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8443; 0 picks a free one)")
    serve.add_argument("--models", default=None, help="built-in models, comma-separated (echo,minilm)")
    serve.add_argument("--model", action="append", metavar="NAME=MODULE:FACTORY", help="a user model")
    tls = serve.add_mutually_exclusive_group()
    tls.add_argument("--dev-tls", action="store_true", help="self-signed P-384 certificate (default)")
    tls.add_argument("--no-tls", action="store_true", help="plain HTTP, loopback hosts only")
    tls.add_argument("--tls-cert", type=Path, default=None, help="certificate chain (PEM; with --tls-key)")
    serve.add_argument("--tls-key", type=Path, default=None, help="its private key (PEM)")
    serve.add_argument("--client-ca", type=Path, default=None, help="CA that signs client certificates (mTLS)")
    mtls = serve.add_mutually_exclusive_group()
    mtls.add_argument("--client-cert-required", action="store_true", help="refuse clients without a certificate")
    mtls.add_argument(
        "--client-cert-optional",
        action="store_true",
        help="verify a certificate when one is sent (tenants bound to one then require it)",
    )
    serve.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        metavar="N",
        help="threads per torch forward pass (default: one per core)",
    )
    serve.add_argument("--no-reexec", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(func=cmd_serve)

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

    infer = sub.add_parser("infer", help="seal stdin, send it to MODEL, write the answer to stdout")
    infer.add_argument("model")
    infer.add_argument("--url", required=True, help="the server, e.g. https://127.0.0.1:8443")
    infer.add_argument("--api-key", required=True, help="the tenant's API key (cr_...)")
    infer.add_argument("--public-key", default=None, help="public-key token or file (pins the key)")
    infer.add_argument(
        "--pin", default=None, help="SHA-256 fingerprint of the tenant key to accept (see tenant create)"
    )
    infer.add_argument("--cacert", default=None, help="CA certificate to trust (e.g. DATA_DIR/tls/dev-cert.pem)")
    infer.set_defaults(func=cmd_infer)

    execp = sub.add_parser("exec", help="run COMMAND with cleanroom's process hardening")
    execp.add_argument(
        "--perturb-byte", type=perturb_byte, default=0xA5, help="fill byte for freed memory, 1..255 (default 0xA5)"
    )
    execp.add_argument("command", nargs=argparse.REMAINDER)
    execp.set_defaults(func=cmd_exec)

    for module_name in _PLUGIN_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue
            raise
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CleanroomError as exc:
        print(f"cleanroom: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except Exception as exc:
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            for error in exc.errors():
                field = ".".join(str(p) for p in error["loc"])
                print(
                    f"cleanroom: invalid setting {field} (CLEANROOM_{field.upper()}): {error['msg']}", file=sys.stderr
                )
            return 2
        from cleanroom.client import ClientError
        from cleanroom.keys.public_key import KeyPinMismatch

        if isinstance(exc, ClientError | KeyPinMismatch):
            print(f"cleanroom: {exc}", file=sys.stderr)
            return 1
        if os.environ.get("CLEANROOM_DEBUG"):
            raise
        print(f"cleanroom: {describe_failure(exc)}", file=sys.stderr)
        return 1


def describe_failure(exc: BaseException) -> str:
    """One line for an error no command turned into a `CleanroomError`: a file that cannot be read or
    parsed, a server that cannot be reached, a bad value. Never a traceback (CLEANROOM_DEBUG=1 shows it);
    the text is redacted, since a library's message may quote what it was given."""
    import re
    import tomllib

    import httpx
    from pydantic_settings import SettingsError

    if isinstance(exc, httpx.HTTPError):
        where = ""
        with contextlib.suppress(RuntimeError):  # .request is unset on some errors
            where = f" {exc.request.url.copy_with(query=None)}"
        text = f"cannot reach{where}: {type(exc).__name__}: {exc}"
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            text += (
                " (the server's certificate is not trusted: for the dev certificate give"
                " --cacert DATA_DIR/tls/dev-cert.pem)"
            )
    elif isinstance(exc, SettingsError):
        # e.g. CLEANROOM_MODELS=echo: list and dict settings are JSON in the environment
        match = re.search(r'field "(\w+)"', str(exc))
        name = f"CLEANROOM_{match.group(1).upper()}" if match else "a CLEANROOM_* variable"
        text = f"cannot parse {name}: list and dict settings take JSON, e.g. CLEANROOM_MODELS='[\"echo\"]'"
    elif isinstance(exc, tomllib.TOMLDecodeError):
        text = f"CLEANROOM_CONFIG={os.environ.get('CLEANROOM_CONFIG')} is not valid TOML: {exc}"
    elif isinstance(exc, json.JSONDecodeError):
        path = _failing_path(exc)
        text = f"{path or 'a file'} is not valid JSON ({exc.msg}, line {exc.lineno}): corrupt or truncated?"
    elif isinstance(exc, OSError):
        text = f"{exc.strerror or type(exc).__name__}: {exc.filename}" if exc.filename else f"{exc}"
    elif isinstance(exc, ValueError):
        text = str(exc) or type(exc).__name__
    else:
        path = _failing_path(exc)
        text = (
            f"unexpected {type(exc).__name__} ({exc})"
            + (f" while reading {path}" if path else "")
            + "; a file in the data dir may be corrupt or from another version (CLEANROOM_DEBUG=1 for details)"
        )
    return _redacted(" ".join(text.split()))[:500]


def _failing_path(exc: BaseException) -> str | None:
    """The file a failure was about, when a frame of ours on its way up held one in `path` or `self.path`."""
    found: str | None = None
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_globals.get("__name__", "").startswith("cleanroom."):
            candidate = frame.f_locals.get("path")
            owner = frame.f_locals.get("self")
            if candidate is None and owner is not None:
                candidate = getattr(owner, "path", None)
            if isinstance(candidate, str | Path):
                found = str(candidate)
        tb = tb.tb_next
    return found


def _redacted(text: str) -> str:
    try:
        from cleanroom.scrubbers.logs import redact
    except ImportError:  # pragma: no cover - the redaction module ships with every release
        return text
    return redact(text)
