"""Which tenant a free device serves next: weighted virtual counters (VTC) with bounded tenant stickiness.

Pure functions of (candidates, counters, the device's current tenant, now): no clock, no asyncio, no I/O, so
the policy is tested deterministically and the benchmark simulation runs the very same code.

**Fair share of measured service (VTC, Sheng et al., "Fairness in Serving Large Language Models", OSDI
2024).** Each tenant has a virtual counter: service seconds it received divided by its weight. A free device
serves the tenant with a ready batch and the smallest counter; the batch is charged `seconds / weight` (an
estimate at dispatch, corrected to the measured time at completion). While two tenants stay backlogged their
counters differ by about one batch, so their service is proportional to their weights. Why VTC and not
deficit round robin: DRR must know a request's cost before it runs (to compare with the deficit) and we
only know it after; VTC charges afterwards, needs no quantum to tune, takes a weight change at once (future
charges use the new weight), and has a simple rule for tenants that come back:

**No banked credit.** A tenant that becomes active (nothing queued or running, for longer than
`idle_grace_s`) has its counter lifted to the smallest counter of the active tenants, or to the scheduler's
floor when none is: idling earns nothing, so a tenant that was away cannot come back and monopolise the
device. The short grace exists because a closed-loop tenant is idle for a moment between its batch's
answer and its clients' next requests; lifting it then took away its rightful lead (measured: 38/62
instead of 50/50 for two equal tenants).

**Fewer tenant switches.** Serving another tenant costs a between-tenant scrub. The device may keep serving
its current tenant although another one has a smaller counter, while both bounds hold:
- fairness bound: the fair choice is at most `fairness_bound_s` seconds of its own service behind, i.e.
  ``(current counter - smallest counter) * weight of the smallest <= fairness_bound_s``. Counted in the
  waiting tenant's service, not in virtual time: with weights 50:1, a weight-1 tenant running 50 ms
  ahead in virtual time would owe the other 2.5 s of service, and wait that long afterwards;
- latency bound: stickiness has not kept a request of another tenant waiting for `latency_bound_s`, i.e.
  ``now - max(its enqueue time, start of the sticky run) < latency_bound_s``.
So stickiness delays another tenant by at most the latency bound plus one batch, and skews shares by at
most the fairness bound. Either bound at 0 turns stickiness off. It never holds against a *light* tenant,
one lately served under half its weight's share (an interactive tenant, a newcomer): making it wait to
save a heavy tenant's scrub would turn its one request into a wait of a whole sticky run.

Ties (a tenant just lifted to the least counter) go to the current tenant when that saves a switch, else to
the cheaper batch (shortest job first: a light tenant's one request delays a heavy tenant's batch by little,
the other way round by a whole batch), then to the older request.

The FIFO baseline (`choose_fifo`) serves requests in global arrival order; it exists for benchmarks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    """A tenant with a batch ready to go: its counter and the enqueue time and sequence of that batch's head."""

    tenant_id: str
    counter: float
    oldest_at: float
    head_seq: int
    estimated_s: float = 0.0  # what its batch would cost: equal counters serve the cheaper batch first
    weight: float = 1.0


@dataclass(frozen=True)
class Choice:
    tenant_id: str
    sticky_since: float | None  # the device's new sticky-run start (None: not in a sticky run)
    stayed_for_switch: bool = False  # True when stickiness, not the counters, picked the current tenant


def lifted_counter(counter: float, backlogged_counters: Iterable[float], floor: float, *, lead: float = 0.0) -> float:
    """The counter of a tenant that just became backlogged: no lower than the least backlogged one's (less
    `lead`, the most it may keep of a lead it had, in virtual seconds)."""
    lowest = min(backlogged_counters, default=None)
    return max(counter, (floor if lowest is None else lowest) - lead)


def choose_fair(
    candidates: Sequence[Candidate],
    *,
    current: str | None,
    sticky_since: float | None,
    oldest_other_at: float | None,
    light_tenant_waiting: bool = False,
    now: float,
    fairness_bound_s: float,
    latency_bound_s: float,
) -> Choice:
    """The tenant a free device serves next (see the module docstring). `candidates` is not empty.

    `oldest_other_at` is the enqueue time of the oldest queued request of any tenant but `current`
    (ready to batch or not), None when there is none; `light_tenant_waiting` says whether one of those
    tenants is light (has lately used well under its fair share of the devices).
    """
    stick = current if not light_tenant_waiting else None
    best = min(candidates, key=lambda c: (c.counter, c.tenant_id != stick, c.estimated_s, c.oldest_at, c.tenant_id))
    if best.tenant_id == current:
        return Choice(best.tenant_id, None)
    mine = next((c for c in candidates if c.tenant_id == stick), None)
    if mine is not None and (mine.counter - best.counter) * best.weight <= fairness_bound_s:
        since = now if sticky_since is None else sticky_since
        held_s = 0.0 if oldest_other_at is None else now - max(oldest_other_at, since)
        if held_s < latency_bound_s:
            return Choice(mine.tenant_id, since, stayed_for_switch=True)
    return Choice(best.tenant_id, None)


def choose_fifo(candidates: Sequence[Candidate]) -> Choice:
    """The baseline: the tenant whose ready batch holds the oldest request of all."""
    first = min(candidates, key=lambda c: c.head_seq)
    return Choice(first.tenant_id, None)


def jain_index(values: Sequence[float]) -> float:
    """Jain's fairness index: 1.0 when all values are equal, 1/n when one value takes everything."""
    total = math.fsum(values)
    squares = math.fsum(v * v for v in values)
    if not values or squares == 0:
        return 1.0
    return total * total / (len(values) * squares)


__all__ = ["Candidate", "Choice", "choose_fair", "choose_fifo", "jain_index", "lifted_counter"]
