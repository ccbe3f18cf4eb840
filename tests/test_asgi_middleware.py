"""The ASGI middleware in front of an ordinary FastAPI app, in process and under `cleanroom exec`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from cleanroom.client import Client
from cleanroom.config import Settings
from cleanroom.integrations.asgi import CleanroomMiddleware
from support.server import REPO, server_env


def make_app() -> FastAPI:
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, object]:
        document = await request.json()
        return {"reversed": document["text"][::-1], "saw_auth_header": "authorization" in request.headers}

    @app.get("/open/health")
    async def health() -> dict[str, str]:
        return {"ok": "yes"}

    return app


@pytest.fixture
def wrapped(data_dir: Path, memory_audit):  # type: ignore[no-untyped-def]
    from cleanroom.runtime.models import ModelRegistry
    from cleanroom.server.services import build_services

    settings = Settings(data_dir=data_dir)
    services = build_services(settings, audit=memory_audit, models=ModelRegistry({}))
    created = services.tenants.create("shop")
    app = CleanroomMiddleware(make_app(), settings=settings, protected_paths=("/predict",), services=services)
    http = TestClient(app)
    client = Client("http://testserver", api_key=created.api_key)
    client._http = http
    http.headers["Authorization"] = f"Bearer {created.api_key}"
    yield client, http, memory_audit, services.tenants
    services.close()


def test_sealed_call_reaches_the_app_and_comes_back_sealed(wrapped) -> None:
    client, http, audit, _ = wrapped
    answer = json.loads(client.call("/predict", json.dumps({"text": "abc"}).encode()))
    assert answer == {"reversed": "cba", "saw_auth_header": False}  # the API key never reaches the app
    assert audit.events[-1]["event"] == "decrypt.request_key" and audit.events[-1]["model"] == "/predict"


def test_unsealed_requests_are_refused_and_open_paths_pass(wrapped) -> None:
    client, http, _, _ = wrapped
    refused = http.post("/predict", json={"text": "plain"})
    assert refused.status_code == 415 and refused.json()["error"]["code"] == "unsupported_media_type"
    assert http.get("/open/health").json() == {"ok": "yes"}


def test_request_sealed_for_another_path_is_refused(wrapped) -> None:
    client, http, _, _ = wrapped
    sealed = client.seal_request("", b'{"text": "x"}', path="/other")
    response = http.post("/predict", content=sealed.body, headers={"Content-Type": "application/vnd.cleanroom.sealed"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "context_mismatch"
    body = bytearray(client.seal_request("", b'{"text": "x"}', path="/predict").body)
    body[-1] ^= 1
    tampered = http.post("/predict", content=bytes(body), headers={"Content-Type": "application/vnd.cleanroom.sealed"})
    assert tampered.status_code == 400 and tampered.json()["error"]["code"] == "decryption_failed"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


APP_MODULE = """
import os
from cleanroom.integrations.asgi import CleanroomMiddleware
from test_asgi_middleware import make_app
app = CleanroomMiddleware(make_app(), data_dir=os.environ["CR_DATA"], protected_paths=("/predict",))
"""


def test_uvicorn_under_cleanroom_exec(tmp_path: Path) -> None:
    """Someone else's server (uvicorn) run with `cleanroom exec`, the middleware in front of its app."""
    data_dir = tmp_path / "data"
    out = subprocess.run(
        [sys.executable, "-m", "cleanroom", "tenant", "create", "shop", "--data-dir", str(data_dir), "--json"],
        capture_output=True,
        check=True,
        env=server_env(),
        cwd=REPO,
    )
    tenant = json.loads(out.stdout)
    (tmp_path / "wrapped_app.py").write_text(APP_MODULE)
    port = free_port()
    env = server_env(CR_DATA=str(data_dir))
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO / "tests"), env["PYTHONPATH"]])
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cleanroom",
            "exec",
            "--",
            sys.executable,
            "-m",
            "uvicorn",
            "wrapped_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/open/health", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
                assert time.monotonic() < deadline
                time.sleep(0.2)
        with Client(f"http://127.0.0.1:{port}", api_key=tenant["api_key"]) as client:
            answer = json.loads(client.call("/predict", b'{"text": "hello"}'))
        assert answer["reversed"] == "olleh"
        environ = open(f"/proc/{process.pid}/environ", "rb").read().split(b"\0")
        assert b"PYTHONMALLOC=malloc" in environ
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_middleware_enforces_the_tenant_allowlist(wrapped) -> None:
    client, http, audit, tenants = wrapped
    tenants.update("shop", allow=["192.0.2.0/24"])  # TestClient's peer is "testclient", not on the list
    from cleanroom.client import ClientError

    with pytest.raises(ClientError) as info:
        client.call("/predict", b'{"text": "x"}')
    assert (info.value.status, info.value.code) == (403, "address_not_allowed")
    assert any(e["event"] == "auth.address_refused" for e in audit.events)
    tenants.update("shop", allow=[])
    assert json.loads(client.call("/predict", b'{"text": "ok"}'))["reversed"] == "ko"
