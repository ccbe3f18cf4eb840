"""The keyring: tenant keys and tenant HPKE key pairs, unwrapped on demand and cached briefly.

Hierarchy (DESIGN §2.6): master key (in the KMS) wraps each tenant key; the tenant key encrypts the
tenant's HPKE private key; a request's content key is sealed to the HPKE public key. Unwrapped private keys
sit in a bounded cache for `ttl_s` seconds at most (a revoked tenant or master key therefore stops working
within one TTL even without a purge, and at once with one).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cleanroom.crypto.aead import NONCE_BYTES, TAG_BYTES, zero_buffer
from cleanroom.errors import CleanroomError, DecryptionFailed, KeyError_, KMSUnavailable, SystemSealed, TenantRevoked
from cleanroom.keys.backoff import FailFast
from cleanroom.keys.customer_kms import (
    ByokSpec,
    CustomerKMSResolver,
    CustomerKMSUnavailable,
    customer_error,
    describe_layer,
)
from cleanroom.keys.kms import KMS, WrappedKey
from cleanroom.keys.registry import Document, Registry, new_id

MASTER_KEY_NAME = "cleanroom-master"
OWN_KMS = ""  # the FailFast key of our own KMS (customer KMSs are keyed by tenant id)
P384_SCALAR_BYTES = 48


def tenant_key_context(tenant_id: str, version: int) -> bytes:
    return b"cleanroom/tenant-key/v1\x00" + tenant_id.encode() + b"\x00" + str(version).encode()


def hpke_private_aad(tenant_id: str, key_id: str) -> bytes:
    return b"cleanroom/hpke-private-key/v1\x00" + tenant_id.encode() + b"\x00" + key_id.encode()


def pepper_context() -> bytes:
    return b"cleanroom/api-key-pepper/v1"


def encode_public_key(public_key: ec.EllipticCurvePublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return base64.b64encode(raw).decode("ascii")


def decode_public_key(encoded: str) -> ec.EllipticCurvePublicKey:
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP384R1(), base64.b64decode(encoded))
    except ValueError as exc:
        raise KeyError_(f"malformed tenant public key: {exc}", code="invalid_public_key") from None


# Registry key recording a system-scope revocation for every process on the data dir.
SYSTEM_SEALED_META = "system_sealed"


@dataclass
class _CacheEntry:
    expires_at: float
    value: ec.EllipticCurvePrivateKey


class Keyring:
    """Creates tenant keys and hands out unwrapped HPKE private keys through a short-lived cache."""

    def __init__(
        self,
        registry: Registry,
        kms: KMS,
        *,
        master_key_name: str = MASTER_KEY_NAME,
        ttl_s: float = 30.0,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry, self.kms, self.master_key_name = registry, kms, master_key_name
        self.ttl_s, self.max_entries, self._clock = ttl_s, max_entries, clock
        self._cache: OrderedDict[tuple[str, str], _CacheEntry] = OrderedDict()
        self._mutex = threading.Lock()
        self.kms_calls = 0
        self._sealed_here = False
        self.audit: Any = None  # an AuditSink; set by the server so every key unwrap is on record first
        self.customer_kms = CustomerKMSResolver(kms, master_key_name)  # bring-your-own-key layers
        self.kms_fail_fast = FailFast(clock=clock)  # keys/backoff.py: a hanging KMS must not hold the devices

    @property
    def sealed(self) -> bool:
        """System-scope revocation is in force: sealed in this process, or recorded in the registry by
        whichever process ran `keys revoke --system` (another replica or worker on the data dir, or the CLI
        beside them). The registry is re-read when its file changed (one stat), so every process refuses on
        its very next request, whatever its KMS can tell it and however long its cached keys would live."""
        return self._sealed_here or bool(self.registry.meta(SYSTEM_SEALED_META))

    def seal(self) -> None:
        """System-scope revocation in this process: purge every cached key, refuse every unwrap."""
        self._sealed_here = True
        self.purge()

    def unseal(self) -> None:
        self._sealed_here = False

    # --- provisioning -----------------------------------------------------------------------------
    def ensure_master_key(self) -> None:
        self.kms.create_key(self.master_key_name)

    def new_tenant_keys(
        self, tenant_id: str, *, byok_key: ByokSpec | None = None
    ) -> tuple[dict[str, object], list[dict[str, object]], str]:
        """Tenant key (wrapped by the master key) and a first HPKE key pair (encrypted by the tenant key)."""
        tenant_key = bytearray(os.urandom(32))
        try:
            stored = self.wrap_tenant_key(tenant_id, tenant_key, 1, byok_key)
            hpke_record = self.new_hpke_record(tenant_id, tenant_key, tenant_key_version=1)
        finally:
            zero_buffer(tenant_key)
        tenant_keys = {
            "latest_version": 1,
            "min_version": 1,
            "versions": {"1": stored},
            "created": {"1": time.time()},
            "byok_key": byok_key,
        }
        return tenant_keys, [hpke_record], str(hpke_record["key_id"])

    # --- the tenant key, with an optional customer layer (bring your own key) -------------------------
    def wrap_tenant_key(
        self, tenant_id: str, tenant_key: bytearray, version: int, byok_key: ByokSpec | None
    ) -> dict[str, Any]:
        """The stored form of a tenant key: wrapped by the master key, and first by the customer's own
        KMS key when the tenant brought one (so neither key alone opens it, and the customer can revoke us).
        `byok_key`: a key name in our KMS, or a spec of the customer's own KMS (keys/customer_kms.py)."""
        context = tenant_key_context(tenant_id, version)
        if not byok_key:
            return self.kms.wrap(self.master_key_name, tenant_key, context).to_json()
        try:
            customer, key_name = self.customer_kms.layer(tenant_id, byok_key)
            inner = customer.wrap(key_name, tenant_key, context)
        except CleanroomError as exc:
            raise customer_error(exc, tenant_id) from None
        return self.kms.wrap(self.master_key_name, inner.dumps().encode("utf-8"), context).to_json()

    def unwrap_tenant_key(self, tenant: Document, version: int) -> bytearray:
        """The tenant key of `version`; the caller zeroes it."""
        tenant_id = tenant["tenant_id"]
        keys = tenant["tenant_keys"]
        if version < int(keys["min_version"]):
            raise KeyError_("the tenant key version that protects this key pair is retired", code="key_version_retired")
        context = tenant_key_context(tenant_id, version)
        self.kms_fail_fast.check(OWN_KMS)  # our KMS failed moments ago: 503 now, not after its timeout
        if self.audit is not None:  # invariant 5: on record before the key exists in memory
            event = {
                "event": "decrypt.tenant_key",
                "tenant_id": tenant_id,
                "key_version": version,
                "key_id": self.master_key_name,
                "purpose": "tenant-key",
            }
            if keys.get("byok_key"):
                event["customer_key"] = describe_layer(keys["byok_key"])
            self.audit.record(event)
        self.kms_calls += 1
        try:
            outer = self.kms.unwrap(WrappedKey.from_json(keys["versions"][str(version)]), context)
        except KMSUnavailable as exc:
            self.kms_fail_fast.mark_down(OWN_KMS, exc)
            raise
        byok_key = keys.get("byok_key")
        if not byok_key:
            return outer
        try:
            inner = WrappedKey.from_json(json.loads(outer.decode("utf-8")))
        except (ValueError, UnicodeDecodeError):
            raise DecryptionFailed("tenant key record is corrupt", code="key_corrupt") from None
        finally:
            zero_buffer(outer)
        self.kms_calls += 1
        try:
            self.customer_kms.check_available(tenant_id)
            customer, _ = self.customer_kms.layer(tenant_id, byok_key)
            return customer.unwrap(inner, context)
        except CustomerKMSUnavailable:
            raise  # still inside the back-off window of an earlier failure
        except CleanroomError as exc:
            error = customer_error(exc, tenant["name"])
            if isinstance(error, CustomerKMSUnavailable):
                self.customer_kms.mark_down(tenant_id, error)
            raise error from None

    def new_hpke_record(self, tenant_id: str, tenant_key: bytearray, *, tenant_key_version: int) -> dict[str, object]:
        key_id = new_id("hk")
        private_key = ec.generate_private_key(ec.SECP384R1())
        scalar = bytearray(private_key.private_numbers().private_value.to_bytes(P384_SCALAR_BYTES, "big"))
        nonce = os.urandom(NONCE_BYTES)
        try:
            sealed = AESGCM(tenant_key).encrypt(nonce, bytes(scalar), hpke_private_aad(tenant_id, key_id))
        finally:
            zero_buffer(scalar)
        return {
            "key_id": key_id,
            "public_key": encode_public_key(private_key.public_key()),
            "encrypted_private_key": base64.b64encode(nonce + sealed).decode("ascii"),
            "tenant_key_version": tenant_key_version,
            "created_at": time.time(),
            "expires_at": None,
        }

    def ensure_pepper(self) -> bytearray:
        """The HMAC key for API-key hashes: created once, stored wrapped, unwrapped per process."""
        wrapped_doc = self.registry.meta("pepper")
        if wrapped_doc is None:
            pepper, wrapped = self.kms.generate_data_key(self.master_key_name, pepper_context())

            def store(doc: Document) -> None:
                doc.setdefault("pepper", wrapped.to_json())

            self.registry.update(store)
            wrapped_doc = self.registry.meta("pepper")
            if wrapped_doc != wrapped.to_json():  # another process won the race: use theirs
                zero_buffer(pepper)
                return self.kms.unwrap(WrappedKey.from_json(wrapped_doc), pepper_context())
            return pepper
        self.kms_calls += 1
        return self.kms.unwrap(WrappedKey.from_json(wrapped_doc), pepper_context())

    # --- use --------------------------------------------------------------------------------------
    def hpke_private_key(self, tenant: Document, key_id: str) -> ec.EllipticCurvePrivateKey:
        """The tenant's HPKE private key `key_id`, from the cache or unwrapped through the KMS.

        Every check that a revocation, a retirement or an expiry can change runs against `tenant` (the
        caller's fresh registry record) and the KMS's own state *before* the cache is consulted: the cache
        saves the KMS round trip, never a policy decision. Otherwise a key cached before `keys revoke
        --system`, `keys retire` or the end of an HPKE overlap, done by another process on the data dir (the
        CLI without a server, next to the ASGI middleware), kept opening requests for up to one TTL."""
        tenant_id = tenant["tenant_id"]
        if self.sealed:
            self.purge()  # sealed by another process: drop what this one still holds
            raise SystemSealed(
                "the master key is revoked; every request is refused until `cleanroom keys restore --system`",
                retry_after_s=60,
            )
        if tenant.get("revoked"):
            raise TenantRevoked(f"tenant {tenant['name']!r} is revoked; every decryption for it is refused")
        record = self._usable_hpke_record(tenant, key_id)
        cache_key = (tenant_id, key_id)
        now = self._clock()
        with self._mutex:
            entry = self._cache.get(cache_key)
            if entry is not None and entry.expires_at > now:
                self._cache.move_to_end(cache_key)
                return entry.value
            self._cache.pop(cache_key, None)
        private_key = self._unwrap_hpke_key(tenant, record)
        if self.ttl_s > 0:
            with self._mutex:
                self._cache[cache_key] = _CacheEntry(now + self.ttl_s, private_key)
                while len(self._cache) > self.max_entries:
                    self._cache.popitem(last=False)
        return private_key

    def _usable_hpke_record(self, tenant: Document, key_id: str) -> Document:
        """The HPKE key record `key_id` of `tenant`, if policy lets it open requests now (cached or not)."""
        record: Document | None = next((k for k in tenant.get("hpke_keys", []) if k["key_id"] == key_id), None)
        if record is None:
            raise DecryptionFailed("the request is sealed to a key this tenant does not have", code="unknown_key_id")
        expires_at = record.get("expires_at")
        if expires_at is not None and expires_at < time.time():
            raise DecryptionFailed(
                "the request is sealed to an expired tenant key; fetch the current public key", code="key_expired"
            )
        keys = tenant["tenant_keys"]
        version = int(record["tenant_key_version"])
        if version < int(keys["min_version"]):
            raise KeyError_("the tenant key version that protects this key pair is retired", code="key_version_retired")
        # The master key's state, where the backend can read it without a round trip (LocalKMS: a stat of
        # its file, which `keys revoke --system` from any process changes). Remote backends have no such
        # check; there a cached key lives at most one TTL after a disable done outside cleanroom.
        check_usable = getattr(self.kms, "check_usable", None)
        wrapped = keys["versions"].get(str(version))
        if check_usable is not None and isinstance(wrapped, dict):
            check_usable(str(wrapped.get("key_name", self.master_key_name)), int(wrapped.get("version", 0)))
        return record

    def _unwrap_hpke_key(self, tenant: Document, record: Document) -> ec.EllipticCurvePrivateKey:
        tenant_id, key_id = tenant["tenant_id"], str(record["key_id"])
        tenant_key = self.unwrap_tenant_key(tenant, int(record["tenant_key_version"]))
        blob = base64.b64decode(record["encrypted_private_key"])
        scalar = bytearray(len(blob) - NONCE_BYTES - TAG_BYTES)
        try:
            AESGCM(tenant_key).decrypt_into(
                blob[:NONCE_BYTES], blob[NONCE_BYTES:], hpke_private_aad(tenant_id, key_id), scalar
            )
            return ec.derive_private_key(int.from_bytes(scalar, "big"), ec.SECP384R1())
        except InvalidTag:
            raise DecryptionFailed("tenant private key failed to authenticate", code="key_corrupt") from None
        finally:
            zero_buffer(scalar)
            zero_buffer(tenant_key)

    def purge(self, tenant_id: str | None = None) -> int:
        """Drop cached keys (all, or one tenant's); returns how many were dropped."""
        with self._mutex:
            if tenant_id is None:
                dropped = len(self._cache)
                self._cache.clear()
                return dropped
            doomed = [k for k in self._cache if k[0] == tenant_id]
            for k in doomed:
                del self._cache[k]
            return len(doomed)
