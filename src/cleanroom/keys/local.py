"""`LocalKMS`: the embedded default master-key store, for a single host with no external KMS.

Master keys live in `DATA_DIR/kms/master-keys.json` (mode 0600, atomic writes), versioned like Vault
Transit keys so rotation and minimum versions behave the same across backends. Wrapping is AES-256-GCM
with a random 96-bit nonce; the AAD binds the key name, the version and the caller's context.

Layout of `WrappedKey.ciphertext`: nonce (12) || AES-GCM ciphertext || tag (16).

The file is re-read when it changes on disk, so `cleanroom keys revoke --system` run from another process
takes effect on the very next call. This is the weakest backend by construction (the master key is on the
same disk as what it protects); production deployments should use Vault/OpenBao, an HSM or a cloud KMS.
"""

from __future__ import annotations

import base64
import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cleanroom.errors import ConfigurationError, DecryptionFailed, KeyError_, SystemSealed
from cleanroom.keys.kms import KeyDescription, WrappedKey
from cleanroom.storage import atomic_write_json, change_stamp, file_lock, read_json

NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32


def _checked_document(path: Path, st: os.stat_result, *, check_mode: bool) -> dict[str, Any]:
    """The key file, refused with a clear ConfigurationError (not a traceback) if it is readable by others
    (`check_mode`: at start-up and in locked updates, never per request), not JSON of the expected shape,
    or holds a key that is not 32 bytes (AESGCM takes a 16-byte key and would silently wrap new tenant keys
    with AES-128)."""
    if check_mode and st.st_mode & 0o077:
        raise ConfigurationError(
            f"{path} has mode {stat.S_IMODE(st.st_mode):04o}; the master key file must be 0600 (chmod 600 it "
            "after checking who could read it; a key others could read should be treated as leaked)"
        )
    try:
        document = read_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigurationError(f"{path} is not a readable master key file: {type(exc).__name__}") from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, dict):
        raise ConfigurationError(f"{path} is not a master key file (no `keys` object)")
    for name, entry in keys.items():
        try:
            versions = entry["versions"]
            int(entry["latest_version"]), int(entry["min_decryption_version"]), bool(entry["enabled"])
            sizes = {v: len(base64.b64decode(k, validate=True)) for v, k in versions.items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ConfigurationError(f"{path}: master key {name!r} is malformed") from None
        wrong = sorted(v for v, size in sizes.items() if size != KEY_BYTES)
        if wrong or str(entry["latest_version"]) not in versions:
            raise ConfigurationError(
                f"{path}: master key {name!r} version(s) {', '.join(wrong) or entry['latest_version']} "
                f"missing or not {KEY_BYTES} bytes; restore the file from backup"
            )
    return dict(document)


def _aad(key_name: str, version: int, context: bytes) -> bytes:
    return b"cleanroom/local-kms/v1\x00" + key_name.encode() + b"\x00" + str(version).encode() + b"\x00" + context


class LocalKMS:
    """Master keys in a 0600 file in the data dir. Thread-safe; safe across processes via a file lock."""

    name = "local"

    def __init__(self, data_dir: Path) -> None:
        self._dir = Path(data_dir) / "kms"
        self._path = self._dir / "master-keys.json"
        self._lock_path = self._dir / ".lock"
        self._mutex = threading.Lock()
        self._doc: dict[str, Any] = {"keys": {}}
        self._stamp: tuple[int, ...] | None = None
        self._reload(force=True)

    # --- persistence ----------------------------------------------------------------------------
    def _reload(self, force: bool = False) -> None:
        try:
            st = os.lstat(self._path)
        except FileNotFoundError:
            self._doc, self._stamp = {"keys": {}}, None
            return
        if stat.S_ISLNK(st.st_mode):
            # Read through, it would work until the first rotation: the atomic rewrite replaces the link with
            # a plain file, and whatever the link pointed at silently stops being the key.
            raise ConfigurationError(
                f"{self._path} is a symlink; the local KMS rewrites its key file in place (rotation), so keep "
                "the real file there (mode 0600), or use a KMS that owns its storage (Vault/OpenBao, PKCS#11)"
            )
        stamp = change_stamp(st)
        if force or stamp != self._stamp:
            self._doc, self._stamp = _checked_document(self._path, st, check_mode=force), stamp

    def _save(self) -> None:
        atomic_write_json(self._path, self._doc)
        self._stamp = change_stamp(os.stat(self._path))

    def _key(self, key_name: str) -> dict[str, Any]:
        self._reload()
        entry = self._doc["keys"].get(key_name)
        if entry is None:
            raise KeyError_(f"master key {key_name!r} does not exist in the local KMS", code="unknown_key")
        return entry  # type: ignore[no-any-return]

    def check_usable(self, key_name: str, version: int) -> None:
        """Raise as `unwrap` would for a key wrapped under `version` of `key_name` (disabled: SystemSealed;
        below the minimum: key_version_retired), without decrypting anything. Costs a stat of the key file,
        so the keyring can ask on every request, cached key or not (a revocation from another process)."""
        with self._mutex:
            entry = self._usable_key(key_name)
            if version < int(entry["min_decryption_version"]):
                raise KeyError_(
                    f"master key version {version} is below the minimum decryption version",
                    code="key_version_retired",
                )

    def _usable_key(self, key_name: str) -> dict[str, Any]:
        entry = self._key(key_name)
        if not entry["enabled"]:
            raise SystemSealed(
                f"master key {key_name!r} is disabled; run `cleanroom keys restore --system`", retry_after_s=60
            )
        return entry

    # --- KMS protocol ---------------------------------------------------------------------------
    def create_key(self, key_name: str) -> None:
        with self._mutex, file_lock(self._lock_path):
            self._reload(force=True)
            if key_name in self._doc["keys"]:
                return
            now = time.time()
            self._doc["keys"][key_name] = {
                "versions": {"1": base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()},
                "latest_version": 1,
                "min_decryption_version": 1,
                "enabled": True,
                "created_at": now,
                "rotated_at": now,
            }
            self._save()

    def wrap(self, key_name: str, plaintext: bytes | bytearray | memoryview, context: bytes) -> WrappedKey:
        with self._mutex:
            entry = self._usable_key(key_name)
            version = int(entry["latest_version"])
            master = base64.b64decode(entry["versions"][str(version)])
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(master).encrypt(nonce, bytes(plaintext), _aad(key_name, version, context))
        return WrappedKey(kms=self.name, key_name=key_name, version=version, ciphertext=nonce + sealed)

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytearray:
        if wrapped.kms != self.name:
            raise DecryptionFailed(f"key was wrapped by the {wrapped.kms!r} KMS, not {self.name!r}")
        with self._mutex:
            entry = self._usable_key(wrapped.key_name)
            if wrapped.version < int(entry["min_decryption_version"]):
                raise KeyError_(
                    f"master key version {wrapped.version} is below the minimum decryption version",
                    code="key_version_retired",
                )
            encoded = entry["versions"].get(str(wrapped.version))
            if encoded is None:
                raise DecryptionFailed("wrapped key names a master key version that does not exist")
            master = base64.b64decode(encoded)
        blob = wrapped.ciphertext
        if len(blob) < NONCE_BYTES + TAG_BYTES:
            raise DecryptionFailed("wrapped key is truncated")
        out = bytearray(len(blob) - NONCE_BYTES - TAG_BYTES)
        try:
            AESGCM(master).decrypt_into(
                blob[:NONCE_BYTES], blob[NONCE_BYTES:], _aad(wrapped.key_name, wrapped.version, context), out
            )
        except InvalidTag:
            out[:] = bytes(len(out))  # decrypt_into leaves unauthenticated plaintext behind
            raise DecryptionFailed("wrapped key failed to authenticate (wrong key, context or tampered)") from None
        return out

    def generate_data_key(
        self, key_name: str, context: bytes, size_bytes: int = KEY_BYTES
    ) -> tuple[bytearray, WrappedKey]:
        key = bytearray(os.urandom(size_bytes))
        return key, self.wrap(key_name, key, context)

    def rotate(self, key_name: str) -> int:
        with self._mutex, file_lock(self._lock_path):
            self._reload(force=True)
            entry = self._key(key_name)
            version = int(entry["latest_version"]) + 1
            entry["versions"][str(version)] = base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()
            entry["latest_version"], entry["rotated_at"] = version, time.time()
            self._save()
            return version

    def set_min_decryption_version(self, key_name: str, version: int) -> None:
        with self._mutex, file_lock(self._lock_path):
            self._reload(force=True)
            entry = self._key(key_name)
            if not 1 <= version <= int(entry["latest_version"]):
                raise KeyError_(
                    f"minimum version must be between 1 and {entry['latest_version']}", code="invalid_key_version"
                )
            entry["min_decryption_version"] = version
            self._save()

    def rewrap(self, wrapped: WrappedKey, context: bytes) -> WrappedKey:
        key = self.unwrap(wrapped, context)
        try:
            return self.wrap(wrapped.key_name, key, context)
        finally:
            key[:] = bytes(len(key))

    def _set_enabled(self, key_name: str, enabled: bool) -> None:
        with self._mutex, file_lock(self._lock_path):
            self._reload(force=True)
            self._key(key_name)["enabled"] = enabled
            self._save()

    def disable(self, key_name: str) -> None:
        self._set_enabled(key_name, False)

    def enable(self, key_name: str) -> None:
        self._set_enabled(key_name, True)

    def describe(self, key_name: str) -> KeyDescription:
        with self._mutex:
            entry = self._key(key_name)
            return KeyDescription(
                name=key_name,
                backend=self.name,
                latest_version=int(entry["latest_version"]),
                min_decryption_version=int(entry["min_decryption_version"]),
                enabled=bool(entry["enabled"]),
                created_at=float(entry["created_at"]),
                rotated_at=float(entry["rotated_at"]),
            )

    def close(self) -> None:
        self._doc = {"keys": {}}
