"""VaultTransitKMS against a real OpenBao server started here (backend-specific behaviour).

The behaviour every backend shares is in test_kms_contract.py; this file covers what is Transit's own:
ciphertext versions, batch calls, server-side rewrap, bring-your-own non-derived keys, soft-delete seen
from a second client, permissions, and an outage (kill OpenBao, restart it, recover without a new client).
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cleanroom.errors import (
    DecryptionFailed,
    KeyError_,
    KMSPermissionDenied,
    KMSUnavailable,
    SystemSealed,
)
from cleanroom.keys.kms import WrappedKey
from cleanroom.keys.vault import VaultTransitKMS
from services import OpenBao


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    with OpenBao(tmp_path_factory.mktemp("openbao")) as server:
        yield server


@pytest.fixture
def kms(bao: OpenBao) -> Iterator[VaultTransitKMS]:
    client = VaultTransitKMS(bao.addr, bao.root_token, timeout_s=2, retry_after_s=3)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def key_name(kms: VaultTransitKMS) -> str:
    name = f"master-{uuid.uuid4().hex[:8]}"
    kms.create_key(name)
    return name


def _transit(bao: OpenBao, method: str, path: str, body: dict[str, object] | None = None) -> dict[str, object]:
    result: dict[str, object] = bao._http(method, f"transit/{path}", body, token=bao.root_token)
    return result


def test_created_key_is_derived_aead_and_not_exportable(bao: OpenBao, kms: VaultTransitKMS, key_name: str) -> None:
    data = _transit(bao, "GET", f"keys/{key_name}")["data"]
    assert isinstance(data, dict)
    assert data["type"] == "aes256-gcm96" and data["derived"] is True
    assert data["exportable"] is False and data["deletion_allowed"] is False
    kms.create_key(key_name)  # idempotent
    assert kms.describe(key_name).latest_version == 1


def test_ciphertext_is_what_transit_holds_and_versions_follow_prefix(
    bao: OpenBao, kms: VaultTransitKMS, key_name: str
) -> None:
    context = b"tenant=t1|purpose=tenant-key"
    w1 = kms.wrap(key_name, b"\x01" * 32, context)
    assert w1.version == 1
    kms.rotate(key_name)
    w2 = kms.wrap(key_name, b"\x02" * 32, context)
    assert w2.version == 2
    # The stored bytes are exactly Transit's: the server itself decrypts the rebuilt vault:vN: string.
    text = f"vault:v{w1.version}:" + base64.b64encode(w1.ciphertext).decode()
    ctx = base64.b64encode(b"cleanroom/v1\x00" + context).decode()
    out = _transit(bao, "POST", f"decrypt/{key_name}", {"ciphertext": text, "context": ctx})["data"]
    assert isinstance(out, dict) and base64.b64decode(str(out["plaintext"])) == b"\x01" * 32
    # Relabelling a v1 ciphertext as v2 sends it to the other master version: it must not open.
    with pytest.raises(DecryptionFailed):
        kms.unwrap(WrappedKey("vault", key_name, 2, w1.ciphertext), context)
    with pytest.raises(DecryptionFailed):  # a version that does not exist yet
        kms.unwrap(WrappedKey("vault", key_name, 9, w1.ciphertext), context)


def test_every_truncation_fails(kms: VaultTransitKMS, key_name: str) -> None:
    wrapped = kms.wrap(key_name, b"k" * 32, b"ctx")
    for cut in range(0, len(wrapped.ciphertext), 7):
        with pytest.raises(DecryptionFailed):
            kms.unwrap(WrappedKey("vault", key_name, 1, wrapped.ciphertext[:cut]), b"ctx")


def test_foreign_backend_record_refused(kms: VaultTransitKMS, key_name: str) -> None:
    wrapped = kms.wrap(key_name, b"k" * 32, b"ctx")
    with pytest.raises(DecryptionFailed):
        kms.unwrap(WrappedKey("local", key_name, 1, wrapped.ciphertext), b"ctx")


def test_batch_unwrap_one_round_trip_and_all_or_nothing(kms: VaultTransitKMS, key_name: str) -> None:
    items = [(bytes([i]) * 32, f"tenant-{i}".encode()) for i in range(40)]
    wrapped = kms.wrap_many(key_name, items)
    assert [w.version for w in wrapped] == [1] * 40
    keys = kms.unwrap_many([(w, ctx) for w, (_, ctx) in zip(wrapped, items, strict=True)])
    assert [bytes(k) for k in keys] == [pt for pt, _ in items]
    # One wrong context in the batch: the call fails, names the item, and returns nothing.
    bad = [(w, ctx) for w, (_, ctx) in zip(wrapped, items, strict=True)]
    bad[17] = (bad[17][0], b"tenant-other")
    with pytest.raises(DecryptionFailed, match="batch item 17"):
        kms.unwrap_many(bad)


def test_batch_unwrap_mixes_keys_and_keeps_order(kms: VaultTransitKMS, key_name: str) -> None:
    other = f"{key_name}-b"
    kms.create_key(other)
    wa = kms.wrap(key_name, b"A" * 32, b"a")
    wb = kms.wrap(other, b"B" * 32, b"b")
    keys = kms.unwrap_many([(wb, b"b"), (wa, b"a"), (wb, b"b")])
    assert [bytes(k) for k in keys] == [b"B" * 32, b"A" * 32, b"B" * 32]


def test_rewrap_many_moves_everything_to_newest(kms: VaultTransitKMS, key_name: str) -> None:
    items = [(bytes([i]) * 32, f"t{i}".encode()) for i in range(10)]
    wrapped = kms.wrap_many(key_name, items)
    kms.rotate(key_name)
    kms.rotate(key_name)
    moved = kms.rewrap_many([(w, ctx) for w, (_, ctx) in zip(wrapped, items, strict=True)])
    assert {w.version for w in moved} == {3}
    kms.set_min_decryption_version(key_name, 3)
    assert [bytes(kms.unwrap(w, ctx)) for w, (_, ctx) in zip(moved, items, strict=True)] == [p for p, _ in items]
    with pytest.raises(KeyError_) as info:
        kms.unwrap(wrapped[0], items[0][1])
    assert info.value.code == "key_version_retired"


def test_bring_your_own_non_derived_key_uses_associated_data(bao: OpenBao, kms: VaultTransitKMS) -> None:
    """A customer's existing plain aes256-gcm96 key: context goes in as AAD, rewrap falls back locally."""
    name = f"byok-{uuid.uuid4().hex[:8]}"
    _transit(bao, "POST", f"keys/{name}", {"type": "aes256-gcm96"})
    kms.create_key(name)  # accepts the existing key as is
    assert kms.describe(name).extra["context_binding"] == "associated_data"
    wrapped = kms.wrap(name, b"k" * 32, b"ctx-1")
    with pytest.raises(DecryptionFailed):
        kms.unwrap(wrapped, b"ctx-2")
    kms.rotate(name)
    moved = kms.rewrap(wrapped, b"ctx-1")
    assert moved.version == 2 and bytes(kms.unwrap(moved, b"ctx-1")) == b"k" * 32
    with pytest.raises(DecryptionFailed):
        kms.rewrap(wrapped, b"ctx-2")


def test_non_aead_key_is_a_configuration_error(bao: OpenBao, kms: VaultTransitKMS) -> None:
    from cleanroom.errors import ConfigurationError

    name = f"sig-{uuid.uuid4().hex[:8]}"
    _transit(bao, "POST", f"keys/{name}", {"type": "ed25519"})
    with pytest.raises(ConfigurationError, match="AEAD"):
        kms.wrap(name, b"k" * 32, b"ctx")


def test_disable_is_seen_by_every_client_of_the_server(bao: OpenBao, kms: VaultTransitKMS, key_name: str) -> None:
    """Soft-delete is server state: a second, independent client is sealed too, and restored by enable."""
    other = VaultTransitKMS(bao.addr, bao.root_token)
    wrapped = kms.wrap(key_name, b"k" * 32, b"ctx")
    kms.disable(key_name)
    try:
        for call in (
            lambda: other.unwrap(wrapped, b"ctx"),
            lambda: other.wrap(key_name, b"x" * 32, b"ctx"),
            lambda: other.rewrap(wrapped, b"ctx"),
            lambda: other.rotate(key_name),
            lambda: other.generate_data_key(key_name, b"ctx"),
        ):
            with pytest.raises(SystemSealed):
                call()
        assert other.describe(key_name).enabled is False
    finally:
        kms.enable(key_name)
    assert bytes(other.unwrap(wrapped, b"ctx")) == b"k" * 32
    other.close()


def test_local_flag_fallback_when_server_has_no_soft_delete(
    kms: VaultTransitKMS, key_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HashiCorp Vault answers 405 on soft-delete: disable must still refuse, in this process."""
    from cleanroom.errors import ConfigurationError

    wrapped = kms.wrap(key_name, b"k" * 32, b"ctx")
    real = kms._request

    def no_soft_delete(method: str, path: str, payload: dict[str, object] | None = None, **kw: bool) -> dict:
        if path.endswith("/soft-delete"):
            raise ConfigurationError("Transit does not support soft-delete on this server")
        return real(method, path, payload, **kw)

    monkeypatch.setattr(kms, "_request", no_soft_delete)
    kms.disable(key_name)
    with pytest.raises(SystemSealed):
        kms.unwrap(wrapped, b"ctx")
    desc = kms.describe(key_name)
    assert not desc.enabled and desc.extra["disable_mechanism"] == "local-flag"
    kms.enable(key_name)
    assert bytes(kms.unwrap(wrapped, b"ctx")) == b"k" * 32


def test_token_without_permission_gets_a_clear_error(bao: OpenBao, key_name: str) -> None:
    policy = 'path "transit/keys/*" { capabilities = ["read"] }'
    bao._http("PUT", "sys/policies/acl/readonly", {"policy": policy}, token=bao.root_token)
    token = bao._http("POST", "auth/token/create", {"policies": ["readonly"], "ttl": "5m"}, token=bao.root_token)[
        "auth"
    ]["client_token"]
    limited = VaultTransitKMS(bao.addr, token)
    assert limited.describe(key_name).latest_version >= 1
    with pytest.raises(KMSPermissionDenied, match="403"):
        limited.wrap(key_name, b"k" * 32, b"ctx")
    bad = VaultTransitKMS(bao.addr, "not-a-token")
    with pytest.raises(KMSPermissionDenied):
        bad.describe(key_name)


def test_constructor_rejects_bad_configuration() -> None:
    from cleanroom.errors import ConfigurationError

    for args in (("ftp://x", "t"), ("http://127.0.0.1:1", ""), ("not a url", "t")):
        with pytest.raises(ConfigurationError):
            VaultTransitKMS(*args)
    with pytest.raises(ConfigurationError):
        VaultTransitKMS("http://127.0.0.1:1", "t", mount="../sys")


def test_outage_gives_kms_unavailable_then_recovers(tmp_path: Path) -> None:
    """Kill OpenBao (SIGKILL): every call is KMSUnavailable with retry_after_s; restart: the same client works."""
    server = OpenBao(tmp_path / "outage")
    server.start()
    try:
        kms = VaultTransitKMS(server.addr, server.root_token, timeout_s=1, retry_after_s=2)
        kms.create_key("master")
        wrapped = kms.wrap("master", b"k" * 32, b"ctx")
        server.kill()
        started = time.monotonic()
        for call in (
            lambda: kms.unwrap(wrapped, b"ctx"),
            lambda: kms.wrap("master", b"k" * 32, b"ctx"),
            lambda: kms.describe("master"),
            lambda: kms.unwrap_many([(wrapped, b"ctx")]),
        ):
            with pytest.raises(KMSUnavailable) as info:
                call()
            assert info.value.retry_after_s == 2 and info.value.status == 503
        assert time.monotonic() - started < 5, "a dead server must fail fast, not hang"
        server.start()  # same port, same storage: unsealed again with the saved key
        assert bytes(kms.unwrap(wrapped, b"ctx")) == b"k" * 32
        kms.close()
    finally:
        server.stop()


def test_unreachable_timeout_is_kms_unavailable() -> None:
    """A server that accepts but never answers: the client's timeout turns into KMSUnavailable."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        kms = VaultTransitKMS(f"http://127.0.0.1:{port}", "t", timeout_s=0.3)
        started = time.monotonic()
        with pytest.raises(KMSUnavailable):
            kms.describe("master")
        assert time.monotonic() - started < 3


def test_batch_endpoint_round_trips_are_counted(bao: OpenBao, key_name: str) -> None:
    """40 keys unwrap in one HTTP request (Transit batch_input), not 40."""
    kms = VaultTransitKMS(bao.addr, bao.root_token)
    items = [(bytes([i]) * 32, f"c{i}".encode()) for i in range(40)]
    wrapped = kms.wrap_many(key_name, items)
    kms.describe(key_name)  # warm the derived-flag cache
    calls: list[str] = []
    real = kms._client.adapter.request

    def counting(method: str, url: str, **kw: object) -> object:
        calls.append(url)
        return real(method, url, **kw)

    kms._client.adapter.request = counting  # type: ignore[method-assign]
    kms.unwrap_many([(w, ctx) for w, (_, ctx) in zip(wrapped, items, strict=True)])
    assert calls == [f"/v1/transit/decrypt/{key_name}"]


def test_sys_health_is_reachable(bao: OpenBao) -> None:
    with urllib.request.urlopen(f"{bao.addr}/v1/sys/health", timeout=5) as resp:
        assert json.loads(resp.read())["sealed"] is False
