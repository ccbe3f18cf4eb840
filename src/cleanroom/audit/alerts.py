"""Anomaly alerts on audit events: after-hours decryption, volume spikes, new networks, failure bursts.

Feed every appended event to `AlertMonitor.observe` (after `AuditLog.append` returned). Each alert
becomes an `alert.<kind>` audit record, a WARNING on logger "cleanroom.audit.alerts", an increment of
`cleanroom_audit_alerts_total{kind, tenant_id}` and, if configured, a webhook call made from a background
thread (failures are logged; the request path never waits for it).

Rules (all per-tenant or per-principal, state bounded by `max_tracked`):
- after_hours: a decrypt.* event outside the tenant's business hours, in the tenant's own timezone
  (zoneinfo). Tenants without business hours configured are never flagged.
- volume: decrypt.* events are counted per tenant in windows of `volume_window_s`. The baseline is the
  larger of an EWMA of past windows and their peak, the peak halving every `volume_peak_half_life_s` —
  so the busiest hour of a normal day is not an anomaly the next day. A window alerts once when its count
  exceeds max(volume_min_count, volume_ratio * baseline), after `volume_learning_windows` windows.
- new_network: a credential (principal) used from a /24 (IPv4) or /64 (IPv6) it was never seen from,
  once the principal has been known for `network_learning_s`.
- auth_failure_burst / integrity_failure_burst: at least `failure_burst_count` auth.failure or
  integrity.failure events from one network (or `failure_burst_global_count` from anywhere) within
  `failure_burst_window_s`.
A repeated alert for the same (kind, subject) is suppressed for `cooldown_s`.
State lives in memory; `warm_up(events)` rebuilds baselines from the log after a restart without alerting.

Where the parts live: `alerts_settings` (BusinessHours, AlertSettings), `alerts_detectors` (the rules
above and their bounded state; `Alert`, `network_of`), `alerts_delivery` (log, counter, audit record,
webhook thread). `AlertMonitor` here joins them under one lock; every name is importable from here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry

from cleanroom.audit.alerts_delivery import AlertDelivery, AuditAppender, WebhookTarget, logger
from cleanroom.audit.alerts_detectors import Alert, AlertDetectors, network_of
from cleanroom.audit.alerts_settings import AlertSettings, BusinessHours
from cleanroom.audit.records import AuditEvent

__all__ = [
    "Alert",
    "AlertMonitor",
    "AlertSettings",
    "AuditAppender",
    "BusinessHours",
    "WebhookTarget",
    "logger",
    "network_of",
]


class AlertMonitor:
    """See the module docstring. Thread-safe; `close()` stops the webhook thread."""

    def __init__(
        self,
        settings: AlertSettings | None = None,
        *,
        audit_log: AuditAppender | None = None,
        registry: CollectorRegistry | None = None,
        webhook: WebhookTarget | None = None,
    ) -> None:
        self.settings = settings or AlertSettings()
        self._lock = threading.Lock()
        self._detectors = AlertDetectors(self.settings)
        self._delivery = AlertDelivery(
            audit_log=audit_log,
            registry=registry,
            webhook=webhook,
            webhook_timeout_s=self.settings.webhook_timeout_s,
            webhook_queue_max=self.settings.webhook_queue_max,
        )
        self.alerts_total = self._delivery.alerts_total

    @property
    def _principals(self) -> Any:
        """The principals tracked for the new-network rule (bounded by `max_tracked`; tests read its size)."""
        return self._detectors.principals

    def observe(self, event: AuditEvent) -> list[Alert]:
        """Update baselines with one event and raise whatever alerts it triggers."""
        if event.event.startswith("alert."):
            return []
        with self._lock:
            alerts = self._detectors.evaluate(event, emit=True)
        for alert in alerts:
            self._delivery.emit(alert)
        return alerts

    def warm_up(self, events: Iterable[AuditEvent]) -> None:
        """Learn from past events (e.g. `read_events` of the last week) without raising alerts."""
        with self._lock:
            for event in events:
                if not event.event.startswith("alert."):
                    self._detectors.evaluate(event, emit=False)

    def close(self, timeout_s: float = 5.0) -> None:
        self._delivery.close(timeout_s)

    def __enter__(self) -> AlertMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
