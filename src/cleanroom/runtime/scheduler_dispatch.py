"""Batch selection: which free device runs which tenant's batch now, which busy device gets its next batch
to prepare ahead, and when the next of these becomes due.

A layer of `SchedulerCore` (scheduler_core.py) kept apart from admission and completion because it is
the policy's hot path and its only consumer of fairness.py (who next) and batching.py (what goes together):
`dispatch` and `next_wake` change only queues, counters and devices, never admit or answer anything.
"""

from __future__ import annotations

import heapq
import math
from collections import deque

from cleanroom.runtime.batching import (
    QueuedRequest,
    batch_limit,
    lookahead_window,
    prepares_ahead,
    ready_at,
    take_batch,
)
from cleanroom.runtime.fairness import Candidate, choose_fair, choose_fifo
from cleanroom.runtime.scheduler_sharing import SharingPolicy
from cleanroom.runtime.scheduler_state import Batch, DeviceState, TenantState


class BatchSelection(SharingPolicy):
    """`dispatch` and `next_wake`; see the module docstring."""

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
