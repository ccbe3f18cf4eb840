"""The scheduler through the real server: backpressure (429 + Retry-After), disconnects, SIGTERM drain."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import torch
from safetensors.torch import save

from cleanroom.crypto.sealed import CONTENT_TYPE
from support.server import ServerHandle, server_env, start_server


def held_payload() -> bytes:
    return save({"input": torch.arange(16, dtype=torch.uint8)})


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def wait_for(path: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerHandle, Path]]:
    """One server for the module (a start is ~4 s of CPU, most of it torch's import): each test waits for
    its own requests to end, counts metrics from where they stood, and clears the hold model's signal files;
    the SIGTERM test stops it, so it comes last. A tenant queue of 1 (and 2 in flight) is what the 429 test
    needs; the others queue one request at most, which it allows."""
    base = tmp_path_factory.mktemp("scheduler-server")
    signals = base / "signals"
    signals.mkdir()
    env = server_env(
        CLEANROOM_TEST_SIGNAL_DIR=str(signals), CLEANROOM_TENANT_MAX_QUEUED="1", CLEANROOM_TENANT_MAX_IN_FLIGHT="2"
    )
    server = start_server(
        base / "data", "--models", "echo", "--model", "hold=support.hold_model:hold_factory", tls=False, env=env
    )
    try:
        server.create_tenant("busy")
        server.create_tenant("other")
        yield server, signals
    finally:
        server.stop()


@pytest.fixture
def start(served: tuple[ServerHandle, Path]) -> Iterator[tuple[ServerHandle, Path]]:
    """The module's server, with the hold model's signal files cleared before and after the test."""
    server, signals = served
    for name in ("holding", "release"):
        (signals / name).unlink(missing_ok=True)
    yield server, signals
    (signals / "release").touch()  # a hold request a failed test left behind ends (its 30 s deadline else)


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


def test_queue_limit_gives_429_with_retry_after_and_other_tenants_still_run(
    start: tuple[ServerHandle, Path],
) -> None:
    server, signals = start
    rejects = metric(server, "cleanroom_scheduler_rejects_total")
    try:
        running = threading.Thread(target=post_sealed, args=(server, "busy", "hold", held_payload()))
        running.start()
        wait_for(signals / "holding")  # the only worker is busy with busy's first request
        queued = threading.Thread(target=post_sealed, args=(server, "busy", "echo", b"queued"))
        queued.start()
        wait_until(lambda: metric(server, "cleanroom_scheduler_queue_depth") >= 1, "the second request to queue")
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
        assert metric(server, "cleanroom_scheduler_rejects_total") >= rejects + 1
    finally:
        (signals / "release").touch()


def test_client_disconnect_removes_its_queued_request(start: tuple[ServerHandle, Path]) -> None:
    server, signals = start
    cancelled = metric(server, "cleanroom_scheduler_cancelled_total")
    try:
        running = threading.Thread(target=post_sealed, args=(server, "busy", "hold", held_payload()))
        running.start()
        wait_for(signals / "holding")
        with pytest.raises(httpx.ReadTimeout):  # the client gives up while its request is queued
            post_sealed(server, "busy", "echo", b"impatient", timeout_s=0.5)
        deadline = time.monotonic() + 10
        while metric(server, "cleanroom_scheduler_cancelled_total") < cancelled + 1:
            assert time.monotonic() < deadline, "the queued request of a gone client was not cancelled"
            time.sleep(0.1)
        (signals / "release").touch()
        running.join(60)
        assert post_sealed(server, "busy", "echo", b"still fine").status_code == 200
    finally:
        (signals / "release").touch()


def test_sigterm_drains_in_flight_work_and_exits_zero(start: tuple[ServerHandle, Path]) -> None:
    """Stops the module's server: the last test of the module."""
    server, signals = start
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
