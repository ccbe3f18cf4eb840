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
   `SealedRequest.open_response` opens it); the job is shredded just before its last 16 bytes (the tag) go out.
4. shred — retrieval, `DELETE`, the TTL, a failure or shutdown: spills closed (keys zeroed, files gone),
   response key zeroed. A small tombstone (state and counts, no data) answers 410 for a while.

Thread-safety: job data is touched by the event loop (submit, fetch, shred) and by a scheduler worker
thread (chunks); `BatchJob.lock` guards the spills and the result table. The model runs outside the lock,
so a cancel never waits for a forward pass; the chunk then finds its job gone and discards its answers.

Where the parts live: the store here (the job table, submit, cancel, expiry, shredding);
`batch_jobs_driver` runs a job's chunks in its lane (step 2); `batch_jobs_results` streams the sealed
results and shreds before the tag (step 3). Both are plain functions the store calls with its state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cleanroom.errors import BatchNotReady, TooManyRequests, UnknownBatch, UnknownModel
from cleanroom.memory.secure_buffer import SecureAllocator
from cleanroom.runtime.batch_chunks import SHREDDED, BatchChunkRunner, BatchJob, ChunkItem, JobState, lane_of
from cleanroom.runtime.batch_format import BatchIndex, index_batch
from cleanroom.runtime.batch_jobs_driver import drive_job
from cleanroom.runtime.batch_jobs_results import RESULT_PIECE_BYTES, begin_results, gone, stream_results
from cleanroom.runtime.batch_open import SpilledRequest, open_into_spill
from cleanroom.runtime.models import ModelRegistry
from cleanroom.runtime.scheduler import Scheduler
from cleanroom.runtime.session import CallContext, RequestOpener
from cleanroom.runtime.spill import SpillFile, SpillIO, sweep_stale_files
from cleanroom.scrubbers.base import ScrubPolicy

log = logging.getLogger("cleanroom.batch")


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

    def __init__(
        self,
        *,
        scheduler: Scheduler,
        opener: RequestOpener,
        models: ModelRegistry,
        allocator: SecureAllocator,
        policy: ScrubPolicy,
        spill_dir: Any,
        limits: BatchLimits,
        tenant_weight: Callable[[str], float],
        spill_io: SpillIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scheduler, self.opener, self.models = scheduler, opener, models
        self.allocator, self.limits, self.tenant_weight = allocator, limits, tenant_weight
        self.spill_dir, self.spill_io, self.clock = spill_dir, spill_io, clock
        self.runners = {name: BatchChunkRunner(models.get(name), opener, allocator, policy) for name in models.names()}
        self._jobs: dict[str, BatchJob] = {}
        self._reaper: asyncio.Task[None] | None = None

    # --- life cycle -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the TTL reaper; first clear names a crashed process may have left in the spill directory
        (jobs never survive a restart: what a dead process left is ciphertext under a key that died with it,
        and with O_TMPFILE it has no name at all; only the create-and-unlink fallback can leave an empty one)."""
        if self.spill_dir is not None:
            sweep_stale_files(Path(self.spill_dir))
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
        return SpillFile(
            self.spill_dir,
            segment_size_bytes=self.limits.spill_segment_bytes,
            allocator=self.allocator,
            spill_io=self.spill_io,
        )

    # --- the API the routes call ----------------------------------------------------------------------
    async def submit(self, call: CallContext, body: bytes) -> BatchJob:
        tenant_id = call.principal.tenant_id
        await self._expire_due()
        self._check_room(tenant_id)
        spilled: SpilledRequest = await asyncio.to_thread(
            open_into_spill,
            self.opener,
            call,
            body,
            new_spill=self.new_spill,
            threshold_bytes=self.limits.spill_threshold_bytes,
            allocator=self.allocator,
        )
        try:
            index = await asyncio.to_thread(self._index, spilled.spill)
            self._check_model(index.model)  # 404 unknown_model
            self._check_room(tenant_id)  # again: other submissions may have landed meanwhile
            results = await asyncio.to_thread(self.new_spill)
        except BaseException:
            await asyncio.to_thread(spilled.close)
            raise
        job = BatchJob(
            batch_id="b_" + secrets.token_hex(16),
            tenant_id=tenant_id,
            model=index.model,
            total=index.count,
            created_at=time.time(),
            expires_at=self.clock() + self.limits.ttl_s,
            inputs=spilled.spill,
            index=index,
            results=results,
            response_key=spilled.response_key,
        )
        self._jobs[job.batch_id] = job
        job.driver = asyncio.get_running_loop().create_task(self._drive(job), name=f"cleanroom-batch-{job.batch_id}")
        log.info(
            "batch %s accepted for tenant %s: %d items in %d chunk(s)",
            job.batch_id,
            tenant_id,
            job.total,
            -(-job.total // self.limits.chunk_size),
        )
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
        if job.state in SHREDDED or job.ending is not None:
            raise gone(job)
        await self._end(job, JobState.CANCELLED)
        return job

    async def forget_tenant(self, tenant_id: str) -> int:
        """A tenant was deleted: shred every job of its own at once — running, queued, or finished and waiting
        to be fetched (nobody can fetch it any more) — and drop its batch lane's scheduling state and metric
        series. Returns how many jobs were ended; their tombstones say `tenant_deleted`."""
        ended = 0
        for job in [j for j in self._jobs.values() if j.tenant_id == tenant_id]:
            if job.state not in SHREDDED and job.ending is None:
                await self._end(job, JobState.FAILED, "tenant_deleted")
                ended += 1
        self.scheduler.forget(lane_of(tenant_id))
        return ended

    async def open_results(self, tenant_id: str, batch_id: str) -> tuple[int, AsyncIterator[bytes]]:
        """A finished job's sealed results: (size in bytes, the pieces). 404, 409 not ready, 410 shredded.

        Everything that can fail before the first byte fails here, so the route still answers with a
        status. Two fetches at once are harmless: same key, nonce and plaintext give the same bytes; the
        first to finish shreds the job and cuts the other.
        """
        job = await self.get(tenant_id, batch_id)
        if job.state in SHREDDED:
            raise gone(job)
        if job.state is not JobState.SUCCEEDED:
            raise BatchNotReady(
                f"the batch is {job.state.value}: {job.completed + job.failed} of {job.total} items done"
            )
        sealer, table, size = await asyncio.to_thread(begin_results, job)
        return size, stream_results(job, sealer, table, allocator=self.allocator, clock=self.clock)

    # --- running a job -------------------------------------------------------------------------------
    async def _drive(self, job: BatchJob) -> None:
        """Step 2 (`batch_jobs_driver.drive_job`) with this store's scheduler, limits and clock."""
        runner = self.runners[job.model]
        await drive_job(
            job,
            runner,
            scheduler=self.scheduler,
            limits=self.limits,
            tenant_weight=self.tenant_weight,
            clock=self.clock,
        )

    def _check_model(self, name: str) -> None:
        """404 for a model this server does not serve, without naming it: the name comes from inside the
        sealed batch, and the error goes back as plain JSON (a TLS-terminating proxy would read it)."""
        if name not in self.runners:
            raise UnknownModel(
                f"the batch names a model this server does not serve; it serves: {', '.join(sorted(self.runners))}"
            )

    def _index(self, spill: SpillFile) -> BatchIndex:
        def read_at(offset: int, size: int) -> bytes:
            spill.seek(offset)
            return spill.read(size)  # framing only (the header and the length table)

        return index_batch(
            read_at, spill.size_bytes, max_items=self.limits.max_inputs, max_item_bytes=self.limits.max_item_bytes
        )

    # --- shredding -----------------------------------------------------------------------------------
    async def _end(self, job: BatchJob, state: JobState, error_code: str | None = None) -> None:
        if job.ending is not None:
            return  # another cancel, expiry or failure is ending it already
        job.ending = state
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
            raise TooManyRequests(
                f"a tenant may hold {self.limits.max_jobs_per_tenant} batch jobs; fetch or cancel one first",
                code="too_many_batches",
                retry_after_s=5.0,
            )

    def stats(self) -> dict[str, int]:
        counts: dict[str, int] = {state.value: 0 for state in JobState}
        for job in self._jobs.values():
            counts[job.state.value] += 1
        return counts


__all__ = [
    "RESULT_PIECE_BYTES",
    "BatchChunkRunner",
    "BatchJob",
    "BatchJobStore",
    "BatchLimits",
    "ChunkItem",
    "JobState",
    "lane_of",
]
