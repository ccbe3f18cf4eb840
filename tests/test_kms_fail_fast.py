"""Our own KMS going away: cache misses fail at once with 503 + Retry-After while its back-off window is open
(keys are unwrapped on the device worker, so a hanging KMS must not hold every tenant's device for a timeout
per batch), cached keys keep serving, a refusal (403) never opens the window, and service resumes alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cleanroom.errors import KMSPermissionDenied, KMSUnavailable
from cleanroom.keys.keyring import Keyring
from cleanroom.keys.kms import WrappedKey
from cleanroom.keys.local import LocalKMS
from cleanroom.keys.registry import Registry
from cleanroom.tenants import TenantService


class FlakyKMS(LocalKMS):
    """A LocalKMS whose unwraps can be made to fail as a network would show it; counts the attempts."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.state = "up"
        self.unwrap_attempts = 0

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytearray:
        self.unwrap_attempts += 1
        if self.state == "down":
            raise KMSUnavailable("KMS timed out after 5 s", retry_after_s=4.0)
        if self.state == "refusing":
            raise KMSPermissionDenied("token expired")
        return super().unwrap(wrapped, context)


def make_world(tmp_path: Path, *, ttl_s: float) -> Any:
    """A keyring over a FlakyKMS with a hand-driven clock: (keyring, kms, registry, service, clock)."""
    clock = [100.0]
    registry = Registry(tmp_path / "data")
    kms = FlakyKMS(tmp_path / "data")
    kms.create_key("m")
    keyring = Keyring(registry, kms, master_key_name="m", ttl_s=ttl_s, clock=lambda: clock[0])
    return keyring, kms, registry, TenantService(registry, keyring), clock


@pytest.fixture
def world(tmp_path: Path) -> Any:
    return make_world(tmp_path, ttl_s=0)  # no key cache: every unwrap goes to the KMS


def unwrap(keyring: Keyring, registry: Registry, name: str, key_id: str) -> None:
    keyring.hpke_private_key(registry.tenant(name), key_id)


def test_after_an_outage_cache_misses_fail_at_once_until_retry_after(world: Any) -> None:
    keyring, kms, registry, service, clock = world
    acme, other = service.create("acme"), service.create("other")
    kms.state = "down"
    with pytest.raises(KMSUnavailable):
        unwrap(keyring, registry, "acme", acme.key_id)
    attempts = kms.unwrap_attempts
    clock[0] += 1.5
    with pytest.raises(KMSUnavailable) as fast:  # another tenant: the KMS is the same, so is the outage
        unwrap(keyring, registry, "other", other.key_id)
    assert kms.unwrap_attempts == attempts  # not asked: no timeout waited on the device worker
    assert (fast.value.status, fast.value.code) == (503, "kms_unavailable")
    assert fast.value.headers() == {"Retry-After": "3"}  # 2.5 s left of the 4 s window (rounded up), not 4
    kms.state = "up"
    clock[0] += 2.6  # the window is over: one call tries again, and it works
    unwrap(keyring, registry, "other", other.key_id)
    assert kms.unwrap_attempts == attempts + 1
    unwrap(keyring, registry, "acme", acme.key_id)


def test_a_failure_after_the_window_opens_a_new_one(world: Any) -> None:
    keyring, kms, registry, service, clock = world
    acme = service.create("acme")
    kms.state = "down"
    for _ in range(2):
        with pytest.raises(KMSUnavailable):
            unwrap(keyring, registry, "acme", acme.key_id)
        clock[0] += 5
    assert kms.unwrap_attempts == 2  # one attempt per window, each after the previous window ended
    with pytest.raises(KMSUnavailable):
        unwrap(keyring, registry, "acme", acme.key_id)
    assert kms.unwrap_attempts == 3


def test_a_refusal_is_not_an_outage(world: Any) -> None:
    keyring, kms, registry, service, clock = world
    acme = service.create("acme")
    kms.state = "refusing"
    for attempt in range(1, 3):
        with pytest.raises(KMSPermissionDenied):
            unwrap(keyring, registry, "acme", acme.key_id)
        assert kms.unwrap_attempts == attempt  # asked every time: a fixed credential works at once
    kms.state = "up"
    unwrap(keyring, registry, "acme", acme.key_id)


def test_cached_keys_keep_serving_during_the_window(tmp_path: Path) -> None:
    keyring, kms, registry, service, clock = make_world(tmp_path, ttl_s=30)
    acme, other = service.create("acme"), service.create("other")
    unwrap(keyring, registry, "acme", acme.key_id)  # cached for 30 s
    kms.state = "down"
    with pytest.raises(KMSUnavailable):
        unwrap(keyring, registry, "other", other.key_id)
    unwrap(keyring, registry, "acme", acme.key_id)  # from the cache: the outage does not touch it
