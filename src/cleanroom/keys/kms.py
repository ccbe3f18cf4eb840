"""The KMS protocol: the one interface every master-key backend implements.

The key hierarchy is data key -> tenant key -> master key. Only the master key lives in a KMS; cleanroom
asks the KMS to wrap and unwrap the keys below it, so a KMS backend never sees tenant data and the master
key never leaves the backend (for `local` it leaves only a 0600 file in the data dir).

Every wrap binds a `context` (bytes; callers build it from tenant, key id, purpose) so a wrapped key moved
to another tenant or purpose fails to unwrap. Unwrapped keys come back as `bytearray` so the caller can
zero them when done.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from cleanroom.errors import InvalidSealedMessage


@dataclass(frozen=True)
class WrappedKey:
    """A key wrapped by a KMS master key: what we store, never the key itself."""

    kms: str
    key_name: str
    version: int
    ciphertext: bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "kms": self.kms,
            "key_name": self.key_name,
            "version": self.version,
            "ciphertext": base64.b64encode(self.ciphertext).decode("ascii"),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WrappedKey:
        try:
            return cls(
                kms=str(data["kms"]),
                key_name=str(data["key_name"]),
                version=int(data["version"]),
                ciphertext=base64.b64decode(data["ciphertext"], validate=True),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise InvalidSealedMessage(f"malformed wrapped key record: {type(exc).__name__}") from exc

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True)


@dataclass(frozen=True)
class KeyDescription:
    """What `describe` reports about a master key; no key material."""

    name: str
    backend: str
    latest_version: int
    min_decryption_version: int
    enabled: bool
    created_at: float
    rotated_at: float
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class KMS(Protocol):
    """A master-key backend. Implementations: `local`, `vault`, `pkcs11`, `aws`.

    Errors: `KMSUnavailable` when the backend cannot be reached (the caller may retry; requests get 503),
    `SystemSealed` when the master key is disabled, `DecryptionFailed` when a wrapped key does not
    authenticate under the given context.
    """

    name: str

    def wrap(self, key_name: str, plaintext: bytes | bytearray | memoryview, context: bytes) -> WrappedKey:
        """Encrypt a key under the newest version of master key `key_name`, binding `context`."""
        ...

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytearray:
        """Decrypt a wrapped key; the caller owns (and zeroes) the returned buffer."""
        ...

    def generate_data_key(self, key_name: str, context: bytes, size_bytes: int = 32) -> tuple[bytearray, WrappedKey]:
        """A fresh random key and its wrapped form, in one call where the backend offers it."""
        ...

    def create_key(self, key_name: str) -> None:
        """Create master key `key_name` if it does not exist (idempotent)."""
        ...

    def rotate(self, key_name: str) -> int:
        """Add a new version of `key_name`; new wraps use it. Returns the new version number."""
        ...

    def set_min_decryption_version(self, key_name: str, version: int) -> None:
        """Refuse to unwrap anything wrapped under a version below `version` (retire old versions)."""
        ...

    def rewrap(self, wrapped: WrappedKey, context: bytes) -> WrappedKey:
        """Re-encrypt under the newest version without exposing the key to the caller where possible."""
        ...

    def disable(self, key_name: str) -> None:
        """Refuse every wrap and unwrap with `key_name` until `enable` (system-scope revocation)."""
        ...

    def enable(self, key_name: str) -> None: ...

    def describe(self, key_name: str) -> KeyDescription: ...

    def close(self) -> None: ...
