"""AwsKMS against moto's AWS server (backend-specific behaviour; shared behaviour is in the contract).

moto checks EncryptionContext and ciphertext integrity like AWS, but does NOT refuse disabled or
pending-deletion keys and answers a wrong KeyId with AccessDenied. So: behaviour AWS enforces
server-side is also checked against AWS's documented error codes with botocore's Stubber, and the
tests that disable keys here exercise cleanroom's own check (a second client with no cache).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cleanroom.errors import (
    DecryptionFailed,
    KeyError_,
    KMSPermissionDenied,
    KMSUnavailable,
    SystemSealed,
)
from cleanroom.keys.aws import AwsKMS, resolve_key_id
from cleanroom.keys.kms import WrappedKey
from services import MotoServer, free_port


def aws_session() -> Any:
    import boto3

    return boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def make_kms(moto: MotoServer, **kw: Any) -> AwsKMS:
    return AwsKMS("us-east-1", endpoint_url=moto.endpoint_url, session=aws_session(), **kw)


@pytest.fixture
def kms(moto: MotoServer) -> Iterator[AwsKMS]:
    client = make_kms(moto)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def key_name(kms: AwsKMS) -> str:
    name = f"cleanroom-{uuid.uuid4().hex[:8]}"
    kms.create_key(name)
    return name


def test_key_names_resolve_like_aws_spells_them() -> None:
    assert resolve_key_id("master") == "alias/master"
    assert resolve_key_id("alias/x") == "alias/x"
    arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    assert resolve_key_id(arn) == arn
    assert resolve_key_id("1234abcd-12ab-34cd-56ef-1234567890ab") == "1234abcd-12ab-34cd-56ef-1234567890ab"
    for bad in ("aws/ebs", "has space", ""):
        with pytest.raises(KeyError_):
            resolve_key_id(bad)


def test_create_key_makes_alias_and_is_idempotent(kms: AwsKMS, key_name: str) -> None:
    desc = kms.describe(key_name)
    assert desc.enabled and desc.latest_version == 1 and desc.min_decryption_version == 1
    kms.create_key(key_name)
    assert kms.describe(key_name).extra["arn"] == desc.extra["arn"]


def test_key_named_by_arn_works_and_unknown_arn_is_not_created(kms: AwsKMS, key_name: str) -> None:
    """Bring-your-own-key: the customer's key is named by its ARN; we never create keys for ARNs."""
    arn = kms.describe(key_name).extra["arn"]
    wrapped = kms.wrap(arn, b"k" * 32, b"ctx")
    assert bytes(kms.unwrap(wrapped, b"ctx")) == b"k" * 32
    missing = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000"
    with pytest.raises(KeyError_) as info:
        kms.create_key(missing)
    assert info.value.code == "unknown_key"


def test_version_is_bound_in_the_encryption_context(kms: AwsKMS, key_name: str) -> None:
    wrapped = kms.wrap(key_name, b"k" * 32, b"ctx")
    assert kms.rotate(key_name) == 2
    with pytest.raises(DecryptionFailed):
        kms.unwrap(WrappedKey("aws", key_name, 2, wrapped.ciphertext), b"ctx")
    assert bytes(kms.unwrap(wrapped, b"ctx")) == b"k" * 32


def test_rewrap_is_reencrypt_and_checks_the_old_context(kms: AwsKMS, key_name: str) -> None:
    wrapped = kms.wrap(key_name, b"k" * 32, b"ctx")
    kms.rotate(key_name)
    moved = kms.rewrap(wrapped, b"ctx")
    assert moved.version == 2 and moved.ciphertext != wrapped.ciphertext
    assert bytes(kms.unwrap(moved, b"ctx")) == b"k" * 32
    with pytest.raises(DecryptionFailed):
        kms.rewrap(wrapped, b"other")


def test_min_version_tag_is_seen_by_another_client(moto: MotoServer, kms: AwsKMS, key_name: str) -> None:
    other = make_kms(moto, policy_ttl_s=0)
    w1 = kms.wrap(key_name, b"1" * 32, b"ctx")
    kms.rotate(key_name)
    kms.set_min_decryption_version(key_name, 2)
    with pytest.raises(KeyError_) as info:
        other.unwrap(w1, b"ctx")
    assert info.value.code == "key_version_retired"
    assert other.describe(key_name).min_decryption_version == 2
    with pytest.raises(KeyError_):
        kms.set_min_decryption_version(key_name, 3)


def test_disable_seen_by_another_client_without_cache(moto: MotoServer, kms: AwsKMS, key_name: str) -> None:
    other = make_kms(moto, policy_ttl_s=0)
    wrapped = kms.wrap(key_name, b"k" * 32, b"ctx")
    kms.disable(key_name)
    try:
        assert other.describe(key_name).extra["key_state"] == "Disabled"
        with pytest.raises(SystemSealed):
            other.unwrap(wrapped, b"ctx")
    finally:
        kms.enable(key_name)
    assert bytes(other.unwrap(wrapped, b"ctx")) == b"k" * 32


def test_one_kms_call_per_unwrap_with_the_policy_cache(kms: AwsKMS, key_name: str) -> None:
    wrapped = kms.wrap(key_name, b"k" * 32, b"ctx")
    calls: list[str] = []
    kms._client.meta.events.register("before-call.kms.*", lambda model, **_: calls.append(model.name))
    for _ in range(5):
        kms.unwrap(wrapped, b"ctx")
    assert calls == ["Decrypt"] * 5


def test_automatic_rotation_schedule(kms: AwsKMS, key_name: str) -> None:
    kms.enable_automatic_rotation(key_name, 365)
    assert kms.describe(key_name).extra["automatic_rotation"] is True
    with pytest.raises(KeyError_):
        kms.enable_automatic_rotation(key_name, 30)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("DisabledException", SystemSealed),
        ("KMSInvalidStateException", SystemSealed),
        ("IncorrectKeyException", DecryptionFailed),
        ("InvalidCiphertextException", DecryptionFailed),
        ("AccessDeniedException", KMSPermissionDenied),
        ("ThrottlingException", KMSUnavailable),
        ("KMSInternalException", KMSUnavailable),
        ("KeyUnavailableException", KMSUnavailable),
    ],
)
def test_aws_error_codes_map_to_our_errors(code: str, expected: type[Exception]) -> None:
    """What real AWS answers (moto does not emulate all of it), fed through botocore's Stubber."""
    from botocore.stub import Stubber

    kms = AwsKMS("us-east-1", endpoint_url="http://127.0.0.1:1", session=aws_session(), policy_ttl_s=3600)
    from cleanroom.keys.aws import _Policy

    kms._policies["m"] = _Policy("kid", "arn", True, "Enabled", 1, 1, 0.0, 0.0, "AWS_KMS", read_at=1e18)
    with Stubber(kms._client) as stub:
        stub.add_client_error("decrypt", service_error_code=code, service_message="from AWS")
        with pytest.raises(expected):
            kms.unwrap(WrappedKey("aws", "m", 1, b"\x01" * 64), b"ctx")


def test_unreachable_endpoint_is_kms_unavailable() -> None:
    kms = AwsKMS("us-east-1", endpoint_url=f"http://127.0.0.1:{free_port()}", session=aws_session(), timeout_s=1)
    with pytest.raises(KMSUnavailable) as info:
        kms.describe("master")
    assert info.value.retry_after_s == 5 and info.value.status == 503


def test_moto_outage_then_recovery_of_the_client(tmp_path: Path) -> None:
    """Stop the server: KMSUnavailable; a new server on the same port: the same client works again."""
    server = MotoServer(tmp_path)
    server.start()
    try:
        kms = AwsKMS("us-east-1", endpoint_url=server.endpoint_url, session=aws_session(), timeout_s=1)
        kms.create_key("master")
        server.stop()
        with pytest.raises(KMSUnavailable):
            kms.describe("master")
        server.start()  # moto keeps state in memory: the key is gone, but the client reconnects
        kms.create_key("master")
        assert bytes(kms.unwrap(kms.wrap("master", b"k" * 32, b"c"), b"c")) == b"k" * 32
    finally:
        server.stop()
