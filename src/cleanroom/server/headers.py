"""Security headers on every HTTP response, as pure ASGI middleware (no per-request Request objects).

The API returns JSON and sealed bytes, never HTML, so the policy is the strictest one: nothing may be
framed, sniffed, cached, referred or loaded. HSTS is sent on HTTPS responses only (RFC 6797 §7.2: a
browser ignores it over plain HTTP, and a plain-HTTP listener here is loopback-only anyway).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# ASGI scope extension set by the hardened protocol (limits.py): a callable, no arguments, that cuts the
# current response mid-body when it cannot be finished (the data behind it was shredded meanwhile).
ABORT_EXTENSION = "cleanroom.abort_response"

HSTS = b"max-age=63072000; includeSubDomains; preload"  # two years, as hstspreload.org requires
CONTENT_SECURITY_POLICY = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

# (name, value, replace): `replace=False` keeps a value the route chose itself (e.g. a cacheable schema).
_COMMON: tuple[tuple[bytes, bytes, bool], ...] = (
    (b"x-content-type-options", b"nosniff", True),
    (b"x-frame-options", b"DENY", True),
    (b"referrer-policy", b"no-referrer", True),
    (b"content-security-policy", CONTENT_SECURITY_POLICY, True),
    (b"cross-origin-resource-policy", b"same-origin", True),
    (b"cache-control", b"no-store", False),
)


def security_headers(https: bool) -> list[tuple[bytes, bytes]]:
    """The headers as a list, for responses written outside the ASGI app (protocol-level errors)."""
    headers = [(name, value) for name, value, _ in _COMMON]
    if https:
        headers.append((b"strict-transport-security", HSTS))
    return headers


def add_security_headers(headers: list[tuple[bytes, bytes]], https: bool) -> list[tuple[bytes, bytes]]:
    present = {name.lower() for name, _ in headers}
    replaced = {name for name, _, replace in _COMMON if replace}
    if https:
        replaced.add(b"strict-transport-security")
    out = [(name, value) for name, value in headers if name.lower() not in replaced]
    out += [(name, value) for name, value, replace in _COMMON if replace or name not in present]
    if https:
        out.append((b"strict-transport-security", HSTS))
    return out


class SecurityHeadersMiddleware:
    """Adds the security headers to every `http.response.start`; other scopes pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = add_security_headers(list(message.get("headers", [])), https)
            await send(message)

        await self.app(scope, receive, send_with_headers)
