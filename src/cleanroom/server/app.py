"""The FastAPI app factory: routes of DESIGN §5 over a `Services` bundle.

Handlers do transport work only — size and type checks, authentication, moving the call off the event
loop — and hand the sealed bytes to `Runtime.handle`. Bodies are never logged.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from cleanroom import __version__
from cleanroom.crypto.sealed import CONTENT_TYPE
from cleanroom.errors import BadRequest, CleanroomError, PayloadTooLarge, UnsupportedMediaType
from cleanroom.runtime.session import CallContext
from cleanroom.server.auth import authenticate_tenant, require_admin
from cleanroom.server.errors import install_error_handlers
from cleanroom.server.services import Services


class CreateTenantBody(BaseModel):
    name: str = Field(min_length=1, max_length=63)
    weight: float = Field(1.0, gt=0, le=1000)
    allow: list[str] = Field(default_factory=list, max_length=256)


class UpdateTenantBody(BaseModel):
    weight: float | None = Field(None, gt=0, le=1000)
    allow: list[str] | None = Field(None, max_length=256)


class AddCredentialBody(BaseModel):
    label: str = Field("default", min_length=1, max_length=64)
    expires_in_s: float | None = Field(None, gt=0)


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
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != CONTENT_TYPE:
        raise UnsupportedMediaType(f"send sealed requests as Content-Type: {CONTENT_TYPE}")


def client_address(request: Request, services: Services) -> str:
    """The caller's address: the peer, or the forwarding header when the peer is a trusted proxy."""
    peer = request.client.host if request.client else ""
    return services.addresses.resolve(peer, request.headers.get(services.addresses.header))


def create_app(services: Services) -> FastAPI:
    app = FastAPI(title="cleanroom", version=__version__, docs_url=None, redoc_url=None)
    app.state.services = services
    app.state.metrics = services.metrics
    install_error_handlers(app)
    settings = services.settings
    metrics = services.metrics

    async def run_sealed(request: Request, model: str, path: str) -> Response:
        require_sealed_content_type(request)
        source = client_address(request, services)
        principal = authenticate_tenant(request, services.tenants, source)
        body = await read_body(request, settings.max_body_bytes)
        call = CallContext(principal=principal, model=model, path=path, source=source)
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            sealed = await asyncio.wait_for(
                loop.run_in_executor(services.executor, services.runtime.handle, call, body),
                timeout=settings.request_timeout_s)
        except CleanroomError as exc:
            metrics.requests.labels(tenant_id=principal.tenant_id, model=model or path, outcome=exc.code).inc()
            raise
        except TimeoutError:
            from cleanroom.errors import RequestTimeout

            raise RequestTimeout("the model did not answer in time") from None
        metrics.latency.labels(model=model or path).observe(time.perf_counter() - started)
        metrics.requests.labels(tenant_id=principal.tenant_id, model=model or path, outcome="ok").inc()
        return Response(content=bytes(sealed), media_type=CONTENT_TYPE)

    @app.post("/v1/models/{model}/infer")
    async def infer(model: str, request: Request) -> Response:
        services.models.get(model)  # 404 before reading a body for a model we do not serve
        return await run_sealed(request, model, "")

    @app.get("/v1/tenants/self/public-key")
    async def public_key(request: Request) -> JSONResponse:
        principal = authenticate_tenant(request, services.tenants, client_address(request, services))
        return JSONResponse(services.tenants.public_key(principal.tenant_id))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        ready: dict[str, Any] = {"status": "ready", "models": services.models.names(),
                                 "memory": {**services.allocator.describe(), "mlock": services.extras.get("mlock")},
                                 "hardening": services.extras.get("hardening", {})}
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

    # --- admin API: used by `cleanroom tenant ...` when this server runs on the data dir -----------
    @app.post("/v1/admin/tenants", status_code=201)
    async def admin_create_tenant(body: CreateTenantBody, request: Request) -> JSONResponse:
        require_admin(request, services.admin_token)
        created = await asyncio.to_thread(services.tenants.create, body.name, weight=body.weight,
                                          allow=body.allow)
        return JSONResponse(created.to_json(), status_code=201)

    @app.patch("/v1/admin/tenants/{name_or_id}")
    async def admin_update_tenant(name_or_id: str, body: UpdateTenantBody, request: Request) -> JSONResponse:
        require_admin(request, services.admin_token)
        updated = await asyncio.to_thread(services.tenants.update, name_or_id, weight=body.weight,
                                          allow=body.allow)
        return JSONResponse(updated)

    @app.get("/v1/admin/tenants/{name_or_id}/keys")
    async def admin_list_credentials(name_or_id: str, request: Request) -> JSONResponse:
        require_admin(request, services.admin_token)
        return JSONResponse({"credentials": services.tenants.list_credentials(name_or_id)})

    @app.post("/v1/admin/tenants/{name_or_id}/keys", status_code=201)
    async def admin_add_credential(name_or_id: str, body: AddCredentialBody, request: Request) -> JSONResponse:
        require_admin(request, services.admin_token)
        created = await asyncio.to_thread(services.tenants.add_credential, name_or_id, label=body.label,
                                          expires_in_s=body.expires_in_s)
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
        return JSONResponse({"deleted": tenant_id})

    @app.post("/v1/admin/keys/{action}")
    async def admin_keys(action: str, request: Request) -> JSONResponse:
        require_admin(request, services.admin_token)
        from cleanroom.admin_client import rotation_policy
        from cleanroom.keys.commands import key_action

        try:
            body = await request.json() if await request.body() else {}
        except ValueError:
            raise BadRequest("admin key actions take a JSON body", code="invalid_json") from None
        if not isinstance(body, dict):
            raise BadRequest("admin key actions take a JSON object", code="invalid_json")
        result = await asyncio.to_thread(key_action, services.keys, action, body, rotation_policy(settings))
        return JSONResponse(result)

    from cleanroom.server.openapi import install_openapi  # public schema: docs/openapi.json (server/openapi.py)

    install_openapi(app)
    return app
