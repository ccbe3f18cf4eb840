"""Write-ahead audit behind the ASGI middleware, as on the `serve` path: the decryption record is written
before the app sees plaintext, its fdatasync overlaps the app, nothing leaves before it is durable, and a
failed fdatasync answers 503 with nothing of the app's answer sent. `audit_durable_before_app=True` keeps
the strict order (durable before the app runs)."""

from __future__ import annotations

import errno
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from cleanroom.client import Client, ClientError
from cleanroom.config import Settings
from cleanroom.crypto.sealed import CONTENT_TYPE, OpenedRequestKey
from cleanroom.integrations.asgi import CleanroomMiddleware
from cleanroom.memory.secure_buffer import SecureBuffer
from cleanroom.runtime.models import ModelRegistry
from cleanroom.server.services import Services, build_services

SECRET_ANSWER = "the app's answer, never to be released"


class Seen:
    def __init__(self) -> None:
        self.durable_when_app_ran: list[bool] = []
        self.events_when_app_ran: list[int] = []


def make_app(seen: Seen, is_durable: Any, event_count: Any) -> FastAPI:
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, object]:
        document = await request.json()
        seen.durable_when_app_ran.append(is_durable())
        seen.events_when_app_ran.append(event_count())
        return {"reversed": document["text"][::-1], "secret": SECRET_ANSWER}

    return app


def _wire(services: Services, app: Any, api_key: str) -> tuple[Client, TestClient]:
    http = TestClient(app)
    client = Client("http://testserver", api_key=api_key)
    client._http = http
    http.headers["Authorization"] = f"Bearer {api_key}"
    return client, http


@pytest.fixture
def memory_stack(data_dir: Path, memory_audit: Any) -> Iterator[tuple[Services, Any, Any]]:
    settings = Settings(data_dir=data_dir)
    services = build_services(settings, audit=memory_audit, models=ModelRegistry({}))
    created = services.tenants.create("shop")
    try:
        yield services, created, memory_audit
    finally:
        services.close()


def _middleware(services: Services, seen: Seen, audit: Any, **options: Any) -> CleanroomMiddleware:
    app = make_app(seen, lambda: audit.durable >= len(audit.events), lambda: len(audit.events))
    return CleanroomMiddleware(
        app, settings=services.settings, protected_paths=("/predict",), services=services, **options
    )


def test_record_is_written_before_the_app_runs_and_durable_before_the_answer(memory_stack: Any) -> None:
    services, created, audit = memory_stack
    seen = Seen()
    client, _ = _wire(services, _middleware(services, seen, audit), created.api_key)
    answer = json.loads(client.call("/predict", b'{"text": "abc"}'))
    assert answer["reversed"] == "cba"
    assert audit.events[-1]["event"] == "decrypt.request_key"
    assert seen.events_when_app_ran == [len(audit.events)]  # written before the app saw the plaintext ...
    assert seen.durable_when_app_ran == [False]  # ... its fdatasync overlapping the app (write-ahead)
    assert audit.durable == len(audit.events)  # ... and durable before the answer left


def test_strict_mode_makes_the_record_durable_before_the_app_runs(memory_stack: Any) -> None:
    services, created, audit = memory_stack
    seen = Seen()
    middleware = _middleware(services, seen, audit, audit_durable_before_app=True)
    client, _ = _wire(services, middleware, created.api_key)
    assert json.loads(client.call("/predict", b'{"text": "abc"}'))["reversed"] == "cba"
    assert seen.durable_when_app_ran == [True]


def test_failed_fdatasync_answers_503_and_sends_nothing_of_the_answer(
    memory_stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    services, created, audit = memory_stack
    seen = Seen()
    middleware = _middleware(services, seen, audit)
    client, http = _wire(services, middleware, created.api_key)
    assert json.loads(client.call("/predict", b'{"text": "warm"}'))["reversed"] == "mraw"
    buffers: list[SecureBuffer] = []
    real_allocate = services.allocator.allocate

    def spy_allocate(size_bytes: int) -> SecureBuffer:
        buffer = real_allocate(size_bytes)
        buffers.append(buffer)
        return buffer

    monkeypatch.setattr(services.allocator, "allocate", spy_allocate)
    audit.fail_durability = True  # the record is written; its fdatasync fails
    sealed = client.seal_request("", b'{"text": "must not be released"}', path="/predict")
    response = http.post("/predict", content=sealed.body, headers={"Content-Type": CONTENT_TYPE})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "audit_unavailable"
    assert SECRET_ANSWER.encode() not in response.content and b"desaeler" not in response.content
    assert len(seen.durable_when_app_ran) == 2  # the app ran (write-ahead) ...
    assert audit.events[-1]["request_id"] == sealed.metadata.request_id.hex()  # ... after its record was written
    assert buffers and all(buffer.closed for buffer in buffers)  # the request's plaintext buffers: zeroed
    with pytest.raises(ClientError) as info:  # a broken log stays broken: every later request is refused
        client.call("/predict", b'{"text": "later"}')
    assert info.value.status == 503


@pytest.fixture
def real_stack(data_dir: Path) -> Iterator[tuple[Services, Any]]:
    services = build_services(Settings(data_dir=data_dir), models=ModelRegistry({}))
    created = services.tenants.create("shop")
    try:
        yield services, created
    finally:
        services.close()


def test_real_log_fsync_failure_zeroes_the_sealed_answer(real_stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the real audit log: a failed fdatasync answers 503, and a sealed answer that was produced
    (large answers are sealed, then waited for, on a worker thread) is zeroed, never sent."""
    services, created = real_stack
    log = services.audit._log
    big = "x" * (300 * 1024)  # above the inline-seal size: `OpenedRequest.seal` waits and zeroes

    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, object]:
        await request.body()
        return {"big": big}

    middleware = CleanroomMiddleware(app, settings=services.settings, protected_paths=("/predict",), services=services)
    client, http = _wire(services, middleware, created.api_key)
    assert len(client.call("/predict", b"{}")) > len(big)
    produced: list[bytearray] = []
    real_seal = OpenedRequestKey.seal_response

    def seal_spy(self: OpenedRequestKey, plaintext: Any) -> bytearray:
        out = real_seal(self, plaintext)
        produced.append(out)
        return out

    monkeypatch.setattr(OpenedRequestKey, "seal_response", seal_spy)

    def failing_sync() -> None:
        raise OSError(errno.EIO, "Input/output error")

    log._segments.sync = failing_sync
    sealed = client.seal_request("", b"{}", path="/predict")
    response = http.post("/predict", content=sealed.body, headers={"Content-Type": CONTENT_TYPE})
    assert response.status_code == 503 and response.json()["error"]["code"] == "audit_unavailable"
    assert produced and all(len(s) > 0 and not any(s) for s in produced)  # sealed, then zeroed
