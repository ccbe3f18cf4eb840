"""Load benchmarks for the hardened server.

    .venv/bin/python benchmarks/load/run.py compare [--clients 16] [--duration 15] [--json out.json]
    .venv/bin/python benchmarks/load/run.py soak    [--clients 64] [--tenants 8] [--duration 60] [--json out.json]
    .venv/bin/python benchmarks/load/run.py layers  [--clients 16] [--duration 10] [--rounds 2]

`compare` runs, one after the other in the same invocation, the same closed-loop load (N clients sending
2 KiB echo requests back to back) against:
  bare        benchmarks/bare_server.py: uvicorn + FastAPI, plain HTTP, the same echo model, no sealing
  hardened    `cleanroom serve --no-tls`: sealing, auth, audit, scrub, limits, security headers
  hardened+tls `cleanroom serve` as deployed: all of the above over TLS 1.3
and prints requests/s, p50 and p99 for each. Clients run in this process (threads), so on a small machine
they compete with the server for CPU; compare the rows with each other, not with other machines.

`soak` is the long version of tests/test_load.py: hardened+tls, many tenants, RSS sampled throughout.

`layers` isolates what the transport hardening itself costs: the same FastAPI echo endpoint under stock
uvicorn and under cleanroom's protocol + middleware (layers_server.py), over plain HTTP and over TLS 1.3,
rounds interleaved so a busy machine hurts every row alike.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from support.hardening import admin_create_tenant
from support.load import LoadReport, bare_echo_call, run_load, sealed_echo_call
from support.server import server_env, start_server


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def row(label: str, report: LoadReport) -> dict[str, Any]:
    summary = {"server": label, **report.summary()}
    print(
        f"{label:<14} {summary['requests_per_s']:8.1f} req/s   p50 {summary['p50_ms']:8.2f} ms   "
        f"p99 {summary['p99_ms']:8.2f} ms   outcomes {summary['statuses']}",
        flush=True,
    )
    return summary


def compare(clients: int, duration_s: float, payload_bytes: int) -> list[dict[str, Any]]:
    rows = []
    port = free_port()
    bare = subprocess.Popen(
        [sys.executable, str(REPO / "benchmarks" / "bare_server.py"), str(port), "--models", "echo"], env=server_env()
    )
    try:
        _wait_bare(port, process=bare)
        report = run_load(
            lambda _i: bare_echo_call(f"http://127.0.0.1:{port}", payload_bytes),
            clients=clients,
            duration_s=duration_s,
            pid=bare.pid,
        )
        rows.append(row("bare", report))
    finally:
        bare.terminate()
        bare.wait(30)
    for label, tls in (("hardened", False), ("hardened+tls", True)):
        tmp = tempfile.TemporaryDirectory(prefix="cleanroom-load-")  # data dir, TLS key, server log
        server = start_server(Path(tmp.name) / "data", "--models", "echo", tls=tls)
        try:
            key = admin_create_tenant(server, "bench")["api_key"]
            verify: Any = server.cert if tls else True
            url = server.url
            report = run_load(
                lambda _i, url=url, key=key, verify=verify: sealed_echo_call(url, key, verify, payload_bytes),
                clients=clients,
                duration_s=duration_s,
                pid=server.pid,
            )
            rows.append(row(label, report))
        finally:
            server.stop()
            tmp.cleanup()
    base = rows[0]["requests_per_s"] or 1
    for r in rows:
        r["throughput_vs_bare"] = round(r["requests_per_s"] / base, 3)
    print("throughput vs bare: " + ", ".join(f"{r['server']} {r['throughput_vs_bare']:.2f}x" for r in rows[1:]))
    return rows


def _wait_bare(port: int, url: str | None = None, process: subprocess.Popen[bytes] | None = None) -> None:
    import httpx

    deadline = time.monotonic() + 120
    while True:
        try:
            httpx.post(f"{url or f'http://127.0.0.1:{port}'}/echo", content=b"x", timeout=5, verify=False)
            return
        except httpx.TransportError:
            if process is not None and process.poll() is not None:
                raise SystemExit(f"the baseline server exited with {process.returncode}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def layers(clients: int, duration_s: float, payload_bytes: int, rounds: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="cleanroom-layers-") as tmp:  # the TLS key
        rows = _layers(Path(tmp), clients, duration_s, payload_bytes, rounds)
    by_label = {r["server"]: r["requests_per_s"] for r in rows}
    for round_ in range(rounds):
        ratios = []
        for transport in ("", "+tls"):
            plain = by_label[f"plain{transport} r{round_ + 1}"] or float("nan")
            hardened = by_label[f"hardened{transport} r{round_ + 1}"]
            ratios.append(f"{'TLS 1.3' if transport else 'HTTP'} {hardened / plain:.2f}x")
        print(f"round {round_ + 1}, hardened layers' throughput vs stock uvicorn: {', '.join(ratios)}")
    return rows


def _layers(tmp: Path, clients: int, duration_s: float, payload_bytes: int, rounds: int) -> list[dict[str, Any]]:
    from cleanroom.server.tls import dev_certificate

    cert, key = dev_certificate(tmp, ["127.0.0.1"])
    rows = []
    for round_ in range(rounds):
        for tls in (False, True):
            for mode in ("plain", "hardened"):
                port = free_port()
                args = [str(cert), str(key)] if tls else []
                process = subprocess.Popen(
                    [sys.executable, str(REPO / "benchmarks" / "load" / "layers_server.py"), str(port), mode, *args]
                )
                url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
                try:
                    _wait_bare(port, url, process)
                    verify: Any = str(cert) if tls else True
                    report = run_load(
                        lambda _i, url=url, verify=verify: bare_echo_call(url, payload_bytes, verify),
                        clients=clients,
                        duration_s=duration_s,
                        pid=process.pid,
                    )
                    rows.append({**row(f"{mode}{'+tls' if tls else ''} r{round_ + 1}", report)})
                finally:
                    process.kill()  # stateless; stock uvicorn over TLS can take 30 s to stop (docs/hardening.md)
                    process.wait(30)
    return rows


def soak(clients: int, tenants: int, duration_s: float, payload_bytes: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="cleanroom-soak-") as tmp:  # data dir, TLS key, server log
        return _soak(Path(tmp), clients, tenants, duration_s, payload_bytes)


def _soak(tmp: Path, clients: int, tenants: int, duration_s: float, payload_bytes: int) -> dict[str, Any]:
    server = start_server(tmp / "data", "--models", "echo")
    try:
        keys = [admin_create_tenant(server, f"soak{i}")["api_key"] for i in range(tenants)]
        report = run_load(
            lambda i: sealed_echo_call(server.url, keys[i % tenants], server.cert, payload_bytes),
            clients=clients,
            duration_s=duration_s,
            pid=server.pid,
            sample_every_s=1.0,
        )
        summary = row("hardened+tls", report)
        summary["tenants"] = tenants
        summary["rss_mib_timeline"] = [(round(t, 1), round(r / 2**20, 1)) for t, r in report.rss_samples]
        growth = summary["rss_growth_after_warmup"]
        print(
            f"RSS growth after warm-up (30%): {growth:.2%}"
            if growth is not None and growth == growth  # None or NaN: fewer than 4 samples after warm-up
            else "RSS growth after warm-up: too few samples (run for 6 s or more)"
        )
        return summary
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("compare", help="bare uvicorn vs cleanroom serve, plain HTTP and TLS")
    c.add_argument("--clients", type=int, default=16)
    c.add_argument("--duration", type=float, default=15)
    s = sub.add_parser("soak", help="hardened+tls under many tenants, RSS sampled")
    s.add_argument("--clients", type=int, default=64)
    s.add_argument("--tenants", type=int, default=8)
    s.add_argument("--duration", type=float, default=60)
    la = sub.add_parser("layers", help="what the transport hardening alone costs")
    la.add_argument("--clients", type=int, default=16)
    la.add_argument("--duration", type=float, default=10)
    la.add_argument("--rounds", type=int, default=2)
    for p in (c, s, la):
        p.add_argument("--payload-bytes", type=int, default=2048)
        p.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.mode == "compare":
        result: Any = compare(args.clients, args.duration, args.payload_bytes)
    elif args.mode == "layers":
        result = layers(args.clients, args.duration, args.payload_bytes, args.rounds)
    else:
        result = soak(args.clients, args.tenants, args.duration, args.payload_bytes)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
