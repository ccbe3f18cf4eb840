"""How the anomaly alerts are configured: per-tenant business hours and the detectors' thresholds.

Configuration only, validated in the constructors (a bad timezone or a negative window fails when the
settings are built, not on the first event). Separate from the detectors (`alerts_detectors`) because the
sink and the CLI build settings without importing the rules, delivery or prometheus.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cleanroom.errors import ConfigurationError


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
