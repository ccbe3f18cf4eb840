"""Batch jobs: many inputs for one model, run in chunks alongside interactive traffic, results sealed back.

Life of a job (docs/batches.md has the operator's view):

1. submit — `runtime.batch_open` checks, audits and decrypts the sealed batch straight into an encrypted
   input `SpillFile`; its framing is indexed (`batch_format`); the job keeps the response key material
   (44 bytes, a SecureBuffer) that its results will be sealed with, and nothing else of the request.
2. run — a driver coroutine submits one chunk (`batch_chunk_size` items) at a time to the scheduler, in
   the tenant's *batch lane*: the scheduler tenant ``<tenant_id>#batch``, weighted `batch_weight` x the
   tenant's weight. A separate lane, not the tenant's own queue, because the scheduler shares service per
   tenant: in its own queue a batch would compete with the tenant's interactive requests at full weight;
   in a lane it gets a fraction of a tenant's share, and the tenant's interactive requests and every
   other tenant go first in proportion. A lane is one tenant's (its id is derived from the tenant id,
   which cannot contain ``#``), so a chunk never holds two tenants' data, and the scheduler scrubs the
   device whenever the lane changes, as for any tenant switch. `BatchChunkRunner` reads the chunk's
   items from the input spill into SecureBuffers, runs the model, appends each answer to the encrypted
   results spill, and zeroes every buffer and tensor of the chunk.
3. fetch — once every chunk is done, `GET .../results` streams one sealed response (the client's
   `SealedRequest.open_response` opens it); when the last byte has gone out the job is shredded.
4. shred — retrieval, `DELETE`, the TTL, a failure or shutdown: spills closed (keys zeroed, files gone),
   response key zeroed. A small tombstone (state and counts, no data) answers 410 for a while.

Thread-safety: job data is touched by the event loop (submit, fetch, shred) and by a scheduler worker
thread (chunks); `BatchJob.lock` guards the spills and the result table. The model runs outside the lock,
so a cancel never waits for a forward pass; the chunk then finds its job gone and discards its answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from array import array
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cleanroom.crypto.aead import TAG_BYTES
from cleanroom.crypto.deferred import RESPONSE_HEADER_BYTES, DeferredResponseKey, StreamingSealer
from cleanroom.errors import (
    BatchGone,
    BatchNotReady,
    CleanroomError,
    RequestTimeout,
    ServiceUnavailable,
    SpillError,
    TooManyRequests,
    UnknownBatch,
)
from cleanroom.memory.secure_buffer import SecureAllocator
from cleanroom.runtime.admission import TenantLimits
from cleanroom.runtime.batch_format import (
    STATUS_FAILED,
    STATUS_OK,
    BatchIndex,
    index_batch,
    results_header,
)
from cleanroom.runtime.batch_open import SpilledRequest, open_into_spill
from cleanroom.runtime.models import Model, ModelRegistry, RequestScope
from cleanroom.runtime.scheduler import Scheduler
from cleanroom.runtime.session import CallContext, RequestOpener, describe_error, model_errors, run_model
from cleanroom.runtime.spill import SpillFile, SpillIO
from cleanroom.scrubbers.base import ScrubPolicy

log = logging.getLogger("cleanroom.batch")

LANE_SUFFIX = "#batch"
RESULT_PIECE_BYTES = 1 << 20


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

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def status_document(self) -> dict[str, Any]:
        """Counts only: no model name, no sizes, nothing of the tenant's data."""
        doc: dict[str, Any] = {
            "batch_id": self.batch_id, "status": self.state.value,
            "items": {"total": self.total, "completed": self.completed, "failed": self.failed,
                      "pending": self.total - self.completed - self.failed},
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
            try:
                with model_errors(self.model):
                    answers: list[memoryview | BaseException] = run_batch(payloads, scopes)
                return answers
            except CleanroomError as exc:  # the whole forward pass failed: every item fails with it
                return [exc] * len(scopes)
        answers = []
        for payload, scope in zip(payloads, scopes, strict=True):
            try:
                answers.append(run_model(self.model, payload, scope))
            except Exception as exc:
                answers.append(exc)
        return answers


@dataclass(frozen=True)
class BatchLimits:
    """The settings a store needs (from `Settings`; explicit so tests can build one without a server)."""

    ttl_s: float = 3600.0
    chunk_size: int = 16
    lane_weight: float = 0.25
    max_inputs: int = 10_000
    max_item_bytes: int = 64 * 1024 * 1024
    max_jobs_per_tenant: int = 8
    spill_threshold_bytes: int = 8 * 1024 * 1024
    spill_segment_bytes: int = 256 * 1024
    tombstones_per_tenant: int = 256


class BatchJobStore:
    """Every batch job of this process, in memory only: a restart shreds them all (their keys die with it)."""

    def __init__(self, *, scheduler: Scheduler, opener: RequestOpener, models: ModelRegistry,
                 allocator: SecureAllocator, policy: ScrubPolicy, spill_dir: Any, limits: BatchLimits,
                 weight_of: Callable[[str], float], spill_io: SpillIO | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.scheduler, self.opener, self.models = scheduler, opener, models
        self.allocator, self.limits, self.weight_of = allocator, limits, weight_of
        self.spill_dir, self.spill_io, self.clock = spill_dir, spill_io, clock
        self.runners = {name: BatchChunkRunner(models.get(name), opener, allocator, policy) for name in models.names()}
        self._jobs: dict[str, BatchJob] = {}
        self._reaper: asyncio.Task[None] | None = None

    # --- life cycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap_forever(), name="cleanroom-batch-reaper")

    async def close(self) -> None:
        """Shutdown: stop every driver and shred every job."""
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        for job in list(self._jobs.values()):
            await self._end(job, JobState.FAILED, "shutting_down")

    def new_spill(self) -> SpillFile:
        return SpillFile(self.spill_dir, segment_size_bytes=self.limits.spill_segment_bytes, allocator=self.allocator,
                         spill_io=self.spill_io)

    # --- the API the routes call ----------------------------------------------------------------------
    async def submit(self, call: CallContext, body: bytes) -> BatchJob:
        tenant_id = call.principal.tenant_id
        await self._expire_due()
        self._check_room(tenant_id)
        spilled: SpilledRequest = await asyncio.to_thread(
            open_into_spill, self.opener, call, body, new_spill=self.new_spill,
            threshold_bytes=self.limits.spill_threshold_bytes, allocator=self.allocator)
        try:
            index = await asyncio.to_thread(self._index, spilled.spill)
            self.models.get(index.model)  # 404 unknown_model
            self._check_room(tenant_id)  # again: other submissions may have landed meanwhile
            results = await asyncio.to_thread(self.new_spill)
        except BaseException:
            await asyncio.to_thread(spilled.close)
            raise
        job = BatchJob(batch_id="b_" + secrets.token_hex(16), tenant_id=tenant_id, model=index.model,
                       total=index.count, created_at=time.time(), expires_at=self.clock() + self.limits.ttl_s,
                       inputs=spilled.spill, index=index, results=results, response_key=spilled.response_key)
        self._jobs[job.batch_id] = job
        job.driver = asyncio.get_running_loop().create_task(self._drive(job), name=f"cleanroom-batch-{job.batch_id}")
        log.info("batch %s accepted for tenant %s: %d items in %d chunk(s)", job.batch_id, tenant_id, job.total,
                 -(-job.total // self.limits.chunk_size))
        return job

    async def get(self, tenant_id: str, batch_id: str) -> BatchJob:
        """The caller's job; 404 for an unknown id and for another tenant's job alike."""
        await self._expire_due()
        job = self._jobs.get(batch_id)
        if job is None or job.tenant_id != tenant_id:
            raise UnknownBatch("no batch job with this id for this tenant")
        return job

    async def cancel(self, tenant_id: str, batch_id: str) -> BatchJob:
        """Stop the job (a running chunk finishes and is discarded) and shred it; a fetch under way is cut."""
        job = await self.get(tenant_id, batch_id)
        if job.state in SHREDDED:
            raise _gone(job)
        await self._end(job, JobState.CANCELLED)
        return job

    async def open_results(self, tenant_id: str, batch_id: str) -> tuple[int, AsyncIterator[bytes]]:
        """A finished job's sealed results: (size in bytes, the pieces). 404, 409 not ready, 410 shredded.

        Everything that can fail before the first byte fails here, so the route still answers with a
        status. Two fetches at once are harmless: same key, nonce and plaintext give the same bytes; the
        first to finish shreds the job and cuts the other.
        """
        job = await self.get(tenant_id, batch_id)
        if job.state in SHREDDED:
            raise _gone(job)
        if job.state is not JobState.SUCCEEDED:
            raise BatchNotReady(f"the batch is {job.state.value}: {job.completed + job.failed} of {job.total} "
                                "items done")
        sealer, table, size = await asyncio.to_thread(self._begin_results, job)
        return size, self._stream(job, sealer, table)

    # --- running a job -------------------------------------------------------------------------------
    async def _drive(self, job: BatchJob) -> None:
        lane = lane_of(job.tenant_id)
        runner = self.runners[job.model]
        try:
            for start in range(0, job.total, self.limits.chunk_size):
                if not job.active:
                    return
                job.state = JobState.RUNNING
                item = ChunkItem(job, start, min(start + self.limits.chunk_size, job.total))
                done = await self._submit_chunk(lane, job, item, runner)
                if job.active and done != item.stop - item.start:
                    raise RuntimeError("a batch chunk produced no results")
            if job.active:
                await asyncio.to_thread(self._seal_results, job)
        except asyncio.CancelledError:
            raise
        except CleanroomError as exc:
            log.warning("batch %s failed: %s", job.batch_id, exc.code)
            await asyncio.to_thread(job.shred, JobState.FAILED, self.clock(), exc.code)
        except Exception as exc:
            log.error("batch %s failed unexpectedly (%s)", job.batch_id, type(exc).__name__)
            await asyncio.to_thread(job.shred, JobState.FAILED, self.clock(), "internal_error")

    async def _submit_chunk(self, lane: str, job: BatchJob, item: ChunkItem, runner: BatchChunkRunner) -> int:
        """One chunk through the scheduler; waits out admission refusals (the job is not interactive)."""
        while True:
            self.scheduler.set_weight(lane, self.weight_of(job.tenant_id) * self.limits.lane_weight)
            self.scheduler.set_limits(lane, TenantLimits(
                max_queued=self.limits.max_jobs_per_tenant, max_in_flight=self.limits.max_jobs_per_tenant,
                queue_timeout_s=self.limits.ttl_s))
            try:
                done: int = await self.scheduler.submit(lane, job.model, item, runner=runner)
                return done
            except (TooManyRequests, RequestTimeout) as exc:
                wait_s = exc.retry_after_s or 1.0
            except ServiceUnavailable as exc:
                if exc.code != "overloaded":
                    raise
                wait_s = exc.retry_after_s or 1.0
            if not job.active:
                return 0
            await asyncio.sleep(min(5.0, max(0.05, wait_s)))

    def _seal_results(self, job: BatchJob) -> None:
        """All chunks done: seal the results spill's last segment (no more writes) and mark it fetchable."""
        with job.lock:
            if not job.active or job.results is None:
                return
            job.results.seek(0)
            job.state = JobState.SUCCEEDED
        log.info("batch %s finished: %d ok, %d failed", job.batch_id, job.completed, job.failed)

    def _index(self, spill: SpillFile) -> BatchIndex:
        def read_at(offset: int, size: int) -> bytes:
            spill.seek(offset)
            return spill.read(size)  # framing only (the header and the length table)

        return index_batch(read_at, spill.size_bytes, max_items=self.limits.max_inputs,
                           max_item_bytes=self.limits.max_item_bytes)

    # --- results -------------------------------------------------------------------------------------
    def _begin_results(self, job: BatchJob) -> tuple[StreamingSealer, bytes, int]:
        with job.lock:
            if job.state is not JobState.SUCCEEDED or job.response_key is None or job.results is None:
                raise _gone(job)
            table = results_header(job.statuses, job.lengths)
            size = RESPONSE_HEADER_BYTES + len(table) + job.results.size_bytes + TAG_BYTES
            return job.response_key.seal_stream(), table, size

    async def _stream(self, job: BatchJob, sealer: StreamingSealer, table: bytes) -> AsyncIterator[bytes]:
        """The sealed response, piece by piece: header, the results document's ciphertext, the tag. The job
        is shredded (retrieved) just before the tag is handed to the transport."""
        completed = False
        scratch = None
        try:
            yield sealer.header
            out = bytearray(len(table) + 15)
            yield bytes(out[: sealer.update_into(memoryview(table), out)])
            scratch = self.allocator.allocate(RESULT_PIECE_BYTES)
            position = 0
            while (piece := await asyncio.to_thread(self._encrypt_piece, job, sealer, scratch.view(), position)):
                position += len(piece)
                yield piece
            tag = sealer.finish()
            completed = True
            # Shred before the last 16 bytes go out, so a client holding the whole response knows the
            # server's copy is gone (a connection lost in those 16 bytes loses the results: fetch is once).
            await asyncio.to_thread(job.shred, JobState.RETRIEVED, self.clock())
            log.info("batch %s retrieved and shredded", job.batch_id)
            yield tag
        finally:
            if scratch is not None:
                scratch.close()
            if not completed:
                sealer.abandon()  # an interrupted fetch: the job stays; a new fetch gives the same bytes

    def _encrypt_piece(self, job: BatchJob, sealer: StreamingSealer, scratch: memoryview, position: int) -> bytes:
        """The next piece of ciphertext (b"" at the end); the plaintext passes through `scratch` only."""
        with job.lock:
            if job.results is None:
                raise _gone(job)
            size = min(scratch.nbytes, job.results.size_bytes - position)
            if size <= 0:
                return b""
            try:
                job.results.seek(position)
                if job.results.readinto(scratch[:size]) != size:
                    raise SpillError("the results spill ended early")
            except SpillError as exc:  # the spill discarded itself; the job cannot be delivered
                job._shred_locked(JobState.FAILED, self.clock(), exc.code)
                raise
            out = bytearray(size + 15)
            count = sealer.update_into(scratch[:size], out)
            return bytes(out[:count])

    # --- shredding -----------------------------------------------------------------------------------
    async def _end(self, job: BatchJob, state: JobState, error_code: str | None = None) -> None:
        driver = job.driver
        if driver is not None and not driver.done() and driver is not asyncio.current_task():
            driver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await driver
        await asyncio.to_thread(job.shred, state, self.clock(), error_code)

    async def _expire_due(self) -> None:
        now = self.clock()
        for job in list(self._jobs.values()):
            if job.state in SHREDDED:
                if job.shredded_at is not None and now - job.shredded_at > self.limits.ttl_s:
                    self._jobs.pop(job.batch_id, None)  # the tombstone goes too
            elif now >= job.expires_at:
                log.info("batch %s expired after %.0f s; shredding it", job.batch_id, self.limits.ttl_s)
                await self._end(job, JobState.EXPIRED)
        self._trim_tombstones()

    def _trim_tombstones(self) -> None:
        per_tenant: dict[str, list[BatchJob]] = {}
        for job in self._jobs.values():
            if job.state in SHREDDED:
                per_tenant.setdefault(job.tenant_id, []).append(job)
        for jobs in per_tenant.values():
            jobs.sort(key=lambda j: j.shredded_at or 0.0)
            for job in jobs[: max(0, len(jobs) - self.limits.tombstones_per_tenant)]:
                self._jobs.pop(job.batch_id, None)

    async def _reap_forever(self) -> None:
        interval = min(5.0, max(0.2, self.limits.ttl_s / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                await self._expire_due()
            except Exception:
                log.exception("batch reaper pass failed")

    def _check_room(self, tenant_id: str) -> None:
        live = sum(1 for j in self._jobs.values() if j.tenant_id == tenant_id and j.state not in SHREDDED)
        if live >= self.limits.max_jobs_per_tenant:
            raise TooManyRequests(f"a tenant may hold {self.limits.max_jobs_per_tenant} batch jobs; fetch or "
                                  "cancel one first", code="too_many_batches", retry_after_s=5.0)

    def stats(self) -> dict[str, int]:
        counts: dict[str, int] = {state.value: 0 for state in JobState}
        for job in self._jobs.values():
            counts[job.state.value] += 1
        return counts


def _gone(job: BatchJob) -> CleanroomError:
    reasons = {JobState.EXPIRED: "its time to live ran out", JobState.CANCELLED: "it was cancelled",
               JobState.RETRIEVED: "its results were already fetched",
               JobState.FAILED: f"it failed ({job.error_code or 'unknown'})"}
    return BatchGone(f"the batch's data is shredded: {reasons.get(job.state, job.state.value)}",
                     code=f"batch_{job.state.value}")


__all__ = ["BatchChunkRunner", "BatchJob", "BatchJobStore", "BatchLimits", "ChunkItem", "JobState", "lane_of"]
