"""The scheduler through the real server: backpressure (429 + Retry-After), disconnects, SIGTERM drain."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
import torch
from safetensors.torch import save

from cleanroom.crypto.sealed import CONTENT_TYPE
from support.server import ServerHandle, server_env, start_server


def held_payload() -> bytes:
    return save({"input": torch.arange(16, dtype=torch.uint8)})


def wait_for(path: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def start(tmp_path: Path, **settings: str) -> tuple[ServerHandle, Path]:
    signals = tmp_path / "signals"
    signals.mkdir()
    env = server_env(CLEANROOM_TEST_SIGNAL_DIR=str(signals), **settings)
    server = start_server(
        tmp_path / "data", "--models", "echo", "--model", "hold=support.hold_model:hold_factory", tls=False, env=env
    )
    server.create_tenant("busy")
    server.create_tenant("other")
    return server, signals


def metric(server: ServerHandle, name: str) -> float:
    with server.http() as http:
        text = http.get("/metrics").text
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def post_sealed(server: ServerHandle, tenant: str, model: str, payload: bytes, timeout_s: float = 60) -> httpx.Response:
    with server.client(tenant) as client:
        sealed = client.seal_request(model, payload)
        with httpx.Client(base_url=server.url, timeout=timeout_s) as http:
            return http.post(
                f"/v1/models/{model}/infer",
                content=sealed.body,
                headers={"Authorization": f"Bearer {server.tenants[tenant]['api_key']}", "Content-Type": CONTENT_TYPE},
            )


def test_queue_limit_gives_429_with_retry_after_and_other_tenants_still_run(tmp_path: Path) -> None:
    server, signals = start(tmp_path, CLEANROOM_TENANT_MAX_QUEUED="1", CLEANROOM_TENANT_MAX_IN_FLIGHT="2")
    try:
        running = threading.Thread(target=post_sealed, args=(server, "busy", "hold", held_payload()))
        running.start()
        wait_for(signals / "holding")  # the only worker is busy with busy's first request
        queued = threading.Thread(target=post_sealed, args=(server, "busy", "echo", b"queued"))
        queued.start()
        time.sleep(0.3)
        refused = post_sealed(server, "busy", "echo", b"one too many")
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "tenant_queue_full"
        assert int(refused.headers["Retry-After"]) >= 1
        other = threading.Thread(target=lambda: post_sealed(server, "other", "echo", b"fair"))
        other.start()
        (signals / "release").touch()
        for thread in (running, queued, other):
            thread.join(60)
        assert post_sealed(server, "other", "echo", b"after").status_code == 200
        assert metric(server, "cleanroom_scheduler_rejects_total") >= 1
    finally:
        server.stop()


def test_client_disconnect_removes_its_queued_request(tmp_path: Path) -> None:
    server, signals = start(tmp_path)
    try:
        running = threading.Thread(target=post_sealed, args=(server, "busy", "hold", held_payload()))
        running.start()
        wait_for(signals / "holding")
        with pytest.raises(httpx.ReadTimeout):  # the client gives up while its request is queued
            post_sealed(server, "busy", "echo", b"impatient", timeout_s=0.5)
        deadline = time.monotonic() + 10
        while metric(server, "cleanroom_scheduler_cancelled_total") < 1:
            assert time.monotonic() < deadline, "the queued request of a gone client was not cancelled"
            time.sleep(0.1)
        (signals / "release").touch()
        running.join(60)
        assert post_sealed(server, "busy", "echo", b"still fine").status_code == 200
    finally:
        server.stop()


def test_sigterm_drains_in_flight_work_and_exits_zero(tmp_path: Path) -> None:
    server, signals = start(tmp_path)
    results: dict[str, int] = {}
    try:
        running = threading.Thread(
            target=lambda: results.setdefault("held", post_sealed(server, "busy", "hold", held_payload()).status_code)
        )
        running.start()
        wait_for(signals / "holding")
        os.kill(server.pid, signal.SIGTERM)
        time.sleep(0.5)
        (signals / "release").touch()  # the request in the model finishes during the drain
        running.join(60)
        assert results["held"] == 200
        assert server.process.wait(timeout=60) == 0
    finally:
        server.stop()
