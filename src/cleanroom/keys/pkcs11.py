"""`Pkcs11KMS`: master keys inside a PKCS#11 token (an HSM; SoftHSM2 in tests), over python-pkcs11.

Why an envelope and not one call. The issue asks for AES key wrap with padding (RFC 5649, `CKM_AES_KEY_
WRAP_PAD`), the mechanism HSMs use for keys, but KWP has no associated data, so it cannot bind our
`context`. Binding it by deriving a per-context KEK needs a KDF mechanism SoftHSM2 lacks, and an HMAC
over the blob would need a second master key. So every wrap composes two standard steps, both inside the
token (Tink's KMS envelope AEAD does the same with a cloud KMS):

1. the token generates a fresh AES-256 item key (a session object: sensitive, never on the host) and
   encrypts the caller's key with it under AES-256-GCM (`CKM_AES_GCM`, NIST SP 800-38D) with AAD =
   domain tag || key name || master version || context — this binds the context;
2. the token wraps the item key under the master key version with `CKM_AES_KEY_WRAP_PAD` (RFC 5649).

Unwrap runs the steps backwards: `C_UnwrapKey` makes the item key a non-extractable session object,
`C_Decrypt` (GCM) checks the tag against the context and returns the key. A wrong context, a flipped byte
anywhere, or a blob moved to another master version fails in the token. Each item key encrypts exactly
one message, so the random 96-bit GCM nonce never repeats under a key; the master key only ever runs
KWP, which has no nonce and no usage limit of its own.

SoftHSM2 2.6 implements mechanism 0x210A as RFC 5649 for inputs that are a multiple of 8 bytes (checked
byte for byte against `cryptography`'s `aes_key_wrap_with_padding` in the tests); for other lengths it
pads first and differs from the RFC. Our item keys are always 32 bytes. Some HSMs number RFC 5649
`CKM_AES_KEY_WRAP_KWP` (0x210B): pass `wrap_mechanism`.

Layout of `WrappedKey.ciphertext` (lengths bounds-checked before slicing):
    format (1, = 0x01) || wrapped item key length L (2, big-endian) || KWP(item key) (L)
    || GCM nonce (12) || GCM ciphertext || GCM tag (16)

Versions: each master version is its own token object labelled `<prefix><name>.v<N>` (AES-256, token,
private, sensitive, never extractable, only CKA_WRAP/CKA_UNWRAP). A data object `<prefix><name>.meta`
(JSON: min_decryption_version, enabled, times) records the policy, and the token enforces it through the
keys' own attributes: CKA_WRAP is true only on the newest version of an enabled key, CKA_UNWRAP only on
versions >= the minimum of an enabled key. So `disable` (system-scope revocation) is enforced by the HSM
for every process that uses the token, and `enable` restores it; nothing is deleted.

Secret hygiene: python-pkcs11 takes and returns `bytes`, so the caller's key exists once as an immutable
`bytes` on each call; the key we return is a fresh `bytearray` the caller zeroes.

Where the parts live: `pkcs11_blob` (the byte layout and AAD), `pkcs11_session` (token, login and
session recovery), `pkcs11_objects` (version keys, the policy record, attributes). This module is the
KMS protocol: the envelope wrap/unwrap and the key lifecycle built on those three.
"""

from __future__ import annotations

import re
import time
from typing import Any

from cleanroom.errors import ConfigurationError, DecryptionFailed, KeyError_, KMSPermissionDenied, KMSUnavailable
from cleanroom.keys.kms import KeyDescription, WrappedKey
from cleanroom.keys.pkcs11_blob import (
    AAD_TAG,
    FORMAT_V1,
    MAX_WRAPPED_ITEM_KEY,
    MIN_WRAPPED_ITEM_KEY,
    NONCE_BYTES,
    TAG_BYTES,
    decode_blob,
    encode_blob,
)
from cleanroom.keys.pkcs11_blob import item_aad as _aad
from cleanroom.keys.pkcs11_objects import MasterKeyObjects, check_key_name, unknown_key
from cleanroom.keys.pkcs11_session import TokenSession

__all__ = [
    "AAD_TAG",
    "CKR_KEY_FUNCTION_NOT_PERMITTED",
    "FORMAT_V1",
    "ITEM_KEY_BITS",
    "MAX_WRAPPED_ITEM_KEY",
    "MIN_WRAPPED_ITEM_KEY",
    "NONCE_BYTES",
    "TAG_BYTES",
    "Pkcs11KMS",
    "decode_blob",
    "encode_blob",
]

ITEM_KEY_BITS = 256
CKR_KEY_FUNCTION_NOT_PERMITTED = "0x68"


def _zero(buf: bytearray) -> None:
    buf[:] = bytes(len(buf))


class Pkcs11KMS:
    """Master keys in a PKCS#11 token. Thread-safe: one session per instance, calls serialised by a lock.

    `lib_path` is the vendor's PKCS#11 module (`/usr/lib/softhsm/libsofthsm2.so`), `token_label` the
    token, `user_pin` the CKU_USER PIN. The constructor loads the module, finds the token and logs in, so
    a wrong path, label or PIN fails at start-up with a `ConfigurationError`.
    """

    name = "pkcs11"

    def __init__(
        self,
        lib_path: str,
        token_label: str,
        user_pin: str,
        *,
        key_label_prefix: str = "cleanroom-",
        wrap_mechanism: int | None = None,
        retry_after_s: float = 5.0,
    ) -> None:
        try:
            import pkcs11
            import pkcs11.exceptions as p11e
        except ImportError as exc:  # pragma: no cover - the `pkcs11` extra
            raise ConfigurationError("the pkcs11 KMS needs python-pkcs11 (pip install 'cleanroom[pkcs11]')") from exc
        if not user_pin:
            raise ConfigurationError("PKCS#11 user PIN is empty (set CLEANROOM_PKCS11_PIN)")
        if key_label_prefix and not re.match(r"^[A-Za-z0-9_.-]{1,32}$", key_label_prefix):
            raise ConfigurationError(f"invalid PKCS#11 key label prefix {key_label_prefix!r}")
        self._p11, self._errors = pkcs11, p11e
        self._mech = pkcs11.Mechanism(wrap_mechanism) if wrap_mechanism else pkcs11.Mechanism.AES_KEY_WRAP_PAD
        self._token_label = token_label
        self._objects = MasterKeyObjects(pkcs11, key_label_prefix)
        try:
            lib = pkcs11.lib(lib_path)
        except (OSError, RuntimeError) as exc:
            raise ConfigurationError(f"cannot load PKCS#11 module {lib_path!r}: {exc}") from None
        self._session = TokenSession(lib, p11e, token_label, user_pin, (lib_path, token_label), retry_after_s)
        try:
            self._session.open()
        except KMSPermissionDenied as exc:
            raise ConfigurationError(exc.message) from None
        except KMSUnavailable as exc:
            raise ConfigurationError(exc.message) from None

    def _is_not_permitted(self, exc: Exception) -> bool:
        # python-pkcs11 0.10 has no class for CKR_KEY_FUNCTION_NOT_PERMITTED; it reports the code.
        return type(exc) is self._errors.PKCS11Error and CKR_KEY_FUNCTION_NOT_PERMITTED in str(exc)

    # --- KMS protocol ---------------------------------------------------------------------------
    def create_key(self, key_name: str) -> None:
        check_key_name(key_name)
        objects = self._objects
        with self._session.use() as session:
            if objects.versions(session, key_name):
                if not objects.meta_objects(session, key_name):  # keys made by hand: adopt them, enabled
                    now = time.time()
                    meta = {"min_decryption_version": 1, "enabled": True, "created_at": now, "rotated_at": now}
                    objects.write_meta(session, key_name, meta)
                return
            now = time.time()
            objects.generate_master(session, key_name, 1)
            meta = {"min_decryption_version": 1, "enabled": True, "created_at": now, "rotated_at": now}
            objects.write_meta(session, key_name, meta)
            objects.apply_policy(session, key_name, meta)

    def wrap(self, key_name: str, plaintext: bytes | bytearray | memoryview, context: bytes) -> WrappedKey:
        check_key_name(key_name)
        p11, A, e = self._p11, self._p11.Attribute, self._errors
        from pkcs11.mechanisms import GCMParams

        with self._session.use() as session:
            versions = self._objects.versions(session, key_name)
            if not versions:
                raise unknown_key(key_name)
            version = max(versions)
            master = versions[version]
            if not master[A.WRAP]:
                raise self._objects.refused(session, key_name, None)
            item = session.generate_key(
                p11.KeyType.AES,
                ITEM_KEY_BITS,
                store=False,
                template={
                    A.TOKEN: False,
                    A.SENSITIVE: True,
                    A.EXTRACTABLE: True,
                    A.ENCRYPT: True,
                    A.DECRYPT: False,
                    A.WRAP: False,
                    A.UNWRAP: False,
                },
            )
            try:
                nonce = session.generate_random(NONCE_BYTES * 8)
                sealed = item.encrypt(
                    bytes(plaintext),
                    mechanism=p11.Mechanism.AES_GCM,
                    mechanism_param=GCMParams(nonce, _aad(key_name, version, context), TAG_BYTES * 8),
                )
                try:
                    wrapped_item = master.wrap_key(item, mechanism=self._mech)
                except e.PKCS11Error as exc:
                    if self._is_not_permitted(exc):
                        raise self._objects.refused(session, key_name, None) from None
                    raise
            finally:
                item.destroy()
        blob = encode_blob(bytes(wrapped_item), bytes(nonce), bytes(sealed))
        return WrappedKey(kms=self.name, key_name=key_name, version=version, ciphertext=blob)

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytearray:
        if wrapped.kms != self.name:
            raise DecryptionFailed(f"key was wrapped by the {wrapped.kms!r} KMS, not {self.name!r}")
        key_name = check_key_name(wrapped.key_name)
        wrapped_item, nonce, sealed = decode_blob(wrapped.ciphertext)
        p11, A, e = self._p11, self._p11.Attribute, self._errors
        from pkcs11.mechanisms import GCMParams

        with self._session.use() as session:
            master = self._objects.version_obj(session, key_name, wrapped.version)
            if master is None:
                if not self._objects.versions(session, key_name):
                    raise unknown_key(key_name)
                raise DecryptionFailed("wrapped key names a master key version that does not exist")
            if not master[A.UNWRAP]:  # python-pkcs11 gives such an object no unwrap_key at all
                raise self._objects.refused(session, key_name, wrapped.version)
            try:
                item = master.unwrap_key(
                    p11.ObjectClass.SECRET_KEY,
                    p11.KeyType.AES,
                    wrapped_item,
                    mechanism=self._mech,
                    store=False,
                    template={
                        A.TOKEN: False,
                        A.SENSITIVE: True,
                        A.EXTRACTABLE: False,
                        A.DECRYPT: True,
                        A.ENCRYPT: False,
                        A.WRAP: False,
                        A.UNWRAP: False,
                    },
                )
            except e.PKCS11Error as exc:
                if self._is_not_permitted(exc):
                    raise self._objects.refused(session, key_name, wrapped.version) from None
                if isinstance(exc, _decrypt_failures(e)):
                    raise DecryptionFailed("wrapped key failed to authenticate (wrong key or tampered)") from None
                raise
            try:
                plain = item.decrypt(
                    sealed,
                    mechanism=p11.Mechanism.AES_GCM,
                    mechanism_param=GCMParams(nonce, _aad(key_name, wrapped.version, context), TAG_BYTES * 8),
                )
            except _decrypt_failures(e):
                raise DecryptionFailed("wrapped key failed to authenticate (wrong key, context or tampered)") from None
            finally:
                item.destroy()
        return bytearray(plain)

    def generate_data_key(self, key_name: str, context: bytes, size_bytes: int = 32) -> tuple[bytearray, WrappedKey]:
        """Random bytes from the token's RNG, wrapped in the same session lock."""
        if not 16 <= size_bytes <= 64:
            raise KeyError_("data keys are 16 to 64 bytes", code="invalid_key_size")
        with self._session.use() as session:
            key = bytearray(session.generate_random(size_bytes * 8))
        try:
            return key, self.wrap(key_name, key, context)
        except BaseException:
            _zero(key)
            raise

    def rotate(self, key_name: str) -> int:
        check_key_name(key_name)
        objects = self._objects
        with self._session.use() as session:
            meta = objects.read_meta(session, key_name)
            if not meta["enabled"]:
                raise objects.refused(session, key_name, None)
            version = max(objects.versions(session, key_name)) + 1
            objects.generate_master(session, key_name, version)
            meta["rotated_at"] = time.time()
            objects.write_meta(session, key_name, meta)
            objects.apply_policy(session, key_name, meta)
            return version

    def set_min_decryption_version(self, key_name: str, version: int) -> None:
        """Versions below `version` lose CKA_UNWRAP: the token itself refuses them."""
        check_key_name(key_name)
        objects = self._objects
        with self._session.use() as session:
            meta = objects.read_meta(session, key_name)
            latest = max(objects.versions(session, key_name))
            if not 1 <= version <= latest:
                raise KeyError_(f"minimum version must be between 1 and {latest}", code="invalid_key_version")
            meta["min_decryption_version"] = version
            objects.write_meta(session, key_name, meta)
            objects.apply_policy(session, key_name, meta)

    def rewrap(self, wrapped: WrappedKey, context: bytes) -> WrappedKey:
        """Unwrap and wrap again under the newest version; the key is on the host only in between, zeroed.

        (The GCM layer binds the master version in its AAD, so re-wrapping only the item key would not
        do; and checking the context needs the GCM decryption anyway.)
        """
        key = self.unwrap(wrapped, context)
        try:
            return self.wrap(wrapped.key_name, key, context)
        finally:
            _zero(key)

    def _set_enabled(self, key_name: str, enabled: bool) -> None:
        check_key_name(key_name)
        objects = self._objects
        with self._session.use() as session:
            meta = objects.read_meta(session, key_name)
            meta["enabled"] = enabled
            # Attributes first when disabling (the token refuses at once), record first when enabling.
            if not enabled:
                objects.apply_policy(session, key_name, meta)
                objects.write_meta(session, key_name, meta)
            else:
                objects.write_meta(session, key_name, meta)
                objects.apply_policy(session, key_name, meta)

    def disable(self, key_name: str) -> None:
        self._set_enabled(key_name, False)

    def enable(self, key_name: str) -> None:
        self._set_enabled(key_name, True)

    def describe(self, key_name: str) -> KeyDescription:
        check_key_name(key_name)
        A = self._p11.Attribute
        with self._session.use() as session:
            meta = self._objects.read_meta(session, key_name)
            versions = self._objects.versions(session, key_name)
            latest = max(versions)
            unwrappable = sorted(v for v, obj in versions.items() if obj[A.UNWRAP])
            return KeyDescription(
                name=key_name,
                backend=self.name,
                latest_version=latest,
                min_decryption_version=int(meta["min_decryption_version"]),
                enabled=bool(meta["enabled"]),
                created_at=float(meta["created_at"]),
                rotated_at=float(meta["rotated_at"]),
                extra={
                    "token_label": self._token_label,
                    "labels": [self._objects.label(key_name, v) for v in sorted(versions)],
                    "unwrap_enabled_versions": unwrappable,
                    "wrap_mechanism": f"{int(self._mech):#06x}",
                    "context_binding": "AES-GCM AAD under a per-item key wrapped with AES-KWP",
                },
            )

    def close(self) -> None:
        self._session.close()


def _decrypt_failures(e: Any) -> tuple[type[Exception], ...]:
    """What tokens answer for a bad tag or bad KWP integrity check (SoftHSM2: CKR_GENERAL_ERROR)."""
    return (
        e.GeneralError,
        e.EncryptedDataInvalid,
        e.EncryptedDataLenRange,
        e.WrappedKeyInvalid,
        e.WrappedKeyLenRange,
        e.DataInvalid,
        e.DataLenRange,
        e.FunctionFailed,
        e.ArgumentsBad,
    )
