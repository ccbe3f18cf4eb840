"""The scheduler's `BatchRunner` for sealed requests: open each, run the model once per batch, seal each.

One batch holds one tenant's requests for one model (the scheduler guarantees it). Every request is opened
through `RequestOpener` (checks, audit, decrypt into a SecureBuffer) and zeroed when the batch ends; a
request that fails to open fails alone, the others still run. Models that declare `max_batch_size > 1` and
offer `run_batch` get all payloads in one forward pass.

Audit (invariant 5, write-ahead): the decryption records of every request of the batch are written with
one audit call (`RequestOpener.open_many`: one group commit) before any payload is decrypted; once every
request of the batch is open, one fdatasync for all of their records starts in the background and runs
while the model does. No result leaves `run` before it has succeeded
(`OpenedRequest.seal` waits for it); if it failed, every request of the batch answers 503
(`AuditUnavailable`) and its sealed answer is zeroed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cleanroom.errors import AuditUnavailable
from cleanroom.runtime.models import Model
from cleanroom.runtime.session import CallContext, OpenedRequest, RequestOpener, run_model, run_model_batch
from cleanroom.scrubbers.base import ScrubPolicy


@dataclass(frozen=True)
class SealedItem:
    """What the transport submits: who called and the sealed bytes."""

    call: CallContext
    body: bytes


class SealedBatchRunner:
    def __init__(
        self, opener: RequestOpener, model: Model, policy: ScrubPolicy, max_batch_size: int | None = None
    ) -> None:
        self.opener, self.model, self.policy = opener, model, policy
        self.max_batch_size = max(1, int(getattr(model, "max_batch_size", 1)))
        if max_batch_size is not None:
            self.max_batch_size = min(self.max_batch_size, max_batch_size)

    def run(self, device: str, tenant_id: str, items: Sequence[SealedItem]) -> list[bytearray | BaseException]:
        results: list[bytearray | BaseException | None] = [None] * len(items)
        with self.opener.open_many([(item.call, item.body) for item in items]) as outcomes:
            opened: list[tuple[int, OpenedRequest]] = []
            for i, outcome in enumerate(outcomes):
                if isinstance(outcome, OpenedRequest):
                    opened.append((i, outcome))
                else:  # this request alone fails (bad tag, replay, ...), or all if the audit failed
                    results[i] = outcome
            if opened:
                opened[-1][1].start_sync()  # one fdatasync for every record of the batch, during the model
                self._run(opened, results)
                self._durable_before_release(opened, results)
        if self.policy.mode == "per_request" and self.opener.scrubber is not None:
            self.opener.scrubber.between_tenant_scrub()
        return [r if r is not None else RuntimeError("request produced no result") for r in results]

    def _run(self, opened: list[tuple[int, OpenedRequest]], results: list[bytearray | BaseException | None]) -> None:
        requests = [request for _, request in opened]
        if len(requests) > 1 and hasattr(self.model, "run_batch"):
            try:
                answers = run_model_batch(self.model, requests)
            except Exception as exc:
                for i, _ in opened:
                    results[i] = exc
                return
            for (i, request), answer in zip(opened, answers, strict=True):
                results[i] = answer if isinstance(answer, BaseException) else self._seal(request, answer)
            return
        for i, request in opened:
            try:
                results[i] = self._seal(request, run_model(self.model, request.payload, request.scope))
            except Exception as exc:
                results[i] = exc

    @staticmethod
    def _durable_before_release(
        opened: list[tuple[int, OpenedRequest]], results: list[bytearray | BaseException | None]
    ) -> None:
        """Every result, answer or error, waits for its record's durability (the tickets resolved together,
        so this is one fdatasync, usually long finished); a failed one turns the result into 503."""
        for i, request in opened:
            try:
                request.wait_durable()
            except AuditUnavailable as exc:
                result = results[i]
                if isinstance(result, bytearray):  # `seal` already refuses; zero whatever got through
                    result[:] = bytes(len(result))
                results[i] = exc

    @staticmethod
    def _seal(request: OpenedRequest, answer: memoryview) -> bytearray | BaseException:
        try:
            return request.seal(answer)
        except Exception as exc:
            return exc
        finally:
            del answer
