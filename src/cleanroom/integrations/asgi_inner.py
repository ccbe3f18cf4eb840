"""Calling the app behind `CleanroomMiddleware`: the scope it is shown, the opened body it is handed, and its
whole answer collected to be sealed as one message.

Separate from the middleware's own checks (`asgi`) because this is where the app's behaviour is absorbed:
response extensions hidden (an answer sent through them would never be sealed), the API key and the sealed
content headers replaced, the app's exceptions reduced to their type (their text may quote the plaintext),
and `http.disconnect` reported after the body as a server would.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel

from cleanroom.errors import CleanroomError, InvalidPayload
from cleanroom.integrations.asgi_messages import Message, Receive, Scope, Send
from cleanroom.runtime.models import RequestScope
from cleanroom.runtime.session import clear_exception_frames

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
log = logging.getLogger("cleanroom.asgi")
# Request headers the app does not see. The API key, and the sealed body's own framing (replaced below). And
# those that ask for an answer other than the whole representation: a content-coding (httpx, so `Client`,
# sends `Accept-Encoding: gzip`, and a GZipMiddleware in the app compressed the answer), a part (`Range`:
# 206) or nothing (conditionals: 304). The app's response headers (Content-Encoding, Content-Range) are
# dropped, so such an answer could not be read; and anyone on the way can add these headers.
HIDDEN_REQUEST_HEADERS = frozenset(
    {
        b"authorization",
        b"content-type",
        b"content-length",
        b"accept-encoding",
        b"range",
        b"if-range",
        b"if-none-match",
        b"if-modified-since",
    }
)


def gather(chunks: list[bytes], scope: RequestScope) -> memoryview:
    """The chunks, concatenated into one of the request's SecureBuffers."""
    view = scope.new_buffer(sum(len(c) for c in chunks)).view()
    offset = 0
    for chunk in chunks:
        view[offset : offset + len(chunk)] = chunk
        offset += len(chunk)
    return view


async def run_app(
    app: ASGIApp,
    scope: Scope,
    body: bytes,
    content_type: str | None = None,
    *,
    disconnected: Receive | None = None,
) -> tuple[int, list[tuple[bytes, bytes]], list[bytes]]:
    """Call the app with `body` and collect its whole response (it is sealed as one message).

    After the body, the app's `receive` waits on `disconnected` (the server's own `receive`, whose body was
    read already) and answers `http.disconnect` when the client goes, as ASGI servers do. Waiting forever
    instead kept an app that listens for the disconnect (or reads again) alive after its client left,
    holding its copy of the plaintext and the request's SecureBuffer open for good.
    """
    sent = False
    status = 500
    headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            # A receive in an already-cancelled scope (Starlette's `is_disconnected()`, called before the
            # body is read) keeps whatever it gets unless it is a disconnect: handed out without this
            # check, the body was dropped there and the handler's read waited for the client to go.
            await anyio.lowlevel.checkpoint_if_cancelled()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        if disconnected is None:
            await anyio.sleep_forever()
        else:
            while (await disconnected())["type"] != "http.disconnect":
                pass  # the outer body was read to its end: nothing else is expected but the disconnect
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status, headers
        if message["type"] == "http.response.start":
            status, headers = int(message["status"]), list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            chunks.append(bytes(message.get("body", b"")))

    inner = dict(scope)
    if "extensions" in scope:
        # Response extensions (pathsend, zerocopy, trailers, early hints) would let the app send its answer
        # some other way than `http.response.body`: nothing of it would be sealed. Hidden from the app.
        extensions = scope["extensions"] or {}
        inner["extensions"] = {k: v for k, v in extensions.items() if not k.startswith("http.response.")}
    inner["headers"] = [(k, v) for k, v in scope["headers"] if bytes(k).lower() not in HIDDEN_REQUEST_HEADERS]
    inner["headers"] += [(b"content-length", str(len(body)).encode())]
    if content_type:
        inner["headers"] += [(b"content-type", content_type.encode("latin-1"))]
    failed = ""
    try:
        await app(inner, receive, send)
    except CleanroomError:
        raise
    except Exception as exc:
        # The server would log this exception, and its message may quote the plaintext (a KeyError on a
        # payload value does); its frames hold the app's copies of it, kept alive by exception <-> frame
        # cycles until the cyclic GC runs. Keep only the type, clear the frames, and raise outside this
        # block so the new error has no `__context__`. Answered like `run_model`: 422, never a 500.
        failed = type(exc).__name__
        clear_exception_frames(exc)  # the chained ones too: a decoder error's `doc` is the whole body
    if failed:
        chunks.clear()
        log.warning("the app raised %s on a sealed request", failed)
        raise InvalidPayload(f"the app could not process this input ({failed})", code="app_rejected_input")
    return status, headers, chunks
