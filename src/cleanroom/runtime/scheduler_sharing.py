"""When a device's run for one tenant yields to the others: anticipation holds, light tenants, run ends.

A layer of `SchedulerCore` (scheduler_core.py) kept apart from batch selection (scheduler_dispatch.py)
because it is the one part that looks at every other tenant to decide about the current one: whether a
device waits idle for its tenant's next request (Iyer and Druschel's anticipatory scheduling), whether a
light tenant is waiting (stickiness never holds against it), how large a batch may be while one is
around, and why a run ended (diagnostics). It reads the state and changes only the device's hold records.
"""

from __future__ import annotations

import math

from cleanroom.runtime.batching import batch_limit
from cleanroom.runtime.scheduler_config import LIGHT_SHARE
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
    CoreState,
    DeviceState,
    TenantState,
)

# Anticipation (`_hold`): comeback, batch and scrub times are moving averages (weight of the newest sample);
# a hold lasts at most HOLD_COMEBACKS mean comebacks, and is tried only when a mean comeback is at most
# HOLD_SCRUBS mean scrubs (the longest hold then costs about the two scrubs, away and back, that it saves).
COMEBACK_ALPHA = 0.2
HOLD_COMEBACKS = 2.0
HOLD_SCRUBS = 1.0


class SharingPolicy(CoreState):
    """Holds, light tenants and run ends; see the module docstring."""

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
