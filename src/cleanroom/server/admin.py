"""The admin API (`/v1/admin/...`): what `cleanroom tenant` and `cleanroom keys` call on a running process.

`cleanroom serve` mounts these routes on its own app (`install_admin_routes`). The ASGI middleware has no
port of its own, so it serves them, and nothing else, on `DATA_DIR/admin.sock` (`AdminSocketServer`): a
Unix socket, 0600 in the 0700 data dir, from a daemon thread with its own event loop. Either way the
caller proves the token in `DATA_DIR/admin.token`, and `DATA_DIR/server.json` tells the CLI where to go.
Acting in the process that holds the audit log and the key caches makes a revocation take effect on the
very next request (docs/keys.md §5).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import errno
import inspect
import json
import logging
import os
import socket
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cleanroom.errors import BadRequest, ConfigurationError, InvalidPayload
from cleanroom.server.app import read_body
from cleanroom.server.auth import require_admin
from cleanroom.server.errors import install_error_handlers
from cleanroom.server.services import Services, publish_server_state, withdraw_server_state
from cleanroom.tenants import MAX_CREDENTIAL_LIFETIME_S, PRINTABLE_LABEL

log = logging.getLogger("cleanroom.server")
BodyT = TypeVar("BodyT", bound=BaseModel)

# Admin bodies are small JSON documents; anything larger is refused (413) before it is read whole.
ADMIN_BODY_LIMIT_BYTES = 64 * 1024
ADMIN_SOCKET_NAME = "admin.sock"
# sun_path holds 108 bytes with its terminating NUL (unix(7)); a longer path cannot be bound.
UNIX_PATH_MAX_BYTES = 107


# strict: JSON types as written, no coercion. Lax mode took {"weight": "1"} and {"label": ...} of other types
# as if they were right, so a client's type bug (or a template that quotes every value) went unnoticed.
_STRICT = ConfigDict(strict=True)


class CreateTenantBody(BaseModel):
    model_config = _STRICT
    name: str = Field(min_length=1, max_length=63)
    weight: float = Field(1.0, gt=0, le=1000, allow_inf_nan=False)
    allow: list[str] = Field(default_factory=list, max_length=256)


class UpdateTenantBody(BaseModel):
    model_config = _STRICT
    weight: float | None = Field(None, gt=0, le=1000, allow_inf_nan=False)
    allow: list[str] | None = Field(None, max_length=256)


class AddCredentialBody(BaseModel):
    model_config = _STRICT
    label: str = Field("default", min_length=1, max_length=64, pattern=PRINTABLE_LABEL)
    expires_in_s: float | None = Field(None, gt=0, le=MAX_CREDENTIAL_LIFETIME_S, allow_inf_nan=False)


class KeyActionBody(BaseModel):
    """The fields `keys.commands.key_action` reads. It converted them with `int()`/`float()` itself: a
    retire without `min_version` (KeyError), `"overlap_s": "abc"` or `1e999` were 500s, and a NaN or a
    negative overlap reached the key manager."""

    model_config = _STRICT
    scope: str | None = Field(None, max_length=32)
    target: str | None = Field(None, min_length=1, max_length=256)
    overlap_s: float | None = Field(None, ge=0, le=MAX_CREDENTIAL_LIFETIME_S, allow_inf_nan=False)
    min_version: int | None = Field(None, ge=1, le=2**31)
    key: str | None = Field(None, max_length=4096)
    vault: dict[str, Any] | None = None


def key_action_body(action: str, raw: bytes) -> dict[str, Any]:
    """The body of `POST /v1/admin/keys/{action}`, checked; None fields dropped (key_action's defaults)."""
    body = parse_body(raw, KeyActionBody)
    if action == "retire" and body.min_version is None:
        raise BadRequest("retire needs min_version (the lowest key version still allowed)", code="invalid_key_action")
    return body.model_dump(exclude_none=True)


class _Duplicate(Exception):
    pass


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({name for name, _ in pairs}) != len(pairs):
        raise _Duplicate
    return dict(pairs)


def _has_duplicate_names(raw: bytes) -> bool:
    """Whether a JSON object in `raw` names a member twice. pydantic keeps the last one silently, so
    `{"name": "gamma", "name": "delta"}` created "delta" where a proxy or log reading the first saw
    "gamma". Anything that is not JSON is left to pydantic's own error."""
    try:
        json.loads(raw, object_pairs_hook=_refuse_duplicates)
    except _Duplicate:
        return True
    except (ValueError, RecursionError):
        return False
    return False


async def admin_body(request: Request, model: type[BodyT]) -> BodyT:
    """An admin route's JSON body, read only after the caller proved the admin token (FastAPI's own body
    parameters are read and parsed before the handler runs: any client could make the server buffer and
    parse an unbounded JSON document without a token)."""
    raw = await read_body(request, ADMIN_BODY_LIMIT_BYTES)
    if not raw:
        raise RequestValidationError([{"loc": ("body",), "msg": "Field required", "type": "missing"}])
    return parse_body(raw, model)


def parse_body(raw: bytes, model: type[BodyT]) -> BodyT:
    """`raw` validated as `model` (strict, no duplicate names); failures are 422 naming the fields."""
    if _has_duplicate_names(raw):
        raise InvalidPayload("the JSON body names a member twice; send each field once", code="invalid_request")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error.get("loc", ()))} for error in exc.errors(include_url=False)]
        ) from None


def install_admin_routes(
    app: FastAPI, services: Services, *, on_tenant_deleted: Callable[[str], object] | None = None
) -> None:
    """Mount the admin routes on `app`; `on_tenant_deleted(tenant_id)` drops the app's own per-tenant state."""
    settings = services.settings
    metrics = services.metrics

    @app.post("/v1/admin/tenants", status_code=201)
    async def admin_create_tenant(request: Request) -> JSONResponse:
        require_admin(request, services.admin_token)
        body = await admin_body(request, CreateTenantBody)
        created = await asyncio.to_thread(services.tenants.create, body.name, weight=body.weight, allow=body.allow)
        return JSONResponse(created.to_json(), status_code=201)

    @app.patch("/v1/admin/tenants/{name_or_id}")
    async def admin_update_tenant(name_or_id: str, request: Request) -> JSONResponse:
        require_admin(request, services.admin_token)
        body = await admin_body(request, UpdateTenantBody)
        updated = await asyncio.to_thread(services.tenants.update, name_or_id, weight=body.weight, allow=body.allow)
        return JSONResponse(updated)

    @app.get("/v1/admin/tenants/{name_or_id}/keys")
    async def admin_list_credentials(name_or_id: str, request: Request) -> JSONResponse:
        require_admin(request, services.admin_token)
        return JSONResponse({"credentials": services.tenants.list_credentials(name_or_id)})

    @app.post("/v1/admin/tenants/{name_or_id}/keys", status_code=201)
    async def admin_add_credential(name_or_id: str, request: Request) -> JSONResponse:
        require_admin(request, services.admin_token)
        body = await admin_body(request, AddCredentialBody)
        created = await asyncio.to_thread(
            services.tenants.add_credential, name_or_id, label=body.label, expires_in_s=body.expires_in_s
        )
        return JSONResponse(created.to_json(), status_code=201)

    @app.delete("/v1/admin/tenants/{name_or_id}/keys/{credential_id}")
    async def admin_revoke_credential(name_or_id: str, credential_id: str, request: Request) -> JSONResponse:
        require_admin(request, services.admin_token)
        result = await asyncio.to_thread(services.tenants.revoke_credential, name_or_id, credential_id)
        return JSONResponse(result)

    @app.get("/v1/admin/tenants")
    async def admin_list_tenants(request: Request) -> JSONResponse:
        require_admin(request, services.admin_token)
        return JSONResponse({"tenants": services.tenants.list_tenants()})

    @app.delete("/v1/admin/tenants/{name_or_id}")
    async def admin_delete_tenant(name_or_id: str, request: Request) -> JSONResponse:
        require_admin(request, services.admin_token)
        tenant_id = await asyncio.to_thread(services.tenants.delete, name_or_id)
        services.scheduler.forget(tenant_id)  # scheduling state and metric series go with the tenant
        metrics.forget_tenant(tenant_id)
        if on_tenant_deleted is not None:
            done = on_tenant_deleted(tenant_id)
            if inspect.isawaitable(done):  # e.g. the batch store shredding the tenant's jobs
                await done
        return JSONResponse({"deleted": tenant_id})

    @app.post("/v1/admin/keys/{action}")
    async def admin_keys(action: str, request: Request) -> JSONResponse:
        require_admin(request, services.admin_token)
        from cleanroom.admin_client import rotation_policy
        from cleanroom.keys.commands import key_action

        raw = await read_body(request, ADMIN_BODY_LIMIT_BYTES)
        try:
            body = json.loads(raw) if raw else {}
        except (ValueError, RecursionError):
            raise BadRequest("admin key actions take a JSON body", code="invalid_json") from None
        if not isinstance(body, dict):
            raise BadRequest("admin key actions take a JSON object", code="invalid_json")
        body = key_action_body(action, raw) if body else body
        result = await asyncio.to_thread(
            key_action, services.keys, action, body, rotation_policy(settings), services.tenants
        )
        return JSONResponse(result)


def create_admin_app(services: Services) -> FastAPI:
    """An app with the admin routes and nothing else (no docs, no OpenAPI, no tenant routes)."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.router.redirect_slashes = False
    app.state.metrics = services.metrics
    install_error_handlers(app)
    install_admin_routes(app, services)
    return app


def socket_is_served(path: Path) -> bool:
    """Whether a live process accepts connections on the Unix socket at `path`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        try:
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            return False  # a socket file left by a dead process (or none at all)
        except OSError as exc:
            if exc.errno in (errno.ENOTSOCK, errno.ECONNREFUSED):
                return False
            raise
    return True


def refuse_if_served(data_dir: Path) -> None:
    """ConfigurationError when another live process serves the admin socket of `data_dir`."""
    path = Path(data_dir) / ADMIN_SOCKET_NAME
    if path.exists() and len(os.fsencode(path)) <= UNIX_PATH_MAX_BYTES and socket_is_served(path):
        raise ConfigurationError(
            f"{path} is served by another live process (see {Path(data_dir) / 'server.json'}): only one app "
            "or server may run on a data dir"
        )


class AdminSocketPathTooLong(ConfigurationError):
    code = "admin_socket_path_too_long"


class AdminSocketServer:
    """The admin routes on `DATA_DIR/admin.sock`, served by uvicorn on a daemon thread with its own loop.

    Start it only while holding the data dir's audit log (it is then the only live process there, so a
    socket file found at start is stale and removed). `close()` (or the services being closed) stops the
    thread and removes the socket and server.json if they are still this instance's. Signals are left to
    the host process: uvicorn installs no handlers outside the main thread.
    """

    def __init__(self, services: Services, *, start_timeout_s: float = 10.0) -> None:
        import uvicorn

        self.data_dir = Path(services.settings.data_dir).resolve()
        self.path = self.data_dir / ADMIN_SOCKET_NAME
        if len(os.fsencode(self.path)) > UNIX_PATH_MAX_BYTES:
            raise AdminSocketPathTooLong(
                f"the admin socket path {self.path} is longer than {UNIX_PATH_MAX_BYTES} bytes (unix(7)): use a "
                "shorter data dir, or admin_socket=False (then stop the app to run `tenant`/`keys` commands)"
            )
        self._services = services
        self._published: dict[str, Any] | None = None
        self._identity: tuple[int, int] | None = None
        self._closed = threading.Event()
        self._sock = self._bind()
        config = uvicorn.Config(
            create_admin_app(services),
            uds=str(self.path),  # names the socket in uvicorn's log line; the socket itself is ours (`sockets=`)
            lifespan="off",
            http="h11",
            ws="none",
            log_config=None,  # no log_level/access_log overrides: those would reconfigure the host's loggers
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="cleanroom-admin-socket", daemon=True)
        self._thread.start()
        waited = 0.0
        while not self._server.started and self._thread.is_alive() and waited < start_timeout_s:
            self._thread.join(0.01)
            waited += 0.01
        if not self._server.started:
            self.close()
            raise ConfigurationError(f"the admin socket {self.path} did not start ({self._failed!r})")
        self._published = publish_server_state(self.data_dir, admin_socket=str(self.path))
        atexit.register(self.close)
        log.info("cleanroom: admin API on %s (for `cleanroom tenant` and `cleanroom keys`)", self.path)

    def _bind(self) -> socket.socket:
        if self.path.exists() or self.path.is_symlink():
            if socket_is_served(self.path):
                raise ConfigurationError(f"{self.path} is served by another live process: stop it first")
            self.path.unlink()  # left by a process that died without cleaning up
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
            # The socket file exists with the umask's mode until this chmod; the 0700 data dir keeps other
            # users from reaching it meanwhile. uvicorn's own `uds=` would chmod it to 0666: not used.
            os.chmod(self.path, 0o600)
            info = os.stat(self.path)
            self._identity = (info.st_dev, info.st_ino)
            sock.listen(64)
        except BaseException:
            sock.close()
            self._remove_socket()
            raise
        return sock

    def _run(self) -> None:
        async def serve() -> None:
            watcher = asyncio.ensure_future(self._stop_when_services_close())
            try:
                await self._server.serve(sockets=[self._sock])
            finally:
                watcher.cancel()

        try:
            asyncio.run(serve())
        except BaseException as exc:  # reported by __init__ (start) or logged (later)
            self._failed = exc
            log.error("the admin socket %s stopped: %s", self.path, type(exc).__name__)
        finally:
            self._cleanup()

    async def _stop_when_services_close(self) -> None:
        # An app that closes its Services without calling `close()` here still frees the socket: the CLI
        # then works on the data dir directly.
        while not self._server.should_exit:
            if self._services._closed.is_set():
                self._server.should_exit = True
            await asyncio.sleep(0.1)

    def _remove_socket(self) -> None:
        with contextlib.suppress(OSError):
            info = os.lstat(self.path)
            if stat.S_ISSOCK(info.st_mode) and (info.st_dev, info.st_ino) == self._identity:
                self.path.unlink()

    def _cleanup(self) -> None:
        if self._published is not None:
            withdraw_server_state(self.data_dir, self._published)
        self._remove_socket()
        self._sock.close()

    def close(self) -> None:
        """Stop serving and remove the socket and server.json (only if they are still ours). Idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        atexit.unregister(self.close)
        self._server.should_exit = True
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        self._cleanup()
