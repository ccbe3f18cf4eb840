"""What the scheduler exports to Prometheus (scheduler_metrics.py): per-batch observations, rejections,
and the gauges and counters read off the policy core after each dispatch pass.

Kept apart from the driver (scheduler.py) because the core is pure (no metrics): what it counted — holds,
batches prepared ahead, run ends — is exported here as deltas since the last pass, and a deleted tenant's
series are dropped here once its last request is done, so that no series outlives its tenant. With no
metrics registry every method is a no-op (but the set of tenants to refresh is still emptied).
"""

from __future__ import annotations

from cleanroom.runtime.scheduler_core import SchedulerCore
from cleanroom.runtime.scheduler_metrics import SchedulerMetrics
from cleanroom.runtime.scheduler_state import Batch
from cleanroom.runtime.scheduler_worker import Outcome


class SchedulerExport:
    """One `Scheduler`'s metrics; `dirty` holds the tenants whose gauges the next `refresh_gauges` sets."""

    def __init__(self, metrics: SchedulerMetrics | None, core: SchedulerCore) -> None:
        self.metrics = metrics
        self._core = core
        self.dirty: set[str] = set()
        self._holds_exported: dict[str, int] = {}  # device -> anticipation holds already counted in metrics
        self._aheads_exported: dict[str, int] = {}  # device -> batches prepared ahead already counted
        self._run_ends_exported: dict[tuple[str, str], int] = {}  # (device, reason) -> already counted

    def admitted(self) -> None:
        """After an admission: the comeback and regroup the core measured, if it measured one."""
        if self.metrics is not None:
            if self._core.last_comeback_s is not None:
                self.metrics.comeback_seconds.labels(kind="first").observe(self._core.last_comeback_s)
            if self._core.last_regroup_s is not None:
                self.metrics.comeback_seconds.labels(kind="all").observe(self._core.last_regroup_s)

    def record_batch(self, batch: Batch, outcome: Outcome) -> None:
        m = self.metrics
        if m is None:
            return
        tenant, device = batch.tenant_id, batch.device
        if batch.needs_scrub and outcome.ran and outcome.scrub_bytes is not None:  # None: nothing to scrub
            m.scrub_seconds.labels(device=device).observe(outcome.scrub_s)
            m.scrubs.labels(device=device, tenant_id=tenant).inc()
            m.scrub_bytes.labels(device=device, tenant_id=tenant).inc(outcome.scrub_bytes)
        if batch.tenant_switch and outcome.ran:
            m.tenant_switches.labels(device=device, tenant_id=tenant).inc()
        if outcome.idle_before_s is not None:
            m.device_idle_seconds.labels(device=device).observe(outcome.idle_before_s)
        if outcome.ran:
            m.service_total.labels(tenant_id=tenant).inc(outcome.service_s)
            share = outcome.service_s / len(batch.requests)
            served = m.service_seconds.labels(tenant_id=tenant)
            for _ in batch.requests:
                served.observe(share)

    def count_reject(self, tenant_id: str, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.rejects.labels(tenant_id=tenant_id, reason=reason).inc()

    def refresh_gauges(self) -> None:
        if self.metrics is not None:
            for tenant_id in self.dirty:
                state = self._core.tenants.get(tenant_id)
                if state is None:  # deleted, and its last request is done: no series may outlive it
                    self.metrics.forget_tenant(tenant_id)
                    continue
                self.metrics.queue_depth.labels(tenant_id=tenant_id).set(state.queued)
                self.metrics.in_flight.labels(tenant_id=tenant_id).set(state.queued + state.running)
            for device in self._core.devices.values():
                # The policy core is pure (no metrics): export what it counted since the last pass.
                new_holds = device.holds - self._holds_exported.get(device.name, 0)
                if new_holds > 0:
                    self.metrics.anticipation_holds.labels(device=device.name).inc(new_holds)
                    self._holds_exported[device.name] = device.holds
                new_aheads = device.aheads - self._aheads_exported.get(device.name, 0)
                if new_aheads > 0:
                    self.metrics.prepared_ahead.labels(device=device.name).inc(new_aheads)
                    self._aheads_exported[device.name] = device.aheads
                for reason, count in device.run_ends.items():
                    key = (device.name, reason)
                    if count > self._run_ends_exported.get(key, 0):
                        self.metrics.run_ends.labels(device=device.name, reason=reason).inc(
                            count - self._run_ends_exported.get(key, 0)
                        )
                        self._run_ends_exported[key] = count
        self.dirty.clear()


__all__ = ["SchedulerExport"]
