"""The FastAPI app factory: routes of DESIGN §5 over a `Services` bundle.

Handlers do transport work only — size and type checks, authentication, moving the call off the event
loop — and hand the sealed bytes to `Runtime.handle`. Bodies are never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cleanroom import __version__
from cleanroom.crypto.sealed import CONTENT_TYPE
from cleanroom.errors import BadRequest, CleanroomError, PayloadTooLarge, RegistryUnreadable, UnsupportedMediaType
from cleanroom.runtime.batch_runner import SealedItem
from cleanroom.runtime.session import CallContext
from cleanroom.server.auth import authenticate_tenant, single_header
from cleanroom.server.errors import install_error_handlers
from cleanroom.server.metrics import code_label
from cleanroom.server.mtls import check_client_identity
from cleanroom.server.services import Services

log = logging.getLogger("cleanroom.server")

QUERY_DROPPED = "?[REDACTED:QUERY]"


class AccessLogWithoutQuery(logging.Filter):
    """On the `uvicorn.access` LOGGER (it runs before any handler's redacting filter formats the record):
    the request line keeps its path and loses its query string. No route here reads a query, and a query
    is where callers put tokens and identifiers the redactor has no pattern for (`?q=<anything>`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn's access record: (client, method, path?query, http_version, status)
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str) and "?" in args[2]:
            record.args = (args[0], args[1], args[2].partition("?")[0] + QUERY_DROPPED, *args[3:])
        return True


def install_log_guards() -> None:
    """Idempotent. Query strings out of the access log; `warnings.warn` (model code, libraries) through
    logging, so a warning reaches the redacting handlers instead of raw stderr."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, AccessLogWithoutQuery) for f in access.filters):
        access.addFilter(AccessLogWithoutQuery())
    logging.captureWarnings(True)


async def read_body(request: Request, limit_bytes: int) -> bytes:
    """The request body, refusing more than `limit_bytes` before reading it all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit_bytes:
                raise PayloadTooLarge(f"request body is larger than the {limit_bytes}-byte limit")
        except ValueError:
            raise BadRequest("Content-Length is not a number", code="invalid_content_length") from None
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit_bytes:
            raise PayloadTooLarge(f"request body is larger than the {limit_bytes}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


def require_sealed_content_type(request: Request) -> None:
    media_type = (single_header(request, "content-type") or "").split(";")[0].strip().lower()
    if media_type != CONTENT_TYPE:
        raise UnsupportedMediaType(f"send sealed requests as Content-Type: {CONTENT_TYPE}")
    # The server decodes no content coding: a gzip'd sealed body would only fail later as a bad message.
    for coding in request.headers.getlist("content-encoding"):
        if any(c.strip().lower() not in ("", "identity") for c in coding.split(",")):
            raise UnsupportedMediaType(
                "sealed requests take no Content-Encoding (the ciphertext does not compress)",
                code="unsupported_content_encoding",
            )


def client_address(request: Request, services: Services) -> str:
    """The caller's address: the peer, or the forwarding header when the peer is a trusted proxy."""
    peer = request.client.host if request.client else ""
    return services.addresses.resolve(peer, request.headers.get(services.addresses.header))


async def until_disconnected(request: Request, work: Coroutine[Any, Any, bytearray]) -> bytearray:
    """Await `work`, cancelling it if the client goes away first (a queued request is then dropped)."""
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        raise ClientDisconnected("the client went away before its request ran")
    return task.result()


class ClientDisconnected(CleanroomError):
    status, code = 499, "client_disconnected"


async def background_rewrap(services: Services) -> None:
    """Move wrapped keys to the newest master version after a rotation done outside cleanroom (e.g. the
    KMS's own schedule); `keys rotate --master` rewraps at once, this catches the rest. Never fatal."""
    interval = services.settings.rewrap_interval_s
    while interval > 0:
        await asyncio.sleep(interval)
        try:
            moved = await asyncio.to_thread(services.keys.rewrap_all)
            if moved:
                log.info("background rewrap moved %d wrapped key(s) to the newest master version", moved)
        except CleanroomError as exc:
            log.warning("background rewrap skipped: %s", exc.code)


def create_app(services: Services) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await services.scheduler.start()
        rewrapper = asyncio.ensure_future(background_rewrap(services))
        try:
            yield
        finally:
            rewrapper.cancel()
            report = await services.scheduler.shutdown(services.settings.drain_deadline_s)
            log.info(
                "scheduler drained=%s completed=%d cancelled=%d abandoned=%d",
                report.drained,
                report.completed,
                report.cancelled_queued,
                report.abandoned_running,
            )

    app = FastAPI(title="cleanroom", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan)
    # No 307 to the slash-less path: the redirect has no JSON body and its Location is built from the
    # client's own Host header. A path with a trailing slash is a 404 like any other unknown path.
    app.router.redirect_slashes = False
    app.state.services = services
    app.state.metrics = services.metrics
    install_error_handlers(app)
    install_log_guards()
    settings = services.settings
    metrics = services.metrics

    weights: dict[str, float] = {}

    def sync_weight(tenant_id: str) -> None:
        weight = float(services.registry.tenant(tenant_id).get("weight", 1.0))
        if weights.get(tenant_id) != weight:
            services.scheduler.set_weight(tenant_id, weight)
            weights[tenant_id] = weight

    async def run_sealed(request: Request, model: str, path: str) -> Response:
        # The caller is authenticated first: nothing, not even which models exist (the 404 names them),
        # is said to a request without a valid API key. Then 404, 415 and 413, all before reading a body.
        source = client_address(request, services)
        principal = authenticate_tenant(request, services.tenants, source)
        check_client_identity(request, services.registry.tenant(principal.tenant_id))
        if model:
            services.models.get(model)
        require_sealed_content_type(request)
        body = await read_body(request, settings.max_body_bytes)
        call = CallContext(principal=principal, model=model, path=path, source=source)
        started = time.perf_counter()
        sync_weight(principal.tenant_id)
        try:
            sealed = await until_disconnected(
                request,
                services.scheduler.submit(
                    principal.tenant_id, model, SealedItem(call, body), runner=services.runners[model]
                ),
            )
        except CleanroomError as exc:
            metrics.requests.labels(
                tenant_id=principal.tenant_id, model=model or path, outcome=code_label(exc.code)
            ).inc()
            raise
        metrics.latency.labels(model=model or path).observe(time.perf_counter() - started)
        metrics.requests.labels(tenant_id=principal.tenant_id, model=model or path, outcome="ok").inc()
        # Starlette sends a memoryview as it is: the sealed answer is not copied into a `bytes` first.
        return Response(content=memoryview(sealed), media_type=CONTENT_TYPE)

    @app.post("/v1/models/{model}/infer")
    async def infer(model: str, request: Request) -> Response:
        return await run_sealed(request, model, "")

    @app.get("/v1/tenants/self/public-key")
    async def public_key(request: Request) -> JSONResponse:
        principal = authenticate_tenant(request, services.tenants, client_address(request, services))
        check_client_identity(request, services.registry.tenant(principal.tenant_id))
        return JSONResponse(services.tenants.public_key(principal.tenant_id))

    @app.get("/healthz")
    @app.head("/healthz", include_in_schema=False)  # load balancers probe with HEAD
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    @app.head("/readyz", include_in_schema=False)  # load balancers probe with HEAD
    async def readyz() -> JSONResponse:
        try:
            services.registry.refresh()
        except RegistryUnreadable as exc:  # every request would be refused: take this server out of rotation
            return JSONResponse({"status": "not_ready", "error": {"code": exc.code, "message": str(exc)}}, 503)
        ready: dict[str, Any] = {
            "status": "ready",
            "models": services.models.names(),
            "memory": {**services.allocator.describe(), "mlock": services.extras.get("mlock")},
            "hardening": services.extras.get("hardening", {}),
        }
        device = services.extras.get("device")
        if device is not None:
            ready["device"] = device
        return JSONResponse(ready)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        stats = services.allocator.stats
        metrics.mlock_failures.set(stats.lock_failures)
        metrics.locked_bytes.set(stats.locked_bytes)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # --- admin API: used by `cleanroom tenant ...` and `cleanroom keys ...` when this server runs on the data
    # dir (server/admin.py; the ASGI middleware serves the same routes on DATA_DIR/admin.sock)
    from cleanroom.server.admin import install_admin_routes

    async def tenant_deleted(tenant_id: str) -> None:
        weights.pop(tenant_id, None)
        batches = services.extras.get("batches")
        if batches is not None:  # its jobs go now: nobody can fetch them any more
            await batches.forget_tenant(tenant_id)

    install_admin_routes(app, services, on_tenant_deleted=tenant_deleted)

    from cleanroom.server.openapi import install_openapi  # public schema: docs/openapi.json (server/openapi.py)

    install_openapi(app)
    from cleanroom.server.batches import install_batch_routes  # batch jobs (server/batches.py, docs/batches.md)

    install_batch_routes(app, services)
    return app
