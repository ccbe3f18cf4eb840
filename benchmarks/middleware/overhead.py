"""Middleware overhead: the same FastAPI app with and without `CleanroomMiddleware`, in one run.

One uvicorn process (started with `cleanroom exec`, as in production) serves one app. Its routes under
`/sealed/` sit behind the middleware, the same routes under `/plain/` do not; the handler sleeps 5 ms (a
stand-in for model work) and answers a small JSON. The client alternates plain and sealed requests over
one keep-alive connection each, so both see the same machine state, and reports latency as the caller
sees it. Two sealed timings: the round trip (what the middleware adds on the server: authenticate, HPKE
open, audit record, decrypt, seal the answer) and end to end (plus sealing and opening on the client).

    .venv/bin/python benchmarks/middleware/overhead.py [--requests 300] [--handler-ms 5] [--json out.json]

Goal (issue 10): sealed latency <= 1.10 x plain latency for a 5 ms handler. `--durable-before-app` measures
the middleware's strict audit order (the record durable before the app runs) instead of write-ahead.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

APP = """
import asyncio
import os

from fastapi import FastAPI, Request

from cleanroom.integrations.asgi import CleanroomMiddleware

HANDLER_S = float(os.environ["BENCH_HANDLER_MS"]) / 1000
inner = FastAPI()


async def work(request: Request) -> dict[str, object]:
    document = await request.json()
    await asyncio.sleep(HANDLER_S)  # the model
    return {"label": "positive", "chars": len(document["text"])}


inner.add_api_route("/plain/classify", work, methods=["POST"])
inner.add_api_route("/sealed/classify", work, methods=["POST"])
app = CleanroomMiddleware(
    inner,
    data_dir=os.environ["BENCH_DATA"],
    protected_paths=("/sealed/",),
    audit_durable_before_app=os.environ.get("BENCH_DURABLE_BEFORE_APP") == "1",
)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def summary(samples_s: list[float]) -> dict[str, float]:
    ordered = sorted(samples_s)
    return {
        "mean_ms": statistics.fmean(ordered) * 1000,
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p90_ms": ordered[int(len(ordered) * 0.9)] * 1000,
    }


def concurrent_phase(
    url: str, path: str, bodies: list[bytes], headers: dict[str, str], concurrency: int
) -> tuple[float, list[bytes]]:
    """Send `bodies` from `concurrency` keep-alive connections at once; (seconds, responses in order)."""
    import threading

    answers: list[bytes] = [b""] * len(bodies)
    shares = [list(range(i, len(bodies), concurrency)) for i in range(concurrency)]

    def worker(indices: list[int]) -> None:
        with httpx.Client(base_url=url, timeout=60) as http:
            for i in indices:
                response = http.post(path, content=bodies[i], headers=headers)
                assert response.status_code == 200, response.text
                answers[i] = response.content

    threads = [threading.Thread(target=worker, args=(share,)) for share in shares]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, answers


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests of each kind")
    parser.add_argument("--handler-ms", type=float, default=5.0)
    parser.add_argument("--payload-bytes", type=int, default=1024)
    parser.add_argument("--no-exec", action="store_true", help="plain uvicorn (no allocator hardening)")
    parser.add_argument(
        "--audit-fsync",
        choices=["always", "group", "none"],
        default="group",
        help="CLEANROOM_AUDIT_FSYNC for the server; `none` only to show the fsync's share",
    )
    parser.add_argument(
        "--durable-before-app",
        action="store_true",
        help="the middleware's strict audit order (audit_durable_before_app=True): durable before the app runs",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=8,
        help="also measure throughput with this many concurrent connections (0: skip)",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.requests < 1 or args.concurrency < 0:
        parser.error("--requests must be >= 1 and --concurrency >= 0")

    from cleanroom.client import Client
    from cleanroom.config import Settings
    from cleanroom.crypto.sealed import CONTENT_TYPE
    from cleanroom.runtime.models import ModelRegistry
    from cleanroom.server.services import build_services

    with tempfile.TemporaryDirectory(prefix="cr-bench-") as tmp:
        base = Path(tmp)
        (base / "bench_app.py").write_text(APP)
        services = build_services(Settings(data_dir=base / "data"), models=ModelRegistry({}))
        try:
            api_key = services.tenants.create("bench").api_key
        finally:
            services.close()
        port = free_port()
        uvicorn = [
            sys.executable,
            "-m",
            "uvicorn",
            "bench_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        command = uvicorn if args.no_exec else [sys.executable, "-m", "cleanroom", "exec", "--", *uvicorn]
        env = {
            **os.environ,
            "CLEANROOM_AUDIT_FSYNC": args.audit_fsync,
            "BENCH_DATA": str(base / "data"),
            "BENCH_HANDLER_MS": str(args.handler_ms),
            "BENCH_DURABLE_BEFORE_APP": "1" if args.durable_before_app else "0",
            "PYTHONPATH": os.pathsep.join([str(base), os.environ.get("PYTHONPATH", "")]),
        }
        server = subprocess.Popen(command, env=env, cwd=base)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.post(f"{url}/plain/classify", json={"text": "x"}, timeout=2)
                    break
                except httpx.TransportError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("the benchmark server did not start") from None
                    time.sleep(0.1)
            text = ("lorem ipsum " * (args.payload_bytes // 12 + 1))[: args.payload_bytes]
            body = json.dumps({"text": text}).encode()
            plain_s: list[float] = []
            sealed_rtt_s: list[float] = []
            sealed_e2e_s: list[float] = []
            plain_headers = {"Content-Type": "application/json"}
            sealed_headers = {"Content-Type": CONTENT_TYPE, "Authorization": f"Bearer {api_key}"}
            with Client(url, api_key=api_key) as client, httpx.Client(base_url=url, timeout=30) as http:
                for i in range(args.requests + 20):  # the first 20 of each warm up (connections, key cache)
                    started = time.perf_counter()
                    response = http.post("/plain/classify", content=body, headers=plain_headers)
                    plain = time.perf_counter() - started
                    assert response.status_code == 200
                    started = time.perf_counter()
                    sealed = client.seal_request("", body, path="/sealed/classify")
                    sent = time.perf_counter()
                    response = http.post("/sealed/classify", content=sealed.body, headers=sealed_headers)
                    received = time.perf_counter()
                    assert response.status_code == 200, response.text
                    sealed.open_response(response.content)
                    finished = time.perf_counter()
                    sealed.close()
                    if i >= 20:
                        plain_s.append(plain)
                        sealed_rtt_s.append(received - sent)
                        sealed_e2e_s.append(finished - started)
                throughput: dict[str, float] = {}
                if args.concurrency:
                    # Requests are sealed before the clock starts: the client's crypto is not the server's.
                    sealed_requests = [
                        client.seal_request("", body, path="/sealed/classify") for _ in range(args.requests)
                    ]
                    plain_time, _ = concurrent_phase(
                        url, "/plain/classify", [body] * args.requests, plain_headers, args.concurrency
                    )
                    sealed_time, answers = concurrent_phase(
                        url, "/sealed/classify", [r.body for r in sealed_requests], sealed_headers, args.concurrency
                    )
                    for request, answer in zip(sealed_requests, answers, strict=True):
                        request.open_response(answer)
                        request.close()
                    throughput = {
                        "concurrency": args.concurrency,
                        "plain_per_s": args.requests / plain_time,
                        "sealed_per_s": args.requests / sealed_time,
                        "ratio_time": sealed_time / plain_time,
                    }
        finally:
            server.terminate()
            server.wait(timeout=30)
    plain, rtt, e2e = summary(plain_s), summary(sealed_rtt_s), summary(sealed_e2e_s)
    result = {
        "handler_ms": args.handler_ms,
        "requests_each": args.requests,
        "payload_bytes": args.payload_bytes,
        "server": "uvicorn" if args.no_exec else "cleanroom exec -- uvicorn",
        "audit_fsync": args.audit_fsync,
        "audit_durable_before_app": args.durable_before_app,
        "plain": plain,
        "sealed_round_trip": rtt,  # what the middleware adds on the server (client crypto not timed)
        "sealed_end_to_end": e2e,  # plus sealing the request and opening the answer on the client
        "ratio_round_trip_mean": rtt["mean_ms"] / plain["mean_ms"],
        "ratio_round_trip_p50": rtt["p50_ms"] / plain["p50_ms"],
        "ratio_end_to_end_mean": e2e["mean_ms"] / plain["mean_ms"],
        "ratio_end_to_end_p50": e2e["p50_ms"] / plain["p50_ms"],
        "server_overhead_p50_ms": rtt["p50_ms"] - plain["p50_ms"],
        "throughput": throughput,
        "load_average_1m": os.getloadavg()[0],
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
