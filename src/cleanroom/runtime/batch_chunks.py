"""A batch job's state and data, and how one chunk of it runs on a device (the scheduler's runner).

See `runtime.batch_jobs` for the life of a job. Here: `BatchJob` (what a job holds, and `shred`), the
batch lane a tenant's chunks run in (`lane_of`), and `BatchChunkRunner`, which the scheduler calls on a
device's worker thread with one chunk: read the chunk's items from the encrypted input spill into
SecureBuffers, run the model, append each answer to the encrypted results spill, zero everything.
"""

from __future__ import annotations

import asyncio
import threading
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cleanroom.crypto.deferred import DeferredResponseKey
from cleanroom.errors import CleanroomError, SpillError
from cleanroom.memory.secure_buffer import SecureAllocator
from cleanroom.runtime.batch_format import STATUS_FAILED, STATUS_OK, BatchIndex
from cleanroom.runtime.models import Model, RequestScope
from cleanroom.runtime.session import ModelErrors, RequestOpener, describe_error, run_model, strip_exception
from cleanroom.runtime.spill import SpillFile
from cleanroom.scrubbers.base import ScrubPolicy

LANE_SUFFIX = "#batch"


def lane_of(tenant_id: str) -> str:
    """The scheduler tenant a tenant's batch chunks run under (tenant ids never contain '#')."""
    if "#" in tenant_id:
        raise ValueError("tenant ids cannot contain '#'")
    return tenant_id + LANE_SUFFIX


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    RETRIEVED = "retrieved"


ACTIVE = frozenset({JobState.QUEUED, JobState.RUNNING})
SHREDDED = frozenset({JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED, JobState.RETRIEVED})


@dataclass(eq=False)
class BatchJob:
    """One job. Data fields are None once shredded; counts and state stay for the tombstone."""

    batch_id: str
    tenant_id: str
    model: str
    total: int
    created_at: float  # wall clock, for the status document
    expires_at: float  # the store's clock
    inputs: SpillFile | None
    index: BatchIndex | None
    results: SpillFile | None
    response_key: DeferredResponseKey | None
    state: JobState = JobState.QUEUED
    completed: int = 0  # items answered by the model
    failed: int = 0  # items the model refused (their error code is in the results)
    error_code: str | None = None  # why the whole job failed
    statuses: array = field(default_factory=lambda: array("B"))  # type: ignore[type-arg]
    lengths: array = field(default_factory=lambda: array("I"))  # type: ignore[type-arg]
    lock: threading.Lock = field(default_factory=threading.Lock)
    driver: asyncio.Task[None] | None = None
    shredded_at: float | None = None  # the store's clock
    # Set, before any await, by whoever starts ending the job (cancel, expiry, failure): a second cancel
    # arriving while the first still awaits the driver is answered 410, not a second 200.
    ending: JobState | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def status_document(self) -> dict[str, Any]:
        """Counts only: no model name, no sizes, nothing of the tenant's data."""
        doc: dict[str, Any] = {
            "batch_id": self.batch_id,
            "status": self.state.value,
            "items": {
                "total": self.total,
                "completed": self.completed,
                "failed": self.failed,
                "pending": self.total - self.completed - self.failed,
            },
            "created_at": round(self.created_at, 3),
        }
        if self.error_code is not None:
            doc["error"] = {"code": self.error_code}
        return doc

    def shred(self, state: JobState, now: float, error_code: str | None = None) -> None:
        """Close both spills (keys zeroed, files gone) and zero the response key. Blocks on `lock`."""
        with self.lock:
            self._shred_locked(state, now, error_code)

    def _shred_locked(self, state: JobState, now: float, error_code: str | None) -> None:
        if self.state in SHREDDED:
            return
        for resource in (self.inputs, self.results, self.response_key):
            if resource is not None:
                resource.close()
        self.inputs = self.results = None
        self.response_key = None
        self.index = None
        self.statuses, self.lengths = array("B"), array("I")
        self.shredded_at = now
        if error_code is not None:
            self.error_code = error_code
        self.state = state  # last: whoever sees a shredded state finds the data already gone


@dataclass(frozen=True)
class ChunkItem:
    """One scheduler request of the batch lane: items [start, stop) of one job."""

    job: BatchJob
    start: int
    stop: int


class BatchChunkRunner:
    """The scheduler's `BatchRunner` for batch chunks of one model (one chunk per scheduler batch)."""

    max_batch_size = 1

    def __init__(self, model: Model, opener: RequestOpener, allocator: SecureAllocator, policy: ScrubPolicy) -> None:
        self.model, self.opener, self.allocator, self.policy = model, opener, allocator, policy

    def run(self, device: str, tenant_id: str, items: Sequence[ChunkItem]) -> list[int | BaseException]:
        answers: list[int | BaseException] = []
        for item in items:
            try:
                if lane_of(item.job.tenant_id) != tenant_id:  # never: one lane is one tenant
                    raise RuntimeError("a batch chunk reached another tenant's lane")
                answers.append(self._run_chunk(item))
            except Exception as exc:
                answers.append(exc)
        if self.policy.mode == "per_request" and self.opener.scrubber is not None:
            self.opener.scrubber.between_tenant_scrub()
        return answers

    def _run_chunk(self, item: ChunkItem) -> int:
        job = item.job
        scopes: list[RequestScope] = []
        try:
            with job.lock:  # read this chunk's inputs from the encrypted spill into SecureBuffers
                if not job.active or job.inputs is None or job.index is None:
                    return 0
                for i in range(item.start, item.stop):
                    scope = RequestScope(self.allocator)
                    scopes.append(scope)
                    payload = scope.new_buffer(job.index.lengths[i])
                    job.inputs.seek(job.index.offsets[i])
                    if job.inputs.readinto(payload.view()) != payload.size_bytes:
                        raise SpillError("a batch input ended early")
            answers = self._run_model(scopes)
            with job.lock:  # append the answers to the encrypted results spill, in order
                if not job.active or job.results is None:
                    return 0
                for answer in answers:
                    if isinstance(answer, BaseException):
                        code = describe_error(answer).encode("ascii", "replace")[:64]
                        job.results.write(code)
                        job.statuses.append(STATUS_FAILED)
                        job.lengths.append(len(code))
                        job.failed += 1
                    else:
                        job.results.write(answer)
                        job.statuses.append(STATUS_OK)
                        job.lengths.append(answer.nbytes)
                        job.completed += 1
                return len(answers)
        finally:
            for scope in scopes:
                self.opener.end_request(scope)  # zero (and verify, with a scrubber) every buffer and tensor

    def _run_model(self, scopes: list[RequestScope]) -> list[memoryview | BaseException]:
        payloads = [scope.buffers[0] for scope in scopes]
        run_batch = getattr(self.model, "run_batch", None)
        if len(scopes) > 1 and run_batch is not None:
            guard = ModelErrors(self.model)
            with guard:
                answers: list[memoryview | BaseException] = run_batch(payloads, scopes)
                return [strip_exception(a) if isinstance(a, CleanroomError) else a for a in answers]
            return [guard.failure()] * len(scopes)  # the whole forward pass failed: every item fails with it
        answers = []
        for payload, scope in zip(payloads, scopes, strict=True):
            try:
                answers.append(run_model(self.model, payload, scope))
            except Exception as exc:
                answers.append(exc)
        return answers


__all__ = ["ACTIVE", "SHREDDED", "BatchChunkRunner", "BatchJob", "ChunkItem", "JobState", "lane_of"]
