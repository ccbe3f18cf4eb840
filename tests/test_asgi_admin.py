"""The ASGI middleware's admin socket: `cleanroom tenant` and `cleanroom keys`, run as real commands on the
data dir of an app that runs the middleware, act in the app's process, and the very next sealed request
sees the change (DESIGN §5: server.json; docs/keys.md §5: a revocation refuses the next request)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from cleanroom.client import Client, ClientError
from cleanroom.config import Settings
from cleanroom.errors import ConfigurationError
from cleanroom.integrations.asgi import CleanroomMiddleware
from support.server import REPO, server_env


def make_app() -> FastAPI:
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, object]:
        return {"seen": (await request.json())["text"]}

    return app


def middleware(data_dir: Path, **kwargs: Any) -> CleanroomMiddleware:
    # A long key cache: the revocation must not wait for it (the admin call purges it in this process).
    settings = Settings(data_dir=data_dir, key_cache_ttl_s=600)
    return CleanroomMiddleware(make_app(), settings=settings, protected_paths=("/predict",), **kwargs)


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(
        [sys.executable, "-m", "cleanroom", *args],
        cwd=REPO,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert run.returncode == 0, run.stderr[-2000:]
    return run


@pytest.fixture
def app(data_dir: Path) -> Iterator[CleanroomMiddleware]:
    wrapped = middleware(data_dir)
    try:
        yield wrapped
    finally:
        wrapped.close()


def caller(app: CleanroomMiddleware, api_key: str) -> Any:
    http = TestClient(app)
    client = Client("http://testserver", api_key=api_key)
    client._http = http
    http.headers["Authorization"] = f"Bearer {api_key}"

    def call() -> tuple[int, str]:
        try:
            return 200, json.loads(client.call("/predict", b'{"text": "x"}'))["seen"]
        except ClientError as exc:
            return exc.status, exc.code

    return call


def test_tenant_and_keys_commands_act_on_the_running_app_at_once(app: CleanroomMiddleware, data_dir: Path) -> None:
    sock = data_dir / "admin.sock"
    assert stat.S_ISSOCK(os.stat(sock).st_mode) and stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    state = json.loads((data_dir / "server.json").read_text())
    assert state["pid"] == os.getpid() and state["admin_socket"] == str(sock.resolve())
    assert stat.S_IMODE(os.stat(data_dir / "server.json").st_mode) == 0o600

    d = ("--data-dir", str(data_dir))
    created = json.loads(cli("tenant", "create", "shop", *d, "--json").stdout)
    listed = json.loads(cli("tenant", "list", *d, "--json").stdout)
    assert [t["name"] for t in listed] == ["shop"]
    credential = listed[0]["credentials"][0]["id"]
    call = caller(app, created["api_key"])
    assert call() == (200, "x")  # the tenant made by the command is known to the app at once

    cli("keys", "revoke", "--credential", credential, *d)
    assert call() == (401, "credential_revoked")
    cli("keys", "restore", "--credential", credential, *d)
    assert call() == (200, "x")
    cli("keys", "revoke", "--tenant", "shop", *d)
    assert call() == (403, "tenant_revoked")
    cli("keys", "restore", "--tenant", "shop", *d)
    assert call() == (200, "x")
    cli("keys", "revoke", "--system", *d)
    assert call() == (503, "system_sealed")
    cli("keys", "restore", "--system", *d)
    assert call() == (200, "x")


def test_the_socket_serves_only_the_admin_routes_and_only_with_the_token(
    app: CleanroomMiddleware, data_dir: Path
) -> None:
    transport = httpx.HTTPTransport(uds=str(data_dir / "admin.sock"))
    token = (data_dir / "admin.token").read_text().strip()
    with httpx.Client(base_url="http://admin", transport=transport, timeout=10) as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {token}x"}):
            refused = http.get("/v1/admin/tenants", headers=headers)
            assert refused.status_code == 401 and refused.json()["error"]["code"] in (
                "bad_admin_token",
                "unauthenticated",
            )
        no_body = http.post("/v1/admin/tenants", headers={"Authorization": "Bearer wrong"}, content=b"{}" * 10)
        assert no_body.status_code == 401
        good = {"Authorization": f"Bearer {token}"}
        assert http.get("/v1/admin/tenants", headers=good).json() == {"tenants": []}
        for path in ("/healthz", "/predict", "/v1/tenants/self/public-key", "/openapi.json", "/docs"):
            assert http.get(path, headers=good).status_code == 404


def test_close_removes_socket_and_server_json_and_the_cli_falls_back(data_dir: Path) -> None:
    wrapped = middleware(data_dir)
    wrapped.close()
    wrapped.close()  # idempotent
    assert not (data_dir / "admin.sock").exists() and not (data_dir / "server.json").exists()
    created = json.loads(cli("tenant", "create", "shop", "--data-dir", str(data_dir), "--json").stdout)
    assert created["api_key"]  # done on the data dir itself: the app's audit log was released


def test_a_stale_socket_is_replaced_and_a_live_one_refused(data_dir: Path) -> None:
    data_dir.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(data_dir / "admin.sock"))  # bound, never listening, then closed: as a dead process leaves it
    stale.close()
    (data_dir / "server.json").write_text(json.dumps({"pid": 2**22 + 7, "admin_socket": "x", "admin_token_file": "y"}))
    first = middleware(data_dir)
    try:
        assert json.loads((data_dir / "server.json").read_text())["pid"] == os.getpid()
        with pytest.raises(ConfigurationError, match="served by another live process"):
            middleware(data_dir)
        assert (data_dir / "admin.sock").exists()  # the refused one removed nothing of the first
        assert json.loads((data_dir / "server.json").read_text())["pid"] == os.getpid()
    finally:
        first.close()
    assert not (data_dir / "admin.sock").exists()


def test_closing_the_services_alone_frees_the_socket(data_dir: Path) -> None:
    wrapped = middleware(data_dir)
    wrapped.services.close()
    thread = wrapped._admin._thread  # type: ignore[union-attr]
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert not (data_dir / "admin.sock").exists() and not (data_dir / "server.json").exists()
    wrapped.close()


def test_no_socket_when_turned_off_or_when_services_are_passed_in(data_dir: Path, memory_audit: Any) -> None:
    from cleanroom.runtime.models import ModelRegistry
    from cleanroom.server.services import build_services

    wrapped = middleware(data_dir, admin_socket=False)
    try:
        assert not (data_dir / "admin.sock").exists() and not (data_dir / "server.json").exists()
    finally:
        wrapped.close()
    services = build_services(Settings(data_dir=data_dir), audit=memory_audit, models=ModelRegistry({}))
    try:
        wrapped = middleware(data_dir, services=services)
        assert not (data_dir / "admin.sock").exists() and not (data_dir / "server.json").exists()
        wrapped.close()  # not ours to close: the caller's Services stay open
        assert not services._closed.is_set()
    finally:
        services.close()
