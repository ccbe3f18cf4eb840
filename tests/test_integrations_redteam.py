"""Red team of the embedding integrations: the ASGI middleware, the Triton model, the Ray Serve replica and
`cleanroom exec`, attacked with hostile transports, hostile apps and hostile callers.

The promise under attack: a sealed request is opened before the app sees it and only for the request's
lifetime, the app's answer leaves sealed (nothing of it in clear), bad input is a 4xx JSON error (never a
500, never the app seeing bytes that were not authenticated for exactly that call), and traffic the
middleware cannot seal is refused rather than let through. ASGI attacks are driven in process with a raw
ASGI driver (exact control over messages, chunking, disconnects, scope fields); no server is started.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route

from cleanroom.client import Client
from cleanroom.config import Settings
from cleanroom.crypto.sealed import CONTENT_TYPE
from cleanroom.integrations.asgi import CleanroomMiddleware
from cleanroom.runtime.models import ModelRegistry
from cleanroom.server.services import Services, build_services
from support.fake_triton import FAKE_PB_UTILS, FakeRequest, one
from support.server import REPO, server_env

Message = dict[str, Any]


# --- a raw ASGI driver ------------------------------------------------------------------------------
def http_scope(
    path: str,
    *,
    method: str = "POST",
    api_key: str | None = None,
    sealed: bool = True,
    query: bytes = b"",
    root_path: str = "",
    extensions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    headers = [(b"host", b"testserver")]
    if api_key is not None:
        headers.append((b"authorization", f"Bearer {api_key}".encode()))
    headers.append((b"content-type", CONTENT_TYPE.encode() if sealed else b"application/json"))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": root_path,
        "headers": headers,
        "client": ("203.0.113.5", 50000),
        "server": ("testserver", 80),
        "extensions": extensions or {},
    }


@dataclass
class Answer:
    sent: list[Message]

    @property
    def start(self) -> Message:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        assert len(starts) == 1, self.sent
        return starts[0]

    @property
    def status(self) -> int:
        return int(self.start["status"])

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(bytes(k), bytes(v)) for k, v in self.start["headers"]]

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")

    def error_code(self) -> str:
        return str(json.loads(self.body)["error"]["code"])


def drive(
    app: Any,
    scope: dict[str, Any],
    body: bytes = b"",
    *,
    chunk_bytes: int | None = None,
    after_body: str = "block",
    timeout_s: float = 10.0,
) -> Answer:
    """Call `app` once: `body` in `http.request` messages of `chunk_bytes` (one message if None), then
    `after_body`: "block" (a client that stays connected), "disconnect", or "stall" before the last chunk."""
    size = chunk_bytes or max(len(body), 1)
    count = max(1, -(-len(body) // size))  # pieces made one at a time: a list of them would be counted
    sent: list[Message] = []
    index = 0

    async def receive() -> Message:
        nonlocal index
        if after_body == "stall" and index == count - 1:
            await anyio.sleep_forever()
        if index < count:
            index += 1
            piece = body[(index - 1) * size : index * size]
            return {"type": "http.request", "body": piece, "more_body": index < count}
        if after_body == "disconnect":
            return {"type": "http.disconnect"}
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    async def main() -> None:
        with anyio.fail_after(timeout_s):
            await app(scope, receive, send)

    anyio.run(main)
    return Answer(sent)


# --- apps behind the middleware -----------------------------------------------------------------------
@dataclass
class Seen:
    """What the app behind the middleware was handed: one entry per call."""

    calls: list[dict[str, Any]] = field(default_factory=list)


def recording_app(seen: Seen, answer: bytes = b'{"ok": true}', headers: list[tuple[bytes, bytes]] | None = None) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            seen.calls.append({"type": "lifespan", "message": message["type"]})
            await send({"type": "lifespan.startup.complete"})
            return
        if scope["type"] == "websocket":
            seen.calls.append({"type": "websocket", "path": scope["path"]})
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            message = await receive()
            seen.calls.append({"type": "websocket", "text": message.get("text")})
            await send({"type": "websocket.close", "code": 1000})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen.calls.append(
            {
                "type": "http",
                "method": scope["method"],
                "path": scope["path"],
                "query": scope["query_string"],
                "body": body,
                "extensions": dict(scope.get("extensions") or {}),
            }
        )
        await send({"type": "http.response.start", "status": 200, "headers": headers or []})
        await send({"type": "http.response.body", "body": answer})

    return app


@dataclass
class Stack:
    services: Services
    api_key: str
    client: Client
    audit: Any

    def seal(self, path: str, payload: bytes) -> Any:
        return self.client.seal_request("", payload, path=path)

    def middleware(self, app: Any, **options: Any) -> CleanroomMiddleware:
        options.setdefault("protected_paths", ("/v1/",))
        return CleanroomMiddleware(app, settings=self.services.settings, services=self.services, **options)


@pytest.fixture
def stack(data_dir: Path, memory_audit: Any) -> Iterator[Stack]:
    services = build_services(Settings(data_dir=data_dir), audit=memory_audit, models=ModelRegistry({}))
    created = services.tenants.create("shop")
    client = Client("http://unused", api_key=created.api_key, public_key=created.public_key)
    try:
        yield Stack(services, created.api_key, client, memory_audit)
    finally:
        client.close()
        services.close()


def decryptions(stack: Stack) -> int:
    return sum(1 for e in stack.audit.events if e["event"] == "decrypt.request_key")


# --- ASGI: scopes other than http -------------------------------------------------------------------
def test_websocket_on_a_protected_path_is_refused_and_lifespan_passes(stack: Stack) -> None:
    """A websocket cannot be sealed: on a protected path it would hand the app unauthenticated plaintext
    (the frames), so it is closed before the app sees it. Lifespan and open paths pass through."""
    seen = Seen()
    app = stack.middleware(recording_app(seen))
    sent: list[Message] = []
    incoming = [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "plain secret"}]

    async def receive() -> Message:
        if incoming:
            return incoming.pop(0)
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/v1/stream", "headers": [], "query_string": b"", "root_path": ""}
    anyio.run(app, scope, receive, send)
    assert seen.calls == []  # the app never saw the connection, let alone the frame
    assert sent == [{"type": "websocket.close", "code": 1008}]

    incoming[:] = [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "hello"}]
    anyio.run(app, {**scope, "path": "/open/stream"}, receive, send)
    assert [c.get("path") or c.get("text") for c in seen.calls] == ["/open/stream", "hello"]

    incoming[:] = [{"type": "lifespan.startup"}]
    anyio.run(app, {"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert seen.calls[-1] == {"type": "lifespan", "message": "lifespan.startup"}


# --- ASGI: the sealed request binds method, path and query ------------------------------------------
@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "GET", "HEAD", "OPTIONS"])
def test_a_sealed_body_cannot_be_replayed_under_another_method(stack: Stack, method: str) -> None:
    """`Client.call` always POSTs and the sealed metadata does not name the method: a proxy that turns the
    POST into a DELETE must not reach the app's DELETE handler with an authenticated body."""
    seen = Seen()
    app = stack.middleware(recording_app(seen))
    sealed = stack.seal("/v1/items", b'{"id": 7}')
    refused = drive(app, http_scope("/v1/items", method=method, api_key=stack.api_key), sealed.body)
    assert refused.status == 405 and refused.error_code() == "method_not_allowed"
    assert (b"allow", b"POST") in refused.headers
    assert seen.calls == [] and decryptions(stack) == 0  # refused before anything was opened
    ok = drive(app, http_scope("/v1/items", api_key=stack.api_key), sealed.body)  # the genuine POST still works
    assert ok.status == 200 and sealed.open_response(ok.body) == b'{"ok": true}'
    assert seen.calls[0]["body"] == b'{"id": 7}'


def test_the_query_string_is_bound_to_the_sealed_request(stack: Stack) -> None:
    """A proxy that appends `?dry_run=false` (or strips a query) must not get the app to act on it."""
    seen = Seen()
    app = stack.middleware(recording_app(seen))
    sealed = stack.seal("/v1/transfer", b'{"amount": 1}')
    moved = drive(app, http_scope("/v1/transfer", api_key=stack.api_key, query=b"dry_run=false"), sealed.body)
    assert moved.status == 400 and moved.error_code() == "context_mismatch"
    assert seen.calls == []
    # A query the client sealed (`Client.call("/v1/transfer?dry_run=true", ...)`) is accepted as sealed ...
    bound = stack.seal("/v1/transfer?dry_run=true", b'{"amount": 2}')
    ok = drive(app, http_scope("/v1/transfer", api_key=stack.api_key, query=b"dry_run=true"), bound.body)
    assert ok.status == 200 and seen.calls[0]["query"] == b"dry_run=true"
    # ... and stripping it is refused as well.
    again = stack.seal("/v1/transfer?dry_run=true", b'{"amount": 3}')
    stripped = drive(app, http_scope("/v1/transfer", api_key=stack.api_key), again.body)
    assert stripped.status == 400 and stripped.error_code() == "context_mismatch" and len(seen.calls) == 1
    # An encoded '?' moves the query into the path ("/v1/transfer%3Fdry_run=true" decodes to the string the
    # client sealed): the app would route "/v1/transfer?dry_run=true" as a path, without the query.
    moved_in = stack.seal("/v1/transfer?dry_run=true", b'{"amount": 4}')
    encoded = drive(app, http_scope("/v1/transfer?dry_run=true", api_key=stack.api_key), moved_in.body)
    assert encoded.status == 400 and encoded.error_code() == "context_mismatch" and len(seen.calls) == 1


def test_a_mount_or_root_path_does_not_unprotect_the_app(stack: Stack) -> None:
    """Under `Mount("/api", ...)` (or `uvicorn --root-path /api`) the scope's path is "/api/v1/...", while
    the app routes on the path below the root ("/v1/..."): protection must follow what the app routes on."""
    handled: list[bytes] = []

    async def echo(request: Request) -> JSONResponse:
        handled.append(await request.body())
        return JSONResponse({"ok": True})

    inner = Starlette(routes=[Route("/v1/echo", echo, methods=["POST"])])
    outer = Starlette(routes=[Mount("/api", app=stack.middleware(inner))])
    plain = drive(outer, http_scope("/api/v1/echo", api_key=stack.api_key, sealed=False), b'{"text": "unsealed"}')
    assert plain.status == 415 and handled == []  # no plaintext reached the handler
    scope = http_scope("/api/v1/echo", api_key=stack.api_key, sealed=False, root_path="/api")
    direct = drive(stack.middleware(inner), scope, b"{}")
    assert direct.status == 415 and handled == []
    # The client seals what it calls, the full path.
    sealed = stack.seal("/api/v1/echo", b'{"text": "sealed"}')
    ok = drive(outer, http_scope("/api/v1/echo", api_key=stack.api_key), sealed.body)
    assert ok.status == 200 and handled == [b'{"text": "sealed"}']
    key = drive(outer, http_scope("/api/v1/tenants/self/public-key", method="GET", api_key=stack.api_key))
    assert key.status == 200 and "public_key" in json.loads(key.body)


def test_path_tricks_do_not_reach_a_protected_handler(stack: Stack) -> None:
    handled: list[bytes] = []

    async def echo(request: Request) -> JSONResponse:
        handled.append(await request.body())
        return JSONResponse({"ok": True})

    app = stack.middleware(Starlette(routes=[Route("/v1/echo", echo, methods=["POST"])]))
    for path in ("/open/../v1/echo", "//v1/echo", "/V1/echo", "/v1/echo/", "/v1"):
        answer = drive(app, http_scope(path, sealed=False), b'{"text": "unsealed"}')
        assert answer.status in (401, 404, 415), (path, answer.status)
    assert handled == []


def test_the_vllm_example_seals_every_route_but_its_probes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example listed vLLM's prompt-carrying routes and missed `/v2/rerank` (vLLM serves `/rerank`,
    `/v1/rerank` and `/v2/rerank`): plaintext documents went to it from anyone. Now only probes are open."""
    from examples.vllm.cleanroom_vllm import VLLMCleanroomMiddleware

    monkeypatch.setenv("CLEANROOM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CLEANROOM_NOT_DUMPABLE", "false")
    handled: list[str] = []

    async def route(request: Request) -> JSONResponse:
        handled.append(request.url.path)
        await request.body()
        return JSONResponse({"ok": True})

    paths = ("/v2/rerank", "/v1/chat/completions", "/health", "/metrics", "/version", "/docs", "/generate")
    app = VLLMCleanroomMiddleware(Starlette(routes=[Route(p, route, methods=["GET", "POST"]) for p in paths]))
    try:
        api_key = app.services.tenants.create("shop").api_key
        for path in ("/v2/rerank", "/v1/chat/completions", "/generate"):
            body = b'{"query": "plaintext", "documents": ["secret"]}'
            answer = drive(app, http_scope(path, api_key=api_key, sealed=False), body)
            assert answer.status == 415, path
        assert drive(app, http_scope("/docs", method="GET")).status == 405
        for probe in ("/health", "/metrics", "/version"):
            assert drive(app, http_scope(probe, method="GET", sealed=False)).status == 200
        assert handled == ["/health", "/metrics", "/version"]
    finally:
        app.close()


def test_a_middleware_outside_cleanroom_exec_or_under_a_preloaded_allocator_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The app's copies of the plaintext are wiped only by `cleanroom exec`'s allocator; started without it
    (or with jemalloc preloaded over it), the middleware served silently. Now it warns at start-up."""
    import logging

    from cleanroom.integrations.workers import allocator_problems
    from cleanroom.memory.hardening import hardened_environ

    assert allocator_problems(hardened_environ({})) == []
    preloaded = allocator_problems(hardened_environ({"LD_PRELOAD": "/usr/lib/libjemalloc.so.2 libfoo.so"}))
    assert len(preloaded) == 1 and "libjemalloc.so.2" in preloaded[0] and "libfoo" not in preloaded[0]
    monkeypatch.delenv("PYTHONMALLOC", raising=False)
    monkeypatch.setenv("CLEANROOM_NOT_DUMPABLE", "false")
    with caplog.at_level(logging.WARNING, logger="cleanroom.asgi"):
        app = CleanroomMiddleware(recording_app(Seen()), data_dir=tmp_path / "data", admin_socket=False)
        app.close()
    assert any("cleanroom exec" in r.getMessage() for r in caplog.records if r.name == "cleanroom.asgi")


# --- ASGI: what the app sends back -----------------------------------------------------------------
def test_the_apps_response_headers_do_not_travel_in_clear(stack: Stack) -> None:
    """Headers are not sealed: an app header derived from the payload (a Location, a cookie, an id) would
    cross a TLS-terminating proxy in clear. Framing headers of the app's would also contradict the sealed
    body (a gzip Content-Encoding, Transfer-Encoding next to Content-Length: a desync)."""
    marker = b"crmark-" + os.urandom(6).hex().encode()
    seen = Seen()
    hostile = [
        (b"x-result", marker),
        (b"set-cookie", b"session=" + marker),
        (b"location", b"/v1/items/" + marker),
        (b"content-length", b"1"),
        (b"content-type", b"text/plain"),
        (b"transfer-encoding", b"chunked"),
        (b"content-encoding", b"gzip"),
    ]
    app = stack.middleware(recording_app(seen, answer=b"answer " + marker, headers=hostile))
    sealed = stack.seal("/v1/x", b"{}")
    answer = drive(app, http_scope("/v1/x", api_key=stack.api_key), sealed.body)
    assert answer.status == 200 and sealed.open_response(answer.body) == b"answer " + marker
    assert all(marker not in k + v for k, v in answer.headers), answer.headers
    names = [k.lower() for k, _ in answer.headers]
    assert sorted(names) == [b"content-length", b"content-type"]
    assert dict(answer.headers)[b"content-length"] == str(len(answer.body)).encode()
    assert dict(answer.headers)[b"content-type"] == CONTENT_TYPE.encode()


@pytest.mark.parametrize("status", [204, 205, 304, 103])
def test_a_status_without_a_body_still_delivers_the_sealed_answer(stack: Stack, status: int) -> None:
    """A 204 cannot carry a body: HTTP servers refuse to send one (h11: 'Too much data for declared
    Content-Length'), so the sealed answer broke mid-response. It is answered 200 with the sealed answer."""
    seen = Seen()
    inner = recording_app(seen, answer=b"")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        async def with_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "status": status}
            await send(message)

        await inner(scope, receive, with_status)

    wrapped = stack.middleware(app)
    sealed = stack.seal("/v1/x", b"{}")
    answer = drive(wrapped, http_scope("/v1/x", api_key=stack.api_key), sealed.body)
    assert answer.status == 200 and sealed.open_response(answer.body) == b""


def test_response_extensions_the_middleware_cannot_seal_are_not_offered(stack: Stack, tmp_path: Path) -> None:
    """A server offering `http.response.pathsend` (Granian, ...) lets Starlette's FileResponse send a path
    instead of a body: the middleware would seal an empty answer. Such extensions are hidden from the app."""
    secret_file = tmp_path / "report.txt"
    secret_file.write_bytes(b"file contents for the tenant")

    async def report(request: Request) -> FileResponse:
        await request.body()
        return FileResponse(secret_file)

    seen = Seen()
    extensions = {"http.response.pathsend": {}, "http.response.zerocopy": {}, "http.response.trailers": {}, "tls": {}}
    for app, check in (
        (Starlette(routes=[Route("/v1/report", report, methods=["POST"])]), b"file contents for the tenant"),
        (recording_app(seen), b'{"ok": true}'),
    ):
        sealed = stack.seal("/v1/report", b"{}")
        scope = http_scope("/v1/report", api_key=stack.api_key, extensions=extensions)
        answer = drive(stack.middleware(app), scope, sealed.body)
        assert answer.status == 200 and sealed.open_response(answer.body) == check
    assert set(seen.calls[0]["extensions"]) == {"tls"}


def test_streaming_answer_many_chunks_and_trailers(stack: Stack) -> None:
    marker = b"crmark-" + os.urandom(6).hex().encode()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        for i in range(2000):
            await send({"type": "http.response.body", "body": b"%05d," % i, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        await send({"type": "http.response.trailers", "headers": [(b"x-digest", marker)], "more_trailers": False})

    sealed = stack.seal("/v1/stream", b"{}")
    answer = drive(stack.middleware(app), http_scope("/v1/stream", api_key=stack.api_key), sealed.body)
    assert sealed.open_response(answer.body) == b"".join(b"%05d," % i for i in range(2000))
    assert not any(m["type"] == "http.response.trailers" for m in answer.sent)
    assert marker not in repr(answer.sent).encode()
    assert [m["type"] for m in answer.sent] == ["http.response.start", "http.response.body"]


@pytest.mark.parametrize("when", ["before_start", "after_start", "after_body"])
def test_an_app_that_raises_is_a_422_with_nothing_of_its_answer(stack: Stack, when: str) -> None:
    marker = "crmark-" + os.urandom(6).hex()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        if when != "before_start":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"x-partial", marker.encode())]})
            await send({"type": "http.response.body", "body": marker.encode(), "more_body": when == "after_start"})
        raise KeyError(marker)

    sealed = stack.seal("/v1/x", b"{}")
    answer = drive(stack.middleware(app), http_scope("/v1/x", api_key=stack.api_key), sealed.body)
    assert answer.status == 422 and answer.error_code() == "app_rejected_input"
    assert marker.encode() not in repr(answer.sent).encode()


def test_an_app_that_answers_twice_or_never(stack: Stack) -> None:
    """Protocol slips of the app: the last `http.response.start` counts; an app that never answers is the
    app's failure (500, as an ASGI server would answer it), still sealed."""

    async def twice(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b"a"})

    async def never(scope: Any, receive: Any, send: Any) -> None:
        await receive()

    for app, status, body in ((twice, 202, b"a"), (never, 500, b"")):
        sealed = stack.seal("/v1/x", b"{}")
        answer = drive(stack.middleware(app), http_scope("/v1/x", api_key=stack.api_key), sealed.body)
        assert answer.status == status and sealed.open_response(answer.body) == body


def test_an_app_that_reads_its_body_twice(stack: Stack) -> None:
    async def twice(request: Request) -> JSONResponse:
        first, second = await request.body(), await request.body()
        return JSONResponse({"same": first == second, "text": (await request.json())["text"]})

    app = stack.middleware(Starlette(routes=[Route("/v1/x", twice, methods=["POST"])]))
    sealed = stack.seal("/v1/x", b'{"text": "abc"}')
    answer = drive(app, http_scope("/v1/x", api_key=stack.api_key), sealed.body)
    assert json.loads(sealed.open_response(answer.body)) == {"same": True, "text": "abc"}


def test_the_middleware_mounted_twice_fails_closed(stack: Stack) -> None:
    seen = Seen()
    inner = stack.middleware(recording_app(seen))
    outer = stack.middleware(inner)
    sealed = stack.seal("/v1/x", b'{"text": "x"}')
    answer = drive(outer, http_scope("/v1/x", api_key=stack.api_key), sealed.body)
    # The inner one gets no API key (the outer does not pass it on) and an unsealed body: refused.
    assert answer.status == 401 and seen.calls == []


# --- ASGI: the request body on the wire ------------------------------------------------------------
def test_a_body_in_tiny_chunks_opens_without_blowing_up_memory(stack: Stack) -> None:
    """A client that trickles its body in tiny pieces: the body still opens, and collecting it costs about
    its own size (a list of 2-byte `bytes` objects peaked at ~60x the body under tracemalloc: gigabytes for
    a 64 MiB request; one buffer peaks at ~2x)."""
    seen = Seen()
    app = stack.middleware(recording_app(seen))
    payload = os.urandom(150_000).hex().encode()  # 300 KB
    sealed = stack.seal("/v1/x", payload)
    tracemalloc.start()
    try:
        answer = drive(app, http_scope("/v1/x", api_key=stack.api_key), sealed.body, chunk_bytes=2, timeout_s=30)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.status == 200 and seen.calls[0]["body"] == payload
    assert peak < 8 * len(sealed.body), peak / len(sealed.body)


def test_a_body_that_never_ends_times_out_with_408(stack: Stack) -> None:
    seen = Seen()
    settings = stack.services.settings.model_copy(update={"body_timeout_s": 0.3})
    app = CleanroomMiddleware(
        recording_app(seen), settings=settings, services=stack.services, protected_paths=("/v1/",)
    )
    sealed = stack.seal("/v1/x", b'{"text": "x"}')
    answer = drive(app, http_scope("/v1/x", api_key=stack.api_key), sealed.body, chunk_bytes=16, after_body="stall")
    assert answer.status == 408 and answer.error_code() == "request_body_timeout"
    assert seen.calls == [] and decryptions(stack) == 0


def test_a_client_that_leaves_mid_body_or_lies_about_more_body(stack: Stack) -> None:
    seen = Seen()
    app = stack.middleware(recording_app(seen))
    sealed = stack.seal("/v1/x", b'{"text": "x"}')

    async def leaves() -> None:
        pieces: list[Message] = [
            {"type": "http.request", "body": sealed.body[:20], "more_body": True},
            {"type": "http.disconnect"},
        ]
        sent: list[Message] = []

        async def receive() -> Message:
            return pieces.pop(0)

        async def send(message: Message) -> None:
            sent.append(message)

        await app(http_scope("/v1/x", api_key=stack.api_key), receive, send)
        assert int(sent[0]["status"]) < 500

    anyio.run(leaves)
    # more_body=False on a truncated body: the rest never counts, the truncated body fails to open.
    cut = drive(app, http_scope("/v1/x", api_key=stack.api_key), sealed.body[:-5] + b"", after_body="block")
    assert cut.status == 400 and cut.error_code() == "decryption_failed" and seen.calls == []


def test_an_oversized_body_is_refused_before_it_is_read_whole(stack: Stack) -> None:
    settings = stack.services.settings.model_copy(update={"max_body_bytes": 1000})
    seen = Seen()
    app = CleanroomMiddleware(recording_app(seen), settings=settings, services=stack.services)
    sealed = stack.seal("/v1/x", b"y" * 5000)
    answer = drive(app, http_scope("/v1/x", api_key=stack.api_key), sealed.body, chunk_bytes=512)
    assert answer.status == 413 and seen.calls == []


# --- Triton --------------------------------------------------------------------------------------------
@pytest.fixture
def triton_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any, Client]]:
    from cleanroom.integrations.triton import CleanroomTritonModel

    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", FAKE_PB_UTILS)
    monkeypatch.setenv("CLEANROOM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CLEANROOM_MAX_BODY_BYTES", "4096")
    monkeypatch.setenv("CLEANROOM_NOT_DUMPABLE", "false")
    model = CleanroomTritonModel()
    config = {"name": "echo", "parameters": {"cleanroom_model": {"string_value": "echo"}}}
    model.initialize({"model_config": json.dumps(config), "model_name": "echo"})
    created = model.services.tenants.create("shop")
    client = Client("http://unused", api_key=created.api_key, public_key=created.public_key)
    try:
        yield model, created, client
    finally:
        client.close()
        model.finalize()


def test_triton_hostile_tensors_and_parameters_are_invalid_arg_never_a_crash(
    triton_model: tuple[Any, Any, Client],
) -> None:
    model, created, client = triton_model
    key = {"cleanroom_api_key": created.api_key}
    good = client.seal_request("echo", b"hello").body
    cases: list[tuple[FakeRequest, str, str]] = [
        (FakeRequest({"SEALED_REQUEST": np.frombuffer(good, dtype=np.uint8)}, key), "invalid_input", "INVALID_ARG"),
        (FakeRequest({"SEALED_REQUEST": np.empty(0, dtype=np.object_)}, key), "invalid_input", "INVALID_ARG"),
        (FakeRequest({"SEALED_REQUEST": one(good.decode("latin-1"))}, key), "invalid_input", "INVALID_ARG"),
        (FakeRequest({"SEALED_REQUEST": one(None)}, key), "invalid_input", "INVALID_ARG"),
        (FakeRequest({"SEALED_REQUEST": one(b"")}, key), "invalid_sealed_message", "INVALID_ARG"),
        (FakeRequest({"SEALED_REQUEST": one(good)}, "{not json"), "unauthenticated", "INVALID_ARG"),
        (FakeRequest({"SEALED_REQUEST": one(good)}, [created.api_key]), "unauthenticated", "INVALID_ARG"),
        (FakeRequest({"SEALED_REQUEST": one(good)}, {"cleanroom_api_key": 12}), "unauthenticated", "INVALID_ARG"),
        (FakeRequest({"SEALED_REQUEST": one(good)}, "[" * 100_000), "unauthenticated", "INVALID_ARG"),
        (FakeRequest({"raise": one(good)}, key), "internal_error", "INTERNAL"),
    ]
    responses = model.execute([request for request, _, _ in cases])
    got = [(json.loads(r.error.message)["error"]["code"], r.error.code) for r in responses]
    assert got == [(code, triton_code) for _, code, triton_code in cases]
    # A 2-D [1, 1] BYTES tensor is still one element: accepted. The batch was not poisoned either.
    [ok] = model.execute([FakeRequest({"SEALED_REQUEST": one(good).reshape(1, 1)}, key)])
    assert ok.error is None


def test_triton_refuses_an_oversized_sealed_input_before_any_key_work(triton_model: tuple[Any, Any, Client]) -> None:
    """`cleanroom serve` and the middleware refuse a body over `max_body_bytes` (413); the Triton model
    took any size (gRPC carries up to 2 GiB) and decrypted it into locked memory."""
    model, created, client = triton_model
    big = client.seal_request("echo", b"z" * 8192).body
    [response] = model.execute([FakeRequest({"SEALED_REQUEST": one(big)}, {"cleanroom_api_key": created.api_key})])
    assert response.error is not None
    assert (json.loads(response.error.message)["error"]["code"], response.error.code) == (
        "payload_too_large",
        "INVALID_ARG",
    )


def test_triton_user_models_that_answer_wrong_or_raise_are_triton_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user model (`cleanroom_user_model`) that returns no tensors, a string or a list, or raises with the
    plaintext in its message: a 422 Triton error without the plaintext, never a crash of `execute`."""
    import torch
    from safetensors.torch import save

    from cleanroom.integrations.triton import CleanroomTritonModel

    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", FAKE_PB_UTILS)
    monkeypatch.setenv("CLEANROOM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CLEANROOM_NOT_DUMPABLE", "false")
    models = {}
    for name, factory in (("wrong", "wrong_type_factory"), ("raises", "raise_message_factory")):
        model = CleanroomTritonModel()
        config = {
            "name": name,
            "parameters": {"cleanroom_user_model": {"string_value": f"support.failure_models:{factory}"}},
        }
        model.initialize({"model_config": json.dumps(config), "model_name": name, "model_instance_name": name})
        models[name] = model
    try:
        created = models["wrong"].services.tenants.create("shop")
        marker = "crmark-" + os.urandom(6).hex()
        client = Client("http://unused", api_key=created.api_key, public_key=created.public_key)

        def payload(kind: str) -> bytes:
            text = f"{'.' * 40}{marker}{'.' * 40}".encode()
            u8 = {"input": torch.frombuffer(bytearray(text), dtype=torch.uint8)}
            u8["kind"] = torch.frombuffer(bytearray(kind.encode()), dtype=torch.uint8)
            return save(u8)

        key = {"cleanroom_api_key": created.api_key}
        kinds = ("tensor", "str", "list", "mixed", "none")
        requests = [
            FakeRequest({"SEALED_REQUEST": one(client.seal_request("wrong", payload(k)).body)}, key) for k in kinds
        ]
        for model_name, batch in (("wrong", requests), ("raises", None)):
            if batch is None:
                batch = [FakeRequest({"SEALED_REQUEST": one(client.seal_request("raises", payload("x")).body)}, key)]
            for response in models[model_name].execute(batch):
                assert response.error is not None and response.output_tensors == []
                assert response.error.code == "INVALID_ARG" and marker not in response.error.message
                code = json.loads(response.error.message)["error"]["code"]
                assert code == ("invalid_payload" if model_name == "wrong" else "model_rejected_input")
        client.close()
    finally:
        for model in models.values():
            model.finalize()


def test_triton_client_helper_reports_a_hostile_answer_as_invalid_response() -> None:
    """`decode_infer_response` parses what the server (or a proxy) sends: every malformed frame is a typed
    `BadRequest`, not a ValueError / AttributeError / TypeError escaping into the caller."""
    from cleanroom.errors import BadRequest
    from cleanroom.integrations.triton import decode_infer_response

    def framed(document: Any, tail: bytes = b"") -> tuple[bytes, dict[str, str]]:
        head = json.dumps(document).encode()
        return head + tail, {"Inference-Header-Content-Length": str(len(head))}

    element = (3).to_bytes(4, "little") + b"abc"
    ok = {"outputs": [{"name": "SEALED_RESPONSE", "parameters": {"binary_data_size": 7}}]}
    assert decode_infer_response(*framed(ok, element)) == b"abc"
    hostile: list[tuple[bytes, dict[str, str]]] = [
        (b"{}", {"Inference-Header-Content-Length": "two"}),
        (b"not json at all", {}),
        (b"\xff\xfe", {}),
        framed([1, 2, 3]),
        framed({"outputs": "SEALED_RESPONSE"}),
        framed({"outputs": [["SEALED_RESPONSE"]]}),
        framed({"outputs": [{"name": "SEALED_RESPONSE", "parameters": ["binary_data_size"]}]}, element),
        framed({"outputs": [{"name": "SEALED_RESPONSE", "parameters": {"binary_data_size": "x"}}]}, element),
        framed({"outputs": [{"name": "SEALED_RESPONSE", "parameters": {"binary_data_size": None}}]}, element),
        framed({"outputs": [{"name": "SEALED_RESPONSE", "parameters": {"binary_data_size": 10**9}}]}, element),
        framed(
            {
                "outputs": [
                    {"name": "OTHER", "parameters": {"binary_data_size": -60}},
                    {"name": "SEALED_RESPONSE", "parameters": {"binary_data_size": 7}},
                ]
            },
            element,
        ),
        framed({"outputs": [{"name": "SEALED_RESPONSE"}]}),
        (b"[" * 100_000, {}),
    ]
    for content, headers in hostile:
        with pytest.raises(BadRequest) as info:
            decode_infer_response(content, headers)
        assert info.value.code == "invalid_response", content[:60]


# --- Ray Serve (the replica body, no cluster) --------------------------------------------------------
@pytest.fixture
def replica(tmp_path: Path) -> Iterator[Any]:
    from cleanroom.integrations.ray_serve import CleanroomReplica

    settings = {
        "data_dir": str(tmp_path / "data"),
        "models": ["echo"],
        "device": "cpu",
        "not_dumpable": False,
        "disable_core_dumps": False,
        "max_body_bytes": 4096,
    }
    body = CleanroomReplica(settings)
    try:
        yield body
    finally:
        body.close()


def _with_tenant_hint(hint: str, coroutine: Any) -> Any:
    from ray.serve import context

    async def main() -> Any:
        context._serve_request_context.set(context._RequestContext(multiplexed_model_id=hint))
        return await coroutine

    return asyncio.run(main())


def test_ray_replica_hostile_handle_arguments_are_4xx(replica: Any) -> None:
    created = replica.services.tenants.create("shop")
    other = replica.services.tenants.create("rival")
    client = Client("http://unused", api_key=created.api_key, public_key=created.public_key)
    try:
        good = client.seal_request("echo", b"hello").body
        cases: list[tuple[Any, Any, Any, int]] = [
            ("echo", None, good, 401),  # no API key
            ("echo", 12345, good, 401),
            ("echo", created.api_key, "not bytes", 400),
            ("echo", created.api_key, None, 400),
            (None, created.api_key, good, 404),
            ("../../echo", created.api_key, good, 404),
            ("echo", created.api_key, client.seal_request("echo", b"q" * 8192).body, 413),
        ]
        for model, api_key, body, status in cases:
            got, document = asyncio.run(replica.handle_sealed(model, api_key, body))
            assert got == status, (model, api_key, type(body), got, document)
            assert "error" in json.loads(document)
        for hint in ("../etc/passwd", other.tenant_id, "\x00", "x" * 10_000):
            got, document = _with_tenant_hint(hint, replica.handle_sealed("echo", created.api_key, good))
            assert (got, json.loads(document)["error"]["code"]) == (400, "tenant_routing_mismatch")
        got, document = asyncio.run(replica.handle_sealed("echo", created.api_key, good))
        assert got == 200 and b"hello" not in document
        assert replica.stats()["errors_by_code"].get("internal_error", 0) == 0
    finally:
        client.close()


def test_ray_replica_http_route_hostile_requests_are_4xx(replica: Any) -> None:
    """The replica's HTTP route (what Serve's proxy hands it), called with hostile requests in process."""
    from starlette.requests import Request as StarletteRequest

    created = replica.services.tenants.create("shop")
    client = Client("http://unused", api_key=created.api_key, public_key=created.public_key)
    good = client.seal_request("echo", b"hello").body
    client.close()

    def call(path: str, body: bytes, *, method: str = "POST", **headers: str) -> tuple[int, str]:
        scope = http_scope(path, method=method, api_key=created.api_key)
        names = {k.replace("_", "-").lower(): v for k, v in headers.items()}
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k.decode() not in names]
        scope["headers"] += [(k.encode(), v.encode()) for k, v in names.items()]
        pieces: list[Message] = [
            {"type": "http.request", "body": body[i : i + 1000], "more_body": i + 1000 < len(body)}
            for i in range(0, max(len(body), 1), 1000)
        ]
        pieces.append({"type": "http.disconnect"})

        async def receive() -> Message:
            return pieces.pop(0) if len(pieces) > 1 else pieces[0]

        response = asyncio.run(replica(StarletteRequest(scope, receive)))
        document = json.loads(bytes(response.body)) if response.status_code != 200 else {}
        return response.status_code, document.get("error", {}).get("code", "")

    infer = "/v1/models/echo/infer"
    assert call(infer, good, content_length="99999999999") == (413, "payload_too_large")
    assert call(infer, good + b"x" * 5000, content_length="-1") == (413, "payload_too_large")
    assert call(infer, good, content_type="application/json") == (415, "unsupported_media_type")
    assert call(infer, good, method="GET")[0] == 404
    assert call("/v1/models/../infer", good)[0] == 404
    assert call("/v1/models/echo/infer/../../x", good)[0] == 404
    assert call("/v1/models/nope/infer", good) == (404, "unknown_model")
    assert call(infer, good, authorization="Basic c2hvcDpzaG9w") == (401, "unauthenticated")
    assert call(infer, good)[0] == 200  # none of the refusals above used up its request id
    assert call(infer, good) == (400, "replayed_request")
    assert replica.stats()["errors_by_code"].get("internal_error", 0) == 0


# --- cleanroom exec ----------------------------------------------------------------------------------
LD_SO = Path("/lib64/ld-linux-x86-64.so.2")


def run_exec(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "cleanroom", "exec", *args],
        capture_output=True,
        cwd=REPO,
        timeout=60,
        env=env or server_env(),
    )


def test_exec_refuses_what_it_cannot_run() -> None:
    missing = run_exec("--", "/nonexistent/cleanroom-no-such-command")
    assert missing.returncode == 127 and b"command not found" in missing.stderr
    empty = run_exec("--")
    assert empty.returncode == 2 and b"after --" in empty.stderr


# Not a real-service skip: the check asks glibc's own loader (`ld.so --list-tunables`) which tunables the
# command starts with, and that loader exists on every x86-64 glibc host, CI included. Elsewhere (musl,
# arm64) the environment `exec` builds is still checked by tests/test_hardened_environ.py.
@pytest.mark.skipif(not LD_SO.exists(), reason="needs glibc's x86-64 dynamic loader")
def test_exec_overrides_a_callers_attempt_to_undo_the_wiping() -> None:
    """The caller's PYTHONMALLOC, MALLOC_PERTURB_=0 and a GLIBC_TUNABLES that turns perturb off and tcache
    back on are overridden; glibc's loader reports the tunables the command really starts with."""
    env = server_env(
        PYTHONMALLOC="pymalloc",
        MALLOC_PERTURB_="0",
        GLIBC_TUNABLES="glibc.malloc.perturb=0:glibc.malloc.tcache_count=7",
    )
    tunables = run_exec(str(LD_SO), "--list-tunables", env=env)  # no `--`: accepted as well
    assert tunables.returncode == 0, tunables.stderr
    lines = dict(line.split(": ", 1) for line in tunables.stdout.decode().splitlines() if ": " in line)
    assert lines["glibc.malloc.perturb"].split()[0] == "165"
    assert int(lines["glibc.malloc.tcache_count"].split()[0], 0) == 0
    probe = run_exec("--", sys.executable, "-c", "import os; print(os.environ['PYTHONMALLOC'])", env=env)
    assert probe.stdout.strip() == b"malloc"


def test_exec_keeps_the_commands_own_double_dash() -> None:
    probe = run_exec("--", sys.executable, "-c", "import sys; print(sys.argv[1:])", "--", "x")
    assert probe.stdout.strip() == b"['--', 'x']"


def test_exec_of_a_file_that_may_not_run_is_126_like_a_shell(tmp_path: Path) -> None:
    script = tmp_path / "not-executable.sh"
    script.write_text("#!/bin/sh\necho ran\n")
    script.chmod(0o644)
    result = run_exec("--", str(script))
    assert result.returncode == 126 and b"not executable" in result.stderr and b"ran" not in result.stdout


def test_exec_warns_when_ld_preload_replaces_the_allocator() -> None:
    """The wiping is glibc's: under a preloaded jemalloc/tcmalloc it does not happen, and exec says so
    (the preload need not exist: the warning is about the setting, and the dynamic loader only warns)."""
    env = {**server_env(), "LD_PRELOAD": "/nonexistent/libjemalloc.so.2"}
    result = run_exec("--", sys.executable, "-c", "print('ok')", env=env)
    assert result.returncode == 0 and result.stdout.strip() == b"ok"
    assert b"LD_PRELOAD replaces glibc's malloc (libjemalloc.so.2)" in result.stderr
    clean = run_exec("--", sys.executable, "-c", "print('ok')")
    assert b"LD_PRELOAD" not in clean.stderr


# --- ASGI: the same, through a real uvicorn ----------------------------------------------------------
@pytest.mark.parametrize("http_impl", ["h11", "httptools"])
def test_through_uvicorn_no_body_status_websocket_and_method(stack: Stack, http_impl: str) -> None:
    """What the in-process driver cannot show: a 204 with the sealed body broke on the wire (h11: 'Too
    much data for declared Content-Length'; the client saw a cut connection); the websocket refusal is the
    handshake's 403; a sealed body under another method is 405."""
    import threading

    import httpx
    import uvicorn
    from starlette.responses import Response
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    from services import free_port

    async def created(request: Request) -> Response:
        await request.body()
        return Response(status_code=204)

    async def echo_socket(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())
        await websocket.close()

    inner = Starlette(
        routes=[
            Route("/v1/created", created, methods=["POST", "DELETE"]),
            WebSocketRoute("/v1/ws", echo_socket),
            WebSocketRoute("/open/ws", echo_socket),
        ]
    )
    port = free_port()
    config = uvicorn.Config(stack.middleware(inner), host="127.0.0.1", port=port, http=http_impl, log_level="error")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(600):  # up to 30 s on a busy box
            if server.started:
                break
            thread.join(0.05)
        assert server.started
        base = f"http://127.0.0.1:{port}"
        with Client(base, api_key=stack.api_key, public_key=stack.client.public_key().token()) as client:
            assert client.call("/v1/created", b"{}") == b""
            assert client.call("/v1/created?dry_run=1&note=a%20b", b"{}") == b""  # a sealed query, as sent
        sealed = stack.seal("/v1/created", b"{}")
        headers = {"Authorization": f"Bearer {stack.api_key}", "Content-Type": CONTENT_TYPE}
        deleted = httpx.request("DELETE", f"{base}/v1/created", content=sealed.body, headers=headers, timeout=10)
        assert deleted.status_code == 405 and deleted.json()["error"]["code"] == "method_not_allowed"
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://127.0.0.1:{port}/v1/ws", open_timeout=10).close()
        assert refused.value.response.status_code == 403
        with connect(f"ws://127.0.0.1:{port}/open/ws", open_timeout=10) as socket:
            socket.send("hello")
            assert socket.recv(timeout=10) == "hello"
    finally:
        server.should_exit = True
        thread.join(10)
