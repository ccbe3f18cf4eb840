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
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

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

log = logging.getLogger(__name__)

CONTEXT_PREFIX = b"cleanroom/v1\x00"
# OpenBao refuses request bodies with more than 1000 JSON strings (listener max_request_json_strings);
# a batch item is 4 strings, so 240 items is the ceiling there (measured: 240 passes, 300 is refused).
MAX_BATCH_ITEMS = 200
_CIPHERTEXT_RE = re.compile(r"^vault:v([1-9][0-9]{0,9}):([A-Za-z0-9+/]+={0,2})$")
_KEY_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,126}[A-Za-z0-9])?$")
_AEAD_TYPES = frozenset({"aes256-gcm96", "aes128-gcm96", "chacha20-poly1305"})
# Transit's own error strings (stable across Vault 1.x and OpenBao 2.x) mapped to our error types.
_SEALED_MARKERS = ("soft-deleted",)
_RETIRED_MARKERS = ("disallowed by policy",)
_MISSING_MARKERS = ("key not found", "no existing key named")
_AUTH_MARKERS = ("message authentication failed", "invalid ciphertext", "version is too new", "decode")


def _b64(data: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(data).decode("ascii")


def _zero(buf: bytearray) -> None:
    buf[:] = bytes(len(buf))


def _decode_into_bytearray(text: str) -> bytearray:
    """Base64 text from Transit -> a bytearray the caller can zero."""
    try:
        return bytearray(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise KMSUnavailable("Transit returned malformed base64", retry_after_s=5) from exc


def parse_transit_ciphertext(text: str) -> tuple[int, bytes]:
    """`vault:vN:<base64>` -> (N, raw bytes); anything else is an error, never a guess."""
    match = _CIPHERTEXT_RE.match(text)
    if match is None:
        raise KMSUnavailable("Transit returned a ciphertext without a vault:vN: prefix", retry_after_s=5)
    return int(match.group(1)), base64.b64decode(match.group(2), validate=True)


class VaultTransitKMS:
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
        if not mount or not all(_KEY_NAME_RE.match(part) for part in mount.split("/")):
            raise ConfigurationError(f"invalid Transit mount path {mount!r}")
        if timeout_s <= 0 or retry_after_s <= 0:
            raise ConfigurationError("timeout_s and retry_after_s must be positive")
        if not 1 <= batch_size <= MAX_BATCH_ITEMS:
            raise ConfigurationError(f"batch_size must be between 1 and {MAX_BATCH_ITEMS}")
        import hvac  # the `vault` extra; imported here so other backends don't need it

        self._client = hvac.Client(url=addr, token=token, timeout=timeout_s, verify=verify, namespace=namespace)
        self._addr, self._mount = addr, mount
        self._retry_after_s, self._batch_size = retry_after_s, batch_size
        self._lock = threading.Lock()
        self._derived: dict[str, bool] = {}  # key name -> derived? (immutable once a key exists)
        self._locally_sealed: set[str] = set()  # fallback disable on servers without soft-delete

    # --- transport ------------------------------------------------------------------------------
    def _request(
        self, method: str, path: str, payload: dict[str, Any] | None = None, *, batch: bool = False
    ) -> dict[str, Any]:
        """One Transit call; every failure comes out as a CleanroomError."""
        import hvac.exceptions as hv
        import requests

        url = f"/v1/{self._mount}/{path}"
        try:
            response = self._client.adapter.request(method, url, json=payload)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise KMSUnavailable(
                f"cannot reach Vault/OpenBao at {self._addr} ({type(exc).__name__})", retry_after_s=self._retry_after_s
            ) from None
        except (hv.VaultDown, hv.BadGateway, hv.RateLimitExceeded, hv.VaultNotInitialized) as exc:
            raise KMSUnavailable(
                f"Vault/OpenBao at {self._addr} is not serving ({type(exc).__name__}: sealed, standby or busy)",
                retry_after_s=self._retry_after_s,
            ) from None
        except hv.Forbidden:
            raise KMSPermissionDenied(
                f"Vault/OpenBao refused the token for {method} {url} (403): check the token's policy and TTL"
            ) from None
        except hv.VaultError as exc:
            body = getattr(exc, "json", None)
            if batch and isinstance(body, dict) and isinstance(body.get("data"), dict):
                return body  # a batch whose items failed: the caller reads each item's error
            raise self._map_error(exc, path) from None
        if isinstance(response, dict):
            return response
        return {}  # 204 No Content

    def _map_error(self, exc: Exception, path: str) -> CleanroomError:
        import hvac.exceptions as hv

        errors = getattr(exc, "errors", None) or [str(exc)]
        text = "; ".join(str(e) for e in errors)[:300]
        lowered = text.lower()
        key = path.split("/")[-1]
        if any(m in lowered for m in _SEALED_MARKERS):
            return SystemSealed(
                f"master key {key!r} is disabled (soft-deleted in Transit); run `cleanroom keys restore --system`",
                retry_after_s=60,
            )
        if any(m in lowered for m in _RETIRED_MARKERS):
            return KeyError_("master key version is below the minimum decryption version", code="key_version_retired")
        if any(m in lowered for m in _MISSING_MARKERS) or isinstance(exc, hv.InvalidPath):
            return KeyError_(f"no Transit key {key!r} at mount {self._mount!r} ({text})", code="unknown_key")
        if isinstance(exc, hv.InternalServerError):
            return KMSUnavailable(f"Vault/OpenBao internal error: {text}", retry_after_s=self._retry_after_s)
        if isinstance(exc, hv.UnsupportedOperation):
            return ConfigurationError(f"Transit does not support {path!r} on this server ({text})")
        if any(m in lowered for m in _AUTH_MARKERS) or path.startswith(("decrypt/", "rewrap/")):
            return DecryptionFailed("wrapped key failed to authenticate (wrong key, context or tampered)")
        return KeyError_(f"Transit refused {path!r}: {text}")

    # --- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _check_name(key_name: str) -> str:
        if not _KEY_NAME_RE.match(key_name):
            raise KeyError_(f"invalid Transit key name {key_name!r}", code="invalid_key_name")
        return key_name

    def _check_local_seal(self, key_name: str) -> None:
        if key_name in self._locally_sealed:
            raise SystemSealed(
                f"master key {key_name!r} is disabled in this process; run `cleanroom keys restore --system`",
                retry_after_s=60,
            )

    def _read_key(self, key_name: str) -> dict[str, Any]:
        data = self._request("GET", f"keys/{self._check_name(key_name)}").get("data")
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
        return {field: _b64(CONTEXT_PREFIX + bytes(context))}

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
        return f"vault:v{wrapped.version}:{_b64(wrapped.ciphertext)}"

    def _batch_item_error(self, index: int, message: str, path: str) -> CleanroomError:
        err = self._map_error(_ItemError(message), path)
        return type(err)(f"batch item {index}: {err.message}", code=err.code, retry_after_s=err.retry_after_s)

    # --- KMS protocol ---------------------------------------------------------------------------
    def create_key(self, key_name: str) -> None:
        """Create a derived aes256-gcm96 key unless `key_name` exists; an existing key must be an AEAD key."""
        self._check_name(key_name)
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
        self._check_name(key_name)
        self._check_local_seal(key_name)
        payload = {"plaintext": _b64(plaintext), **self._context_field(key_name, context)}
        data = self._request("POST", f"encrypt/{key_name}", payload).get("data", {})
        return self._to_wrapped(key_name, data.get("ciphertext"))

    def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytearray:
        ciphertext = self._to_transit(wrapped)
        key_name = self._check_name(wrapped.key_name)
        self._check_local_seal(key_name)
        payload = {"ciphertext": ciphertext, **self._context_field(key_name, context)}
        data = self._request("POST", f"decrypt/{key_name}", payload).get("data", {})
        text = data.get("plaintext")
        if not isinstance(text, str):
            raise KMSUnavailable("Transit returned no plaintext", retry_after_s=self._retry_after_s)
        return _decode_into_bytearray(text)

    def generate_data_key(self, key_name: str, context: bytes, size_bytes: int = 32) -> tuple[bytearray, WrappedKey]:
        """One `datakey/plaintext` call: Transit draws the key from its RNG and wraps it."""
        self._check_name(key_name)
        self._check_local_seal(key_name)
        if size_bytes not in (16, 32, 64):
            raise KeyError_("Transit data keys are 16, 32 or 64 bytes", code="invalid_key_size")
        payload = {"bits": size_bytes * 8, **self._context_field(key_name, context)}
        data = self._request("POST", f"datakey/plaintext/{key_name}", payload).get("data", {})
        wrapped = self._to_wrapped(key_name, data.get("ciphertext"))
        text = data.get("plaintext")
        if not isinstance(text, str):
            raise KMSUnavailable("Transit returned no data key", retry_after_s=self._retry_after_s)
        key = _decode_into_bytearray(text)
        if len(key) != size_bytes:
            _zero(key)
            raise KMSUnavailable("Transit returned a data key of the wrong size", retry_after_s=self._retry_after_s)
        return key, wrapped

    def rotate(self, key_name: str) -> int:
        self._check_name(key_name)
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
        key_name = self._check_name(wrapped.key_name)
        self._check_local_seal(key_name)
        if not self._is_derived(key_name):
            key = self.unwrap(wrapped, context)
            try:
                return self.wrap(key_name, key, context)
            finally:
                _zero(key)
        payload = {"ciphertext": ciphertext, **self._context_field(key_name, context)}
        data = self._request("POST", f"rewrap/{key_name}", payload).get("data", {})
        return self._to_wrapped(key_name, data.get("ciphertext"))

    def disable(self, key_name: str) -> None:
        self._check_name(key_name)
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
        self._check_name(key_name)
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
        adapter = self._client.adapter
        session = getattr(adapter, "session", None)
        if session is not None:
            session.close()

    # --- batch calls (Transit batch_input: one round trip for many keys) -------------------------
    def wrap_many(
        self, key_name: str, items: Sequence[tuple[bytes | bytearray | memoryview, bytes]]
    ) -> list[WrappedKey]:
        """Wrap many (plaintext, context) pairs under `key_name`'s newest version, in batches."""
        self._check_name(key_name)
        self._check_local_seal(key_name)
        out: list[WrappedKey] = []
        for start in range(0, len(items), self._batch_size):
            chunk = items[start : start + self._batch_size]
            batch = [{"plaintext": _b64(pt), **self._context_field(key_name, ctx)} for pt, ctx in chunk]
            for index, result in enumerate(self._batch(f"encrypt/{key_name}", batch), start):
                if result.get("error"):
                    raise self._batch_item_error(index, str(result["error"]), f"encrypt/{key_name}")
                out.append(self._to_wrapped(key_name, result.get("ciphertext")))
        return out

    def unwrap_many(self, items: Sequence[tuple[WrappedKey, bytes]]) -> list[bytearray]:
        """Unwrap many (wrapped, context) pairs; all or nothing: one failure zeroes the rest and raises."""
        results: list[bytearray | None] = [None] * len(items)
        try:
            for key_name, indexed in _group_by_key(items).items():
                self._check_name(key_name)
                self._check_local_seal(key_name)
                for start in range(0, len(indexed), self._batch_size):
                    chunk = indexed[start : start + self._batch_size]
                    batch = [
                        {"ciphertext": self._to_transit(w), **self._context_field(key_name, ctx)}
                        for _, (w, ctx) in chunk
                    ]
                    for (index, _), result in zip(chunk, self._batch(f"decrypt/{key_name}", batch), strict=True):
                        if result.get("error"):
                            raise self._batch_item_error(index, str(result["error"]), f"decrypt/{key_name}")
                        text = result.get("plaintext")
                        if not isinstance(text, str):
                            raise KMSUnavailable("Transit returned no plaintext", retry_after_s=self._retry_after_s)
                        results[index] = _decode_into_bytearray(text)
        except BaseException:
            for key in results:
                if key is not None:
                    _zero(key)
            raise
        return [key for key in results if key is not None]

    def rewrap_many(self, items: Sequence[tuple[WrappedKey, bytes]]) -> list[WrappedKey]:
        """Rewrap many stored keys to the newest version (the background rewrap's bulk path)."""
        results: list[WrappedKey | None] = [None] * len(items)
        for key_name, indexed in _group_by_key(items).items():
            self._check_name(key_name)
            self._check_local_seal(key_name)
            if not self._is_derived(key_name):
                for index, (wrapped, ctx) in indexed:
                    results[index] = self.rewrap(wrapped, ctx)
                continue
            for start in range(0, len(indexed), self._batch_size):
                chunk = indexed[start : start + self._batch_size]
                batch = [
                    {"ciphertext": self._to_transit(w), **self._context_field(key_name, ctx)} for _, (w, ctx) in chunk
                ]
                for (index, _), result in zip(chunk, self._batch(f"rewrap/{key_name}", batch), strict=True):
                    if result.get("error"):
                        raise self._batch_item_error(index, str(result["error"]), f"rewrap/{key_name}")
                    results[index] = self._to_wrapped(key_name, result.get("ciphertext"))
        return [wrapped for wrapped in results if wrapped is not None]

    def _batch(self, path: str, batch: list[dict[str, str]]) -> list[dict[str, Any]]:
        """POST a batch_input; per-item errors come back in the items, not as one failed call.

        `partial_failure_response_code=200` asks for that (Vault >= 1.14, OpenBao); a server that ignores
        it answers 400 with the items in the body, which `_request(batch=True)` hands back too.
        """
        payload: dict[str, Any] = {"batch_input": batch, "partial_failure_response_code": 200}
        data = self._request("POST", path, payload, batch=True).get("data", {})
        results = data.get("batch_results") if isinstance(data, dict) else None
        if not isinstance(results, list) or len(results) != len(batch):
            raise KMSUnavailable("Transit returned a batch of the wrong size", retry_after_s=self._retry_after_s)
        return [r if isinstance(r, dict) else {"error": "malformed batch item"} for r in results]


class _ItemError(Exception):
    """A per-item error string from a batch response, run through the same mapping as a call error."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.errors = [message]


def _group_by_key(
    items: Sequence[tuple[WrappedKey, bytes]],
) -> dict[str, list[tuple[int, tuple[WrappedKey, bytes]]]]:
    groups: dict[str, list[tuple[int, tuple[WrappedKey, bytes]]]] = {}
    for index, item in enumerate(items):
        groups.setdefault(item[0].key_name, []).append((index, item))
    return groups
