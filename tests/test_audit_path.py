"""Invariant 5 on the request path: every decryption is on record first, and a failing audit fails closed."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cleanroom.client import Client, ClientError
from cleanroom.config import Settings
from cleanroom.errors import DecryptionFailed
from cleanroom.keys.local import LocalKMS
from cleanroom.runtime.models import EchoModel, ModelRegistry
from cleanroom.server.app import create_app
from cleanroom.server.decrypt_audit import ChainedAuditLog, load_audit_key
from cleanroom.server.services import build_services


@pytest.fixture
def app_client(data_dir: Path, memory_audit):  # type: ignore[no-untyped-def]
    services = build_services(Settings(data_dir=data_dir, models=["echo"]), audit=memory_audit,
                              models=ModelRegistry({"echo": EchoModel()}))
    created = services.tenants.create("acme")
    with TestClient(create_app(services)) as http:  # `with`: runs the lifespan (starts the scheduler)
        client = Client("http://testserver", api_key=created.api_key)
        client._http = http
        http.headers["Authorization"] = f"Bearer {created.api_key}"
        yield client, memory_audit, created
    services.close()


def test_each_decryption_is_recorded_with_its_context(app_client) -> None:
    client, audit, created = app_client
    sealed = client.seal_request("echo", b"payload")
    response = client._http.post("/v1/models/echo/infer", content=sealed.body,
                                 headers={"Content-Type": "application/vnd.cleanroom.sealed"})
    assert sealed.open_response(response.content) == b"payload"
    [event] = audit.events
    assert event["event"] == "decrypt.request_key"
    assert event["tenant_id"] == created.tenant_id and event["key_id"] == created.key_id
    assert event["request_id"] == sealed.metadata.request_id.hex()
    assert event["principal"].startswith("ck_") and created.api_key not in str(event)
    assert event["byte_count"] == len(b"payload")


def test_failing_audit_refuses_the_request(app_client) -> None:
    client, audit, _ = app_client
    audit.fail = True
    with pytest.raises(ClientError) as info:
        client.infer("echo", b"must not be released")
    assert info.value.status == 503 and info.value.code == "audit_unavailable"
    audit.fail = False
    assert client.infer("echo", b"ok again") == b"ok again"


def test_server_audit_chain_records_requests_and_detects_tampering(shared_server) -> None:
    with shared_server.client("beta") as client:
        sealed = client.seal_request("echo", b"audited")
        with shared_server.http() as http:
            http.post("/v1/models/echo/infer", content=sealed.body, headers={
                "Authorization": f"Bearer {shared_server.tenants['beta']['api_key']}",
                "Content-Type": "application/vnd.cleanroom.sealed"}).raise_for_status()
    audit_dir = shared_server.data_dir / "audit"
    kms = LocalKMS(shared_server.data_dir)
    log = ChainedAuditLog(audit_dir, load_audit_key(audit_dir, kms, "cleanroom-master"))
    try:
        records = log.verify()
        assert any(r["request_id"] == sealed.metadata.request_id.hex() for r in records)
        assert b"audited" not in (audit_dir / "decrypt-chain.log").read_bytes()
        assert shared_server.tenants["beta"]["tenant_id"].encode() not in (audit_dir / "decrypt-chain.log").read_bytes()
    finally:
        log.close()


def test_chain_verification_catches_edits(tmp_path: Path) -> None:
    kms = LocalKMS(tmp_path)
    kms.create_key("m")
    log = ChainedAuditLog(tmp_path / "audit", load_audit_key(tmp_path / "audit", kms, "m"))
    for i in range(4):
        log.record({"event": "decrypt.request_key", "n": i})
    log.close()
    path = tmp_path / "audit" / "decrypt-chain.log"
    original = path.read_bytes()
    lines = original.split(b"\n")[:-1]
    for tampered in (b"\n".join([lines[0], lines[2], lines[1], lines[3]]) + b"\n",   # swapped
                     b"\n".join([lines[0], lines[2], lines[3]]) + b"\n",             # deleted
                     original.replace(lines[1][:10], lines[1][:9] + (b"0" if lines[1][9:10] != b"0" else b"1"))):
        path.write_bytes(tampered)
        with pytest.raises(DecryptionFailed):
            ChainedAuditLog(tmp_path / "audit", load_audit_key(tmp_path / "audit", kms, "m")).verify()
