"""A discrete-event simulation of the scheduler: the real `SchedulerCore` on a simulated clock.

For deterministic policy tests and the policy benchmarks (benchmarks/scheduler/). Devices run batches for
`cost(model, n)` simulated seconds, plus `scrub_s` before a batch that changes the device's tenant.
Clients are open-loop (arrivals at given times) or closed-loop (resubmit after each answer). Nothing here
sleeps or starts a thread; a run of minutes of simulated traffic takes well under a second.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from cleanroom.errors import CleanroomError
from cleanroom.runtime.batching import CostFunction, QueuedRequest
from cleanroom.runtime.scheduler_core import Batch, SchedulerConfig, SchedulerCore


@dataclass(frozen=True)
class LinearCost:
    """A batch of n costs `fixed_s + per_item_s * n` seconds (the same for every model)."""

    fixed_s: float
    per_item_s: float

    def __call__(self, model: str, n: int) -> float:
        return self.fixed_s + self.per_item_s * n


@dataclass
class SimRunner:
    """Stands in for a model: only what the core reads (batch size, optional delay, whether it prepares).

    `prepare_per_item_s` > 0: a runner that prepares (batching.py), whose preparation takes that long per
    request, on top of `cost(model, n)`: on the device when the batch was given to a free device, beside the
    running batch when it was handed over ahead (only with `ahead`)."""

    max_batch_size: int = 1
    max_batch_delay_ms: float | None = None
    prepare_per_item_s: float = 0.0
    ahead: bool = True

    @property
    def prepare_ahead(self) -> bool:
        return self.ahead and self.prepare_per_item_s > 0

    def prepare(self, device: str, tenant_id: str, items: Sequence[object]) -> object:
        raise RuntimeError("a SimRunner is never prepared; the simulation charges prepare_per_item_s instead")

    def run(self, device: str, tenant_id: str, items: Sequence[object]) -> Sequence[object | BaseException]:
        raise RuntimeError("a SimRunner is never run; the simulation charges cost(model, n) instead")


@dataclass
class Outcome:
    tenant_id: str
    model: str
    arrived_at: float
    outcome: str  # "ok", "cancelled", or an error code (queue_timeout, tenant_queue_full, ...)
    started_at: float | None = None
    finished_at: float | None = None
    batch_size: int = 0
    retry_after_s: float | None = None

    @property
    def latency_s(self) -> float:
        assert self.finished_at is not None
        return self.finished_at - self.arrived_at


@dataclass
class BatchRecord:
    device: str
    tenant_id: str
    model: str
    size: int
    tenant_switch: bool
    scrub_s: float
    service_start: float
    end: float
    request_tenants: tuple[str, ...]  # each request's own tenant (a batch must never mix them)
    request_models: tuple[str, ...]


Callback = Callable[[Outcome], None]


@dataclass
class Simulation:
    config: SchedulerConfig
    cost: CostFunction
    devices: Sequence[str] = ("sim:0",)
    scrub_s: float = 0.0
    now: float = 0.0
    outcomes: list[Outcome] = field(default_factory=list)
    batches: list[BatchRecord] = field(default_factory=list)
    # tenant -> its batches cost this many times `cost(model, n)`: requests dearer than the model's estimate
    tenant_cost_factor: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.core = SchedulerCore(self.config, self.devices)
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._wakes: set[float] = set()
        self._runners: dict[str, SimRunner] = {}
        self._device_free_at: dict[str, float] = {}  # device -> when the last batch handed to it ends

    # --- set-up --------------------------------------------------------------------------------------
    def model(
        self,
        name: str,
        max_batch_size: int = 1,
        max_batch_delay_ms: float | None = None,
        prepare_per_item_s: float = 0.0,
        prepare_ahead: bool = True,
    ) -> None:
        self._runners[name] = SimRunner(max_batch_size, max_batch_delay_ms, prepare_per_item_s, prepare_ahead)

    def at(self, t: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (t, next(self._order), action))

    def submit(self, tenant_id: str, model: str, on_done: Callback | None = None) -> QueuedRequest | None:
        """Submit one request now; the outcome is recorded (and passed to `on_done`) when it is known."""
        runner = self._runners.setdefault(model, SimRunner())
        record = Outcome(tenant_id, model, self.now, "queued")
        try:
            request = self.core.admit(tenant_id, model, None, runner, self.now)
        except CleanroomError as exc:
            record.outcome, record.retry_after_s = exc.code, exc.retry_after_s
            self._finish(record, on_done)
            return None
        request.handle = (record, on_done)
        return request

    def cancel(self, request: QueuedRequest) -> bool:
        if not self.core.cancel(request):
            return False
        record, on_done = request.handle
        record.outcome = "cancelled"
        self._finish(record, on_done)
        return True

    def open_loop(self, tenant_id: str, model: str, times: Iterable[float]) -> None:
        def arrive() -> None:
            self.submit(tenant_id, model)

        for t in times:
            self.at(t, arrive)

    def poisson(
        self, tenant_id: str, model: str, rate_per_s: float, start_s: float, stop_s: float, rng: random.Random
    ) -> None:
        t = start_s + rng.expovariate(rate_per_s)
        times = []
        while t < stop_s:
            times.append(t)
            t += rng.expovariate(rate_per_s)
        self.open_loop(tenant_id, model, times)

    def closed_loop(
        self,
        tenant_id: str,
        model: str,
        clients: int,
        *,
        think_s: float | Callable[[], float] = 0.0,
        start_s: float = 0.0,
        stop_s: float = math.inf,
    ) -> None:
        """`clients` clients that each keep one request outstanding, resubmitting `think_s` (a number, or a
        function drawing one) after an answer, or after `Retry-After` when refused."""

        def client() -> None:
            if self.now < stop_s:
                self.submit(tenant_id, model, on_done=again)

        def again(outcome: Outcome) -> None:
            think = think_s() if callable(think_s) else think_s
            pause = think if outcome.retry_after_s is None else max(think, outcome.retry_after_s)
            self.at(self.now + pause, client)

        for _ in range(clients):
            self.at(start_s, client)

    # --- running -------------------------------------------------------------------------------------
    def run(self, until_s: float) -> None:
        self._step()
        while self._events and self._events[0][0] <= until_s:
            self.now = self._events[0][0]
            self._wakes.discard(self.now)
            while self._events and self._events[0][0] == self.now:
                heapq.heappop(self._events)[2]()
            self._step()
        self.now = max(self.now, until_s)

    def _step(self) -> None:
        for request in self.core.expire(self.now):
            record, on_done = request.handle
            record.outcome = "queue_timeout"
            self._finish(record, on_done)
        for batch in self.core.dispatch(self.now):
            self._start(batch)
        wake = self.core.next_wake(self.now)
        if wake is not None and wake not in self._wakes:
            self._wakes.add(wake)
            self.at(wake, lambda: None)

    def _start(self, batch: Batch) -> None:
        scrub = self.scrub_s if batch.needs_scrub else 0.0
        service = self.cost(batch.model, len(batch.requests)) * self.tenant_cost_factor.get(batch.tenant_id, 1.0)
        runner = batch.runner
        prepare = runner.prepare_per_item_s * len(batch.requests) if isinstance(runner, SimRunner) else 0.0
        prepares = isinstance(runner, SimRunner) and runner.prepare_per_item_s > 0
        for request in batch.requests:
            request.handle[0].started_at = self.now
        if batch.ahead:  # prepared beside the running batch; runs once both are done
            start = max(self._device_free_at.get(batch.device, self.now), self.now + prepare)
        else:  # on a free device: scrub, prepare, run
            start = self.now + scrub + prepare
        end = self._device_free_at[batch.device] = start + service
        record = BatchRecord(
            batch.device,
            batch.tenant_id,
            batch.model,
            len(batch.requests),
            batch.tenant_switch,
            scrub,
            start,
            end,
            tuple(r.tenant_id for r in batch.requests),
            tuple(r.model for r in batch.requests),
        )
        self.batches.append(record)
        prepare_s = prepare if prepares else None
        self.at(record.end, lambda: self._done(batch, prepare + service, scrub, prepare_s))

    def _done(self, batch: Batch, service_s: float, scrub_s: float, prepare_s: float | None = None) -> None:
        self.core.complete(batch, service_s, self.now, scrub_s=scrub_s, prepare_s=prepare_s)
        for request in batch.requests:
            record, on_done = request.handle
            record.outcome, record.batch_size = "ok", len(batch.requests)
            self._finish(record, on_done)

    def _finish(self, record: Outcome, on_done: Callback | None) -> None:
        record.finished_at = self.now
        self.outcomes.append(record)
        if on_done is not None:
            on_done(record)

    # --- measurements --------------------------------------------------------------------------------
    def service_s(self, start_s: float = 0.0, end_s: float = math.inf) -> dict[str, float]:
        """Device seconds of model work per tenant inside [start_s, end_s] (scrubs excluded)."""
        out: dict[str, float] = {}
        for b in self.batches:
            overlap = min(b.end, end_s) - max(b.service_start, start_s)
            if overlap > 0:
                out[b.tenant_id] = out.get(b.tenant_id, 0.0) + overlap
        return out

    def latencies(self, tenant_id: str, *, since_s: float = 0.0) -> list[float]:
        return sorted(
            o.latency_s
            for o in self.outcomes
            if o.tenant_id == tenant_id and o.outcome == "ok" and o.arrived_at >= since_s
        )

    def completed(self, tenant_id: str | None = None) -> int:
        return sum(1 for o in self.outcomes if o.outcome == "ok" and (tenant_id is None or o.tenant_id == tenant_id))

    @property
    def tenant_switches(self) -> int:
        return sum(d.tenant_switches for d in self.core.devices.values())


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted `values` (q in [0, 100])."""
    if not values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(values)))
    return values[min(rank, len(values)) - 1]


__all__ = ["BatchRecord", "LinearCost", "Outcome", "SimRunner", "Simulation", "percentile"]
