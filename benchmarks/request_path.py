"""Secure request overhead: the full sealed path over HTTP vs the same model in-process and behind a
bare FastAPI endpoint, in one run. Goal: sealed <= 1.10x bare FastAPI for minilm.

    .venv/bin/python benchmarks/request_path.py [--repeats N] [--torch-threads N] [--workloads minilm] [--json out.json]

Like with like: both servers run as subprocesses on loopback over plain HTTP (TLS costs the same on both
sides and is not what is measured), uvicorn with httptools and the same event loop, the same models built
the same way, the same number of torch threads in both servers and in-process (`--torch-threads`, default
1: on a small shared box two OpenMP threads per process spin against each other and against the other
processes, and minilm's time swings 5x from run to run), and one httpx client each. Repeats are
interleaved (each round runs every variant once, in rotating order) after a warm-up of every variant, so
all see the same machine state. The sealed server runs with its production hardening (re-exec'd allocator
settings, core dumps off) and its redacted access log; the bare one has neither.

Two bare baselines: `bare` runs the model on a worker thread, as the sealed server does and as a FastAPI
`def` route would (inference must not block the event loop); `bare inline` runs it on the event loop (one
request at a time), the strictest baseline. Both ratios are printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def interleaved_medians(variants: dict[str, Callable[[], object]], repeats: int, warmup: int = 3) -> dict[str, float]:
    """Median seconds per variant; each round runs every variant once, starting one further along each time."""
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        for k in range(len(names)):
            name = names[(round_ + k) % len(names)]
            start = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(samples) for name, samples in times.items()}


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def workloads() -> list[tuple[str, str, bytes]]:
    sentence = "Confidential inference keeps every tenant's text sealed from the client to the model."
    return [
        ("echo 4 KiB", "echo", os.urandom(4096)),
        ("echo 1 MiB", "echo", os.urandom(1 << 20)),
        ("minilm batch 1", "minilm", json.dumps({"inputs": [sentence]}).encode()),
        ("minilm batch 32", "minilm", json.dumps({"inputs": [f"{sentence} #{i}" for i in range(32)]}).encode()),
    ]


def measure(
    args: argparse.Namespace,
    server: Any,
    plain_alloc: Any,
    port: int,
    bare: subprocess.Popen[bytes],
    in_process: Callable[[str, bytes], None],
) -> list[dict[str, Any]]:
    from cleanroom.client import Client

    tenant = server.create_tenant("bench")
    bare_http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
    deadline = time.monotonic() + 120
    while True:
        try:
            bare_http.post("/echo", content=b"x")
            break
        except httpx.TransportError:
            if bare.poll() is not None:
                raise SystemExit(f"benchmarks/bare_server.py exited with {bare.returncode}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    client = Client(server.url, api_key=tenant["api_key"])
    extra: dict[str, Callable[[], object]] = {}
    if plain_alloc is not None:
        client_plain_alloc = Client(plain_alloc.url, api_key=plain_alloc.create_tenant("bench")["api_key"])
    rows = []
    wanted = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for label, model, payload in workloads():
        if wanted and not any(w in label for w in wanted):
            continue
        medians = interleaved_medians(
            {
                "in_process": lambda: in_process(model, payload),
                "bare": lambda: bare_http.post(f"/{model}", content=payload).raise_for_status(),
                "bare_inline": lambda: bare_http.post(f"/inline/{model}", content=payload).raise_for_status(),
                "sealed": lambda: client.infer(model, payload),
                **(
                    {"sealed_unhardened_allocator": lambda: client_plain_alloc.infer(model, payload)}
                    if plain_alloc is not None
                    else extra
                ),
            },
            args.repeats,
        )
        t_in, t_bare, t_inline, t_sealed = (medians[k] for k in ("in_process", "bare", "bare_inline", "sealed"))
        rows.append(
            {
                "workload": label,
                "in_process_s": t_in,
                "bare_fastapi_s": t_bare,
                "bare_fastapi_inline_s": t_inline,
                "sealed_s": t_sealed,
                "sealed_over_bare": t_sealed / t_bare,
                "sealed_over_bare_inline": t_sealed / t_inline,
                "sealed_over_in_process": t_sealed / t_in,
                "torch_threads": args.torch_threads,
                "load_average_1m": os.getloadavg()[0],
            }
        )
        print(
            f"{label:<16} in-process {t_in * 1e3:8.2f} ms  bare {t_bare * 1e3:8.2f} ms  "
            f"bare inline {t_inline * 1e3:8.2f} ms  sealed {t_sealed * 1e3:8.2f} ms  "
            f"sealed/bare {t_sealed / t_bare:5.2f}x  sealed/bare-inline {t_sealed / t_inline:5.2f}x  "
            f"sealed/in-process {t_sealed / t_in:6.2f}x",
            flush=True,
        )
        if "sealed_unhardened_allocator" in medians:
            t_plain_alloc = medians["sealed_unhardened_allocator"]
            rows[-1].update(
                sealed_unhardened_allocator_s=t_plain_alloc,
                sealed_unhardened_allocator_over_bare=t_plain_alloc / t_bare,
            )
            print(
                f"{'':<16} sealed without allocator hardening {t_plain_alloc * 1e3:8.2f} ms  "
                f"({t_plain_alloc / t_bare:5.2f}x bare)",
                flush=True,
            )
    client.close()
    bare_http.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30, help="interleaved rounds per workload (median)")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument(
        "--workloads",
        default="",
        help="run only the workloads whose label contains one of these comma-separated words "
        "(e.g. `minilm`, or `batch 1,4 KiB`); default: all",
    )
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads in both servers and in-process (the same everywhere)",
    )
    parser.add_argument(
        "--no-allocator-hardening",
        action="store_true",
        help="run the sealed server without the hardened allocator, to split its cost out",
    )
    parser.add_argument(
        "--split-allocator",
        action="store_true",
        help="also run a second sealed server without the hardened allocator, interleaved with the "
        "others: the allocator's share of the overhead, measured in the same run",
    )
    args = parser.parse_args()
    if args.repeats < 1 or args.torch_threads < 1:
        parser.error("--repeats and --torch-threads must be >= 1")
    threads = str(args.torch_threads)
    os.environ.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)  # inherited by both servers
    import torch

    torch.set_num_threads(args.torch_threads)

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

    with contextlib.ExitStack() as stack:  # servers stopped and their data dirs removed, also on errors
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cleanroom-bench-")))
        port = free_port()
        bare = subprocess.Popen(
            [sys.executable, str(REPO / "benchmarks" / "bare_server.py"), str(port)], env=server_env()
        )
        stack.callback(_stop, bare)
        env = server_env(CLEANROOM_ALLOCATOR_HARDENING="false") if args.no_allocator_hardening else None
        server = start_server(tmp / "data", "--models", "echo,minilm", tls=False, env=env)
        stack.callback(server.stop)
        plain_alloc = None
        if args.split_allocator:
            plain_alloc = start_server(
                tmp / "data-unhardened",
                "--models",
                "echo,minilm",
                tls=False,
                env=server_env(CLEANROOM_ALLOCATOR_HARDENING="false"),
            )
            stack.callback(plain_alloc.stop)
        rows = measure(args, server, plain_alloc, port, bare, in_process)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
