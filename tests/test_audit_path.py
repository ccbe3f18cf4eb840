"""Invariant 5 on the request path: every decryption is on record first, and a failing audit fails closed."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cleanroom.client import Client, ClientError
from cleanroom.config import Settings
from cleanroom.keys.local import LocalKMS
from cleanroom.runtime.models import EchoModel, ModelRegistry
from cleanroom.server.app import create_app
from cleanroom.server.services import build_services


@pytest.fixture
def app_client(data_dir: Path, memory_audit):  # type: ignore[no-untyped-def]
    services = build_services(
        Settings(data_dir=data_dir, models=["echo"]), audit=memory_audit, models=ModelRegistry({"echo": EchoModel()})
    )
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
    response = client._http.post(
        "/v1/models/echo/infer", content=sealed.body, headers={"Content-Type": "application/vnd.cleanroom.sealed"}
    )
    assert sealed.open_response(response.content) == b"payload"
    decrypts = [e for e in audit.events if e["event"].startswith("decrypt.")]
    tenant_key_event, event = decrypts  # first request: the tenant key is unwrapped (cache miss)
    assert tenant_key_event["event"] == "decrypt.tenant_key" and tenant_key_event["tenant_id"] == created.tenant_id
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


def test_server_audit_log_records_requests_and_verifies(shared_server) -> None:
    with shared_server.client("beta") as client:
        sealed = client.seal_request("echo", b"audited")
        with shared_server.http() as http:
            http.post(
                "/v1/models/echo/infer",
                content=sealed.body,
                headers={
                    "Authorization": f"Bearer {shared_server.tenants['beta']['api_key']}",
                    "Content-Type": "application/vnd.cleanroom.sealed",
                },
            ).raise_for_status()
    audit_dir = shared_server.data_dir / "audit"
    from cleanroom.audit.keys import load_audit_keys
    from cleanroom.audit.reader import read_events
    from cleanroom.audit.verify import verify

    with load_audit_keys(audit_dir, LocalKMS(shared_server.data_dir)) as keys:
        events = [event for _, event in read_events(audit_dir, keys.audit_key)]
        report = verify(audit_dir, keys.audit_key, keys.public_key)
    assert report.ok, report.summary()
    mine = [e for e in events if e.request_id == sealed.metadata.request_id.hex()]
    assert [e.event for e in mine] == ["decrypt.request_key"]
    assert any(e.event == "decrypt.tenant_key" and e.tenant_id == mine[0].tenant_id for e in events)
    assert mine[0].tenant_id == shared_server.tenants["beta"]["tenant_id"] and mine[0].principal.startswith("ck_")
    on_disk = b"".join(p.read_bytes() for p in audit_dir.rglob("*") if p.is_file() and p.name != "keys.json")
    assert b"audited" not in on_disk
    assert shared_server.tenants["beta"]["tenant_id"].encode() not in on_disk


def test_key_operations_and_admin_actions_are_audited(data_dir: Path, memory_audit) -> None:
    services = build_services(
        Settings(data_dir=data_dir, models=["echo"]), audit=memory_audit, models=ModelRegistry({"echo": EchoModel()})
    )
    try:
        created = services.tenants.create("acme")
        extra = services.tenants.add_credential("acme", label="ci")
        services.tenants.update("acme", allow=["192.0.2.0/24"])
        services.tenants.revoke_credential("acme", extra.credential_id)
        services.keys.rotate_tenant_key("acme")
        services.keys.set_tenant_revoked("acme", True)
        services.keys.set_tenant_revoked("acme", False)
        services.tenants.delete("acme")
    finally:
        services.close()
    events = [e["event"] for e in memory_audit.events]
    for expected in ("key.create", "admin.tenant_update", "key.revoke", "key.rotate", "key.restore", "key.delete"):
        assert expected in events, (expected, events)
    assert all(created.api_key not in str(e) and extra.api_key not in str(e) for e in memory_audit.events)
