"""The scheduler's worker threads: one per device, where its batches and between-tenant scrubs run, and one
more per device where batches are prepared ahead (batching.py `prepares_ahead`).

Kept apart from the event-loop side (scheduler.py) because everything here runs off the loop, on threads
that own their device: a runner or a scrub that raises, returns the wrong number of results or quarantines
the device is turned here into one `Outcome` the loop can answer from, and the timing the fairness policy
charges (service, scrub, preparation, idle time) is measured here, around the work itself. The loop only
submits batches (`DeviceWorkers.submit`) and reads outcomes; it never touches this side's state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, cast

from cleanroom.errors import CleanroomError, DeviceQuarantined
from cleanroom.runtime.batching import PreparedBatch
from cleanroom.runtime.scheduler_state import Batch


class ScrubOutcome(Protocol):
    """What a scrub callback may return instead of a byte count, e.g. `scrubbers.base.ScrubReport`."""

    @property
    def bytes_scrubbed(self) -> int: ...


TenantSwitchCallback = Callable[[str, "str | None", str], "int | ScrubOutcome | None"]


@dataclass(frozen=True)
class Outcome:
    results: Sequence[Any] | BaseException
    service_s: float
    ran: bool  # False: the scrub before the batch failed, so the batch never started
    scrub_s: float = 0.0
    scrub_bytes: int | None = None
    idle_before_s: float | None = None  # the worker's idle time since its previous batch ended
    prepare_s: float | None = None  # the part of service_s the runner's `prepare` took (runners that prepare)
    ended_at: float | None = None  # when the batch ended on the worker thread


@dataclass(frozen=True)
class Prepared:
    """What `runner.prepare` gave (or raised), and how long it took."""

    batch: PreparedBatch[Any] | BaseException
    seconds: float


def discard(prepared: Prepared) -> None:
    if not isinstance(prepared.batch, BaseException):
        prepared.batch.discard()


def discard_when_prepared(job: Future[Outcome], preparing: Future[Prepared]) -> None:
    """The device job of a batch prepared ahead was cancelled (shutdown): release what `prepare` held."""
    if job.cancelled():
        preparing.add_done_callback(lambda f: None if f.cancelled() else discard(f.result()))


def as_exception(exc: BaseException) -> Exception:
    """What a submitter may be given: an `Exception`. A runner that raises or returns `SystemExit`,
    `KeyboardInterrupt` or `CancelledError` must not stop the event loop or look like a disconnect."""
    if isinstance(exc, Exception):
        return exc
    error = RuntimeError(f"the runner raised {type(exc).__name__}")
    error.__cause__ = exc
    return error


def checked_results(results: Any, n: int) -> list[Any] | Exception:
    """On the worker thread: the runner's answer as one result (or `Exception`) per item, or the error that
    fails the whole batch when it is not a sequence of `n` results (None, a number, a generator of another
    length). Checked here, where the batch's time is measured, so a broken runner is charged for it and
    its submitters are answered (a `len()` of a generator on the event loop left them waiting forever)."""
    try:
        out = list(results)
    except Exception:
        return RuntimeError(f"the runner returned {type(results).__name__}, not a sequence of {n} results")
    if len(out) != n:
        return RuntimeError(f"the runner returned {len(out)} results for {n} items")
    return [as_exception(r) if isinstance(r, BaseException) else r for r in out]


def scrubbed_bytes(result: int | ScrubOutcome | None) -> int | None:
    if result is None or isinstance(result, int):
        return result
    return int(result.bytes_scrubbed)


class DeviceWorkers:
    """The device threads of one `Scheduler` (see the module docstring): `start`, `submit`, `shutdown`."""

    def __init__(self, clock: Callable[[], float], on_tenant_switch: TenantSwitchCallback | None) -> None:
        self._clock = clock  # read on the worker threads to time batches and scrubs
        self._on_tenant_switch = on_tenant_switch
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._preparers: dict[str, ThreadPoolExecutor] = {}  # device -> its thread for batches prepared ahead
        self._worker_free_at: dict[str, float] = {}  # device -> when its last batch ended (worker thread)
        # device -> why no batch prepared ahead may run on it any more (worker thread; see _run_batch)
        self._worker_refuses: dict[str, CleanroomError] = {}

    def start(self, devices: Iterable[str]) -> None:
        for name in devices:
            self._executors[name] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"cleanroom-worker-{name}")

    def submit(self, batch: Batch) -> Future[Outcome]:
        """Queue the batch on its device's thread (behind the batch running there, for one prepared ahead).
        Raises what an executor raised, having released what a preparation ahead held; the caller answers."""
        preparing: Future[Prepared] | None = None
        try:
            if batch.ahead:
                # Prepared on its own thread while the device finishes the batch before it (batching.py); the
                # device job, queued behind that batch, waits for it.
                preparing = self._preparer(batch.device).submit(self._prepare, batch)
            job = self._executors[batch.device].submit(self._run_batch, batch, preparing)
        except BaseException:
            if preparing is not None:
                preparing.add_done_callback(lambda f: None if f.cancelled() else discard(f.result()))
            raise
        if preparing is not None:
            job.add_done_callback(lambda finished: discard_when_prepared(finished, preparing))
        return job

    def shutdown(self) -> None:
        """Queued jobs never run; a running one runs on (its results are dropped, its cleanup runs)."""
        for executor in (*self._executors.values(), *self._preparers.values()):
            executor.shutdown(wait=False, cancel_futures=True)

    def _preparer(self, device: str) -> ThreadPoolExecutor:
        executor = self._preparers.get(device)
        if executor is None:
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"cleanroom-prepare-{device}")
            self._preparers[device] = executor
        return executor

    def _prepare(self, batch: Batch) -> Prepared:
        """The runner's host-side work for `batch` (batching.py `prepares_ahead`); never raises."""
        started = self._clock()
        prepare = cast(Any, batch.runner).prepare
        try:
            prepared: PreparedBatch[Any] | BaseException = prepare(batch.device, batch.tenant_id, batch.items)
        except BaseException as exc:
            prepared = as_exception(exc)
        return Prepared(prepared, self._clock() - started)

    def _run_batch(self, batch: Batch, preparing: Future[Prepared] | None = None) -> Outcome:
        """On the device's worker thread: the between-tenant scrub if one is due, then the batch (prepared
        first on this thread, or ahead by `preparing` on the device's preparing thread)."""
        scrub_s, scrub_bytes = 0.0, None
        free_at = self._worker_free_at.get(batch.device)  # only this device's thread reads and writes it
        if preparing is not None:
            prepared = preparing.result()  # the batch before it ran meanwhile; usually done already
            if self._worker_refuses.get(batch.device) is not None:
                # The batch before it quarantined the device: nothing more may run there (fail closed; its
                # requests answer 503 device_quarantined, and its plaintext is zeroed unused).
                discard(prepared)
                return Outcome(self._worker_refuses[batch.device], prepared.seconds, ran=False)
            idle_before_s = None if free_at is None else self._clock() - free_at
            return self._run_prepared(batch, prepared, idle_before_s, 0.0, None)
        idle_before_s = None if free_at is None else self._clock() - free_at
        if batch.needs_scrub and self._on_tenant_switch is not None:
            started = self._clock()
            try:
                scrub_bytes = scrubbed_bytes(
                    self._on_tenant_switch(batch.device, batch.previous_tenant, batch.tenant_id)
                )
            except BaseException as exc:
                # Fail closed: the new tenant must not run on a device that may hold the old one's data.
                self._worker_free_at[batch.device] = self._clock()
                return Outcome(as_exception(exc), 0.0, ran=False, scrub_s=self._worker_free_at[batch.device] - started)
            scrub_s = self._clock() - started
        if batch.prepares:
            return self._run_prepared(batch, self._prepare(batch), idle_before_s, scrub_s, scrub_bytes)
        started = self._clock()
        results: Sequence[Any] | BaseException
        try:
            results = checked_results(batch.runner.run(batch.device, batch.tenant_id, batch.items), len(batch.items))
        except BaseException as exc:
            results = as_exception(exc)
        ended = self._worker_free_at[batch.device] = self._clock()
        self._note_ran(batch, results)
        return Outcome(results, ended - started, True, scrub_s, scrub_bytes, idle_before_s, ended_at=ended)

    def _run_prepared(
        self, batch: Batch, prepared: Prepared, idle_before_s: float | None, scrub_s: float, scrub_bytes: int | None
    ) -> Outcome:
        """On the device's worker thread: run a prepared batch (service = its preparation + its run)."""
        started = self._clock()
        results: Sequence[Any] | BaseException
        if isinstance(prepared.batch, BaseException):
            results = prepared.batch
        else:
            try:
                results = checked_results(prepared.batch.run(), len(batch.requests))
            except BaseException as exc:
                results = as_exception(exc)
            finally:
                prepared.batch.discard()  # a no-op after `run`, unless `run` broke its contract
        ended = self._worker_free_at[batch.device] = self._clock()
        self._note_ran(batch, results)
        service_s = prepared.seconds + ended - started
        return Outcome(results, service_s, True, scrub_s, scrub_bytes, idle_before_s, prepared.seconds, ended)

    def _note_ran(self, batch: Batch, results: Sequence[Any] | BaseException) -> None:
        """On the worker thread: a batch that quarantined the device fails a batch prepared behind it."""
        if isinstance(results, DeviceQuarantined) or (
            not isinstance(results, BaseException) and any(isinstance(r, DeviceQuarantined) for r in results)
        ):
            self._worker_refuses[batch.device] = DeviceQuarantined(
                "the device was taken out of service before this request ran; retry"
            )


__all__ = ["DeviceWorkers", "Outcome", "Prepared", "ScrubOutcome", "TenantSwitchCallback", "as_exception"]
