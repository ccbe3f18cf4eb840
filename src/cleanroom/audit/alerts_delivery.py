"""Where a raised alert goes: a WARNING log line, a Prometheus counter, an `alert.<kind>` audit record and,
if configured, a webhook called from a background thread.

Delivery only: it decides nothing about what is anomalous (`alerts_detectors` does). Separate because it
owns the side effects and the one thread: a webhook failure or a full queue is logged and dropped, so
neither the detectors nor the request path that fed them ever wait on the network.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter

from cleanroom.audit.alerts_detectors import Alert
from cleanroom.audit.records import AuditEvent
from cleanroom.errors import CleanroomError

# The logger name is part of the documented contract (docs/audit.md): operators route alerts by it.
logger = logging.getLogger("cleanroom.audit.alerts")

WebhookTarget = str | Callable[[Alert], None]


class AuditAppender(Protocol):
    def append(self, event: AuditEvent) -> int: ...


class AlertDelivery:
    """Sends each alert to the log, the counter, the audit log and the webhook. `close()` stops the
    webhook thread after the alerts queued before it."""

    def __init__(
        self,
        *,
        audit_log: AuditAppender | None,
        registry: CollectorRegistry | None,
        webhook: WebhookTarget | None,
        webhook_timeout_s: float,
        webhook_queue_max: int,
    ) -> None:
        self._audit_log = audit_log
        self.alerts_total = Counter(
            "cleanroom_audit_alerts_total",
            "Anomaly alerts raised from the audit trail",
            ["kind", "tenant_id"],
            registry=registry if registry is not None else CollectorRegistry(),
        )
        self._webhook = webhook
        self._webhook_timeout_s = webhook_timeout_s
        self._webhook_queue: queue.Queue[Alert | None] = queue.Queue(webhook_queue_max)
        self._webhook_thread: threading.Thread | None = None
        if webhook is not None:
            self._webhook_thread = threading.Thread(target=self._deliver, name="cleanroom-audit-webhook", daemon=True)
            self._webhook_thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        thread, self._webhook_thread = self._webhook_thread, None
        if thread is not None:
            self._webhook_queue.put(None)
            thread.join(timeout_s)

    def emit(self, alert: Alert) -> None:
        logger.warning(
            "audit alert %s: %s (tenant=%s principal=%s source=%s)",
            alert.kind,
            alert.message,
            alert.tenant_id,
            alert.principal,
            alert.source,
        )
        self.alerts_total.labels(kind=alert.kind, tenant_id=alert.tenant_id or "").inc()
        if self._audit_log is not None:
            try:
                self._audit_log.append(alert.to_event())
            except CleanroomError as exc:
                logger.error("audit alert %s could not be recorded in the audit log: %s", alert.kind, exc)
        if self._webhook_thread is not None:
            try:
                self._webhook_queue.put_nowait(alert)
            except queue.Full:
                logger.error("audit alert webhook queue full; alert %s not delivered", alert.kind)

    def _deliver(self) -> None:
        client: Any = None
        try:
            while True:
                alert = self._webhook_queue.get()
                if alert is None:
                    return
                try:
                    if callable(self._webhook):
                        self._webhook(alert)
                    else:
                        if client is None:
                            import httpx

                            client = httpx.Client(timeout=self._webhook_timeout_s)
                        response = client.post(str(self._webhook), json=alert.to_json())
                        response.raise_for_status()
                except Exception as exc:  # never let a webhook failure stop alerting
                    logger.error("audit alert webhook failed for %s: %s", alert.kind, type(exc).__name__)
        finally:
            if client is not None:
                client.close()
