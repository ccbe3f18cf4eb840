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
"""

from __future__ import annotations

import json
import os
import re
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from cryptography.hazmat.primitives import constant_time, hashes, hmac

from cleanroom.errors import (
    CleanroomError,
    ConfigurationError,
    DecryptionFailed,
    KeyError_,
    KMSPermissionDenied,
    KMSUnavailable,
    SystemSealed,
)
from cleanroom.keys.kms import KeyDescription, WrappedKey

FORMAT_V1 = 0x01
NONCE_BYTES = 12
TAG_BYTES = 16
ITEM_KEY_BITS = 256
MIN_WRAPPED_ITEM_KEY = 24  # KWP output is 8 bytes longer than its input, padded to 8; >= 16 + 8
MAX_WRAPPED_ITEM_KEY = 512
AAD_TAG = b"cleanroom/pkcs11-kms/v1\x00"
_KEY_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,62}[A-Za-z0-9])?$")
_VERSION_RE = re.compile(r"\.v([1-9][0-9]{0,8})$")
CKR_KEY_FUNCTION_NOT_PERMITTED = "0x68"


def _zero(buf: bytearray) -> None:
    buf[:] = bytes(len(buf))


def _aad(key_name: str, version: int, context: bytes) -> bytes:
    name = key_name.encode()
    return AAD_TAG + struct.pack(">H", len(name)) + name + struct.pack(">I", version) + bytes(context)


def encode_blob(wrapped_item_key: bytes, nonce: bytes, sealed: bytes) -> bytes:
    return bytes([FORMAT_V1]) + struct.pack(">H", len(wrapped_item_key)) + wrapped_item_key + nonce + sealed


def decode_blob(blob: bytes) -> tuple[bytes, bytes, bytes]:
    """-> (KWP-wrapped item key, GCM nonce, GCM ciphertext || tag); every length checked before slicing."""
    if len(blob) < 3 + MIN_WRAPPED_ITEM_KEY + NONCE_BYTES + TAG_BYTES:
        raise DecryptionFailed("wrapped key is truncated")
    if blob[0] != FORMAT_V1:
        raise DecryptionFailed(f"unknown PKCS#11 wrapped-key format {blob[0]:#04x}")
    (length,) = struct.unpack(">H", blob[1:3])
    if not MIN_WRAPPED_ITEM_KEY <= length <= MAX_WRAPPED_ITEM_KEY or length % 8:
        raise DecryptionFailed("wrapped key has an invalid item-key length")
    body = blob[3:]
    if len(body) < length + NONCE_BYTES + TAG_BYTES:
        raise DecryptionFailed("wrapped key is truncated")
    return body[:length], body[length : length + NONCE_BYTES], body[length + NONCE_BYTES :]


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
        self._prefix, self._retry_after_s = key_label_prefix, retry_after_s
        self._token_label, self._pin = token_label, user_pin
        self._lock = threading.RLock()
        try:
            self._lib = pkcs11.lib(lib_path)
        except (OSError, RuntimeError) as exc:
            raise ConfigurationError(f"cannot load PKCS#11 module {lib_path!r}: {exc}") from None
        self._session: Any = None
        self._login_key = (lib_path, token_label)
        try:
            self._open()
        except KMSPermissionDenied as exc:
            raise ConfigurationError(exc.message) from None
        except KMSUnavailable as exc:
            raise ConfigurationError(exc.message) from None

    # --- session ----------------------------------------------------------------------------------
    def _open(self) -> Any:
        """Our own session, sharing the process's login (PKCS#11 logs in per application, not per session)."""
        if self._session is not None:
            return self._session
        e = self._errors
        try:
            token = self._lib.get_token(token_label=self._token_label)
        except e.NoSuchToken:
            raise KMSUnavailable(
                f"no PKCS#11 token labelled {self._token_label!r}", retry_after_s=self._retry_after_s
            ) from None
        except e.MultipleTokensReturned:
            raise ConfigurationError(f"several PKCS#11 tokens are labelled {self._token_label!r}") from None
        try:
            _LOGINS.ensure(token, self._login_key, self._pin)
            # No PIN here: this session rides on the login above, so closing it never logs anyone out.
            self._session = token.open(rw=True)
        except (e.PinIncorrect, e.PinLocked, e.PinExpired, e.PinInvalid, e.PinLenRange) as exc:
            raise KMSPermissionDenied(
                f"PKCS#11 token {self._token_label!r} refused the user PIN ({type(exc).__name__})"
            ) from None
        except e.PKCS11Error as exc:
            raise KMSUnavailable(
                f"cannot open a session on PKCS#11 token {self._token_label!r} ({type(exc).__name__})",
                retry_after_s=self._retry_after_s,
            ) from None
        return self._session

    @contextmanager
    def _token(self) -> Iterator[Any]:
        """The session, under the lock; device and session failures become KMSUnavailable and reopen."""
        e = self._errors
        lost = (
            e.DeviceError, e.DeviceMemory, e.DeviceRemoved, e.TokenNotPresent, e.TokenNotRecognised,
            e.SessionClosed, e.SessionHandleInvalid, e.UserNotLoggedIn, e.HostMemory,
        )  # fmt: skip
        with self._lock:
            session = self._open()
            try:
                yield session
            except lost as exc:
                self._drop_session()
                _LOGINS.forget(self._login_key)  # log in afresh on the next call
                raise KMSUnavailable(
                    f"PKCS#11 token {self._token_label!r} failed ({type(exc).__name__})",
                    retry_after_s=self._retry_after_s,
                ) from None

    def _drop_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            with suppress(self._errors.PKCS11Error):
                session.close()

    # --- objects --------------------------------------------------------------------------------
    def _check_name(self, key_name: str) -> str:
        if not _KEY_NAME_RE.match(key_name):
            raise KeyError_(f"invalid PKCS#11 key name {key_name!r}", code="invalid_key_name")
        return key_name

    def _label(self, key_name: str, version: int) -> str:
        return f"{self._prefix}{key_name}.v{version}"

    def _versions(self, session: Any, key_name: str) -> dict[int, Any]:
        """Every master version object of `key_name`, by version number."""
        A, OC = self._p11.Attribute, self._p11.ObjectClass
        stem = f"{self._prefix}{key_name}.v"
        found: dict[int, Any] = {}
        for obj in session.get_objects({A.CLASS: OC.SECRET_KEY, A.TOKEN: True}):
            label = str(obj[A.LABEL])
            match = _VERSION_RE.search(label)
            if label.startswith(stem) and match and label == stem + match.group(1):
                found[int(match.group(1))] = obj
        return found

    def _version_obj(self, session: Any, key_name: str, version: int) -> Any | None:
        """One version by its exact label (the unwrap path: no listing of the token)."""
        A, OC = self._p11.Attribute, self._p11.ObjectClass
        found = list(
            session.get_objects({A.CLASS: OC.SECRET_KEY, A.TOKEN: True, A.LABEL: self._label(key_name, version)})
        )
        if len(found) > 1:
            raise ConfigurationError(f"several token objects are labelled {self._label(key_name, version)!r}")
        return found[0] if found else None

    def _meta_objects(self, session: Any, key_name: str) -> list[Any]:
        A, OC = self._p11.Attribute, self._p11.ObjectClass
        label = f"{self._prefix}{key_name}.meta"
        return list(session.get_objects({A.CLASS: OC.DATA, A.LABEL: label}))

    def _read_meta(self, session: Any, key_name: str) -> dict[str, Any]:
        metas: list[dict[str, Any]] = []
        for obj in self._meta_objects(session, key_name):
            try:
                metas.append(json.loads(bytes(obj[self._p11.Attribute.VALUE])))
            except ValueError:
                continue
        if not metas:
            raise KeyError_(f"master key {key_name!r} does not exist in the PKCS#11 token", code="unknown_key")
        # A crash between writing a new record and destroying the old leaves two: the higher seq wins.
        newest: dict[str, Any] = max(metas, key=_meta_seq)
        return dict(newest)

    def _write_meta(self, session: Any, key_name: str, meta: dict[str, Any]) -> None:
        """Create the new record first, then destroy the old ones (CKA_VALUE of a data object is read-only)."""
        A, OC = self._p11.Attribute, self._p11.ObjectClass
        old = self._meta_objects(session, key_name)
        meta = dict(meta, seq=int(meta.get("seq", 0)) + 1)
        session.create_object(
            {
                A.CLASS: OC.DATA,
                A.TOKEN: True,
                A.PRIVATE: True,
                A.APPLICATION: "cleanroom",
                A.LABEL: f"{self._prefix}{key_name}.meta",
                A.VALUE: json.dumps(meta, sort_keys=True).encode(),
            }
        )
        for obj in old:
            obj.destroy()

    def _apply_policy(self, session: Any, key_name: str, meta: dict[str, Any]) -> dict[int, Any]:
        """Make the token enforce `meta`: WRAP on the newest enabled version, UNWRAP on versions >= min."""
        A = self._p11.Attribute
        versions = self._versions(session, key_name)
        latest = max(versions)
        enabled, minimum = bool(meta["enabled"]), int(meta["min_decryption_version"])
        for version, obj in versions.items():
            want_wrap, want_unwrap = enabled and version == latest, enabled and version >= minimum
            if bool(obj[A.WRAP]) != want_wrap:
                obj[A.WRAP] = want_wrap
            if bool(obj[A.UNWRAP]) != want_unwrap:
                obj[A.UNWRAP] = want_unwrap
        return versions

    def _generate_master(self, session: Any, key_name: str, version: int) -> None:
        A, KT = self._p11.Attribute, self._p11.KeyType
        session.generate_key(
            KT.AES,
            256,
            label=self._label(key_name, version),
            id=f"{key_name}.v{version}".encode(),
            store=True,
            template={
                A.TOKEN: True,
                A.PRIVATE: True,
                A.SENSITIVE: True,
                A.EXTRACTABLE: False,
                A.MODIFIABLE: True,
                A.WRAP: True,
                A.UNWRAP: True,
                A.ENCRYPT: False,
                A.DECRYPT: False,
                A.SIGN: False,
                A.VERIFY: False,
                A.DERIVE: False,
            },
        )

    def _refused(self, session: Any, key_name: str, version: int | None) -> CleanroomError:
        """Why the token refused a master key: sealed, a retired version, or an attribute set by hand."""
        meta = self._read_meta(session, key_name)
        if not meta["enabled"]:
            return SystemSealed(
                f"master key {key_name!r} is disabled; run `cleanroom keys restore --system`", retry_after_s=60
            )
        if version is not None and version < int(meta["min_decryption_version"]):
            return KeyError_("master key version is below the minimum decryption version", code="key_version_retired")
        return KeyError_(f"the token refuses this use of master key {key_name!r} (CKA_WRAP/CKA_UNWRAP false)")

    def _is_not_permitted(self, exc: Exception) -> bool:
        # python-pkcs11 0.10 has no class for CKR_KEY_FUNCTION_NOT_PERMITTED; it reports the code.
        return type(exc) is self._errors.PKCS11Error and CKR_KEY_FUNCTION_NOT_PERMITTED in str(exc)

    # --- KMS protocol ---------------------------------------------------------------------------
    def create_key(self, key_name: str) -> None:
        self._check_name(key_name)
        with self._token() as session:
            if self._versions(session, key_name):
                if not self._meta_objects(session, key_name):  # keys made by hand: adopt them, enabled
                    now = time.time()
                    meta = {"min_decryption_version": 1, "enabled": True, "created_at": now, "rotated_at": now}
                    self._write_meta(session, key_name, meta)
                return
            now = time.time()
            self._generate_master(session, key_name, 1)
            meta = {"min_decryption_version": 1, "enabled": True, "created_at": now, "rotated_at": now}
            self._write_meta(session, key_name, meta)
            self._apply_policy(session, key_name, meta)

    def wrap(self, key_name: str, plaintext: bytes | bytearray | memoryview, context: bytes) -> WrappedKey:
        self._check_name(key_name)
        p11, A, e = self._p11, self._p11.Attribute, self._errors
        from pkcs11.mechanisms import GCMParams

        with self._token() as session:
            versions = self._versions(session, key_name)
            if not versions:
                raise KeyError_(f"master key {key_name!r} does not exist in the PKCS#11 token", code="unknown_key")
            version = max(versions)
            master = versions[version]
            if not master[A.WRAP]:
                raise self._refused(session, key_name, None)
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
                        raise self._refused(session, key_name, None) from None
                    raise
            finally:
                item.destroy()
        blob = encode_blob(bytes(wrapped_item), bytes(nonce), bytes(sealed))
        return WrappedKey(kms=self.name, key_name=key_name, version=version, ciphertext=blob)

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytearray:
        if wrapped.kms != self.name:
            raise DecryptionFailed(f"key was wrapped by the {wrapped.kms!r} KMS, not {self.name!r}")
        key_name = self._check_name(wrapped.key_name)
        wrapped_item, nonce, sealed = decode_blob(wrapped.ciphertext)
        p11, A, e = self._p11, self._p11.Attribute, self._errors
        from pkcs11.mechanisms import GCMParams

        with self._token() as session:
            master = self._version_obj(session, key_name, wrapped.version)
            if master is None:
                if not self._versions(session, key_name):
                    raise KeyError_(f"master key {key_name!r} does not exist in the PKCS#11 token", code="unknown_key")
                raise DecryptionFailed("wrapped key names a master key version that does not exist")
            if not master[A.UNWRAP]:  # python-pkcs11 gives such an object no unwrap_key at all
                raise self._refused(session, key_name, wrapped.version)
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
                    raise self._refused(session, key_name, wrapped.version) from None
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
        with self._token() as session:
            key = bytearray(session.generate_random(size_bytes * 8))
        try:
            return key, self.wrap(key_name, key, context)
        except BaseException:
            _zero(key)
            raise

    def rotate(self, key_name: str) -> int:
        self._check_name(key_name)
        with self._token() as session:
            meta = self._read_meta(session, key_name)
            if not meta["enabled"]:
                raise self._refused(session, key_name, None)
            version = max(self._versions(session, key_name)) + 1
            self._generate_master(session, key_name, version)
            meta["rotated_at"] = time.time()
            self._write_meta(session, key_name, meta)
            self._apply_policy(session, key_name, meta)
            return version

    def set_min_decryption_version(self, key_name: str, version: int) -> None:
        """Versions below `version` lose CKA_UNWRAP: the token itself refuses them."""
        self._check_name(key_name)
        with self._token() as session:
            meta = self._read_meta(session, key_name)
            latest = max(self._versions(session, key_name))
            if not 1 <= version <= latest:
                raise KeyError_(f"minimum version must be between 1 and {latest}", code="invalid_key_version")
            meta["min_decryption_version"] = version
            self._write_meta(session, key_name, meta)
            self._apply_policy(session, key_name, meta)

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
        self._check_name(key_name)
        with self._token() as session:
            meta = self._read_meta(session, key_name)
            meta["enabled"] = enabled
            # Attributes first when disabling (the token refuses at once), record first when enabling.
            if not enabled:
                self._apply_policy(session, key_name, meta)
                self._write_meta(session, key_name, meta)
            else:
                self._write_meta(session, key_name, meta)
                self._apply_policy(session, key_name, meta)

    def disable(self, key_name: str) -> None:
        self._set_enabled(key_name, False)

    def enable(self, key_name: str) -> None:
        self._set_enabled(key_name, True)

    def describe(self, key_name: str) -> KeyDescription:
        self._check_name(key_name)
        A = self._p11.Attribute
        with self._token() as session:
            meta = self._read_meta(session, key_name)
            versions = self._versions(session, key_name)
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
                    "labels": [self._label(key_name, v) for v in sorted(versions)],
                    "unwrap_enabled_versions": unwrappable,
                    "wrap_mechanism": f"{int(self._mech):#06x}",
                    "context_binding": "AES-GCM AAD under a per-item key wrapped with AES-KWP",
                },
            )

    def close(self) -> None:
        with self._lock:
            self._drop_session()


class _ProcessLogins:
    """One logged-in session per (module, token) for the whole process.

    PKCS#11 login state belongs to the application: a second C_Login fails with
    CKR_USER_ALREADY_LOGGED_IN, and python-pkcs11's `Session.close()` calls C_Logout, which would log out
    every other session of the process. So one holder session logs in and stays open; each `Pkcs11KMS`
    works in its own PIN-less session. A later instance must present the same PIN (compared as an HMAC
    under a per-process random key, in constant time), or it is refused as if the token had refused it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holders: dict[tuple[str, str], tuple[Any, bytes]] = {}
        self._mac_key = os.urandom(32)

    def _mac(self, pin: str) -> bytes:
        mac = hmac.HMAC(self._mac_key, hashes.SHA256())
        mac.update(pin.encode())
        return mac.finalize()

    def ensure(self, token: Any, key: tuple[str, str], pin: str) -> None:
        import pkcs11.exceptions as e

        with self._lock:
            held = self._holders.get(key)
            if held is not None:
                if not constant_time.bytes_eq(held[1], self._mac(pin)):
                    raise e.PinIncorrect()
                return
            try:
                holder = token.open(user_pin=pin, rw=True)
            except e.UserAlreadyLoggedIn:  # logged in outside this registry (another library in-process)
                holder = token.open(rw=True)
            self._holders[key] = (holder, self._mac(pin))

    def forget(self, key: tuple[str, str]) -> None:
        with self._lock:
            held = self._holders.pop(key, None)
        if held is not None:
            with suppress(Exception):
                held[0].close()


_LOGINS = _ProcessLogins()


def _meta_seq(meta: dict[str, Any]) -> int:
    return int(meta.get("seq", 0))


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
