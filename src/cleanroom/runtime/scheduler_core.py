"""The scheduler's state machine: queues, counters, devices, admission, batching — with time passed in.

`SchedulerCore` knows nothing of asyncio, threads or clocks: every method takes `now`. The asyncio
`Scheduler` (runtime/scheduler.py) and the discrete-event simulation (runtime/scheduler_sim.py) drive the
same object, so what the tests and benchmarks measure is what the server runs.

Driving it:
    request = core.admit(tenant, model, item, runner, now)   # raises 429 / 503 errors
    for batch in core.dispatch(now): ...start it on batch.device...
    core.complete(batch, measured_service_s, now)              # when it finished
    for request in core.expire(now): ...answer 408...
    wake = core.next_wake(now)                                  # call dispatch/expire again then
Not thread-safe: one driver (the event loop) owns it.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cleanroom.runtime.admission import (
    TenantLimits,
    TokenBucket,
    bucket_for,
    check_global,
    check_tenant,
    no_device_error,
    shutting_down_error,
)
from cleanroom.runtime.batching import (
    ArrivalGap,
    BatchCostModel,
    BatchRunner,
    QueuedRequest,
    batch_limit,
    check_runner,
    lookahead_window,
    prepares_ahead,
    ready_at,
    take_batch,
)
from cleanroom.runtime.fairness import Candidate, choose_fair, choose_fifo, lifted_counter
from cleanroom.runtime.scheduler_config import LIGHT_SHARE, SchedulerConfig, check_weight

# Anticipation (`_hold`): comeback, batch and scrub times are moving averages (weight of the newest sample);
# a hold lasts at most HOLD_COMEBACKS mean comebacks, and is tried only when a mean comeback is at most
# HOLD_SCRUBS mean scrubs (the longest hold then costs about the two scrubs, away and back, that it saves).
COMEBACK_ALPHA = 0.2
HOLD_COMEBACKS = 2.0
HOLD_SCRUBS = 1.0

# Why a device left its current tenant (`DeviceState.run_ends`, exported as
# cleanroom_scheduler_run_ends_total): the tenant still had work and a bound or a light tenant ended the run,
# or its queue was empty and the device did not wait for it (and why not), or waited and it did not come back.
RUN_END_FAIRNESS = "fairness_bound"
RUN_END_LATENCY = "latency_bound"
RUN_END_LIGHT = "light_tenant"
RUN_END_EMPTY_OFF = "empty_no_anticipation"  # anticipation off (setting, FIFO, draining, a bound at 0)
RUN_END_EMPTY_UNKNOWN = "empty_not_measured"  # no comeback measured yet, or still running elsewhere
RUN_END_EMPTY_SLOW = "empty_comeback_slow"  # comeback over its batch time or the latency bound
RUN_END_EMPTY_DEARER = "empty_comeback_dearer"  # waiting would cost more than the switch it saves
RUN_END_EMPTY_LATE = "empty_not_back"  # not back within the expected comeback
RUN_END_EMPTY_HOLD_ENDED = "empty_hold_ended"  # the device waited; the hold ended first
RUN_END_FIFO = "fifo"

# How many deleted tenant ids the core remembers (`forget`), so that a request of a deleted tenant admitted
# after its state was dropped (authenticated before the deletion, body still uploading) does not bring the
# state back for good. Tenant ids are random (keys/registry.py), never reused.
FORGOTTEN_MEMORY = 4096


@dataclass
class TenantState:
    tenant_id: str
    weight: float
    limits: TenantLimits
    bucket: TokenBucket | None
    counter: float = 0.0  # virtual service: sum of service_s / weight (VTC)
    estimated: float = 0.0  # the part of `counter` that is dispatch estimates of batches not yet measured
    queued: int = 0
    running: int = 0
    service_s: float = 0.0  # measured service received, for metrics and tests
    last_arrival_at: float = -math.inf
    idle_since: float = -math.inf  # when it last had nothing queued or running
    recent_service_s: float = 0.0  # service, decaying with time constant shared_window_s (see _recent_use)
    recent_at: float = 0.0
    went_idle_at: float | None = None  # its last batch finished and left it nothing: awaiting its comeback
    comeback_s: float | None = None  # mean time from going idle to its next arrival (anticipation, see _hold)
    batch_s: float | None = None  # mean measured time of its batches (anticipation, see _hold)
    last_batch_n: int = 0  # requests in its last batch: how many to expect back when it comes back
    answered_at: float = -math.inf  # when its last batch finished
    awaiting: int = 0  # requests of that batch whose clients have not sent their next one yet
    regroup_s: float | None = None  # mean time from a batch's end until as many requests came back
    queues: dict[str, deque[QueuedRequest]] = field(default_factory=dict)
    gaps: dict[str, ArrivalGap] = field(default_factory=dict)
    forgotten: bool = False  # deleted while it still had work: dropped when that work is done


@dataclass
class DeviceState:
    name: str
    current_tenant: str | None = None
    busy: bool = False
    quarantined: bool = False
    sticky_since: float | None = None
    hold_until: float | None = None  # held idle for its current tenant's expected next request until then
    holds: int = 0  # times the device was held idle for its current tenant (anticipation)
    run_ends: dict[str, int] = field(default_factory=dict)  # why the device left a tenant -> count (RUN_END_*)
    hold_declined: str = ""  # why the last anticipation check did not wait (a RUN_END_EMPTY_* reason)
    scrub_s: float | None = None  # mean measured between-tenant scrub (anticipation weighs waits against it)
    tenant_switches: int = 0
    scrubs: int = 0
    running: Batch | None = None  # the batch on the device now (when busy)
    expected_end: float = 0.0  # when `running` is expected to end (cost estimates; lookahead)
    ahead: Batch | None = None  # the next batch, handed over to be prepared while `running` runs
    aheads: int = 0  # batches handed over ahead (diagnostics)


@dataclass(eq=False)
class Batch:
    """Requests of one tenant and one model, to run on `device`; scrub first when `needs_scrub`."""

    device: str
    tenant_id: str
    model: str
    runner: BatchRunner[Any, Any]
    requests: list[QueuedRequest]
    previous_tenant: str | None
    tenant_switch: bool
    needs_scrub: bool
    estimated_s: float
    charged_virtual: float
    dispatched_at: float
    stayed_for_switch: bool
    ahead: bool = False  # handed to a busy device to be prepared while the batch before it runs

    @property
    def prepares(self) -> bool:
        """Whether the driver prepares it (`runner.prepare`) before running it (see batching.py)."""
        return prepares_ahead(self.runner)

    @property
    def items(self) -> list[Any]:
        return [r.item for r in self.requests]


class SchedulerCore:
    """Per-tenant queues, VTC counters, per-device current tenant; see the module docstring."""

    def __init__(self, config: SchedulerConfig, devices: Sequence[str]) -> None:
        if not devices:
            raise ValueError("the scheduler needs at least one device")
        if len(set(devices)) != len(devices):
            raise ValueError(f"device names must be unique: {list(devices)}")
        self.config = config
        self.devices: dict[str, DeviceState] = {name: DeviceState(name) for name in devices}
        self.tenants: dict[str, TenantState] = {}
        self.costs = BatchCostModel(config.initial_cost_estimate_s)
        # The preparation part of `costs` for runners that prepare (batching.py): when to hand a busy device
        # its next batch, and how much shorter the device's part of a batch prepared ahead is.
        self.prepare_costs = BatchCostModel(config.initial_cost_estimate_s)
        self.total_queued = 0
        self.total_running = 0
        self.shutting_down = False
        self._seq = itertools.count()
        self._deadlines: list[tuple[float, int, QueuedRequest]] = []
        self._floor = 0.0
        # Diagnostics of the last `admit`, for the driver's metrics: the comeback it measured (first request
        # after the tenant's work ran out) and the regroup (last of its previous batch's clients back).
        self.last_comeback_s: float | None = None
        self.last_regroup_s: float | None = None
        self._forgotten_ids: dict[str, None] = {}  # deleted tenants, oldest first (FORGOTTEN_MEMORY)

    # --- tenants -------------------------------------------------------------------------------------
    def tenant(self, tenant_id: str, now: float = 0.0) -> TenantState:
        """The tenant's state, created on first use (lookups that must not create one use `tenants.get`)."""
        state = self.tenants.get(tenant_id)
        if state is None:
            limits = self.config.default_limits
            state = TenantState(tenant_id, self.config.default_weight, limits, bucket_for(limits, now))
            state.forgotten = tenant_id in self._forgotten_ids  # a late request of a deleted tenant
            self.tenants[tenant_id] = state
        return state

    def is_forgotten(self, tenant_id: str) -> bool:
        """Whether the tenant was deleted (`forget`) and its state is gone or goes with its last request."""
        state = self.tenants.get(tenant_id)
        return state.forgotten if state is not None else tenant_id in self._forgotten_ids

    def forget(self, tenant_id: str) -> bool:
        """Drop a deleted tenant's state (counter, weight, limits, statistics) so tenant churn does not grow
        the scheduler; with work still queued or running, at the moment the last of it is done.
        True when it is gone now."""
        self._forgotten_ids[tenant_id] = None
        if len(self._forgotten_ids) > FORGOTTEN_MEMORY:
            del self._forgotten_ids[next(iter(self._forgotten_ids))]
        state = self.tenants.get(tenant_id)
        if state is None:
            return True
        state.forgotten = True
        return self._drop_if_forgotten(state)

    def queued_of(self, tenant_id: str | None) -> int:
        state = self.tenants.get(tenant_id) if tenant_id else None
        return state.queued if state is not None else 0

    def _drop_if_forgotten(self, state: TenantState) -> bool:
        if state.forgotten and state.queued == 0 and state.running == 0:
            self.tenants.pop(state.tenant_id, None)
            return True
        return False

    def set_weight(self, tenant_id: str, weight: float) -> float:
        """Takes effect on the next charge; the counter already earned is kept (it is in virtual seconds).
        Returns the weight in use (clamped, scheduler_config.check_weight)."""
        effective = check_weight(weight)
        if tenant_id in self.tenants or not self.is_forgotten(tenant_id):  # (no state for a deleted tenant)
            self.tenant(tenant_id).weight = effective
        return effective

    def set_limits(self, tenant_id: str, limits: TenantLimits, now: float) -> None:
        """New limits apply to the next admission; requests already admitted stay."""
        if tenant_id not in self.tenants and self.is_forgotten(tenant_id):
            return  # (no state for a deleted tenant)
        state = self.tenant(tenant_id, now)
        state.bucket = bucket_for(limits, now, state.bucket)
        state.limits = limits

    # --- admission -----------------------------------------------------------------------------------
    def admit(self, tenant_id: str, model: str, item: Any, runner: BatchRunner[Any, Any], now: float) -> QueuedRequest:
        """Queue one request or raise the admission error (503 shutting_down/overloaded, 429)."""
        if self.shutting_down:
            raise shutting_down_error()
        if all(d.quarantined for d in self.devices.values()):
            raise no_device_error()
        cfg = self.config
        check_runner(runner, cfg.max_batch_delay_ms)
        usable = self._usable_devices()
        check_global(
            self.total_queued,
            cfg.max_total_queued,
            self.total_queued * self.costs.estimate(model, 1) / usable,
            cfg.retry_after_max_s,
        )
        # Only now: an overloaded scheduler refused a flood of made-up tenant ids and kept a state for each.
        state = self.tenant(tenant_id, now)
        check_tenant(
            tenant_id,
            state.limits,
            queued=state.queued,
            in_flight=state.queued + state.running,
            bucket=state.bucket,
            now=now,
            drain_estimate_s=self._tenant_drain_s(state, model, runner),
            retry_after_max_s=cfg.retry_after_max_s,
        )
        if state.bucket is not None:
            state.bucket.take(now)
        comeback = state.went_idle_at is not None and state.queued == 0 and state.running == 0
        sample = 0.0
        if comeback and state.went_idle_at is not None:
            # How soon a tenant comes back after its work ran out (a closed-loop client's round trip, or the
            # gap of an open stream): what anticipation may wait for. Capped so one long absence does not
            # take many comebacks to forget.
            sample = min(now - state.went_idle_at, cfg.shared_window_s)
            previous = state.comeback_s
            state.comeback_s = sample if previous is None else previous + COMEBACK_ALPHA * (sample - previous)
        state.went_idle_at = None
        self.last_comeback_s = sample if comeback else None
        self.last_regroup_s = None
        if state.awaiting > 0:
            state.awaiting -= 1
            if state.awaiting == 0:
                # Every client of its last batch is back (a closed-loop tenant's full round trip, including
                # the server's HTTP work for each of them): how long a device would wait to batch them again.
                regroup = min(now - state.answered_at, cfg.shared_window_s)
                previous = state.regroup_s
                state.regroup_s = regroup if previous is None else previous + COMEBACK_ALPHA * (regroup - previous)
                self.last_regroup_s = regroup
        if state.queued == 0 and state.running == 0:
            # Becoming active after a real idle period: no credit for the idle time. Running counts as
            # active, and a gap shorter than the grace keeps a lead of about one batch: a closed-loop
            # tenant's clients resubmit a moment after their batch answers, and lifting it then would take
            # away the lead its counter rightly has (measured: 38/62 instead of 50/50 for two equal tenants).
            # No more than that: a tenant that trickles one cheap request every grace period is never idle
            # for long, and kept its whole lead; a minute of that banked ~50 s of credit, and its flood then
            # had the device to itself for those 50 s (tests/test_scheduler_redteam.py).
            others = [t for t in self.tenants.values() if (t.queued or t.running) and t is not state]
            lead = 0.0
            if now - state.idle_since <= cfg.idle_grace_s:
                lowest = min(others, key=lambda t: t.counter, default=state)
                batch_s = max(cfg.fairness_bound_s, state.batch_s or 0.0, lowest.batch_s or 0.0)
                lead = batch_s / min(state.weight, lowest.weight)
            # Lifted to the others' measured service, not to their estimates in flight: lifted to a counter
            # that held the running batch's estimate, a newcomer tied the heavy tenant once that batch
            # measured what it was estimated at, lost the tie to its older request, and waited a second
            # heavy batch (0.5 s behind requests of 0.3 s; tests/test_scheduler_redteam.py).
            measured = (t.counter - t.estimated for t in others)
            state.counter = lifted_counter(state.counter, measured, self._floor, lead=lead)
        request = QueuedRequest(
            next(self._seq), tenant_id, model, item, runner, now, now + state.limits.queue_timeout_s
        )
        state.queues.setdefault(model, deque()).append(request)
        state.gaps.setdefault(model, ArrivalGap()).observe(now)
        state.queued += 1
        state.last_arrival_at = now
        self.total_queued += 1
        heapq.heappush(self._deadlines, (request.deadline, request.seq, request))
        return request

    def _usable_devices(self) -> int:
        return max(1, sum(1 for d in self.devices.values() if not d.quarantined))

    def _tenant_drain_s(self, state: TenantState, model: str, runner: BatchRunner[Any, Any]) -> float:
        """About how long until one of this tenant's slots frees: one of its batches at its fair share."""
        batch = self.costs.estimate(model, min(batch_limit(runner), max(1, state.queued)))
        active = sum(t.weight for t in self.tenants.values() if (t.queued or t.running) and t is not state)
        return batch * (active + state.weight) / state.weight / self._usable_devices()

    def cancel(self, request: QueuedRequest) -> bool:
        """Remove a queued request (its submitter went away). False when it already runs or has finished."""
        if request.state != "queued":
            return False
        self._unqueue(request)
        request.state = "cancelled"
        request.item = None
        return True

    def _unqueue(self, request: QueuedRequest) -> None:
        state = self.tenants[request.tenant_id]
        state.queues[request.model].remove(request)
        state.queued -= 1
        self.total_queued -= 1
        self._drop_if_forgotten(state)

    def expire(self, now: float) -> list[QueuedRequest]:
        """Requests whose queue timeout passed before they reached a worker (answer them 408)."""
        expired: list[QueuedRequest] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, _, request = heapq.heappop(self._deadlines)
            if request.state == "queued":
                self._unqueue(request)
                request.state = "expired"
                request.item = None
                expired.append(request)
        return expired

    def drain_queued(self) -> list[QueuedRequest]:
        """Take every queued request out (shutdown deadline, no device left); the caller answers them."""
        out: list[QueuedRequest] = []
        for state in self.tenants.values():
            for queue in state.queues.values():
                while queue:
                    request = queue.popleft()
                    request.state = "cancelled"
                    request.item = None
                    out.append(request)
            state.queued = 0
        self.total_queued = 0
        for state in list(self.tenants.values()):
            self._drop_if_forgotten(state)
        return out

    # --- dispatch ------------------------------------------------------------------------------------
    def dispatch(self, now: float) -> list[Batch]:
        """A batch for every free device that has work it should start now."""
        free = [d for d in self.devices.values() if not d.busy and not d.quarantined]
        # Devices whose current tenant has work go first, so that work lands where no scrub is needed.
        free.sort(key=lambda d: 0 if self.queued_of(d.current_tenant) else 1)
        batches: list[Batch] = []
        for device in free:
            batch = self._next_batch(device, now)
            if batch is not None:
                batches.append(batch)
        # Then busy devices whose running batch ends soon get their tenant's next batch to prepare meanwhile.
        for device in self.devices.values():
            if device.busy and device.ahead is None and not device.quarantined:
                batch = self._next_batch(device, now, ahead=True)
                if batch is not None:
                    batches.append(batch)
        return batches

    def _ahead_queue(self, device: DeviceState, now: float) -> deque[QueuedRequest] | None:
        """The queue whose next batch the busy `device` may prepare ahead now, if any (batching.py): its
        running batch's tenant and runner, a runner that prepares ahead, no scrub before the running batch
        (so none between the two), no light tenant around, and now inside the window before the running
        batch's expected end."""
        queue = self._ahead_candidate(device, now)
        if queue is None:
            return None
        window = self._ahead_window(device, queue)
        if window is None or not window[0] <= now <= window[1]:
            return None
        return queue

    def _ahead_candidate(self, device: DeviceState, now: float) -> deque[QueuedRequest] | None:
        """`_ahead_queue` but for the time window."""
        running = device.running
        if running is None or running.needs_scrub or not prepares_ahead(running.runner) or self.shutting_down:
            return None
        if not self.config.prepare_ahead:
            return None
        state = self.tenants.get(running.tenant_id)
        queue = state.queues.get(running.model) if state is not None else None
        if state is None or not queue or queue[0].runner is not running.runner:
            return None
        if self._light_tenant_around(state, now):
            # A batch handed over cannot be taken back: a light tenant's request that comes in just after
            # would wait for it too, a whole batch more (measured: light p99 96 -> 120 ms with 16 heavy
            # clients). As with the batch cap, only among heavy tenants (or alone) is it handed over early.
            return None
        return queue

    def _ahead_window(self, device: DeviceState, queue: deque[QueuedRequest]) -> tuple[float, float] | None:
        running = device.running
        assert running is not None
        n = min(len(queue), batch_limit(queue[0].runner))
        if not self.prepare_costs.measured(running.model):
            return None  # no preparation measured yet: no idea when to start it
        if n >= batch_limit(queue[0].runner):
            return -math.inf, device.expected_end + self._device_time_s(running)  # full: no company to wait for
        running_s = self._device_time_s(running)
        return lookahead_window(device.expected_end, running_s, self.prepare_costs.estimate(running.model, n))

    def _device_time_s(self, batch: Batch) -> float:
        """Expected time of `batch` on its device: its cost, less its preparation when that ran ahead."""
        estimate = self.costs.estimate(batch.model, len(batch.requests))
        if batch.ahead:
            estimate -= min(0.9 * estimate, self.prepare_costs.estimate(batch.model, len(batch.requests)))
        if batch.needs_scrub and self.devices[batch.device].scrub_s is not None:
            estimate += self.devices[batch.device].scrub_s or 0.0
        return estimate

    def _ready_queue(self, state: TenantState, now: float) -> deque[QueuedRequest] | None:
        """The tenant's queue whose batch is ready and holds its oldest request, if any is ready."""
        best: deque[QueuedRequest] | None = None
        for model, queue in state.queues.items():
            if (
                queue
                and ready_at(queue, state.gaps.get(model), self.config.max_batch_delay_ms, draining=self._no_delay)
                <= now
                and (best is None or queue[0].seq < best[0].seq)
            ):
                best = queue
        return best

    def _next_batch(self, device: DeviceState, now: float, *, ahead: bool = False) -> Batch | None:
        """The device's next batch. `ahead`: the device is busy, and this batch, if any, is prepared while its
        running batch ends; only the running batch's tenant and model qualify (`_ahead_queue`), and only
        when the policy would choose that tenant now; otherwise the device chooses when it is free."""
        ahead_queue = self._ahead_queue(device, now) if ahead else None
        if ahead and ahead_queue is None:
            return None
        backlogged = [t for t in self.tenants.values() if t.queued]
        if not backlogged:
            return None
        self._floor = max(self._floor, min(t.counter for t in backlogged))
        ready: dict[str, deque[QueuedRequest]] = {}
        for state in backlogged:
            queue = self._ready_queue(state, now)
            if queue is not None:
                ready[state.tenant_id] = queue
        if ahead_queue is not None and device.current_tenant is not None:
            ready[device.current_tenant] = ahead_queue  # its device is about to be free: no waiting for company
        if not ready:
            return None
        current = self.tenants.get(device.current_tenant) if device.current_tenant else None
        holding = False
        if not ahead:  # (a busy device is not held, and its current tenant has work)
            previous_hold, device.hold_until = device.hold_until, None
            holding = previous_hold is not None and previous_hold > now
        if current is not None and not ahead:
            if not current.queued:
                hold_until = self._hold(device, current, backlogged, now)
            elif (
                holding
                and current.queued < current.last_batch_n
                and not self._others_waiting(current.tenant_id, now)[1]
            ):
                # It is coming back, but fewer of its requests are here than its last batch answered: wait
                # for the rest (within the same hold), or its clients make a batch of one now and another
                # batch of one a moment later.
                hold_until = previous_hold
            else:
                hold_until = None
            if hold_until is not None:
                device.holds += not holding
                if device.sticky_since is None:
                    device.sticky_since = now  # the wait is part of the sticky run, bounded with it
                device.hold_until = hold_until
                return None
        if current is not None and current.queued and current.tenant_id not in ready:
            # The device is about to be used anyway: letting the current tenant's partial batch wait for
            # company would only hand the device to another tenant, at the price of a scrub.
            ready[current.tenant_id] = min((q for q in current.queues.values() if q), key=lambda q: q[0].seq)
        candidates = [
            Candidate(
                tid,
                self.tenants[tid].counter,
                q[0].enqueued_at,
                q[0].seq,
                self.costs.estimate(q[0].model, min(len(q), batch_limit(q[0].runner))),
                self.tenants[tid].weight,
            )
            for tid, q in ready.items()
        ]
        seq_below = math.inf
        if self.config.policy == "fifo":
            choice = choose_fifo(candidates)
            chosen = ready[choice.tenant_id]
            seq_below = min(
                (q[0].seq for t in backlogged for q in t.queues.values() if q and q is not chosen), default=math.inf
            )
        else:
            oldest_other_at, light_waiting = self._others_waiting(device.current_tenant, now)
            choice = choose_fair(
                candidates,
                current=device.current_tenant,
                sticky_since=device.sticky_since,
                oldest_other_at=oldest_other_at,
                light_tenant_waiting=light_waiting,
                # A batch prepared ahead starts when the running one ends: the latency bound is kept then.
                now=max(now, device.expected_end) if ahead else now,
                fairness_bound_s=self.config.fairness_bound_s,
                latency_bound_s=self.config.latency_bound_s,
            )
        if ahead and choice.tenant_id != device.current_tenant:
            return None  # another tenant is next: the device chooses when it is free (and scrubs then)
        device.sticky_since = choice.sticky_since
        state = self.tenants[choice.tenant_id]
        if current is not None and current is not state:
            reason = self._run_end_reason(device, current, state, holding, now)
            device.run_ends[reason] = device.run_ends.get(reason, 0) + 1
        queue = ready[choice.tenant_id]
        cap = self._shared_batch_limit(state, queue[0].model, now)
        requests = take_batch(queue, seq_below=seq_below, max_items=cap)
        for request in requests:
            request.state = "running"
        n = len(requests)
        state.queued -= n
        state.running += n
        self.total_queued -= n
        self.total_running += n
        model = requests[0].model
        estimate = self.costs.estimate(model, n)
        charged = estimate / state.weight
        state.counter += charged
        state.estimated += charged
        previous = device.current_tenant
        switch = previous is not None and previous != state.tenant_id
        device.current_tenant = state.tenant_id
        batch = Batch(
            device.name,
            state.tenant_id,
            model,
            requests[0].runner,
            requests,
            previous,
            switch,
            switch or (previous is None and self.config.scrub_on_first_use),
            estimate,
            charged,
            now,
            choice.stayed_for_switch,
            ahead,
        )
        if ahead:
            device.ahead = batch
            device.aheads += 1
        else:
            device.busy = True
            device.running = batch
            device.expected_end = now + self._device_time_s(batch)
        return batch

    def _hold(
        self, device: DeviceState, current: TenantState, backlogged: list[TenantState], now: float
    ) -> float | None:
        """Until when to keep the free device idle for its current tenant's next request, or None: serve now.

        Anticipatory scheduling (Iyer and Druschel, SOSP 2001), applied to tenant switches. A closed-loop
        tenant's queue is empty for an instant after each batch (its clients are reading their answers
        and sending the next requests); switching then costs a scrub now and another when it comes back.
        The device waits for it only when that is likely to pay:
        - its mean comeback is at most the device's mean scrub (`HOLD_SCRUBS`), so the longest wait,
          `HOLD_COMEBACKS` mean comebacks, costs about the two scrubs it saves (on a CPU whose scrub takes
          0.3 ms and whose clients come back in milliseconds, it never waits);
        - and at most its own mean batch, and under the latency bound: a sparse tenant, whose next request
          is a long way off, is never waited for;
        - and within the stickiness rules: the wait starts (or continues) the device's sticky run, so it
          ends with the latency bound (no other tenant's request waits more than `latency_bound_s` for the
          run) and needs the fairness bound to hold; it never holds against a light tenant. Either bound
          at 0 turns it off, as it does stickiness; so does `anticipate=False`.
        """
        cfg = self.config
        device.hold_declined = RUN_END_EMPTY_OFF
        if cfg.policy != "fair" or not cfg.anticipate or self._no_delay or cfg.fairness_bound_s <= 0:
            return None
        if current.running or current.went_idle_at is None or current.comeback_s is None or current.batch_s is None:
            device.hold_declined = RUN_END_EMPTY_UNKNOWN
            return None
        if current.comeback_s > current.batch_s or current.comeback_s >= cfg.latency_bound_s:
            device.hold_declined = RUN_END_EMPTY_SLOW
            return None
        if current.comeback_s > HOLD_SCRUBS * (device.scrub_s or 0.0):
            device.hold_declined = RUN_END_EMPTY_DEARER
            return None
        expected_by = current.went_idle_at + HOLD_COMEBACKS * current.comeback_s
        if expected_by <= now:
            device.hold_declined = RUN_END_EMPTY_LATE
            return None  # it did not come back when expected: do not wait on
        least = min(backlogged, key=lambda t: t.counter)
        if (current.counter - least.counter) * least.weight > cfg.fairness_bound_s:
            device.hold_declined = RUN_END_FAIRNESS
            return None
        oldest_other_at, light_waiting = self._others_waiting(current.tenant_id, now)
        if light_waiting or oldest_other_at is None:
            device.hold_declined = RUN_END_LIGHT
            return None
        since = now if device.sticky_since is None else device.sticky_since
        latency_ends = max(oldest_other_at, since) + cfg.latency_bound_s
        if latency_ends <= now:
            device.hold_declined = RUN_END_LATENCY
            return None
        return min(expected_by, latency_ends)

    def _run_end_reason(
        self, device: DeviceState, current: TenantState, chosen: TenantState, holding: bool, now: float
    ) -> str:
        """Why the device is leaving `current` for `chosen` (diagnostics: `DeviceState.run_ends`)."""
        if self.config.policy != "fair":
            return RUN_END_FIFO
        if not current.queued:
            return RUN_END_EMPTY_HOLD_ENDED if holding else device.hold_declined or RUN_END_EMPTY_OFF
        if self._others_waiting(current.tenant_id, now)[1]:
            return RUN_END_LIGHT
        if (current.counter - chosen.counter) * chosen.weight > self.config.fairness_bound_s:
            return RUN_END_FAIRNESS
        return RUN_END_LATENCY

    def _shared_batch_limit(self, state: TenantState, model: str, now: float) -> int | None:
        """While a light tenant is around, cap a batch at `shared_batch_cost_factor` one-request batches.

        A batch cannot be interrupted, so it is the latency floor of every other tenant: a light tenant's
        request that arrives just after a heavy tenant's 32-request batch started waits for all of it. The
        cap is relative to the model's own one-request cost, so it costs little where batching gains little
        (per-item cost dominates, as on CPUs) and leaves big batches where they are nearly free (a fixed
        cost dominates, as on GPUs). Alone on the scheduler, a tenant batches up to `max_batch_size`, and so
        it does among tenants that are all heavy (none lately served under `LIGHT_SHARE` of its fair
        share): they wait for each other's batches whatever their size, and capping them only adds batches
        and tenant switches (measured through the real server with 8 tenants: mean batch 2.0 capped, so a
        switch every 2 requests).
        """
        factor = self.config.shared_batch_cost_factor
        if factor is None or math.isinf(factor) or not self._light_tenant_around(state, now):
            return None
        queue = state.queues.get(model)
        limit = batch_limit(queue[0].runner) if queue else 1
        # None until the fixed cost is known: nobody can say what a cap would cost
        return self.costs.largest_within(model, factor, limit)

    def _light_tenant_around(self, state: TenantState, now: float) -> bool:
        """Whether another tenant had work within `shared_window_s` and was lately served under
        `LIGHT_SHARE` of its weight's share (or nobody was served lately)."""
        horizon = now - self.config.shared_window_s
        around = [t for t in self.tenants.values() if t is not state and (t.queued or t.last_arrival_at >= horizon)]
        if not around:
            return False
        recent = {t.tenant_id: self._recent_use(t, now) for t in (*around, state)}
        total_recent = sum(recent.values())
        total_weight = sum(t.weight for t in around) + state.weight
        return total_recent <= 0 or any(
            recent[t.tenant_id] < LIGHT_SHARE * t.weight / total_weight * total_recent for t in around
        )

    def _others_waiting(self, tenant_id: str | None, now: float) -> tuple[float | None, bool]:
        """Enqueue time of the oldest request of another tenant, and whether a light tenant is waiting.

        Light: its share of the service lately given to the tenants with work now is under `LIGHT_SHARE`
        of its weight's share (stickiness never holds against it; runtime/fairness.py).
        """
        oldest: float | None = None
        active = [t for t in self.tenants.values() if t.queued or t.running or t.tenant_id == tenant_id]
        active_weight = sum(t.weight for t in active)
        recent = {t.tenant_id: self._recent_use(t, now) for t in active}
        total_recent = sum(recent.values())
        light = False
        for state in active:
            if state.queued and state.tenant_id != tenant_id:
                for queue in state.queues.values():
                    if queue and (oldest is None or queue[0].enqueued_at < oldest):
                        oldest = queue[0].enqueued_at
                fair = state.weight / active_weight * total_recent
                light = light or recent[state.tenant_id] < LIGHT_SHARE * fair or total_recent == 0
        return oldest, light

    def _recent_use(self, state: TenantState, now: float) -> float:
        """Device-seconds per second the tenant used lately (decaying with time constant shared_window_s)."""
        tau = self.config.shared_window_s
        return state.recent_service_s * math.exp(-max(0.0, now - state.recent_at) / tau) / tau

    def complete(
        self,
        batch: Batch,
        service_s: float,
        now: float,
        *,
        ran: bool = True,
        scrub_s: float = 0.0,
        prepare_s: float | None = None,
        ended_at: float | None = None,
    ) -> None:
        """Record a finished batch: correct the charge to the measured `service_s`, free the device.

        `scrub_s`: how long the between-tenant scrub before it took (when it had one), what anticipation
        weighs a wait against. `prepare_s`: the part of `service_s` its runner's `prepare` took (runners
        that prepare; batching.py), what the lookahead weighs. `ended_at`: when it ended on its device, if
        that was before `now` (a batch prepared behind it started then).

        `ran=False` when the batch never ran because the scrub before it failed: the charge is refunded
        and the device keeps its previous tenant, so the next other-tenant batch scrubs again.
        """
        device = self.devices[batch.device]
        if device.ahead is batch:  # failed before the batch ahead of it ended (the driver could not start it)
            device.ahead = None
        elif device.ahead is not None:  # the batch prepared ahead runs now
            device.running, device.ahead = device.ahead, None
            device.expected_end = min(now, now if ended_at is None else ended_at) + self._device_time_s(device.running)
        else:
            device.busy = False
            device.running = None
        state = self.tenants[batch.tenant_id]
        n = len(batch.requests)
        state.running -= n
        self.total_running -= n
        state.estimated = state.estimated - batch.charged_virtual if state.running else 0.0  # (no float drift)
        if state.queued == 0 and state.running == 0:
            state.idle_since = now
            if ran:
                state.went_idle_at = now
        for request in batch.requests:
            request.state = "done"
            request.item = None  # the deadline heap may hold the request a while; not its payload
        if not ran:
            state.counter -= batch.charged_virtual
            device.current_tenant = batch.previous_tenant
            device.sticky_since = None
            self._drop_if_forgotten(state)
            return
        if not (service_s >= 0 and math.isfinite(service_s)):
            # An injected clock that went backwards (or a NaN) would credit the tenant, or poison its
            # counter for good: charge what was estimated instead.
            service_s = batch.estimated_s
        state.counter += service_s / state.weight - batch.charged_virtual
        state.service_s += service_s
        state.recent_service_s = self._recent_use(state, now) * self.config.shared_window_s + service_s
        state.recent_at = now
        state.last_batch_n = n
        state.answered_at = now
        state.awaiting = n
        state.batch_s = (
            service_s if state.batch_s is None else state.batch_s + COMEBACK_ALPHA * (service_s - state.batch_s)
        )
        self.costs.observe(batch.model, n, service_s)
        if prepare_s is not None:
            self.prepare_costs.observe(batch.model, n, prepare_s)
        device.tenant_switches += batch.tenant_switch
        device.scrubs += batch.needs_scrub
        if batch.needs_scrub:
            previous = device.scrub_s
            device.scrub_s = scrub_s if previous is None else previous + COMEBACK_ALPHA * (scrub_s - previous)
        self._drop_if_forgotten(state)

    def quarantine(self, device_name: str) -> None:
        """Stop placing work on a device whose scrub failed verification (scrubbers/base.py)."""
        self.devices[device_name].quarantined = True

    def begin_shutdown(self) -> None:
        """Refuse new requests (503 shutting_down); partial batches stop waiting for company."""
        self.shutting_down = True

    # --- time ----------------------------------------------------------------------------------------
    def next_wake(self, now: float) -> float | None:
        """The next time `expire` or `dispatch` has something to do without any new event, if any."""
        while self._deadlines and self._deadlines[0][2].state != "queued":
            heapq.heappop(self._deadlines)
        times = [self._deadlines[0][0]] if self._deadlines else []
        times += [
            d.hold_until
            for d in self.devices.values()
            if d.hold_until is not None and d.hold_until > now and not d.busy and not d.quarantined
        ]
        for device in self.devices.values():
            if device.busy and device.ahead is None and not device.quarantined:
                queue = self._ahead_candidate(device, now)
                window = None if queue is None else self._ahead_window(device, queue)
                if window is not None and window[0] > now:
                    times.append(window[0])  # a batch may be handed over ahead from then
        if any(not d.busy and not d.quarantined for d in self.devices.values()):
            for state in self.tenants.values():
                for model, queue in state.queues.items():
                    if queue:
                        at = ready_at(
                            queue, state.gaps.get(model), self.config.max_batch_delay_ms, draining=self._no_delay
                        )
                        if at > now:
                            times.append(at)
        return min(times, default=None)

    @property
    def _no_delay(self) -> bool:
        # The FIFO baseline batches only what is contiguous at the head of the global order, so it never
        # waits; a draining scheduler never waits either.
        return self.shutting_down or self.config.policy == "fifo"

    @property
    def idle(self) -> bool:
        return self.total_queued == 0 and self.total_running == 0


__all__ = ["Batch", "DeviceState", "SchedulerConfig", "SchedulerCore", "TenantState", "check_weight"]
