"""The scheduler measured through the real server with `minilm`, each result beside its baseline.

    python benchmarks/scheduler/real_server.py [--seconds 15] [--json out.json]

1. Light tenant's p99 while a heavy tenant floods with 16 concurrent clients, over its p99 alone
   (fair scheduler, goal <= 2x; FIFO printed beside it).
2. Tenant switches per 1000 requests with 8 tenants sending interleaved, fair vs FIFO (goal <= 0.25x).
3. Throughput with tenant-grouped batching vs one request per forward, 32 concurrent clients of one
   tenant (goal >= 3x).
Every server is a real `cleanroom serve` subprocess on loopback (plain HTTP: TLS is not what is measured).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from support.server import ServerHandle, server_env, start_server

SENTENCE = "Confidential inference keeps every tenant's text sealed from the client to the model."


def payload(n: int) -> bytes:
    return json.dumps({"inputs": [f"{SENTENCE} #{i}" for i in range(n)]}).encode()


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


class Clients:
    """`count` closed-loop clients of `tenant` for `seconds`; latencies in seconds."""

    def __init__(self, server: ServerHandle, tenant: str, count: int, seconds: float, body: bytes,
                 pause_s: float = 0.0) -> None:
        self.latencies: list[float] = []
        self.errors = 0
        self._stop_at = 0.0
        self._threads = [threading.Thread(target=self._run, args=(server, tenant, body, pause_s), daemon=True)
                         for _ in range(count)]
        self.seconds = seconds

    def _run(self, server: ServerHandle, tenant: str, body: bytes, pause_s: float) -> None:
        with server.client(tenant) as client:
            client.public_key()
            while time.monotonic() < self._stop_at:
                started = time.perf_counter()
                try:
                    client.infer("minilm", body)
                    self.latencies.append(time.perf_counter() - started)
                except Exception:
                    self.errors += 1
                if pause_s:
                    time.sleep(pause_s)

    def start(self) -> Clients:
        self._stop_at = time.monotonic() + self.seconds
        for thread in self._threads:
            thread.start()
        return self

    def join(self) -> Clients:
        for thread in self._threads:
            thread.join()
        return self


def serve(tmp: Path, name: str, tenants: list[str], **settings: str) -> ServerHandle:
    env = server_env(**{f"CLEANROOM_{k.upper()}": v for k, v in settings.items()})
    server = start_server(tmp / name, "--models", "minilm", tls=False, env=env)
    for tenant in tenants:
        server.create_tenant(tenant)
    return server


def switches(server: ServerHandle) -> float:
    with server.http() as http:
        text = http.get("/metrics").text
    return sum(float(v) for v in re.findall(r"^cleanroom_scheduler_tenant_switches_total\{[^}]*\} (\S+)$", text, re.M))


def light_tenant(tmp: Path, policy: str, seconds: float) -> dict[str, float]:
    server = serve(tmp, f"light-{policy}", ["light", "heavy"], scheduler_policy=policy)
    try:
        alone = Clients(server, "light", 1, seconds / 2, payload(1), pause_s=0.05).start().join()
        heavy = Clients(server, "heavy", 16, seconds, payload(1)).start()
        time.sleep(1.0)
        loaded = Clients(server, "light", 1, seconds - 2, payload(1), pause_s=0.05).start().join()
        heavy.join()
        return {"light_p99_alone_s": p99(alone.latencies), "light_p99_loaded_s": p99(loaded.latencies),
                "ratio": p99(loaded.latencies) / p99(alone.latencies), "errors": alone.errors + loaded.errors}
    finally:
        server.stop()


def tenant_switches(tmp: Path, policy: str, seconds: float) -> dict[str, float]:
    tenants = [f"t{i}" for i in range(8)]
    server = serve(tmp, f"switch-{policy}", tenants, scheduler_policy=policy)
    try:
        groups = [Clients(server, t, 2, seconds, payload(1)).start() for t in tenants]
        for group in groups:
            group.join()
        requests = sum(len(g.latencies) for g in groups)
        return {"requests": requests, "switches": switches(server),
                "switches_per_1000": 1000 * switches(server) / max(1, requests)}
    finally:
        server.stop()


def batching(tmp: Path, max_batch: str, seconds: float) -> dict[str, float]:
    settings = {"max_batch_size": max_batch} if max_batch else {}
    server = serve(tmp, f"batch-{max_batch or 'on'}", ["solo"], **settings)
    try:
        clients = Clients(server, "solo", 32, seconds, payload(1)).start().join()
        return {"requests_per_s": len(clients.latencies) / seconds, "errors": clients.errors,
                "p50_s": statistics.median(clients.latencies)}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cleanroom-sched-bench-"))
    results: dict[str, dict[str, dict[str, float]]] = {"light": {}, "switches": {}, "batching": {}}
    for policy in ("fair", "fifo"):
        results["light"][policy] = light_tenant(tmp, policy, args.seconds)
        print(f"light tenant p99 under a 16-client flood / alone, {policy}: {results['light'][policy]['ratio']:.2f}x "
              f"({results['light'][policy]['light_p99_loaded_s'] * 1e3:.0f} ms vs "
              f"{results['light'][policy]['light_p99_alone_s'] * 1e3:.0f} ms)", flush=True)
    for policy in ("fair", "fifo"):
        results["switches"][policy] = tenant_switches(tmp, policy, args.seconds)
        print(f"tenant switches per 1000 requests, 8 tenants, {policy}: "
              f"{results['switches'][policy]['switches_per_1000']:.0f}", flush=True)
    fair, fifo = (results["switches"][p]["switches_per_1000"] for p in ("fair", "fifo"))
    print(f"  fair/fifo switches: {fair / max(fifo, 1e-9):.2f}x (goal <= 0.25x)")
    for label, cap in (("grouped", ""), ("one per forward", "1")):
        results["batching"][label] = batching(tmp, cap, args.seconds)
        print(f"minilm, 32 clients of one tenant, {label}: {results['batching'][label]['requests_per_s']:.1f} req/s",
              flush=True)
    speedup = results["batching"]["grouped"]["requests_per_s"] / results["batching"]["one per forward"]["requests_per_s"]
    print(f"  batching speed-up: {speedup:.2f}x (goal >= 3x)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
