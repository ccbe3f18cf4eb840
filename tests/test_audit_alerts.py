"""Anomaly alerts: quiet on two generated days of normal traffic; fire on after-hours, volume, new-network
and failure-burst patterns; every alert is an audit record, a log line, a metric and a webhook call."""

from __future__ import annotations

import http.server
import json
import logging
import math
import os
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import CollectorRegistry

from cleanroom.audit.alerts import Alert, AlertMonitor, AlertSettings, BusinessHours, network_of
from cleanroom.audit.log import AuditLog
from cleanroom.audit.reader import read_events
from cleanroom.audit.records import AuditEvent
from cleanroom.errors import ConfigurationError

UTC = ZoneInfo("UTC")
DAY1 = datetime(2024, 3, 5, tzinfo=UTC)  # a Tuesday
DAY2 = DAY1 + timedelta(days=1)

# tenant -> (business hours, peak requests per minute, principal -> networks it works from)
TENANTS: dict[str, tuple[BusinessHours, float, dict[str, list[str]]]] = {
    "acme": (
        BusinessHours("Europe/Berlin", 8, 19),
        6.0,
        {"cred-a1": ["203.0.113.{}"], "cred-a2": ["198.51.100.{}", "2001:db8:1::{:x}"]},
    ),
    "globex": (BusinessHours("America/New_York", 7, 20), 16.0, {"cred-g1": ["192.0.2.{}"]}),
    "initech": (BusinessHours("Asia/Tokyo", 9, 18), 1.5, {"cred-i1": ["100.64.1.{}"]}),
}


def _settings(**overrides: object) -> AlertSettings:
    base: dict[str, object] = {
        "business_hours": {name: spec[0] for name, spec in TENANTS.items()},
        "network_learning_s": 86_400.0,
    }
    base.update(overrides)
    return AlertSettings(**base)  # type: ignore[arg-type]


def _request(when: float, tenant: str, principal: str, source: str, request_id: str) -> list[AuditEvent]:
    """One sealed request leaves three decrypt records (DESIGN §4 step 3)."""
    return [
        AuditEvent(
            event=name,
            time=when,
            tenant_id=tenant,
            key_id=f"{tenant}-k",
            key_version=1,
            request_id=request_id,
            principal=principal,
            source=source,
            byte_count=2048,
        )
        for name in ("decrypt.tenant_key", "decrypt.request_key", "decrypt.data_key")
    ]


def normal_day(day: datetime, seed: int) -> list[AuditEvent]:
    """A generated working day: per tenant, requests only in business hours with a smooth bell-shaped
    rate (Poisson per minute), from the principals' usual networks; plus a trickle of stray auth
    failures (typos, expired keys) that must not look like a burst."""
    rng = np.random.default_rng(seed)
    events: list[AuditEvent] = []
    for tenant, (hours, peak_per_min, principals) in TENANTS.items():
        zone = ZoneInfo(hours.timezone)
        local_day = day.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
        if local_day.date() != day.date():
            local_day = datetime(day.year, day.month, day.day, tzinfo=zone)
        opening = local_day + timedelta(hours=hours.start_hour)
        span_min = (hours.end_hour - hours.start_hour) * 60
        for minute in range(span_min):
            rate = peak_per_min * math.sin(math.pi * (minute + 0.5) / span_min) ** 2
            for _ in range(int(rng.poisson(rate))):
                when = (opening + timedelta(minutes=minute, seconds=float(rng.uniform(0, 60)))).timestamp()
                principal = str(rng.choice(list(principals)))
                pattern = str(rng.choice(principals[principal]))
                source = pattern.format(int(rng.integers(2, 250)))
                events += _request(when, tenant, principal, source, f"r{len(events)}")
    start = day.timestamp()
    for _ in range(12):
        events.append(
            AuditEvent(
                event="auth.failure",
                time=start + float(rng.uniform(0, 86_400)),
                source=f"198.18.{int(rng.integers(0, 255))}.7",
                details={"reason": "bad_key"},
            )
        )
    events.sort(key=lambda e: e.time)
    return events


@pytest.fixture(scope="module")
def days() -> tuple[list[AuditEvent], list[AuditEvent]]:
    return normal_day(DAY1, 1), normal_day(DAY2, 2)


def test_generated_day_looks_like_a_business_day(days: tuple[list[AuditEvent], list[AuditEvent]]) -> None:
    day1, _ = days
    decrypts = [e for e in day1 if e.event.startswith("decrypt.")]
    assert len(decrypts) > 5_000
    for event in decrypts:
        assert TENANTS[event.tenant_id or ""][0].contains(event.time)


def test_quiet_on_two_normal_days(days: tuple[list[AuditEvent], list[AuditEvent]]) -> None:
    monitor = AlertMonitor(_settings())
    alerts = [a for event in days[0] + days[1] for a in monitor.observe(event)]
    assert alerts == [], [a.message for a in alerts[:5]]


def test_control_same_traffic_with_utc_hours_is_not_quiet(days: tuple[list[AuditEvent], list[AuditEvent]]) -> None:
    """The quiet replay is quiet because of per-tenant timezones, not because the rule never fires."""
    monitor = AlertMonitor(_settings(business_hours={}, default_business_hours=BusinessHours("UTC", 8, 19)))
    alerts = [a for event in days[1] for a in monitor.observe(event)]
    assert {a.tenant_id for a in alerts if a.kind == "after_hours"} >= {"globex", "initech"}


def _learned(days: tuple[list[AuditEvent], list[AuditEvent]], **kwargs: object) -> AlertMonitor:
    monitor = AlertMonitor(_settings(), **kwargs)  # type: ignore[arg-type]
    monitor.warm_up(days[0])
    return monitor


def _at(local: str, zone: str) -> float:
    return datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(zone)).timestamp()


def test_after_hours_in_the_tenants_own_timezone(days: tuple[list[AuditEvent], list[AuditEvent]]) -> None:
    monitor = _learned(days)
    # 07:30 UTC is 08:30 in Berlin: inside acme's hours even though it is before 08:00 UTC.
    assert monitor.observe(_request(_at("2024-03-06T07:30", "UTC"), "acme", "cred-a1", "203.0.113.5", "x")[0]) == []
    late = monitor.observe(_request(_at("2024-03-06T23:10", "Europe/Berlin"), "acme", "cred-a1", "203.0.113.5", "y")[0])
    assert [a.kind for a in late] == ["after_hours"] and late[0].tenant_id == "acme"
    assert late[0].details["timezone"] == "Europe/Berlin"
    # Saturday morning in Tokyo, for initech.
    weekend = monitor.observe(
        _request(_at("2024-03-09T10:00", "Asia/Tokyo"), "initech", "cred-i1", "100.64.1.9", "z")[0]
    )
    assert [a.kind for a in weekend] == ["after_hours"]
    # Cooldown: the rest of a late-night batch does not page again.
    again = monitor.observe(
        _request(_at("2024-03-06T23:20", "Europe/Berlin"), "acme", "cred-a1", "203.0.113.5", "w")[1]
    )
    assert again == []


def test_volume_far_above_baseline(days: tuple[list[AuditEvent], list[AuditEvent]]) -> None:
    monitor = _learned(days)
    quiet = [a for e in days[1] if e.time < _at("2024-03-06T11:00", "Europe/Berlin") for a in monitor.observe(e)]
    assert quiet == []
    start = _at("2024-03-06T11:00:10", "Europe/Berlin")
    burst: list[Alert] = []
    for i in range(1500):  # 4500 decrypts in ~4 minutes; acme's normal peak is ~40 requests per 5 minutes
        for event in _request(start + i * 0.16, "acme", "cred-a1", "203.0.113.8", f"b{i}"):
            burst += monitor.observe(event)
    assert [a.kind for a in burst] == ["volume"], [a.message for a in burst]
    assert burst[0].tenant_id == "acme" and float(burst[0].details["count"]) >= float(burst[0].details["threshold"])


def test_volume_does_not_fire_during_learning() -> None:
    monitor = AlertMonitor(_settings(volume_learning_windows=12))
    start = _at("2024-03-06T10:00", "Europe/Berlin")
    alerts = [
        a
        for i in range(3000)
        for a in monitor.observe(_request(start + i * 0.05, "acme", "cred-a1", "203.0.113.8", f"b{i}")[0])
    ]
    assert [a.kind for a in alerts if a.kind == "volume"] == []


def test_new_network_after_learning(days: tuple[list[AuditEvent], list[AuditEvent]]) -> None:
    monitor = _learned(days)
    noon = _at("2024-03-06T12:00", "Europe/Berlin")
    assert monitor.observe(_request(noon, "acme", "cred-a1", "203.0.113.77", "k")[0]) == []  # known /24
    first = monitor.observe(_request(noon + 1, "acme", "cred-a1", "100.70.8.9:51234", "n")[0])
    assert [a.kind for a in first] == ["new_network"] and first[0].details["network"] == "100.70.8.0/24"
    assert first[0].principal == "cred-a1"
    assert monitor.observe(_request(noon + 2, "acme", "cred-a1", "100.70.8.200", "n2")[0]) == []  # same /24
    v6 = monitor.observe(_request(noon + 3, "acme", "cred-a2", "[2001:db8:2::5]:443", "v6")[0])
    assert [a.details["network"] for a in v6] == ["2001:db8:2::/64"]
    assert monitor.observe(_request(noon + 4, "acme", "cred-a2", "2001:db8:1::77", "v6b")[0]) == []  # known /64


def test_new_network_is_quiet_while_a_principal_is_new() -> None:
    monitor = AlertMonitor(_settings(network_learning_s=3600))
    t = _at("2024-03-06T10:00", "Europe/Berlin")
    alerts = [
        a
        for i in range(20)
        for a in monitor.observe(_request(t + i * 60, "acme", "cred-new", f"10.{i}.0.1", f"q{i}")[0])
    ]
    assert alerts == []
    assert [a.kind for a in monitor.observe(_request(t + 7200, "acme", "cred-new", "10.99.0.1", "late")[0])] == [
        "new_network"
    ]


@pytest.mark.parametrize(
    ("event", "kind"), [("auth.failure", "auth_failure_burst"), ("integrity.failure", "integrity_failure_burst")]
)
def test_failure_bursts(event: str, kind: str) -> None:
    monitor = AlertMonitor(_settings())
    t = DAY2.timestamp()
    spread = [
        a for i in range(40) for a in monitor.observe(AuditEvent(event=event, time=t + i * 120, source="198.18.0.7"))
    ]
    assert spread == []
    t += 10_000
    burst = [
        a
        for i in range(30)
        for a in monitor.observe(AuditEvent(event=event, time=t + i, source=f"198.18.5.{i}", tenant_id="acme"))
    ]
    assert [a.kind for a in burst] == [kind] and burst[0].details["subject"] == "198.18.5.0/24"
    distributed = [
        a
        for i in range(120)
        for a in monitor.observe(AuditEvent(event=event, time=t + 1000 + i * 0.4, source=f"10.{i}.1.1"))
    ]
    assert [a.details["subject"] for a in distributed] == ["*"]


class _Hook(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, object]] = []
    arrived = threading.Event()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()
        _Hook.arrived.set()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_alert_is_a_record_a_log_line_a_metric_and_a_webhook(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, webhook_url: str
) -> None:
    keys = bytearray(os.urandom(32)), ec.generate_private_key(ec.SECP384R1())
    registry = CollectorRegistry()
    _Hook.received.clear()
    _Hook.arrived.clear()
    with (
        AuditLog(tmp_path / "audit", *keys) as log,
        AlertMonitor(_settings(), audit_log=log, registry=registry, webhook=webhook_url) as monitor,
        caplog.at_level(logging.WARNING, logger="cleanroom.audit.alerts"),
    ):
        event = _request(_at("2024-03-06T03:00", "Europe/Berlin"), "acme", "cred-a1", "203.0.113.5", "night")[0]
        log.append(event)
        alerts = monitor.observe(event)
        assert [a.kind for a in alerts] == ["after_hours"]
        assert _Hook.arrived.wait(10), "webhook was not called"
    assert _Hook.received[0]["kind"] == "after_hours" and _Hook.received[0]["tenant_id"] == "acme"
    assert any(r.name == "cleanroom.audit.alerts" and "after_hours" in r.getMessage() for r in caplog.records)
    assert (
        registry.get_sample_value("cleanroom_audit_alerts_total", {"kind": "after_hours", "tenant_id": "acme"}) == 1.0
    )
    recorded = [e for _, e in read_events(tmp_path / "audit", keys[0])]
    assert [e.event for e in recorded] == ["decrypt.tenant_key", "alert.after_hours"]
    assert recorded[1].tenant_id == "acme" and "business hours" in str(recorded[1].details["message"])


def test_failing_webhook_never_blocks(caplog: pytest.LogCaptureFixture) -> None:
    entered = threading.Event()
    release = threading.Event()

    def slow_then_broken(alert: Alert) -> None:
        entered.set()
        release.wait(10)
        raise RuntimeError("receiver down")

    monitor = AlertMonitor(_settings(cooldown_s=0), webhook=slow_then_broken)
    with caplog.at_level(logging.ERROR, logger="cleanroom.audit.alerts"):
        night = _at("2024-03-06T02:00", "Europe/Berlin")
        for i in range(5):  # returns at once although the first delivery is stuck
            assert monitor.observe(_request(night + i, "acme", "cred-a1", "203.0.113.5", f"n{i}")[0])
        assert entered.wait(10)
        release.set()
        monitor.close()
    assert any("webhook failed" in r.getMessage() for r in caplog.records)


def test_state_is_bounded() -> None:
    monitor = AlertMonitor(_settings(max_tracked=500, network_learning_s=0))
    t = DAY2.timestamp() + 12 * 3600
    for i in range(3000):
        monitor.observe(_request(t, "globex", f"spray-{i}", f"10.{i % 250}.{i // 250}.1", f"s{i}")[0])
    assert len(monitor._principals) <= 500


def test_settings_fail_fast() -> None:
    with pytest.raises(ConfigurationError):
        BusinessHours("Mars/Olympus_Mons")
    with pytest.raises(ConfigurationError):
        BusinessHours("UTC", 19, 8)
    with pytest.raises(ConfigurationError):
        AlertSettings(volume_ratio=0)


@pytest.mark.parametrize(
    ("source", "network"),
    [
        ("203.0.113.7", "203.0.113.0/24"),
        ("203.0.113.7:5123", "203.0.113.0/24"),
        ("[2001:db8::1]:443", "2001:db8::/64"),
        ("2001:db8::1", "2001:db8::/64"),
        ("::ffff:192.0.2.9", "192.0.2.0/24"),
        ("testclient", None),
        ("", None),
        (None, None),
    ],
)
def test_network_of(source: str | None, network: str | None) -> None:
    assert network_of(source) == network


def test_network_of_cache_is_bounded_and_gives_the_same_answers() -> None:
    for i in range(5000):  # sprayed sources only evict
        assert network_of(f"198.{i // 256 % 256}.{i % 256}.9") == f"198.{i // 256 % 256}.{i % 256}.0/24"
    assert network_of.cache_info().currsize <= 4096
    assert network_of("203.0.113.7") == network_of("203.0.113.7") == "203.0.113.0/24"
    assert network_of("203.0.113.7", 16) == "203.0.0.0/16"  # the prefix is part of the key
