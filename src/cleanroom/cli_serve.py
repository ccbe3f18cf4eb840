"""`cleanroom serve`: the server's command line — flags to `Settings`, the checks made before any model loads
(a second server on the same data dir, an address that cannot be bound, plain HTTP off loopback, a data
dir, KMS or TLS file that cannot be used), the allocator-hardening re-exec, logging, a bind failure told
in one line, and the exit after a clean drain.

Its own module because it is the one command that starts a long-lived process, and the only one with
pre-flight checks that must run before the re-exec and again after uvicorn fails.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import sys
from pathlib import Path
from typing import Any

from cleanroom.cli_common import add_data_dir, settings_from_args


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
    preflight(settings)  # the KMS, data dir and TLS files, before torch and the models (~3-10 s) load
    from cleanroom.server.runner import run_server

    code = run_explaining_bind_failures(settings, run_server)
    if code == 0:
        exit_after_clean_drain()
    return code


# The open data dir, flocked for as long as this server runs (see `lock_data_dir`).
_data_dir_lock: int | None = None


def lock_data_dir(data_dir: Path) -> None:
    """Take an exclusive flock on the data dir itself for the life of this process.

    server.json is written only once the server listens, so two `serve` started together both pass the
    `running_server` check; the second then failed only at the audit log's lock, after loading the models.
    The lock is on the directory, not on a file in it: nothing to leave behind after a `kill -9`, and the
    kernel drops it with the process."""
    global _data_dir_lock
    fd = os.open(data_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        from cleanroom.errors import ConfigurationError

        raise ConfigurationError(
            f"another cleanroom serve is starting or running on {data_dir}: stop it or give another --data-dir"
        ) from None
    except OSError:  # a file system without flock on directories: the server.json and audit checks remain
        os.close(fd)
        return
    _data_dir_lock = fd


def preflight(settings: Any) -> None:
    """What would otherwise fail only after torch and the models have loaded: a data dir that cannot be
    made private, a second server on it, a KMS that cannot be reached or refuses (a dead Vault address
    took 4 s and one with a dropped route `kms_timeout_s` more, all spent loading torch first), TLS files
    that cannot be loaded. Raises the error the server would; the CLI prints it as one line, exit 1."""
    from cleanroom.config import BUILTIN_MODELS
    from cleanroom.errors import ConfigurationError
    from cleanroom.keys.factory import kms_from_settings, master_key_name
    from cleanroom.server.runner import tls_files
    from cleanroom.server.tls import server_tls_context
    from cleanroom.storage import ensure_private_dir

    data_dir = Path(settings.data_dir)
    try:
        ensure_private_dir(data_dir)  # build_services does the same: create it 0700, or chmod an existing one
    except OSError as exc:
        raise ConfigurationError(f"cannot use the data dir {data_dir}: {exc.strerror or exc}") from None
    lock_data_dir(data_dir)
    try:
        unknown = [name for name in settings.models if name and name not in BUILTIN_MODELS]
        if unknown:  # else found only after torch loads (the built-ins are defined next to torch code)
            shown = ", ".join(repr(name[:64]) for name in unknown)
            raise ConfigurationError(f"unknown built-in model {shown} (built-ins: {', '.join(BUILTIN_MODELS)})")
        for name, target in settings.user_models.items():
            user_model_problem = missing_user_model(target)
            if user_model_problem is not None:  # else found only after torch and the built-ins (~10 s)
                raise ConfigurationError(f"model {name!r}: cannot load {target!r}: {user_model_problem}")
        kms = kms_from_settings(settings)
        try:
            kms.create_key(master_key_name(settings))  # what the server does first (idempotent): reach, authorize
        finally:
            kms.close()
        files = tls_files(settings)
        if files is not None:
            server_tls_context(
                *files,
                client_ca=settings.tls_client_ca,
                client_cert=settings.tls_client_cert,
                groups=settings.tls_groups,
            )
    except BaseException:
        unlock_data_dir()
        raise


def missing_user_model(target: str) -> str | None:
    """Why the module of a `--model NAME=package.module:factory` cannot be found, or None. Only looked
    up (`find_spec` runs the parent packages, as the import would), not imported: the module itself may
    import torch. The rest (a bad factory name, a module that fails) is found where the models load."""
    import importlib.util

    module_name = target.partition(":")[0]
    if not module_name:
        return None  # UserModel says what the form must be
    try:
        found = importlib.util.find_spec(module_name)
    except (ImportError, ValueError) as exc:  # a parent package missing, or a name such as ".x"
        return str(exc)
    return None if found is not None else f"No module named {module_name!r}"


def unlock_data_dir() -> None:
    global _data_dir_lock
    if _data_dir_lock is not None:
        os.close(_data_dir_lock)  # closing the only descriptor drops the flock
        _data_dir_lock = None


def exit_after_clean_drain() -> None:
    """End the process now that the server has drained and `services.close()` has returned.

    Python's own teardown then spent ~2.4 s (of 2.6 s from SIGTERM to exit, 2-core host) in the garbage
    collector freeing torch's object graph, every free() overwriting memory (MALLOC_PERTURB_), with nothing
    left to write. What the interpreter would still do that matters is done first, in its order: join the
    non-daemon threads (and concurrent.futures' exit hooks), run the atexit hooks (the redacting streams
    release their held partial lines), collect garbage cycles (a finalizer such as an unclosed SpillFile's
    shred runs), flush logging's handlers and the standard streams. `os._exit` then skips only the
    finalizers of objects still reachable from modules, whose zeroing the kernel does when it frees the
    pages. Exit status 0, as a drained shutdown always had."""
    import atexit
    import gc
    import threading

    join_threads = getattr(threading, "_shutdown", None)  # what Py_Finalize calls first; private, hence guarded
    if join_threads is not None:
        join_threads()
    atexit._run_exitfuncs()
    gc.collect()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream: nothing can reach it
                stream.flush()
    os._exit(0)


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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
