"""Every failure becomes `{"error": {"code", "message"}}` with the right status — never a bare 500 page."""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match
from uvicorn.protocols.http.httptools_impl import STATUS_LINE

from cleanroom.errors import CleanroomError
from cleanroom.server.headers import ASGIApp, Receive, Scope, Send, security_headers
from cleanroom.server.metrics import code_label

log = logging.getLogger("cleanroom.server")

_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


# --- answered below the app (the hardened protocol, the ASGI guards in limits.py) ---------------------
def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


def raw_error_response(
    status: int, code: str, message: str, *, https: bool, extra: tuple[tuple[bytes, bytes], ...] = ()
) -> bytes:
    """A complete HTTP/1.1 JSON error response that closes the connection (written below the ASGI app)."""
    body = error_body(code, message)
    lines = [STATUS_LINE[status]]
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *extra,
        *security_headers(https),
    ]
    lines += [name + b": " + value + b"\r\n" for name, value in headers]
    return b"".join([*lines, b"\r\n", body])


def busy_app(code: str, message: str, *, close: bool) -> ASGIApp:
    """An ASGI app that answers 503 JSON (the request never reaches the real app)."""
    body = error_body(code, message)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"1"),
            *security_headers(scope.get("scheme") == "https"),
        ]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return app


async def send_error(send: Send, status: int, code: str, message: str) -> None:
    """A JSON error from an ASGI layer in front of the app, closing the connection."""
    body = error_body(code, message)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


# --- answered by the app ------------------------------------------------------------------------------
def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path. Starlette's own 405 names only the first route that
    matched the path (GET and HEAD, or GET and DELETE, declared as two routes gave `Allow: HEAD`)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CleanroomError)
    async def _cleanroom(request: Request, exc: CleanroomError) -> JSONResponse:
        metrics = getattr(request.app.state, "metrics", None)
        if metrics is not None:
            metrics.errors.labels(code=code_label(exc.code)).inc()
        return error_response(exc.status, exc.code, exc.message, exc.headers())

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = ", ".join(".".join(str(p) for p in e.get("loc", ())) for e in exc.errors()) or "request"
        return error_response(422, "invalid_request", f"invalid or missing fields: {fields}")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        message = str(exc.detail)
        if exc.status_code == 405:
            allowed = allowed_methods(request)
            if allowed:
                headers["Allow"] = ", ".join(allowed)
                message = f"{request.method} is not allowed here; use {' or '.join(allowed)}"
        return error_response(exc.status_code, code, message, headers)

    @app.exception_handler(ClientDisconnect)
    async def _client_gone(request: Request, exc: ClientDisconnect) -> JSONResponse:
        # The peer closed mid-body (or the body deadline cut it off): not a server error. Nobody reads this.
        log.info("client went away during %s %s", request.method, request.url.path)
        return error_response(400, "client_disconnected", "the client closed the connection mid-request")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Never echo the exception text: it may quote payload bytes. The type is enough to debug.
        log.error("unexpected %s while handling %s %s", type(exc).__name__, request.method, request.url.path)
        return error_response(500, "internal_error", "the server failed unexpectedly; the error was logged")
