"""Prometheus metrics of one server (a registry per app, so tests and embedders never share state)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class ServerMetrics:
    registry: CollectorRegistry
    requests: Counter
    errors: Counter
    latency: Histogram
    mlock_failures: Gauge
    locked_bytes: Gauge
    hardening: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> ServerMetrics:
        registry = registry or CollectorRegistry()
        return cls(
            registry=registry,
            requests=Counter(
                "cleanroom_requests", "Sealed requests handled", ["tenant_id", "model", "outcome"], registry=registry
            ),
            errors=Counter("cleanroom_errors", "Requests refused, by error code", ["code"], registry=registry),
            latency=Histogram(
                "cleanroom_request_seconds",
                "Server-side request time",
                ["model"],
                registry=registry,
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            ),
            mlock_failures=Gauge(
                "cleanroom_mlock_failures", "SecureBuffers that could not be locked in RAM", registry=registry
            ),
            locked_bytes=Gauge("cleanroom_locked_bytes", "Bytes of SecureBuffer memory locked now", registry=registry),
            hardening=Gauge(
                "cleanroom_hardening", "Process hardening in force (1) or not (0)", ["control"], registry=registry
            ),
        )

    def forget_tenant(self, tenant_id: str) -> None:
        """Drop a deleted tenant's series (label cardinality must not grow with tenant churn)."""
        self.requests.remove_by_labels({"tenant_id": tenant_id})
