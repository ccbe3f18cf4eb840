"""Batch jobs (docs/batches.md): formats, the job store in process, and the whole flow through real servers.

In process (an app over real services, driven by Starlette's TestClient, lifespan included): formats under
mutation, tenant isolation of lanes and jobs, cancel, TTL, disk full mid-job (an injected SpillIO),
limits. Through real `cleanroom serve` processes: minilm/echo/user-model jobs end to end, another tenant,
tampered submissions, the CLI, TTL expiry and cancel (with the server's spill descriptors watched), a real
EFBIG from RLIMIT_FSIZE, and kill -9 mid-job with the spill directory and descriptors scanned for a marker.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import secrets
import signal
import stat
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load, save
from starlette.testclient import TestClient

from cleanroom.batch_client import BatchClient, BatchHandle
from cleanroom.client import Client, ClientError
from cleanroom.config import Settings
from cleanroom.crypto.deferred import DeferredResponseKey
from cleanroom.crypto.sealed import CONTENT_TYPE
from cleanroom.errors import CleanroomError, DecryptionFailed, InvalidPayload, InvalidSealedMessage
from cleanroom.runtime.batch_format import decode_results, encode_batch, index_batch, results_header
from cleanroom.runtime.batch_jobs import JobState, lane_of
from cleanroom.runtime.spill import SpillIO
from cleanroom.server.app import create_app
from cleanroom.server.services import build_services

BATCHES = "/v1/batches"


# --- formats -------------------------------------------------------------------------------------------
def index_of(document: bytes, **limits: int) -> Any:
    return index_batch(
        lambda o, n: document[o : o + n],
        len(document),
        max_items=limits.get("max_items", 100),
        max_item_bytes=limits.get("max_item_bytes", 1 << 20),
    )


def test_batch_document_round_trip_and_layout() -> None:
    items = [b"", b"a", os.urandom(1000), b'{"inputs": ["x"]}']
    document = bytes(encode_batch("minilm", items))
    # Fixed vector for the framing: magic, version, name, count, big-endian lengths, then the items.
    assert document[:16] == b"CRB1\x01\x06minilm" + struct.pack(">I", 4)
    assert document[16:32] == struct.pack(">4I", 0, 1, 1000, 17)
    index = index_of(document)
    assert index.model == "minilm" and index.count == 4
    assert [document[o : o + n] for o, n in zip(index.offsets, index.lengths, strict=True)] == items


@pytest.mark.parametrize("cut", [0, 3, 5, 6, 11, 15, 17, 25, -1])
def test_truncated_batch_documents_are_refused(cut: int) -> None:
    document = bytes(encode_batch("echo", [b"abc", b"defg"]))
    with pytest.raises(InvalidPayload) as caught:
        index_of(document[:cut])
    assert caught.value.code == "invalid_batch" and caught.value.status == 422


@pytest.mark.parametrize(
    "mutation",
    [
        "magic",
        "version",
        "name-len-0",
        "name-len-big",
        "name-char",
        "count-0",
        "count-big",
        "length-big",
        "length-small",
        "trailing",
        "item-too-big",
    ],
)
def test_malformed_batch_documents_are_refused(mutation: str) -> None:
    document = bytearray(encode_batch("echo", [b"abc", b"defg"]))
    limits = {}
    if mutation == "magic":
        document[0] ^= 1
    elif mutation == "version":
        document[4] = 2
    elif mutation == "name-len-0":
        document[5] = 0
    elif mutation == "name-len-big":
        document[5] = 200
    elif mutation == "name-char":
        document[6] = ord("/")
    elif mutation == "count-0":
        document[10:14] = struct.pack(">I", 0)
    elif mutation == "count-big":
        document[10:14] = struct.pack(">I", 101)
    elif mutation == "length-big":
        document[14:18] = struct.pack(">I", 4)
    elif mutation == "length-small":
        document[14:18] = struct.pack(">I", 2)
    elif mutation == "trailing":
        document += b"x"
    else:
        limits["max_item_bytes"] = 3
    with pytest.raises(InvalidPayload):
        index_of(bytes(document), **limits)


def test_results_document_round_trip_and_mutations() -> None:
    from array import array

    bodies = [b"out-1", b"model_rejected_input", b""]
    statuses, lengths = array("B", [0, 1, 0]), array("I", [len(b) for b in bodies])
    document = results_header(statuses, lengths) + b"".join(bodies)
    results = decode_results(document)
    assert [(r.ok, r.output, r.error_code) for r in results] == [
        (True, b"out-1", ""),
        (False, b"", "model_rejected_input"),
        (True, b"", ""),
    ]
    for broken in (document[:-1], document + b"x", b"CRR2" + document[4:], document[:12]):
        with pytest.raises(ValueError):
            decode_results(broken)


# --- in process ------------------------------------------------------------------------------------------
class RecordingAudit:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def record(self, event: Mapping[str, Any]) -> None:
        self.events.append(dict(event))


class App:
    """An app over real services (local KMS, echo + test user models), with tenants and TestClient."""

    def __init__(self, tmp: Path, **settings: Any) -> None:
        self.spill_dir = tmp / "spill"
        self.spill_dir.mkdir()
        self.audit = RecordingAudit()
        user_models = {
            "hold": "support.hold_model:hold_factory",
            "picky": "support.hold_model:picky_factory",
            "double": "support.hold_model:double_factory",
        }
        self.services = build_services(
            Settings(
                data_dir=tmp / "data", models=["echo"], user_models=user_models, spill_dir=self.spill_dir, **settings
            ),
            audit=self.audit,
        )
        self.app = create_app(self.services)
        self.store = self.app.state.batches
        self.tenants = {name: self.services.tenants.create(name) for name in ("alice", "bob")}
        self.http = TestClient(self.app)

    def client(self, tenant: str) -> Client:
        created = self.tenants[tenant]
        client = Client("http://testserver", api_key=created.api_key, public_key=created.public_key)
        client._http = self.http  # the TestClient is an httpx.Client over the app
        return client

    def batches(self, tenant: str) -> BatchClient:
        return BatchClient(self.client(tenant))

    def headers(self, tenant: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tenants[tenant].api_key}"}

    def spill_fds(self) -> list[str]:
        return open_spill_fds(os.getpid(), self.spill_dir)


def open_spill_fds(pid: int, directory: Path) -> list[str]:
    links = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            links.append(target)
    return links


@pytest.fixture
def inproc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    monkeypatch.setenv("CLEANROOM_TEST_SIGNAL_DIR", str(tmp_path))
    app = App(
        tmp_path,
        batch_chunk_size=3,
        spill_threshold_bytes=64 * 1024,
        max_batches_per_tenant=3,
        spill_segment_bytes=64 * 1024,
    )
    with app.http:
        yield app
    app.services.close()


def until(predicate: Any, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def tensor_item(value: float, size: int = 4) -> bytes:
    return save({"x": torch.full((size,), value, dtype=torch.float32)})


def test_inproc_round_trip_both_spill_paths_and_per_item_errors(inproc: App) -> None:
    batches = inproc.batches("alice")
    small = [f"item-{i}".encode() for i in range(7)]
    large = [os.urandom(50_000) for _ in range(5)]  # 250 kB > the 64 KiB threshold: decrypted in pieces
    picky = [tensor_item(1.0), save({"x": torch.ones(3, dtype=torch.int64)}), tensor_item(2.5)]
    handles = [batches.submit("echo", small), batches.submit("echo", large), batches.submit("picky", picky)]
    for handle in handles:
        assert batches.wait(handle.batch_id, timeout_s=30, poll_s=0.05)["status"] == "succeeded"
    spilled = [e.get("spilled", False) for e in inproc.audit.events if e["event"] == "decrypt.request_key"]
    assert spilled == [False, True, False]
    with handles[0], handles[1], handles[2]:
        assert [r.output for r in batches.fetch(handles[0])] == small
        assert [r.output for r in batches.fetch(handles[1])] == large
        results = batches.fetch(handles[2])
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error_code == "model_rejected_input"
    assert torch.equal(load(results[2].output)["y"], torch.full((4,), 3.5))
    assert inproc.spill_fds() == [] and list(inproc.spill_dir.iterdir()) == []


def test_inproc_results_are_one_sealed_response_to_the_submit_request(inproc: App) -> None:
    """`SealedRequest.open_response` of the submitting request opens the results; nothing else does."""
    client = inproc.client("alice")
    document = encode_batch("echo", [b"one", b"two"])
    sealed = client.seal_request("", bytes(document), path=BATCHES)
    other = client.seal_request("", bytes(document), path=BATCHES)
    headers = {**inproc.headers("alice"), "Content-Type": CONTENT_TYPE}
    response = inproc.http.post(BATCHES, content=sealed.body, headers=headers)
    assert response.status_code == 202 and response.headers["location"].endswith(response.json()["batch_id"])
    batch_id = response.json()["batch_id"]
    until(
        lambda: (
            inproc.http.get(f"{BATCHES}/{batch_id}", headers=inproc.headers("alice")).json()["status"] == "succeeded"
        )
    )
    body = inproc.http.get(f"{BATCHES}/{batch_id}/results", headers=inproc.headers("alice")).content
    assert [r.output for r in decode_results(sealed.open_response(body))] == [b"one", b"two"]
    with pytest.raises(DecryptionFailed):
        other.open_response(body)
    for position in (0, 21, 30, len(body) // 2, len(body) - 1):
        tampered = bytearray(body)
        tampered[position] ^= 0x40
        with pytest.raises((DecryptionFailed, InvalidSealedMessage)):
            sealed.open_response(bytes(tampered))


def test_inproc_chunks_never_mix_tenants_and_run_in_the_batch_lane(inproc: App) -> None:
    seen: list[tuple[str, set[str]]] = []
    runner = inproc.store.runners["echo"]
    original = runner.run

    def recording(device: str, lane: str, items: Any) -> Any:
        seen.append((lane, {item.job.tenant_id for item in items}))
        return original(device, lane, items)

    runner.run = recording
    alice, bob = inproc.batches("alice"), inproc.batches("bob")
    handles = [
        alice.submit("echo", [b"a%d" % i for i in range(20)]),
        bob.submit("echo", [b"b%d" % i for i in range(20)]),
    ]
    for batches, handle in zip((alice, bob), handles, strict=True):
        batches.wait(handle.batch_id, timeout_s=30, poll_s=0.05)
        with handle:
            outputs = [r.output for r in batches.fetch(handle)]
        assert outputs == [(b"a%d" if batches is alice else b"b%d") % i for i in range(20)]
    assert len(seen) == 2 * 7  # 20 items in chunks of 3, one chunk per scheduler batch
    for lane, tenants in seen:
        assert tenants == {lane.removesuffix("#batch")}
    stats, _ = inproc.services.scheduler.stats()
    for name in ("alice", "bob"):
        lane = lane_of(inproc.tenants[name].tenant_id)
        assert stats[lane].weight == pytest.approx(1.0 * inproc.services.settings.batch_weight)


def test_inproc_another_tenant_gets_404_everywhere(inproc: App) -> None:
    alice = inproc.batches("alice")
    handle = alice.submit("echo", [b"private"])
    alice.wait(handle.batch_id, poll_s=0.05)
    for method, path in (("GET", ""), ("GET", "/results"), ("DELETE", "")):
        response = inproc.http.request(method, f"{BATCHES}/{handle.batch_id}{path}", headers=inproc.headers("bob"))
        assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_batch"
        assert "private" not in response.text
    unknown = inproc.http.get(f"{BATCHES}/b_{'0' * 32}", headers=inproc.headers("alice"))
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_batch"
    assert inproc.http.get(f"{BATCHES}/{handle.batch_id}").status_code == 401
    with handle:
        assert [r.output for r in alice.fetch(handle)] == [b"private"]


def test_inproc_status_is_counts_only(inproc: App) -> None:
    alice = inproc.batches("alice")
    with alice.submit("echo", [b"x", b"y"]) as handle:
        document = alice.wait(handle.batch_id, poll_s=0.05)
        assert set(document) == {"batch_id", "status", "items", "created_at"}
        assert document["items"] == {"total": 2, "completed": 2, "failed": 0, "pending": 0}
        assert "echo" not in json.dumps(document)
        alice.fetch(handle)
    gone = inproc.http.get(f"{BATCHES}/{handle.batch_id}/results", headers=inproc.headers("alice"))
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "batch_retrieved"
    assert alice.status(handle.batch_id)["status"] == "retrieved"


def hold_files(tmp: Path) -> tuple[Path, Path]:
    return tmp / "holding", tmp / "release"


def test_inproc_two_cancels_at_once_answer_200_then_410(inproc: App, tmp_path: Path) -> None:
    """The second of two simultaneous cancels (or a cancel racing the TTL) finds the job being ended: 410,
    not a second 200 while the first still awaits the driver."""
    holding, release = hold_files(tmp_path)
    alice = inproc.batches("alice")
    item = save({"input": torch.arange(10, dtype=torch.float32)})
    with alice.submit("hold", [item] * 6) as handle:
        until(holding.exists)
        tenant_id = inproc.tenants["alice"].tenant_id

        async def both() -> list[Any]:
            return list(
                await asyncio.gather(
                    inproc.store.cancel(tenant_id, handle.batch_id),
                    inproc.store.cancel(tenant_id, handle.batch_id),
                    return_exceptions=True,
                )
            )

        first, second = inproc.http.portal.call(both)  # type: ignore[union-attr]
        release.touch()
    assert getattr(first, "state", None) is JobState.CANCELLED, first
    assert isinstance(second, CleanroomError) and (second.status, second.code) == (410, "batch_cancelled")
    assert inproc.store.stats()["cancelled"] == 1


def test_inproc_cancel_mid_chunk_shreds_at_once(inproc: App, tmp_path: Path) -> None:
    holding, release = hold_files(tmp_path)
    alice = inproc.batches("alice")
    item = save({"input": torch.arange(10, dtype=torch.float32)})
    with alice.submit("hold", [item] * 6) as handle:
        until(holding.exists)
        assert alice.status(handle.batch_id)["status"] == "running" and len(inproc.spill_fds()) == 2
        assert alice.cancel(handle.batch_id)["status"] == "cancelled"
        assert inproc.spill_fds() == []  # both spills closed while the model still holds its chunk
        with pytest.raises(ClientError) as caught:
            alice.fetch(handle)
        assert caught.value.status == 410 and caught.value.code == "batch_cancelled"
        release.touch()
    # The lane still works after a cancelled chunk came back.
    with alice.submit("echo", [b"after"]) as again:
        alice.wait(again.batch_id, poll_s=0.05)
        assert [r.output for r in alice.fetch(again)] == [b"after"]
    assert inproc.store.stats()["cancelled"] == 1


def test_inproc_revoked_tenant_stops_its_jobs(inproc: App, tmp_path: Path) -> None:
    holding, release = hold_files(tmp_path)
    alice = inproc.batches("alice")
    with alice.submit("hold", [save({"input": torch.ones(3)})] * 6) as handle:  # two chunks of three
        until(holding.exists)
        inproc.services.keys.set_tenant_revoked("alice", True)
        release.touch()
        job = inproc.store._jobs[handle.batch_id]
        until(lambda: job.state is JobState.FAILED)
        assert job.error_code == "tenant_revoked" and job.completed <= 3
        assert inproc.spill_fds() == []
        with pytest.raises(ClientError) as caught:
            alice.status(handle.batch_id)
        assert caught.value.status == 403  # and a revoked tenant cannot reach the routes at all


def test_inproc_deleting_a_tenant_shreds_its_jobs_and_forgets_its_lane(inproc: App, tmp_path: Path) -> None:
    """A finished job waiting to be fetched and a running one both go at the delete: nobody can fetch them
    any more, so keeping them until the TTL only keeps decryptable results around. Bob's job is untouched."""
    holding, release = hold_files(tmp_path)
    alice_id = inproc.tenants["alice"].tenant_id
    finished = inproc.batches("alice").submit("echo", [tensor_item(1.0)])
    finished_job = inproc.store._jobs[finished.batch_id]
    until(lambda: finished_job.state is JobState.SUCCEEDED)
    bobs = inproc.batches("bob").submit("echo", [tensor_item(2.0)])
    with inproc.batches("alice").submit("hold", [save({"input": torch.ones(3)})] * 6) as handle:
        until(holding.exists)
        running = inproc.store._jobs[handle.batch_id]
        assert lane_of(alice_id) in inproc.services.scheduler.stats()[0]
        answer = inproc.http.delete(
            "/v1/admin/tenants/alice", headers={"Authorization": f"Bearer {inproc.services.admin_token}"}
        )
        assert answer.status_code == 200, answer.text
        release.touch()
        for job in (finished_job, running):
            assert job.state is JobState.FAILED and job.error_code == "tenant_deleted"
        until(lambda: lane_of(alice_id) not in inproc.services.scheduler.stats()[0])
    bob_job = inproc.store._jobs[bobs.batch_id]
    until(lambda: bob_job.state is JobState.SUCCEEDED)
    assert len(inproc.batches("bob").fetch(bobs)) == 1


def test_inproc_limits(inproc: App, tmp_path: Path) -> None:
    _, release = hold_files(tmp_path)
    alice = inproc.batches("alice")
    item = save({"input": torch.zeros(2)})
    handles = [alice.submit("hold", [item]) for _ in range(3)]  # max_batches_per_tenant=3
    with pytest.raises(ClientError) as caught:
        alice.submit("echo", [b"x"])
    assert caught.value.status == 429 and caught.value.code == "too_many_batches"
    assert inproc.batches("bob").submit("echo", [b"bob is not limited by alice"]).batch_id
    with pytest.raises(ClientError) as caught:
        alice.submit("nope", [b"x"])
    assert caught.value.status == 429  # the limit is checked before anything is decrypted
    for handle in handles:
        alice.cancel(handle.batch_id)
        handle.close()
    release.touch()
    with pytest.raises(ClientError) as caught:
        alice.submit("nope", [b"x"])
    assert caught.value.status == 404 and caught.value.code == "unknown_model"


def test_inproc_disk_full_mid_job_fails_the_job_cleanly(inproc: App) -> None:
    class FullAfter(SpillIO):
        """The disk fills up once the job's results spill has 200 kB on it (the input spill fits)."""

        def __init__(self) -> None:
            super().__init__()
            self.fds: list[int] = []

        def open_unlinked(self, directory: Path) -> int:
            fd = super().open_unlinked(directory)
            self.fds.append(fd)
            return fd

        def pwrite(self, fd: int, data: memoryview, offset: int) -> int:
            if fd == self.fds[-1] and len(self.fds) == 2 and offset + data.nbytes > 200_000:
                raise OSError(28, "No space left on device")
            return super().pwrite(fd, data, offset)

    inproc.store.spill_io = FullAfter()
    alice = inproc.batches("alice")
    marker = b"DISKFULL-" + secrets.token_hex(8).encode()
    items = [marker * 2000 for _ in range(30)]  # ~870 kB
    with alice.submit("echo", items) as handle:
        document = alice.wait(handle.batch_id, timeout_s=30, poll_s=0.05)
        assert document["status"] == "failed" and document["error"] == {"code": "spill_failed"}
        with pytest.raises(ClientError) as caught:
            alice.fetch(handle)
        assert caught.value.status == 410 and caught.value.code == "batch_failed"
    assert inproc.spill_fds() == [] and list(inproc.spill_dir.iterdir()) == []
    inproc.store.spill_io = None
    with alice.submit("echo", [b"ok again"]) as handle:  # the store is fine afterwards
        alice.wait(handle.batch_id, poll_s=0.05)
        assert [r.output for r in alice.fetch(handle)] == [b"ok again"]


def test_inproc_ttl_expiry_shreds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEANROOM_TEST_SIGNAL_DIR", str(tmp_path))
    app = App(tmp_path, batch_ttl_s=2.0)
    try:
        with app.http:
            alice = app.batches("alice")
            with alice.submit("echo", [b"short-lived"] * 3) as handle:
                alice.wait(handle.batch_id, poll_s=0.05)
                assert len(app.spill_fds()) == 2
                until(lambda: app.store._jobs[handle.batch_id].state is JobState.EXPIRED, timeout_s=10)
                assert app.spill_fds() == []  # the reaper shredded it without anyone asking
                with pytest.raises(ClientError) as caught:
                    alice.fetch(handle)
                assert caught.value.status == 410 and caught.value.code == "batch_expired"
                assert alice.status(handle.batch_id)["status"] == "expired"
    finally:
        app.services.close()


def test_inproc_bad_submissions(inproc: App) -> None:
    client = inproc.client("alice")
    headers = {**inproc.headers("alice"), "Content-Type": CONTENT_TYPE}

    def post(body: bytes, **extra: str) -> Any:
        return inproc.http.post(BATCHES, content=body, headers={**headers, **extra})

    assert post(b"").status_code == 400
    assert post(b"x", **{"Content-Type": "application/json"}).status_code == 415
    wrong_path = client.seal_request("echo", bytes(encode_batch("echo", [b"x"]))).body  # sealed for inference
    assert post(wrong_path).json()["error"]["code"] == "context_mismatch"
    not_a_batch = client.seal_request("", b'{"model": "echo", "inputs": ["x"]}', path=BATCHES).body
    response = post(not_a_batch)
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_batch"
    body = client.seal_request("", bytes(encode_batch("echo", [b"x"])), path=BATCHES).body
    assert post(body).status_code == 202
    assert post(body).json()["error"]["code"] == "replayed_request"
    for position in (5, 40, len(body) - 20, len(body) - 1):
        tampered = bytearray(client.seal_request("", bytes(encode_batch("echo", [b"x"])), path=BATCHES).body)
        tampered[position] ^= 1
        assert 400 <= post(bytes(tampered)).status_code < 500
    assert len(inproc.store._jobs) == 1


# --- through real servers -------------------------------------------------------------------------------
def sealed_post(server: Any, tenant: str, body: bytes, **headers: str) -> Any:
    with server.http() as http:
        return http.post(
            BATCHES,
            content=body,
            headers={
                "Authorization": f"Bearer {server.tenants[tenant]['api_key']}",
                "Content-Type": CONTENT_TYPE,
                **headers,
            },
        )


@pytest.fixture(scope="module")
def batch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from support.server import server_env, start_server

    base = tmp_path_factory.mktemp("batch-server")
    env = server_env(
        CLEANROOM_SPILL_THRESHOLD_BYTES="65536", CLEANROOM_BATCH_CHUNK_SIZE="4", CLEANROOM_SPILL_DIR=str(base / "spill")
    )
    (base / "spill").mkdir()
    server = start_server(
        base / "data", "--models", "echo,minilm", "--model", "double=support.hold_model:double_factory", env=env
    )
    server.create_tenant("alpha")
    server.create_tenant("beta")
    try:
        yield server
    finally:
        server.stop()


def test_e2e_minilm_echo_and_user_model(batch_server: Any) -> None:
    texts = [
        ["The cat sits on the mat."],
        ["A sentence about finance.", "ünïcödé ✓"],
        ["short"],
        ["one", "two", "three"],
        ["Batch jobs run beside interactive traffic."],
        ["last one"],
    ]
    minilm_items = [json.dumps({"inputs": t}).encode() for t in texts]
    echo_items = [os.urandom(random.Random(i).randrange(1, 300_000)) for i in range(9)]  # > threshold: in pieces
    double_items = [save({"x": torch.arange(6, dtype=torch.float32) + i}) for i in range(5)]
    with batch_server.client("alpha") as client:
        batches = BatchClient(client)
        handles = {
            name: batches.submit(name, items)
            for name, items in (("minilm", minilm_items), ("echo", echo_items), ("double", double_items))
        }
        for handle in handles.values():
            document = batches.wait(handle.batch_id, timeout_s=120, poll_s=0.1)
            assert document["status"] == "succeeded", document
        expected_minilm = [load(client.infer("minilm", item))["embeddings"] for item in minilm_items]
        results = {name: batches.fetch(handle) for name, handle in handles.items()}
        for handle in handles.values():
            handle.close()
    assert all(r.ok for rs in results.values() for r in rs)
    for result, expected in zip(results["minilm"], expected_minilm, strict=True):
        embeddings = load(result.output)["embeddings"]
        assert embeddings.shape == expected.shape and torch.allclose(embeddings, expected, atol=1e-4)
    assert [r.output for r in results["echo"]] == echo_items
    for i, result in enumerate(results["double"]):
        assert torch.equal(load(result.output)["x"], (torch.arange(6, dtype=torch.float32) + i) * 2)


def test_e2e_another_tenant_cannot_see_or_fetch(batch_server: Any) -> None:
    with batch_server.client("alpha") as alpha, batch_server.client("beta") as beta:
        handle = BatchClient(alpha).submit("echo", [b"alpha-only"])
        BatchClient(alpha).wait(handle.batch_id, poll_s=0.1)
        for call in (BatchClient(beta).status, BatchClient(beta).cancel):
            with pytest.raises(ClientError) as caught:
                call(handle.batch_id)
            assert caught.value.status == 404 and caught.value.code == "unknown_batch"
        with pytest.raises(ClientError) as caught:
            BatchClient(beta).fetch(handle)  # even holding the right key material
        assert caught.value.status == 404
        with handle:
            assert [r.output for r in BatchClient(alpha).fetch(handle)] == [b"alpha-only"]


def test_e2e_tampered_and_bad_submissions(batch_server: Any) -> None:
    with batch_server.client("alpha") as client:

        def fresh() -> bytearray:
            return bytearray(client.seal_request("", bytes(encode_batch("echo", [b"x" * 100_000])), path=BATCHES).body)

        size = len(fresh())
        for position in (0, 4, 5, 12, 100, 250, size // 2, size - 17, size - 1):
            body = fresh()
            body[position] ^= 0x02
            response = sealed_post(batch_server, "alpha", bytes(body))
            assert 400 <= response.status_code < 500 and "error" in response.json(), position
        truncated = sealed_post(batch_server, "alpha", bytes(fresh()[:-1]))
        assert truncated.status_code == 400
        unknown = sealed_post(
            batch_server, "alpha", client.seal_request("", bytes(encode_batch("gpt5", [b"x"])), path=BATCHES).body
        )
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_model"
        assert 400 <= sealed_post(batch_server, "beta", bytes(fresh())).status_code < 500  # alpha's sealed body
    assert batch_server.healthy()


CLI_MAIN = (
    "import argparse, sys; from cleanroom.batch_cli import register; p = argparse.ArgumentParser(); "
    "s = p.add_subparsers(dest='command', required=True); register(s); a = p.parse_args(sys.argv[1:]); "
    "sys.exit(a.func(a))"
)


def batch_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`cleanroom batch ...` through the module's own `register` (what cli.py wires in)."""
    from support.server import REPO, server_env

    result = subprocess.run(
        [sys.executable, "-c", CLI_MAIN, "batch", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        env=server_env(),
    )
    assert result.returncode == 0 or not check, result.stderr[-2000:]
    return result


def test_e2e_cli_submit_status_fetch(batch_server: Any, tmp_path: Path) -> None:
    api_key = batch_server.tenants["alpha"]["api_key"]
    items = tmp_path / "items.jsonl"
    lines = [json.dumps({"inputs": [f"text {i}"]}) for i in range(5)]
    items.write_text("\n".join(lines) + "\n")
    ticket = tmp_path / "job.ticket"
    common = ["--api-key", api_key, "--cacert", batch_server.cert]
    out = batch_cli(
        "submit", "minilm", "--url", batch_server.url, *common, "--input", str(items), "--ticket", str(ticket)
    )
    assert json.loads(out.stdout)["items"] == 5
    assert stat.S_IMODE(ticket.stat().st_mode) == 0o600
    status = json.loads(batch_cli("status", "--ticket", str(ticket), *common, "--wait").stdout)
    assert status["status"] == "succeeded" and status["items"]["completed"] == 5
    results_file = tmp_path / "results.jsonl"
    batch_cli("fetch", "--ticket", str(ticket), *common, "--out", str(results_file))
    rows = [json.loads(line) for line in results_file.read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(5)) and all(r["ok"] for r in rows)
    assert load(base64.b64decode(rows[0]["output"]))["embeddings"].shape == (1, 384)
    assert not ticket.exists()  # the job is shredded; so is the ticket


def test_cli_loses_no_job_to_a_bad_ticket_or_results_path(batch_server: Any, tmp_path: Path) -> None:
    """The ticket is the only key to a job and fetching shreds it: both paths are checked before the server
    is asked, and neither an earlier ticket nor the results are lost to a typo."""
    common = ["--api-key", batch_server.tenants["alpha"]["api_key"], "--cacert", batch_server.cert]
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"inputs": ["kept"]}) + "\n")
    submit = ["submit", "minilm", "--url", batch_server.url, *common, "--input", str(items)]
    ticket = tmp_path / "job.ticket"
    batch_cli(*submit, "--ticket", str(ticket))
    earlier = ticket.read_bytes()
    # An existing ticket is another job's key: refused, unchanged; replaced only when asked.
    again = batch_cli(*submit, "--ticket", str(ticket), check=False)
    assert again.returncode != 0 and "exists" in again.stderr and "Traceback" not in again.stderr
    assert ticket.read_bytes() == earlier
    unwritable = batch_cli(*submit, "--ticket", str(tmp_path / "no" / "such" / "dir" / "t"), check=False)
    assert unwritable.returncode != 0 and "cannot write the ticket" in unwritable.stderr
    assert not (tmp_path / "no").exists()
    # A results path that cannot be written fails before the download: the job is still there to fetch.
    batch_cli("status", "--ticket", str(ticket), *common, "--wait")
    bad_out = batch_cli(
        "fetch", "--ticket", str(ticket), *common, "--out", str(tmp_path / "missing" / "r.jsonl"), check=False
    )
    assert bad_out.returncode != 0 and "cannot write results" in bad_out.stderr
    assert ticket.exists()
    results = tmp_path / "results.jsonl"
    batch_cli("fetch", "--ticket", str(ticket), *common, "--out", str(results))
    assert json.loads(results.read_text())["ok"] is True
    assert stat.S_IMODE(results.stat().st_mode) == 0o600  # plaintext results: private
    assert sorted(p.name for p in tmp_path.iterdir()) == ["items.jsonl", "results.jsonl"]  # no partial file left
    replaced = tmp_path / "replaced.ticket"
    replaced.write_text("stale")
    batch_cli(*submit, "--ticket", str(replaced), "--overwrite-ticket")
    assert json.loads(replaced.read_text())["batch_id"].startswith("b_")


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Echo + hold, a 4 s TTL, and a 4 MiB per-file size limit (RLIMIT_FSIZE) on the whole process."""
    from support.server import server_env, start_server

    base = tmp_path_factory.mktemp("small-server")
    (base / "spill").mkdir()
    env = server_env(
        CLEANROOM_BATCH_TTL_S="4",
        CLEANROOM_SPILL_DIR=str(base / "spill"),
        CLEANROOM_TEST_SIGNAL_DIR=str(base),
        CLEANROOM_BATCH_CHUNK_SIZE="2",
    )
    server = start_server(
        base / "data",
        "--models",
        "echo",
        "--model",
        "hold=support.hold_model:hold_factory",
        env=env,
        prefix=["prlimit", f"--fsize={4 << 20}"],
    )
    server.base = base  # type: ignore[attr-defined]
    server.create_tenant("alpha")
    try:
        yield server
    finally:
        (base / "release").touch()
        server.stop()


def test_e2e_cancel_a_running_job(small_server: Any) -> None:
    holding, release = small_server.base / "holding", small_server.base / "release"
    holding.unlink(missing_ok=True)
    release.unlink(missing_ok=True)
    spill_dir = small_server.base / "spill"
    with small_server.client("alpha") as client:
        batches = BatchClient(client)
        try:
            with batches.submit("hold", [save({"input": torch.ones(8)})] * 4) as handle:
                until(holding.exists, timeout_s=20)
                assert batches.cancel(handle.batch_id)["status"] == "cancelled"
                assert open_spill_fds(small_server.pid, spill_dir) == []
                with pytest.raises(ClientError) as caught:
                    batches.fetch(handle)
                assert caught.value.code == "batch_cancelled"
        finally:
            release.touch()
        with batches.submit("echo", [b"still serving"]) as handle:
            batches.wait(handle.batch_id, poll_s=0.1)
            assert [r.output for r in batches.fetch(handle)] == [b"still serving"]


def test_e2e_file_size_limit_while_spilling_fails_cleanly(small_server: Any) -> None:
    """A real EFBIG: the input spill passes the server's 4 MiB RLIMIT_FSIZE."""
    spill_dir = small_server.base / "spill"
    with small_server.client("alpha") as client:
        batches = BatchClient(client)
        with pytest.raises(ClientError) as caught:
            batches.submit("echo", [os.urandom(1 << 20) for _ in range(5)])
        assert caught.value.status == 503 and caught.value.code == "spill_failed"
        assert "EFBIG" in caught.value.message
        assert open_spill_fds(small_server.pid, spill_dir) == [] and list(spill_dir.iterdir()) == []
        with batches.submit("echo", [b"small is fine"]) as handle:
            batches.wait(handle.batch_id, poll_s=0.1)
            assert [r.output for r in batches.fetch(handle)] == [b"small is fine"]


def test_e2e_ttl_expiry_shreds_the_job(small_server: Any) -> None:
    spill_dir = small_server.base / "spill"
    with small_server.client("alpha") as client:
        batches = BatchClient(client)
        with batches.submit("echo", [b"expiring"] * 5) as handle:
            assert batches.wait(handle.batch_id, poll_s=0.1)["status"] == "succeeded"
            assert len(open_spill_fds(small_server.pid, spill_dir)) == 2  # input + results, both nameless
            deadline = time.monotonic() + 15
            while batches.status(handle.batch_id)["status"] != "expired":
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert open_spill_fds(small_server.pid, spill_dir) == []
            with pytest.raises(ClientError) as caught:
                batches.fetch(handle)
            assert caught.value.status == 410 and caught.value.code == "batch_expired"
    assert list(spill_dir.iterdir()) == []


def files_containing(needle: bytes, paths: list[str]) -> list[str]:
    hits = []
    for path in paths:
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):
                continue
            with open(path, "rb") as handle:
                tail = b""
                while chunk := handle.read(1 << 20):
                    if needle in tail + chunk:
                        hits.append(path)
                        break
                    tail = chunk[-len(needle) :]
        except OSError:
            continue
    return hits


def test_e2e_kill_9_mid_job_leaves_nothing_readable(tmp_path: Path) -> None:
    from support.server import server_env, start_server

    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()
    env = server_env(
        CLEANROOM_SPILL_DIR=str(spill_dir),
        CLEANROOM_TEST_SIGNAL_DIR=str(tmp_path),
        CLEANROOM_SPILL_THRESHOLD_BYTES="65536",
        CLEANROOM_BATCH_CHUNK_SIZE="1",
    )
    server = start_server(
        tmp_path / "data", "--models", "echo", "--model", "hold=support.hold_model:hold_factory", env=env
    )
    marker = b"KILL9-" + secrets.token_hex(16).encode()
    tensor = torch.frombuffer(bytearray((marker + b"|") * 20_000), dtype=torch.uint8)
    try:
        server.create_tenant("alpha")
        with server.client("alpha") as client:
            handle = BatchClient(client).submit("hold", [save({"input": tensor})] * 6)  # ~4 MiB, in pieces
            handle.close()
        until(lambda: (tmp_path / "holding").exists(), timeout_s=30)
        fds = [f"/proc/{server.pid}/fd/{n}" for n in os.listdir(f"/proc/{server.pid}/fd")]
        spills = open_spill_fds(server.pid, spill_dir)
        assert len(spills) == 2 and all(s.endswith("(deleted)") for s in spills)
        assert list(spill_dir.iterdir()) == []  # nameless files
        assert files_containing(marker, fds) == []  # the server's open spill files hold ciphertext only
        os.kill(server.pid, signal.SIGKILL)
        server.process.wait(timeout=30)
    finally:
        (tmp_path / "release").touch()
        server.stop()
    assert list(spill_dir.iterdir()) == []
    everything = [str(p) for p in tmp_path.rglob("*") if p.is_file()]
    assert files_containing(marker, everything) == []
    # Positive control: the scan does find the marker when it is on disk in the clear.
    (tmp_path / "control").write_bytes(b"x" * 3_000_000 + marker)
    assert files_containing(marker, [str(tmp_path / "control")]) == [str(tmp_path / "control")]


def test_cli_ticket_round_trip_helpers(tmp_path: Path) -> None:
    from cleanroom.crypto.deferred import ResponseContext
    from cleanroom.memory.secure_buffer import SecureAllocator

    buffer = SecureAllocator().allocate(44)
    buffer.view()[:] = os.urandom(44)
    handle = BatchHandle("b_x", DeferredResponseKey(buffer, ResponseContext(os.urandom(16), b"{}")), url="https://h")
    path = tmp_path / "t"
    handle.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = BatchHandle.load(path)
    assert loaded.to_ticket() == handle.to_ticket()
    for broken in ({}, [], "x", None, {**handle.to_ticket(), "v": 9}, {**handle.to_ticket(), "response_key": "AAAA"}):
        with pytest.raises(ValueError):
            BatchHandle.from_ticket(broken)
    handle.close()
    loaded.close()


def test_cli_is_registered_by_the_module() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import argparse; from cleanroom.batch_cli import register; p = argparse.ArgumentParser(); "
                "s = p.add_subparsers(dest='c'); register(s); print(p.parse_args(['batch', 'fetch', '--ticket', 't']))"
            ),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "batch_command='fetch'" in result.stdout, result.stderr
