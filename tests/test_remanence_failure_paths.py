"""Invariant 1 on the failure paths: a request's plaintext is gone from the server's memory once it was
answered, however it ended — dropped in the queue, timed out, refused, a model that raised or returned
garbage, one bad request in a batch, a batch job cancelled or expired, a spilled payload, a client that
reset the connection mid-response, and the server shutting down with requests in flight.

Each test sends requests whose plaintext carries a marker, drives the path, waits for the answers, and
scans the live server's /proc/PID/mem (tests/support/memscan.py) for the marker. A control in each group
proves the scan sees the marker while a request is held inside the model (`gate`, support/failure_models.py).
The SIGTERM test stops the module's server, so it comes last.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load, save

from cleanroom.client import ClientError
from support.hardening import admin_create_tenant, send_sealed, vanish
from support.memscan import encodings, scan_files, scan_process
from support.server import ServerHandle, server_env, start_server

MODELS = "support.failure_models"


def new_marker() -> str:
    return "crfail" + secrets.token_hex(16)


def marker_bytes(marker: str, size: int) -> bytes:
    """`size` bytes with the marker well inside padding (free-list pointers overwrite a chunk's first bytes)."""
    unit = b"lorem ipsum dolor " + marker.encode() + b" sit amet "
    return (unit * (size // len(unit) + 1))[:size]


def u8(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def tensors_payload(marker: str, size: int = 8192, **extra: str) -> bytes:
    named = {"input": u8(marker_bytes(marker, size))}
    named.update({name: u8(value.encode()) for name, value in extra.items()})
    return save(named)


def needles(*markers: str) -> list[bytes]:
    return [n for m in markers for n in encodings(m)]


def hits_of(server: ServerHandle, *markers: str) -> dict[str, int]:
    time.sleep(0.3)
    return scan_process(server.pid, needles(*markers))


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    base = tmp_path_factory.mktemp("failure-paths")
    signals, tmp = base / "signals", base / "tmp"
    signals.mkdir()
    tmp.mkdir()
    env = server_env(
        CLEANROOM_TEST_SIGNAL_DIR=str(signals),
        TMPDIR=str(tmp),
        CLEANROOM_QUEUE_TIMEOUT_S="2",
        CLEANROOM_TENANT_MAX_QUEUED="3",
        CLEANROOM_MAX_TOTAL_QUEUED="5",
        CLEANROOM_BATCH_TTL_S="12",  # long enough for a memory scan under load before a cancel or fetch
        CLEANROOM_SPILL_THRESHOLD_BYTES="65536",
        CLEANROOM_SPILL_SEGMENT_BYTES="65536",
        CLEANROOM_DRAIN_DEADLINE_S="20",
    )
    models = ("gate", "raise_chained", "raise_message", "wrong_type", "hoard", "probe")
    args = [a for name in models for a in ("--model", f"{name}={MODELS}:{name}_factory")]
    handle = start_server(base / "data", "--models", "echo,minilm", *args, env=env)
    handle.signal_dir = signals  # type: ignore[attr-defined]
    handle.tmp_dir = tmp  # type: ignore[attr-defined]
    try:
        for tenant in ("alpha", "beta", "gamma"):
            admin_create_tenant(handle, tenant)
        yield handle
    finally:
        handle.stop()


def signals(server: ServerHandle) -> Path:
    return server.signal_dir  # type: ignore[attr-defined,no-any-return]


@contextmanager
def gate_held(server: ServerHandle, tenant: str, name: str, marker: str | None = None) -> Iterator[dict[str, Any]]:
    """A `gate` request of `tenant` held inside the model (the worker is busy) until the block ends."""
    outcome: dict[str, Any] = {}

    def call() -> None:
        with server.client(tenant) as client:
            try:
                outcome["out"] = client.infer("gate", tensors_payload(marker or new_marker(), gate=name))
            except ClientError as exc:
                outcome["error"] = exc.status

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    try:
        wait_for((signals(server) / f"holding-{name}").exists, f"gate {name} to hold")
        yield outcome
    finally:
        (signals(server) / f"release-{name}").touch()
        worker.join(60)


def infer_in_thread(server: ServerHandle, tenant: str, model: str, payload: bytes, out: list[Any]) -> threading.Thread:
    def call() -> None:
        with server.client(tenant) as client:
            try:
                client.infer(model, payload)
                out.append(200)
            except ClientError as exc:
                out.append(exc.status)

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    return worker


def settle(server: ServerHandle, tenant: str = "gamma") -> None:
    """One echo round trip: everything queued before it has been run or dropped."""
    with server.client(tenant) as client:
        assert client.infer("echo", b"settle") == b"settle"


# --- the queue: dropped, timed out, refused ---------------------------------------------------------------
def test_requests_dropped_or_refused_in_the_queue_leave_nothing(server: ServerHandle) -> None:
    held, dropped, timed_out, refused = (new_marker() for _ in range(4))
    statuses: list[Any] = []
    with gate_held(server, "alpha", "queue", held):
        control = scan_process(server.pid, needles(held))
        # dropped: the client resets its connection while the request waits behind the gate
        sockets = [send_sealed(server, "beta", marker_bytes(dropped, 32 * 1024)) for _ in range(2)]
        time.sleep(0.3)
        for sock in sockets:
            vanish(sock)
        # refused: the tenant's queue (3) and the server's (5) overflow: 429 and 503, after the body was read
        workers = []
        for tenant, count in (("gamma", 5), ("beta", 3)):
            workers += [
                infer_in_thread(server, tenant, "echo", marker_bytes(refused, 16 * 1024), statuses)
                for _ in range(count)
            ]
            time.sleep(0.3)
        for worker in workers:
            worker.join(30)  # the refused answer at once, the admitted ones time out (408) behind the gate
        # timed out: waits 2 s in the queue (408)
        timed: list[Any] = []
        infer_in_thread(server, "beta", "echo", marker_bytes(timed_out, 16 * 1024), timed).join(30)
    assert sum(control.values()) > 0, "control failed: the scan cannot see a request held in the model"
    assert timed == [408]
    assert 429 in statuses and 503 in statuses, statuses
    settle(server)
    assert hits_of(server, held, dropped, timed_out, refused) == {}


def test_request_prepared_ahead_then_dropped_leaves_nothing(server: ServerHandle) -> None:
    """The next batch of the same tenant is opened (decrypted) while the one before runs; its client leaves."""
    marker = new_marker()
    (signals(server) / "release-ahead-2").touch()
    for round_ in range(2):  # teach the cost model that a gate request takes ~0.6 s
        (signals(server) / f"release-warm-{round_}").unlink(missing_ok=True)
        threading.Timer(0.6, (signals(server) / f"release-warm-{round_}").touch).start()
        with server.client("alpha") as client:
            client.infer("gate", tensors_payload(new_marker(), 64, gate=f"warm-{round_}"))
    with gate_held(server, "alpha", "ahead-1"):
        sock = send_sealed(server, "alpha", model="gate", payload=tensors_payload(marker, 16 * 1024, gate="ahead-2"))
        time.sleep(1.0)
        ahead_hits = scan_process(server.pid, needles(marker))
        vanish(sock)
        time.sleep(0.2)
    settle(server, "alpha")
    print(f"\nprepared ahead while the batch before it ran: marker copies {sum(ahead_hits.values())}")
    assert hits_of(server, marker) == {}


# --- models that fail ----------------------------------------------------------------------------------
def test_models_that_raise_leave_nothing(server: ServerHandle) -> None:
    chained, message = new_marker(), new_marker()
    with server.client("alpha") as client:
        for model, marker in (("raise_chained", chained), ("raise_message", message)):
            for size in (300, 4096, 256 * 1024):
                with pytest.raises(ClientError) as raised:
                    client.infer(model, tensors_payload(marker, size))
                assert raised.value.status == 422 and raised.value.code == "model_rejected_input"
    assert hits_of(server, chained, message) == {}
    assert not any(n in server.log_path.read_bytes() for n in needles(chained, message))


def test_models_that_return_the_wrong_type_leave_nothing(server: ServerHandle) -> None:
    marker = new_marker()
    with server.client("alpha") as client:
        for kind in ("tensor", "str", "list", "mixed", "none"):
            with pytest.raises(ClientError) as raised:
                client.infer("wrong_type", tensors_payload(marker, 4096, kind=kind))
            assert raised.value.status == 422, kind
        answer = load(client.infer("wrong_type", tensors_payload(marker, 4096, kind="noncontiguous")))
        assert marker.encode() not in bytes(answer["output"].contiguous().numpy())  # transposed: scrambled
    assert hits_of(server, marker) == {}


def test_a_model_that_hoards_its_input_keeps_only_its_own_copy(server: ServerHandle) -> None:
    """A model that stores its input in a global keeps a copy the runtime cannot reach: that copy is the
    model's own (the scan finds it, by design). The view it was handed, though, was zeroed at the end."""
    marker = new_marker()
    with server.client("alpha") as client:
        client.infer("hoard", tensors_payload(marker, 4096))
    assert sum(hits_of(server, marker).values()) > 0, "the hoarding model's own copy should be visible"
    with server.client("beta") as client:  # another tenant: the between-tenant scrub runs first
        answer = load(client.infer("hoard", save({"check": torch.zeros(1)})))
    nonzero, held = answer["nonzero"].tolist()
    assert held >= 1 and nonzero == 0, f"the views the model was handed still hold {nonzero} non-zero bytes"


def test_one_bad_request_in_a_batch_leaves_nothing(server: ServerHandle) -> None:
    import json

    good, bad = new_marker(), new_marker()
    pad = "lorem ipsum dolor sit amet " * 8
    payloads = [
        json.dumps({"inputs": [f"{pad}{good}{pad}", "second text"]}).encode(),
        json.dumps({"inputs": [f"{pad}{bad}{pad}", 5]}).encode(),  # not all strings
        b'{"inputs": ["' + f"{pad}{bad}{pad}".encode() * 4,  # not JSON
    ]
    statuses: list[Any] = []
    with gate_held(server, "alpha", "batch"):
        workers = [infer_in_thread(server, "beta", "minilm", payload, statuses) for payload in payloads]
        time.sleep(0.5)  # all three queue (the tenant's queue holds 3) behind the gate: one batch when it is released
    for worker in workers:
        worker.join(60)
    assert sorted(statuses) == [200, 422, 422], statuses
    assert hits_of(server, good, bad) == {}


# --- the transport ---------------------------------------------------------------------------------------
def test_client_reset_mid_response_leaves_nothing(server: ServerHandle) -> None:
    marker = new_marker()
    for _ in range(2):
        sock = send_sealed(server, "beta", marker_bytes(marker, 4 * 1024 * 1024))
        sock.settimeout(30)
        assert sock.recv(1024)  # the answer has started
        vanish(sock)
    settle(server)
    assert hits_of(server, marker) == {}


# --- batch jobs ---------------------------------------------------------------------------------------
def batch_items(marker: str, gate: str | None, count: int, size: int) -> list[bytes]:
    first = tensors_payload(marker, size, gate=gate) if gate else tensors_payload(marker, size)
    return [first] + [tensors_payload(marker, size) for _ in range(count - 1)]


def spill_leaks(server: ServerHandle, *markers: str) -> list[str]:
    return scan_files(server.data_dir, needles(*markers)) + scan_files(server.tmp_dir, needles(*markers))  # type: ignore[attr-defined]


def test_batch_job_cancelled_mid_run_leaves_nothing(server: ServerHandle) -> None:
    from cleanroom.batch_client import BatchClient

    marker = new_marker()
    with server.client("alpha") as client:
        batches = BatchClient(client)
        with batches.submit("gate", batch_items(marker, "job-cancel", 4, 8192)) as handle:
            wait_for((signals(server) / "holding-job-cancel").exists, "the batch chunk to run")
            control = scan_process(server.pid, needles(marker))
            assert spill_leaks(server, marker) == []
            assert batches.cancel(handle.batch_id)["status"] == "cancelled"
            (signals(server) / "release-job-cancel").touch()
    settle(server, "alpha")
    assert sum(control.values()) > 0, "control failed: the scan cannot see a running batch chunk"
    assert hits_of(server, marker) == {}
    assert spill_leaks(server, marker) == []


def test_batch_job_expired_mid_run_leaves_nothing(server: ServerHandle) -> None:
    from cleanroom.batch_client import BatchClient

    marker = new_marker()
    with server.client("alpha") as client:
        batches = BatchClient(client)
        with batches.submit("gate", batch_items(marker, "job-ttl", 3, 8192)) as handle:
            wait_for((signals(server) / "holding-job-ttl").exists, "the batch chunk to run")
            wait_for(lambda: batches.status(handle.batch_id)["status"] == "expired", "the TTL (12 s)", 40)
            (signals(server) / "release-job-ttl").touch()
    settle(server, "alpha")
    assert hits_of(server, marker) == {}
    assert spill_leaks(server, marker) == []


def test_spilled_batch_payload_leaves_nothing_in_memory_or_on_disk(server: ServerHandle) -> None:
    from cleanroom.batch_client import BatchClient

    marker = new_marker()
    items = batch_items(marker, "job-spill", 4, 48 * 1024)  # ~192 KiB: over the 64 KiB spill threshold
    with server.client("alpha") as client:
        batches = BatchClient(client)
        with batches.submit("gate", items) as handle:
            wait_for((signals(server) / "holding-job-spill").exists, "the batch chunk to run")
            assert spill_leaks(server, marker) == [], "plaintext in a spill file"
            (signals(server) / "release-job-spill").touch()
            batches.wait(handle.batch_id, timeout_s=30, poll_s=0.1)
            results = batches.fetch(handle)
        assert all(r.ok for r in results) and len(results) == 4
        del results
    assert hits_of(server, marker) == {}
    assert spill_leaks(server, marker) == []


# --- what the next tenant can read -----------------------------------------------------------------------
def test_fresh_allocations_of_the_next_tenant_hold_nothing(server: ServerHandle) -> None:
    marker = new_marker()
    sizes = [64, 1024, 4096, 16 * 1024, 128 * 1024, 1024 * 1024, 4 * 1024 * 1024]
    with server.client("alpha") as client:
        for size in sizes:
            payload = marker_bytes(marker, size)
            assert client.infer("echo", payload) == payload
            client.infer("gate", tensors_payload(marker, size))
    assert hits_of(server, marker) == {}
    probe = {
        "needle_x": torch.bitwise_xor(u8(marker.encode()), 0x5A),
        "sizes": torch.tensor([s + extra for s in sizes for extra in (0, 64)], dtype=torch.int64),
    }
    with server.client("beta") as client:
        hits = load(client.infer("probe", save(probe)))["hits"].tolist()
    assert sum(hits) == 0, f"the next tenant's torch.empty found the marker: {hits}"


# --- SIGTERM with requests in flight: must be the last test of the module ------------------------------------
def test_sigterm_with_requests_in_flight_leaves_nothing_before_exit(server: ServerHandle) -> None:
    import os
    import signal

    finished, still_held = new_marker(), new_marker()
    (signals(server) / "release-term-2").touch()
    out: list[Any] = []
    with gate_held(server, "alpha", "term-1", new_marker()):
        second = infer_in_thread(server, "alpha", "gate", tensors_payload(finished, 16 * 1024, gate="term-2"), out)
        time.sleep(0.3)  # queued in this order (term-3 holds the worker: term-2 would time out behind it)
        third = infer_in_thread(server, "alpha", "gate", tensors_payload(still_held, 16 * 1024, gate="term-3"), out)
        time.sleep(0.3)
        os.kill(server.pid, signal.SIGTERM)
        time.sleep(0.3)
    second.join(30)
    try:
        wait_for((signals(server) / "holding-term-3").exists, "the third request to run during the drain")
        assert server.process.poll() is None
        hits = scan_process(server.pid, needles(finished))
        control = scan_process(server.pid, needles(still_held))
    finally:
        (signals(server) / "release-term-3").touch()
        third.join(30)
    assert out == [200, 200]
    assert sum(control.values()) > 0, "control failed: the request still draining is not visible"
    assert hits == {}, f"an answered request's plaintext is still in the draining server: {hits}"
    assert server.process.wait(timeout=30) == 0


# --- the ASGI middleware: an app that raises, streams, or reads its body twice -------------------------------
FAILING_APP = '''
"""A FastAPI app and a raw ASGI route that misbehave behind CleanroomMiddleware."""
import os

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from cleanroom.errors import InvalidPayload
from cleanroom.integrations.asgi import CleanroomMiddleware

inner = FastAPI()


@inner.post("/v1/raise-own")
async def raise_own(request: Request) -> dict[str, object]:
    text = (await request.json())["text"]
    words = text.split()
    raise InvalidPayload(f"a note of {len(words)} words is not accepted")


@inner.post("/v1/raise-chained")
async def raise_chained(request: Request) -> dict[str, object]:
    text = (await request.json())["text"]
    try:
        return {"n": int(text)}  # ValueError quoting the text
    except ValueError as error:
        raise RuntimeError(f"not a number ({type(error).__name__})")


@inner.post("/v1/stream")
async def stream(request: Request) -> StreamingResponse:
    text = (await request.json())["text"]

    async def pieces():
        for i in range(4):
            yield f"piece {i}: {text}\\n".encode()

    return StreamingResponse(pieces(), media_type="text/plain")


async def twice(scope, receive, send):
    """Reads its body, then waits on `receive` again (for more body, or the client going away)."""
    first = await receive()
    body = first.get("body", b"")
    second = await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": second["type"].encode() + b" " + body[:0]})


async def routed(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/v1/twice":
        await twice(scope, receive, send)
    else:
        await inner(scope, receive, send)


app = CleanroomMiddleware(routed, data_dir=os.environ["CR_DATA"], protected_paths=("/v1/",))
'''


@pytest.fixture(scope="module")
def asgi_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import os
    import subprocess
    import sys

    import httpx

    from services import free_port
    from test_middleware_remanence import NotesServer, create_tenants

    base = tmp_path_factory.mktemp("asgi-failures")
    (base / "failing_app.py").write_text(FAILING_APP)
    api_keys = create_tenants(base / "data", "shop")
    port = free_port()
    env = server_env(CR_DATA=str(base / "data"))
    env["PYTHONPATH"] = os.pathsep.join([str(base), env["PYTHONPATH"]])
    env.pop("PYTHONMALLOC", None)
    env.pop("GLIBC_TUNABLES", None)
    uvicorn = [sys.executable, "-m", "uvicorn", "failing_app:app", "--host", "127.0.0.1", "--port", str(port)]
    log_path = base / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "cleanroom", "exec", "--", *uvicorn], env=env, cwd=base, stdout=log, stderr=log
        )
    handle = NotesServer(f"http://127.0.0.1:{port}", process, log_path, base, api_keys)
    try:
        wait_for(lambda: _answers(httpx, handle.url) or process.poll() is not None, "uvicorn to start", 60)
        assert process.poll() is None, log_path.read_text()[-3000:]
        yield handle
    finally:
        handle.stop()


def _answers(httpx: Any, url: str) -> bool:
    try:
        httpx.get(f"{url}/healthz", timeout=2)
        return True
    except httpx.TransportError:
        return False


def note(marker: str, repeat: int = 1) -> bytes:
    import json

    pad = "lorem ipsum dolor sit amet " * 12
    return json.dumps({"text": f"{pad}{marker}{pad} and again {marker} end " * repeat}).encode()


def test_middleware_app_that_raises_or_streams_leaves_nothing(asgi_server: Any) -> None:
    own, chained, streamed = new_marker(), new_marker(), new_marker()
    with asgi_server.client() as client:
        for repeat in (1, 40):
            with pytest.raises(ClientError) as raised:
                client.call("/v1/raise-own", note(own, repeat))
            assert raised.value.status == 422
            with pytest.raises(ClientError) as raised:
                client.call("/v1/raise-chained", note(chained, repeat))
            assert raised.value.status == 422 and raised.value.code == "app_rejected_input"
            answer = client.call("/v1/stream", note(streamed, repeat))
            assert answer.count(streamed.encode()) == 4 * 2 * repeat
            del answer
    time.sleep(0.3)
    hits = scan_process(asgi_server.pid, needles(own, chained, streamed))
    assert hits == {}, f"plaintext left in the middleware's server: {hits}"
    assert not any(n in asgi_server.log_text() for n in needles(own, chained, streamed))


def test_middleware_app_that_reads_its_body_twice_ends_when_the_client_goes(asgi_server: Any) -> None:
    """An app that waits on `receive` after its body must see the client leave (`http.disconnect`), as it
    would without the middleware; else it waits forever, holding the plaintext."""
    import httpx

    marker = new_marker()
    with asgi_server.client() as client:
        sealed = client.seal_request("", note(marker, 4), path="/v1/twice")
    headers = {
        "Content-Type": "application/vnd.cleanroom.sealed",
        "Authorization": f"Bearer {asgi_server.api_keys['shop']}",
    }
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{asgi_server.url}/v1/twice", content=sealed.body, headers=headers, timeout=1.5)
    time.sleep(0.5)
    hits = scan_process(asgi_server.pid, needles(marker))
    assert hits == {}, f"an app still waiting on receive() after its client left holds the plaintext: {hits}"


# --- the cause, in process: exception frames that outlive the request ---------------------------------------
class Plaintext:
    """Stands for a model's own copy of the input (a `str` cannot be weakly referenced)."""


def test_a_raising_model_s_frames_go_with_the_request_not_at_the_next_gc() -> None:
    """Model code that keeps an exception in a local (a retry loop's `last_error`) makes a frame <-> exception
    cycle; its locals (copies of the input) must go when the request's error is built, not when a garbage
    collection happens to run."""
    import gc
    import json
    import weakref

    from cleanroom.errors import InvalidPayload
    from cleanroom.memory.secure_buffer import SecureAllocator
    from cleanroom.runtime.models import RequestScope
    from cleanroom.runtime.session import run_model

    alive: list[weakref.ref[Plaintext]] = []

    class Model:
        name, max_batch_size = "cyclic", 1

        def run(self, payload: Any, scope: Any) -> memoryview:
            copy = Plaintext()
            alive.append(weakref.ref(copy))
            last_error: Exception | None = None
            for _attempt in range(2):  # a retry loop that remembers its last error: frame <-> error cycle
                try:
                    return memoryview(json.dumps(json.loads("not json")).encode())
                except ValueError as error:
                    last_error = error
            raise RuntimeError(f"gave up after {type(last_error).__name__}")

    allocator = SecureAllocator(lock=False)
    gc.disable()
    try:
        with allocator.allocate(16) as payload, pytest.raises(InvalidPayload):
            run_model(Model(), payload, RequestScope(allocator))  # type: ignore[arg-type]
        assert alive[0]() is None, "the model's frame (and its copy of the input) outlived its request"
    finally:
        gc.enable()
