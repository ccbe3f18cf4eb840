"""Ray Serve: cleanroom's request core in every replica, with tenant-affinity routing.

    from ray import serve
    from cleanroom.integrations.ray_serve import cleanroom_app

    app = cleanroom_app(num_replicas=2, settings={"data_dir": "/shared/cleanroom-data", "models": ["echo"]},
                        env={"CLEANROOM_KMS": "vault", "CLEANROOM_VAULT_ADDR": ..., "CLEANROOM_VAULT_TOKEN": ...})
    serve.run(app, route_prefix="/cleanroom")

Each replica is a whole cleanroom runtime (`build_services`): sealed bytes in, sealed bytes out, the same
routes as `cleanroom serve` (`POST …/v1/models/{model}/infer`, `GET …/v1/tenants/self/public-key`,
`GET …/healthz`), and `handle_sealed` for `DeploymentHandle` callers.

Tenant affinity: the tenant id is the Serve *multiplexed model id*. Clients send the header
`serve_multiplexed_model_id: <tenant id>` (`routing_headers`), or call the handle with
`.options(multiplexed_model_id=tenant_id)`. Serve then routes a tenant's requests to the replica that has
that tenant "loaded" (`TenantSlot`: its HPKE key unwrapped through the KMS); at most `tenants_per_replica`
are loaded, evicted LRU, and an eviction purges the tenant's cached keys. Inside a replica, `TenantTurns`
orders queued requests so the device stays with one tenant while it has work waiting: fewer tenant
switches, so fewer between-tenant scrubs. The header is only a routing hint: a request is served under
the tenant of its API key, and a hint naming another tenant is refused (400 `tenant_routing_mismatch`).

Shared state: replicas share the key hierarchy through a real KMS (`CLEANROOM_KMS=vault` and OpenBao or
Vault), the tenant registry through a shared data dir, and the replay cache in it (`DATA_DIR/replay/`,
`runtime.replay_shared`): the first replica to accept a request id claims it there, and the same sealed
request sent to any other replica is refused (400 `replayed_request`), as one replica refuses its own.
Replicas on several hosts need the data dir on a filesystem with atomic exclusive create (NFSv3 or later)
and clocks within a minute of each other. `replay_shared=False` keeps each replica's ids in its own memory
(a captured request can then be replayed once to each other replica). Each replica writes its own audit
log under `DATA_DIR/workers/<replica id>/audit/` (an audit log has one writer; `integrations.workers`).

Hardening: `cleanroom exec` cannot wrap a Ray worker, so `replica_runtime_env` puts the allocator settings
into the replica's `runtime_env` (Ray sets them before the worker's interpreter starts) and each replica
turns off core dumps and dumpability for itself at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from cleanroom.config import Settings
from cleanroom.crypto.sealed import CONTENT_TYPE
from cleanroom.errors import (
    BadRequest,
    CleanroomError,
    ConfigurationError,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    Unauthenticated,
    UnsupportedMediaType,
)
from cleanroom.integrations.ray_tenancy import TenantSlot, TenantTurns
from cleanroom.runtime.session import CallContext

try:
    from ray import serve
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ConfigurationError("the Ray Serve integration needs the `ray` extra: pip install 'cleanroom[ray]'") from exc

if TYPE_CHECKING:
    from cleanroom.server.services import Services

log = logging.getLogger("cleanroom.ray_serve")

TENANT_HEADER = "serve_multiplexed_model_id"
_INFER_RE = re.compile(r"/v1/models/(?P<model>[A-Za-z0-9._-]{1,128})/infer$")
_PUBLIC_KEY_SUFFIX = "/v1/tenants/self/public-key"


def routing_headers(tenant_id: str) -> dict[str, str]:
    """The header that routes a request to a replica that already serves `tenant_id`."""
    return {TENANT_HEADER: tenant_id}


def replica_runtime_env(
    env: Mapping[str, str] | None = None, *, harden_allocator: bool = True, perturb_byte: int = 0xA5
) -> dict[str, Any]:
    """A Ray `runtime_env` for replicas: `env` plus, by default, the hardened allocator of `cleanroom exec`.

    Ray applies `env_vars` before the worker's interpreter starts, which is when `PYTHONMALLOC` and
    `GLIBC_TUNABLES` are read (DESIGN §4). `runtime_env` is stored in Ray's GCS: prefer the nodes' own
    environment for secrets such as `CLEANROOM_VAULT_TOKEN`.
    """
    from cleanroom.memory.hardening import hardened_environ

    env_vars = dict(env or {})
    if harden_allocator:
        hardened = hardened_environ({}, perturb_byte)
        env_vars.update({k: hardened[k] for k in ("PYTHONMALLOC", "GLIBC_TUNABLES", "CLEANROOM_ALLOCATOR_HARDENED")})
    return {"env_vars": env_vars}


@dataclass
class ReplicaStats:
    """What a replica reports about itself (`stats`): counts only, never tenant data beyond ids."""

    replica_id: str
    pid: int
    allocator_hardened: bool  # the environment asks for it
    python_allocator: str  # what the interpreter really uses ("malloc" when hardened)
    requests: int = 0
    tenant_switches: int = 0
    slot_loads: int = 0
    slot_evictions: int = 0
    loaded_tenants: list[str] = field(default_factory=list)
    requests_by_tenant: dict[str, int] = field(default_factory=dict)
    errors_by_code: dict[str, int] = field(default_factory=dict)


def current_replica_id() -> str:
    try:
        context = serve.get_replica_context()
        return f"{context.deployment}-{context.replica_id.unique_id}"
    except Exception:  # outside a replica (unit tests): still unique per process
        return f"local-{os.getpid()}"


class CleanroomReplica:
    """The body of the Serve deployment (`cleanroom_app` wraps it); one full cleanroom runtime per replica."""

    def __init__(
        self, settings: Mapping[str, Any] | None = None, *, tenants_per_replica: int = 2, max_consecutive: int = 8
    ) -> None:
        from cleanroom.integrations.workers import build_worker_services, python_allocator
        from cleanroom.memory.hardening import allocator_hardened, apply_process_hardening

        self.settings = Settings(**dict(settings or {}))
        apply_process_hardening(
            disable_core_dumps=self.settings.disable_core_dumps, not_dumpable=self.settings.not_dumpable
        )
        self.replica_id = current_replica_id()
        self.services: Services = build_worker_services(self.settings, self.replica_id)
        self.services.runtime.on_tenant_switch = self._on_tenant_switch
        self.turns = TenantTurns(max_consecutive)
        self._stats = ReplicaStats(self.replica_id, os.getpid(), allocator_hardened(), python_allocator())
        self._loaded: dict[str, None] = {}

        async def load_tenant(tenant_id: str) -> TenantSlot:
            return await self._load_slot(tenant_id)

        # Serve's multiplexing, keyed by tenant: routing prefers replicas that list the tenant as loaded.
        self.tenant_slot = serve.multiplexed(max_num_models_per_replica=tenants_per_replica)(load_tenant)
        self._closed = False

    # --- tenant slots -----------------------------------------------------------------------------
    async def _load_slot(self, tenant_id: str) -> TenantSlot:
        services = self.services

        def warm() -> None:
            services.registry.refresh()
            tenant = services.registry.tenant(tenant_id)
            services.keyring.hpke_private_key(tenant, tenant["current_key_id"])

        await asyncio.get_running_loop().run_in_executor(services.executor, warm)
        self._stats.slot_loads += 1
        self._loaded[tenant_id] = None
        return TenantSlot(tenant_id, services.keyring, self._on_slot_released)

    def _on_slot_released(self, tenant_id: str) -> None:
        self._stats.slot_evictions += 1
        self._loaded.pop(tenant_id, None)

    def _on_tenant_switch(self, previous_tenant: str | None, next_tenant: str) -> None:
        if previous_tenant is not None:
            self._stats.tenant_switches += 1

    # --- requests -------------------------------------------------------------------------------
    async def handle_sealed(
        self, model: str, api_key: str, body: bytes, source: str | None = None
    ) -> tuple[int, bytes]:
        """For `DeploymentHandle` callers: (200, sealed response) or (4xx/5xx, JSON error body); never
        raises across Ray (an exception's text could quote payload bytes). Arguments come from any caller
        holding the handle: checked here as the HTTP route checks its request (types, size), 4xx not 500."""
        try:
            if not isinstance(model, str):
                raise NotFound("the model name must be a string")
            if not isinstance(api_key, str):
                raise Unauthenticated("the API key must be a string (`cr_...`)")
            if not isinstance(body, bytes | bytearray | memoryview):
                raise BadRequest("the sealed request must be bytes", code="invalid_body")
            if len(body) > self.settings.max_body_bytes:
                raise PayloadTooLarge(
                    f"the sealed request is larger than the {self.settings.max_body_bytes}-byte limit"
                )
            return 200, await self._run(model, api_key, bytes(body), source if isinstance(source, str) else None)
        except Exception as exc:
            status, document = self._error(exc)
            del exc
            return status, document

    async def __call__(self, request: Request) -> Response:
        try:
            path = request.url.path
            if request.method == "GET" and path.endswith("/healthz"):
                return Response(_json({"status": "ok"}), media_type="application/json")
            api_key = _bearer(request.headers.get("authorization", ""))
            source = request.client.host if request.client else None
            if request.method == "GET" and path.endswith(_PUBLIC_KEY_SUFFIX):
                principal = self.services.tenants.authenticate(api_key, source)
                document = self.services.tenants.public_key(principal.tenant_id)
                return Response(_json(document), media_type="application/json")
            match = _INFER_RE.search(path)
            if request.method != "POST" or match is None:
                raise NotFound(
                    "this deployment serves POST …/v1/models/{model}/infer and GET …/v1/tenants/self/public-key"
                )
            if request.headers.get("content-type", "").split(";")[0].strip().lower() != CONTENT_TYPE:
                raise UnsupportedMediaType(f"send sealed requests as Content-Type: {CONTENT_TYPE}")
            body = await _read_body(request, self.settings.max_body_bytes)
            sealed = await self._run(match["model"], api_key, body, source)
            return Response(sealed, media_type=CONTENT_TYPE)
        except Exception as exc:
            headers = exc.headers() if isinstance(exc, CleanroomError) else {}
            status, error_body = self._error(exc)
            del exc
            return Response(error_body, status_code=status, headers=headers, media_type="application/json")

    def _error(self, exc: Exception) -> tuple[int, bytes]:
        """Status and JSON body for a failure; anything but a CleanroomError is a bug, reported by type."""
        if isinstance(exc, CleanroomError):
            self._count_error(exc.code)
            return exc.status, _json(exc.to_body())
        log.error("unexpected %s in a cleanroom replica", type(exc).__name__)
        self._count_error("internal_error")
        return 500, _json({"error": {"code": "internal_error", "message": "the replica failed unexpectedly"}})

    async def _run(self, model: str, api_key: str, body: bytes, source: str | None) -> bytes:
        services = self.services
        services.models.get(model)  # 404 before any key work for a model this replica does not serve
        principal = services.tenants.authenticate(api_key, source)
        hint = serve.get_multiplexed_model_id()
        if hint:
            if hint != principal.tenant_id:
                raise BadRequest(
                    f"the {TENANT_HEADER} header must be the tenant id of the API key", code="tenant_routing_mismatch"
                )
            await self.tenant_slot(hint)
        call = CallContext(principal=principal, model=model, source=source or "")
        loop = asyncio.get_running_loop()
        async with self.turns.turn(principal.tenant_id):
            try:
                sealed = await asyncio.wait_for(
                    loop.run_in_executor(services.executor, services.runtime.handle, call, body),
                    timeout=self.settings.request_timeout_s,
                )
            except TimeoutError:
                raise RequestTimeout("the model did not answer in time") from None
        self._stats.requests += 1
        counts = self._stats.requests_by_tenant
        counts[principal.tenant_id] = counts.get(principal.tenant_id, 0) + 1
        return bytes(sealed)

    def _count_error(self, code: str) -> None:
        self._stats.errors_by_code[code] = self._stats.errors_by_code.get(code, 0) + 1

    # --- introspection and shutdown -------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """This replica's counters: requests, tenant switches (each one a between-tenant scrub), slots."""
        self._stats.loaded_tenants = list(self._loaded)
        return asdict(self._stats)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.services.close()

    def __del__(self) -> None:
        # Serve's shutdown hook for a replica is `__del__`; `close` is idempotent.
        with contextlib.suppress(Exception):
            self.close()


def cleanroom_app(
    *,
    settings: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    num_replicas: int = 2,
    tenants_per_replica: int = 2,
    max_consecutive: int = 8,
    harden_allocator: bool = True,
    ray_actor_options: Mapping[str, Any] | None = None,
    name: str = "cleanroom",
    **deployment_options: Any,
) -> Any:
    """A bound Serve application of `num_replicas` cleanroom replicas (pass it to `serve.run`).

    `settings` are `Settings` fields for every replica (not secrets: they travel in the deployment);
    `env` becomes the replicas' environment (`CLEANROOM_*` variables are read by `Settings` there);
    `ray_actor_options` adds to the replicas' options (e.g. `{"num_gpus": 1}`).
    """
    unknown = set(settings or {}) - set(Settings.model_fields)
    if unknown:
        raise ConfigurationError(f"unknown cleanroom settings: {', '.join(sorted(unknown))}")
    if num_replicas < 1 or tenants_per_replica < 1:
        raise ConfigurationError("num_replicas and tenants_per_replica must be at least 1")
    options: dict[str, Any] = {"num_cpus": 1, **dict(ray_actor_options or {})}
    runtime_env = dict(options.pop("runtime_env", {}) or {})
    hardened = replica_runtime_env(
        {**runtime_env.pop("env_vars", {}), **dict(env or {})}, harden_allocator=harden_allocator
    )
    options["runtime_env"] = {**runtime_env, **hardened}
    deployment = serve.deployment(
        name=name, num_replicas=num_replicas, ray_actor_options=options, **deployment_options
    )(CleanroomReplica)
    return deployment.bind(
        dict(settings or {}), tenants_per_replica=tenants_per_replica, max_consecutive=max_consecutive
    )


def _bearer(value: str) -> str:
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send the API key as `Authorization: Bearer cr_...`")
    return token.strip()


async def _read_body(request: Request, limit_bytes: int) -> bytes:
    from cleanroom.integrations.asgi_messages import read_body

    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit_bytes:
        raise PayloadTooLarge(f"request body is larger than the {limit_bytes}-byte limit")
    return await read_body(request.receive, limit_bytes)


def _json(document: Any) -> bytes:
    import json

    return json.dumps(document).encode()


__all__ = [
    "TENANT_HEADER",
    "CleanroomReplica",
    "ReplicaStats",
    "TenantSlot",
    "TenantTurns",
    "cleanroom_app",
    "replica_runtime_env",
    "routing_headers",
]
