"""A small closed-loop load generator: N client threads, each sending requests back to back for a while,
recording every outcome with its timing, while the server's RSS is sampled. Used by the load, soak and
fault tests and by benchmarks/load/."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Call = Callable[[], int]  # one request; returns the HTTP status, raises on transport failure


@dataclass
class Outcome:
    started_s: float  # since the run began
    latency_s: float
    status: int | None  # None: the request failed below HTTP
    error: str | None = None


@dataclass
class LoadReport:
    duration_s: float
    clients: int
    outcomes: list[Outcome] = field(default_factory=list)
    rss_samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, bytes)

    @property
    def ok(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == 200]

    def statuses(self) -> Counter[int | str]:
        return Counter(o.status if o.status is not None else str(o.error) for o in self.outcomes)

    def percentile_ms(self, q: float) -> float:
        latencies = sorted(o.latency_s for o in self.ok)
        if not latencies:
            return float("nan")
        return 1000 * latencies[min(len(latencies) - 1, int(q / 100 * len(latencies)))]

    @property
    def requests_per_s(self) -> float:
        return len(self.ok) / self.duration_s if self.duration_s else 0.0

    def rss_growth(self, warmup_fraction: float = 0.3) -> float:
        """Largest RSS after warm-up relative to the RSS right after warm-up (0.05 = grew 5%)."""
        after = [(t, rss) for t, rss in self.rss_samples if t >= warmup_fraction * self.duration_s]
        if len(after) < 4:
            return float("nan")
        baseline = statistics.median(rss for _, rss in after[:3])
        return max(rss for _, rss in after) / baseline - 1

    def summary(self) -> dict[str, Any]:
        rss = [r for _, r in self.rss_samples]
        return {
            "clients": self.clients,
            "duration_s": round(self.duration_s, 2),
            "requests_ok": len(self.ok),
            "requests_per_s": round(self.requests_per_s, 1),
            "p50_ms": round(self.percentile_ms(50), 2),
            "p99_ms": round(self.percentile_ms(99), 2),
            "statuses": {str(k): v for k, v in self.statuses().items()},
            "rss_mib_min": round(min(rss) / 2**20, 1) if rss else None,
            "rss_mib_max": round(max(rss) / 2**20, 1) if rss else None,
            "rss_growth_after_warmup": round(self.rss_growth(), 4) if rss else None,
        }


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise ValueError(f"no VmRSS for {pid}")


def run_load(
    call_factory: Callable[[int], Call],
    *,
    clients: int,
    duration_s: float,
    pid: int | None = None,
    sample_every_s: float = 0.25,
    stop: threading.Event | None = None,
    on_tick: Callable[[float], None] | None = None,
) -> LoadReport:
    """Run `clients` threads for `duration_s` (or until `stop` is set); `call_factory(i)` builds client i."""
    report = LoadReport(duration_s=duration_s, clients=clients)
    lock = threading.Lock()
    stop = stop or threading.Event()
    calls = [call_factory(i) for i in range(clients)]  # connections and keys set up before the clock starts
    start = time.monotonic()
    deadline = start + duration_s

    def client(call: Call) -> None:
        local: list[Outcome] = []
        while not stop.is_set() and time.monotonic() < deadline:
            t0 = time.monotonic()
            try:
                outcome = Outcome(t0 - start, 0.0, call())
            except Exception as exc:  # a failed request is data, not a crash of the generator
                outcome = Outcome(t0 - start, 0.0, None, type(exc).__name__)
            outcome.latency_s = time.monotonic() - t0
            local.append(outcome)
        with lock:
            report.outcomes.extend(local)

    threads = [threading.Thread(target=client, args=(call,), daemon=True) for call in calls]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        now = time.monotonic() - start
        if pid is not None:
            try:
                report.rss_samples.append((now, rss_bytes(pid)))
            except (OSError, ValueError):
                pid = None  # the server exited (fault tests)
        if on_tick is not None:
            on_tick(now)
        time.sleep(sample_every_s)
    report.duration_s = min(duration_s, time.monotonic() - start)
    return report


def sealed_echo_call(url: str, api_key: str, verify: Any, payload_bytes: int = 2048) -> Call:
    """A cleanroom client sending sealed echo requests; a wrong answer raises (counts as an error)."""
    from cleanroom.client import Client, ClientError, ConnectionFailed

    client = Client(url, api_key=api_key, verify=verify, timeout_s=60)
    client.public_key()
    counter = iter(range(1 << 62))

    def call() -> int:
        payload = os.urandom(payload_bytes // 2).hex().encode() + b"#%d" % next(counter)
        try:
            answer = client.infer("echo", payload)
        except ConnectionFailed:
            raise  # the network, not an answer (status 0): recorded as a failed call, as httpx's errors were
        except ClientError as exc:
            return exc.status
        if answer != payload:
            raise AssertionError("echo answered different bytes")
        return 200

    return call


def bare_echo_call(url: str, payload_bytes: int = 2048, verify: Any = True) -> Call:
    """The baseline: a plain POST of the same size to benchmarks/bare_server.py."""
    import httpx

    http = httpx.Client(base_url=url, timeout=60, verify=verify)

    def call() -> int:
        payload = os.urandom(payload_bytes // 2).hex().encode()
        response = http.post("/echo", content=payload)
        if response.status_code == 200 and response.content != payload:
            raise AssertionError("echo answered different bytes")
        return response.status_code

    return call
