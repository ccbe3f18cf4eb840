"""The runtime's audit sink: the tamper-evident log of `cleanroom.audit` plus anomaly alerts, behind the
`AuditSink` protocol the request path writes to.

It lives apart from `cleanroom.server.services` (which builds the scheduler, the models and so imports
torch) because the CLI opens it too: `tenant` and `keys` commands run without a server still write their
key operations to the same audit log, and importing torch for that cost every such command ~1.2 s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cleanroom.config import Settings
from cleanroom.errors import ConfigurationError
from cleanroom.keys.kms import KMS
from cleanroom.storage import ensure_private_dir

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from cleanroom.audit.durability import AuditTicket

log = logging.getLogger("cleanroom.server")


def business_hours(spec: str) -> Any:
    """ "Europe/Berlin:8-18" -> BusinessHours (Monday to Friday)."""
    from cleanroom.audit.alerts import BusinessHours

    zone, _, hours = spec.rpartition(":")
    try:
        start, end = (int(h) for h in hours.split("-"))
    except ValueError:
        raise ConfigurationError(f"business hours look like 'Europe/Berlin:8-18', not {spec!r}") from None
    return BusinessHours(timezone=zone or "UTC", start_hour=start, end_hour=end)


class AuditLogSink:
    """The runtime's `AuditSink`: the tamper-evident log of `cleanroom.audit`, plus anomaly alerts."""

    WARM_UP_S = 7 * 86_400.0

    def __init__(
        self, data_dir: Path, kms: KMS, master_key: str, settings: Settings, registry: CollectorRegistry | None = None
    ) -> None:
        from cleanroom.audit.alerts import AlertMonitor, AlertSettings
        from cleanroom.audit.keys import load_or_create_audit_keys
        from cleanroom.audit.log import AuditLog
        from cleanroom.audit.reader import read_events

        audit_dir = ensure_private_dir(Path(data_dir) / "audit")
        self._keys = load_or_create_audit_keys(audit_dir, kms, master_key)
        self._log = AuditLog(
            audit_dir,
            self._keys.audit_key,
            self._keys.require_signing_key(),
            checkpoint_every_records=settings.audit_checkpoint_every_records,
            checkpoint_every_s=settings.audit_checkpoint_every_s,
            segment_max_bytes=settings.audit_segment_max_bytes,
            fsync=settings.audit_fsync,
        )
        alert_settings = AlertSettings(
            business_hours={k: business_hours(v) for k, v in settings.alert_business_hours.items()},
            default_business_hours=(
                business_hours(settings.alert_default_business_hours) if settings.alert_default_business_hours else None
            ),
        )
        self.alerts = AlertMonitor(
            alert_settings, audit_log=self._log, registry=registry, webhook=settings.alert_webhook_url
        )
        since = time.time() - self.WARM_UP_S
        self.alerts.warm_up(event for _, event in read_events(audit_dir, self._keys.audit_key, since=since))

    def record(self, event: Mapping[str, Any]) -> None:
        self.record_ahead(event).wait_durable()

    def record_ahead(self, event: Mapping[str, Any]) -> AuditTicket:
        """Write the record (in the log file, not yet fsynced); the ticket's `wait_durable()` says when it
        is durable. The runtime writes before it decrypts and waits before anything leaves."""
        audit_event = self._log.event_from_fields(event)  # once, for the log and the alerts (~4 us)
        ticket = self._log.append_ahead(audit_event)
        try:  # alerts never fail a request: the record is already written
            self.alerts.observe(audit_event)
        except Exception:
            log.exception("anomaly detection failed on an audit event")
        return ticket

    def record_many_ahead(self, events: Sequence[Mapping[str, Any]]) -> AuditTicket:
        """`record_ahead` for a batch: the records written as one unit (one group commit), one ticket."""
        audit_events = [self._log.event_from_fields(event) for event in events]
        ticket = self._log.append_many_ahead(audit_events)
        for audit_event in audit_events:
            try:
                self.alerts.observe(audit_event)
            except Exception:
                log.exception("anomaly detection failed on an audit event")
        return ticket

    def close(self) -> None:
        self.alerts.close()
        self._log.close()
        self._keys.close()
