"""Client pinning: a swapped key is refused; a rotation is followed only through signed endorsements."""

from __future__ import annotations

import base64
import copy
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

from cleanroom.client import Client
from cleanroom.config import Settings
from cleanroom.keys.public_key import KeyPinMismatch, TenantPublicKey, follow_pin, sign_endorsement
from cleanroom.runtime.models import EchoModel, ModelRegistry
from cleanroom.server.app import create_app
from cleanroom.server.services import build_services


@pytest.fixture
def stack(data_dir: Path, memory_audit):  # type: ignore[no-untyped-def]
    services = build_services(
        Settings(data_dir=data_dir, models=["echo"]), audit=memory_audit, models=ModelRegistry({"echo": EchoModel()})
    )
    created = services.tenants.create("acme")
    with TestClient(create_app(services)) as http:  # `with`: runs the lifespan (starts the scheduler)
        http.headers["Authorization"] = f"Bearer {created.api_key}"
        yield services, created, http
    services.close()


def client_for(http: TestClient, created, **kwargs) -> Client:  # type: ignore[no-untyped-def]
    client = Client("http://testserver", api_key=created.api_key, **kwargs)
    client._http = http
    return client


def test_pinned_client_follows_an_endorsed_rotation(stack) -> None:
    services, created, http = stack
    fingerprint = TenantPublicKey.parse(created.public_key).fingerprint()
    client = client_for(http, created, pin=fingerprint)
    assert client.infer("echo", b"before") == b"before"
    services.keys.rotate_hpke_key("acme", overlap_s=0)  # old key expires now: the client must refetch
    services.keys.rotate_hpke_key("acme", overlap_s=0)  # and follow two endorsements
    assert client.infer("echo", b"after") == b"after"
    assert client.pinned_fingerprint != fingerprint
    assert client.pinned_fingerprint == client.public_key().fingerprint()


def test_swapped_key_is_refused_by_a_pinned_client(stack) -> None:
    services, created, http = stack
    real = services.tenants.public_key
    attacker = ec.generate_private_key(ec.SECP384R1())
    tenant_id = created.tenant_id
    fake = TenantPublicKey(tenant_id, "hk_attacker", attacker.public_key())

    def swapped(tid: str) -> dict:  # a proxy or compromised server hands out its own key
        document = copy.deepcopy(real(tid))
        document.update(public_key=fake.token(), key_id=fake.key_id)
        document["chain"].append(
            {
                "key_id": fake.key_id,
                "public_key": fake.token(),
                "endorsed_by": created.key_id,
                "endorsement": base64.b64encode(sign_endorsement(attacker, fake)).decode(),
            }
        )
        return document

    services.tenants.public_key = swapped  # type: ignore[method-assign]
    with pytest.raises(KeyPinMismatch):
        client_for(http, created, pin=created.public_key).infer("echo", b"x")
    # An unpinned client is not protected: it seals to whatever the server says (documented).
    unpinned = client_for(http, created)
    assert unpinned.public_key().key_id == "hk_attacker"


def test_broken_chains_are_refused() -> None:
    keys = [ec.generate_private_key(ec.SECP384R1()) for _ in range(3)]
    publics = [TenantPublicKey("t1", f"hk_{i}", k.public_key()) for i, k in enumerate(keys)]
    chain = [{"key_id": "hk_0", "public_key": publics[0].token(), "endorsed_by": None, "endorsement": None}]
    for i in (1, 2):
        signature = base64.b64encode(sign_endorsement(keys[i - 1], publics[i])).decode()
        chain.append(
            {
                "key_id": f"hk_{i}",
                "public_key": publics[i].token(),
                "endorsed_by": f"hk_{i - 1}",
                "endorsement": signature,
            }
        )
    assert follow_pin(publics[0].fingerprint(), publics[2], chain) is publics[2]
    tampered = copy.deepcopy(chain)
    tampered[2]["endorsement"] = tampered[1]["endorsement"]
    with pytest.raises(KeyPinMismatch):
        follow_pin(publics[0].fingerprint(), publics[2], tampered)
    loop = copy.deepcopy(chain)
    loop[1]["endorsed_by"] = "hk_2"
    with pytest.raises(KeyPinMismatch):
        follow_pin(publics[0].fingerprint(), publics[2], loop)
    other_pin = TenantPublicKey("t1", "hk_x", ec.generate_private_key(ec.SECP384R1()).public_key())
    with pytest.raises(KeyPinMismatch):
        follow_pin(other_pin.fingerprint(), publics[2], chain)


def test_create_prints_the_fingerprint(stack) -> None:
    _, created, _ = stack
    assert created.to_json()["fingerprint"] == TenantPublicKey.parse(created.public_key).fingerprint()


def test_endorsements_verify_as_wire_format_md_describes_them(stack) -> None:
    """The chain checked from the document alone (no cleanroom helper): message bytes, DER ECDSA P-384/SHA-384,
    standard base64, signer's point from its own token."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes

    services, created, http = stack
    services.keys.rotate_hpke_key("acme", overlap_s=60)
    answer = http.get("/v1/tenants/self/public-key").json()
    entries = {entry["key_id"]: entry for entry in answer["chain"]}
    current = entries[answer["key_id"]]
    signer = entries[current["endorsed_by"]]
    assert signer["endorsed_by"] is None  # the tenant's first key

    def point(token: str) -> bytes:
        return base64.urlsafe_b64decode(token.rsplit(":", 1)[1] + "==")

    message = b"\x00".join(
        [
            b"cleanroom/v1 key endorsement",
            answer["tenant_id"].encode(),
            answer["key_id"].encode(),
            point(current["public_key"]),
        ]
    )
    public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP384R1(), point(signer["public_key"]))
    public.verify(base64.b64decode(current["endorsement"], validate=True), message, ec.ECDSA(hashes.SHA384()))
    with pytest.raises(InvalidSignature):  # a different message does not verify: the check can fail
        public.verify(base64.b64decode(current["endorsement"]), message + b"x", ec.ECDSA(hashes.SHA384()))
