"""`CleanroomMiddleware`: sealed requests and responses for any ASGI app (FastAPI, Starlette, ...).

    app = CleanroomMiddleware(app, data_dir="cleanroom-data")

For each protected path, a sealed POST is authenticated, opened into a SecureBuffer (every check and the audit
record of `RequestOpener` first), handed to the app as an ordinary body, and the app's response is sealed back
to the client (`Client.call(path, payload)` on the other side). Requests that are not sealed get 415, methods
other than POST 405 (the sealed request binds the path and query, not the method), and a websocket on a
protected path is closed before the app sees it (its frames cannot be sealed), and so is any scope type it
does not know (a RuntimeError); lifespan and unprotected paths pass straight through. A path is protected when
the path the app routes on (below `root_path`: a `Mount`, `--root-path`) or the full path starts with a
protected prefix, and is not exactly one of `open_paths` (probes; seal "/" and open those rather than list the
routes to seal). Only the status and the sealed body leave: the app's response headers would travel in clear
and are dropped. Query strings are bound, not encrypted: they are kept out of the host server's access log
(`asgi_logs`). The tenant's public key is served at `GET /v1/tenants/self/public-key`, as by `cleanroom
serve`.

Audit (invariant 5), as `cleanroom serve` runs a model: the decryption record is written to the log before
the payload is decrypted, its fdatasync runs while the app does, and the sealed answer (or any error built
after the decryption) leaves only once it is durable; if the fdatasync fails the answer is 503 and nothing
of the app's answer is sent. `audit_durable_before_app=True` waits for durability before the app starts
(for apps that carry data out of the process themselves), at one fdatasync wait per request.

Pure ASGI (no `BaseHTTPMiddleware`): configuration is checked in `__init__`, `__call__` adds one await on
the sealed path and none elsewhere. What it cannot do: the app receives its body as `bytes` (ASGI's type)
and builds its answer in its own memory; those copies are the app's, freed when the request ends and wiped
by the hardened allocator when the server runs under `cleanroom exec`.

Tenants and keys are managed with `cleanroom tenant ...` and `cleanroom keys ...` given the same
`--data-dir`, while the app runs: a middleware that builds its own Services serves the admin API (only
that) on the Unix socket `DATA_DIR/admin.sock` (0600) and names it in `DATA_DIR/server.json`, so those
commands act in this process, which holds the audit log and the key caches: a revocation refuses the very
next request. `admin_socket=False` turns that off; `close()` stops it and closes what the middleware built.

Several worker processes on one data dir (`uvicorn --workers N`, gunicorn): give each a unique
`worker_id=` (`f"web-{os.getpid()}"`). Each writes its own audit log under `DATA_DIR/workers/<id>/`
(`integrations.workers`), serves no admin socket, and claims request ids in the replay cache shared by
every process on the data dir (`runtime.replay_shared`), so a captured request replayed to another worker
is refused as it would be by the same one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import anyio

from cleanroom.config import Settings
from cleanroom.crypto.sealed import CONTENT_TYPE
from cleanroom.errors import (
    CleanroomError,
    ContextMismatch,
    RequestTimeout,
    UnsupportedMediaType,
)
from cleanroom.integrations.asgi_inner import ASGIApp, gather, run_app
from cleanroom.integrations.asgi_logs import guard_access_logs
from cleanroom.integrations.asgi_messages import (
    Receive,
    Scope,
    Send,
    bearer,
    header,
    read_body,
    send_json,
    single_header,
)
from cleanroom.integrations.workers import allocator_problems, build_worker_services
from cleanroom.memory.hardening import apply_process_hardening
from cleanroom.runtime.models import ModelRegistry
from cleanroom.runtime.session import CallContext, OpenedRequest, clear_exception_frames
from cleanroom.server.admin import AdminSocketPathTooLong, AdminSocketServer, refuse_if_served
from cleanroom.server.services import Services, build_services

PUBLIC_KEY_PATH = "/v1/tenants/self/public-key"
INLINE_SEAL_MAX_BYTES = 256 * 1024  # larger answers are sealed on a worker thread, off the event loop
# Statuses whose responses cannot carry a body (RFC 9110 §6.4.1, §15.3.6): the sealed answer always has one.
NO_BODY_STATUSES = frozenset({204, 205, 304})
# Scope types other than http handed to the app as they are (a websocket only on an unprotected path).
PASSED_SCOPE_TYPES = frozenset({"lifespan", "websocket"})
log = logging.getLogger("cleanroom.asgi")


class MethodNotAllowed(CleanroomError):
    """A protected path takes sealed POSTs only: the sealed request does not bind the method, so a proxy
    could otherwise replay a POST's sealed body as a DELETE to the same path."""

    status, code = 405, "method_not_allowed"

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "Allow": "POST"}


class CleanroomMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        data_dir: str | Path | None = None,
        settings: Settings | None = None,
        protected_paths: Sequence[str] = ("/",),
        open_paths: Sequence[str] = (),
        services: Services | None = None,
        inner_content_type: str | None = "application/json",
        audit_durable_before_app: bool = False,
        admin_socket: bool = True,
        worker_id: str | None = None,
    ) -> None:
        if settings is None:
            settings = Settings(data_dir=Path(data_dir)) if data_dir is not None else Settings()
        elif data_dir is not None:
            settings = settings.model_copy(update={"data_dir": Path(data_dir)})
        if not protected_paths or not all(p.startswith("/") for p in protected_paths):
            raise ValueError("protected_paths must be non-empty path prefixes starting with '/'")
        if not all(p.startswith("/") for p in open_paths):
            raise ValueError("open_paths must be exact paths starting with '/'")
        self.app = app
        self.settings = settings
        self.protected_paths = tuple(protected_paths)
        # Exact paths exempt from protection (probes), so that everything else can be protected with "/":
        # a list of sealed prefixes misses the routes it does not know (vLLM's `/v2/rerank`, routes to come).
        self.open_paths = frozenset(open_paths)
        # The outer Content-Type is the sealed media type; the app needs one for the opened body (FastAPI
        # >= 0.115 refuses to parse a JSON body model without it: 422 on every pydantic-bodied route).
        self.inner_content_type = inner_content_type
        # False (default): write-ahead, as `cleanroom serve` runs a model (record written before the
        # decryption, durable before the answer leaves). True: durable before the app sees the plaintext,
        # for apps that send data out of the process themselves; costs one fdatasync wait per request.
        self.audit_durable_before_app = audit_durable_before_app
        self._owns_services = services is None
        self._admin: AdminSocketServer | None = None
        guard_access_logs()  # the host server's access log would carry every query string in clear
        if services is not None:
            if worker_id is not None:
                raise ValueError("worker_id applies only to services the middleware builds")
            self.services = services  # the caller's: it manages them (and serves any admin API itself)
            return
        if worker_id is not None:
            # One of several processes on the data dir (`uvicorn --workers N`): its own audit log under
            # DATA_DIR/workers/<id>/, the shared replay cache; no admin socket (one per data dir).
            admin_socket = False
            self.services = build_worker_services(settings, worker_id, models=ModelRegistry({}))
        else:
            if admin_socket:
                refuse_if_served(settings.data_dir)  # a clear refusal, before the audit log's lock says less
            if "replay_shared" not in settings.model_fields_set:
                # One process holds this data dir (its audit log's lock): no other process can be replayed
                # to, so ids stay in memory unless asked otherwise. A claim on disk runs here on the event
                # loop: 0.14-0.22 ms a request on the dev VM, 12% of a 5 ms handler (overhead.py).
                settings = settings.model_copy(update={"replay_shared": False})
            self.services = build_services(settings, models=ModelRegistry({}))
        try:
            # Core dumps off and not dumpable inside the host server's process (`cleanroom exec` cannot
            # carry dumpability across execve; the allocator settings it does carry).
            apply_process_hardening(disable_core_dumps=settings.disable_core_dumps, not_dumpable=settings.not_dumpable)
            for problem in allocator_problems(os.environ):
                log.warning("cleanroom: %s", problem)
            if admin_socket:
                self._admin = start_admin_socket(self.services)
        except BaseException:
            self.services.close()  # the audit log's lock is not kept by a middleware that never existed
            raise

    def close(self) -> None:
        """Stop the admin socket (its socket file and server.json go, if still ours) and close the Services
        this middleware built (audit log, KMS). Services passed in are the caller's to close. Idempotent."""
        if self._admin is not None:
            self._admin.close()
        if self._owns_services:
            self.services.close()

    def _protects(self, scope: Scope) -> bool:
        """Whether the path is protected: the path the app routes on or the full one (see `route_path`),
        unless it is exactly one of `open_paths`."""
        routed, full = route_path(scope), scope["path"]
        if routed in self.open_paths or full in self.open_paths:
            return False
        return routed.startswith(self.protected_paths) or full.startswith(self.protected_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and self._protects(scope):
            # A websocket's frames cannot be sealed: passed through, the app would read unauthenticated
            # plaintext on a protected path. Closed before accepting (the server answers the handshake 403).
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            if scope["type"] not in PASSED_SCOPE_TYPES and ("path" not in scope or self._protects(scope)):
                # A scope type this middleware cannot seal (a server's own, a protocol to come): passed
                # through, the app would take unauthenticated traffic on a protected path. Fail closed.
                raise RuntimeError(
                    f"cleanroom: ASGI scope type {scope['type']!r} cannot be sealed; "
                    "CleanroomMiddleware passes only 'lifespan', and 'websocket' on unprotected paths"
                )
            await self.app(scope, receive, send)
            return
        if route_path(scope) == PUBLIC_KEY_PATH and scope["method"] == "GET":
            await self._public_key(scope, send)
            return
        if not self._protects(scope):
            await self.app(scope, receive, send)
            return
        try:
            await self._sealed(scope, receive, send)
        except CleanroomError as exc:
            # An app's own CleanroomError carries a traceback through `run_app`'s frame (the app's `bytes`
            # copy of the plaintext) and the app's frames; if one of them keeps the exception (a frame <->
            # exception cycle), those copies lived until a garbage collection. Cleared: they go with it.
            clear_exception_frames(exc)
            await send_json(send, exc.status, exc.to_body(), exc.headers())

    async def _run_and_seal(
        self, scope: Scope, receive: Receive, request: OpenedRequest
    ) -> tuple[int, list[tuple[bytes, bytes]], bytearray]:
        """Hand the app the plaintext, collect its answer and seal it; the sealed answer is returned only
        once the decryption record is durable (if that fails: 503, the sealed answer never exists)."""
        plaintext = bytes(request.payload.view())  # ASGI bodies are bytes: the app's own copy
        try:
            status, headers, chunks = await run_app(
                self.app, scope, plaintext, self.inner_content_type, disconnected=receive
            )
        finally:
            del plaintext
        # A one-chunk answer (the usual case) is sealed straight from the app's own `bytes`: copying it
        # into a SecureBuffer first would add a copy and leave the chunk where it was. Several chunks
        # are gathered into a SecureBuffer (zeroed with the request), never into another `bytes`.
        answer: bytes | memoryview = chunks[0] if len(chunks) == 1 else gather(chunks, request.scope)
        chunks.clear()
        try:
            if len(answer) <= INLINE_SEAL_MAX_BYTES:
                # AES-GCM runs at >1 GB/s: a small answer seals in microseconds, less than a hop to a
                # worker thread and back (measured ~0.1-0.3 ms on the 2-core dev box). The record is usually
                # durable by now (its fdatasync ran while the app did), so `seal` does not block the loop.
                await wait_durable(request)
                sealed = request.seal(answer)
            else:  # sealed while the fdatasync may still run; `seal` waits, and zeroes the answer if it failed
                sealed = await anyio.to_thread.run_sync(request.seal, answer)
        finally:
            del answer
        return status, headers, sealed

    def _source(self, scope: Scope) -> str:
        """The caller's address (the peer, or the forwarding header from a trusted proxy), for allowlists."""
        client = scope.get("client")
        resolver = self.services.addresses
        return resolver.resolve(client[0] if client else "", header(scope, resolver.header.encode()) or None)

    async def _public_key(self, scope: Scope, send: Send) -> None:
        try:
            principal = self.services.tenants.authenticate(bearer(scope), source=self._source(scope))
            await send_json(send, 200, self.services.tenants.public_key(principal.tenant_id))
        except CleanroomError as exc:
            await send_json(send, exc.status, exc.to_body(), exc.headers())

    async def _sealed(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":  # `Client.call` POSTs; the method is not in the sealed metadata
            raise MethodNotAllowed(f"this route takes sealed requests, POSTed ({CONTENT_TYPE})")
        source = self._source(scope)
        principal = self.services.tenants.authenticate(bearer(scope), source=source)  # the API key first
        if single_header(scope, b"content-type").split(";")[0].strip().lower() != CONTENT_TYPE:
            raise UnsupportedMediaType(f"this route takes sealed requests ({CONTENT_TYPE})")
        try:
            # The host server may have no body deadline (uvicorn has none): a client trickling its body
            # would hold the request open for good. `cleanroom serve` answers the same 408.
            with anyio.fail_after(self.settings.body_timeout_s):
                body = await read_body(receive, self.settings.max_body_bytes)
        except TimeoutError:
            raise RequestTimeout(
                f"the request body did not arrive within {self.settings.body_timeout_s:g} s",
                code="request_body_timeout",
            ) from None
        call = CallContext(principal=principal, model="", path=sealed_path(scope), source=source)
        with self.services.runtime.opener.open(call, body, write_ahead=True) as request:
            if self.audit_durable_before_app:
                await wait_durable(request)  # strict mode: the record is durable before the app starts
            else:
                # Write-ahead, as `cleanroom serve` runs a model: the record is in the log (it survives a
                # process crash) and its fdatasync runs while the app does; nothing leaves before it has
                # succeeded (below), and a failed one answers 503 with nothing sent.
                request.start_sync()
            try:
                status, _app_headers, sealed = await self._run_and_seal(scope, receive, request)
            finally:
                # Whatever leaves (the sealed answer, or an error built after the decryption) leaves only
                # once the record is durable; waited here off the event loop, so that leaving `open`
                # (which checks again) never blocks it. A failure replaces the error: 503.
                await wait_durable(request)
        # The app's headers are not sealed: one derived from the payload (a Location, a cookie, an id) would
        # cross a TLS-terminating proxy in clear, and its framing headers (Content-Encoding,
        # Transfer-Encoding) would contradict the sealed body. Only the status and the sealed body leave; a
        # status that cannot carry a body (204, 304, 1xx) becomes 200, or the server could not send it.
        if status < 200 or status in NO_BODY_STATUSES:
            status = 200
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", CONTENT_TYPE.encode()),
                    (b"content-length", str(len(sealed)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": bytes(sealed), "more_body": False})


def route_path(scope: Scope) -> str:
    """The path the app routes on: below `root_path` when the full path starts with it (Starlette's
    `get_route_path`; a `Mount` or `uvicorn --root-path` puts the prefix in both)."""
    path: str = scope["path"]
    root: str = scope.get("root_path") or ""
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("/", ""):
        return path[len(root) :]
    return path


def sealed_path(scope: Scope) -> str:
    """What the sealed request must have been sealed for: the full path and, when there is one, the query
    string (`Client.call("/v1/x?a=1", ...)`), so that a proxy can neither add nor strip a query."""
    path = str(scope["path"])
    if "?" in path:
        # An encoded '?' (%3F) in the path: "/v1/x%3Fa=1" decodes to what a request sealed for path "/v1/x"
        # and query "a=1" binds, and the app would route it elsewhere. `Client.call` never sends one.
        raise ContextMismatch("a path holding an encoded '?' cannot be bound to a sealed request")
    query = bytes(scope.get("query_string") or b"").decode("latin-1")
    return f"{path}?{query}" if query else path


def start_admin_socket(services: Services) -> AdminSocketServer | None:
    """The admin API on DATA_DIR/admin.sock, or None (logged) where the path is too long for a socket."""
    try:
        return AdminSocketServer(services)
    except AdminSocketPathTooLong as exc:
        log.warning("cleanroom: no admin socket (%s); `tenant` and `keys` commands need the app stopped", exc)
        return None


async def wait_durable(request: OpenedRequest) -> None:
    """Return once the request's decryption record is durable (AuditUnavailable, 503, if it never will be);
    a thread hop only when it is not durable yet (the hop costs ~0.1-0.3 ms on the 2-core dev box)."""
    if not request.is_durable():
        await anyio.to_thread.run_sync(request.wait_durable)
