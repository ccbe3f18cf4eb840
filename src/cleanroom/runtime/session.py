"""One request's lifecycle, DESIGN §4 steps 3-5: open, audit, decrypt into a SecureBuffer, run, seal, zero.

Reading `Runtime.handle` top to bottom shows where plaintext begins (`decrypt_payload_into`) and where it
ends (the `finally` that zeroes every tensor and closes every buffer of the request).

Audit order (invariant 5): the decryption record is written to the log before any plaintext exists; with
`write_ahead=True` its fdatasync runs while the request decrypts and computes, and nothing leaves before it
has succeeded: `OpenedRequest.seal` waits for it (and zeroes the sealed answer if it failed), and leaving
`RequestOpener.open` waits for it too, so no answer and no error built after the decryption is released
before the record is durable.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from cleanroom.crypto.sealed import (
    OpenedRequestKey,
    ParsedRequest,
    RequestMetadata,
    open_request_key,
    parse_request,
)
from cleanroom.errors import AuditUnavailable, CleanroomError, ContextMismatch, InvalidPayload, SecureMemoryError
from cleanroom.keys.keyring import Keyring
from cleanroom.keys.registry import Registry
from cleanroom.memory.secure_buffer import SecureAllocator, SecureBuffer
from cleanroom.runtime.models import Model, ModelRegistry, RequestScope
from cleanroom.runtime.replay import ReplayCache
from cleanroom.scrubbers.base import Scrubber, ScrubGate, ScrubPolicy, ScrubReport, request_storages, storage_bytes
from cleanroom.scrubbers.logs import redact
from cleanroom.tenants import Principal, check_credential

log = logging.getLogger("cleanroom.runtime")


class AuditSink(Protocol):
    """Where decryption records go; `record` returns only once the record is durable, or raises
    `AuditUnavailable` (the request then fails closed).

    A sink may also offer `record_ahead(event) -> DurabilityTicket`: return once the record is written
    (it survives a kill of the process), with a ticket to wait for durability (`cleanroom.audit`'s
    `AuditLogSink` does). `record_ahead(sink, event)` below falls back to `record` for sinks without it.
    And `record_many_ahead(events) -> DurabilityTicket`: the same for a batch, written as one unit (one
    group commit); `record_many_ahead(sink, events)` below falls back to one `record_ahead` per event.
    """

    def record(self, event: Mapping[str, Any]) -> None: ...


class DurabilityTicket(Protocol):
    """A written audit record: `wait_durable()` returns once it is durable or raises `AuditUnavailable`
    (asking again gives the same answer); `start_sync()` starts making it durable without waiting."""

    def start_sync(self) -> None: ...

    def wait_durable(self) -> None: ...


class AlreadyDurable:
    """The ticket of a record that a synchronous `record` already made durable."""

    durable = True

    def start_sync(self) -> None:
        return None

    def wait_durable(self) -> None:
        return None


ALREADY_DURABLE = AlreadyDurable()


def record_ahead(sink: AuditSink, event: Mapping[str, Any]) -> DurabilityTicket:
    """Write `event` through the sink's `record_ahead` if it has one; else `record` it (durable at once)."""
    write_ahead = getattr(sink, "record_ahead", None)
    if write_ahead is None:
        sink.record(event)
        return ALREADY_DURABLE
    ticket: DurabilityTicket = write_ahead(event)
    return ticket


class AllDurable:
    """One ticket for several: durable once each of them is (a sink without `record_many_ahead`)."""

    def __init__(self, tickets: Sequence[DurabilityTicket]) -> None:
        self.tickets = tuple(tickets)

    @property
    def durable(self) -> bool:
        return all(getattr(ticket, "durable", False) for ticket in self.tickets)

    def start_sync(self) -> None:
        for ticket in self.tickets:
            ticket.start_sync()

    def wait_durable(self) -> None:
        for ticket in self.tickets:
            ticket.wait_durable()


def record_many_ahead(sink: AuditSink, events: Sequence[Mapping[str, Any]]) -> DurabilityTicket:
    """Write a batch's records through the sink's `record_many_ahead` (one unit, one ticket) if it has one;
    else one `record_ahead` per event. Raises (AuditUnavailable) if any of them could not be written."""
    write_many = getattr(sink, "record_many_ahead", None)
    if write_many is not None:
        ticket: DurabilityTicket = write_many(events)
        return ticket
    return AllDurable([record_ahead(sink, event) for event in events])


class TenantSwitchHook(Protocol):
    def __call__(self, previous_tenant: str | None, next_tenant: str) -> None: ...


@dataclass(frozen=True)
class CallContext:
    """What the transport knows about a call: who, which model (or path), from where."""

    principal: Principal
    model: str
    path: str = ""
    source: str = ""


# The model route of DESIGN §5; a request sealed to this path (`Client.call`) is bound to the model too.
MODEL_ROUTE = "/v1/models/{model}/infer"


def sealed_for_this_call(model: str, path: str, call: CallContext) -> bool:
    """The request's sealed binding names this call: the same model and path, or — for a model route —
    no model and that route's own path (`Client.call("/v1/models/echo/infer", ...)`, DESIGN §5's "sealed
    POST to any path"). Both name exactly one model, so neither opens anywhere else."""
    if model == call.model and path == call.path:
        return True
    return bool(call.model) and not call.path and not model and path == MODEL_ROUTE.format(model=call.model)


def zero_scope(scope: RequestScope) -> None:
    """Zero every tensor and close every buffer the request produced (invariant 1).

    Whole storages are zeroed, as the scrubber does, not `tensor.zero_()`: that raises on a quantized
    tensor (which left every buffer of the request open, plaintext in place, until a garbage collection)
    and only drops a sparse tensor's entries, its values keeping the plaintext. The buffers are closed
    (zeroed) whatever happens to the tensors; a tensor that still could not be zeroed fails the request.
    """
    failed = 0
    try:
        # Tensors made under inference mode refuse in-place updates outside it; inside it every one accepts.
        with torch.inference_mode():
            for tensor in scope.tensors:
                try:
                    zero_tensor_memory(tensor)
                except Exception:  # counted, and raised below once the buffers are closed
                    failed += 1
    finally:
        release_scope(scope)
    if failed:
        log.error("%d tensor(s) of a request could not be zeroed", failed)
        raise SecureMemoryError(f"{failed} tensor(s) of the request could not be zeroed")


def zero_tensor_memory(tensor: torch.Tensor) -> None:
    """Zero all memory behind `tensor`: its storage (a view's base too), `.grad`, sparse components, and
    the single buffer of a nested or quantized tensor."""
    try:
        storages = request_storages([tensor])
    except TypeError:  # nested, quantized: one plain storage underneath
        storages = [tensor.untyped_storage()]
    for storage in storages:
        if storage.nbytes():
            storage_bytes(storage).zero_()


def release_scope(scope: RequestScope) -> None:
    """Drop the request's tensors and close its buffers (`close` zeroes each buffer whatever happened);
    the tensors are not zeroed here: call it alone only once a scrub has zeroed and verified them."""
    scope.tensors.clear()
    for buffer in scope.buffers:
        buffer.close()
    scope.buffers.clear()


def verified_zero(report: ScrubReport | None) -> bool:
    """Whether a request scrub read back every byte it wrote and found them all zero. Then zeroing the
    same tensors again (`zero_scope`) only costs time: ~50-70 us of torch calls per minilm request."""
    return (
        report is not None
        and report.kind == "request"
        and report.nonzero_bytes == 0
        and report.bytes_verified == report.bytes_scrubbed
    )


@dataclass
class OpenedRequest:
    """A request between decryption and sealing: its plaintext sits in `payload` (a SecureBuffer).

    `durability` is the ticket of its decryption record; `seal` returns only once that record is durable.
    """

    metadata: RequestMetadata
    key_id: str
    payload: SecureBuffer
    scope: RequestScope
    _opened: OpenedRequestKey
    durability: DurabilityTicket = ALREADY_DURABLE
    _durability_answer: AuditUnavailable | bool | None = None  # None: not asked yet; True: durable

    def start_sync(self) -> None:
        """Start the record's fdatasync now (in the background) so it overlaps the model run."""
        self.durability.start_sync()

    def wait_durable(self) -> None:
        """Return once the decryption record is durable; raise AuditUnavailable (503) if it never will be."""
        answer = self._durability_answer
        if answer is None:
            try:
                self.durability.wait_durable()
            except AuditUnavailable as exc:
                self._durability_answer = exc
                raise
            self._durability_answer = True
            return
        if isinstance(answer, AuditUnavailable):
            raise answer

    def is_durable(self) -> bool:
        """Whether the decryption record is known durable now, without waiting (a ticket that cannot say
        answers False). True means `wait_durable` and `seal` return at once: no thread hop is needed."""
        answer = self._durability_answer
        if answer is not None:
            return answer is True
        return bool(getattr(self.durability, "durable", False))

    @property
    def durability_failure_seen(self) -> bool:
        """The caller has been told (by `wait_durable` or `seal`) that the record could not be made durable."""
        return isinstance(self._durability_answer, AuditUnavailable)

    def seal(self, answer: bytes | memoryview) -> bytearray:
        """Seal the answer to the client straight from `answer`'s memory, and return it only once the
        decryption record is durable (the fdatasync ran meanwhile). If it failed: AuditUnavailable (503),
        and the sealed answer is zeroed, never returned."""
        sealed = self._opened.seal_response(answer)
        try:
            self.wait_durable()
        except BaseException:
            sealed[:] = bytes(len(sealed))
            del sealed
            raise
        return sealed


class RequestOpener:
    """DESIGN §4 step 3 for any transport (server routes, ASGI middleware): from sealed bytes to a
    SecureBuffer of plaintext, with every check and the audit record before the first plaintext byte."""

    def __init__(
        self,
        *,
        registry: Registry,
        keyring: Keyring,
        replay: ReplayCache,
        allocator: SecureAllocator,
        audit: AuditSink,
        scrubber: Scrubber | None = None,
    ) -> None:
        self.registry, self.keyring, self.replay = registry, keyring, replay
        self.allocator, self.audit, self.scrubber = allocator, audit, scrubber

    @contextmanager
    def open(
        self, call: CallContext, body: bytes | memoryview, *, write_ahead: bool = False
    ) -> Iterator[OpenedRequest]:
        """Yield the opened request; on exit every buffer and tensor of its scope is zeroed.

        The decryption record is in the audit log before the payload is decrypted. `write_ahead=False`:
        it is also durable by then. `write_ahead=True`: it is written, and made durable before anything
        leaves: `OpenedRequest.seal` waits for it, and so does leaving this block, whatever ends it (an
        error from the model is an answer too); call `start_sync()` to overlap the fdatasync with work.
        """
        with ExitStack() as stack:
            parsed, opened, event = self._checked(call, body, stack)
            # Invariant 5: the decryption is on record before any plaintext exists (written to the log;
            # with write_ahead, durable before anything leaves).
            if write_ahead:
                ticket = record_ahead(self.audit, event)
            else:
                self.audit.record(event)
                ticket = ALREADY_DURABLE
            with self._decrypted(parsed, opened, ticket) as request:
                yield request

    @contextmanager
    def open_many(
        self, calls: Sequence[tuple[CallContext, bytes | memoryview]]
    ) -> Iterator[list[OpenedRequest | Exception]]:
        """`open(..., write_ahead=True)` for a batch, with one audit write for all of it: every request's
        checks, then the decryption records of those that passed, written as one unit (`record_many_ahead`:
        one group commit instead of one per request, docs/audit.md), then their decryptions.

        Yields, per call and in order, its OpenedRequest or the exception it failed with. A request that
        fails its checks or its decryption fails alone; if the records cannot be written, every request
        that passed its checks fails with that AuditUnavailable (503) and none is decrypted. Each record is
        in the log before its payload is decrypted, and leaving waits for durability as `open` does.
        """
        outcomes: list[OpenedRequest | Exception] = []
        with ExitStack() as stack:
            checked: list[tuple[int, ParsedRequest, OpenedRequestKey, dict[str, Any]]] = []
            for i, (call, body) in enumerate(calls):
                outcomes.append(RuntimeError("request not opened"))  # replaced below, whatever happens
                try:
                    checked.append((i, *self._checked(call, body, stack)))
                except Exception as exc:  # this request alone fails (bad tag, replay, ...)
                    outcomes[i] = exc
            if checked:
                try:
                    ticket = record_many_ahead(self.audit, [event for *_, event in checked])
                except Exception as exc:  # nothing of the batch is decrypted unrecorded: all fail closed
                    for i, *_ in checked:
                        outcomes[i] = exc
                    checked = []
            for i, parsed, opened, _ in checked:
                try:
                    outcomes[i] = stack.enter_context(self._decrypted(parsed, opened, ticket))
                except Exception as exc:
                    outcomes[i] = exc
            yield outcomes

    def _checked(
        self, call: CallContext, body: bytes | memoryview, stack: ExitStack
    ) -> tuple[ParsedRequest, OpenedRequestKey, dict[str, Any]]:
        """Parse the request, open its key (closed by `stack`; at once if a check fails), check it was sealed
        for this call, remember it against replay, and return the decryption record to write."""
        parsed = parse_request(body)
        tenant = self.registry.tenant(call.principal.tenant_id)
        # Checked at admission, and again here: a credential revoked while its request was queued stops it
        # before anything is decrypted, as a revoked tenant or master key does (the keyring below).
        check_credential(tenant, call.principal.credential_id)
        private_key = self.keyring.hpke_private_key(tenant, parsed.key_id)
        with ExitStack() as own:
            opened = own.enter_context(open_request_key(parsed, private_key))
            meta = opened.metadata
            if meta.tenant_id != call.principal.tenant_id:
                raise ContextMismatch("the request was sealed for another tenant than the API key's")
            if not sealed_for_this_call(meta.model, meta.path, call):
                raise ContextMismatch("the request was sealed for another model or path than the one called")
            self.replay.check_and_remember(meta.tenant_id, meta.request_id, meta.ts)
            event = {
                "event": "decrypt.request_key",
                "tenant_id": meta.tenant_id,
                "key_id": parsed.key_id,
                "purpose": "request",
                "request_id": meta.request_id.hex(),
                "principal": call.principal.credential_id,
                "source": call.source,
                "byte_count": parsed.payload_size_bytes,
                "model": call.model or call.path,
            }
            stack.enter_context(own.pop_all())
        return parsed, opened, event

    @contextmanager
    def _decrypted(
        self, parsed: ParsedRequest, opened: OpenedRequestKey, ticket: DurabilityTicket
    ) -> Iterator[OpenedRequest]:
        """Decrypt the payload (its record is already written) into a SecureBuffer; on exit, durable before
        leaving, then every buffer and tensor of the request zeroed."""
        scope = RequestScope(self.allocator)
        request: OpenedRequest | None = None
        try:
            payload = scope.new_buffer(parsed.payload_size_bytes)
            request = OpenedRequest(
                metadata=opened.metadata,
                key_id=parsed.key_id,
                payload=payload,
                scope=scope,
                _opened=opened,
                durability=ticket,
            )
            opened.decrypt_payload_into(payload.view())
            yield request
        finally:
            try:
                self._durable_before_leaving(request, ticket)
            finally:
                self.end_request(scope)

    @staticmethod
    def _durable_before_leaving(request: OpenedRequest | None, ticket: DurabilityTicket) -> None:
        """Whatever leaves `open` (a result, an error) leaves only once the record is durable. A failure the
        caller was already told about (it answered 503 for this request) is not raised twice."""
        if request is None:
            ticket.wait_durable()
        elif not request.durability_failure_seen:
            request.wait_durable()

    def end_request(self, scope: RequestScope) -> None:
        """Zero and verify everything the request touched (the scrubber), then release its buffers.

        A tensor layout the scrubber refuses (TypeError: nested, quantized) is zeroed by `zero_scope`,
        which handles them, instead of failing the request with a 500 that hid the model's real answer;
        anything else the scrubber raises (a quarantine) still fails it, after the same zeroing."""
        if self.scrubber is None:
            zero_scope(scope)
            return
        report: ScrubReport | None = None
        try:
            report = self.scrubber.zero_request(scope.tensors, [b.view() for b in scope.buffers if not b.closed])
        except TypeError as exc:
            log.warning("request scrub could not take a tensor (%s); the session zeroes the request", exc)
        finally:
            if verified_zero(report):
                release_scope(scope)
            else:  # the scrub raised or could not vouch for every byte: zero everything ourselves
                zero_scope(scope)


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


class ModelErrors:
    """An exception from model code means it could not take this input: 422, not 500.

    Use: ``with guard: return model.run(...)`` then ``raise guard.failure()`` after the block. The guard
    swallows the model's exception and the caller raises a clean one outside every exception handler, so
    nothing chains to the original: a decoder's error holds the whole input (`JSONDecodeError.doc`,
    `UnicodeDecodeError.object`), a traceback holds frames whose locals are plaintext, and Python sets
    `__context__` on any exception raised while another is handled (`raise ... from None` only hides it).
    Kept alive by a reference cycle, such a chain outlived the request until a garbage collection.
    A CleanroomError from model code (e.g. InvalidPayload) is kept, stripped of its traceback and chain,
    its message redacted and bounded (`public_model_message`).
    """

    def __init__(self, model: Model) -> None:
        self.model = model
        self.error: CleanroomError | None = None

    def __enter__(self) -> ModelErrors:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False  # no error, or KeyboardInterrupt/SystemExit: not ours to translate
        if isinstance(exc, CleanroomError):
            self.error = strip_exception(exc)
            self.error.message = public_model_message(exc.message)
            self.error.args = (self.error.message,)
        else:
            name = type(exc).__name__
            clear_exception_frames(exc)
            log.warning("model %s raised %s on a request", self.model.name, name)
            self.error = InvalidPayload(
                f"model {self.model.name!r} could not process this input ({name})", code="model_rejected_input"
            )
        return True

    def failure(self) -> CleanroomError:
        """The exception to raise after the `with` block (outside any handler, so it chains to nothing)."""
        assert self.error is not None, "the guarded block neither returned nor raised"
        return self.error


# A model's own error message goes back unsealed (the JSON error body), so it is kept short.
MAX_MODEL_MESSAGE_CHARS = 300


def public_model_message(message: str) -> str:
    """A model's error message as it may leave the process: redacted and bounded.

    The JSON error body travels outside the sealed envelope (a TLS-terminating proxy reads it), and model
    authors write messages like `f"cannot parse {text!r}"`. Secret and PII patterns are redacted, and the
    rest is cut at `MAX_MODEL_MESSAGE_CHARS`, so a message cannot carry the whole input out.
    """
    text = redact(str(message))
    if len(text) > MAX_MODEL_MESSAGE_CHARS:
        text = text[: MAX_MODEL_MESSAGE_CHARS - 1] + "…"
    return text


def clear_exception_frames(exc: BaseException) -> None:
    """Drop the locals of every finished frame in `exc`'s traceback and in those of the exceptions chained
    to it (`__context__`, `__cause__`), and the tracebacks themselves.

    Model code that keeps an exception in a local (a retry loop's `last_error`, a saved `sys.exc_info()`)
    makes its frame and that exception a reference cycle, which keeps the frame's locals (the model's `str`
    and tensor copies of the input, a decoder error's `doc`) alive after the request ended, until a
    garbage collection happens to run. Cleared here, they go when the exception does.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)  # an executing frame (ours) is skipped
        current.__traceback__ = None
        pending += [current.__context__, current.__cause__]


def strip_exception(exc: CleanroomError) -> CleanroomError:
    """`exc` without its traceback and chained exceptions (whose frames and fields may hold plaintext)."""
    clear_exception_frames(exc)
    exc.__traceback__ = None
    exc.__context__ = exc.__cause__ = None
    exc.__suppress_context__ = True
    return exc


def run_model(model: Model, payload: SecureBuffer, scope: RequestScope) -> memoryview:
    guard = ModelErrors(model)
    with guard:
        return model.run(payload, scope)
    raise guard.failure()


def run_model_batch(model: Model, requests: Sequence[OpenedRequest]) -> list[memoryview | BaseException]:
    """One forward pass over several requests of one tenant; the model returns one answer or one exception
    per request (a malformed request fails alone)."""
    run_batch = getattr(model, "run_batch")  # noqa: B009 - optional capability, checked by the caller
    guard = ModelErrors(model)
    with guard:
        answers: list[memoryview | BaseException] = run_batch(
            [r.payload for r in requests], [r.scope for r in requests]
        )
        return [strip_exception(a) if isinstance(a, CleanroomError) else a for a in answers]
    raise guard.failure()


def describe_error(exc: BaseException) -> str:
    return exc.code if isinstance(exc, CleanroomError) else type(exc).__name__
