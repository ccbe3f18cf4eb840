"""Raw ASGI message helpers for the middleware and the Ray Serve routes: a header's value, the bearer token,
a request body read within a size limit, and a JSON answer — the pieces of Starlette's `Request` and
`JSONResponse` a pure ASGI middleware needs, without building either per request."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from cleanroom.errors import BadRequest, CleanroomError, PayloadTooLarge, Unauthenticated

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def header(scope: Scope, name: bytes) -> str:
    """The first value of header `name` (lowercase), or "". Names are compared case-insensitively: servers
    should lowercase them (ASGI spec), but a test harness or a hand-built scope may not."""
    for key, value in scope["headers"]:
        if bytes(key).lower() == name:
            return bytes(value).decode("latin-1")
    return ""


def single_header(scope: Scope, name: bytes) -> str:
    """The one value of a header that must appear at most once (RFC 9110 §5.3), or "". Two Authorization
    (or Content-Type) headers are refused, as `cleanroom serve` does: the first one used to win here, and a
    proxy in front may act on the other one."""
    values = [bytes(v).decode("latin-1") for k, v in scope["headers"] if bytes(k).lower() == name]
    if len(values) > 1:
        title = name.decode("latin-1").title()
        raise BadRequest(f"send one {title} header, not {len(values)}", code="duplicate_header")
    return values[0] if values else ""


def bearer(scope: Scope) -> str:
    scheme, _, token = single_header(scope, b"authorization").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send the API key as `Authorization: Bearer cr_...`")
    return token.strip()


async def read_body(receive: Receive, limit_bytes: int) -> bytes:
    # One growing buffer, not a list of the pieces: a body trickled in 2-byte messages peaked at ~60x its
    # size as a list of `bytes` objects (measured with tracemalloc; gigabytes for a 64 MiB body), ~2x now.
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise CleanroomError("client disconnected", code="client_disconnected")
        chunk = message.get("body", b"")
        if len(body) + len(chunk) > limit_bytes:
            raise PayloadTooLarge(f"request body is larger than the {limit_bytes}-byte limit")
        body += chunk
        if not message.get("more_body", False):
            return bytes(body)


async def send_json(send: Send, status: int, document: Any, extra_headers: dict[str, str] | None = None) -> None:
    body = json.dumps(document).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (extra_headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
