"""Red team against the key lifecycle (DESIGN invariant 6), through a real server, the CLI and the ASGI
middleware: revoke and retry at once, with the key cache warm, from another process, with requests queued.

What "stops working on the next request" means here (decided from DESIGN's words, docs/keys.md §5): every
decryption that *starts* after the revoke returns is refused with the documented status, whichever process
did the revoke (the server's admin API, or a CLI editing the data dir while the server or an app with the
middleware runs) and however warm the unwrapped-key cache is. A request already decrypted when the revoke
returns finishes (it is in flight); a request queued behind a slow one and not yet decrypted is refused for
tenant and system scope. The cache saves KMS round trips, never a policy decision.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from cleanroom.client import Client, ClientError
from cleanroom.crypto.sealed import CONTENT_TYPE
from cleanroom.keys.keyring import Keyring
from cleanroom.keys.lifecycle import KeyManager
from cleanroom.keys.local import LocalKMS
from cleanroom.keys.public_key import TenantPublicKey
from cleanroom.keys.registry import Registry
from support.server import REPO, ServerHandle, server_env, start_server

MASTER = "cleanroom-master"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    root = tmp_path_factory.mktemp("redteam")
    signals = root / "signals"
    signals.mkdir()
    env = server_env(
        CLEANROOM_KEY_CACHE_TTL_S="600",  # a warm cache must not outlive a revocation
        CLEANROOM_CPU_WORKERS="1",
        CLEANROOM_REWRAP_INTERVAL_S="0",
        CLEANROOM_TEST_SIGNAL_DIR=str(signals),
    )
    handle = start_server(
        root / "data", "--models", "echo", "--model", "hold=support.hold_model:hold_factory", tls=False, env=env
    )
    handle.signals = signals  # type: ignore[attr-defined]
    try:
        yield handle
    finally:
        handle.stop()


def post(server: ServerHandle, api_key: str, body: bytes, model: str = "echo") -> tuple[int, str]:
    with httpx.Client(base_url=server.url, timeout=60) as http:
        response = http.post(
            f"/v1/models/{model}/infer",
            content=body,
            headers={"Authorization": f"Bearer {api_key}", "Content-Type": CONTENT_TYPE},
        )
    if response.status_code == 200:
        return 200, "ok"
    return response.status_code, response.json()["error"]["code"]


def refused(client: Client, payload: bytes = b"x", model: str = "echo") -> tuple[int, str]:
    with pytest.raises(ClientError) as info:
        client.infer(model, payload)
    return info.value.status, info.value.code


def credential_of(server: ServerHandle, tenant: str) -> str:
    """The tenant's first credential id: what `tenant list --json` prints, from the same admin API call made
    in-process (a lookup, not what these tests attack; the CLI start-up cost ~0.6-2 s a call)."""
    from cleanroom.admin_client import AdminAPI, running_server

    state = running_server(server.data_dir)
    assert state is not None, "the server's admin API is not reachable"
    api = AdminAPI(state)
    try:
        listed = api.request("GET", "/v1/admin/tenants")["tenants"]
    finally:
        api.close()
    return str(next(t for t in listed if t["name"] == tenant)["credentials"][0]["id"])


def keys_cli(server: ServerHandle, *args: str) -> dict[str, Any]:
    out = server.cli("keys", *args, "--data-dir", str(server.data_dir), "--json")
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@contextmanager
def no_admin_api(server: ServerHandle) -> Iterator[None]:
    """The CLI finds no server.json: it edits the data dir directly while the server keeps running."""
    state, hidden = server.data_dir / "server.json", server.data_dir / "server.json.hidden"
    state.rename(hidden)
    try:
        yield
    finally:
        hidden.rename(state)


def manager_on(data_dir: Path) -> KeyManager:
    """A second process's view of the data dir (this test process, not the server)."""
    registry = Registry(data_dir)
    return KeyManager(registry, Keyring(registry, LocalKMS(data_dir)))


# --- revoke and retry at once, cache warm ------------------------------------------------------------
def test_each_scope_refuses_the_very_next_request_through_the_admin_api(server: ServerHandle) -> None:
    server.create_tenant("alpha")
    server.create_tenant("beta")
    alpha, beta = server.client("alpha"), server.client("beta")
    assert alpha.infer("echo", b"warm") == b"warm" and beta.infer("echo", b"warm") == b"warm"
    credential = credential_of(server, "alpha")
    keys_cli(server, "revoke", "--credential", credential)
    assert refused(alpha) == (401, "credential_revoked")
    with httpx.Client(base_url=server.url) as http:  # the public-key route too
        response = http.get(
            "/v1/tenants/self/public-key", headers={"Authorization": f"Bearer {server.tenants['alpha']['api_key']}"}
        )
        assert response.status_code == 401
    assert beta.infer("echo", b"b") == b"b"
    keys_cli(server, "restore", "--credential", credential)
    assert alpha.infer("echo", b"back") == b"back"

    keys_cli(server, "revoke", "--tenant", "alpha")
    assert refused(alpha) == (403, "tenant_revoked")
    assert beta.infer("echo", b"b") == b"b"
    keys_cli(server, "restore", "--tenant", "alpha")
    assert alpha.infer("echo", b"back") == b"back"

    keys_cli(server, "revoke", "--system")
    try:
        assert refused(alpha) == (503, "system_sealed") and refused(beta) == (503, "system_sealed")
    finally:
        keys_cli(server, "restore", "--system")
    assert alpha.infer("echo", b"back") == b"back" and beta.infer("echo", b"back") == b"back"
    alpha.close()
    beta.close()


def test_revocation_by_a_second_process_without_the_admin_api(server: ServerHandle) -> None:
    """Another process edits the data dir directly (the CLI itself refuses to while the server holds the
    audit log: `audit_unavailable`), with the server's key cache warm."""
    server.create_tenant("gamma")
    gamma = server.client("gamma")
    assert gamma.infer("echo", b"warm") == b"warm"
    credential = credential_of(server, "gamma")
    with no_admin_api(server):
        refusal = server.cli("keys", "revoke", "--system", "--data-dir", str(server.data_dir), check=False)
        assert refusal.returncode == 1 and b"audit_unavailable" in refusal.stderr
        other = manager_on(server.data_dir)
        other.set_system_sealed(True)  # the master key disabled in the KMS file
        try:
            assert refused(gamma) == (503, "system_sealed")  # was served from the cache for a whole TTL
        finally:
            other.set_system_sealed(False)
        assert gamma.infer("echo", b"back") == b"back"
        other.set_tenant_revoked("gamma", True)
        assert refused(gamma) == (403, "tenant_revoked")
        other.set_tenant_revoked("gamma", False)
        other.set_credential_revoked(credential, True)
        assert refused(gamma) == (401, "credential_revoked")
        other.set_credential_revoked(credential, False)
    assert gamma.infer("echo", b"back") == b"back"
    gamma.close()


def test_hpke_overlap_ends_on_time_even_with_the_old_key_cached(server: ServerHandle) -> None:
    created = server.create_tenant("delta")
    old = TenantPublicKey.parse(created["public_key"])
    pinned_old = Client(server.url, api_key=created["api_key"], public_key=old)
    assert pinned_old.infer("echo", b"warm") == b"warm"  # the old key is now in the server's cache
    keys_cli(server, "rotate", "--tenant", "delta", "--hpke", "--overlap-s", "2")
    assert pinned_old.infer("echo", b"within the overlap") == b"within the overlap"
    time.sleep(2.2)
    late = pinned_old.seal_request("echo", b"sealed to the old key after the overlap").body
    assert post(server, created["api_key"], late) == (400, "key_expired")
    with server.client("delta") as fresh:
        assert fresh.infer("echo", b"new key") == b"new key"
    # The same from a second process: rotate with no overlap; the cached old key must stop at once.
    current = Client(server.url, api_key=created["api_key"])
    assert current.infer("echo", b"warm") == b"warm"
    with no_admin_api(server):
        manager_on(server.data_dir).rotate_hpke_key("delta", 0)
    body = current.seal_request("echo", b"sealed to the key that just expired").body
    assert post(server, created["api_key"], body) == (400, "key_expired")
    pinned_old.close()
    current.close()


def test_retire_by_a_second_process_refuses_keys_still_on_the_old_version(server: ServerHandle) -> None:
    created = server.create_tenant("epsilon")
    client = server.client("epsilon")
    assert client.infer("echo", b"warm") == b"warm"
    # A tenant-key rotation moves every HPKE key to the new version: still fine after retiring the old one.
    keys_cli(server, "rotate", "--tenant", "epsilon")
    keys_cli(server, "retire", "--tenant", "epsilon", "--min-version", "2")
    assert client.infer("echo", b"after retire") == b"after retire"
    # Warm again, then a second process raises the minimum past the version the HPKE key is on.
    assert client.infer("echo", b"warm") == b"warm"
    registry = Registry(server.data_dir)

    def bump(doc: dict[str, Any]) -> None:  # what a partial rotation + retire leaves: HPKE key on v2, min 3
        keys = doc["tenants"][created["tenant_id"]]["tenant_keys"]
        keys["versions"]["3"], keys["latest_version"], keys["min_version"] = keys["versions"]["2"], 3, 3

    def unbump(doc: dict[str, Any]) -> None:  # back as it was: v3 is v2's wrapped key under v3's name
        keys = doc["tenants"][created["tenant_id"]]["tenant_keys"]
        del keys["versions"]["3"]
        keys["latest_version"], keys["min_version"] = 2, 2

    registry.update(bump)
    try:
        assert refused(client) == (403, "key_version_retired")
    finally:  # a master rotation later in the module (on this server) rewraps every version: v3 cannot open
        registry.update(unbump)
        client.close()


# --- sealed requests that name the wrong tenant or key, replays, deleted tenants ----------------------
def test_cross_tenant_sealing_and_replays_are_refused(server: ServerHandle) -> None:
    a = server.tenants.get("alpha") or server.create_tenant("alpha")
    b = server.tenants.get("beta") or server.create_tenant("beta")
    key_a, key_b = TenantPublicKey.parse(a["public_key"]), TenantPublicKey.parse(b["public_key"])
    # A's credential with a request sealed to B's key (B's tenant id, B's key id): A has no such key.
    with Client(server.url, api_key=a["api_key"], public_key=key_b) as sealed_for_b:
        body = sealed_for_b.seal_request("echo", b"for b").body
    assert post(server, a["api_key"], body) == (400, "unknown_key_id")
    assert post(server, b["api_key"], body)[0] == 200  # the same bytes are fine for B
    assert post(server, b["api_key"], body) == (400, "replayed_request")
    # A's key id and point, but B's tenant id in the sealed metadata: opens with A's key, then refused.
    forged = TenantPublicKey(key_b.tenant_id, key_a.key_id, key_a.key)
    with Client(server.url, api_key=a["api_key"], public_key=forged) as mixed:
        body = mixed.seal_request("echo", b"mixed").body
    assert post(server, a["api_key"], body) == (400, "context_mismatch")
    # B's key id with A's point: B's private key does not open it.
    forged = TenantPublicKey(key_b.tenant_id, key_b.key_id, key_a.key)
    with Client(server.url, api_key=b["api_key"], public_key=forged) as wrong_point:
        body = wrong_point.seal_request("echo", b"wrong point").body
    assert post(server, b["api_key"], body)[0] == 400


def test_replay_of_a_request_sealed_before_a_rotation(server: ServerHandle) -> None:
    created = server.create_tenant("zeta")
    with server.client("zeta") as client:
        body = client.seal_request("echo", b"sealed before the rotation").body
        assert post(server, created["api_key"], body)[0] == 200
        keys_cli(server, "rotate", "--tenant", "zeta")
        assert post(server, created["api_key"], body) == (400, "replayed_request")  # remembered across it
        unsent = client.seal_request("echo", b"sealed, held back").body
        keys_cli(server, "rotate", "--tenant", "zeta", "--hpke", "--overlap-s", "0")
        assert post(server, created["api_key"], unsent) == (400, "key_expired")
        assert post(server, created["api_key"], body) in ((400, "replayed_request"), (400, "key_expired"))


def test_deleted_tenant_old_key_and_old_sealed_requests_are_refused(server: ServerHandle) -> None:
    created = server.create_tenant("eta")
    with server.client("eta") as client:
        assert client.infer("echo", b"warm") == b"warm"
        unsent = client.seal_request("echo", b"sealed before the delete").body
    server.cli("tenant", "delete", "eta", "--data-dir", str(server.data_dir))
    assert post(server, created["api_key"], unsent) == (401, "unauthenticated")
    again = server.create_tenant("eta")  # same name, new tenant: the old sealed bytes mean nothing to it
    assert again["tenant_id"] != created["tenant_id"]
    assert post(server, again["api_key"], unsent) == (400, "unknown_key_id")


# --- queued and concurrent requests -------------------------------------------------------------------
def _hold_payload() -> bytes:
    import torch
    from safetensors.torch import save

    return save({"input": torch.arange(4, dtype=torch.float32)})


@pytest.mark.parametrize(
    ("scope", "refusal"),
    [("tenant", (403, "tenant_revoked")), ("credential", (401, "credential_revoked"))],
)
def test_a_request_queued_behind_a_slow_one_is_refused_after_the_revoke(
    server: ServerHandle, scope: str, refusal: tuple[int, str]
) -> None:
    """Admitted before the revoke, decrypted after it: refused (the credential is checked again when the
    request is opened, as the tenant and the master key are)."""
    signals: Path = server.signals  # type: ignore[attr-defined]
    slow, victim = server.create_tenant(f"slow-{scope}"), server.create_tenant(f"queued-{scope}")
    with server.client(f"queued-{scope}") as warm:
        assert warm.infer("echo", b"warm") == b"warm"  # the key cache is warm
    results: dict[str, tuple[int, str]] = {}
    holder = threading.Thread(
        target=lambda: results.__setitem__("slow", post_sealed(server, slow, _hold_payload(), "hold"))
    )
    holder.start()
    deadline = time.monotonic() + 30
    while not (signals / "holding").exists():
        assert time.monotonic() < deadline, "the hold model never started"
        time.sleep(0.02)
    queued = threading.Thread(target=lambda: results.__setitem__("queued", post_sealed(server, victim, b"q", "echo")))
    queued.start()
    time.sleep(0.5)  # admitted and waiting for the one device
    target = f"queued-{scope}" if scope == "tenant" else credential_of(server, f"queued-{scope}")
    keys_cli(server, "revoke", f"--{scope}", target)
    (signals / "release").touch()
    holder.join(60)
    queued.join(60)
    (signals / "holding").unlink()
    (signals / "release").unlink()
    assert results["slow"][0] == 200
    assert results["queued"] == refusal


def post_sealed(server: ServerHandle, tenant: dict[str, Any], payload: bytes, model: str) -> tuple[int, str]:
    with Client(server.url, api_key=tenant["api_key"], public_key=tenant["public_key"]) as client:
        body = client.seal_request(model, payload).body
    return post(server, tenant["api_key"], body, model)


def test_no_request_sent_after_the_revoke_returns_succeeds(server: ServerHandle) -> None:
    created = server.create_tenant("storm")
    revoked_at: list[float] = []
    late_successes: list[float] = []
    stop = threading.Event()

    def hammer() -> None:
        with Client(server.url, api_key=created["api_key"]) as client:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    client.infer("echo", b"storm")
                    if revoked_at and sent > revoked_at[0]:
                        late_successes.append(sent - revoked_at[0])
                except ClientError as exc:
                    assert (exc.status, exc.code) in ((401, "credential_revoked"), (403, "tenant_revoked")), exc

    workers = [threading.Thread(target=hammer) for _ in range(3)]
    for worker in workers:
        worker.start()
    time.sleep(0.5)
    with httpx.Client(base_url=server.url, timeout=60) as admin:
        token = (server.data_dir / "admin.token").read_text().strip()
        response = admin.post(
            "/v1/admin/keys/revoke",
            json={"scope": "tenant", "target": "storm"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200
    revoked_at.append(time.monotonic())
    time.sleep(0.7)
    stop.set()
    for worker in workers:
        worker.join(60)
    assert late_successes == []


# --- master rotation, crashes, files on disk ------------------------------------------------------------
CRASH_SCRIPT = r"""
import os, signal, sys
from pathlib import Path
import cleanroom.storage as storage
n = int(sys.argv[2]); calls = [0]; real = os.fsync
def fsync(fd):
    calls[0] += 1
    if calls[0] == n:
        os.kill(os.getpid(), signal.SIGKILL)  # mid-write: the temp file is written, not yet renamed
    real(fd)
storage.os.fsync = fsync
from cleanroom.keys.registry import Registry
from cleanroom.keys.keyring import Keyring
from cleanroom.keys.local import LocalKMS
from cleanroom.keys.lifecycle import KeyManager
d = Path(sys.argv[1]); r = Registry(d); m = KeyManager(r, Keyring(r, LocalKMS(d)))
m.rotate_master_key(); m.rotate_tenant_key("crash")
"""


def test_kill_9_in_the_middle_of_keys_rotate_leaves_a_usable_data_dir(tmp_path: Path) -> None:
    from cleanroom.tenants import TenantService

    data = tmp_path / "data"
    registry = Registry(data)
    keyring = Keyring(registry, LocalKMS(data))
    keyring.ensure_master_key()
    created = TenantService(registry, keyring).create("crash")
    for n in (1, 2, 3, 5, 6, 8):
        run = subprocess.run(
            [sys.executable, "-c", CRASH_SCRIPT, str(data), str(n)],
            cwd=REPO,
            env=server_env(),
            capture_output=True,
            timeout=60,
        )
        assert run.returncode in (0, -signal.SIGKILL), run.stderr.decode()[-2000:]
        fresh_registry = Registry(data)
        fresh = Keyring(fresh_registry, LocalKMS(data))
        tenant = fresh_registry.tenant("crash")
        assert fresh.hpke_private_key(tenant, created.key_id) is not None  # the old key or the new, never neither
        assert TenantService(fresh_registry, fresh).authenticate(created.api_key).tenant_id == created.tenant_id
        for leftover in data.rglob("*.tmp"):  # a killed write leaves its temp file: private, like the rest
            assert stat.S_IMODE(leftover.stat().st_mode) == 0o600, leftover
    assert manager_on(data).rewrap_all() >= 0


def test_key_material_on_disk_is_private(server: ServerHandle) -> None:
    server.tenants.get("alpha") or server.create_tenant("alpha")
    keys_cli(server, "rotate", "--tenant", "alpha")
    offenders = []
    for path in [server.data_dir, *server.data_dir.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if (path.is_dir() and mode != 0o700) or (path.is_file() and mode & 0o077):
            offenders.append(f"{path.relative_to(server.data_dir)} {mode:04o}")
    assert offenders == []


def test_master_rotation_leaves_nothing_on_the_retired_version(server: ServerHandle) -> None:
    """Rotate, retire the old master version, restart: every wrapped key (tenant keys, pepper, audit keys)
    still opens. The audit keys were left on the old version: the server could not start again.

    The first server is the module's (one start saved, ~4 s of CPU; the rotation now has the other tests'
    tenants, revoked and deleted ones among them, to rewrap too): this test stops it, so it comes after every
    other test that uses it."""
    data = server.data_dir
    first = server
    try:
        first.create_tenant("one")
        with first.client("one") as client:
            assert client.infer("echo", b"before") == b"before"
        result = json.loads(first.cli("keys", "rotate", "--master", "--data-dir", str(data), "--json").stdout)
        assert result["master_version"] == 2
        status = json.loads(first.cli("keys", "status", "--data-dir", str(data), "--json").stdout)
        assert status["wrapped_below_latest_master"] == 0
    finally:
        first.stop()
    audit_keys = json.loads((data / "audit" / "keys.json").read_text())
    assert audit_keys["audit_key"]["version"] == 2 and audit_keys["signing_key"]["version"] == 2
    LocalKMS(data).set_min_decryption_version(MASTER, 2)
    second = start_server(data, "--models", "echo", tls=False)
    try:
        second.tenants = first.tenants
        with second.client("one") as client:
            assert client.infer("echo", b"after") == b"after"
        verify = second.cli("audit", "verify", "--data-dir", str(data), check=False)
        assert verify.returncode == 0, verify.stderr.decode()[-2000:]
    finally:
        second.stop()


@pytest.mark.parametrize(
    "damage",
    ["mode_0644", "short_key", "not_json", "no_keys"],
)
def test_a_damaged_master_key_file_is_a_clear_error_at_startup(tmp_path: Path, damage: str) -> None:
    data = tmp_path / "data"
    kms = LocalKMS(data)
    kms.create_key(MASTER)
    path = data / "kms" / "master-keys.json"
    document = json.loads(path.read_text())
    if damage == "mode_0644":
        path.chmod(0o644)
    elif damage == "short_key":
        import base64

        document["keys"][MASTER]["versions"]["1"] = base64.b64encode(os.urandom(16)).decode()
        path.write_text(json.dumps(document))
    elif damage == "not_json":
        path.write_bytes(os.urandom(64))
    else:
        path.write_text("[]")
    run = subprocess.run(
        [sys.executable, "-m", "cleanroom", "keys", "status", "--data-dir", str(data)],
        cwd=REPO,
        env=server_env(),
        capture_output=True,
        timeout=60,
    )
    err = run.stderr.decode()
    assert run.returncode != 0 and "Traceback" not in err, err
    assert "master-keys.json" in err and "configuration_error" in err, err


# --- the ASGI middleware: revocations done by another process on its data dir ---------------------------
def _middleware(data_dir: Path) -> Any:
    from cleanroom.config import Settings
    from cleanroom.integrations.asgi import CleanroomMiddleware

    inner = FastAPI()

    @inner.post("/predict")
    async def predict(request: Request) -> dict[str, str]:
        return {"seen": (await request.body()).decode()}

    return CleanroomMiddleware(
        inner, settings=Settings(data_dir=data_dir, key_cache_ttl_s=600), protected_paths=("/predict",)
    )


def test_asgi_middleware_sees_revocations_from_another_process_on_the_next_request(data_dir: Path) -> None:
    from fastapi.testclient import TestClient

    from cleanroom.tenants import TenantService

    registry = Registry(data_dir)
    keyring = Keyring(registry, LocalKMS(data_dir))
    keyring.ensure_master_key()
    created = TenantService(registry, keyring).create("shop")
    app = _middleware(data_dir)
    try:
        http = TestClient(app)
        client = Client("http://testserver", api_key=created.api_key)
        client._http = http
        http.headers["Authorization"] = f"Bearer {created.api_key}"

        def call() -> tuple[int, str]:
            try:
                return 200, json.loads(client.call("/predict", b'"x"'))["seen"]
            except ClientError as exc:
                return exc.status, exc.code

        other = manager_on(data_dir)
        assert call() == (200, '"x"')  # the key is now cached in the app's process
        other.set_system_sealed(True)
        assert call() == (503, "system_sealed")
        other.set_system_sealed(False)
        assert call() == (200, '"x"')
        other.set_tenant_revoked("shop", True)
        assert call() == (403, "tenant_revoked")
        other.set_tenant_revoked("shop", False)
        other.set_credential_revoked(registry.tenant("shop")["credentials"][0]["id"], True)
        assert call() == (401, "credential_revoked")
        other.set_credential_revoked(registry.tenant("shop")["credentials"][0]["id"], False)
        assert call() == (200, '"x"')
        other.rotate_hpke_key("shop", 0)
        body = client.seal_request("", b'"old key"', path="/predict").body  # still the old, now expired, key
        response = http.post("/predict", content=body, headers={"Content-Type": CONTENT_TYPE})
        assert (response.status_code, response.json()["error"]["code"]) == (400, "key_expired")
    finally:
        app.services.close()


def test_cli_can_revoke_next_to_a_running_asgi_middleware(data_dir: Path) -> None:
    app = _middleware(data_dir)
    try:
        run = subprocess.run(
            [sys.executable, "-m", "cleanroom", "keys", "revoke", "--system", "--data-dir", str(data_dir)],
            cwd=REPO,
            env=server_env(),
            capture_output=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr.decode()
    finally:
        app.services.close()
