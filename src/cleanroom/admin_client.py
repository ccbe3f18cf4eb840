"""How CLI commands reach a data dir: through the running server's admin API, or directly when none runs.

`DATA_DIR/server.json` names the running process's pid and where its admin API listens: the `url` of
`cleanroom serve`, or the `admin_socket` (a 0600 Unix socket in the data dir) of an app running the ASGI
middleware; the admin token is in a 0600 file beside it. Acting through that process makes changes take
effect at once (caches purged in the process that holds them); with none running, the same
`TenantService` code edits the registry under its file lock.
"""

from __future__ import annotations

import atexit
import json
import os
from pathlib import Path
from typing import Any

import httpx

from cleanroom.config import Settings
from cleanroom.errors import AuditUnavailable, CleanroomError


def running_server(data_dir: Path) -> dict[str, Any] | None:
    """The server.json of a live server on this data dir, or None."""
    path = Path(data_dir) / "server.json"
    try:
        state: dict[str, Any] = json.loads(path.read_text())
        pid = int(state["pid"])
        if pid <= 0:  # kill(0) and kill(-1) signal groups: a damaged file must not count as a live server
            return None
    except (FileNotFoundError, PermissionError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        # The process lives but is another user's: a server we may not signal is still a server, and the
        # CLI must not edit the data dir under it (its admin API then says what we may not do).
        return state
    return state


def admin_tls_context(server_cert: str | None) -> Any:
    """Trust exactly the certificate the server on this data dir serves (the file server.json names).

    `VERIFY_X509_PARTIAL_CHAIN` lets that leaf be its own trust anchor, so this works for the self-signed
    dev certificate and for a CA-issued one alike, without trusting anything else. When the server
    requires client certificates, the CLI presents `CLEANROOM_ADMIN_CLIENT_CERT`/`_KEY`.
    """
    import ssl

    from cleanroom.errors import ConfigurationError

    if not server_cert:
        return True
    if not Path(server_cert).is_file():
        # server.json keeps --tls-cert as it was given: a relative path only resolves in the server's cwd
        raise ConfigurationError(
            f"the running server's certificate {server_cert} (named in server.json) is not readable from here: "
            "run this command in the directory the server was started from, or start it with an absolute --tls-cert"
        )
    context = ssl.create_default_context(cafile=server_cert)
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    client_cert = os.environ.get("CLEANROOM_ADMIN_CLIENT_CERT")
    if client_cert:
        context.load_cert_chain(client_cert, os.environ.get("CLEANROOM_ADMIN_CLIENT_KEY"))
    return context


class AdminAPI:
    """Admin calls to a running server, authenticated with the data dir's admin token."""

    def __init__(self, state: dict[str, Any]) -> None:
        token = Path(state["admin_token_file"]).read_text(encoding="ascii").strip()
        self._presents_client_cert = bool(os.environ.get("CLEANROOM_ADMIN_CLIENT_CERT"))
        headers = {"Authorization": f"Bearer {token}"}
        admin_socket = state.get("admin_socket")
        if admin_socket:  # an app with the ASGI middleware: plain HTTP on a 0600 socket in the 0700 data dir
            self._http = httpx.Client(
                base_url="http://cleanroom-admin",
                transport=httpx.HTTPTransport(uds=str(admin_socket)),
                timeout=60,
                headers=headers,
            )
            return
        # The server of this data dir runs on this host: never through HTTP(S)_PROXY, which would see the
        # admin token in clear on a --no-tls loopback server (and a dead proxy broke every tenant command).
        verify = admin_tls_context(state.get("tls_cert"))
        self._http = httpx.Client(
            base_url=state["url"],
            verify=verify,
            transport=httpx.HTTPTransport(verify=verify),
            timeout=60,
            headers=headers,
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError) as failure:
            alert = "CERTIFICATE_REQUIRED" in str(failure).upper()
            if self._presents_client_cert or (isinstance(failure, httpx.ConnectError) and not alert):
                raise
            # A server with --client-cert-required drops the handshake of a client without a certificate;
            # httpx then reports only a disconnect, which says nothing about the cure.
            raise CleanroomError(
                f"the server on this data dir ({self._http.base_url}) closed the connection: if it requires client "
                "certificates, set CLEANROOM_ADMIN_CLIENT_CERT and CLEANROOM_ADMIN_CLIENT_KEY",
                code="admin_unreachable",
            ) from None
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                code, message = str(error["code"]), str(error["message"])
            except (ValueError, KeyError, TypeError, RecursionError):
                # not the server's JSON error: a proxy page, another program on the port
                code, message = "http_error", f"{response.status_code} {' '.join(response.text[:200].split())}"
            exc = CleanroomError(message, code=code)
            exc.status = response.status_code
            raise exc
        try:
            return response.json()
        except (ValueError, RecursionError):
            # The CLI would report a JSONDecodeError as a corrupt file of the data dir: say what it was.
            raise CleanroomError(
                f"the server named in server.json ({self._http.base_url}) answered {response.status_code} with "
                f"{response.headers.get('content-type', 'no content type')}, not JSON: another program on that port?",
                code="unexpected_response",
            ) from None

    def close(self) -> None:
        self._http.close()


def local_tenant_service(settings: Settings) -> Any:
    """A TenantService over the data dir itself, for when no server runs there."""
    from cleanroom.keys.factory import kms_from_settings
    from cleanroom.keys.keyring import Keyring
    from cleanroom.keys.registry import Registry
    from cleanroom.storage import ensure_private_dir
    from cleanroom.tenants import TenantService

    ensure_private_dir(Path(settings.data_dir))
    kms = kms_from_settings(settings)
    registry = Registry(settings.data_dir)
    from cleanroom.keys.factory import master_key_name

    keyring = Keyring(registry, kms, master_key_name=master_key_name(settings), ttl_s=0)
    keyring.ensure_master_key()
    service = TenantService(registry, keyring)
    # Key operations done without a server are on the same audit record as the server's.
    from cleanroom.audit.sink import AuditLogSink

    try:
        audit = AuditLogSink(Path(settings.data_dir), kms, keyring.master_key_name, settings)
    except AuditUnavailable as exc:
        if "in use by another process" not in exc.message:
            raise
        # No live server.json, yet a process holds the audit log: a server still starting (it publishes
        # server.json once it listens), or an app embedding cleanroom without an admin socket.
        raise AuditUnavailable(
            f"{exc.message}, but no running server is published in {settings.data_dir}/server.json: if a "
            "server is starting there, retry once it listens"
        ) from None
    atexit.register(audit.close)  # writes the closing checkpoint when the command ends
    service.audit = keyring.audit = audit
    return service


def local_key_manager(settings: Settings) -> tuple[Any, Any]:
    """A KeyManager over the data dir itself, and the rotation policy from settings. The data dir must
    exist: rotating or revoking in a mistyped directory must not create a fresh master key there."""
    from cleanroom.errors import ConfigurationError
    from cleanroom.keys.lifecycle import KeyManager

    if not Path(settings.data_dir).is_dir():
        raise ConfigurationError(f"no data dir at {settings.data_dir}: give the --data-dir of a server")

    service = local_tenant_service(settings)
    return KeyManager(service.registry, service.keyring, audit=service.audit), rotation_policy(settings)


def rotation_policy(settings: Settings) -> Any:
    from cleanroom.keys.lifecycle import RotationPolicy

    return RotationPolicy(
        tenant_key_days=settings.tenant_key_rotation_days,
        master_key_days=settings.master_key_rotation_days,
        credential_days=settings.credential_rotation_days,
        hpke_key_days=settings.tenant_key_rotation_days,
    )
