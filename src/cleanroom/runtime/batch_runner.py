"""The scheduler's `BatchRunner` for sealed requests: open each, run the model once per batch, seal each.

One batch holds one tenant's requests for one model (the scheduler guarantees it). Every request is opened
through `RequestOpener` (checks, audit, decrypt into a SecureBuffer) and zeroed when the batch ends; a
request that fails to open fails alone, the others still run. Models that declare `max_batch_size > 1` and
offer `run_batch` get all payloads in one forward pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

from cleanroom.runtime.models import Model
from cleanroom.runtime.session import CallContext, OpenedRequest, RequestOpener, run_model, run_model_batch
from cleanroom.scrubbers.base import ScrubPolicy


@dataclass(frozen=True)
class SealedItem:
    """What the transport submits: who called and the sealed bytes."""

    call: CallContext
    body: bytes


class SealedBatchRunner:
    def __init__(self, opener: RequestOpener, model: Model, policy: ScrubPolicy, max_batch_size: int | None = None
                 ) -> None:
        self.opener, self.model, self.policy = opener, model, policy
        self.max_batch_size = max(1, int(getattr(model, "max_batch_size", 1)))
        if max_batch_size is not None:
            self.max_batch_size = min(self.max_batch_size, max_batch_size)

    def run(self, device: str, tenant_id: str, items: Sequence[SealedItem]) -> list[bytearray | BaseException]:
        results: list[bytearray | BaseException | None] = [None] * len(items)
        with contextlib.ExitStack() as stack:
            opened: list[tuple[int, OpenedRequest]] = []
            for i, item in enumerate(items):
                try:
                    opened.append((i, stack.enter_context(self.opener.open(item.call, item.body))))
                except Exception as exc:  # this request alone fails (bad tag, replay, ...)
                    results[i] = exc
            if opened:
                self._run(opened, results)
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
    def _seal(request: OpenedRequest, answer: memoryview) -> bytearray | BaseException:
        try:
            return request.seal(answer)
        except Exception as exc:
            return exc
        finally:
            del answer
