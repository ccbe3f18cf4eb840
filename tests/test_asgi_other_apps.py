"""`CleanroomMiddleware` in front of apps and servers it was not written against (issue #10).

Real FastAPI and Starlette apps (streaming generators, files, background tasks, HEAD/OPTIONS, 204/304,
handlers that raise or never read their body, mounts and `root_path`, path params and queries, websockets,
lifespan, scope types the middleware does not know), driven in process through a raw ASGI driver, then the
same app through real servers: uvicorn with h11 and httptools, uvicorn `--workers 2` with `worker_id`, and
hypercorn. For each: the sealed round trip works or fails with the documented JSON error, nothing of the
plaintext leaves in clear, never a 500 of the middleware's own, and the end-of-request scrub ran (counted
by wrapping `RequestOpener.end_request`, and every SecureBuffer of the request closed after it).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import Mount

from cleanroom.client import Client, ClientError
from cleanroom.config import Settings
from cleanroom.crypto.sealed import CONTENT_TYPE
from cleanroom.integrations.asgi import CleanroomMiddleware
from cleanroom.runtime.models import ModelRegistry
from cleanroom.server.services import Services, build_services
from services import free_port
from support.server import REPO, server_env

Message = dict[str, Any]
MARK = "crmark-" + os.urandom(6).hex()  # plaintext that must never leave in clear


# --- a raw ASGI driver ------------------------------------------------------------------------------------
def scope_for(path: str, api_key: str, *, method: str = "POST", query: bytes = b"", root_path: str = "") -> Message:
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
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", f"Bearer {api_key}".encode()),
            (b"content-type", CONTENT_TYPE.encode()),
        ],
        "client": ("203.0.113.5", 50000),
        "server": ("testserver", 80),
    }


@dataclass
class Answer:
    sent: list[Message]
    sent_at: float = 0.0  # monotonic time of the last body message

    @property
    def status(self) -> int:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        assert len(starts) == 1, self.sent
        return int(starts[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        return {bytes(k): bytes(v) for k, v in start["headers"]}

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")

    def error_code(self) -> str:
        return str(json.loads(self.body)["error"]["code"])


def drive(app: Any, scope: Message, body: bytes = b"", *, disconnect: bool = False) -> Answer:
    """One call of `app`; after the body the client stays connected (or disconnects, `disconnect=True`)."""
    answer = Answer([])
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        if pending:
            return pending.pop()
        if not disconnect:
            await anyio.sleep_forever()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        answer.sent.append(message)
        if message["type"] == "http.response.body":
            answer.sent_at = time.monotonic()

    async def main() -> None:
        with anyio.fail_after(5):
            await app(scope, receive, send)

    anyio.run(main)
    assert MARK.encode() not in repr(answer.sent).encode(), "plaintext left in clear"
    return answer


# --- the stack: services, a tenant, a client, and the scrub observed ------------------------------------
@dataclass
class Stack:
    services: Services
    api_key: str
    client: Client
    audit: Any
    scrubs: list[bool] = field(default_factory=list)  # one per request: every buffer closed after the scrub

    def seal(self, path: str, payload: bytes) -> Any:
        return self.client.seal_request("", payload, path=path)

    def wrap(self, app: Any, **options: Any) -> CleanroomMiddleware:
        options.setdefault("protected_paths", ("/",))
        return CleanroomMiddleware(app, settings=self.services.settings, services=self.services, **options)

    def call(self, app: Any, path: str, payload: bytes, *, query: bytes = b"", **kw: Any) -> tuple[Answer, Any]:
        sealed = self.seal(path + ("?" + query.decode() if query else ""), payload)
        scope = scope_for(path, self.api_key, query=query, root_path=kw.pop("root_path", ""))
        return drive(app, scope, sealed.body, **kw), sealed


@pytest.fixture
def stack(data_dir: Path, memory_audit: Any) -> Iterator[Stack]:
    services = build_services(Settings(data_dir=data_dir), audit=memory_audit, models=ModelRegistry({}))
    created = services.tenants.create("shop")
    client = Client("http://unused", api_key=created.api_key, public_key=created.public_key)
    result = Stack(services, created.api_key, client, memory_audit)
    opener = services.runtime.opener
    original: Callable[[Any], None] = opener.end_request

    def observed(scope: Any) -> None:
        buffers = list(scope.buffers)
        try:
            original(scope)
        finally:
            result.scrubs.append(bool(buffers) and all(b.closed for b in buffers))

    opener.end_request = observed  # type: ignore[method-assign]
    try:
        yield result
    finally:
        client.close()
        services.close()


# --- one FastAPI app with the shapes of real apps -------------------------------------------------------
@dataclass
class Traces:
    background: list[str] = field(default_factory=list)
    lifespan: list[str] = field(default_factory=list)


def fastapi_app(tmp: Path, traces: Traces) -> FastAPI:
    report = tmp / "report.txt"
    report.write_bytes(b"file for the tenant " + MARK.encode())
    app = FastAPI()

    @app.post("/v1/stream")
    async def stream(request: Request) -> StreamingResponse:
        text = (await request.json())["text"]

        async def chunks() -> Any:
            for i in range(300):
                yield f"{i}:{text};"

        return StreamingResponse(chunks(), media_type="text/plain")

    @app.post("/v1/file")
    async def file(request: Request) -> FileResponse:
        await request.body()
        return FileResponse(report, headers={"x-name": MARK})

    @app.post("/v1/later")
    async def later(request: Request, tasks: BackgroundTasks) -> dict[str, str]:
        text = (await request.json())["text"]

        async def task(value: str) -> None:
            await anyio.sleep(0.25)
            traces.background.append(value)
            if value.endswith("boom"):
                raise KeyError(value)

        tasks.add_task(task, text)
        return {"queued": text}

    @app.post("/v1/empty/{status}")
    async def empty(status: int, request: Request) -> Response:
        await request.body()
        return Response(status_code=status, headers={"etag": MARK})

    @app.post("/v1/raise")
    async def raises(request: Request) -> dict[str, str]:
        known: dict[str, str] = {}
        return {"v": known[(await request.json())["text"]]}  # KeyError quoting the plaintext

    @app.post("/v1/http-error")
    async def http_error(request: Request) -> dict[str, str]:
        raise HTTPException(status_code=404, detail=f"no item {(await request.json())['text']}")

    @app.post("/v1/unread")
    async def unread() -> dict[str, str]:
        return {"read": "nothing"}

    @app.api_route("/v1/items/{item_id}", methods=["POST", "HEAD", "OPTIONS", "GET"])
    async def item(item_id: int, request: Request, q: str = "") -> dict[str, object]:
        return {"item": item_id, "q": q, "body": (await request.json())["text"]}

    return app


@pytest.fixture
def fastapi_stack(stack: Stack, tmp_path: Path) -> tuple[Stack, CleanroomMiddleware, Traces]:
    traces = Traces()
    return stack, stack.wrap(fastapi_app(tmp_path, traces)), traces


def text(value: str) -> bytes:
    return json.dumps({"text": value}).encode()


def test_streaming_generator_file_and_empty_statuses(fastapi_stack: tuple[Stack, CleanroomMiddleware, Traces]) -> None:
    stack, app, _ = fastapi_stack
    answer, sealed = stack.call(app, "/v1/stream", text(MARK))
    assert answer.status == 200 and set(answer.headers) == {b"content-type", b"content-length"}
    assert sealed.open_response(answer.body) == "".join(f"{i}:{MARK};" for i in range(300)).encode()
    answer, sealed = stack.call(app, "/v1/file", b"{}")
    assert answer.status == 200 and sealed.open_response(answer.body) == b"file for the tenant " + MARK.encode()
    for status in (204, 304):
        answer, sealed = stack.call(app, f"/v1/empty/{status}", b"{}")
        assert answer.status == 200 and sealed.open_response(answer.body) == b""
    assert stack.scrubs == [True] * 4


def test_handlers_that_raise_or_never_read_their_body(fastapi_stack: tuple[Stack, CleanroomMiddleware, Traces]) -> None:
    stack, app, _ = fastapi_stack
    # FastAPI's ServerErrorMiddleware sends its own 500 and then re-raises: nothing of it leaves.
    answer, _ = stack.call(app, "/v1/raise", text(MARK))
    assert answer.status == 422 and answer.error_code() == "app_rejected_input"
    answer, sealed = stack.call(app, "/v1/http-error", text(MARK))  # an error answer of the app's: sealed
    assert answer.status == 404 and json.loads(sealed.open_response(answer.body)) == {"detail": f"no item {MARK}"}
    answer, sealed = stack.call(app, "/v1/unread", text(MARK))
    assert answer.status == 200 and json.loads(sealed.open_response(answer.body)) == {"read": "nothing"}
    assert stack.scrubs == [True] * 3


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "GET"])
def test_head_and_options_on_a_sealed_route_are_405(
    fastapi_stack: tuple[Stack, CleanroomMiddleware, Traces], method: str
) -> None:
    stack, app, _ = fastapi_stack
    sealed = stack.seal("/v1/items/3", text(MARK))
    answer = drive(app, scope_for("/v1/items/3", stack.api_key, method=method), sealed.body)
    assert answer.status == 405 and answer.error_code() == "method_not_allowed"
    assert answer.headers[b"allow"] == b"POST" and stack.scrubs == []  # nothing was opened


def test_background_tasks_run_before_the_sealed_answer_leaves(
    fastapi_stack: tuple[Stack, CleanroomMiddleware, Traces],
) -> None:
    """Starlette sends the response, then runs its background tasks, inside the same app call. The sealed
    answer leaves when the app returns, tasks included (so that once the client has its answer nothing of
    the request runs in the app any more): a 0.25 s task delays it 0.25 s, and a task that raises is the app
    failing, 422 (documented in docs/embedding.md). The request's buffers are scrubbed after the tasks."""
    stack, app, traces = fastapi_stack
    started = time.monotonic()
    answer, sealed = stack.call(app, "/v1/later", text("first"))
    assert answer.status == 200 and json.loads(sealed.open_response(answer.body)) == {"queued": "first"}
    assert traces.background == ["first"] and answer.sent_at - started >= 0.25
    answer, sealed = stack.call(app, "/v1/later", text(MARK + "boom"))  # drive: the KeyError's text not in clear
    assert answer.status == 422 and answer.error_code() == "app_rejected_input"
    assert traces.background[-1] == MARK + "boom"
    assert stack.scrubs == [True, True]


def test_path_params_query_and_what_the_audit_records(fastapi_stack: tuple[Stack, CleanroomMiddleware, Traces]) -> None:
    stack, app, _ = fastapi_stack
    query = b"q=" + MARK.encode()
    answer, sealed = stack.call(app, "/v1/items/42", text("abc"), query=query)
    assert answer.status == 200
    assert json.loads(sealed.open_response(answer.body)) == {"item": 42, "q": MARK, "body": "abc"}
    record = next(e for e in stack.audit.events if e["event"] == "decrypt.request_key")
    assert record["model"].startswith("/v1/items/42")
    assert stack.scrubs == [True]


def test_the_query_string_is_not_written_to_the_audit_log(
    fastapi_stack: tuple[Stack, CleanroomMiddleware, Traces],
) -> None:
    stack, app, _ = fastapi_stack
    answer, _ = stack.call(app, "/v1/items/42", text("abc"), query=b"q=" + MARK.encode())
    assert answer.status == 200
    assert MARK not in json.dumps(stack.audit.events)
    assert stack.audit.events[-1]["model"] == "/v1/items/42?[REDACTED:QUERY]"
    # PII in the path itself: the app refuses it (item_id is an int) after the decryption was audited
    answer, _ = stack.call(app, "/v1/items/jane.roe@example.org", text("abc"))
    assert answer.status == 422
    assert stack.audit.events[-1]["model"] == "/v1/items/[REDACTED:EMAIL]"


def test_the_query_string_is_kept_out_of_the_host_servers_access_log(stack: Stack) -> None:
    """uvicorn's access record carries `path?query`; `cleanroom serve` drops the query from it, and so does
    a middleware (the query of a sealed call is bound, not encrypted: it may hold ids the redactor has no
    pattern for)."""
    import logging

    stack.wrap(Starlette())
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "POST", f"/v1/items/4?q={MARK}", "1.1", 200), None,
    )  # fmt: skip
    assert logging.getLogger("uvicorn.access").filter(record)
    assert MARK not in record.getMessage() and record.getMessage().startswith('127.0.0.1:5 - "POST /v1/items/4?')
    # hypercorn's atoms: its default format names `r` (no query); `R`, `Uq` and `q` carry one.
    atoms = {"r": "POST /v1/items/4 1.1", "R": f"POST /v1/items/4?q={MARK} 1.1", "Uq": f"/v1/items/4?q={MARK}"}
    record = logging.LogRecord(
        "hypercorn.access", logging.INFO, __file__, 1, "%(r)s|%(R)s|%(Uq)s|%(q)s", ({**atoms, "q": f"q={MARK}"},), None
    )
    assert logging.getLogger("hypercorn.access").filter(record)
    assert MARK not in record.getMessage() and record.getMessage().startswith("POST /v1/items/4 1.1|POST /v1/")
    assert record.getMessage().split("|")[1].endswith(" 1.1")


def test_mounts_root_path_and_a_sub_app(stack: Stack) -> None:
    """The middleware on a sub-app mounted at /api (Starlette `Mount` and FastAPI `app.mount`), and a
    FastAPI app served with `root_path` (uvicorn --root-path): the client seals the full path it calls."""
    inner = FastAPI()

    @inner.post("/v1/echo/{name}")
    async def echo(name: str, request: Request) -> dict[str, str]:
        return {"name": name, "text": (await request.json())["text"], "root": request.scope.get("root_path", "")}

    wrapped = stack.wrap(inner, protected_paths=("/v1/",))
    outer_fastapi = FastAPI()
    outer_fastapi.mount("/api", wrapped)
    for outer in (Starlette(routes=[Mount("/api", app=wrapped)]), outer_fastapi):
        answer, sealed = stack.call(outer, "/api/v1/echo/x", text("hi"))
        assert answer.status == 200
        assert json.loads(sealed.open_response(answer.body)) == {"name": "x", "text": "hi", "root": "/api"}
        plain = drive(outer, {**scope_for("/api/v1/echo/x", stack.api_key), "headers": []}, text(MARK))
        assert plain.status == 401
    answer, sealed = stack.call(wrapped, "/api/v1/echo/y", text("hi"), root_path="/api")  # --root-path /api
    assert answer.status == 200 and json.loads(sealed.open_response(answer.body))["name"] == "y"
    assert stack.scrubs == [True] * 3


def test_lifespan_passes_and_unknown_scope_types_are_refused(stack: Stack) -> None:
    traces = Traces()

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        traces.lifespan.append("start")
        yield
        traces.lifespan.append("stop")

    app = stack.wrap(Starlette(lifespan=lifespan))
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    anyio.run(app, {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert traces.lifespan == ["start", "stop"]
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]

    reached: list[str] = []

    async def anything(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["type"])

    # A scope type the middleware cannot seal (a future "webtransport", a server's own) must not hand the
    # app unauthenticated traffic on a protected path: refused with a clear error, the app never called.
    with pytest.raises(RuntimeError, match="webtransport"):
        anyio.run(stack.wrap(anything), {"type": "webtransport", "path": "/v1/x"}, receive, send)
    with pytest.raises(RuntimeError, match="custom"):
        anyio.run(stack.wrap(anything), {"type": "custom"}, receive, send)
    anyio.run(stack.wrap(anything, protected_paths=("/v1/",)), {"type": "webtransport", "path": "/open"}, receive, send)
    assert reached == ["webtransport"]


def test_raw_apps_that_read_twice_or_answer_twice(stack: Stack) -> None:
    async def reads_twice(scope: Any, receive: Any, send: Any) -> None:
        first = await receive()
        second = await receive()  # after the body: waits for the client to go, as under a server
        body = json.dumps({"first": len(first["body"]), "second": second["type"]}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": body})

    answer, sealed = stack.call(stack.wrap(reads_twice), "/v1/x", text(MARK), disconnect=True)
    assert answer.status == 201
    assert json.loads(sealed.open_response(answer.body)) == {"first": len(text(MARK)), "second": "http.disconnect"}
    assert stack.scrubs == [True]


def test_a_disconnect_check_before_the_body_does_not_eat_it(stack: Stack) -> None:
    """Starlette's `Request.is_disconnected()` calls `receive` in an already-cancelled scope and drops what
    it gets unless it is a disconnect. The opened body was handed out without a checkpoint, so a check
    before reading swallowed it, and the handler's read then waited for the client to leave (a hang)."""
    app = FastAPI()

    @app.post("/v1/poll")
    async def poll(request: Request) -> dict[str, object]:
        before = await request.is_disconnected()
        document = await request.json()
        return {"before": before, "after": await request.is_disconnected(), "text": document["text"]}

    answer, sealed = stack.call(stack.wrap(app), "/v1/poll", text("kept"))
    assert json.loads(sealed.open_response(answer.body)) == {"before": False, "after": False, "text": "kept"}
    assert stack.scrubs == [True]


def test_request_headers_that_reshape_the_answer_do_not_reach_the_app(stack: Stack, tmp_path: Path) -> None:
    """The app's response headers are dropped, so an answer shaped by a request header cannot be read:
    httpx (so `Client`) sends `Accept-Encoding: gzip`, a GZipMiddleware in the app compressed the answer,
    and the client opened gzip bytes where it expected JSON. Likewise a `Range` (206, part of a file) or a
    conditional header (304, nothing), which anyone on the way can add. The app sees none of them."""
    report = tmp_path / "report.txt"
    report.write_bytes(b"0123456789" * 100)
    app = FastAPI()
    app.add_middleware(GZipMiddleware, minimum_size=10)

    @app.post("/v1/big")
    async def big(request: Request) -> dict[str, str]:
        await request.body()
        return {"text": "x" * 1000}

    @app.post("/v1/file")
    async def file(request: Request) -> FileResponse:
        await request.body()
        return FileResponse(report)

    wrapped = stack.wrap(app)
    reshaping = [
        (b"accept-encoding", b"gzip, deflate"),
        (b"range", b"bytes=0-3"),
        (b"if-none-match", b"*"),
        (b"if-modified-since", b"Sun, 29 Nov 2099 00:00:00 GMT"),
        (b"if-range", b"*"),
    ]
    opened = []
    for path in ("/v1/big", "/v1/file"):
        sealed = stack.seal(path, b"{}")
        scope = scope_for(path, stack.api_key)
        scope["headers"] += reshaping
        answer = drive(wrapped, scope, sealed.body)
        assert answer.status == 200
        opened.append(sealed.open_response(answer.body))
    assert json.loads(opened[0]) == {"text": "x" * 1000} and opened[1] == report.read_bytes()
    assert stack.scrubs == [True, True]


def test_a_percent_encoded_path_parameter_round_trips(stack: Stack) -> None:
    """`Client.call(f"/v1/items/{quote(name)}")`, the correctly encoded form, was 400 `context_mismatch`:
    the client sealed "/v1/items/a%20b", the ASGI server hands the middleware the decoded "/v1/items/a b".
    The client now seals the decoded path and the query as httpx sends it (`q=a b` goes as `q=a%20b`)."""
    from fastapi.testclient import TestClient

    app = FastAPI()

    @app.post("/v1/items/{name}")
    async def item(name: str) -> dict[str, str]:
        return {"name": name}

    with TestClient(stack.wrap(app)) as http:
        client = Client("http://testserver", api_key=stack.api_key, public_key=stack.client.public_key().token())
        client._http = http
        http.headers["Authorization"] = f"Bearer {stack.api_key}"
        assert json.loads(client.call("/v1/items/a b", b"{}")) == {"name": "a b"}
        assert json.loads(client.call("/v1/items/a%20b", b"{}")) == {"name": "a b"}
        assert json.loads(client.call("/v1/items/b%40c", b"{}")) == {"name": "b@c"}
        assert json.loads(client.call("/v1/items/x?q=a b&r=%C3%A9", b"{}")) == {"name": "x"}


# --- real servers ---------------------------------------------------------------------------------------
def check_server(base: str, stack: Stack, *, sealed_head: bool = True) -> None:
    """The FastAPI app above, over HTTP: a stream, a 204, a file, a query, a raise, HEAD, an unsealed POST."""
    with Client(base, api_key=stack.api_key, public_key=stack.client.public_key().token()) as client:
        streamed = client.call("/v1/stream", text("s"))
        assert streamed == "".join(f"{i}:s;" for i in range(300)).encode()
        assert client.call("/v1/empty/204", b"{}") == b""
        assert client.call("/v1/file", b"{}") == b"file for the tenant " + MARK.encode()
        assert json.loads(client.call("/v1/items/7?q=a%20b", text("t"))) == {"item": 7, "q": "a b", "body": "t"}
        with pytest.raises(ClientError) as raised:
            client.call("/v1/raise", text(MARK))
        assert (raised.value.status, raised.value.code) == (422, "app_rejected_input")
    headers = {"Authorization": f"Bearer {stack.api_key}", "Content-Type": CONTENT_TYPE}
    sealed = stack.seal("/v1/items/7", text("t"))
    head = httpx.request("HEAD", f"{base}/v1/items/7", content=sealed.body, headers=headers, timeout=10)
    assert head.status_code == 405 and head.headers["allow"] == "POST"
    plain = httpx.post(f"{base}/v1/stream", json={"text": MARK}, headers={"Authorization": headers["Authorization"]})
    assert plain.status_code == 415 and MARK not in plain.text


def serve_in_thread(run: Callable[[], None], started: Callable[[], bool]) -> threading.Thread:
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    for _ in range(600):  # up to 30 s on a busy box
        if started():
            return thread
        thread.join(0.05)
    raise AssertionError("the server did not start")


@pytest.mark.parametrize("http_impl", ["h11", "httptools"])
def test_uvicorn(fastapi_stack: tuple[Stack, CleanroomMiddleware, Traces], http_impl: str) -> None:
    import uvicorn

    stack, app, _ = fastapi_stack
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, http=http_impl, log_level="error"))
    thread = serve_in_thread(server.run, lambda: server.started)
    try:
        check_server(f"http://127.0.0.1:{port}", stack)
    finally:
        server.should_exit = True
        thread.join(10)
    assert stack.scrubs == [True] * 5


def test_hypercorn(fastapi_stack: tuple[Stack, CleanroomMiddleware, Traces]) -> None:
    pytest.importorskip("hypercorn")  # in the dev extra
    import asyncio

    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    stack, app, _ = fastapi_stack
    port = free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    stop = threading.Event()

    async def stopped() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.05)

    def listening() -> bool:
        try:
            httpx.get(f"http://127.0.0.1:{port}/nothing", timeout=1)  # unsealed GET: 405, but an answer
            return True
        except httpx.TransportError:
            return False

    thread = serve_in_thread(lambda: asyncio.run(serve(app, config, shutdown_trigger=stopped)), listening)  # type: ignore[arg-type]
    try:
        check_server(f"http://127.0.0.1:{port}", stack)
    finally:
        stop.set()
        thread.join(10)
    assert stack.scrubs == [True] * 5


WORKERS_APP = """
import os
from fastapi import FastAPI, Request
from cleanroom.integrations.asgi import CleanroomMiddleware

def create_app():
    inner = FastAPI()

    @inner.post("/v1/who")
    async def who(request: Request) -> dict:
        return {"pid": os.getpid(), "text": (await request.json())["text"]}

    return CleanroomMiddleware(inner, data_dir=os.environ["CR_DATA"], worker_id=f"web-{os.getpid()}")
"""


def test_uvicorn_two_workers_with_worker_id(tmp_path: Path) -> None:
    """`uvicorn --workers 2`, each worker its own `worker_id`: both start (each its own audit log, no
    fight over DATA_DIR/audit), a sealed call is answered, and its replay is refused by whichever worker
    takes it (the replay cache on the data dir is shared; test_replay_shared.py aims at each worker)."""
    data_dir = tmp_path / "data"
    env = server_env(CR_DATA=str(data_dir))
    made = subprocess.run(
        [sys.executable, "-m", "cleanroom", "tenant", "create", "shop", "--data-dir", str(data_dir), "--json"],
        capture_output=True, check=True, env=env, cwd=REPO,
    )  # fmt: skip
    tenant = json.loads(made.stdout)
    (tmp_path / "workers_app.py").write_text(WORKERS_APP)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", "workers_app:create_app", "--workers", "2"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {tenant['api_key']}", "Content-Type": CONTENT_TYPE}
    try:
        with Client(base, api_key=tenant["api_key"], public_key=tenant["public_key"]) as client:
            sealed = client.seal_request("", text("once"), path="/v1/who")
            deadline = time.monotonic() + 60
            while True:
                try:
                    first = httpx.post(f"{base}/v1/who", content=sealed.body, headers=headers, timeout=10)
                    break
                except httpx.TransportError:
                    assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
            assert first.status_code == 200 and json.loads(sealed.open_response(first.content))["text"] == "once"
            replayed = httpx.post(f"{base}/v1/who", content=sealed.body, headers=headers, timeout=10)
            assert replayed.status_code == 400 and replayed.json()["error"]["code"] == "replayed_request"
            while len(list((data_dir / "workers").iterdir())) < 2:  # the other worker may still be starting
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        assert all(p.name.startswith("web-") for p in (data_dir / "workers").iterdir())
    finally:
        process.terminate()
        process.wait(timeout=30)
