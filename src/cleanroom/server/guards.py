"""The ASGI layers every listener wraps around the app (`harden_asgi`), below the HTTP protocol's limits.

Each answers one thing uvicorn hands the app unchecked: a client gone mid-request (not a server error), a
missing, doubled or malformed Host header (RFC 9112 §3.2), and a chunked body whose size lines announce
more than the route's limit (refused as soon as it is known, not at the body deadline). `ChunkedBody` is
the state the protocol (`limits.HardenedHttpToolsProtocol`) and `BodyLimitGuard` share through the scope.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from cleanroom.server.errors import send_error
from cleanroom.server.headers import ASGIApp, Receive, Scope, Send

BODY_EXTENSION = "cleanroom.chunked_body"


@dataclass
class ChunkedBody:
    """A chunked request's total announced by its size lines so far, and the route's body limit once
    `BodyLimitGuard` has seen the request (the ASGI task starts after the head; more size lines may come
    first). Shared between the protocol and the guard through the scope's extensions."""

    announced: int = 0
    limit: int | None = None


class DisconnectGuard:
    """Outermost ASGI layer: a client that went away mid-request is not a server error.

    Starlette raises `ClientDisconnect` from `request.stream()` when the peer disconnects (or the body
    deadline fired); left alone it reaches uvicorn as "Exception in ASGI application".
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from starlette.requests import ClientDisconnect

        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            return


# RFC 3986 host [":" port]: an IP literal or a reg-name (unreserved, pct-encoded, sub-delims); may be empty.
_HOST_RE = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]*)(?::[0-9]{0,5})?")


def host_problem(scope: Scope) -> str | None:
    """Why the request's Host header breaks RFC 9112 §3.2, or None. uvicorn hands all three cases to the
    app (they were 200s): a proxy or virtual-host router in front may then act on another Host than ours."""
    hosts = [bytes(v) for k, v in scope["headers"] if k == b"host"]
    if len(hosts) > 1:
        return f"send one Host header, not {len(hosts)}"
    if not hosts:
        return "an HTTP/1.1 request needs a Host header" if scope.get("http_version") == "1.1" else None
    if not _HOST_RE.fullmatch(hosts[0]):
        return "the Host header is not a host[:port]"
    return None


class HostGuard:
    """400 `invalid_host` (connection closed) where `host_problem` finds one; the request never reaches
    the app. The MUST of RFC 9112 §3.2, for every route, probes included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem = host_problem(scope) if scope["type"] == "http" else None
        if problem is None:
            await self.app(scope, receive, send)
        else:
            await send_error(send, 400, "invalid_host", problem)


def route_body_limit(app: ASGIApp) -> Callable[[Scope], int] | None:
    """The limit each route gives `read_body` (app.py, batches.py, admin.py), from the app's settings; None
    for an app that has none (then only the route itself enforces one)."""
    settings = getattr(getattr(getattr(app, "state", None), "services", None), "settings", None)
    if settings is None:
        return None
    from cleanroom.server.admin import ADMIN_BODY_LIMIT_BYTES
    from cleanroom.server.batches import BATCHES_PATH

    def limit(scope: Scope) -> int:
        path = str(scope.get("path", ""))
        if path.startswith("/v1/admin/"):
            return ADMIN_BODY_LIMIT_BYTES
        return int(settings.max_batch_body_bytes if path == BATCHES_PATH else settings.max_body_bytes)

    return limit


class BodyLimitGuard:
    """Hands the route's body limit to the protocol's `ChunkedBody`, and answers 413 at once when the size
    lines that arrived with the head already announce more (the protocol refuses later ones itself)."""

    def __init__(self, app: ASGIApp, limit: Callable[[Scope], int] | None) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = (scope.get("extensions") or {}).get(BODY_EXTENSION) if scope["type"] == "http" else None
        if isinstance(body, ChunkedBody) and self.limit is not None:
            body.limit = self.limit(scope)
            if body.announced > body.limit:
                message = f"the chunked body announces more than the {body.limit}-byte limit"
                await send_error(send, 413, "payload_too_large", message)
                return
        await self.app(scope, receive, send)


def harden_asgi(app: ASGIApp) -> ASGIApp:
    """The layers every listener wraps around the FastAPI app (outermost first)."""
    from cleanroom.server.headers import SecurityHeadersMiddleware

    return DisconnectGuard(SecurityHeadersMiddleware(HostGuard(BodyLimitGuard(app, route_body_limit(app)))))
