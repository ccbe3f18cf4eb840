"""Tenant-grouped micro-batching: when a (tenant, model) queue is worth a forward pass, and what it costs.

A batch only ever holds requests of one tenant for one model (and one runner object): the between-tenant
scrub is the isolation boundary, and a mixed batch would put two tenants' plaintext in one forward pass.

Readiness of a queue (`ready_at`), asked only when a device is free:
- full (`max_batch_size` requests) or a model that cannot batch (`max_batch_size == 1`): ready now;
- otherwise ready once its oldest request has waited `max_batch_delay_ms`, or earlier once the
  (tenant, model)'s arrivals have gone quiet for twice their mean gap (a burst of resubmissions is over),
  or at once when its arrivals are sparser than the delay (mean gap >= delay: waiting would add latency
  and gather nothing). So a lone interactive request never pays the batching delay, 32 clients that
  resubmit together are gathered into one forward pass, and the delay is a maximum, never exceeded.
While every device is busy, queues grow on their own and the delay plays no part.

Preparing ahead (`prepares_ahead`, `lookahead_window`): a runner may split a batch into `prepare` (host
work that does not touch the device: for sealed requests the HPKE opening, audit record and decryption)
and the prepared batch's `run` (the forward pass and sealing). Then a busy device may be handed its
tenant's next batch shortly before the running one is expected to end, so that its preparation overlaps
the running forward pass and the device goes from one batch straight to the next. Not earlier: the
requests that arrive until then still join that batch, as they would if the device were free.

`BatchCostModel` learns `seconds = fixed + per_item * n` per model from measured batches. The scheduler
charges a batch's *estimate* to the tenant's counter at dispatch (so several devices do not all pick the
same under-charged tenant) and corrects it to the measured time at completion.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

T_contra = TypeVar("T_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)


@runtime_checkable
class BatchRunner(Protocol[T_contra, R_co]):
    """Runs one batch of one tenant's items for one model, synchronously, on a worker thread.

    `run` returns one result per item, in order; an item that failed on its own is returned as its
    exception (raised to that item's submitter only). Raising fails the whole batch. The runner owns the
    items' plaintext and zeroes it before returning, on every path (DESIGN §2.1). An optional
    `max_batch_delay_ms` attribute overrides the scheduler's default for this model.
    """

    max_batch_size: int

    def run(self, device: str, tenant_id: str, items: Sequence[T_contra]) -> Sequence[R_co | BaseException]: ...


@runtime_checkable
class PreparedBatch(Protocol[R_co]):
    """A batch whose host-side work is done (`prepare`); it holds the items' plaintext until `run` or
    `discard` releases it. Exactly one of them is called, once; `discard` after `run` does nothing."""

    def run(self) -> Sequence[R_co | BaseException]: ...

    def discard(self) -> None: ...


def prepares_ahead(runner: BatchRunner[Any, Any]) -> bool:
    """Whether the runner offers `prepare(device, tenant_id, items) -> PreparedBatch`, which may run on
    another thread while the device runs an earlier batch of the same tenant and model (`prepare_ahead`
    set True by the runner), and whose `run` is then called on the device's worker thread."""
    return bool(getattr(runner, "prepare_ahead", False)) and callable(getattr(runner, "prepare", None))


# A batch is prepared ahead from LOOKAHEAD_FACTOR expected preparations (plus LOOKAHEAD_MARGIN_S, the
# event loop's and the threads' hand-over), and at least LOOKAHEAD_SHARE of the running batch's estimate,
# before the running batch is expected to end. Starting late leaves the device idle; starting early only
# moves the latest arrivals to the batch after. Measured through the server with minilm (batches of 16,
# ~85 ms): preparing took 9-10 ms on average but up to 23 ms while the forward pass and the event loop
# held the GIL, and batches ended up to 8 ms off their estimate; with 1.5 preparations and no share, one
# batch in ten waited 5-15 ms for its preparation.
LOOKAHEAD_FACTOR = 2.0
LOOKAHEAD_MARGIN_S = 0.001
LOOKAHEAD_SHARE = 0.2
# ... and not later than LOOKAHEAD_OVERRUN of the running batch's estimate after its expected end: a batch
# that overruns by far (a model waiting on something) is not predictable, and a request prepared ahead can
# no longer be cancelled by its client.
LOOKAHEAD_OVERRUN = 0.25


def lookahead_window(expected_end: float, running_estimate_s: float, prepare_estimate_s: float) -> tuple[float, float]:
    """When a busy device may be handed its next batch to prepare ahead: (from, until)."""
    lead = max(LOOKAHEAD_FACTOR * prepare_estimate_s + LOOKAHEAD_MARGIN_S, LOOKAHEAD_SHARE * running_estimate_s)
    return expected_end - lead, expected_end + max(lead, LOOKAHEAD_OVERRUN * running_estimate_s)


@dataclass(eq=False)
class QueuedRequest:
    """One admitted request. `handle` belongs to whoever drives the core (an asyncio future, a sim record)."""

    seq: int
    tenant_id: str
    model: str
    item: Any
    runner: BatchRunner[Any, Any]
    enqueued_at: float
    deadline: float
    state: str = "queued"  # queued -> running -> done | cancelled | expired
    handle: Any = None


def batch_limit(runner: BatchRunner[Any, Any]) -> int:
    return max(1, int(runner.max_batch_size))


def batch_delay_s(runner: BatchRunner[Any, Any], default_ms: float) -> float:
    override = getattr(runner, "max_batch_delay_ms", None)
    return max(0.0, float(default_ms if override is None else override)) / 1000.0


def check_runner(runner: BatchRunner[Any, Any], default_delay_ms: float) -> None:
    """ValueError unless the runner's `max_batch_size` and `max_batch_delay_ms` are usable numbers.

    Checked at admission, so that a broken runner fails its own submitter: read first by the dispatcher,
    `max_batch_delay_ms = "soon"` raised there, and a dispatcher that fails refuses all work (every
    tenant's requests answered 503 for good)."""
    try:
        batch_limit(runner)
        delay_s = batch_delay_s(runner, default_delay_ms)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(
            f"runner {type(runner).__name__}: max_batch_size and max_batch_delay_ms must be numbers ({exc})"
        ) from None
    if not math.isfinite(delay_s):
        raise ValueError(f"runner {type(runner).__name__}: max_batch_delay_ms must be finite")


class ArrivalGap:
    """Exponentially weighted mean gap between arrivals of one (tenant, model); None until two arrived."""

    def __init__(self, alpha: float = 0.2) -> None:
        self.alpha = alpha
        self.last_at: float | None = None
        self.mean_gap_s: float | None = None

    def observe(self, now: float) -> None:
        if self.last_at is not None:
            gap = max(0.0, now - self.last_at)
            self.mean_gap_s = gap if self.mean_gap_s is None else self.mean_gap_s + self.alpha * (gap - self.mean_gap_s)
        self.last_at = now


def ready_at(queue: deque[QueuedRequest], gap: ArrivalGap | None, default_delay_ms: float, *, draining: bool) -> float:
    """When the batch at the head of `queue` should go (a time <= now means: now). `queue` is not empty."""
    head = queue[0]
    limit = batch_limit(head.runner)
    delay_s = batch_delay_s(head.runner, default_delay_ms)
    if draining or limit == 1 or delay_s == 0.0 or len(queue) >= limit:
        return head.enqueued_at
    if gap is None or gap.mean_gap_s is None or gap.last_at is None or gap.mean_gap_s >= delay_s:
        return head.enqueued_at  # sparse arrivals: waiting would gather nothing
    # Arrivals come in bursts (clients resubmit together when a batch answers them): once the stream has
    # been quiet for twice its mean gap, the burst is over and waiting longer would gather nothing.
    return min(head.enqueued_at + delay_s, gap.last_at + 2.0 * gap.mean_gap_s)


def take_batch(
    queue: deque[QueuedRequest], *, seq_below: float = float("inf"), max_items: int | None = None
) -> list[QueuedRequest]:
    """Pop the head run of `queue`: same runner, at most its `max_batch_size` (and `max_items`), sequence
    numbers < `seq_below`. Never empty: the head always goes.

    `seq_below` lets the FIFO baseline batch only requests that are contiguous in global arrival order.
    """
    head = queue[0]
    limit = batch_limit(head.runner) if max_items is None else max(1, min(max_items, batch_limit(head.runner)))
    batch = [queue.popleft()]
    while queue and len(batch) < limit and queue[0].runner is head.runner and queue[0].seq < seq_below:
        batch.append(queue.popleft())
    return batch


class BatchCostModel:
    """Per-model `seconds = fixed + per_item * n`, fitted to the mean measured time of each batch size.

    Each batch size keeps its own moving average, and the line is fitted across sizes (each size counts
    once), so what was learnt from one size is not forgotten while the scheduler keeps running another.
    Until two sizes have been seen the fixed cost is unknown (`identified` is False) and estimates are
    proportional. Estimates never go below `floor_s`: a zero estimate would let a tenant be dispatched on
    every device at no charge.
    """

    def __init__(self, initial_per_item_s: float, *, alpha: float = 0.2, floor_s: float = 1e-6) -> None:
        self._initial = initial_per_item_s
        self._alpha = alpha
        self._floor = floor_s
        self._by_size: dict[str, dict[int, float]] = {}
        self._fit: dict[str, tuple[float, float, bool]] = {}

    def observe(self, model: str, n: int, seconds: float) -> None:
        if n < 1 or not seconds >= 0:
            return
        sizes = self._by_size.setdefault(model, {})
        mean = sizes.get(n)
        sizes[n] = seconds if mean is None else mean + self._alpha * (seconds - mean)
        self._fit[model] = _fit_line(sizes)

    def measured(self, model: str) -> bool:
        """Whether any batch of `model` was observed."""
        return model in self._by_size

    def coefficients(self, model: str) -> tuple[float, float, bool]:
        """(fixed_s, per_item_s, identified) for `model`."""
        return self._fit.get(model, (0.0, self._initial, False))

    def estimate(self, model: str, n: int) -> float:
        fixed, per_item, _ = self.coefficients(model)
        return max(self._floor, fixed + per_item * n)

    def largest_within(self, model: str, factor: float, limit: int) -> int | None:
        """The largest batch size, at most `limit`, whose cost is at most `factor` times a one-request
        batch's; None until the model's cost has been measured at two sizes.

        Measured sizes count as measured, the others as the fitted line says: one straight line across all
        sizes overstates the fixed cost when cost grows slower than linearly (CPU `minilm`: the line put
        it near 15 ms where a batch of 1 took 12), which let "twice one request" admit batches of 7 that
        took three times as long.
        """
        fixed, per_item, identified = self.coefficients(model)
        if not identified:
            return None
        sizes = self._by_size.get(model, {})
        budget = factor * sizes.get(1, fixed + per_item)
        n = 1
        # sizes up to the largest measured one, one by one (measured means need not be monotonic: the
        # first size over budget ends the batch) ...
        while n < min(limit, max(sizes, default=1)):
            if sizes.get(n + 1, fixed + per_item * (n + 1)) > budget:
                return n
            n += 1
        if n >= limit:
            return limit
        # ... and beyond it, the fitted line in closed form (a batch limit may be large)
        if per_item <= 0:
            return limit if fixed <= budget else n
        return max(n, min(limit, math.floor((budget - fixed) / per_item + 1e-9)))


def _fit_line(sizes: dict[int, float]) -> tuple[float, float, bool]:
    """Least squares over (size, mean seconds); falls back to proportional when it cannot say more."""
    k = len(sizes)
    sx = sum(sizes)
    sy = sum(sizes.values())
    if k >= 2:
        sxx = sum(n * n for n in sizes)
        sxy = sum(n * y for n, y in sizes.items())
        per_item = (k * sxy - sx * sy) / (k * sxx - sx * sx)
        fixed = (sy - per_item * sx) / k
        if per_item >= 0 and fixed >= 0:
            return fixed, per_item, True
        if per_item < 0:  # bigger batches measured cheaper (noise): treat the cost as fixed
            return sy / k, 0.0, True
        return 0.0, sy / sx, True  # fixed < 0: proportional fits better
    return 0.0, sy / sx, False


CostFunction = Callable[[str, int], float]

__all__ = [
    "ArrivalGap",
    "BatchCostModel",
    "BatchRunner",
    "CostFunction",
    "PreparedBatch",
    "QueuedRequest",
    "batch_delay_s",
    "batch_limit",
    "check_runner",
    "lookahead_window",
    "prepares_ahead",
    "ready_at",
    "take_batch",
]
