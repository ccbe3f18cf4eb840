"""The scheduler measured through the real server with `minilm`, each result beside its baseline.

    .venv/bin/python benchmarks/scheduler/real_server.py [--seconds 10] [--only light,switches,batching]
        [--clients-per-tenant 4] [--torch-threads 1] [--json out.json]

1. Light tenant's p99 while a heavy tenant floods with 16 concurrent clients, over its p99 alone
   (fair scheduler, goal <= 2x; FIFO printed beside it). The light tenant sends open-loop Poisson arrivals,
   5 per second for 2 x --seconds (~100 samples; under 10 % of the server alone, as in the simulation; a
   closed-loop client would send fewer requests exactly when they are slow, and the p99 of a few samples
   is their maximum). "Alone" is measured after a warm-up (first forward passes, the scheduler's cost
   fit), on the same server, for as long as the flooded run. Beside it: p50s, and the light tenant's p99
   time in the scheduler's queue (from the server's histogram), which is what scheduling adds.
2. Tenant switches per 1000 requests with 8 tenants sending interleaved, fair vs FIFO (goal <= 0.25x at the
   default latency bound): `--clients-per-tenant` closed-loop clients each (default 4, 32 in all), so that
   the server is saturated and every tenant has work most of the time, as on a busy multi-tenant server.
3. Throughput with tenant-grouped batching vs one request per forward (`CLEANROOM_MAX_BATCH_SIZE=1`),
   32 concurrent clients of one tenant (goal >= 3x).

Every server is a real `cleanroom serve` subprocess on loopback (plain HTTP: TLS is not what is measured),
with `OMP_NUM_THREADS=1` unless `--torch-threads` says otherwise: on a shared 2-core machine torch's default
(one intra-op thread per core) makes each forward wait for a peer thread the OS has descheduled; measured
at load average ~3, the light tenant alone at 10 requests/s had a p50 of 362 ms with 2 threads and 48 ms
with 1 (server CPU 54 vs 24 ms per request).
The load comes from one asyncio event loop in this process (keep-alive HTTP/1.1 written by hand; requests
sealed and answers opened with the real client code), not a thread per client: on a small machine 32 client
threads contend for the GIL and the cores the server needs, and httpx's async client alone took ~3-4 ms of
CPU per request, a third of the server's. Beside each result the benchmark prints where the CPU went
(server and load-generator CPU seconds per request, from /proc and `time.process_time`) and what the
scheduler did (mean batch size and batch time, scrubs, from the server's /metrics).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from cleanroom.client import Client
from cleanroom.crypto.sealed import CONTENT_TYPE
from support.server import ServerHandle, server_env, start_server

SENTENCE = "Confidential inference keeps every tenant's text sealed from the client to the model."
LIGHT_RATE_PER_S = 5.0  # Poisson, for 2 x --seconds: ~100 samples, under 10 % of the server alone
BODY = json.dumps({"inputs": [SENTENCE]}).encode()


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan")


@dataclass
class Group:
    """`count` closed-loop clients of `tenant`, from `start_s` for `seconds`, pausing `pause_s` after each;
    or, with `rate_per_s`, open-loop Poisson arrivals at that rate (each request sent when it is due,
    whatever is still outstanding: the latency samples do not thin out when the server is slow)."""

    tenant: str
    count: int
    seconds: float
    start_s: float = 0.0
    pause_s: float = 0.0
    rate_per_s: float | None = None
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)


class RawConnection:
    """One keep-alive HTTP/1.1 connection written by hand: a load generator that costs the shared CPUs
    little (httpx's async client spent ~3 ms of CPU per request here, as much as the server's own work)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        reused = self.writer is not None
        try:
            return await self._post(path, body, headers)
        except (ConnectionError, asyncio.IncompleteReadError):
            await self.close()
            if not reused:
                raise
            # The server closes keep-alive connections idle for a few seconds: like any client, reconnect once.
            return await self._post(path, body, headers)

    async def _post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n{head}\r\n"
        self.writer.write(request.encode() + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length, close = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                close = True
        content = await self.reader.readexactly(length)
        if close:
            await self.close()
        return status, content

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = self.reader = None


async def _request(sealer: Client, http: RawConnection, group: Group, headers: dict[str, str]) -> None:
    started = time.perf_counter()
    sealed = sealer.seal_request("minilm", BODY)
    try:
        status, content = await http.post("/v1/models/minilm/infer", sealed.body, headers)
        if status == 200:
            sealed.open_response(content)
            group.latencies.append(time.perf_counter() - started)
        else:
            group.errors[str(status)] = group.errors.get(str(status), 0) + 1
    except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
        await http.close()
        group.errors[type(exc).__name__] = group.errors.get(type(exc).__name__, 0) + 1
    finally:
        sealed.close()


async def _client(server: ServerHandle, sealer: Client, group: Group, t0: float, rng: random.Random) -> None:
    await asyncio.sleep(max(0.0, t0 + group.start_s - time.monotonic()) + rng.uniform(0, 0.01))
    stop_at = t0 + group.start_s + group.seconds
    headers = {"Authorization": f"Bearer {server.tenants[group.tenant]['api_key']}", "Content-Type": CONTENT_TYPE}
    address = urllib.parse.urlsplit(server.url)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    idle: list[RawConnection] = []
    if group.rate_per_s is not None:

        async def arrival() -> None:
            connection = idle.pop() if idle else RawConnection(host, port)
            try:
                await _request(sealer, connection, group, headers)
            finally:
                idle.append(connection)

        pending: list[asyncio.Task[None]] = []
        due = time.monotonic()
        while due < stop_at:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            pending.append(asyncio.create_task(arrival()))
            due += rng.expovariate(group.rate_per_s)
        await asyncio.gather(*pending)
    else:
        idle.append(RawConnection(host, port))
        while time.monotonic() < stop_at:
            await _request(sealer, idle[0], group, headers)
            if group.pause_s:
                await asyncio.sleep(group.pause_s)
    for connection in idle:
        await connection.close()


async def _drive(server: ServerHandle, groups: list[Group]) -> None:
    sealers: dict[str, Client] = {}
    for group in groups:
        if group.tenant not in sealers:
            sealers[group.tenant] = server.client(group.tenant)
            sealers[group.tenant].public_key()
    rng = random.Random(1)
    t0 = time.monotonic() + 0.2
    await asyncio.gather(*(_client(server, sealers[g.tenant], g, t0, rng) for g in groups for _ in range(g.count)))
    for sealer in sealers.values():
        sealer.close()


@dataclass
class Usage:
    """CPU seconds of the server process and of this process (the load generator) over a run."""

    server_s: float
    client_s: float

    @staticmethod
    def now(server: ServerHandle) -> Usage:
        ticks = os.sysconf("SC_CLK_TCK")
        fields = Path(f"/proc/{server.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return Usage((int(fields[11]) + int(fields[12])) / ticks, time.process_time())

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.server_s - other.server_s, self.client_s - other.client_s)


def run(server: ServerHandle, groups: list[Group]) -> Usage:
    before = Usage.now(server)
    asyncio.run(_drive(server, groups))
    return Usage.now(server) - before


def metrics(server: ServerHandle) -> dict[str, float]:
    with server.http() as http:
        text = http.get("/metrics").text
    light_id = re.escape(server.tenants.get("light", {}).get("tenant_id", "light"))
    pattern = rf'^cleanroom_scheduler_wait_seconds_bucket\{{le="([^"]+)",tenant_id="{light_id}"\}} (\S+)$'
    light = {float(le): float(v) for le, v in re.findall(pattern, text, re.M)}

    def total(name: str) -> float:
        return sum(float(v) for v in re.findall(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M))

    out: dict[str, float] = {}
    for reason, value in re.findall(
        r'^cleanroom_scheduler_run_ends_total\{[^}]*reason="([^"]+)"[^}]*\} (\S+)$', text, re.M
    ):
        out[f"run_end_{reason}"] = out.get(f"run_end_{reason}", 0.0) + float(value)
    for name in ("device_idle_seconds", "batch_size"):
        pattern = rf'^cleanroom_scheduler_{name}_bucket\{{[^}}]*\ble="([^"]+)"[^}}]*\}} (\S+)$'  # labels sorted
        for le, value in re.findall(pattern, text, re.M):
            out[f"{name}_le_{le}"] = out.get(f"{name}_le_{le}", 0.0) + float(value)
    for kind in ("first", "all"):
        for stat in ("sum", "count"):
            m = re.search(rf'^cleanroom_scheduler_comeback_seconds_{stat}\{{kind="{kind}"\}} (\S+)$', text, re.M)
            out[f"comeback_{kind}_{stat}"] = float(m.group(1)) if m else 0.0
    return {
        **out,
        "idle_s": total("cleanroom_scheduler_device_idle_seconds_sum"),
        "idles": total("cleanroom_scheduler_device_idle_seconds_count"),
        "switches": total("cleanroom_scheduler_tenant_switches_total"),
        "prepared_ahead": total("cleanroom_scheduler_prepared_ahead_total"),
        "batches": total("cleanroom_scheduler_batch_size_count"),
        "batched_requests": total("cleanroom_scheduler_batch_size_sum"),
        "service_s": total("cleanroom_scheduler_service_seconds_sum"),
        "scrubs": total("cleanroom_scheduler_scrub_seconds_count"),
        "scrub_s": total("cleanroom_scheduler_scrub_seconds_sum"),
        "wait_s": total("cleanroom_scheduler_wait_seconds_sum"),
        "waits": total("cleanroom_scheduler_wait_seconds_count"),
        **{f"light_wait_le_{le}": n for le, n in light.items()},
    }


def light_wait_p99_ms(after: dict[str, float], before: dict[str, float]) -> float:
    """The light tenant's p99 time in the scheduler's queue (admission to batch start), from the histogram:
    the upper edge of the bucket that holds it (what scheduling adds, without HTTP and CPU contention)."""
    buckets = sorted(
        (float(k.rsplit("_", 1)[1]), after[k] - before.get(k, 0.0)) for k in after if k.startswith("light_wait_le_")
    )
    if not buckets or buckets[-1][1] <= 0:
        return float("nan")
    for le, n in buckets:
        if n >= 0.99 * buckets[-1][1]:
            return le * 1e3
    return float("inf")


def delta(after: dict[str, float], before: dict[str, float], usage: Usage, requests: int) -> dict[str, float]:
    d = {k: after[k] - before.get(k, 0.0) for k in after}
    batches = max(1.0, d["batches"])
    return {
        "requests": requests,
        "switches": d["switches"],
        "batches": d["batches"],
        "prepared_ahead": d["prepared_ahead"],
        "mean_batch": d["batched_requests"] / batches,
        "mean_batch_ms": 1e3 * d["service_s"] / batches,
        "mean_scrub_ms": 1e3 * d["scrub_s"] / max(1.0, d["scrubs"]),
        "mean_queue_wait_ms": 1e3 * d["wait_s"] / max(1.0, d["waits"]),
        "server_cpu_ms_per_request": 1e3 * usage.server_s / max(1, requests),
        "client_cpu_ms_per_request": 1e3 * usage.client_s / max(1, requests),
        "mean_device_idle_ms": 1e3 * d["idle_s"] / max(1.0, d["idles"]),
        "mean_comeback_first_ms": 1e3 * d["comeback_first_sum"] / max(1.0, d["comeback_first_count"]),
        "mean_comeback_all_ms": 1e3 * d["comeback_all_sum"] / max(1.0, d["comeback_all_count"]),
        **{k: v for k, v in d.items() if k.startswith(("run_end_", "batch_size_le_", "device_idle_seconds_le_"))},
    }


def diagnostics(d: dict[str, Any]) -> str:
    """Why runs ended, comebacks, device idle between batches, batch sizes (cumulative buckets)."""
    ends = {k.removeprefix("run_end_"): int(v) for k, v in d.items() if k.startswith("run_end_") and v}
    sizes = " ".join(
        f"<={float(k.rsplit('_', 1)[1]):.0f}:{v:.0f}" for k, v in d.items() if k.startswith("batch_size_le_") and v
    )
    idle = " ".join(
        f"<={float(k.rsplit('_', 1)[1]) * 1e3:g}ms:{v:.0f}"
        for k, v in d.items()
        if k.startswith("device_idle_seconds_le_") and v and k.rsplit("_", 1)[1] != "+Inf"
    )
    return (
        f"  run ends {ends}; comeback first {d['mean_comeback_first_ms']:.1f} ms, all {d['mean_comeback_all_ms']:.1f} "
        f"ms; device idle between batches mean {d['mean_device_idle_ms']:.2f} ms ({idle}); batch sizes ({sizes}); "
        f"{d['prepared_ahead']:.0f} of {d['batches']:.0f} batches prepared ahead"
    )


def describe(d: dict[str, float]) -> str:
    return (
        f"[{d['requests']:.0f} requests, mean batch {d['mean_batch']:.1f} in {d['mean_batch_ms']:.1f} ms, "
        f"scrub {d['mean_scrub_ms']:.2f} ms, queue wait {d['mean_queue_wait_ms']:.1f} ms; CPU per request: "
        f"server {d['server_cpu_ms_per_request']:.1f} ms, load generator {d['client_cpu_ms_per_request']:.1f} ms]"
    )


TORCH_THREADS: str | None = "1"  # --torch-threads


def serve(tmp: Path, name: str, tenants: list[str], **settings: str) -> ServerHandle:
    env = server_env(**{f"CLEANROOM_{k.upper()}": v for k, v in settings.items()})
    if TORCH_THREADS is not None:
        env["OMP_NUM_THREADS"] = TORCH_THREADS
    server = start_server(tmp / name, "--models", "minilm", tls=False, env=env)
    try:
        for tenant in tenants:
            server.create_tenant(tenant)
    except BaseException:
        server.stop()  # not left serving (from a data dir about to be removed)
        raise
    return server


def light_tenant(tmp: Path, policy: str, seconds: float) -> dict[str, Any]:
    server = serve(tmp, f"light-{policy}", ["light", "heavy"], scheduler_policy=policy)
    try:
        # Warm-up: first forward passes are slow, and the scheduler learns the batch cost fit.
        run(server, [Group("light", 1, 1.5), Group("heavy", 16, 1.5)])
        light_s = 2 * seconds  # ~100 samples at 5/s: p99 is then not simply the maximum
        alone = Group("light", 1, light_s, rate_per_s=LIGHT_RATE_PER_S)
        start = metrics(server)
        run(server, [alone])
        before = metrics(server)
        heavy = Group("heavy", 16, light_s + 1.0)
        loaded = Group("light", 1, light_s, start_s=1.0, rate_per_s=LIGHT_RATE_PER_S)
        usage = run(server, [heavy, loaded])
        after = metrics(server)
        diag = delta(after, before, usage, len(heavy.latencies) + len(loaded.latencies))
        return {
            "light_p50_alone_s": statistics.median(alone.latencies),
            "light_p50_loaded_s": statistics.median(loaded.latencies),
            "light_queue_wait_p99_alone_ms": light_wait_p99_ms(before, start),
            "light_queue_wait_p99_loaded_ms": light_wait_p99_ms(after, before),
            "light_p99_alone_s": p99(alone.latencies),
            "light_p99_loaded_s": p99(loaded.latencies),
            "ratio": p99(loaded.latencies) / p99(alone.latencies),
            "light_samples": len(loaded.latencies),
            "heavy_requests_per_s": len(heavy.latencies) / (light_s + 1.0),
            "errors": {**alone.errors, **loaded.errors, **heavy.errors},
            **diag,
        }
    finally:
        server.stop()


def tenant_switches(tmp: Path, policy: str, seconds: float, clients_per_tenant: int) -> dict[str, Any]:
    tenants = [f"t{i}" for i in range(8)]
    server = serve(tmp, f"switch-{policy}", tenants, scheduler_policy=policy)
    try:
        run(server, [Group(t, 1, 1.0) for t in tenants])  # warm-up
        groups = [Group(t, clients_per_tenant, seconds) for t in tenants]
        before = metrics(server)
        usage = run(server, groups)
        requests = sum(len(g.latencies) for g in groups)
        diag = delta(metrics(server), before, usage, requests)
        return {
            "switches_per_1000": 1000 * diag["switches"] / max(1, requests),
            "requests_per_s": requests / seconds,
            "p99_s": p99([x for g in groups for x in g.latencies]),
            "errors": {k: v for g in groups for k, v in g.errors.items()},
            **diag,
        }
    finally:
        server.stop()


def batching(tmp: Path, max_batch: str, seconds: float, clients: int) -> dict[str, Any]:
    settings = {"max_batch_size": max_batch} if max_batch else {}
    server = serve(tmp, f"batch-{max_batch or 'on'}", ["solo"], **settings)
    try:
        run(server, [Group("solo", clients, 1.0)])  # warm-up
        group = Group("solo", clients, seconds)
        before = metrics(server)
        usage = run(server, [group])
        diag = delta(metrics(server), before, usage, len(group.latencies))
        return {
            "requests_per_s": len(group.latencies) / seconds,
            "errors": group.errors,
            "p50_s": statistics.median(group.latencies),
            **diag,
        }
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measured run")
    parser.add_argument("--clients-per-tenant", type=int, default=4, help="scenario 2, 8 tenants")
    parser.add_argument(
        "--only", default="light,switches,batching", help="comma-separated scenarios: light, switches, batching"
    )
    parser.add_argument(
        "--torch-threads", default="1", help="OMP_NUM_THREADS for the server ('default': torch's own, one per core)"
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    only = {name.strip() for name in args.only.split(",") if name.strip()}
    if not only or only - {"light", "switches", "batching"}:
        parser.error(f"--only takes light, switches, batching (got {args.only!r})")
    if args.seconds <= 0 or args.clients_per_tenant < 1:
        parser.error("--seconds must be > 0 and --clients-per-tenant >= 1")
    global TORCH_THREADS
    TORCH_THREADS = None if args.torch_threads == "default" else args.torch_threads
    print(
        f"server torch threads: {args.torch_threads}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="cleanroom-sched-bench-") as tmp:  # servers' data dirs and logs
        results = run_scenarios(Path(tmp), args, only)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def run_scenarios(tmp: Path, args: argparse.Namespace, only: set[str]) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {"light": {}, "switches": {}, "batching": {}}
    if "light" in only:
        for policy in ("fair", "fifo"):
            r = results["light"][policy] = light_tenant(tmp, policy, args.seconds)
            print(
                f"light tenant p99 under a 16-client flood / alone, {policy}: {r['ratio']:.2f}x "
                f"({r['light_p99_loaded_s'] * 1e3:.0f} ms vs {r['light_p99_alone_s'] * 1e3:.0f} ms; p50 "
                f"{r['light_p50_loaded_s'] * 1e3:.0f} vs {r['light_p50_alone_s'] * 1e3:.0f} ms; p99 in the queue "
                f"<= {r['light_queue_wait_p99_loaded_ms']:.0f} vs <= {r['light_queue_wait_p99_alone_ms']:.0f} ms; "
                f"{r['light_samples']} samples, errors {r['errors']}) {describe(r)}",
                flush=True,
            )
    if "switches" in only:
        for policy in ("fair", "fifo"):
            r = results["switches"][policy] = tenant_switches(tmp, policy, args.seconds, args.clients_per_tenant)
            print(
                f"tenant switches per 1000 requests, 8 tenants x {args.clients_per_tenant} clients, {policy}: "
                f"{r['switches_per_1000']:.0f} ({r['requests_per_s']:.1f} req/s, p99 {r['p99_s'] * 1e3:.0f} ms, "
                f"errors {r['errors']}) {describe(r)}\n{diagnostics(r)}",
                flush=True,
            )
        fair, fifo = (results["switches"][p]["switches_per_1000"] for p in ("fair", "fifo"))
        print(f"  fair/fifo switches: {fair / max(fifo, 1e-9):.2f}x (goal <= 0.25x)")
    if "batching" in only:
        for label, cap in (("grouped", ""), ("one per forward", "1")):
            r = results["batching"][label] = batching(tmp, cap, args.seconds, 32)
            print(
                f"minilm, 32 clients of one tenant, {label}: {r['requests_per_s']:.1f} req/s "
                f"(errors {r['errors']}) {describe(r)}\n{diagnostics(r)}",
                flush=True,
            )
        speedup = (
            results["batching"]["grouped"]["requests_per_s"] / results["batching"]["one per forward"]["requests_per_s"]
        )
        print(f"  batching speed-up: {speedup:.2f}x (goal >= 3x)")
    return results


if __name__ == "__main__":
    main()
