"""`VaultTransitKMS`: master keys in a HashiCorp Vault or OpenBao Transit secrets engine (over hvac).

The master key never leaves Transit: cleanroom sends a key to `encrypt` and gets back a Transit ciphertext,
sends that back to `decrypt` and gets the key.

Context binding. Keys this class creates are `aes256-gcm96` with `derived=true`: Transit derives a
per-context AES key from the master version and our `context` (its KDF, HKDF-SHA256 by default), so a
wrapped key presented with another context is decrypted under another key and fails GCM authentication.
We chose derivation over `associated_data` (which OpenBao and Vault ≥ 1.13 accept on encrypt/decrypt of
AEAD keys) because Transit's `rewrap` and `datakey` endpoints honour `context` but ignore
`associated_data` (measured on OpenBao 2.7.2: a rewrap of an AAD-bound ciphertext fails to authenticate),
and server-side rewrap is what lets rotation move stored keys without their plaintext ever leaving Transit.
A pre-existing non-derived AEAD key (bring-your-own-key) still works: it is used with `associated_data`,
and its `rewrap` falls back to decrypt + encrypt here, zeroing the key in between.
Both modes send `b"cleanroom/v1\\x00" + context` so the context is never empty (derived keys require one).

Layout of `WrappedKey.ciphertext`: the raw bytes that Transit base64-encodes after its `vault:vN:` prefix
(nonce || ciphertext || tag for AES-GCM). The version lives in `WrappedKey.version` and the prefix is
rebuilt from it, so a tampered version sends the ciphertext to another master version and fails there.

System-scope revocation (`disable`). Transit has no "disable key" switch in HashiCorp Vault; OpenBao added
soft deletion (`DELETE <mount>/keys/<name>/soft-delete`, undone by `POST .../soft-delete-restore`): while
soft-deleted the key refuses encrypt, decrypt, rewrap, datakey and rotate, for every client of that
server, and nothing is lost. That is what `disable`/`enable` use. On a server without it (HashiCorp
Vault), `disable` falls back to a flag inside this process only and logs a warning: revoke cleanroom's
token or its policy there to cut off a whole fleet. `min_decryption_version` and `min_encryption_version`
cannot do the job: Transit refuses a minimum above the latest version, and raising it is not undoable for
the versions it trims from responses.

Secret hygiene: hvac speaks JSON, so a key crosses this module as a base64 `str` in the request and the
response; those immutable copies stay in the heap until reused (the allocator hardening of DESIGN §4
wipes most). The key handed back to the caller is a fresh `bytearray` the caller zeroes.
Where the parts live: `vault_format` (Transit's ciphertext and base64 encodings), `vault_transport` (the
HTTP call and its error mapping), `vault_batch` (the batch_input bulk paths). This module is the KMS
protocol for one key at a time: the key-state caches, wrap/unwrap/rewrap, and the key lifecycle.
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from urllib.parse import urlsplit

from cleanroom.errors import (
    CleanroomError,
    ConfigurationError,
    DecryptionFailed,
    KeyError_,
    KMSUnavailable,
    SystemSealed,
)
from cleanroom.keys.kms import KeyDescription, WrappedKey
from cleanroom.keys.vault_batch import MAX_BATCH_ITEMS, TransitBatchCalls
from cleanroom.keys.vault_format import (
    CONTEXT_PREFIX,
    KEY_NAME_RE,
    b64,
    check_key_name,
    decode_into_bytearray,
    parse_transit_ciphertext,
    zero,
)
from cleanroom.keys.vault_transport import TransitTransport

__all__ = ["CONTEXT_PREFIX", "MAX_BATCH_ITEMS", "VaultTransitKMS", "parse_transit_ciphertext"]

log = logging.getLogger(__name__)

_AEAD_TYPES = frozenset({"aes256-gcm96", "aes128-gcm96", "chacha20-poly1305"})


class VaultTransitKMS(TransitBatchCalls):
    """Master keys in Vault/OpenBao Transit. Thread-safe (hvac's requests session is; our caches are locked).

    `addr` is the server URL (`https://vault.example:8200`), `token` a token whose policy allows
    `create`/`read`/`update` on `<mount>/keys/*`, `<mount>/encrypt/*`, `<mount>/decrypt/*`,
    `<mount>/rewrap/*`, `<mount>/datakey/plaintext/*`, and for `disable`/`enable` `delete` on
    `<mount>/keys/*/soft-delete` and `update` on `.../soft-delete-restore`.
    `verify` is passed to requests: True, False (tests only) or a CA bundle path.
    """

    name = "vault"

    def __init__(
        self,
        addr: str,
        token: str,
        mount: str = "transit",
        *,
        timeout_s: float = 5.0,
        verify: bool | str = True,
        namespace: str | None = None,
        retry_after_s: float = 5.0,
        batch_size: int = 100,
    ) -> None:
        parts = urlsplit(addr)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError(f"vault address must be an http(s) URL, got {addr!r}")
        if not token:
            raise ConfigurationError("vault token is empty (set CLEANROOM_VAULT_TOKEN)")
        mount = mount.strip("/")
        if not mount or not all(KEY_NAME_RE.match(part) for part in mount.split("/")):
            raise ConfigurationError(f"invalid Transit mount path {mount!r}")
        if timeout_s <= 0 or retry_after_s <= 0:
            raise ConfigurationError("timeout_s and retry_after_s must be positive")
        if not 1 <= batch_size <= MAX_BATCH_ITEMS:
            raise ConfigurationError(f"batch_size must be between 1 and {MAX_BATCH_ITEMS}")
        import hvac  # the `vault` extra; imported here so other backends don't need it

        self._client = hvac.Client(url=addr, token=token, timeout=timeout_s, verify=verify, namespace=namespace)
        self._transport = TransitTransport(self._client, addr, mount, retry_after_s)
        self._addr, self._mount = addr, mount
        self._retry_after_s, self._batch_size = retry_after_s, batch_size
        self._lock = threading.Lock()
        self._derived: dict[str, bool] = {}  # key name -> derived? (immutable once a key exists)
        self._locally_sealed: set[str] = set()  # fallback disable on servers without soft-delete

    # --- transport (every call goes through here, so one patch point sees them all) --------------
    def _request(
        self, method: str, path: str, payload: dict[str, Any] | None = None, *, batch: bool = False
    ) -> dict[str, Any]:
        """One Transit call; every failure comes out as a CleanroomError."""
        return self._transport.request(method, path, payload, batch=batch)

    def _batch_item_error(self, index: int, message: str, path: str) -> CleanroomError:
        return self._transport.batch_item_error(index, message, path)

    # --- key state ------------------------------------------------------------------------------
    def _check_local_seal(self, key_name: str) -> None:
        if key_name in self._locally_sealed:
            raise SystemSealed(
                f"master key {key_name!r} is disabled in this process; run `cleanroom keys restore --system`",
                retry_after_s=60,
            )

    def _read_key(self, key_name: str) -> dict[str, Any]:
        data = self._request("GET", f"keys/{check_key_name(key_name)}").get("data")
        if not isinstance(data, dict):
            raise KMSUnavailable("Transit returned no key data", retry_after_s=self._retry_after_s)
        return data

    def _is_derived(self, key_name: str) -> bool:
        with self._lock:
            cached = self._derived.get(key_name)
        if cached is not None:
            return cached
        data = self._read_key(key_name)
        if data.get("type") not in _AEAD_TYPES:
            raise ConfigurationError(
                f"Transit key {key_name!r} has type {data.get('type')!r}; cleanroom needs an AEAD key "
                f"({', '.join(sorted(_AEAD_TYPES))})"
            )
        derived = bool(data.get("derived"))
        with self._lock:
            self._derived[key_name] = derived
        return derived

    def _context_field(self, key_name: str, context: bytes) -> dict[str, str]:
        field = "context" if self._is_derived(key_name) else "associated_data"
        return {field: b64(CONTEXT_PREFIX + bytes(context))}

    def _to_wrapped(self, key_name: str, text: Any) -> WrappedKey:
        if not isinstance(text, str):
            raise KMSUnavailable("Transit returned no ciphertext", retry_after_s=self._retry_after_s)
        version, raw = parse_transit_ciphertext(text)
        return WrappedKey(kms=self.name, key_name=key_name, version=version, ciphertext=raw)

    def _to_transit(self, wrapped: WrappedKey) -> str:
        if wrapped.kms != self.name:
            raise DecryptionFailed(f"key was wrapped by the {wrapped.kms!r} KMS, not {self.name!r}")
        if wrapped.version < 1 or not wrapped.ciphertext:
            raise DecryptionFailed("wrapped key record has no ciphertext or an invalid version")
        return f"vault:v{wrapped.version}:{b64(wrapped.ciphertext)}"

    # --- KMS protocol ---------------------------------------------------------------------------
    def create_key(self, key_name: str) -> None:
        """Create a derived aes256-gcm96 key unless `key_name` exists; an existing key must be an AEAD key."""
        check_key_name(key_name)
        try:
            self._is_derived(key_name)
            return
        except KeyError_ as exc:
            if exc.code != "unknown_key":
                raise
        self._request("POST", f"keys/{key_name}", {"type": "aes256-gcm96", "derived": True})
        with self._lock:
            self._derived.pop(key_name, None)
        self._is_derived(key_name)

    def wrap(self, key_name: str, plaintext: bytes | bytearray | memoryview, context: bytes) -> WrappedKey:
        check_key_name(key_name)
        self._check_local_seal(key_name)
        payload = {"plaintext": b64(plaintext), **self._context_field(key_name, context)}
        data = self._request("POST", f"encrypt/{key_name}", payload).get("data", {})
        return self._to_wrapped(key_name, data.get("ciphertext"))

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytearray:
        ciphertext = self._to_transit(wrapped)
        key_name = check_key_name(wrapped.key_name)
        self._check_local_seal(key_name)
        payload = {"ciphertext": ciphertext, **self._context_field(key_name, context)}
        data = self._request("POST", f"decrypt/{key_name}", payload).get("data", {})
        text = data.get("plaintext")
        if not isinstance(text, str):
            raise KMSUnavailable("Transit returned no plaintext", retry_after_s=self._retry_after_s)
        return decode_into_bytearray(text)

    def generate_data_key(self, key_name: str, context: bytes, size_bytes: int = 32) -> tuple[bytearray, WrappedKey]:
        """One `datakey/plaintext` call: Transit draws the key from its RNG and wraps it."""
        check_key_name(key_name)
        self._check_local_seal(key_name)
        if size_bytes not in (16, 32, 64):
            raise KeyError_("Transit data keys are 16, 32 or 64 bytes", code="invalid_key_size")
        payload = {"bits": size_bytes * 8, **self._context_field(key_name, context)}
        data = self._request("POST", f"datakey/plaintext/{key_name}", payload).get("data", {})
        wrapped = self._to_wrapped(key_name, data.get("ciphertext"))
        text = data.get("plaintext")
        if not isinstance(text, str):
            raise KMSUnavailable("Transit returned no data key", retry_after_s=self._retry_after_s)
        key = decode_into_bytearray(text)
        if len(key) != size_bytes:
            zero(key)
            raise KMSUnavailable("Transit returned a data key of the wrong size", retry_after_s=self._retry_after_s)
        return key, wrapped

    def rotate(self, key_name: str) -> int:
        check_key_name(key_name)
        self._check_local_seal(key_name)
        self._request("POST", f"keys/{key_name}/rotate")
        return int(self._read_key(key_name)["latest_version"])

    def set_min_decryption_version(self, key_name: str, version: int) -> None:
        """Retire older versions: ciphertexts below `version` stop decrypting (Transit enforces it)."""
        latest = int(self._read_key(key_name)["latest_version"])
        if not 1 <= version <= latest:
            raise KeyError_(f"minimum version must be between 1 and {latest}", code="invalid_key_version")
        self._request("POST", f"keys/{key_name}/config", {"min_decryption_version": version})

    def rewrap(self, wrapped: WrappedKey, context: bytes) -> WrappedKey:
        """Derived keys: Transit's rewrap, so the key's plaintext never leaves Transit."""
        ciphertext = self._to_transit(wrapped)
        key_name = check_key_name(wrapped.key_name)
        self._check_local_seal(key_name)
        if not self._is_derived(key_name):
            key = self.unwrap(wrapped, context)
            try:
                return self.wrap(key_name, key, context)
            finally:
                zero(key)
        payload = {"ciphertext": ciphertext, **self._context_field(key_name, context)}
        data = self._request("POST", f"rewrap/{key_name}", payload).get("data", {})
        return self._to_wrapped(key_name, data.get("ciphertext"))

    def disable(self, key_name: str) -> None:
        check_key_name(key_name)
        self._read_key(key_name)  # unknown key -> KeyError_, not a silent no-op
        try:
            self._request("DELETE", f"keys/{key_name}/soft-delete")
        except ConfigurationError:
            log.warning(
                "Transit on %s has no soft-delete (HashiCorp Vault): master key %r is disabled in this "
                "process only; revoke cleanroom's Vault token or policy to cut off every process",
                self._addr,
                key_name,
            )
            with self._lock:
                self._locally_sealed.add(key_name)

    def enable(self, key_name: str) -> None:
        check_key_name(key_name)
        if self._read_key(key_name).get("soft_deleted"):
            self._request("POST", f"keys/{key_name}/soft-delete-restore")
        with self._lock:
            self._locally_sealed.discard(key_name)

    def describe(self, key_name: str) -> KeyDescription:
        data = self._read_key(key_name)
        # `keys` maps each live version to its creation time (unix seconds); trimmed versions are absent.
        times = {int(v): float(t) for v, t in (data.get("keys") or {}).items() if isinstance(t, (int, float))}
        latest = int(data["latest_version"])
        return KeyDescription(
            name=key_name,
            backend=self.name,
            latest_version=latest,
            min_decryption_version=int(data.get("min_decryption_version") or 1),
            enabled=not data.get("soft_deleted") and key_name not in self._locally_sealed,
            created_at=times[min(times)] if times else 0.0,
            rotated_at=times.get(latest, 0.0),
            extra={
                "addr": self._addr,
                "mount": self._mount,
                "type": data.get("type"),
                "derived": bool(data.get("derived")),
                "context_binding": "derived-key" if data.get("derived") else "associated_data",
                "exportable": bool(data.get("exportable")),
                "disable_mechanism": "local-flag" if key_name in self._locally_sealed else "soft-delete",
            },
        )

    def close(self) -> None:
        self._transport.close()
