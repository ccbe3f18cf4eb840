"""Every response carries HSTS and the security headers: successes, route errors, framework errors and the
errors the transport layer writes itself; HSTS only over HTTPS."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from cleanroom.server.headers import HSTS, SecurityHeadersMiddleware, add_security_headers
from support.hardening import ThreadServer, admin_create_tenant, open_socket, request
from support.server import start_server

EXPECTED = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def assert_hardened(headers: Any, *, https: bool = True) -> None:
    lowered = {k.lower(): v for k, v in dict(headers).items()}
    for name, value in EXPECTED.items():
        assert lowered.get(name) == value, (name, lowered)
    csp = lowered["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    if https:
        assert lowered["strict-transport-security"] == "max-age=63072000; includeSubDomains; preload"
    else:
        assert "strict-transport-security" not in lowered
    assert "server" not in lowered, "the server banner leaks the stack"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    handle = start_server(tmp_path_factory.mktemp("headers") / "data", "--models", "echo")
    try:
        admin_create_tenant(handle, "alpha")
        yield handle
    finally:
        handle.stop()


def test_every_kind_of_response_is_hardened(server: Any) -> None:
    key = server.tenants["alpha"]["api_key"]
    sealed = {"Content-Type": "application/vnd.cleanroom.sealed", "Authorization": f"Bearer {key}"}
    with server.http() as http:
        cases = [
            (http.get("/healthz"), 200),
            (http.get("/readyz"), 200),
            (http.head("/healthz"), 200),  # load balancers probe with HEAD
            (http.head("/readyz"), 200),
            (http.get("/metrics"), 200),
            (http.get("/openapi.json"), 200),
            (http.get("/v1/tenants/self/public-key", headers={"Authorization": f"Bearer {key}"}), 200),
            (http.get("/no/such/route"), 404),
            (http.delete("/healthz"), 405),
            (http.get("/v1/tenants/self/public-key"), 401),
            (http.post("/v1/models/echo/infer", content=b"x", headers={**sealed, "Content-Type": "text/plain"}), 415),
            (http.post("/v1/models/echo/infer", content=b"\x00" * 64, headers=sealed), 400),
            (http.post("/v1/models/nope/infer", content=b"x", headers=sealed), 404),
        ]
        for response, status in cases:
            assert response.status_code == status, (response.request.url, response.text)
            assert_hardened(response.headers)
            if status >= 400:
                assert set(response.json()["error"]) == {"code", "message"}
    with server.client("alpha") as client:
        sealed_request = client.seal_request("echo", b"sealed payload")
        with server.http() as http:
            response = http.post("/v1/models/echo/infer", content=sealed_request.body, headers=sealed)
        assert response.status_code == 200
        assert_hardened(response.headers)
        assert sealed_request.open_response(response.content) == b"sealed payload"


def test_transport_layer_errors_are_hardened_too(server: Any) -> None:
    with open_socket(server.url, __import__("ssl").create_default_context(cafile=server.cert)) as sock:
        status, headers, body = request(sock, "GET", "/healthz", headers={"X-Filler": "a" * 40_000})
    assert status == 431
    assert json.loads(body)["error"]["code"] == "request_header_too_large"
    assert_hardened(headers)


def test_plain_http_listener_sends_no_hsts() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    with ThreadServer(app) as plain, open_socket(plain.url) as sock:
        status, headers, _ = request(sock, "GET", "/")
    assert status == 200
    assert_hardened(headers, https=False)


def test_route_choices_are_overridden_or_kept_deliberately() -> None:
    headers = add_security_headers(
        [
            (b"X-Frame-Options", b"ALLOWALL"),
            (b"cache-control", b"max-age=60"),
            (b"strict-transport-security", b"max-age=1"),
        ],
        https=True,
    )
    as_dict = {k.lower(): v for k, v in headers}
    assert as_dict[b"x-frame-options"] == b"DENY"  # never weakened by a route
    assert as_dict[b"strict-transport-security"] == HSTS
    assert as_dict[b"cache-control"] == b"max-age=60"  # a route may choose its own caching
    assert len([k for k, _ in headers if k.lower() == b"x-frame-options"]) == 1


def test_non_http_scopes_pass_through_untouched() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "lifespan.startup.complete"})

    async def send(message: Any) -> None:
        seen.append(message)

    async def receive() -> Any:
        return {}

    asyncio.run(SecurityHeadersMiddleware(app)({"type": "lifespan"}, receive, send))
    assert seen == [{"type": "lifespan.startup.complete"}]
