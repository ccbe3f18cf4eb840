"""The customer-KMS layer of bring-your-own-key, in process: fail fast while the customer's KMS is away (keys
are unwrapped on the device worker, so a hanging customer server must not hold every tenant's device), the
credential stored only wrapped, and a failed configuration changing nothing. The real-server version of
these paths is tests/test_byok_external.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from cleanroom.errors import BadRequest, DecryptionFailed, KMSPermissionDenied, KMSUnavailable, UnknownTenant
from cleanroom.keys.customer_kms import CustomerKeyUnavailable, CustomerKMSResolver, CustomerKMSUnavailable
from cleanroom.keys.keyring import Keyring
from cleanroom.keys.kms import KMS, WrappedKey
from cleanroom.keys.lifecycle import KeyManager
from cleanroom.keys.local import LocalKMS
from cleanroom.keys.registry import Registry
from cleanroom.tenants import TenantService

TOKEN = "s.customer-issued-token-4f1c9a"


class CustomerKMS:
    """The customer's KMS, as the network shows it to us: it can be away, or refuse our token."""

    def __init__(self, directory: Path) -> None:
        self.inner = LocalKMS(directory)
        self.inner.create_key("acme-own")
        self.state = "up"
        self.unwraps = 0
        self.tokens: list[str] = []
        self.closed = 0

    def wrap(self, key_name: str, plaintext: Any, context: bytes) -> WrappedKey:
        self._gate()
        return self.inner.wrap(key_name, plaintext, context)

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytearray:
        self.unwraps += 1
        self._gate()
        return self.inner.unwrap(wrapped, context)

    def _gate(self) -> None:
        if self.state == "down":
            raise KMSUnavailable("cannot reach the customer's server", retry_after_s=5.0)
        if self.state == "revoked":
            raise KMSPermissionDenied("token revoked")

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def setup(tmp_path: Path) -> tuple[TenantService, Keyring, Registry, KeyManager, CustomerKMS, list[float]]:
    clock = [1000.0]
    registry = Registry(tmp_path / "data")
    keyring = Keyring(registry, LocalKMS(tmp_path / "data"), master_key_name="m", ttl_s=0)
    keyring.kms.create_key("m")
    customer = CustomerKMS(tmp_path / "customer")

    def factory(**kwargs: Any) -> KMS:
        customer.tokens.append(kwargs["token"])
        return cast(KMS, customer)

    keyring.customer_kms = CustomerKMSResolver(keyring.kms, "m", factory=factory, clock=lambda: clock[0])
    service = TenantService(registry, keyring)
    return service, keyring, registry, KeyManager(registry, keyring), customer, clock


def test_outage_fails_fast_within_retry_after_then_tries_again(setup: Any, tmp_path: Path) -> None:
    service, keyring, registry, manager, customer, clock = setup
    acme, other = service.create("acme"), service.create("other")
    answer = manager.set_byok(
        "acme", vault={"addr": "https://vault.acme.example:8200", "key": "acme-own", "token": TOKEN}
    )
    assert answer["customer_key"] == "vault://vault.acme.example:8200/transit/acme-own"
    assert "token" not in answer["byok_key"]
    assert customer.tokens == [TOKEN]  # the client was built with the token the customer issued
    assert TOKEN.encode() not in (tmp_path / "data" / "tenants.json").read_bytes()

    keyring.hpke_private_key(registry.tenant("acme"), acme.key_id)
    customer.state = "down"
    before = customer.unwraps
    with pytest.raises(CustomerKMSUnavailable) as first:
        keyring.hpke_private_key(registry.tenant("acme"), acme.key_id)
    assert first.value.status == 503 and first.value.retry_after_s == 5.0
    for _ in range(3):  # inside the back-off window: refused without another call to the customer
        with pytest.raises(CustomerKMSUnavailable):
            keyring.hpke_private_key(registry.tenant("acme"), acme.key_id)
    assert customer.unwraps == before + 1
    keyring.hpke_private_key(registry.tenant("other"), other.key_id)  # other tenants never wait on it

    customer.state = "up"
    clock[0] += 5.1
    keyring.hpke_private_key(registry.tenant("acme"), acme.key_id)  # one new try, and it is back
    assert customer.unwraps == before + 2


def test_revoked_token_is_403_and_a_new_token_restores(setup: Any) -> None:
    service, keyring, registry, manager, customer, clock = setup
    acme = service.create("acme")
    spec = {"addr": "https://vault.acme.example:8200", "key": "acme-own", "token": TOKEN}
    manager.set_byok("acme", vault=spec)
    customer.state = "revoked"
    with pytest.raises(CustomerKeyUnavailable) as refused:
        keyring.hpke_private_key(registry.tenant("acme"), acme.key_id)
    assert (refused.value.status, refused.value.code) == (403, "customer_key_unavailable")
    # Same server and key, a new token: only the credential changes, no rewrap through the revoked one.
    versions = dict(registry.tenant("acme")["tenant_keys"]["versions"])
    customer.state = "up"
    manager.set_byok("acme", vault={**spec, "token": TOKEN + "-2"})
    assert registry.tenant("acme")["tenant_keys"]["versions"] == versions
    assert customer.tokens[-1] == TOKEN + "-2"
    keyring.hpke_private_key(registry.tenant("acme"), acme.key_id)


def test_a_failed_configuration_changes_nothing(setup: Any) -> None:
    service, keyring, registry, manager, customer, clock = setup
    acme = service.create("acme")
    before = registry.tenant("acme")["tenant_keys"]
    customer.state = "down"
    with pytest.raises(BadRequest) as bad:
        manager.set_byok("acme", vault={"addr": "https://vault.acme.example", "key": "acme-own", "token": TOKEN})
    assert bad.value.code == "invalid_byok_key"
    with pytest.raises(BadRequest):
        manager.set_byok("acme", vault={"addr": "https://vault.acme.example", "key": "acme-own"})  # no token
    with pytest.raises(BadRequest):
        manager.set_byok("acme", key_name="x", vault={"addr": "a", "key": "k", "token": "t"})  # both kinds
    assert registry.tenant("acme")["tenant_keys"] == before
    keyring.hpke_private_key(registry.tenant("acme"), acme.key_id)  # still ours alone, still working


def test_credential_is_bound_to_its_tenant(setup: Any) -> None:
    service, keyring, registry, manager, customer, clock = setup
    service.create("acme")
    service.create("other")
    manager.set_byok("acme", vault={"addr": "https://v.example", "key": "acme-own", "token": TOKEN})
    wrapped = registry.tenant("acme")["tenant_keys"]["byok_key"]["token"]
    stolen = {"kind": "vault", "addr": "https://v.example", "mount": "transit", "key": "acme-own", "token": wrapped}
    resolver = keyring.customer_kms
    with pytest.raises(DecryptionFailed):  # another tenant's record cannot use acme's wrapped token
        resolver.layer(registry.tenant("other")["tenant_id"], stolen)
    assert customer.tokens == [TOKEN]  # no client was built from it


def test_a_key_the_customer_disables_then_reenables_works_again_without_reconfiguring(setup: Any) -> None:
    service, keyring, registry, manager, customer, clock = setup
    acme = service.create("acme")
    manager.set_byok("acme", vault={"addr": "https://v.example", "key": "acme-own", "token": TOKEN})
    keyring.hpke_private_key(registry.tenant("acme"), acme.key_id)
    built = list(customer.tokens)
    customer.state = "revoked"  # the customer disabled the key (Vault answers 403 as for a revoked token)
    for _ in range(2):  # refused each time: a 403 is the customer's decision, not an outage to back off from
        with pytest.raises(CustomerKeyUnavailable):
            keyring.hpke_private_key(registry.tenant("acme"), acme.key_id)
    customer.state = "up"
    keyring.hpke_private_key(registry.tenant("acme"), acme.key_id)
    assert customer.tokens == built  # the same client and token: nothing was rebuilt or reconfigured


def test_deleting_a_tenant_closes_its_customer_kms_client(setup: Any) -> None:
    service, keyring, registry, manager, customer, clock = setup
    acme = service.create("acme")
    manager.set_byok("acme", vault={"addr": "https://v.example", "key": "acme-own", "token": TOKEN})
    keyring.hpke_private_key(registry.tenant("acme"), acme.key_id)
    closed = customer.closed
    service.delete("acme")
    assert customer.closed == closed + 1  # the client holding the customer's token is gone with the tenant
    with pytest.raises(UnknownTenant):
        registry.tenant("acme")
