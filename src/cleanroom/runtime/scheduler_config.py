"""Scheduler settings, checked when built: a bad value fails at start-up, never on a request."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from cleanroom.runtime.admission import TenantLimits

Policy = Literal["fair", "fifo"]

# A tenant served less than this fraction of its fair share lately is light: stickiness never makes it wait.
LIGHT_SHARE = 0.5
# Weights are clamped into [MIN_WEIGHT, MAX_WEIGHT] (the admin API takes up to 1000): a charge is
# `seconds / weight`, and a weight of 5e-324 made it infinite, the counter inf - inf = NaN after one batch,
# and a NaN counter wins or loses every comparison (that tenant had the device to itself).
MIN_WEIGHT = 1e-3
MAX_WEIGHT = 1e3


@dataclass(frozen=True)
class SchedulerConfig:
    """Scheduler settings; a bad value fails here, at construction, not on the first request.

    `fairness_bound_s` (seconds of the waiting tenant's service) and `latency_bound_s` (wall seconds)
    bound how long a device keeps its current tenant to save a scrub; `idle_grace_s` is how long a tenant
    may be idle before it loses its counter's lead (runtime/fairness.py).
    `shared_batch_cost_factor` caps a batch at that many one-request batches' cost while another tenant
    is around (had work within `shared_window_s`); None: no cap.
    `max_batch_delay_ms` is the longest a partial batch waits for more requests (runtime/batching.py).
    `policy="fifo"` is the arrival-order baseline for benchmarks, never a production setting.
    `anticipate`: a free device may wait for its current tenant's next request when that tenant comes back
    quickly, within both stickiness bounds (anticipatory scheduling, runtime/scheduler_core.py `_hold`).
    `scrub_on_first_use` also calls `on_tenant_switch(device, None, tenant)` for a device's first tenant.
    `prepare_ahead`: a busy device may be handed its tenant's next batch to prepare while the running one
    ends, for runners that can (runtime/batching.py `prepares_ahead`); False: never.
    """

    policy: Policy = "fair"
    fairness_bound_s: float = 0.05
    latency_bound_s: float = 0.025
    max_batch_delay_ms: float = 2.0
    max_total_queued: int = 4096
    default_weight: float = 1.0
    default_limits: TenantLimits = field(default_factory=TenantLimits)
    initial_cost_estimate_s: float = 0.01
    retry_after_max_s: float = 60.0
    scrub_on_first_use: bool = False
    shared_batch_cost_factor: float | None = 1.5
    shared_window_s: float = 1.0
    idle_grace_s: float = 0.05
    anticipate: bool = True
    prepare_ahead: bool = True

    def __post_init__(self) -> None:
        if self.policy not in ("fair", "fifo"):
            raise ValueError(f"policy must be 'fair' or 'fifo', not {self.policy!r}")
        for name in ("fairness_bound_s", "latency_bound_s", "max_batch_delay_ms", "idle_grace_s"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0")
        if self.shared_batch_cost_factor is not None and not self.shared_batch_cost_factor >= 1:
            raise ValueError("shared_batch_cost_factor must be >= 1 (or None for no cap)")
        for name in ("default_weight", "initial_cost_estimate_s", "retry_after_max_s", "shared_window_s"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number > 0")
        if not self.max_total_queued >= 1:  # (NaN is not < 1 either, and would have meant no limit)
            raise ValueError("max_total_queued must be at least 1")
        if not MIN_WEIGHT <= self.default_weight <= MAX_WEIGHT:
            raise ValueError(f"default_weight must be within [{MIN_WEIGHT:g}, {MAX_WEIGHT:g}]")


def check_weight(weight: float) -> float:
    """The weight to use: a finite number > 0 (else ValueError), clamped into [MIN_WEIGHT, MAX_WEIGHT].
    Clamped, not refused: the server applies the registry's weight on a tenant's request, where a refusal
    would fail every request of that tenant."""
    if not (weight > 0 and math.isfinite(weight)):
        raise ValueError(f"a tenant weight must be a finite number > 0, not {weight!r}")
    return min(MAX_WEIGHT, max(MIN_WEIGHT, float(weight)))


__all__ = ["LIGHT_SHARE", "MAX_WEIGHT", "MIN_WEIGHT", "Policy", "SchedulerConfig", "check_weight"]
