"""Every failure becomes `{"error": {"code", "message"}}` with the right status — never a bare 500 page."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from cleanroom.errors import CleanroomError
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
