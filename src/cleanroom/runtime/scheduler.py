"""The tenant-fair scheduler: per-tenant queues, weighted fair share of measured service, tenant-grouped
batching, fewer tenant switches, admission control, cancellation, graceful shutdown.

Embedders call it from async code; the model work runs on worker threads, one per device, never on the
event loop:

    scheduler = Scheduler(SchedulerConfig(), ["cuda:0"], SchedulerMetrics.create(registry),
                          on_tenant_switch=lambda device, old, new: scrubbers[device].between_tenant_scrub())
    await scheduler.start()
    result = await scheduler.submit(tenant_id, "minilm", item, runner=runner)   # 429/408/503 errors
    await scheduler.shutdown(deadline_s=30)

What it promises:
- a batch holds one tenant's requests for one model; `on_tenant_switch(device, old, new)` runs on the
  device's worker thread before the first batch of `new` on a device that last ran `old` (and only then),
  and no batch of `new` runs there unless it returned; it returns the bytes it scrubbed (or a report with
  `bytes_scrubbed`, e.g. `ScrubReport`; None when it had nothing to scrub) for the metrics. If it raises,
  the batch fails with its error and the device keeps `old` (so the next attempt scrubs again);
  `DeviceQuarantined`, from it or from a batch, takes the device out of service;
- a submitter cancelled while its request is queued (client disconnect) removes the request; one cancelled
  while its batch runs gets nothing, and the batch finishes (the runner still zeroes what it held);
- `shutdown` refuses new requests (503 ``shutting_down``), runs what is queued and running until the
  deadline, then answers the rest 503 and returns without waiting for batches still on a device;
- a runner that prepares (batching.py `prepares_ahead`) may have its tenant's next batch prepared on the
  device's preparing thread while the batch before it runs on the worker thread (never across a tenant
  switch); a batch prepared ahead that will not run is discarded (zeroed).
The policy itself is in scheduler_core.py (state), fairness.py (who next), batching.py (what goes
together) and admission.py (who may enter); this module is only the asyncio plumbing: the worker threads
are scheduler_worker.py, and what goes to Prometheus is scheduler_export.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar, cast

from cleanroom.errors import CleanroomError, DeviceQuarantined, ServiceUnavailable
from cleanroom.runtime.admission import (
    REASON_QUEUE_TIMEOUT,
    REASON_SHUTTING_DOWN,
    TenantLimits,
    no_device_error,
    queue_timeout_error,
    shutting_down_error,
)
from cleanroom.runtime.batching import BatchRunner, QueuedRequest
from cleanroom.runtime.scheduler_core import Batch, SchedulerConfig, SchedulerCore
from cleanroom.runtime.scheduler_export import SchedulerExport
from cleanroom.runtime.scheduler_metrics import SchedulerMetrics
from cleanroom.runtime.scheduler_worker import DeviceWorkers, Outcome, ScrubOutcome, TenantSwitchCallback, as_exception

log = logging.getLogger("cleanroom.scheduler")

T = TypeVar("T")
R = TypeVar("R")


def cpu_devices(count: int) -> list[str]:
    """Names for `count` CPU workers: ``cpu:0`` ... (each one a worker thread with its own current tenant)."""
    if count < 1:
        raise ValueError("at least one CPU worker is needed")
    return [f"cpu:{i}" for i in range(count)]


@dataclass(frozen=True)
class ShutdownReport:
    drained: bool  # everything admitted was answered by its batch before the deadline
    completed: int  # requests answered by their batch during the shutdown
    cancelled_queued: int  # queued requests answered 503 at the deadline (nothing of them ran)
    abandoned_running: int  # requests whose batch was still running at the deadline (answered 503)


@dataclass(frozen=True)
class TenantStats:
    weight: float
    counter: float
    queued: int
    running: int
    service_s: float


@dataclass(frozen=True)
class DeviceStats:
    current_tenant: str | None
    busy: bool
    quarantined: bool
    tenant_switches: int
    scrubs: int


class Scheduler:
    """See the module docstring. Create it anywhere; `start` and everything after on one event loop."""

    def __init__(
        self,
        config: SchedulerConfig | None = None,
        devices: Sequence[str] = ("cpu:0",),
        metrics: SchedulerMetrics | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_tenant_switch: TenantSwitchCallback | None = None,
    ) -> None:
        self.config = config if config is not None else SchedulerConfig()
        self._core = SchedulerCore(self.config, list(devices))
        self.metrics = metrics
        self._clock = clock  # the same clock times batches and scrubs on the worker threads (DeviceWorkers)
        self._workers = DeviceWorkers(clock, on_tenant_switch)
        self._export = SchedulerExport(metrics, self._core)
        self._running: dict[Future[Outcome], Batch] = {}
        # The dispatcher is a callback, not a task: a pass is scheduled with `call_soon` when something
        # changed (`_kick`) or with `call_later` when the core says work becomes ready. Waking a task through
        # an Event and `wait_for` cost three turns of the event loop per request, a callback costs one.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pass: asyncio.Handle | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._idle: asyncio.Event | None = None
        self._completed = 0  # requests answered by their own batch
        self._closed = False

    # --- life cycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._loop is not None or self._closed:
            raise RuntimeError("a Scheduler starts once")
        self._idle = asyncio.Event()
        self._idle.set()
        self._workers.start(self._core.devices)
        self._loop = asyncio.get_running_loop()

    async def __aenter__(self) -> Scheduler:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.shutdown(30.0)

    async def shutdown(self, deadline_s: float) -> ShutdownReport:
        """Stop admitting, drain queued and running work for up to `deadline_s`, answer the rest 503."""
        if self._closed or self._loop is None or self._idle is None:
            self._closed = True
            return ShutdownReport(True, 0, 0, 0)
        self._core.begin_shutdown()
        completed_before = self._completed
        self._kick()
        drained = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=max(0.0, deadline_s))
        except TimeoutError:
            drained = False
        self._closed = True
        self._cancel_pass()
        cancelled = self._core.drain_queued()
        for request in cancelled:
            self._reject_queued(request, shutting_down_error(), REASON_SHUTTING_DOWN)
        abandoned = 0
        for job, batch in list(self._running.items()):
            job.cancel()  # not started: it never runs; running: it runs on, its results are dropped (cleanup runs)
            for request in batch.requests:
                abandoned += self._answer(request, shutting_down_error())
        self._running.clear()
        self._workers.shutdown()
        self._export.refresh_gauges()
        if not drained:
            log.warning(
                "scheduler shutdown deadline passed: %d queued request(s) cancelled, %d running abandoned",
                len(cancelled),
                abandoned,
            )
        return ShutdownReport(drained, self._completed - completed_before, len(cancelled), abandoned)

    # --- the API an async route calls -----------------------------------------------------------------
    async def submit(self, tenant_id: str, model: str, item: T, *, runner: BatchRunner[T, R]) -> R:
        """Queue `item`, wait for its batch, return its result or raise its error.

        Raises `TooManyRequests` (429), `ServiceUnavailable` (503: overloaded, shutting_down, no device)
        at once, `RequestTimeout` (408) when it waited past the tenant's queue timeout, or what the runner
        returned or raised for this item.
        """
        if self._loop is None or self._idle is None:
            raise RuntimeError("Scheduler.start() was not awaited")
        if self._closed:
            raise shutting_down_error()
        try:
            request = self._core.admit(tenant_id, model, item, runner, self._clock())
        except CleanroomError as exc:
            self._export.count_reject(tenant_id, exc.code)
            if self._core.is_forgotten(tenant_id):
                self._export.dirty.add(tenant_id)  # a deleted tenant's late request: its series go at the next pass
                self._kick()
            raise
        self._export.admitted()
        future: asyncio.Future[Any] = self._loop.create_future()
        request.handle = future
        self._export.dirty.add(tenant_id)
        self._idle.clear()
        self._kick()
        try:
            return cast(R, await future)
        except asyncio.CancelledError:
            if self._core.cancel(request):
                if self.metrics is not None:
                    self.metrics.cancelled.labels(tenant_id=tenant_id).inc()
                self._export.dirty.add(tenant_id)
                self._kick()
            raise

    def set_weight(self, tenant_id: str, weight: float) -> None:
        """Change a tenant's fair-share weight at run time (from the next charge on)."""
        effective = self._core.set_weight(tenant_id, weight)
        if self.metrics is not None and tenant_id in self._core.tenants:  # (not for a deleted tenant)
            self.metrics.weight.labels(tenant_id=tenant_id).set(effective)

    def forget(self, tenant_id: str) -> None:
        """A tenant was deleted: drop its scheduling state and metric series (its queued or running
        requests, if any, finish or fail first; the state goes with the last of them)."""
        self._core.forget(tenant_id)
        self._export.dirty.discard(tenant_id)
        if self.metrics is not None:
            self.metrics.forget_tenant(tenant_id)

    def set_limits(self, tenant_id: str, limits: TenantLimits) -> None:
        """Change a tenant's admission limits at run time (from the next admission on)."""
        self._core.set_limits(tenant_id, limits, self._clock())

    def stats(self) -> tuple[dict[str, TenantStats], dict[str, DeviceStats]]:
        """A snapshot for /readyz, logs and tests: per tenant and per device."""
        tenants = {
            t.tenant_id: TenantStats(t.weight, t.counter, t.queued, t.running, t.service_s)
            for t in self._core.tenants.values()
        }
        devices = {
            d.name: DeviceStats(d.current_tenant, d.busy, d.quarantined, d.tenant_switches, d.scrubs)
            for d in self._core.devices.values()
        }
        return tenants, devices

    # --- dispatching (event loop) ---------------------------------------------------------------------
    def _kick(self) -> None:
        """Ask for one dispatch pass at the next turn of the event loop (one pass, however many ask).

        Not run inline: requests submitted in the same turn (a burst) must be seen together by one pass,
        so that the batching policy can put them in one batch."""
        if self._pass is None and not self._closed and self._loop is not None:
            self._pass = self._loop.call_soon(self._dispatch_pass)

    def _cancel_pass(self) -> None:
        for handle in (self._pass, self._timer):
            if handle is not None:
                handle.cancel()
        self._pass = self._timer = None

    def _dispatch_pass(self) -> None:
        self._cancel_pass()
        if self._closed:
            return
        try:
            self._dispatch_once()
        except Exception:
            # A bug here would leave every submitter waiting forever: fail closed and loudly instead.
            log.exception("scheduler dispatcher failed; refusing all work")
            self._closed = True
            self._cancel_pass()
            self._core.begin_shutdown()
            for request in self._core.drain_queued():
                self._reject_queued(
                    request,
                    ServiceUnavailable("the scheduler failed; see the server log", code="scheduler_failed"),
                    "scheduler_failed",
                )

    def _dispatch_once(self) -> None:
        assert self._loop is not None and self._idle is not None
        now = self._clock()
        for request in self._core.expire(now):
            # Its own limit, not the tenant's state: expiring may have dropped a deleted tenant's state,
            # and `tenant()` would have brought it back (with its metric series) for good.
            limit = request.deadline - request.enqueued_at
            self._reject_queued(
                request, queue_timeout_error(request.model, now - request.enqueued_at, limit), REASON_QUEUE_TIMEOUT
            )
        for batch in self._core.dispatch(now):
            self._launch(batch, now)
        self._export.refresh_gauges()
        if self._core.idle:
            self._idle.set()
        wake = self._core.next_wake(now)
        if wake is not None:
            self._timer = self._loop.call_later(max(0.0, wake - self._clock()), self._kick)

    def _launch(self, batch: Batch, now: float) -> None:
        """Hand the batch to its device's worker thread; `_batch_done` runs on the event loop when it ends."""
        assert self._loop is not None
        if self.metrics is not None:
            waited = self.metrics.wait_seconds.labels(tenant_id=batch.tenant_id)
            for request in batch.requests:
                waited.observe(now - request.enqueued_at)
            self.metrics.batch_size.labels(model=batch.model).observe(len(batch.requests))
        try:
            job = self._workers.submit(batch)
        except BaseException as exc:  # e.g. the executor refused the job: every item must still be answered
            self._loop.call_soon(self._finish, batch, Outcome(exc, 0.0, ran=False))
            return
        self._running[job] = batch
        loop = self._loop

        def on_worker_done(finished: Future[Outcome]) -> None:  # runs on the worker thread
            # Straight back onto the loop (one turn), not through an asyncio future chained to this one (two
            # turns, plus a task waking up to read it).
            with contextlib.suppress(RuntimeError):  # the loop is closed: shutdown answered the submitters
                loop.call_soon_threadsafe(self._batch_done, finished)

        job.add_done_callback(on_worker_done)

    def _batch_done(self, job: Future[Outcome]) -> None:
        batch = self._running.pop(job, None)
        if batch is None:
            return  # abandoned at shutdown past its deadline: the submitters were answered there
        try:
            outcome = job.result()
        except BaseException as exc:  # _run_batch catches what the runner raises; this is the executor's
            outcome = Outcome(as_exception(exc), 0.0, ran=True)
        self._finish(batch, outcome)

    def _finish(self, batch: Batch, outcome: Outcome) -> None:
        self._core.complete(
            batch,
            outcome.service_s,
            self._clock(),
            ran=outcome.ran,
            scrub_s=outcome.scrub_s,
            prepare_s=outcome.prepare_s,
            ended_at=outcome.ended_at,
        )
        self._export.dirty.add(batch.tenant_id)
        results = outcome.results
        n = len(batch.requests)
        if not isinstance(results, BaseException) and len(results) != n:
            results = RuntimeError(f"runner for model {batch.model!r} returned {len(results)} results for {n} items")
        self._export.record_batch(batch, outcome)
        quarantined = isinstance(results, DeviceQuarantined) or (
            not isinstance(results, BaseException) and any(isinstance(r, DeviceQuarantined) for r in results)
        )
        if not quarantined and self._core.queued_of(batch.tenant_id):
            # The tenant has more work queued: start its device's next batch before answering this one.
            # Answering first (resolving the futures, then a pass at the next turn) left the device idle
            # while the loop ran the submitters (sealing and sending each answer): measured through the real
            # server with minilm, ~10 ms per batch of 16, ~2.5 ms per batch of 1. When its queue is empty
            # the pass still waits for the answers (below): an in-process submitter resubmits in its turn.
            self._dispatch_pass()
        for i, request in enumerate(batch.requests):
            answer = results if isinstance(results, BaseException) else results[i]
            self._completed += self._answer(request, answer)
        if quarantined:
            self._quarantine(batch.device)
        self._kick()  # after the answers, so that the submitters' turns come before the next pass

    def _quarantine(self, device: str) -> None:
        if self._core.devices[device].quarantined:
            return
        log.critical("device %s quarantined: the scheduler places no more work on it", device)
        self._core.quarantine(device)
        if self.metrics is not None:
            self.metrics.device_quarantined.labels(device=device).set(1)
        if all(d.quarantined for d in self._core.devices.values()):
            for request in self._core.drain_queued():
                self._reject_queued(request, no_device_error(), no_device_error().code)

    # --- answering ------------------------------------------------------------------------------------
    def _answer(self, request: QueuedRequest, answer: Any) -> int:
        """Resolve a submitter's future (unless it went away); 1 if answered."""
        future = cast("asyncio.Future[Any]", request.handle)
        if future is None or future.done():
            return 0
        if isinstance(answer, BaseException):
            future.set_exception(answer)
        else:
            future.set_result(answer)
        return 1

    def _reject_queued(self, request: QueuedRequest, error: CleanroomError, reason: str) -> None:
        self._export.count_reject(request.tenant_id, reason)
        self._export.dirty.add(request.tenant_id)
        self._answer(request, error)


__all__ = [
    "BatchRunner",
    "DeviceStats",
    "Scheduler",
    "SchedulerConfig",
    "SchedulerMetrics",
    "ScrubOutcome",
    "ShutdownReport",
    "TenantLimits",
    "TenantStats",
    "TenantSwitchCallback",
    "cpu_devices",
]
