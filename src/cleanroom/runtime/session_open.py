"""DESIGN §4 step 3 for any transport: from sealed bytes to plaintext in a SecureBuffer, and back out.

`RequestOpener.open` is where plaintext begins (`decrypt_payload_into`) and, on leaving, where it ends
(`end_request` zeroes every buffer and tensor of the request). In between it makes every check (tenant,
credential, binding to this call, replay) and writes the decryption record before the first plaintext
byte; `OpenedRequest.seal` seals the answer and holds it until that record is durable. Separate from
running models (`session_model`) and from the per-server `Runtime` (`session`): the ASGI middleware and
the batch runner open requests without either.

Audit order (invariant 5): the decryption record is written to the log before any plaintext exists; with
`write_ahead=True` its fdatasync runs while the request decrypts and computes, and nothing leaves before it
has succeeded: `OpenedRequest.seal` waits for it (and zeroes the sealed answer if it failed), and leaving
`RequestOpener.open` waits for it too, so no answer and no error built after the decryption is released
before the record is durable.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from cleanroom.crypto.sealed import (
    OpenedRequestKey,
    ParsedRequest,
    RequestMetadata,
    open_request_key,
    parse_request,
)
from cleanroom.errors import AuditUnavailable, ContextMismatch
from cleanroom.keys.keyring import Keyring
from cleanroom.keys.registry import Registry
from cleanroom.memory.secure_buffer import SecureAllocator, SecureBuffer
from cleanroom.runtime.models import RequestScope
from cleanroom.runtime.replay import ReplayCache
from cleanroom.runtime.session_audit import (
    ALREADY_DURABLE,
    AuditSink,
    DurabilityTicket,
    record_ahead,
    record_many_ahead,
)
from cleanroom.runtime.session_zeroing import release_scope, verified_zero, zero_scope
from cleanroom.scrubbers.base import Scrubber, ScrubReport
from cleanroom.scrubbers.logs import redact
from cleanroom.tenants import Principal, check_credential

log = logging.getLogger("cleanroom.runtime")


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


def decryption_record(parsed: ParsedRequest, meta: RequestMetadata, call: CallContext) -> dict[str, Any]:
    """The audit record of one request key's decryption (invariant 5: written before any plaintext)."""
    return {
        "event": "decrypt.request_key",
        "tenant_id": meta.tenant_id,
        "key_id": parsed.key_id,
        "purpose": "request",
        "request_id": meta.request_id.hex(),
        "principal": call.principal.credential_id,
        "source": call.source,
        "byte_count": parsed.payload_size_bytes,
        "model": call.model or audited_route(call.path),
    }


def audited_route(path: str) -> str:
    """A middleware route as the audit log keeps it: the path through the log redactor, the query left out.

    The query of a sealed call is bound to the request but travels and arrives in clear, and it is where
    apps put ids, emails and tokens (`?email=…`); the audit log is kept for years and promises no PII. The
    path stays (which route was called is the point of the record), redacted like a log line.
    """
    route, has_query, _ = path.partition("?")
    return redact(route) + ("?[REDACTED:QUERY]" if has_query else "")


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
            event = decryption_record(parsed, meta, call)
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
