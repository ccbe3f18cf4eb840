"""Prometheus metrics of the scheduler, on a registry passed in (no process-wide state to monkeypatch).

Labels carry a tenant id, a device name, a model name or a reject reason — never anything from a payload
(DESIGN §5: no tenant data in labels beyond the tenant id). Times are seconds, sizes bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass
class SchedulerMetrics:
    registry: CollectorRegistry
    queue_depth: Gauge  # tenant_id
    in_flight: Gauge  # tenant_id: admitted, not yet answered
    wait_seconds: Histogram  # tenant_id: enqueue -> batch start
    service_seconds: Histogram  # tenant_id: the request's share of its batch's measured time
    service_total: Counter  # tenant_id: measured device seconds received (the fairness ledger)
    batch_size: Histogram  # model
    rejects: Counter  # tenant_id, reason
    cancelled: Counter  # tenant_id: queued requests removed because their submitter went away
    tenant_switches: Counter  # device, tenant_id (the incoming tenant)
    anticipation_holds: Counter  # device: times a free device waited for its current tenant to come back
    prepared_ahead: Counter  # device: batches handed to a busy device to prepare while its batch ran
    run_ends: Counter  # device, reason: why a device left its tenant (scheduler_core RUN_END_*)
    comeback_seconds: Histogram  # kind: "first" request back after a tenant ran out, "all" of a batch's back
    device_idle_seconds: Histogram  # device: worker idle between the end of one batch and the next start
    scrubs: Counter  # device, tenant_id
    scrub_bytes: Counter  # device, tenant_id
    scrub_seconds: Histogram  # device
    weight: Gauge  # tenant_id
    device_quarantined: Gauge  # device

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> SchedulerMetrics:
        r = registry if registry is not None else CollectorRegistry()
        return cls(
            registry=r,
            queue_depth=Gauge(
                "cleanroom_scheduler_queue_depth", "Requests waiting for a worker", ["tenant_id"], registry=r
            ),
            in_flight=Gauge(
                "cleanroom_scheduler_in_flight", "Requests admitted and not yet answered", ["tenant_id"], registry=r
            ),
            wait_seconds=Histogram(
                "cleanroom_scheduler_wait_seconds",
                "Time from admission to batch start",
                ["tenant_id"],
                buckets=_LATENCY_BUCKETS,
                registry=r,
            ),
            service_seconds=Histogram(
                "cleanroom_scheduler_service_seconds",
                "Measured batch time divided among its requests",
                ["tenant_id"],
                buckets=_LATENCY_BUCKETS,
                registry=r,
            ),
            service_total=Counter(
                "cleanroom_scheduler_served_seconds",
                "Measured device seconds served to each tenant",
                ["tenant_id"],
                registry=r,
            ),
            batch_size=Histogram(
                "cleanroom_scheduler_batch_size",
                "Requests per batch",
                ["model"],
                buckets=(1, 2, 4, 8, 16, 32, 64, 128),
                registry=r,
            ),
            rejects=Counter(
                "cleanroom_scheduler_rejects",
                "Requests refused or timed out, by reason",
                ["tenant_id", "reason"],
                registry=r,
            ),
            cancelled=Counter(
                "cleanroom_scheduler_cancelled", "Queued requests whose submitter went away", ["tenant_id"], registry=r
            ),
            tenant_switches=Counter(
                "cleanroom_scheduler_tenant_switches",
                "Device changed tenant (incoming tenant)",
                ["device", "tenant_id"],
                registry=r,
            ),
            anticipation_holds=Counter(
                "cleanroom_scheduler_anticipation_holds",
                "Free device held idle for its current tenant's expected next request",
                ["device"],
                registry=r,
            ),
            prepared_ahead=Counter(
                "cleanroom_scheduler_prepared_ahead",
                "Batches handed to a busy device to be prepared while its running batch ends",
                ["device"],
                registry=r,
            ),
            run_ends=Counter(
                "cleanroom_scheduler_run_ends",
                "Device left its current tenant, by reason",
                ["device", "reason"],
                registry=r,
            ),
            comeback_seconds=Histogram(
                "cleanroom_scheduler_comeback_seconds",
                "Time from a tenant's batch end to its first ('first', when it had run "
                "out of work) or last ('all') of that batch's requests coming back",
                ["kind"],
                buckets=_LATENCY_BUCKETS,
                registry=r,
            ),
            device_idle_seconds=Histogram(
                "cleanroom_scheduler_device_idle_seconds",
                "Worker idle time between the end of a batch and the start of the next",
                ["device"],
                buckets=_LATENCY_BUCKETS,
                registry=r,
            ),
            scrubs=Counter(
                "cleanroom_scheduler_scrubs", "Between-tenant scrubs run", ["device", "tenant_id"], registry=r
            ),
            scrub_bytes=Counter(
                "cleanroom_scheduler_scrub_bytes",
                "Bytes zeroed by between-tenant scrubs",
                ["device", "tenant_id"],
                registry=r,
            ),
            scrub_seconds=Histogram(
                "cleanroom_scheduler_scrub_seconds",
                "Time of one between-tenant scrub",
                ["device"],
                buckets=_LATENCY_BUCKETS,
                registry=r,
            ),
            weight=Gauge("cleanroom_scheduler_tenant_weight", "Fair-share weight", ["tenant_id"], registry=r),
            device_quarantined=Gauge(
                "cleanroom_scheduler_device_quarantined",
                "1 when the device takes no more work (failed scrub)",
                ["device"],
                registry=r,
            ),
        )

    def forget_tenant(self, tenant_id: str) -> None:
        """Drop a deleted tenant's series: label cardinality must not grow with tenant churn."""
        for metric in (
            self.queue_depth,
            self.in_flight,
            self.wait_seconds,
            self.service_seconds,
            self.service_total,
            self.rejects,
            self.cancelled,
            self.tenant_switches,
            self.scrubs,
            self.scrub_bytes,
            self.weight,
        ):
            metric.remove_by_labels({"tenant_id": tenant_id})


__all__ = ["SchedulerMetrics"]
