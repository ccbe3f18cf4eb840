"""The batch job routes (docs/batches.md), installed on the app by `install_batch_routes(app, services)`.

    POST   /v1/batches                 sealed batch in (path "/v1/batches", model ""), 202 + {batch_id, status}
    GET    /v1/batches/{id}            progress: counts only, never tenant data
    GET    /v1/batches/{id}/results    the sealed results (one sealed response, streamed), then shredded
    DELETE /v1/batches/{id}            cancel and shred

Every route authenticates the API key (and the tenant's address allowlist and client certificate) before
anything else, and looks jobs up under the caller's tenant only: another tenant's job id is a 404, the
same as an id that never existed. Handlers do transport work only; `runtime.batch_jobs` does the rest.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from cleanroom.crypto.sealed import CONTENT_TYPE
from cleanroom.errors import CleanroomError, ConfigurationError, SystemSealed, TenantRevoked
from cleanroom.runtime.batch_jobs import BatchJobStore, BatchLimits
from cleanroom.runtime.session import CallContext
from cleanroom.scrubbers.base import ScrubPolicy
from cleanroom.server.app import client_address, read_body, require_sealed_content_type
from cleanroom.server.auth import authenticate_tenant
from cleanroom.server.headers import ABORT_EXTENSION
from cleanroom.server.mtls import check_client_identity
from cleanroom.server.services import Services
from cleanroom.storage import ensure_private_dir
from cleanroom.tenants import Principal

BATCHES_PATH = "/v1/batches"
log = logging.getLogger("cleanroom.batch")


def build_batch_store(services: Services) -> BatchJobStore:
    settings = services.settings
    if settings.spill_dir is None:
        spill_dir = ensure_private_dir(Path(settings.data_dir) / "spill")
    else:  # the operator's directory: used as it is (never chmod a shared directory such as /tmp)
        spill_dir = Path(settings.spill_dir)
        if not spill_dir.is_dir():
            raise ConfigurationError(f"spill_dir {str(spill_dir)!r} is not a directory")
    limits = BatchLimits(
        ttl_s=settings.batch_ttl_s,
        chunk_size=settings.batch_chunk_size,
        lane_weight=settings.batch_weight,
        max_inputs=settings.max_batch_inputs,
        max_item_bytes=settings.max_body_bytes,
        max_jobs_per_tenant=settings.max_batches_per_tenant,
        spill_threshold_bytes=settings.spill_threshold_bytes,
        spill_segment_bytes=settings.spill_segment_bytes,
    )

    def tenant_weight(tenant_id: str) -> float:
        """The tenant's weight, read before each chunk; raises if it may no longer run work (revoked,
        deleted, or the system sealed), which fails and shreds the job."""
        if services.keyring.sealed:
            raise SystemSealed("the master key is revoked; batch jobs stop with every other request")
        record = services.registry.tenant(tenant_id)
        if record.get("revoked"):
            raise TenantRevoked("the tenant is revoked; its batch jobs stop")
        return float(record.get("weight", 1.0))

    return BatchJobStore(
        scheduler=services.scheduler,
        opener=services.runtime.opener,
        models=services.models,
        allocator=services.allocator,
        policy=ScrubPolicy(mode=settings.scrub_policy),
        spill_dir=spill_dir,
        limits=limits,
        tenant_weight=tenant_weight,
    )


async def cut_when_gone(pieces: AsyncIterator[bytes], scope: Any) -> AsyncIterator[bytes]:
    """The results, or a cut connection when the job is shredded mid-stream (a cancel, the TTL, a spill
    failure): the status line is already sent, so no error status can follow. Left to propagate, the error
    reached uvicorn as "Exception in ASGI application" with a traceback in the log."""
    try:
        async for piece in pieces:
            yield piece
    except CleanroomError as exc:
        abort = (scope.get("extensions") or {}).get(ABORT_EXTENSION)
        if abort is None:  # not behind the hardened protocol (tests, other servers): nothing better to do
            raise
        log.info("batch results cut mid-stream: %s", exc.code)
        abort()


def batch_router(services: Services, store: BatchJobStore) -> APIRouter:
    router = APIRouter()
    settings = services.settings

    def caller(request: Request) -> tuple[Principal, str]:
        source = client_address(request, services)
        principal = authenticate_tenant(request, services.tenants, source)
        check_client_identity(request, services.registry.tenant(principal.tenant_id))
        return principal, source

    @router.post(BATCHES_PATH, status_code=202)
    async def submit_batch(request: Request) -> JSONResponse:
        principal, source = caller(request)  # the API key first, as on every route (wire-format.md)
        require_sealed_content_type(request)
        body = await read_body(request, settings.max_batch_body_bytes)
        call = CallContext(principal=principal, model="", path=BATCHES_PATH, source=source)
        job = await store.submit(call, body)
        return JSONResponse(
            {"batch_id": job.batch_id, "status": job.state.value},
            status_code=202,
            headers={"Location": f"{BATCHES_PATH}/{job.batch_id}"},
        )

    @router.get(BATCHES_PATH + "/{batch_id}")
    async def batch_status(batch_id: str, request: Request) -> JSONResponse:
        principal, _ = caller(request)
        job = await store.get(principal.tenant_id, batch_id)
        return JSONResponse(job.status_document())

    @router.get(BATCHES_PATH + "/{batch_id}/results")
    async def batch_results(batch_id: str, request: Request) -> Response:
        principal, _ = caller(request)
        size, pieces = await store.open_results(principal.tenant_id, batch_id)
        return StreamingResponse(
            cut_when_gone(pieces, request.scope), media_type=CONTENT_TYPE, headers={"Content-Length": str(size)}
        )

    @router.delete(BATCHES_PATH + "/{batch_id}")
    async def cancel_batch(batch_id: str, request: Request) -> JSONResponse:
        principal, _ = caller(request)
        job = await store.cancel(principal.tenant_id, batch_id)
        return JSONResponse(job.status_document())

    return router


def install_batch_routes(app: FastAPI, services: Services) -> BatchJobStore:
    """Add the batch routes and run the job store (its TTL reaper) inside the app's lifespan: it starts
    after the scheduler and is shut down — every job shredded — before the scheduler drains."""
    store = build_batch_store(services)
    # The routes themselves, not a nested router (FastAPI >= 0.16x keeps an included router as one opaque
    # entry in app.routes; route listings, like the OpenAPI test's, want the APIRoutes).
    app.router.routes.extend(batch_router(services, store).routes)
    app.state.batches = store
    services.extras["batches"] = store
    outer = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        async with outer(app_) as state:
            store.start()
            try:
                yield state
            finally:
                await store.close()

    app.router.lifespan_context = lifespan
    return store


# The OpenAPI overlay for server/openapi.py (`_OPERATIONS.update(BATCH_OPENAPI_OPERATIONS)`), same shape.
_JSON_STATUS: dict[str, Any] = {
    "type": "object",
    "required": ["batch_id", "status"],
    "properties": {
        "batch_id": {"type": "string"},
        "status": {
            "type": "string",
            "enum": ["queued", "running", "succeeded", "failed", "cancelled", "expired", "retrieved"],
        },
        "items": {
            "type": "object",
            "properties": {k: {"type": "integer"} for k in ("total", "completed", "failed", "pending")},
        },
        "created_at": {"type": "number"},
        "error": {"type": "object"},
    },
}
BATCH_OPENAPI_OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("post", BATCHES_PATH): {
        "summary": "Submit a sealed batch job (answers 202)",
        "description": 'The body is a sealed request (path /v1/batches, model "") whose payload is a batch '
        "document (docs/batches.md). Answers 202 with {batch_id, status}; the results are later "
        "sealed to this same request.",
        "security": True,
        "request": {
            "required": True,
            "description": "a sealed batch",
            "content": {CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        },
        "ok_status": 202,
        "ok": {"description": "accepted", "content": {"application/json": {"schema": _JSON_STATUS}}},
        "errors": (400, 401, 403, 404, 413, 415, 422, 429, 503),
    },
    ("get", BATCHES_PATH + "/{batch_id}"): {
        "summary": "A batch job's progress (counts only)",
        "security": True,
        "ok": {"description": "progress", "content": {"application/json": {"schema": _JSON_STATUS}}},
        "errors": (401, 403, 404),
    },
    ("get", BATCHES_PATH + "/{batch_id}/results"): {
        "summary": "The sealed results of a finished batch job; the job is shredded once they are sent",
        "security": True,
        "ok": {
            "description": "a sealed response",
            "content": {CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}},
        },
        "errors": (401, 403, 404, 409, 410, 503),
    },
    ("delete", BATCHES_PATH + "/{batch_id}"): {
        "summary": "Cancel a batch job and shred its data",
        "security": True,
        "ok": {"description": "the job's final status", "content": {"application/json": {"schema": _JSON_STATUS}}},
        "errors": (401, 403, 404, 410),
    },
}
