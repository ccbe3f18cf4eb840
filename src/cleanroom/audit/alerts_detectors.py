"""The anomaly detectors: from audit events to alerts, with bounded per-tenant/per-principal state.

Pure decisions, no I/O: `AlertDetectors.evaluate` updates baselines with one event and returns the alerts
it triggers (the rules are described in `cleanroom.audit.alerts`). Logging, metrics, the audit record of
an alert and the webhook are `alerts_delivery`'s job; the lock around the state is `AlertMonitor`'s.
Kept apart so the rules can be read, and replayed over past events (`warm_up`), without any delivery.
"""

from __future__ import annotations

import functools
import ipaddress
import math
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cleanroom.audit.alerts_settings import AlertSettings
from cleanroom.audit.records import AuditEvent, DetailValue


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


class AlertDetectors:
    """The after-hours, volume, new-network and failure-burst rules over one set of bounded state.
    Not thread-safe: the caller (`AlertMonitor`) serializes `evaluate`."""

    def __init__(self, settings: AlertSettings) -> None:
        self.settings = settings
        limit = settings.max_tracked
        self.volumes = _Bounded(limit)
        self.principals = _Bounded(limit)
        self.failures = _Bounded(limit)
        self.cooldowns = _Bounded(limit)

    def evaluate(self, event: AuditEvent, emit: bool) -> list[Alert]:
        """Update the baselines with `event`; return the alerts to raise (none when `emit` is False, or
        when the same (kind, subject) alerted within `cooldown_s`)."""
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
        last = self.cooldowns.get(key)
        if last is not None and now - last < self.settings.cooldown_s:
            return False
        self.cooldowns.touch(key, lambda: now)
        self.cooldowns[key] = now
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
        state: _Volume = self.volumes.touch(tenant, lambda: _Volume(window))
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
        known: _Principal = self.principals.touch(event.principal, lambda: _Principal(event.time))
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
            times: deque[float] = self.failures.touch(f"{kind}|{subject}", deque)
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
