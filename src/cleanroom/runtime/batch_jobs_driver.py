"""Step 2 of a batch job's life (`batch_jobs`): drive it chunk by chunk through the scheduler's batch lane.

One coroutine per job submits one chunk at a time in the tenant's batch lane (`lane_of`), waits out
admission refusals (a batch is not interactive: it retries instead of failing), and once every chunk
is done seals the results spill for fetching. Kept apart from the store because it is the only part
that talks to the scheduler, and everything it needs is passed in: the store's job table, expiry and
fetch never touch the lane, and the lane logic never touches the table.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from cleanroom.errors import CleanroomError, RequestTimeout, ServiceUnavailable, TooManyRequests
from cleanroom.runtime.admission import TenantLimits
from cleanroom.runtime.batch_chunks import BatchChunkRunner, BatchJob, ChunkItem, JobState, lane_of
from cleanroom.runtime.scheduler import Scheduler

if TYPE_CHECKING:  # batch_jobs imports this module; the limits are only a type here
    from cleanroom.runtime.batch_jobs import BatchLimits

log = logging.getLogger("cleanroom.batch")


async def drive_job(
    job: BatchJob,
    runner: BatchChunkRunner,
    *,
    scheduler: Scheduler,
    limits: BatchLimits,
    tenant_weight: Callable[[str], float],
    clock: Callable[[], float],
) -> None:
    """Run every chunk of `job`, then make its results fetchable; a failure shreds the job (FAILED)."""
    lane = lane_of(job.tenant_id)
    try:
        for start in range(0, job.total, limits.chunk_size):
            if not job.active:
                return
            job.state = JobState.RUNNING
            item = ChunkItem(job, start, min(start + limits.chunk_size, job.total))
            done = await submit_chunk(
                lane, job, item, runner, scheduler=scheduler, limits=limits, tenant_weight=tenant_weight
            )
            if job.active and done != item.stop - item.start:
                raise RuntimeError("a batch chunk produced no results")
        if job.active:
            await asyncio.to_thread(seal_results, job)
    except asyncio.CancelledError:
        raise
    except CleanroomError as exc:
        log.warning("batch %s failed: %s", job.batch_id, exc.code)
        await asyncio.to_thread(job.shred, JobState.FAILED, clock(), exc.code)
    except Exception as exc:
        log.error("batch %s failed unexpectedly (%s)", job.batch_id, type(exc).__name__)
        await asyncio.to_thread(job.shred, JobState.FAILED, clock(), "internal_error")


async def submit_chunk(
    lane: str,
    job: BatchJob,
    item: ChunkItem,
    runner: BatchChunkRunner,
    *,
    scheduler: Scheduler,
    limits: BatchLimits,
    tenant_weight: Callable[[str], float],
) -> int:
    """One chunk through the scheduler; waits out admission refusals (the job is not interactive)."""
    while True:
        scheduler.set_weight(lane, tenant_weight(job.tenant_id) * limits.lane_weight)
        scheduler.set_limits(
            lane,
            TenantLimits(
                max_queued=limits.max_jobs_per_tenant,
                max_in_flight=limits.max_jobs_per_tenant,
                queue_timeout_s=limits.ttl_s,
            ),
        )
        try:
            done: int = await scheduler.submit(lane, job.model, item, runner=runner)
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


def seal_results(job: BatchJob) -> None:
    """All chunks done: seal the results spill's last segment (no more writes) and mark it fetchable."""
    with job.lock:
        if not job.active or job.results is None:
            return
        job.results.seek(0)
        job.state = JobState.SUCCEEDED
    log.info("batch %s finished: %d ok, %d failed", job.batch_id, job.completed, job.failed)
