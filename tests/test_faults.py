"""Hostile and failing clients: each transport limit answers with its JSON error, slowloris does not starve
other clients, clients vanishing mid-request leave no 500s and no plaintext behind, and SIGTERM under load
drains, exits 0 and leaves a verifiable audit log.

(KMS outage under load is tests/test_kms_e2e.py; disk full while spilling comes with the spill work.)"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import save

from cleanroom.server.limits import ConnectionLimits
from support.hardening import (
    ThreadServer,
    admin_create_tenant,
    json_error,
    open_socket,
    read_response,
    request,
    scope_echo_app,
    send_sealed,
    server_errors_in_log,
    serving_tenants,
    slow_app_gate,
    vanish,
)
from support.load import run_load, sealed_echo_call
from support.memscan import encodings, scan_process
from support.server import REPO, server_env, start_server


# --- each limit, on an in-process listener with small limits ----------------------------------------------
def test_head_that_never_completes_gets_408_and_is_closed() -> None:
    with ThreadServer(scope_echo_app, limits=ConnectionLimits(header_timeout_s=0.5)) as server:
        with open_socket(server.url) as idle:  # connects, sends nothing
            started = time.monotonic()
            status, _, body = read_response(idle)
            assert status == 408 and json_error(body)["code"] == "request_header_timeout"
            assert time.monotonic() - started < 3
            assert idle.recv(1) == b"", "the connection stayed open"
        with open_socket(server.url) as slow:
            slow.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            status, _, body = read_response(slow)
            assert status == 408 and json_error(body)["code"] == "request_header_timeout"


def test_body_that_never_completes_gets_408() -> None:
    with (
        ThreadServer(scope_echo_app, limits=ConnectionLimits(body_timeout_s=0.5)) as server,
        open_socket(server.url) as sock,
    ):
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        status, _, body = read_response(sock)
        assert status == 408 and json_error(body)["code"] == "request_body_timeout"


def test_oversized_and_malformed_heads_get_431_and_400_json() -> None:
    with ThreadServer(scope_echo_app, limits=ConnectionLimits(max_header_bytes=2048)) as server:
        with open_socket(server.url) as sock:
            status, _, body = request(sock, "GET", "/", headers={"X-Big": "a" * 3000})
            assert status == 431 and json_error(body)["code"] == "request_header_too_large"
        with open_socket(server.url) as sock:
            status, _, body = request(sock, "GET", "/" + "a" * 3000)
            assert status == 431
        with open_socket(server.url) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab")
            status, _, body = read_response(sock)
            assert status == 400 and json_error(body)["code"] == "malformed_http"
        with open_socket(server.url) as sock:
            assert request(sock, "GET", "/", headers={"X-Fine": "a" * 1000})[0] == 200


def test_concurrent_request_limit_answers_503_json_with_retry_after() -> None:
    with (
        slow_app_gate() as (app, release),
        ThreadServer(app, limits=ConnectionLimits(max_concurrent_requests=2)) as server,
    ):
        held = [open_socket(server.url) for _ in range(2)]
        for sock in held:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        with open_socket(server.url) as extra:
            status, headers, body = request(extra, "GET", "/")
            assert status == 503 and json_error(body)["code"] == "server_busy"
            assert headers["retry-after"] == "1"
        release.set()
        for sock in held:
            assert read_response(sock)[0] == 200
            sock.close()


def test_connection_limit_answers_503_json_and_closes() -> None:
    with ThreadServer(scope_echo_app, limits=ConnectionLimits(max_connections=3)) as server:
        held = [open_socket(server.url) for _ in range(3)]
        time.sleep(0.2)
        with open_socket(server.url) as extra:
            status, headers, body = request(extra, "GET", "/")
            assert status == 503 and json_error(body)["code"] == "too_many_connections"
            assert headers["connection"] == "close"
        for sock in held:
            sock.close()
        time.sleep(0.2)
        with open_socket(server.url) as again:
            assert request(again, "GET", "/")[0] == 200


# --- against a real server -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = tmp_path_factory.mktemp("faults")
    signals = base / "signals"
    signals.mkdir()
    handle = start_server(
        base / "data",
        "--models",
        "echo",
        "--model",
        "hold=support.hold_model:hold_factory",
        env=server_env(CLEANROOM_HEADER_TIMEOUT_S="2", TMPDIR=str(base), CLEANROOM_TEST_SIGNAL_DIR=str(signals)),
    )
    handle.signal_dir = signals  # type: ignore[attr-defined]
    with serving_tenants(handle, "alpha", "beta"):
        yield handle


def test_slowloris_does_not_stop_the_server_answering_others(server: Any) -> None:
    """80 sockets send their request head one byte at a time; a normal client keeps getting answers and
    every slow socket is cut off (408 or closed) at the 2 s head deadline."""
    context = ssl.create_default_context(cafile=server.cert)
    head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Padding: " + b"a" * 200 + b"\r\n\r\n"
    slow = [open_socket(server.url, context) for _ in range(80)]
    stop = threading.Event()
    cut_at: dict[int, float] = {}
    started = time.monotonic()

    def drip() -> None:
        position = 0
        while not stop.is_set() and position < len(head) and len(cut_at) < len(slow):
            for i, sock in enumerate(slow):
                if i in cut_at:
                    continue
                try:
                    sock.sendall(head[position : position + 1])
                except OSError:
                    cut_at[i] = time.monotonic() - started
            position += 1
            time.sleep(0.1)

    dripper = threading.Thread(target=drip, daemon=True)
    dripper.start()
    latencies = []
    with server.http() as http:
        while time.monotonic() - started < 4:
            t0 = time.monotonic()
            assert http.get("/healthz").status_code == 200
            latencies.append(time.monotonic() - t0)
            time.sleep(0.05)
    stop.set()
    dripper.join(5)
    outcomes = []
    for sock in slow:
        sock.settimeout(3)
        try:
            status, _, body = read_response(sock)
            outcomes.append(json_error(body)["code"] if status == 408 else status)
        except (OSError, ConnectionError):
            outcomes.append("closed")
        sock.close()
    # generous: `make test` runs files in parallel on two cores
    assert max(latencies) < 3, f"a normal request waited {max(latencies):.2f} s behind slowloris"
    assert set(outcomes) <= {"request_header_timeout", "closed"}, outcomes
    assert server.healthy()


def marker_payload(marker: str, size: int) -> bytes:
    raw = marker.encode() + b" "
    return raw * (size // len(raw))


def wait_for(condition: Any, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def vanish_during_handshake(server: Any) -> None:
    host, port = server.url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(40))  # a torn ClientHello


def test_clients_vanishing_mid_request_cause_no_errors_and_leave_no_plaintext(server: Any) -> None:
    import torch

    held_marker, partial_marker, final_marker = (f"crfault{secrets.token_hex(12)}" for _ in range(3))
    signals: Path = server.signal_dir
    keys = [server.tenants[t]["api_key"] for t in ("alpha", "beta")]

    # 1. a client goes away while its request is inside the model; the scan sees the plaintext meanwhile
    hold_payload = save(
        {"input": torch.frombuffer(bytearray(marker_payload(held_marker, 64 * 1024)), dtype=torch.uint8)}
    )
    sock = send_sealed(server, "alpha", hold_payload, model="hold")
    wait_for((signals / "holding").exists, "the hold model to receive the request")
    control_hits = scan_process(server.pid, encodings(held_marker))
    vanish(sock)
    time.sleep(0.2)  # the server notices and answers the abandoned call (499); the model is still running
    (signals / "release").touch()
    with server.client("alpha") as client:  # one CPU worker: this runs only after the abandoned run ended
        follow_up = save({"input": torch.zeros(16, dtype=torch.uint8)})
        assert len(client.infer("hold", follow_up)) > 0
    assert sum(control_hits.values()) > 0, "control failed: the scan cannot see a request held in the model"

    # 2. under load from well-behaved clients: partial bodies, torn handshakes, connect-and-leave, full
    #    requests abandoned at once
    faults_done = threading.Event()

    def faults() -> None:
        try:
            for round_ in range(6):
                tenant = ("alpha", "beta")[round_ % 2]
                vanish(send_sealed(server, tenant, marker_payload(partial_marker, 256 * 1024), body_fraction=0.5))
                vanish(send_sealed(server, tenant, marker_payload(partial_marker, 4096)))
                vanish_during_handshake(server)
                with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=5):
                    pass  # connect and leave
        finally:
            faults_done.set()

    fault_thread = threading.Thread(target=faults, daemon=True)
    fault_thread.start()
    report = run_load(
        lambda i: sealed_echo_call(server.url, keys[i % 2], server.cert), clients=8, duration_s=5, pid=server.pid
    )
    fault_thread.join(30)
    assert faults_done.is_set()
    assert report.statuses() == {200: len(report.outcomes)}, report.statuses()

    # 3. the same kind of data, sent properly afterwards, round-trips (and its plaintext must go too)
    with server.client("beta") as client:
        payload = marker_payload(final_marker, 64 * 1024)
        assert client.infer("echo", payload) == payload
    assert server.healthy()
    problems = server_errors_in_log(server.log_path)
    assert not problems, "server errors in the log:\n" + "\n".join(problems[:10])
    del hold_payload, payload
    time.sleep(0.5)
    needles = [n for m in (held_marker, partial_marker, final_marker) for n in encodings(m)]
    hits = scan_process(server.pid, needles)
    assert hits == {}, f"plaintext left in server memory after the fault runs: {hits}"


# --- SIGTERM under load --------------------------------------------------------------------------------
def test_sigterm_under_load_drains_and_exits_zero(tmp_path: Path) -> None:
    handle = start_server(tmp_path / "data", "--models", "echo")
    try:
        admin_create_tenant(handle, "alpha")
        key = handle.tenants["alpha"]["api_key"]
        signalled: dict[str, float] = {}

        def on_tick(now: float) -> None:
            if now >= 2.5 and not signalled:
                signalled["at"] = now
                os.kill(handle.pid, signal.SIGTERM)

        report = run_load(
            lambda i: sealed_echo_call(handle.url, key, handle.cert),
            clients=16,
            duration_s=5,
            pid=handle.pid,
            on_tick=on_tick,
        )
        exit_code = handle.process.wait(timeout=15)
        exited_after_s = report.duration_s - signalled["at"]
    finally:
        handle.stop()
    statuses = report.statuses()
    server_errors = {k: v for k, v in statuses.items() if isinstance(k, int) and k >= 500}
    assert not server_errors, statuses
    assert {k for k in statuses if isinstance(k, int)} <= {200}, statuses
    before = [o for o in report.outcomes if o.started_s + o.latency_s < signalled["at"]]
    assert before and all(o.status == 200 for o in before)
    assert exit_code == 0, f"exit code {exit_code}"
    assert exited_after_s < 10
    assert not (tmp_path / "data" / "server.json").exists(), "server.json left behind"
    problems = server_errors_in_log(handle.log_path)
    assert not problems, "\n".join(problems[:10])
    records = verified_audit_records(tmp_path / "data")
    assert records >= len(report.ok), f"{len(report.ok)} answers released but only {records} audit records"


def verified_audit_records(data_dir: Path) -> int:
    """Verify the audit log the server wrote (the new `cleanroom audit` log when present, else the decrypt
    chain) and return how many records it holds."""
    if (data_dir / "audit" / "keys.json").exists():
        verify = subprocess.run(
            [sys.executable, "-m", "cleanroom", "audit", "verify", "--data-dir", str(data_dir), "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
            env=server_env(),
        )
        assert verify.returncode == 0, verify.stdout[-2000:] + verify.stderr[-2000:]
        report = json.loads(verify.stdout)
        assert report["ok"] is True, report
        return int(report["records"])
    from cleanroom.server.decrypt_audit import ChainedAuditLog, load_audit_key

    from cleanroom.config import Settings
    from cleanroom.keys.factory import kms_from_settings, master_key_name

    settings = Settings(data_dir=data_dir)
    kms = kms_from_settings(settings)
    try:
        log = ChainedAuditLog(data_dir / "audit", load_audit_key(data_dir / "audit", kms, master_key_name(settings)))
        try:
            return len(log.verify())  # raises on a modified, missing or reordered record
        finally:
            log.close()
    finally:
        kms.close()
