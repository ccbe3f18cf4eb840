"""Bring your own key in the customer's own KMS: a tenant's Vault/OpenBao Transit key on *their* server.

The tenant key is wrapped twice: first by the customer's key (in the customer's KMS), then by our master key.
Neither layer alone opens it, we never see the customer's raw key, and the customer cuts us off by revoking
the token they issued us or by disabling/deleting their key — effective once our cached unwrapped keys expire
(the key cache TTL), or at once after `cleanroom keys revoke --tenant` purges them.

What is stored (registry, `tenant_keys.byok_key`) for such a tenant is a spec, never a usable credential:
`{"kind": "vault", "addr", "mount", "key", "ca_cert", "token": <WrappedKey JSON under our master key>}`.
The token is wrapped with a context bound to the tenant id, so it cannot be moved to another tenant's record.
The older form — a plain string naming a key in *our* KMS backend — still works (`layer` handles both).

Errors from the customer's side never become a 500: a refusal (token revoked, key disabled or deleted) is the
tenant's decision → 403 `customer_key_unavailable`; an unreachable or sealed customer server → 503
`customer_kms_unavailable` with `Retry-After`, and service resumes by itself when it answers again.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from cleanroom.crypto.aead import zero_buffer
from cleanroom.errors import (
    BadRequest,
    CleanroomError,
    ConfigurationError,
    Forbidden,
    KeyError_,
    KMSPermissionDenied,
    KMSUnavailable,
    ServiceUnavailable,
    SystemSealed,
)
from cleanroom.keys.backoff import FailFast
from cleanroom.keys.kms import KMS, WrappedKey

ByokSpec = str | dict[str, Any]  # a key name in our own KMS, or a customer-KMS spec (module docstring)
KmsFactory = Callable[..., KMS]
SUPPORTED_KINDS = ("vault",)


class CustomerKeyUnavailable(Forbidden):
    """A bring-your-own-key tenant's key refuses: that tenant is cut off, nobody else is."""

    code = "customer_key_unavailable"


class CustomerKMSUnavailable(ServiceUnavailable):
    """The tenant's own KMS does not answer: retry later; other tenants are unaffected."""

    code = "customer_kms_unavailable"


def credential_context(tenant_id: str) -> bytes:
    return b"cleanroom/byok-credential/v1\x00" + tenant_id.encode()


def describe_layer(byok: ByokSpec | None) -> str:
    """What logs, audit records and status output may say about a tenant's customer key (never the token)."""
    if not byok:
        return ""
    if isinstance(byok, str):
        return byok
    host = urlsplit(str(byok.get("addr", ""))).netloc
    return f"{byok.get('kind', '?')}://{host}/{byok.get('mount', '')}/{byok.get('key', '')}"


def public_view(byok: ByokSpec | None) -> ByokSpec | None:
    """The spec without its wrapped credential, for API answers."""
    if isinstance(byok, dict):
        return {k: v for k, v in byok.items() if k != "token"}
    return byok


def customer_error(exc: CleanroomError, tenant_name: str) -> CleanroomError:
    """Map an error from the customer's layer to what the tenant's requests get."""
    if isinstance(exc, KMSUnavailable):
        return CustomerKMSUnavailable(
            f"tenant {tenant_name!r} keeps its key in its own KMS, which does not answer ({exc.message})",
            retry_after_s=exc.retry_after_s or 5.0,
        )
    if isinstance(exc, (SystemSealed, KeyError_, KMSPermissionDenied)):
        return CustomerKeyUnavailable(
            f"tenant {tenant_name!r} brought its own key and it refuses to unwrap ({exc.code}); "
            "the tenant has revoked our access or disabled the key"
        )
    return exc


def _default_factory(**kwargs: Any) -> KMS:
    from cleanroom.keys.vault import VaultTransitKMS

    return VaultTransitKMS(**kwargs)


class CustomerKMSResolver:
    """Builds (lazily) and caches one client per tenant for the KMS that holds the tenant's own key.

    Clients are keyed by tenant id and a fingerprint of the stored spec, so a changed spec (new server,
    new token) takes effect on the next unwrap and the old client is closed.
    """

    def __init__(
        self,
        kms: KMS,
        master_key_name: str,
        *,
        factory: KmsFactory = _default_factory,
        timeout_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kms, self.master_key_name = kms, master_key_name
        self._factory, self._timeout_s, self._clock = factory, timeout_s, clock
        self._clients: dict[str, tuple[str, KMS]] = {}
        self._fail_fast = FailFast(clock=clock)  # per tenant: one customer's outage is not another's
        self._mutex = threading.Lock()

    # --- failing fast while a customer's KMS is away (keys/backoff.py says why) -------------------
    def check_available(self, tenant_id: str) -> None:
        self._fail_fast.check(tenant_id)

    def mark_down(self, tenant_id: str, error: CustomerKMSUnavailable) -> None:
        self._fail_fast.mark_down(tenant_id, error)

    # --- configuring ----------------------------------------------------------------------------
    def new_spec(
        self,
        tenant_id: str,
        *,
        addr: str,
        key: str,
        token: str,
        mount: str = "transit",
        ca_cert: str | None = None,
        kind: str = "vault",
    ) -> dict[str, Any]:
        """A stored spec; the token goes in wrapped by our master key (bound to the tenant)."""
        if kind not in SUPPORTED_KINDS:
            raise BadRequest(
                f"unsupported customer KMS kind {kind!r} (supported: {', '.join(SUPPORTED_KINDS)})",
                code="invalid_byok_spec",
            )
        if not token:
            raise BadRequest("the customer KMS token is empty", code="invalid_byok_spec")
        if not key:
            raise BadRequest("name the customer's key", code="invalid_byok_spec")
        secret = bytearray(token.encode("utf-8"))
        try:
            wrapped = self.kms.wrap(self.master_key_name, secret, credential_context(tenant_id))
        finally:
            zero_buffer(secret)
        spec: dict[str, Any] = {
            "kind": kind,
            "addr": addr,
            "mount": mount.strip("/") or "transit",
            "key": key,
            "token": wrapped.to_json(),
        }
        if ca_cert:
            spec["ca_cert"] = ca_cert
        return spec

    def probe(self, tenant_id: str, spec: ByokSpec, tenant_name: str) -> None:
        """Wrap and unwrap a random value with the customer's key: configure-time proof that it works.

        Any failure is the operator's input being wrong (or the customer's server being away): a 400 naming
        it, before anything is stored."""
        sample = bytearray(os.urandom(32))
        context = b"cleanroom/byok-probe/v1\x00" + tenant_id.encode()
        back = bytearray()
        try:
            kms, key_name = self.layer(tenant_id, spec)
            back = kms.unwrap(kms.wrap(key_name, sample, context), context)
            if back != sample:
                raise KeyError_("the customer key did not give back what it wrapped")
        except CleanroomError as exc:
            self.drop(tenant_id)
            raise BadRequest(
                f"the customer key for tenant {tenant_name!r} ({describe_layer(spec)}) is not usable: {exc.message}",
                code="invalid_byok_key",
            ) from None
        finally:
            zero_buffer(sample)
            zero_buffer(back)

    # --- use ------------------------------------------------------------------------------------
    def layer(self, tenant_id: str, spec: ByokSpec) -> tuple[KMS, str]:
        """(KMS client, key name) of the tenant's customer layer."""
        if isinstance(spec, str):
            return self.kms, spec
        fingerprint = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
        with self._mutex:
            cached = self._clients.get(tenant_id)
            if cached is not None and cached[0] == fingerprint:
                return cached[1], str(spec["key"])
        client = self._build(tenant_id, spec)
        with self._mutex:
            old = self._clients.get(tenant_id)
            self._clients[tenant_id] = (fingerprint, client)
        if old is not None and old[1] is not client:
            old[1].close()
        return client, str(spec["key"])

    def _build(self, tenant_id: str, spec: dict[str, Any]) -> KMS:
        if spec.get("kind") not in SUPPORTED_KINDS:
            raise ConfigurationError(f"tenant {tenant_id} has an unsupported customer KMS kind {spec.get('kind')!r}")
        secret = self.kms.unwrap(WrappedKey.from_json(spec["token"]), credential_context(tenant_id))
        try:
            token = secret.decode("utf-8")
        finally:
            zero_buffer(secret)
        try:
            return self._factory(
                addr=spec["addr"],
                token=token,
                mount=spec.get("mount", "transit"),
                verify=spec.get("ca_cert") or True,
                timeout_s=self._timeout_s,
            )
        except ConfigurationError as exc:
            raise BadRequest(exc.message, code="invalid_byok_spec") from None

    def drop(self, tenant_id: str | None = None) -> None:
        """Forget cached clients (one tenant's, or all): after a spec change, a tenant delete, a close."""
        with self._mutex:
            if tenant_id is None:
                doomed = list(self._clients.values())
                self._clients.clear()
            else:
                entry = self._clients.pop(tenant_id, None)
                doomed = [entry] if entry is not None else []
        self._fail_fast.clear(tenant_id)
        for _, client in doomed:
            client.close()


__all__ = [
    "ByokSpec",
    "CustomerKMSResolver",
    "CustomerKMSUnavailable",
    "CustomerKeyUnavailable",
    "credential_context",
    "customer_error",
    "describe_layer",
    "public_view",
]
