"""Write-ahead audit on the request path: the record is in the log before the payload is decrypted, no
answer leaves before it is durable, a failed fdatasync answers 503 with the sealed answer zeroed, and a
scheduler batch takes one fdatasync for all of its records."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cleanroom.audit.reader import read_events
from cleanroom.client import Client, ClientError
from cleanroom.config import Settings
from cleanroom.crypto.sealed import OpenedRequestKey
from cleanroom.errors import AuditUnavailable
from cleanroom.memory.secure_buffer import SecureBuffer
from cleanroom.runtime.batch_runner import SealedBatchRunner, SealedItem
from cleanroom.runtime.models import EchoModel, ModelRegistry, RequestScope
from cleanroom.runtime.session import CallContext
from cleanroom.scrubbers.base import ScrubPolicy
from cleanroom.server.app import create_app
from cleanroom.server.services import Services, build_services


class SpyEcho(EchoModel):
    """The echo model, keeping every buffer of each request it ran (to check they were zeroed after)."""

    def __init__(self) -> None:
        super().__init__()
        self.buffers: list[SecureBuffer] = []

    def run(self, payload: SecureBuffer, scope: RequestScope) -> memoryview:
        answer = super().run(payload, scope)
        self.buffers.extend(scope.buffers)
        return answer


@pytest.fixture
def real_log(data_dir: Path) -> Iterator[tuple[Services, Any, SpyEcho]]:
    """A server stack with the real audit log (AuditLogSink) and a spying echo model."""
    model = SpyEcho()
    services = build_services(Settings(data_dir=data_dir, models=["echo"]), models=ModelRegistry({"echo": model}))
    created = services.tenants.create("acme")
    try:
        yield services, created, model
    finally:
        services.close()


def _call(services: Services, api_key: str) -> CallContext:
    principal = services.tenants.authenticate(api_key, source="127.0.0.1")
    return CallContext(principal=principal, model="echo", source="127.0.0.1")


def _client(api_key: str) -> Client:
    return Client("http://testserver", api_key=api_key, public_key=None)


def _sealed(services: Services, created: Any, payload: bytes) -> Any:
    client = Client(
        "http://unused",
        api_key=created.api_key,
        public_key=services.tenants.public_key(created.tenant_id)["public_key"],
    )
    return client.seal_request("echo", payload)


def _fail_fdatasync(services: Services) -> None:
    log = services.audit._log

    def failing_sync() -> None:
        raise OSError(errno.EIO, "Input/output error")

    log._segments.sync = failing_sync


def test_record_is_in_the_log_file_before_the_payload_is_decrypted(
    real_log: tuple[Services, Any, SpyEcho], monkeypatch: pytest.MonkeyPatch
) -> None:
    services, created, _ = real_log
    sealed = _sealed(services, created, b"secret payload")
    audit_dir = Path(services.settings.data_dir) / "audit"
    seen: list[tuple[list[str], bool]] = []
    real_decrypt = OpenedRequestKey.decrypt_payload_into

    def decrypt_hook(self: OpenedRequestKey, out: Any) -> None:
        on_disk = [e.request_id for _, e in read_events(audit_dir, services.audit._keys.audit_key)]
        log = services.audit._log
        seen.append((on_disk, log._durability.durable >= log._durability.written))
        real_decrypt(self, out)

    monkeypatch.setattr(OpenedRequestKey, "decrypt_payload_into", decrypt_hook)
    answer = services.runtime.handle(_call(services, created.api_key), sealed.body)
    assert sealed.open_response(bytes(answer)) == b"secret payload"
    [(on_disk, all_durable)] = seen
    assert sealed.metadata.request_id.hex() in on_disk  # written before the first plaintext byte
    assert not all_durable  # ... and not yet fsynced: the fdatasync runs while the request computes
    assert services.audit._log.size == services.audit._log._durability.written  # durable once answered


def test_failed_fdatasync_answers_503_and_zeroes_the_sealed_answer(
    real_log: tuple[Services, Any, SpyEcho], monkeypatch: pytest.MonkeyPatch
) -> None:
    services, created, model = real_log
    services.runtime.handle(_call(services, created.api_key), _sealed(services, created, b"warm").body)
    model.buffers.clear()
    sealed = _sealed(services, created, b"must not be released")
    produced: list[bytearray] = []
    real_seal = OpenedRequestKey.seal_response

    def seal_spy(self: OpenedRequestKey, plaintext: Any) -> bytearray:
        out = real_seal(self, plaintext)
        produced.append(out)
        return out

    monkeypatch.setattr(OpenedRequestKey, "seal_response", seal_spy)
    _fail_fdatasync(services)  # the record is written; its fdatasync fails
    with pytest.raises(AuditUnavailable) as caught:
        services.runtime.handle(_call(services, created.api_key), sealed.body)
    assert caught.value.status == 503 and caught.value.code == "audit_unavailable"
    [sealed_answer] = produced  # the answer was sealed while the fdatasync ran ...
    assert len(sealed_answer) > 0 and not any(sealed_answer)  # ... and zeroed, never returned
    assert model.buffers and all(buffer.closed for buffer in model.buffers)  # the request's buffers: zeroed
    events = [
        e.request_id for _, e in read_events(Path(services.settings.data_dir) / "audit", services.audit._keys.audit_key)
    ]
    assert sealed.metadata.request_id.hex() in events  # written (survives a process crash), not durable


def test_batch_of_n_requests_takes_one_fdatasync(real_log: tuple[Services, Any, SpyEcho]) -> None:
    services, created, model = real_log
    runner = SealedBatchRunner(services.runtime.opener, model, ScrubPolicy())
    call = _call(services, created.api_key)
    services.runtime.handle(call, _sealed(services, created, b"warm").body)  # tenant key unwrapped, cached
    log = services.audit._log
    sealed = [_sealed(services, created, f"item {i}".encode()) for i in range(8)]
    before = log.fdatasyncs
    results = runner.run("cpu:0", created.tenant_id, [SealedItem(call, s.body) for s in sealed])
    assert log.fdatasyncs - before == 1
    for request, result in zip(sealed, results, strict=True):
        assert isinstance(result, bytearray)
        assert request.open_response(bytes(result)).startswith(b"item ")
    assert log.size == log._durability.written


def test_batch_with_failed_fdatasync_releases_nothing(real_log: tuple[Services, Any, SpyEcho]) -> None:
    services, created, model = real_log
    runner = SealedBatchRunner(services.runtime.opener, model, ScrubPolicy())
    call = _call(services, created.api_key)
    services.runtime.handle(call, _sealed(services, created, b"warm").body)
    bad = _sealed(services, created, b"x")
    bad_body = bytearray(bad.body)
    bad_body[-1] ^= 1  # fails to decrypt after its record was written
    items = [SealedItem(call, _sealed(services, created, f"item {i}".encode()).body) for i in range(4)]
    items.append(SealedItem(call, bytes(bad_body)))
    _fail_fdatasync(services)
    results = runner.run("cpu:0", created.tenant_id, items)
    assert all(isinstance(r, AuditUnavailable) for r in results), results
    assert all(buffer.closed for buffer in model.buffers)


def test_server_answers_503_when_the_fdatasync_fails(data_dir: Path, memory_audit: Any) -> None:
    services = build_services(
        Settings(data_dir=data_dir, models=["echo"]), audit=memory_audit, models=ModelRegistry({"echo": EchoModel()})
    )
    created = services.tenants.create("acme")
    with TestClient(create_app(services)) as http:
        client = _client(created.api_key)
        client._http = http
        http.headers["Authorization"] = f"Bearer {created.api_key}"
        assert client.infer("echo", b"fine") == b"fine"
        memory_audit.fail_durability = True
        with pytest.raises(ClientError) as info:
            client.infer("echo", b"must not be released")
        assert info.value.status == 503 and info.value.code == "audit_unavailable"
        assert memory_audit.events[-1]["event"] == "decrypt.request_key"  # written, never durable
    services.close()
