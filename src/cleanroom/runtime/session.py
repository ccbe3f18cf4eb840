"""One request's lifecycle, DESIGN §4 steps 3-5: open, audit, decrypt into a SecureBuffer, run, seal, zero.

Reading `Runtime.handle` top to bottom shows where plaintext begins (`decrypt_payload_into`) and where it
ends (the `finally` that zeroes every tensor and closes every buffer of the request).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from cleanroom.crypto.sealed import OpenedRequestKey, RequestMetadata, open_request_key, parse_request
from cleanroom.errors import CleanroomError, ContextMismatch, InvalidPayload
from cleanroom.keys.keyring import Keyring
from cleanroom.keys.registry import Registry
from cleanroom.memory.secure_buffer import SecureAllocator, SecureBuffer
from cleanroom.runtime.models import Model, ModelRegistry, RequestScope
from cleanroom.runtime.replay import ReplayCache
from cleanroom.scrubbers.base import Scrubber, ScrubGate, ScrubPolicy
from cleanroom.tenants import Principal

log = logging.getLogger("cleanroom.runtime")


class AuditSink(Protocol):
    """Where decryption records go; `record` returns only once the record is durable, or raises
    `AuditUnavailable` (the request then fails closed)."""

    def record(self, event: Mapping[str, Any]) -> None: ...


class TenantSwitchHook(Protocol):
    def __call__(self, previous_tenant: str | None, next_tenant: str) -> None: ...


@dataclass(frozen=True)
class CallContext:
    """What the transport knows about a call: who, which model (or path), from where."""

    principal: Principal
    model: str
    path: str = ""
    source: str = ""


def zero_scope(scope: RequestScope) -> None:
    """Zero every tensor and close every buffer the request produced (invariant 1)."""
    # Tensors made under inference mode refuse in-place updates outside it; inside it every tensor accepts.
    with torch.inference_mode():
        for tensor in scope.tensors:
            if tensor.numel():
                tensor.zero_()
    scope.tensors.clear()
    for buffer in scope.buffers:
        buffer.close()
    scope.buffers.clear()


@dataclass
class OpenedRequest:
    """A request between decryption and sealing: its plaintext sits in `payload` (a SecureBuffer)."""

    metadata: RequestMetadata
    key_id: str
    payload: SecureBuffer
    scope: RequestScope
    _opened: OpenedRequestKey

    def seal(self, answer: bytes | memoryview) -> bytearray:
        """Seal the answer to the client straight from `answer`'s memory."""
        return self._opened.seal_response(answer)


class RequestOpener:
    """DESIGN §4 step 3 for any transport (server routes, ASGI middleware): from sealed bytes to a
    SecureBuffer of plaintext, with every check and the audit record before the first plaintext byte."""

    def __init__(self, *, registry: Registry, keyring: Keyring, replay: ReplayCache, allocator: SecureAllocator,
                 audit: AuditSink, scrubber: Scrubber | None = None) -> None:
        self.registry, self.keyring, self.replay = registry, keyring, replay
        self.allocator, self.audit, self.scrubber = allocator, audit, scrubber

    @contextmanager
    def open(self, call: CallContext, body: bytes | memoryview) -> Iterator[OpenedRequest]:
        """Yield the opened request; on exit every buffer and tensor of its scope is zeroed."""
        parsed = parse_request(body)
        tenant = self.registry.tenant(call.principal.tenant_id)
        private_key = self.keyring.hpke_private_key(tenant, parsed.key_id)
        with open_request_key(parsed, private_key) as opened:
            meta = opened.metadata
            if meta.tenant_id != call.principal.tenant_id:
                raise ContextMismatch("the request was sealed for another tenant than the API key's")
            if meta.model != call.model or meta.path != call.path:
                raise ContextMismatch("the request was sealed for another model or path than the one called")
            self.replay.check_and_remember(meta.tenant_id, meta.request_id, meta.ts)
            # Invariant 5: the decryption is on record before any plaintext exists.
            self.audit.record({
                "event": "decrypt.request_key", "tenant_id": meta.tenant_id, "key_id": parsed.key_id,
                "purpose": "request", "request_id": meta.request_id.hex(), "principal":
                call.principal.credential_id, "source": call.source, "byte_count": parsed.payload_size_bytes,
                "model": call.model or call.path,
            })
            scope = RequestScope(self.allocator)
            try:
                payload = scope.new_buffer(parsed.payload_size_bytes)
                opened.decrypt_payload_into(payload.view())
                yield OpenedRequest(metadata=meta, key_id=parsed.key_id, payload=payload, scope=scope,
                                    _opened=opened)
            finally:
                self.end_request(scope)

    def end_request(self, scope: RequestScope) -> None:
        """Zero and verify everything the request touched (the scrubber), then release its buffers."""
        if self.scrubber is None:
            zero_scope(scope)
            return
        try:
            self.scrubber.zero_request(scope.tensors, [b.view() for b in scope.buffers if not b.closed])
        finally:
            zero_scope(scope)


class Runtime:
    """Runs sealed requests against models. Thread-safe; one per server, handed to the transport."""

    def __init__(self, *, opener: RequestOpener, models: ModelRegistry, policy: ScrubPolicy | None = None,
                 on_tenant_switch: TenantSwitchHook | None = None) -> None:
        self.opener, self.models = opener, models
        self.on_tenant_switch = on_tenant_switch
        # The GPU scrubber's lock also guards its allocator bookkeeping: requests and scrubs share it.
        device_lock = getattr(opener.scrubber, "lock", None)
        self._device_lock = device_lock if device_lock is not None else threading.RLock()
        self.gate = ScrubGate(policy or ScrubPolicy())
        self.current_tenant: str | None = None

    def handle(self, call: CallContext, body: bytes | memoryview) -> bytearray:
        """Open a sealed request, run its model, return the sealed response. Raises CleanroomError."""
        model = self.models.get(call.model)
        with self.opener.open(call, body) as request, self._device_lock:
            self._switch_to(request.metadata.tenant_id)
            try:
                answer = run_model(model, request.payload, request.scope)
                try:
                    return request.seal(answer)
                finally:
                    del answer
            finally:
                self.gate.ran(request.metadata.tenant_id)

    def _switch_to(self, tenant_id: str) -> None:
        """Before another tenant's work runs on the device: the between-tenant scrub (DESIGN §4 step 5)."""
        if self.gate.before(tenant_id) and self.opener.scrubber is not None:
            self.opener.scrubber.between_tenant_scrub()
            self.gate.scrubbed()
        if self.current_tenant != tenant_id:
            if self.on_tenant_switch is not None:
                self.on_tenant_switch(self.current_tenant, tenant_id)
            self.current_tenant = tenant_id


@contextmanager
def model_errors(model: Model) -> Iterator[None]:
    """An exception from model code means it could not take this input: 422, not 500.

    The original exception is dropped (not chained): its traceback holds frames whose locals reference
    the plaintext, and its message may quote it.
    """
    try:
        yield
    except CleanroomError:
        raise
    except Exception as exc:
        kind = type(exc).__name__
        del exc
        log.warning("model %s raised %s on a request", model.name, kind)
        raise InvalidPayload(f"model {model.name!r} could not process this input ({kind})",
                             code="model_rejected_input") from None


def run_model(model: Model, payload: SecureBuffer, scope: RequestScope) -> memoryview:
    with model_errors(model):
        return model.run(payload, scope)


def run_model_batch(model: Model, requests: Sequence[OpenedRequest]) -> list[memoryview | BaseException]:
    """One forward pass over several requests of one tenant; the model returns one answer or one exception
    per request (a malformed request fails alone)."""
    run_batch = getattr(model, "run_batch")  # noqa: B009 - optional capability, checked by the caller
    with model_errors(model):
        answers: list[memoryview | BaseException] = run_batch([r.payload for r in requests],
                                                              [r.scope for r in requests])
        return answers


def describe_error(exc: BaseException) -> str:
    return exc.code if isinstance(exc, CleanroomError) else type(exc).__name__
