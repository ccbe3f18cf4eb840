"""Secure request overhead: the full sealed path over HTTP vs the same model in-process and behind a
bare FastAPI endpoint, in one run. Goal: sealed <= 1.10x bare FastAPI for minilm.

    python benchmarks/request_path.py [--repeats N] [--json out.json]

Both servers run as subprocesses on loopback over plain HTTP (TLS costs the same on both sides and is not
what is measured); the sealed server runs with its production hardening (re-exec'd allocator settings).
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def median_time(fn, repeats: int, warmup: int = 3) -> float:  # type: ignore[no-untyped-def]
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def workloads() -> list[tuple[str, str, bytes]]:
    sentence = "Confidential inference keeps every tenant's text sealed from the client to the model."
    return [
        ("echo 4 KiB", "echo", os.urandom(4096)),
        ("echo 1 MiB", "echo", os.urandom(1 << 20)),
        ("minilm batch 1", "minilm", json.dumps({"inputs": [sentence]}).encode()),
        ("minilm batch 32", "minilm", json.dumps({"inputs": [f"{sentence} #{i}" for i in range(32)]}).encode()),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", default=None)
    parser.add_argument("--no-allocator-hardening", action="store_true",
                        help="run the sealed server without the hardened allocator, to split its cost out")
    args = parser.parse_args()

    from cleanroom.client import Client
    from cleanroom.memory.secure_buffer import SecureAllocator
    from cleanroom.runtime.models import EchoModel, MiniLMModel, RequestScope
    from cleanroom.runtime.session import zero_scope
    from support.server import server_env, start_server

    allocator = SecureAllocator()
    models = {"echo": EchoModel(), "minilm": MiniLMModel()}

    def in_process(model: str, payload: bytes) -> None:
        scope = RequestScope(allocator)
        buffer = scope.new_buffer(len(payload))
        buffer.view()[:] = payload
        try:
            bytes(models[model].run(buffer, scope))
        finally:
            zero_scope(scope)

    port = free_port()
    bare = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "bare_server.py"), str(port)])
    tmp = Path(tempfile.mkdtemp(prefix="cleanroom-bench-"))
    env = server_env(CLEANROOM_ALLOCATOR_HARDENING="false") if args.no_allocator_hardening else None
    server = start_server(tmp / "data", "--models", "echo,minilm", tls=False, env=env)
    try:
        tenant = server.create_tenant("bench")
        bare_http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
        deadline = time.monotonic() + 120
        while True:
            try:
                bare_http.post("/echo", content=b"x")
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        client = Client(server.url, api_key=tenant["api_key"])
        rows = []
        for label, model, payload in workloads():
            t_in = median_time(lambda: in_process(model, payload), args.repeats)
            t_bare = median_time(lambda: bare_http.post(f"/{model}", content=payload).raise_for_status(),
                                 args.repeats)
            t_sealed = median_time(lambda: client.infer(model, payload), args.repeats)
            rows.append({"workload": label, "in_process_s": t_in, "bare_fastapi_s": t_bare, "sealed_s": t_sealed,
                         "sealed_over_bare": t_sealed / t_bare, "sealed_over_in_process": t_sealed / t_in})
            print(f"{label:<16} in-process {t_in * 1e3:8.2f} ms  bare FastAPI {t_bare * 1e3:8.2f} ms  "
                  f"sealed {t_sealed * 1e3:8.2f} ms  sealed/bare {t_sealed / t_bare:5.2f}x  "
                  f"sealed/in-process {t_sealed / t_in:6.2f}x")
        client.close()
        bare_http.close()
    finally:
        server.stop()
        bare.terminate()
        bare.wait()
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
