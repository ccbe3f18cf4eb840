"""Rotation and three-scope revocation, in process and through a real server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cleanroom.client import ClientError
from cleanroom.errors import KeyError_, SystemSealed
from cleanroom.keys.keyring import Keyring
from cleanroom.keys.lifecycle import KeyManager, RotationPolicy
from cleanroom.keys.local import LocalKMS
from cleanroom.keys.registry import Registry
from cleanroom.tenants import TenantService
from support.server import ServerHandle, start_server


@pytest.fixture
def stack(data_dir: Path):  # type: ignore[no-untyped-def]
    kms = LocalKMS(data_dir)
    registry = Registry(data_dir)
    keyring = Keyring(registry, kms)
    keyring.ensure_master_key()
    service = TenantService(registry, keyring)
    return service, keyring, registry, KeyManager(registry, keyring), kms


def test_tenant_key_rotation_keeps_hpke_keys_and_retires_old_versions(stack) -> None:
    service, keyring, registry, manager, kms = stack
    created = service.create("acme")
    before = keyring.hpke_private_key(registry.tenant("acme"), created.key_id).private_numbers()
    assert manager.rotate_tenant_key("acme")["tenant_key_version"] == 2
    record = registry.tenant("acme")
    assert all(k["tenant_key_version"] == 2 for k in record["hpke_keys"])
    assert keyring.hpke_private_key(record, created.key_id).private_numbers() == before
    manager.retire_tenant_key_versions("acme", 2)
    assert keyring.hpke_private_key(registry.tenant("acme"), created.key_id).private_numbers() == before
    # A stale copy of the record still pointing at version 1 no longer opens.
    stale = {
        **record,
        "tenant_keys": {**record["tenant_keys"], "min_version": 2},
        "hpke_keys": [{**record["hpke_keys"][0], "tenant_key_version": 1}],
    }
    keyring.purge()
    with pytest.raises(KeyError_):
        keyring.hpke_private_key(stale, created.key_id)


def test_master_rotation_rewraps_everything(stack) -> None:
    service, keyring, registry, manager, kms = stack
    created = service.create("acme")
    result = manager.rotate_master_key()
    assert result["master_version"] == 2 and result["rewrapped"] >= 2  # tenant key + pepper
    kms.set_min_decryption_version("cleanroom-master", 2)
    keyring.purge()
    assert keyring.hpke_private_key(registry.tenant("acme"), created.key_id) is not None
    fresh = TenantService(registry, Keyring(registry, kms))
    assert fresh.authenticate(created.api_key).tenant_id == created.tenant_id


def test_system_seal_and_restore(stack) -> None:
    service, keyring, registry, manager, kms = stack
    created = service.create("acme")
    keyring.hpke_private_key(registry.tenant("acme"), created.key_id)  # cached
    manager.set_system_sealed(True)
    with pytest.raises(SystemSealed):
        keyring.hpke_private_key(registry.tenant("acme"), created.key_id)
    assert manager.status(RotationPolicy())["system_sealed"] is True
    manager.set_system_sealed(False)
    assert keyring.hpke_private_key(registry.tenant("acme"), created.key_id) is not None


class RemoteLikeKMS:
    """The local KMS seen as a remote one (Vault, AWS, an HSM): no cheap `check_usable` per request."""

    def __init__(self, inner: LocalKMS) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> object:
        if name == "check_usable":
            raise AttributeError(name)
        return getattr(self._inner, name)


def test_system_seal_reaches_every_process_on_the_data_dir_at_once(data_dir: Path) -> None:
    """Two replicas over one data dir and a remote KMS: `keys revoke --system` run by one (or by the CLI)
    used to leave the other opening requests with its cached key until the cache TTL ran out."""
    kms = LocalKMS(data_dir)
    owner = Keyring(Registry(data_dir), kms)
    owner.ensure_master_key()
    created = TenantService(owner.registry, owner).create("acme")
    replica_registry = Registry(data_dir)
    replica = Keyring(replica_registry, RemoteLikeKMS(kms), ttl_s=3600)  # type: ignore[arg-type]
    assert replica.hpke_private_key(replica_registry.tenant("acme"), created.key_id) is not None  # now cached
    manager = KeyManager(owner.registry, owner)
    manager.set_system_sealed(True)
    with pytest.raises(SystemSealed):
        replica.hpke_private_key(replica_registry.tenant("acme"), created.key_id)
    assert not replica._cache, "the other process's cached keys were kept"
    manager.set_system_sealed(False)
    assert not replica.sealed
    assert replica.hpke_private_key(replica_registry.tenant("acme"), created.key_id) is not None


def test_status_reports_age_against_policy(stack) -> None:
    service, keyring, registry, manager, kms = stack
    service.create("acme")
    manager._clock = lambda: time.time() + 100 * 86400
    rows = manager.status(RotationPolicy())["keys"]
    kinds = {r["kind"] for r in rows}
    assert kinds == {"master", "tenant_key", "hpke", "credential"}
    tenant_row = next(r for r in rows if r["kind"] == "tenant_key")
    assert tenant_row["rotation_due"] is True and tenant_row["age_days"] >= 99
    master_row = next(r for r in rows if r["kind"] == "master")
    assert master_row["rotation_due"] is False


def test_rotating_a_credential_issues_a_new_key_and_revokes_the_old(stack) -> None:
    from cleanroom.errors import BadRequest, NotFound, Unauthenticated
    from cleanroom.keys.commands import key_action

    service, _keyring, _registry, manager, _kms = stack
    created = service.create("acme")
    extra = service.add_credential("acme", label="ci", expires_in_s=3600)
    old_id = extra.credential_id
    rotated = key_action(manager, "rotate", {"scope": "credential", "target": old_id}, RotationPolicy(), service)
    assert rotated["replaced"] == old_id and rotated["credential_id"] != old_id
    assert rotated["label"] == "ci" and rotated["tenant_id"] == created.tenant_id
    assert rotated["expires_at"] is not None and 3500 < rotated["expires_at"] - time.time() <= 3600  # same lifetime
    assert service.authenticate(rotated["api_key"]).tenant_id == created.tenant_id
    with pytest.raises(Unauthenticated):
        service.authenticate(extra.api_key)
    assert service.authenticate(created.api_key).tenant_id == created.tenant_id  # the tenant's other key stays
    with pytest.raises(BadRequest) as info:  # the old one again: already revoked, nothing issued
        key_action(manager, "rotate", {"scope": "credential", "target": old_id}, RotationPolicy(), service)
    assert info.value.code == "credential_already_revoked"
    with pytest.raises(NotFound):
        service.rotate_credential("ck_nosuchcredential")
    assert len(service.list_credentials("acme")) == 3  # default, the old ci key (revoked), its replacement


def test_keys_rotate_takes_the_scopes_design_names() -> None:
    from cleanroom.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["keys", "rotate", "--system"]).master is True  # DESIGN §5: system scope
    assert parser.parse_args(["keys", "rotate", "--master"]).master is True
    assert parser.parse_args(["keys", "rotate", "--credential", "ck_x"]).credential == "ck_x"
    with pytest.raises(SystemExit):
        parser.parse_args(["keys", "rotate", "--credential", "ck_x", "--tenant", "t"])  # one scope at a time


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """One server for both server tests (a start is ~4 s of CPU, most of it torch's import). The background
    rewrap runs every 0.5 s for the rewrap test; it has nothing to do before that test rotates the master
    key outside cleanroom (the revocation test never rotates it), and that test comes last."""
    from support.server import server_env

    data = tmp_path_factory.mktemp("lifecycle") / "data"
    handle = start_server(data, "--models", "echo", tls=False, env=server_env(CLEANROOM_REWRAP_INTERVAL_S="0.5"))
    try:
        yield handle
    finally:
        handle.stop()


def credential_of(server: ServerHandle, tenant: str) -> str:
    """The tenant's first credential id: what `tenant list --json` prints, from the same admin API call made
    in-process (a lookup, not what this test is about; `tenant list` itself is test_cli's subject)."""
    from cleanroom.admin_client import AdminAPI, running_server

    state = running_server(server.data_dir)
    assert state is not None, "the server's admin API is not reachable"
    api = AdminAPI(state)
    try:
        listed = api.request("GET", "/v1/admin/tenants")["tenants"]
    finally:
        api.close()
    return str(next(t for t in listed if t["name"] == tenant)["credentials"][0]["id"])


def test_revocation_scopes_through_the_server(server: ServerHandle) -> None:
    data = str(server.data_dir)
    server.create_tenant("one")
    server.create_tenant("two")
    one, two = server.client("one"), server.client("two")
    try:
        assert one.infer("echo", b"a") == b"a" and two.infer("echo", b"b") == b"b"
        credential_id = credential_of(server, "one")

        # credential scope: that key 401 at once; the other tenant unaffected
        server.cli("keys", "revoke", "--credential", credential_id, "--data-dir", data)
        with pytest.raises(ClientError) as info:
            one.infer("echo", b"a")
        assert (info.value.status, info.value.code) == (401, "credential_revoked")
        assert two.infer("echo", b"b") == b"b"
        server.cli("keys", "restore", "--credential", credential_id, "--data-dir", data)
        assert one.infer("echo", b"a") == b"a"

        # credential rotation through the admin API: the new key works at once, the old one is 401
        out = server.cli("keys", "rotate", "--credential", credential_id, "--data-dir", data, "--json").stdout
        rotated = json.loads(out)
        assert rotated["replaced"] == credential_id
        with pytest.raises(ClientError) as info:
            one.infer("echo", b"a")
        assert (info.value.status, info.value.code) == (401, "credential_revoked")
        one.close()
        server.tenants["one"]["api_key"] = rotated["api_key"]
        one = server.client("one")
        assert one.infer("echo", b"a") == b"a"
        refused = server.cli("keys", "rotate", "--system", "--hpke", "--data-dir", data, check=False)
        assert refused.returncode == 2 and b"--tenant" in refused.stderr  # --hpke used to be ignored: a master rotation

        # tenant scope: 403 on the very next request (its key was cached), others fine
        server.cli("keys", "revoke", "--tenant", "one", "--data-dir", data)
        with pytest.raises(ClientError) as info:
            one.infer("echo", b"a")
        assert (info.value.status, info.value.code) == (403, "tenant_revoked")
        assert two.infer("echo", b"b") == b"b"
        server.cli("keys", "restore", "--tenant", "one", "--data-dir", data)
        assert one.infer("echo", b"a") == b"a"

        # system scope: every request 503 system_sealed until restored; requests in flight finish cleanly
        results: list[object] = []
        workers = [threading.Thread(target=lambda: results.append(_try(two, b"x" * 1_000_000))) for _ in range(4)]
        for worker in workers:
            worker.start()
        server.cli("keys", "revoke", "--system", "--data-dir", data)
        for worker in workers:
            worker.join(60)
        assert all(r == b"x" * 1_000_000 or (isinstance(r, ClientError) and r.status == 503) for r in results)
        for client in (one, two):
            with pytest.raises(ClientError) as info:
                client.infer("echo", b"a")
            assert (info.value.status, info.value.code) == (503, "system_sealed")
            assert info.value.status == 503
        server.cli("keys", "restore", "--system", "--data-dir", data)
        assert one.infer("echo", b"a") == b"a" and two.infer("echo", b"b") == b"b"

        # HPKE rotation with overlap: a request sealed to the old key still opens; a new client gets the new key
        old_key_id = one.public_key().key_id
        out = server.cli("keys", "rotate", "--tenant", "one", "--hpke", "--overlap-s", "3600", "--data-dir", data)
        new_key_id = json.loads(out.stdout)["key_id"]
        assert new_key_id != old_key_id
        assert one.infer("echo", b"old key still works") == b"old key still works"
        with server.client("one") as fresh:
            assert fresh.public_key().key_id == new_key_id
            assert fresh.infer("echo", b"new key") == b"new key"
        # overlap 0: the old key expires now; an unpinned client refetches and retries by itself
        server.cli("keys", "rotate", "--tenant", "one", "--hpke", "--overlap-s", "0", "--data-dir", data)
        assert one.infer("echo", b"refetched") == b"refetched"
        assert server.healthy()
    finally:
        one.close()
        two.close()


def _try(client, payload: bytes) -> object:  # type: ignore[no-untyped-def]
    try:
        return client.infer("echo", payload)
    except ClientError as exc:
        return exc


def test_background_rewrap_after_a_rotation_outside_cleanroom(server: ServerHandle) -> None:
    """The master key rotates in the KMS itself; the server's background task moves the wrapped keys (every
    tenant's: the revocation test's too, on this module's server)."""
    server.create_tenant("three")
    LocalKMS(server.data_dir).rotate("cleanroom-master")  # not through cleanroom
    deadline = time.monotonic() + 20
    while True:
        doc = json.loads((server.data_dir / "tenants.json").read_text())
        versions = [v["version"] for t in doc["tenants"].values() for v in t["tenant_keys"]["versions"].values()]
        if versions and all(v == 2 for v in versions) and doc["pepper"]["version"] == 2:
            break
        assert time.monotonic() < deadline, "background rewrap did not happen"
        time.sleep(0.2)
    with server.client("three") as client:
        assert client.infer("echo", b"after rewrap") == b"after rewrap"
