"""Per-tenant IP allowlists (v4/v6, behind trusted and untrusted proxies) and the API-key lifecycle."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cleanroom.access import AddressNotAllowed, ClientAddressResolver, check_allowed, normalize_cidrs
from cleanroom.client import ClientError
from cleanroom.errors import BadRequest, CredentialExpired, CredentialRevoked
from cleanroom.keys.keyring import Keyring
from cleanroom.keys.local import LocalKMS
from cleanroom.keys.registry import Registry
from cleanroom.tenants import TenantService
from support.server import ServerHandle, server_env, start_server


def test_allowlist_matching_v4_v6_and_mapped() -> None:
    allow = normalize_cidrs(["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"])
    for ok in ("10.1.2.3", "2001:db8::1", "192.0.2.7", "::ffff:10.9.9.9"):
        check_allowed(allow, ok, "t")
    for refused in ("11.0.0.1", "2001:db9::1", "192.0.2.8", "::1", "not-an-address", ""):
        with pytest.raises(AddressNotAllowed):
            check_allowed(allow, refused, "t")
    check_allowed([], "203.0.113.5", "t")  # no list: every address
    with pytest.raises(BadRequest):
        normalize_cidrs(["10.0.0.0/33"])


def test_forwarded_address_only_from_trusted_proxies() -> None:
    resolver = ClientAddressResolver(["127.0.0.0/8", "fd00::/8"])
    # Trusted peer: the right-most address that is not a trusted proxy.
    assert resolver.resolve("127.0.0.1", "198.51.100.1, 10.0.0.5") == "10.0.0.5"
    assert resolver.resolve("127.0.0.1", "spoofed, 198.51.100.9, fd00::1") == "198.51.100.9"
    assert resolver.resolve("fd00::2", "2001:db8::5") == "2001:db8::5"
    # Untrusted peer: the header is ignored whatever it says.
    assert resolver.resolve("203.0.113.9", "10.0.0.5") == "203.0.113.9"
    # A chain of only trusted hops falls back to the peer.
    assert resolver.resolve("127.0.0.1", "127.0.0.2") == "127.0.0.1"


@pytest.fixture
def service(data_dir: Path) -> TenantService:
    kms = LocalKMS(data_dir)
    registry = Registry(data_dir)
    keyring = Keyring(registry, kms)
    keyring.ensure_master_key()
    return TenantService(registry, keyring)


def test_several_keys_expiry_revocation_and_last_use(service: TenantService) -> None:
    created = service.create("acme")
    second = service.add_credential("acme", label="ci", expires_in_s=0.2)
    third = service.add_credential("acme", label="batch")
    assert {c["label"] for c in service.list_credentials("acme")} == {"default", "ci", "batch"}
    assert service.authenticate(second.api_key).credential_id == second.credential_id
    time.sleep(0.3)
    with pytest.raises(CredentialExpired):
        service.authenticate(second.api_key)
    service.revoke_credential("acme", third.credential_id)
    with pytest.raises(CredentialRevoked):
        service.authenticate(third.api_key)
    service.authenticate(created.api_key)
    listed = {c["id"]: c for c in service.list_credentials("acme")}
    assert listed[service.authenticate(created.api_key).credential_id]["last_used_at"] is not None
    assert listed[third.credential_id]["revoked"] is True
    raw = service.registry.path.read_text()
    assert not any(k in raw for k in (created.api_key, second.api_key, third.api_key))


def test_allowlist_through_the_server_with_a_trusted_proxy(tmp_path: Path) -> None:
    env = server_env(CLEANROOM_TRUSTED_PROXIES='["127.0.0.1/32"]')
    server = start_server(tmp_path / "data", "--models", "echo", tls=False, env=env)
    data = str(server.data_dir)
    try:
        server.create_tenant("fenced")
        server.cli("tenant", "update", "fenced", "--allow", "198.51.100.0/24", "2001:db8::/48", "--data-dir", data)

        def call(forwarded: str | None) -> int:
            with server.client("fenced") as client:
                if forwarded is not None:
                    client._http.headers["X-Forwarded-For"] = forwarded
                try:
                    client.infer("echo", b"hi")
                    return 200
                except ClientError as exc:
                    assert exc.code in {"address_not_allowed"}, exc
                    return exc.status

        assert call(None) == 403  # the loopback peer itself is not on the list
        assert call("198.51.100.20") == 200  # forwarded by a trusted proxy, allowed v4
        assert call("2001:db8::abcd") == 200  # allowed v6
        assert call("198.51.100.20, 203.0.113.1") == 403  # right-most untrusted hop decides
        server.cli("tenant", "update", "fenced", "--clear-allow", "--data-dir", data)
        assert call(None) == 200
        log = server.data_dir / "audit"
        assert any(log.iterdir())
    finally:
        server.stop()


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """One default echo server (no trusted proxies) for the two tests below, each on its own tenant: a
    server start each cost ~5 s (2 s more at load)."""
    server = start_server(tmp_path_factory.mktemp("plain") / "data", "--models", "echo", tls=False)
    try:
        yield server
    finally:
        server.stop()


def test_forwarding_header_ignored_without_trusted_proxies(plain_server: ServerHandle) -> None:
    server = plain_server
    server.create_tenant("fenced")
    server.cli("tenant", "update", "fenced", "--allow", "198.51.100.0/24", "--data-dir", str(server.data_dir))
    with server.client("fenced") as client:
        client._http.headers["X-Forwarded-For"] = "198.51.100.20"
        with pytest.raises(ClientError) as info:
            client.infer("echo", b"spoofed")
    assert (info.value.status, info.value.code) == (403, "address_not_allowed")


def test_tenant_keys_cli(plain_server: ServerHandle) -> None:
    import json

    from cleanroom.client import Client

    server = plain_server
    data = str(server.data_dir)
    server.create_tenant("acme")
    added = json.loads(
        server.cli("tenant", "keys", "add", "acme", "--label", "second", "--json", "--data-dir", data).stdout
    )
    with Client(server.url, api_key=added["api_key"]) as client:
        assert client.infer("echo", b"with the second key") == b"with the second key"
        listed = json.loads(server.cli("tenant", "keys", "list", "acme", "--json", "--data-dir", data).stdout)
        assert {k["label"] for k in listed} == {"default", "second"}
        assert next(k for k in listed if k["label"] == "second")["last_used_at"] is not None
        server.cli("tenant", "keys", "revoke", "acme", added["credential_id"], "--data-dir", data)
        with pytest.raises(ClientError) as info:
            client.infer("echo", b"x")
        assert (info.value.status, info.value.code) == (401, "credential_revoked")


def test_refused_address_is_an_audit_record(service: TenantService, memory_audit) -> None:
    created = service.create("fenced", allow=["192.0.2.0/24"])
    service.audit = memory_audit
    with pytest.raises(AddressNotAllowed):
        service.authenticate(created.api_key, source="198.51.100.1")
    [event] = memory_audit.events
    assert event["event"] == "auth.address_refused" and event["source"] == "198.51.100.1"
    assert event["tenant_id"] == created.tenant_id and created.api_key not in str(event)
    assert service.authenticate(created.api_key, source="192.0.2.9").tenant_id == created.tenant_id
