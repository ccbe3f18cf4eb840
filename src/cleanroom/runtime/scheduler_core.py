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

This module is the core's entry point and its bookkeeping layer (the tenants' settings, admission,
cancellation, expiry, completion). `SchedulerCore` is built on layers kept in their own modules: the
records in scheduler_state.py, the sharing rules (anticipation, light tenants) in scheduler_sharing.py,
batch selection (`dispatch`, `next_wake`) in scheduler_dispatch.py. Every name importable from here
before that split still is.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from typing import Any

from cleanroom.runtime.admission import (
    TenantLimits,
    bucket_for,
    check_global,
    check_tenant,
    no_device_error,
    shutting_down_error,
)
from cleanroom.runtime.batching import ArrivalGap, BatchRunner, QueuedRequest, batch_limit, check_runner
from cleanroom.runtime.fairness import lifted_counter
from cleanroom.runtime.scheduler_config import SchedulerConfig, check_weight
from cleanroom.runtime.scheduler_dispatch import BatchSelection
from cleanroom.runtime.scheduler_sharing import COMEBACK_ALPHA, HOLD_COMEBACKS, HOLD_SCRUBS
from cleanroom.runtime.scheduler_state import (
    RUN_END_EMPTY_DEARER,
    RUN_END_EMPTY_HOLD_ENDED,
    RUN_END_EMPTY_LATE,
    RUN_END_EMPTY_OFF,
    RUN_END_EMPTY_SLOW,
    RUN_END_EMPTY_UNKNOWN,
    RUN_END_FAIRNESS,
    RUN_END_FIFO,
    RUN_END_LATENCY,
    RUN_END_LIGHT,
    Batch,
    DeviceState,
    TenantState,
)

# How many deleted tenant ids the core remembers (`forget`), so that a request of a deleted tenant admitted
# after its state was dropped (authenticated before the deletion, body still uploading) does not bring the
# state back for good. Tenant ids are random (keys/registry.py), never reused.
FORGOTTEN_MEMORY = 4096


class SchedulerCore(BatchSelection):
    """Per-tenant queues, VTC counters, per-device current tenant; see the module docstring.

    Built in layers, each in its own module: `CoreState` (scheduler_state.py: the records), `SharingPolicy`
    (scheduler_sharing.py: holds and light tenants), `BatchSelection` (scheduler_dispatch.py: `dispatch`,
    `next_wake`); this class adds the tenants' settings, admission, cancellation and completion.
    """

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


__all__ = [
    "COMEBACK_ALPHA",
    "FORGOTTEN_MEMORY",
    "HOLD_COMEBACKS",
    "HOLD_SCRUBS",
    "RUN_END_EMPTY_DEARER",
    "RUN_END_EMPTY_HOLD_ENDED",
    "RUN_END_EMPTY_LATE",
    "RUN_END_EMPTY_OFF",
    "RUN_END_EMPTY_SLOW",
    "RUN_END_EMPTY_UNKNOWN",
    "RUN_END_FAIRNESS",
    "RUN_END_FIFO",
    "RUN_END_LATENCY",
    "RUN_END_LIGHT",
    "Batch",
    "DeviceState",
    "SchedulerConfig",
    "SchedulerCore",
    "TenantState",
    "check_weight",
]
