"""Pkcs11KMS against a real SoftHSM2 token (backend-specific behaviour; shared behaviour is in the contract).

Covers what is PKCS#11's own: the master key objects' attributes (never extractable), the RFC 5649
claim checked byte for byte, the blob parser under mutation, HSM-enforced disable and minimum version
seen from a second, independent session, and configuration errors at construction.
"""

from __future__ import annotations

import os
import struct
import uuid
from collections.abc import Iterator

import pytest

from cleanroom.errors import ConfigurationError, DecryptionFailed, KeyError_, SystemSealed
from cleanroom.keys.kms import WrappedKey
from cleanroom.keys.pkcs11 import Pkcs11KMS, decode_blob
from services import SoftHSM, softhsm


@pytest.fixture(scope="module")
def hsm() -> SoftHSM:
    return softhsm()


@pytest.fixture
def kms(hsm: SoftHSM) -> Iterator[Pkcs11KMS]:
    client = Pkcs11KMS(hsm.lib_path, hsm.token_label, hsm.user_pin)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def key_name(kms: Pkcs11KMS) -> str:
    name = f"master-{uuid.uuid4().hex[:8]}"
    kms.create_key(name)
    return name


def test_master_key_objects_are_sensitive_and_never_extractable(hsm: SoftHSM, kms: Pkcs11KMS, key_name: str) -> None:
    import pkcs11
    from pkcs11 import Attribute as A

    kms.rotate(key_name)
    session = (
        pkcs11.lib(hsm.lib_path).get_token(token_label=hsm.token_label).open()
    )  # shares the login of the KMS fixture (PKCS#11 logs in per process)
    try:
        for version in (1, 2):
            obj = session.get_key(label=f"cleanroom-{key_name}.v{version}")
            assert obj[A.TOKEN] and obj[A.SENSITIVE] and not obj[A.EXTRACTABLE]
            assert obj[A.NEVER_EXTRACTABLE] and obj[A.ALWAYS_SENSITIVE]
            assert not obj[A.ENCRYPT] and not obj[A.DECRYPT]
            assert obj[A.WRAP] == (version == 2)  # only the newest version wraps
            with pytest.raises(pkcs11.exceptions.AttributeSensitive):
                obj[A.VALUE]
    finally:
        session.close()


def test_softhsm_wrap_pad_is_rfc5649_for_32_byte_keys(hsm: SoftHSM, kms: Pkcs11KMS) -> None:
    """The claim in the module docstring: mechanism 0x210A == RFC 5649 on the inputs we use."""
    import pkcs11
    from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding
    from pkcs11 import Attribute as A
    from pkcs11 import KeyType, Mechanism, ObjectClass

    session = (
        pkcs11.lib(hsm.lib_path).get_token(token_label=hsm.token_label).open()
    )  # shares the login of the KMS fixture (PKCS#11 logs in per process)
    try:
        for _ in range(5):
            kek, key = os.urandom(32), os.urandom(32)
            k = session.create_object(
                {A.CLASS: ObjectClass.SECRET_KEY, A.KEY_TYPE: KeyType.AES, A.VALUE: kek, A.WRAP: True, A.TOKEN: False}
            )
            p = session.create_object(
                {
                    A.CLASS: ObjectClass.SECRET_KEY,
                    A.KEY_TYPE: KeyType.AES,
                    A.VALUE: key,
                    A.EXTRACTABLE: True,
                    A.TOKEN: False,
                }
            )
            assert k.wrap_key(p, mechanism=Mechanism.AES_KEY_WRAP_PAD) == aes_key_wrap_with_padding(kek, key)
            k.destroy()
            p.destroy()
    finally:
        session.close()


def test_blob_layout_and_every_flip_and_truncation_fails(kms: Pkcs11KMS, key_name: str) -> None:
    wrapped = kms.wrap(key_name, b"K" * 32, b"ctx")
    blob = wrapped.ciphertext
    item, nonce, sealed = decode_blob(blob)
    assert blob[0] == 1 and struct.unpack(">H", blob[1:3])[0] == len(item) == 40  # KWP(32 bytes)
    assert len(nonce) == 12 and len(sealed) == 32 + 16
    for i in range(len(blob)):
        mutated = bytearray(blob)
        mutated[i] ^= 0x01
        with pytest.raises(DecryptionFailed):
            kms.unwrap(WrappedKey("pkcs11", key_name, 1, bytes(mutated)), b"ctx")
    for cut in range(len(blob)):
        with pytest.raises(DecryptionFailed):
            kms.unwrap(WrappedKey("pkcs11", key_name, 1, blob[:cut]), b"ctx")


def test_version_and_key_name_are_bound(kms: Pkcs11KMS, key_name: str) -> None:
    other = f"{key_name}-b"
    kms.create_key(other)
    wrapped = kms.wrap(key_name, b"K" * 32, b"ctx")
    kms.rotate(key_name)
    with pytest.raises(DecryptionFailed):  # relabelled version: KWP fails under the other master key
        kms.unwrap(WrappedKey("pkcs11", key_name, 2, wrapped.ciphertext), b"ctx")
    with pytest.raises(DecryptionFailed):
        kms.unwrap(WrappedKey("pkcs11", other, 1, wrapped.ciphertext), b"ctx")
    with pytest.raises(DecryptionFailed):
        kms.unwrap(WrappedKey("pkcs11", key_name, 7, wrapped.ciphertext), b"ctx")
    with pytest.raises(DecryptionFailed):
        kms.unwrap(WrappedKey("vault", key_name, 1, wrapped.ciphertext), b"ctx")


def test_disable_is_enforced_by_the_token_for_another_session(hsm: SoftHSM, kms: Pkcs11KMS, key_name: str) -> None:
    """A second client (its own session) is refused by the HSM itself, not by our flag."""
    other = Pkcs11KMS(hsm.lib_path, hsm.token_label, hsm.user_pin)
    wrapped = other.wrap(key_name, b"K" * 32, b"ctx")
    kms.disable(key_name)
    try:
        assert other.describe(key_name).extra["unwrap_enabled_versions"] == []
        for call in (
            lambda: other.unwrap(wrapped, b"ctx"),
            lambda: other.wrap(key_name, b"x" * 32, b"ctx"),
            lambda: other.generate_data_key(key_name, b"ctx"),
            lambda: other.rotate(key_name),
        ):
            with pytest.raises(SystemSealed):
                call()
    finally:
        kms.enable(key_name)
    assert bytes(other.unwrap(wrapped, b"ctx")) == b"K" * 32
    other.close()


_OTHER_PROCESS = """
import sys
from cleanroom.keys.kms import WrappedKey
from cleanroom.keys.pkcs11 import Pkcs11KMS
kms = Pkcs11KMS(sys.argv[1], sys.argv[2], sys.argv[3])
try:
    print("OK", bytes(kms.unwrap(WrappedKey.from_json(__import__("json").loads(sys.argv[4])), b"ctx")).hex())
except Exception as exc:
    print(type(exc).__name__)
"""


def test_disable_reaches_another_process(hsm: SoftHSM, kms: Pkcs11KMS, key_name: str) -> None:
    """System-scope revocation is token state: a separate process (its own login) is refused too."""
    import subprocess
    import sys

    wrapped = kms.wrap(key_name, b"K" * 32, b"ctx")

    def other_process() -> str:
        argv = [sys.executable, "-c", _OTHER_PROCESS, hsm.lib_path, hsm.token_label, hsm.user_pin, wrapped.dumps()]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout.strip()

    kms.disable(key_name)
    try:
        assert other_process() == "SystemSealed"
    finally:
        kms.enable(key_name)
    assert other_process() == "OK " + (b"K" * 32).hex()


def test_min_version_removes_unwrap_attribute(kms: Pkcs11KMS, key_name: str) -> None:
    w1 = kms.wrap(key_name, b"1" * 32, b"ctx")
    kms.rotate(key_name)
    kms.set_min_decryption_version(key_name, 2)
    assert kms.describe(key_name).extra["unwrap_enabled_versions"] == [2]
    with pytest.raises(KeyError_) as info:
        kms.unwrap(w1, b"ctx")
    assert info.value.code == "key_version_retired"
    kms.set_min_decryption_version(key_name, 1)  # lowering is allowed while the version exists
    assert bytes(kms.unwrap(w1, b"ctx")) == b"1" * 32
    with pytest.raises(KeyError_):
        kms.set_min_decryption_version(key_name, 3)


def test_configuration_errors_fail_in_the_constructor(hsm: SoftHSM) -> None:
    with pytest.raises(ConfigurationError, match="PIN"):
        Pkcs11KMS(hsm.lib_path, hsm.token_label, "wrong-pin")
    with pytest.raises(ConfigurationError, match="no PKCS#11 token"):
        Pkcs11KMS(hsm.lib_path, "no-such-token", hsm.user_pin)
    with pytest.raises(ConfigurationError):
        Pkcs11KMS(hsm.lib_path, hsm.token_label, "")


def test_unknown_key_and_bad_names(kms: Pkcs11KMS) -> None:
    with pytest.raises(KeyError_) as info:
        kms.wrap("does-not-exist", b"k" * 32, b"ctx")
    assert info.value.code == "unknown_key"
    with pytest.raises(KeyError_):
        kms.describe("does-not-exist")
    with pytest.raises(KeyError_):
        kms.create_key("bad name/with slash")
