"""`cleanroom serve`: harden the process, build the services, listen, and say what is in force.

Start-up prints one line per guarantee (TLS, allocator, core dumps, dumpability, mlock) so an operator
sees at a glance what this host can and cannot promise.
"""

from __future__ import annotations

import logging
import signal
import socket
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from cleanroom.config import Settings
from cleanroom.errors import ConfigurationError
from cleanroom.memory.hardening import apply_process_hardening
from cleanroom.memory.secure_buffer import SecureBuffer
from cleanroom.server.tls import CertificateReloader, dev_certificate, server_tls_context

if TYPE_CHECKING:
    # Imported where used: limits pulls in uvicorn's httptools protocol and services the model stack
    # (torch, ~1.6 s), which `doctor` (mlock_report) and `serve`'s pre-flight checks must not pay for.
    from cleanroom.server.limits import ConnectionLimits
    from cleanroom.server.services import Services

log = logging.getLogger("cleanroom.server")


def tls_files(settings: Settings) -> tuple[Path, Path] | None:
    if settings.tls_mode == "off":
        if settings.tls_client_cert != "none" or settings.tls_client_ca is not None:
            raise ConfigurationError("client certificates need TLS: drop --no-tls or the --client-cert flags")
        if not settings.host_is_loopback:
            raise ConfigurationError(f"--no-tls is refused on {settings.host!r}: plain HTTP only on loopback")
        return None
    if settings.tls_mode == "files":
        if settings.tls_cert is None or settings.tls_key is None:
            raise ConfigurationError("--tls-cert and --tls-key go together")
        return settings.tls_cert, settings.tls_key
    return dev_certificate(settings.data_dir, [settings.host])


def has_cap_ipc_lock() -> bool:
    """CAP_IPC_LOCK (bit 14) in the effective set: mlock is then not bounded by RLIMIT_MEMLOCK."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 14))
    except OSError:
        pass
    return False


def mlock_report(settings: Settings, memlock_limit_bytes: int | None) -> str:
    """One start-up line saying how far plaintext can be kept out of swap on this host."""
    if not settings.mlock:
        return "mlock: disabled by settings (plaintext pages may be swapped)"
    with SecureBuffer(64 * 1024, lock=True) as probe:
        locked = probe.locked
    if not locked:
        return "mlock: FAILED even for 64 KiB; plaintext pages may be swapped (grant CAP_IPC_LOCK)"
    if has_cap_ipc_lock() or memlock_limit_bytes is None:
        return "mlock: ok, unlimited (CAP_IPC_LOCK or no RLIMIT_MEMLOCK)"
    return (
        f"mlock: limited to {memlock_limit_bytes} bytes in all (RLIMIT_MEMLOCK, no CAP_IPC_LOCK); larger "
        "requests run unlocked and are counted in cleanroom_mlock_failures"
    )


def server_url(settings: Settings, port: int, tls: bool) -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"{'https' if tls else 'http'}://{host}:{port}"


def connection_limits(settings: Settings) -> ConnectionLimits:
    from cleanroom.server.limits import ConnectionLimits

    return ConnectionLimits(
        max_header_bytes=settings.max_header_bytes,
        header_timeout_s=settings.header_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        keep_alive_timeout_s=settings.keep_alive_timeout_s,
        max_connections=settings.max_connections,
        max_concurrent_requests=settings.max_concurrent_requests,
    )


class GracefulExit:
    """SIGTERM/SIGINT handlers that make a drained shutdown exit 0 and still run our clean-up.

    uvicorn handles the signal (stops accepting, drains in-flight requests), then re-raises it against the
    handler that was installed before it started. With the default handler that kills the process by the
    signal, skipping `services.close()` (audit log, KMS) and the server.json removal. Ours ignores the
    re-raised signal once the drain is done, and before the server runs (model loading) exits normally.
    """

    def __init__(self) -> None:
        self.drained = False

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self)

    def __call__(self, sig: int, _frame: FrameType | None) -> None:
        if not self.drained:
            raise SystemExit(128 + sig)


def run_server(settings: Settings) -> int:
    import uvicorn

    from cleanroom.server.app import create_app
    from cleanroom.server.limits import harden_asgi, hardened_protocol
    from cleanroom.server.services import build_services, publish_server_state, withdraw_server_state

    hardening = apply_process_hardening(
        disable_core_dumps=settings.disable_core_dumps, not_dumpable=settings.not_dumpable
    )
    files = tls_files(settings)
    services: Services = build_services(settings)
    services.extras["hardening"] = hardening.to_json()
    from cleanroom.runtime.device import discover

    services.extras["device"] = discover().to_dict()
    for control, on in hardening.to_json().items():
        if isinstance(on, bool):
            services.metrics.hardening.labels(control=control).set(1 if on else 0)
    app = create_app(services)
    log.info("cleanroom: allocator hardening %s", "on" if hardening.allocator_hardened else "OFF")
    log.info(
        "cleanroom: core dumps %s, dumpable %s",
        "off" if hardening.core_dumps_disabled else "ON",
        "no" if hardening.not_dumpable else "YES",
    )
    mlock_line = mlock_report(settings, hardening.memlock_limit_bytes)
    services.extras["mlock"] = mlock_line
    log.info("cleanroom: %s", mlock_line)
    log.info("cleanroom: models %s, KMS %s", ",".join(services.models.names()), services.kms.name)

    ssl_factory = None
    if files is not None:
        context = server_tls_context(
            *files, client_ca=settings.tls_client_ca, client_cert=settings.tls_client_cert, groups=settings.tls_groups
        )
        ssl_factory = lambda _config, _default: context  # noqa: E731 - uvicorn wants a factory
        CertificateReloader(context, *files).install_sighup()
        log.info(
            "cleanroom: TLS 1.3 only, groups %s, client certificates %s, certificate %s (SIGHUP reloads)",
            ":".join(settings.tls_groups),
            settings.tls_client_cert,
            files[0],
        )
    else:
        log.warning("cleanroom: TLS OFF (loopback only)")
    limits = connection_limits(settings)
    config = uvicorn.Config(
        harden_asgi(app),
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=True,
        ssl_context_factory=ssl_factory,
        http=hardened_protocol(limits),
        timeout_keep_alive=limits.keep_alive_timeout_s,
        server_header=False,
        timeout_graceful_shutdown=30,
        ws="none",  # no WebSocket routes: no upgrade path
        # cleanroom resolves forwarded addresses itself, only from its trusted proxies
        # (access.py); uvicorn's default would trust X-Forwarded-For from 127.0.0.1.
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    exit_after_drain = GracefulExit()
    exit_after_drain.install()

    original_startup = server.startup

    async def startup(sockets: list[socket.socket] | None = None) -> None:
        await original_startup(sockets=sockets)
        port = settings.port
        for srv in getattr(server, "servers", []):
            for sock in srv.sockets:
                port = sock.getsockname()[1]
        url = server_url(settings, port, files is not None)
        publish_server_state(settings.data_dir, url=url, tls_cert=str(Path(files[0]).resolve()) if files else None)
        log.info("cleanroom: listening on %s", url)

    server.startup = startup  # type: ignore[method-assign]  # write server.json once the port is known
    original_shutdown = server.shutdown

    async def shutdown(sockets: list[socket.socket] | None = None) -> None:
        await original_shutdown(sockets=sockets)
        exit_after_drain.drained = True

    server.shutdown = shutdown  # type: ignore[method-assign]
    try:
        server.run()
    finally:
        withdraw_server_state(settings.data_dir)
        services.close()
    return 0
