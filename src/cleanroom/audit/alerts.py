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
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import math
import queue
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from prometheus_client import CollectorRegistry, Counter

from cleanroom.audit.records import AuditEvent, DetailValue
from cleanroom.errors import CleanroomError, ConfigurationError

logger = logging.getLogger("cleanroom.audit.alerts")

WebhookTarget = str | Callable[["Alert"], None]


class AuditAppender(Protocol):
    def append(self, event: AuditEvent) -> int: ...


@dataclass(frozen=True)
class BusinessHours:
    """Local working time of one tenant: [start_hour, end_hour) on `weekdays` (Monday = 0)."""

    timezone: str = "UTC"
    start_hour: int = 7
    end_hour: int = 20
    weekdays: frozenset[int] = frozenset(range(5))

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigurationError(f"unknown timezone {self.timezone!r}") from exc
        if not 0 <= self.start_hour < self.end_hour <= 24:
            raise ConfigurationError("business hours need 0 <= start_hour < end_hour <= 24")
        if not set(self.weekdays) <= set(range(7)):
            raise ConfigurationError("weekdays are 0 (Monday) .. 6 (Sunday)")

    def contains(self, when_s: float) -> bool:
        local = datetime.fromtimestamp(when_s, ZoneInfo(self.timezone))
        return local.weekday() in self.weekdays and self.start_hour <= local.hour < self.end_hour


@dataclass(frozen=True)
class AlertSettings:
    business_hours: Mapping[str, BusinessHours] = field(default_factory=dict)
    default_business_hours: BusinessHours | None = None
    volume_window_s: float = 300.0
    volume_ratio: float = 5.0
    volume_min_count: int = 100
    volume_ewma_alpha: float = 0.2
    volume_peak_half_life_s: float = 86_400.0
    volume_learning_windows: int = 12
    network_learning_s: float = 7 * 86_400.0
    network_ipv4_prefix: int = 24
    network_ipv6_prefix: int = 64
    failure_burst_count: int = 20
    failure_burst_global_count: int = 100
    failure_burst_window_s: float = 60.0
    cooldown_s: float = 3600.0
    max_tracked: int = 100_000
    max_networks_per_principal: int = 256
    webhook_timeout_s: float = 5.0
    webhook_queue_max: int = 1000

    def __post_init__(self) -> None:
        positive = (
            "volume_window_s",
            "volume_ratio",
            "volume_peak_half_life_s",
            "failure_burst_window_s",
            "webhook_timeout_s",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigurationError(f"alert setting {name} must be positive")
        if not 0 < self.volume_ewma_alpha <= 1:
            raise ConfigurationError("volume_ewma_alpha must be in (0, 1]")
        if not 0 <= self.network_ipv4_prefix <= 32 or not 0 <= self.network_ipv6_prefix <= 128:
            raise ConfigurationError("network prefixes out of range")
        if (
            min(
                self.failure_burst_count,
                self.failure_burst_global_count,
                self.max_tracked,
                self.max_networks_per_principal,
                self.webhook_queue_max,
            )
            < 1
        ):
            raise ConfigurationError("alert counts and limits must be at least 1")

    def hours_for(self, tenant_id: str | None) -> BusinessHours | None:
        if tenant_id is not None and tenant_id in self.business_hours:
            return self.business_hours[tenant_id]
        return self.default_business_hours


@dataclass(frozen=True)
class Alert:
    kind: str
    time: float
    message: str
    tenant_id: str | None = None
    principal: str | None = None
    source: str | None = None
    details: Mapping[str, DetailValue] = field(default_factory=dict)

    def to_event(self) -> AuditEvent:
        return AuditEvent(
            event=f"alert.{self.kind}",
            time=self.time,
            tenant_id=self.tenant_id,
            principal=self.principal,
            source=self.source,
            details={"message": self.message[:500], **self.details},
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "time": self.time,
            "message": self.message,
            "tenant_id": self.tenant_id,
            "principal": self.principal,
            "source": self.source,
            "details": dict(self.details),
        }


@functools.lru_cache(maxsize=4096)
def network_of(source: str | None, v4_prefix: int = 24, v6_prefix: int = 64) -> str | None:
    """'203.0.113.7', '203.0.113.7:5123', '[2001:db8::1]:443' -> its /24 or /64; None if not an IP.

    Cached: it runs for every decryption on the request path and `ipaddress` costs ~5 us a call, while
    clients come back from the same few addresses; the cache is bounded, so sprayed sources only evict."""
    if not source:
        return None
    text = source.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = v4_prefix if address.version == 4 else v6_prefix
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


class _Bounded(OrderedDict[str, Any]):
    """An LRU dict: attackers who spray principals or sources cannot grow state without bound."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def touch(self, key: str, factory: Callable[[], Any]) -> Any:
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = factory()
        self[key] = value
        while len(self) > self.limit:
            self.popitem(last=False)
        return value


@dataclass
class _Volume:
    window: int
    count: int = 0
    ewma: float = 0.0
    peak: float = 0.0
    windows_seen: int = 0
    alerted_window: int = -1


@dataclass
class _Principal:
    first_seen: float
    networks: OrderedDict[str, float] = field(default_factory=OrderedDict)


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
        self._audit_log = audit_log
        self.alerts_total = Counter(
            "cleanroom_audit_alerts_total",
            "Anomaly alerts raised from the audit trail",
            ["kind", "tenant_id"],
            registry=registry if registry is not None else CollectorRegistry(),
        )
        self._lock = threading.Lock()
        limit = self.settings.max_tracked
        self._volume = _Bounded(limit)
        self._principals = _Bounded(limit)
        self._failures = _Bounded(limit)
        self._cooldown = _Bounded(limit)
        self._webhook = webhook
        self._webhook_queue: queue.Queue[Alert | None] = queue.Queue(self.settings.webhook_queue_max)
        self._webhook_thread: threading.Thread | None = None
        if webhook is not None:
            self._webhook_thread = threading.Thread(target=self._deliver, name="cleanroom-audit-webhook", daemon=True)
            self._webhook_thread.start()

    # ------------------------------------------------------------------ public API
    def observe(self, event: AuditEvent) -> list[Alert]:
        """Update baselines with one event and raise whatever alerts it triggers."""
        if event.event.startswith("alert."):
            return []
        with self._lock:
            alerts = self._evaluate(event, emit=True)
        for alert in alerts:
            self._emit(alert)
        return alerts

    def warm_up(self, events: Iterable[AuditEvent]) -> None:
        """Learn from past events (e.g. `read_events` of the last week) without raising alerts."""
        with self._lock:
            for event in events:
                if not event.event.startswith("alert."):
                    self._evaluate(event, emit=False)

    def close(self, timeout_s: float = 5.0) -> None:
        thread, self._webhook_thread = self._webhook_thread, None
        if thread is not None:
            self._webhook_queue.put(None)
            thread.join(timeout_s)

    def __enter__(self) -> AlertMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ rules
    def _evaluate(self, event: AuditEvent, emit: bool) -> list[Alert]:
        alerts: list[Alert] = []
        if event.event.startswith("decrypt."):
            alerts += self._after_hours(event)
            alerts += self._volume_rule(event)
            alerts += self._new_network(event)
        elif event.event in ("auth.failure", "integrity.failure"):
            alerts += self._failure_burst(event)
        kept = [a for a in alerts if self._cooled(a, event.time)] if emit else []
        return kept

    def _cooled(self, alert: Alert, now: float) -> bool:
        key = f"{alert.kind}|{alert.tenant_id}|{alert.principal}|{alert.details.get('subject', '')}"
        last = self._cooldown.get(key)
        if last is not None and now - last < self.settings.cooldown_s:
            return False
        self._cooldown.touch(key, lambda: now)
        self._cooldown[key] = now
        return True

    def _after_hours(self, event: AuditEvent) -> list[Alert]:
        hours = self.settings.hours_for(event.tenant_id)
        if hours is None or hours.contains(event.time):
            return []
        return [
            Alert(
                "after_hours",
                event.time,
                f"decryption outside business hours ({hours.start_hour}:00-{hours.end_hour}:00 {hours.timezone})",
                event.tenant_id,
                event.principal,
                event.source,
                {"event": event.event, "timezone": hours.timezone},
            )
        ]

    def _volume_rule(self, event: AuditEvent) -> list[Alert]:
        s = self.settings
        tenant = event.tenant_id or ""
        window = math.floor(event.time / s.volume_window_s)
        state: _Volume = self._volume.touch(tenant, lambda: _Volume(window))
        if window > state.window:
            gap = window - state.window
            state.ewma = state.ewma * (1 - s.volume_ewma_alpha) + s.volume_ewma_alpha * state.count
            state.ewma *= (1 - s.volume_ewma_alpha) ** (gap - 1)  # empty windows in between
            decay = 0.5 ** (gap * s.volume_window_s / s.volume_peak_half_life_s)
            state.peak = max(state.peak, float(state.count)) * decay
            state.windows_seen = min(state.windows_seen + gap, 1 << 30)
            state.window, state.count = window, 0
        state.count += 1
        if state.windows_seen < s.volume_learning_windows or state.alerted_window == window:
            return []
        baseline = max(state.ewma, state.peak)
        threshold = max(float(s.volume_min_count), s.volume_ratio * baseline)
        if state.count <= threshold:
            return []
        state.alerted_window = window
        return [
            Alert(
                "volume",
                event.time,
                f"{state.count} decryptions in {s.volume_window_s:.0f} s, over {threshold:.0f} "
                f"({s.volume_ratio:g} x baseline {baseline:.1f})",
                event.tenant_id,
                None,
                None,
                {
                    "count": state.count,
                    "baseline": round(baseline, 2),
                    "threshold": round(threshold, 2),
                    "subject": str(window),
                },
            )
        ]

    def _new_network(self, event: AuditEvent) -> list[Alert]:
        s = self.settings
        network = network_of(event.source, s.network_ipv4_prefix, s.network_ipv6_prefix)
        if event.principal is None or network is None:
            return []
        known: _Principal = self._principals.touch(event.principal, lambda: _Principal(event.time))
        seen = network in known.networks
        known.networks[network] = event.time
        known.networks.move_to_end(network)
        while len(known.networks) > s.max_networks_per_principal:
            known.networks.popitem(last=False)
        if seen or event.time - known.first_seen < s.network_learning_s:
            return []
        return [
            Alert(
                "new_network",
                event.time,
                f"credential used from a network never seen for it: {network}",
                event.tenant_id,
                event.principal,
                event.source,
                {"network": network, "known_networks": len(known.networks) - 1, "subject": network},
            )
        ]

    def _failure_burst(self, event: AuditEvent) -> list[Alert]:
        s = self.settings
        kind = "auth_failure_burst" if event.event == "auth.failure" else "integrity_failure_burst"
        network = network_of(event.source, s.network_ipv4_prefix, s.network_ipv6_prefix) or "unknown"
        alerts = []
        for subject, limit in ((network, s.failure_burst_count), ("*", s.failure_burst_global_count)):
            times: deque[float] = self._failures.touch(f"{kind}|{subject}", deque)
            times.append(event.time)
            while times and event.time - times[0] > s.failure_burst_window_s:
                times.popleft()
            while len(times) > limit:
                times.popleft()
            if len(times) >= limit:
                where = "anywhere" if subject == "*" else subject
                alerts.append(
                    Alert(
                        kind,
                        event.time,
                        f"{len(times)} {event.event} events in {s.failure_burst_window_s:.0f} s from {where}",
                        event.tenant_id,
                        event.principal,
                        event.source,
                        {"count": len(times), "subject": subject},
                    )
                )
        return alerts

    # ------------------------------------------------------------------ delivery
    def _emit(self, alert: Alert) -> None:
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

                            client = httpx.Client(timeout=self.settings.webhook_timeout_s)
                        response = client.post(str(self._webhook), json=alert.to_json())
                        response.raise_for_status()
                except Exception as exc:  # never let a webhook failure stop alerting
                    logger.error("audit alert webhook failed for %s: %s", alert.kind, type(exc).__name__)
        finally:
            if client is not None:
                client.close()
