"""One request's lifecycle, DESIGN §4 steps 3-5: open, audit, decrypt into a SecureBuffer, run, seal, zero.

Reading `Runtime.handle` top to bottom shows where plaintext begins (`RequestOpener.open`, which decrypts
into a SecureBuffer) and where it ends (leaving that block zeroes every tensor and closes every buffer of
the request). This module holds the per-server `Runtime` (device lock, between-tenant scrub) and is the
public import path for the session's parts, each in a module with one job:

- `session_open`: step 3, from sealed bytes to a SecureBuffer (`RequestOpener`, `OpenedRequest`,
  `CallContext`), with the checks and the decryption record before the first plaintext byte;
- `session_audit`: the record's durability ticket (`AuditSink`, `record_ahead`, `record_many_ahead`);
- `session_model`: step 4's model call and what its errors may carry out (`run_model`, `ModelErrors`);
- `session_zeroing`: step 5, zero and release the request's tensors and buffers (`zero_scope`).

Audit order (invariant 5): the decryption record is written to the log before any plaintext exists; with
`write_ahead=True` its fdatasync runs while the request decrypts and computes, and nothing leaves before it
has succeeded: `OpenedRequest.seal` waits for it (and zeroes the sealed answer if it failed), and leaving
`RequestOpener.open` waits for it too, so no answer and no error built after the decryption is released
before the record is durable.
"""

from __future__ import annotations

import threading
from typing import Protocol

from cleanroom.runtime.models import ModelRegistry
from cleanroom.runtime.session_audit import (
    ALREADY_DURABLE,
    AllDurable,
    AlreadyDurable,
    AuditSink,
    DurabilityTicket,
    record_ahead,
    record_many_ahead,
)
from cleanroom.runtime.session_model import (
    MAX_MODEL_MESSAGE_CHARS,
    ModelErrors,
    clear_exception_frames,
    describe_error,
    public_model_message,
    run_model,
    run_model_batch,
    strip_exception,
)
from cleanroom.runtime.session_open import (
    MODEL_ROUTE,
    CallContext,
    OpenedRequest,
    RequestOpener,
    sealed_for_this_call,
)
from cleanroom.runtime.session_zeroing import release_scope, verified_zero, zero_scope, zero_tensor_memory
from cleanroom.scrubbers.base import ScrubGate, ScrubPolicy

__all__ = [
    "ALREADY_DURABLE",
    "MAX_MODEL_MESSAGE_CHARS",
    "MODEL_ROUTE",
    "AllDurable",
    "AlreadyDurable",
    "AuditSink",
    "CallContext",
    "DurabilityTicket",
    "ModelErrors",
    "OpenedRequest",
    "RequestOpener",
    "Runtime",
    "TenantSwitchHook",
    "clear_exception_frames",
    "describe_error",
    "public_model_message",
    "record_ahead",
    "record_many_ahead",
    "release_scope",
    "run_model",
    "run_model_batch",
    "sealed_for_this_call",
    "strip_exception",
    "verified_zero",
    "zero_scope",
    "zero_tensor_memory",
]


class TenantSwitchHook(Protocol):
    """Told when the device passes from one tenant's work to another's (after any between-tenant scrub)."""

    def __call__(self, previous_tenant: str | None, next_tenant: str) -> None: ...


class Runtime:
    """Runs sealed requests against models. Thread-safe; one per server, handed to the transport."""

    def __init__(
        self,
        *,
        opener: RequestOpener,
        models: ModelRegistry,
        policy: ScrubPolicy | None = None,
        on_tenant_switch: TenantSwitchHook | None = None,
    ) -> None:
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
        with self.opener.open(call, body, write_ahead=True) as request, self._device_lock:
            request.start_sync()  # the record's fdatasync runs while the model does; `seal` waits for it
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
