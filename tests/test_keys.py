"""Local KMS, keyring and registry: context binding, rotation, disable, cache, atomic files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from cleanroom.errors import (
    BadRequest,
    ConfigurationError,
    DecryptionFailed,
    KeyError_,
    SystemSealed,
    TenantRevoked,
    Unauthenticated,
)
from cleanroom.keys import api_keys
from cleanroom.keys.keyring import Keyring
from cleanroom.keys.local import LocalKMS
from cleanroom.keys.registry import Registry
from cleanroom.tenants import TenantService


@pytest.fixture
def kms(data_dir: Path) -> LocalKMS:
    kms = LocalKMS(data_dir)
    kms.create_key("m")
    return kms


def test_master_key_file_is_private(kms: LocalKMS, data_dir: Path) -> None:
    mode = stat.S_IMODE(os.stat(data_dir / "kms" / "master-keys.json").st_mode)
    assert mode == 0o600


def test_a_symlinked_master_key_file_is_refused_before_a_rotation_can_split_it(kms: LocalKMS, data_dir: Path) -> None:
    """Read through a link, the file works until the first rotation: its atomic rewrite replaces the link
    with a plain file and the link's target silently stops being the key. Refused at open and per use."""
    key, wrapped = kms.generate_data_key("m", b"c")
    path = data_dir / "kms" / "master-keys.json"
    real = data_dir / "elsewhere.json"
    path.rename(real)
    path.symlink_to(real)
    with pytest.raises(ConfigurationError, match="is a symlink"):
        LocalKMS(data_dir)
    os.utime(real)  # a change the running instance notices (stat stamp), as another process's write would be
    with pytest.raises(ConfigurationError, match="is a symlink"):
        kms.unwrap(wrapped, b"c")
    with pytest.raises(ConfigurationError, match="is a symlink"):
        kms.rotate("m")
    assert path.is_symlink() and real.read_bytes()  # nothing rewritten
    path.unlink()
    real.rename(path)
    assert kms.unwrap(wrapped, b"c") == key


def test_wrap_binds_context_and_detects_tampering(kms: LocalKMS) -> None:
    key, wrapped = kms.generate_data_key("m", b"tenant-a")
    assert kms.unwrap(wrapped, b"tenant-a") == key
    with pytest.raises(DecryptionFailed):
        kms.unwrap(wrapped, b"tenant-b")
    for position in range(len(wrapped.ciphertext)):
        blob = bytearray(wrapped.ciphertext)
        blob[position] ^= 1
        with pytest.raises(DecryptionFailed):
            kms.unwrap(type(wrapped)(wrapped.kms, wrapped.key_name, wrapped.version, bytes(blob)), b"tenant-a")


def test_rotation_min_version_and_disable(kms: LocalKMS, data_dir: Path) -> None:
    key, old = kms.generate_data_key("m", b"c")
    assert kms.rotate("m") == 2
    new = kms.rewrap(old, b"c")
    assert new.version == 2 and kms.unwrap(new, b"c") == key and kms.unwrap(old, b"c") == key
    kms.set_min_decryption_version("m", 2)
    with pytest.raises(KeyError_):
        kms.unwrap(old, b"c")
    # Disabled from another process (a second instance over the same file): effective at once.
    LocalKMS(data_dir).disable("m")
    with pytest.raises(SystemSealed):
        kms.unwrap(new, b"c")
    LocalKMS(data_dir).enable("m")
    assert kms.unwrap(new, b"c") == key


def make_service(data_dir: Path, kms: LocalKMS, ttl_s: float = 30) -> tuple[TenantService, Keyring, Registry]:
    registry = Registry(data_dir)
    keyring = Keyring(registry, kms, master_key_name="m", ttl_s=ttl_s)
    return TenantService(registry, keyring), keyring, registry


def test_tenant_keys_and_cache(data_dir: Path, kms: LocalKMS) -> None:
    clock = [0.0]
    service, keyring, registry = make_service(data_dir, kms)
    keyring._clock = lambda: clock[0]
    created = service.create("acme")
    record = registry.tenant("acme")
    calls = keyring.kms_calls
    first = keyring.hpke_private_key(record, created.key_id)
    keyring.hpke_private_key(record, created.key_id)
    assert keyring.kms_calls == calls + 1  # second call from the cache
    clock[0] += 31
    keyring.hpke_private_key(record, created.key_id)
    assert keyring.kms_calls == calls + 2  # TTL expired
    assert keyring.purge(record["tenant_id"]) == 1
    assert first.private_numbers() == keyring.hpke_private_key(record, created.key_id).private_numbers()
    with pytest.raises(DecryptionFailed):
        keyring.hpke_private_key(record, "hk_unknown")
    with pytest.raises(TenantRevoked):
        keyring.hpke_private_key({**record, "revoked": True}, created.key_id)


def test_registry_never_holds_usable_secrets(data_dir: Path, kms: LocalKMS) -> None:
    service, _, registry = make_service(data_dir, kms)
    created = service.create("acme")
    raw = registry.path.read_text()
    assert created.api_key not in raw
    assert stat.S_IMODE(os.stat(registry.path).st_mode) == 0o600
    assert service.authenticate(created.api_key).tenant_id == created.tenant_id


def test_authentication_failures(data_dir: Path, kms: LocalKMS) -> None:
    service, _, _ = make_service(data_dir, kms)
    created = service.create("acme")
    for bad in (
        "",
        "cr_short",
        created.api_key[:-1] + ("A" if created.api_key[-1] != "A" else "B"),
        api_keys.generate_api_key(),
    ):
        with pytest.raises(Unauthenticated):
            service.authenticate(bad)
    service.delete("acme")
    with pytest.raises(Unauthenticated):
        service.authenticate(created.api_key)


def test_api_key_format_and_checksum() -> None:
    key = api_keys.generate_api_key()
    assert key.startswith("cr_") and len(key) == 39 and api_keys.is_well_formed(key)
    body = key[3:]
    for i in range(len(body)):
        mutated = "cr_" + body[:i] + ("0" if body[i] != "0" else "1") + body[i + 1 :]
        assert not api_keys.is_well_formed(mutated)


def test_tenant_names_are_validated_and_unique(data_dir: Path, kms: LocalKMS) -> None:
    from cleanroom.errors import BadRequest, Conflict

    service, _, _ = make_service(data_dir, kms)
    service.create("acme")
    with pytest.raises(Conflict):
        service.create("acme")
    for bad in ("", "Upper", "-x", "a" * 64, "a b"):
        with pytest.raises(BadRequest):
            service.create(bad)


@pytest.mark.parametrize(
    ("label", "expires_in_s", "code"),
    [
        ("ci", float("inf"), "invalid_expiry"),  # stored as `Infinity`: every later listing failed
        ("ci", float("nan"), "invalid_expiry"),  # a NaN expiry never expires
        ("ci", 1e308, "invalid_expiry"),
        ("ci", -1.0, "invalid_expiry"),
        ("ci\nforged log line", 60.0, "invalid_label"),
        ("nul\x00", 60.0, "invalid_label"),
        ("", 60.0, "invalid_label"),
    ],
)
def test_the_service_refuses_bad_credentials_and_stores_nothing(
    data_dir: Path, kms: LocalKMS, label: str, expires_in_s: float, code: str
) -> None:
    """The Python API checks what the HTTP and CLI layers check: it is the layer that stores."""
    service, _, registry = make_service(data_dir, kms)
    service.create("acme")
    before = registry.tenant("acme")["credentials"]
    with pytest.raises(BadRequest) as refused:
        service.add_credential("acme", label=label, expires_in_s=expires_in_s)
    assert refused.value.code == code
    assert registry.tenant("acme")["credentials"] == before
    assert service.add_credential("acme", label="ci ✓", expires_in_s=86400.0).api_key.startswith("cr_")


@pytest.mark.parametrize("name", ["alpha\n", "alpha\r\n", "Alpha", "-alpha", "a" * 64, ""])
def test_tenant_names_are_matched_whole(name: str) -> None:
    from cleanroom.keys.registry import validate_tenant_name

    with pytest.raises(BadRequest):
        validate_tenant_name(name)
    assert validate_tenant_name("alpha") == "alpha"


@pytest.mark.parametrize(
    ("action", "body", "text"),
    [
        ("rotate", {"scope": "hpke", "target": "t", "overlap_s": "nan"}, "finite"),
        ("rotate", {"scope": "hpke", "target": "t", "overlap_s": float("inf")}, "finite"),
        ("rotate", {"scope": "hpke", "target": "t", "overlap_s": "abc"}, "must be a number"),
        ("rotate", {"scope": "hpke", "target": "t", "overlap_s": True}, "must be a number"),
        ("retire", {"scope": "tenant", "target": "t"}, "min_version is required"),
        ("retire", {"scope": "tenant", "target": "t", "min_version": "2x"}, "must be a number"),
    ],
)
def test_key_actions_on_the_cli_s_local_path_check_their_numbers(
    action: str, body: dict[str, object], text: str
) -> None:
    """The admin API validates bodies; the CLI's local path (no server) calls `key_action` directly, where
    `float("nan")` became an expiry nothing reaches and a missing min_version a KeyError traceback."""
    from cleanroom.keys.commands import key_action

    class Untouchable:
        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"the manager was called ({name}) with an invalid body")

    with pytest.raises(BadRequest, match=text):
        key_action(Untouchable(), action, body, policy=None)


def test_an_hpke_overlap_that_is_not_finite_is_refused_by_the_manager_itself(data_dir: Path) -> None:
    from cleanroom.keys.lifecycle import KeyManager

    with pytest.raises(BadRequest, match="finite"):
        KeyManager.rotate_hpke_key(object(), "t", float("nan"))  # type: ignore[arg-type]
