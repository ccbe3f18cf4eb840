"""Helpers for the transport-hardening tests: raw HTTP over (m)TLS sockets, tenants via the admin API, an
in-process uvicorn server with the hardened protocol, and a scan of the server log for server errors."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)


def admin_create_tenant(server: Any, name: str) -> dict[str, Any]:
    """Create a tenant through the running server's admin API (much faster than the CLI subprocess)."""
    token = (Path(server.data_dir) / "admin.token").read_text().strip()
    with server.http() as http:
        response = http.post("/v1/admin/tenants", json={"name": name}, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.text
    server.tenants[name] = response.json()
    return server.tenants[name]


def client_context(ca: str | Path | None, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


def open_socket(url: str, context: ssl.SSLContext | None = None, timeout_s: float = 10) -> socket.socket:
    host, port = address(url)
    raw = socket.create_connection((host, port), timeout=timeout_s)
    if context is None:
        return raw
    return context.wrap_socket(raw, server_hostname=host)


def read_response(sock: socket.socket, *, head_request: bool = False) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body (what the server always sends)."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a response head: {buffer[:200]!r}")
        buffer += chunk
    head, _, body = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = 0 if head_request else int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body[:length]


def request(
    sock: socket.socket, method: str, path: str, *, headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[int, dict[str, str], bytes]:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    return read_response(sock)


def json_error(body: bytes) -> dict[str, str]:
    error = json.loads(body)["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    return dict(error)


_SERVER_ERROR = re.compile(r'" 5\d\d|Exception in ASGI application|"unexpected |Traceback')


def server_errors_in_log(log_path: Path, allowed: tuple[str, ...] = ()) -> list[str]:
    """Log lines that show a 5xx answered by a route or an unhandled exception (503s from limits excepted)."""
    lines = []
    for line in Path(log_path).read_text(errors="replace").splitlines():
        if _SERVER_ERROR.search(line) and not any(a in line for a in allowed):
            lines.append(line)
    return lines


def wait_healthy(url: str, verify: Any, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with httpx.Client(verify=verify, timeout=5) as http:
                if http.get(f"{url}/healthz").status_code == 200:
                    return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} did not become healthy"
        time.sleep(0.1)


class ThreadServer:
    """uvicorn with cleanroom's hardened protocol and TLS context, serving `app` from a thread (in-process:
    starts in milliseconds, for tests of the transport layer that do not need the whole runtime)."""

    def __init__(self, app: Any, *, context: ssl.SSLContext | None = None, limits: Any = None) -> None:
        import uvicorn

        from cleanroom.server.limits import ConnectionLimits, harden_asgi, hardened_protocol

        limits = limits or ConnectionLimits()
        self.limits = limits
        factory = (lambda _config, _default: context) if context is not None else None
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._sock = sock
        config = uvicorn.Config(
            harden_asgi(app),
            log_config=None,
            http=hardened_protocol(limits),
            ssl_context_factory=factory,
            timeout_keep_alive=limits.keep_alive_timeout_s,
            lifespan="off",
            loop="asyncio",
            server_header=False,
        )
        self.server = uvicorn.Server(config)
        self.url = f"{'https' if context else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=lambda: asyncio.run(self.server.serve(sockets=[sock])), daemon=True)

    def __enter__(self) -> ThreadServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "in-process server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(10)
        self._sock.close()


async def scope_echo_app(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app that answers with the TLS extension it saw (identities only) and drains the body."""
    if scope["type"] == "lifespan":
        return
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        more = message.get("more_body", False)
    tls = (scope.get("extensions") or {}).get("tls") or {}
    body = json.dumps(
        {"identities": tls.get("cleanroom_client_identities", []), "client_cert_name": tls.get("client_cert_name")}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


@contextmanager
def slow_app_gate() -> Iterator[tuple[Any, threading.Event]]:
    """An ASGI app whose requests wait until the returned event is set (fills the in-flight limit)."""
    release = threading.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while not release.is_set():
            await asyncio.sleep(0.01)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    try:
        yield app, release
    finally:
        release.set()


def send_sealed(
    server: Any, tenant: str, payload: bytes, *, model: str = "echo", body_fraction: float = 1.0
) -> ssl.SSLSocket:
    """Send a sealed request (all of it, or only part of the body) on a socket the caller then abandons."""
    with server.client(tenant) as client:
        sealed = client.seal_request(model, payload)
    body = sealed.body[: int(len(sealed.body) * body_fraction)]
    sock = open_socket(server.url, ssl.create_default_context(cafile=server.cert))
    key = server.tenants[tenant]["api_key"]
    sock.sendall(
        (
            f"POST /v1/models/{model}/infer HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/vnd.cleanroom.sealed\r\nContent-Length: {len(sealed.body)}\r\n\r\n"
        ).encode()
        + body
    )
    assert isinstance(sock, ssl.SSLSocket)
    return sock


def vanish(sock: socket.socket) -> None:
    """Close with a TCP reset, as a crashed client or a dropped network path looks to the server."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@contextmanager
def serving_tenants(handle: Any, *tenants: str) -> Iterator[Any]:
    """A started server with `tenants` created through its admin API; stopped on exit, whatever happens."""
    try:
        for tenant in tenants:
            admin_create_tenant(handle, tenant)
        yield handle
    finally:
        handle.stop()
