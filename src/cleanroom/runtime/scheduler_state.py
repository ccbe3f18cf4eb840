"""What the scheduler core keeps: per-tenant and per-device state, the batches it hands out, and the few
queries every part of the policy reads (how much a tenant has queued, what a batch costs on its device).

Separate from the policy (scheduler_sharing.py, scheduler_dispatch.py, scheduler_core.py) so that the state
is read in one place: each part of `SchedulerCore` is a layer over `CoreState`, and the asyncio driver
(scheduler.py) and the simulation (scheduler_sim.py) read these records without importing any policy.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cleanroom.runtime.admission import TenantLimits, TokenBucket
from cleanroom.runtime.batching import ArrivalGap, BatchCostModel, BatchRunner, QueuedRequest, prepares_ahead
from cleanroom.runtime.scheduler_config import SchedulerConfig

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


class CoreState:
    """The fields the layers of `SchedulerCore` share, and the queries they all make (not thread-safe: one
    driver owns it; see scheduler_core.py)."""

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

    def queued_of(self, tenant_id: str | None) -> int:
        state = self.tenants.get(tenant_id) if tenant_id else None
        return state.queued if state is not None else 0

    def _device_time_s(self, batch: Batch) -> float:
        """Expected time of `batch` on its device: its cost, less its preparation when that ran ahead."""
        estimate = self.costs.estimate(batch.model, len(batch.requests))
        if batch.ahead:
            estimate -= min(0.9 * estimate, self.prepare_costs.estimate(batch.model, len(batch.requests)))
        if batch.needs_scrub and self.devices[batch.device].scrub_s is not None:
            estimate += self.devices[batch.device].scrub_s or 0.0
        return estimate

    def _recent_use(self, state: TenantState, now: float) -> float:
        """Device-seconds per second the tenant used lately (decaying with time constant shared_window_s)."""
        tau = self.config.shared_window_s
        return state.recent_service_s * math.exp(-max(0.0, now - state.recent_at) / tau) / tau

    @property
    def _no_delay(self) -> bool:
        # The FIFO baseline batches only what is contiguous at the head of the global order, so it never
        # waits; a draining scheduler never waits either.
        return self.shutting_down or self.config.policy == "fifo"

    @property
    def idle(self) -> bool:
        return self.total_queued == 0 and self.total_running == 0
