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
from cleanroom.errors import AuditUnavailable, ReplayedRequest
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


# ---------------------------------------------------------------------- one audit write per batch


def _failing_write(services: Services) -> None:
    log = services.audit._log
    real_write = log._segments.write

    def torn_write(data: bytes) -> None:
        real_write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    log._segments.write = torn_write


def test_batch_records_are_written_as_one_unit_before_any_decrypt(
    real_log: tuple[Services, Any, SpyEcho], monkeypatch: pytest.MonkeyPatch
) -> None:
    services, created, model = real_log
    runner = SealedBatchRunner(services.runtime.opener, model, ScrubPolicy())
    call = _call(services, created.api_key)
    services.runtime.handle(call, _sealed(services, created, b"warm").body)
    log = services.audit._log
    sealed = [_sealed(services, created, f"item {i}".encode()) for i in range(8)]
    written_at_decrypt: list[int] = []
    real_decrypt = OpenedRequestKey.decrypt_payload_into

    def decrypt_hook(self: OpenedRequestKey, out: Any) -> None:
        written_at_decrypt.append(log._durability.written)
        real_decrypt(self, out)

    monkeypatch.setattr(OpenedRequestKey, "decrypt_payload_into", decrypt_hook)
    commits, written = log.group_commits, log._durability.written
    results = runner.run("cpu:0", created.tenant_id, [SealedItem(call, s.body) for s in sealed])
    assert log.group_commits - commits == 1  # one group commit (one write) for the batch's 8 records
    assert written_at_decrypt == [written + 8] * 8  # every record in the log before the first decrypt
    events = [
        e.request_id for _, e in read_events(Path(services.settings.data_dir) / "audit", services.audit._keys.audit_key)
    ]
    assert events[-8:] == [s.metadata.request_id.hex() for s in sealed]
    assert all(isinstance(r, bytearray) for r in results)


def test_batch_whose_records_cannot_be_written_fails_whole_and_decrypts_nothing(
    real_log: tuple[Services, Any, SpyEcho], monkeypatch: pytest.MonkeyPatch
) -> None:
    services, created, model = real_log
    runner = SealedBatchRunner(services.runtime.opener, model, ScrubPolicy())
    call = _call(services, created.api_key)
    services.runtime.handle(call, _sealed(services, created, b"warm").body)
    model.buffers.clear()
    decrypts: list[int] = []
    real_decrypt = OpenedRequestKey.decrypt_payload_into

    def decrypt_hook(self: OpenedRequestKey, out: Any) -> None:
        decrypts.append(1)
        real_decrypt(self, out)

    monkeypatch.setattr(OpenedRequestKey, "decrypt_payload_into", decrypt_hook)
    size = services.audit._log.size
    _failing_write(services)
    items = [SealedItem(call, _sealed(services, created, f"item {i}".encode()).body) for i in range(6)]
    results = runner.run("cpu:0", created.tenant_id, items)
    assert all(isinstance(r, AuditUnavailable) and r.status == 503 for r in results), results
    assert decrypts == [] and model.buffers == []  # nothing decrypted, the model never ran
    assert services.audit._log.size == size


def test_batch_request_failing_its_checks_fails_alone_and_is_not_recorded(
    real_log: tuple[Services, Any, SpyEcho],
) -> None:
    services, created, model = real_log
    runner = SealedBatchRunner(services.runtime.opener, model, ScrubPolicy())
    call = _call(services, created.api_key)
    services.runtime.handle(call, _sealed(services, created, b"warm").body)
    replayed = _sealed(services, created, b"once")
    services.runtime.handle(call, replayed.body)
    fine = [_sealed(services, created, f"item {i}".encode()) for i in range(3)]
    size = services.audit._log.size
    items = [
        SealedItem(call, fine[0].body),
        SealedItem(call, replayed.body),
        *(SealedItem(call, s.body) for s in fine[1:]),
    ]
    results = runner.run("cpu:0", created.tenant_id, items)
    assert isinstance(results[1], ReplayedRequest), results[1]
    for sealed, result in zip(fine, [results[0], *results[2:]], strict=True):
        assert isinstance(result, bytearray) and sealed.open_response(bytes(result)).startswith(b"item ")
    assert services.audit._log.size == size + 3  # the replayed request was refused before its record


def test_batch_through_a_sink_without_record_many_ahead(data_dir: Path, memory_audit: Any) -> None:
    """`MemoryAudit` has only `record_ahead`: one call per request, one ticket for all; a failing sink still
    fails the whole batch closed with 503."""
    model = SpyEcho()
    services = build_services(
        Settings(data_dir=data_dir, models=["echo"]), audit=memory_audit, models=ModelRegistry({"echo": model})
    )
    try:
        created = services.tenants.create("acme")
        runner = SealedBatchRunner(services.runtime.opener, model, ScrubPolicy())
        call = _call(services, created.api_key)
        sealed = [_sealed(services, created, f"item {i}".encode()) for i in range(4)]
        results = runner.run("cpu:0", created.tenant_id, [SealedItem(call, s.body) for s in sealed])
        assert all(isinstance(r, bytearray) for r in results)
        assert [e["request_id"] for e in memory_audit.events[-4:]] == [s.metadata.request_id.hex() for s in sealed]
        memory_audit.fail = True
        model.buffers.clear()
        more = [SealedItem(call, _sealed(services, created, f"more {i}".encode()).body) for i in range(4)]
        results = runner.run("cpu:0", created.tenant_id, more)
        assert all(isinstance(r, AuditUnavailable) and r.status == 503 for r in results), results
        assert model.buffers == []
        memory_audit.fail = False
        memory_audit.fail_durability = True
        again = [SealedItem(call, _sealed(services, created, f"again {i}".encode()).body) for i in range(3)]
        results = runner.run("cpu:0", created.tenant_id, again)
        assert all(isinstance(r, AuditUnavailable) for r in results), results
        assert all(buffer.closed for buffer in model.buffers)
    finally:
        services.close()
