"""`CleanroomTritonModel` on a real Triton Inference Server (2.51, CPU), and against a fake `pb_utils`.

The real server comes from `examples/triton/setup_tritonserver.sh` (the nvidia-pytriton wheel unpacked
outside the venv; the fixture runs it, idempotent) and is started with `cleanroom exec`, serving two models
through the python backend: `echo` (built-in) and `hold` (a user model that waits on a file: the
remanence control). Tested through Triton's HTTP protocol: sealed round trips for two tenants, every
refusal as a Triton error carrying cleanroom's JSON error (never a 500), and an external scan of
tritonserver and its stub processes that finds the marker while a request is held and zero copies after.

The fake `pb_utils` tests cover what a real server cannot easily provoke (an unexpected exception, a
batch of requests from different tenants in one `execute`).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from safetensors.torch import load, save

from cleanroom.client import Client
from cleanroom.integrations.triton import (
    CleanroomTritonModel,
    config_parameters,
    decode_infer_response,
    encode_infer_request,
)
from services import free_port
from support.fake_triton import FAKE_PB_UTILS, FakeRequest, one
from support.memscan import encodings, scan_process
from support.server import REPO

SETUP_SCRIPT = REPO / "examples" / "triton" / "setup_tritonserver.sh"

CONFIG = """
name: "{name}"
backend: "python"
max_batch_size: 0
input [ {{ name: "SEALED_REQUEST" data_type: TYPE_STRING dims: [ 1 ] }} ]
output [ {{ name: "SEALED_RESPONSE" data_type: TYPE_STRING dims: [ 1 ] }} ]
instance_group [ {{ kind: KIND_CPU count: 1 }} ]
parameters {{ key: "cleanroom_data_dir" value {{ string_value: "{data_dir}" }} }}
{extra}
"""
MODEL_PY = (REPO / "examples" / "triton" / "model_repository" / "echo" / "1" / "model.py").read_text()


def new_marker() -> str:
    return "crmark" + secrets.token_hex(16)


def marker_payload(marker: str, size: int = 4096) -> bytes:
    raw = f"padding {marker} more padding ".encode()
    return (raw * (size // len(raw) + 1))[:size]


# --- the real server --------------------------------------------------------------------------------
@dataclass
class Triton:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    signals: Path
    tenants: dict[str, Any]

    def client(self, tenant: str) -> Client:
        created = self.tenants[tenant]
        return Client(self.url, api_key=created.api_key, public_key=created.public_key)

    def infer(self, http: httpx.Client, model: str, sealed_body: bytes, api_key: str) -> httpx.Response:
        body, headers = encode_infer_request(sealed_body, api_key)
        return http.post(f"{self.url}/v2/models/{model}/infer", content=body, headers=headers)

    def call(self, tenant: str, model: str, payload: bytes) -> bytes:
        with self.client(tenant) as client, httpx.Client(timeout=60) as http:
            sealed = client.seal_request(model, payload)
            response = self.infer(http, model, sealed.body, self.tenants[tenant].api_key)
            assert response.status_code == 200, response.text[:500]
            return sealed.open_response(decode_infer_response(response.content, response.headers))

    def pids(self) -> list[int]:
        """tritonserver and its python backend stubs (where the plaintext lives)."""
        found = [self.process.pid]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[1]) == self.process.pid:
                    found.append(int(entry.name))
        return found


def scan(pids: list[int], needles: list[bytes]) -> dict[int, dict[str, int]]:
    """`scan_process` over every process, timed: the stubs map ~1.5 GB each (torch's libraries)."""
    return {pid: scan_process(pid, needles) for pid in pids}


def stub_pid(triton: Triton, model: str) -> int:
    for pid in triton.pids()[1:]:
        if f"/{model}/1/model.py".encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
    raise AssertionError(f"no stub process for {model}")


def triton_home() -> Path:
    try:
        out = subprocess.run(
            ["bash", str(SETUP_SCRIPT)],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "PYTHON": sys.executable},
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{SETUP_SCRIPT} did not finish in 10 minutes")
    if out.returncode != 0:
        pytest.fail(f"could not install Triton with {SETUP_SCRIPT}:\n{out.stderr[-3000:]}")
    return Path(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Triton]:
    from cleanroom.config import Settings
    from cleanroom.runtime.models import ModelRegistry
    from cleanroom.server.services import build_services
    from conftest import MemoryAudit

    home = triton_home()
    base = tmp_path_factory.mktemp("triton")
    data_dir, signals, repo = base / "data", base / "signals", base / "models"
    signals.mkdir()
    services = build_services(Settings(data_dir=data_dir), audit=MemoryAudit(), models=ModelRegistry({}))
    try:
        tenants = {
            "shop": services.tenants.create("shop"),
            "rival": services.tenants.create("rival"),
            "fenced": services.tenants.create("fenced", allow=["10.1.2.0/24"]),
        }
    finally:
        services.close()
    hold_extra = 'parameters { key: "cleanroom_user_model" value { string_value: "support.hold_model:hold_factory" } }'
    for name, extra in (("echo", ""), ("hold", hold_extra)):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(CONFIG.format(name=name, data_dir=data_dir, extra=extra))
        (repo / name / "1" / "model.py").write_text(MODEL_PY)
    port = free_port()
    site = sysconfig.get_paths()["purelib"]
    pythonpath = os.pathsep.join([str(home / "pydeps"), str(REPO / "src"), str(REPO / "tests"), site])
    command = [
        sys.executable,
        "-m",
        "cleanroom",
        "exec",
        "--",
        "env",
        f"LD_LIBRARY_PATH={home / 'lib'}",
        f"CLEANROOM_TRITON_PYTHONPATH={pythonpath}",
        str(home / "bin" / "tritonserver"),
        f"--model-repository={repo}",
        f"--backend-directory={home / 'backends'}",
        f"--http-port={port}",
        "--http-address=127.0.0.1",
        "--allow-grpc=false",
        "--allow-metrics=false",
        "--exit-timeout-secs=5",
        "--pinned-memory-pool-byte-size=0",
    ]
    env = {**os.environ, "CLEANROOM_TEST_SIGNAL_DIR": str(signals)}
    env.pop("PYTHONPATH", None)
    log_path = base / "triton.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=base)
    server = Triton(f"http://127.0.0.1:{port}", process, log_path, signals, tenants)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{server.url}/v2/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"tritonserver did not become ready:\n{log_path.read_text(errors='replace')[-4000:]}")
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()


def error_code(response: httpx.Response) -> str:
    assert 400 <= response.status_code < 500, f"got {response.status_code}: {response.text[:300]}"
    return str(json.loads(response.json()["error"])["error"]["code"])


def test_sealed_round_trips_on_a_real_triton(triton: Triton) -> None:
    for tenant in ("shop", "rival"):
        payload = marker_payload(new_marker(), 2048)
        assert triton.call(tenant, "echo", payload) == payload
    tensor = torch.arange(64, dtype=torch.uint8)
    (triton.signals / "release").touch()  # `hold` answers at once
    try:
        answer = load(triton.call("shop", "hold", save({"input": tensor})))
    finally:
        (triton.signals / "release").unlink()
        (triton.signals / "holding").unlink(missing_ok=True)
    assert torch.equal(answer["output"], tensor)
    # The stubs inherit `cleanroom exec`'s environment; glibc applies its tunables (freed chunks wiped),
    # but the stub's interpreter is isolated and keeps pymalloc (see docs/embedding.md).
    stub_environ = [Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") for pid in triton.pids()[1:]]
    assert len(stub_environ) == 2
    assert all(any(v.startswith(b"GLIBC_TUNABLES=") and b"perturb" in v for v in e) for e in stub_environ)


def test_refusals_are_triton_errors_with_cleanroom_json_never_500(triton: Triton) -> None:
    shop = triton.tenants["shop"]
    payload = marker_payload(new_marker(), 512)
    with triton.client("shop") as client, httpx.Client(timeout=60) as http:
        length = len(client.seal_request("echo", payload).body)
        codes = set()
        for position in (0, 5, 8, 40, 120, 200, length - 100, length - 1):
            body = bytearray(client.seal_request("echo", payload).body)
            body[position] ^= 0x20
            codes.add(error_code(triton.infer(http, "echo", bytes(body), shop.api_key)))
        assert codes <= {"invalid_sealed_message", "decryption_failed", "unknown_key_id"} and codes
        sealed = client.seal_request("echo", payload).body
        assert error_code(triton.infer(http, "echo", sealed[:50], shop.api_key)) == "invalid_sealed_message"
        assert error_code(triton.infer(http, "echo", sealed, "")) == "unauthenticated"
        assert error_code(triton.infer(http, "echo", sealed, "cr_" + "a" * 36)) == "unauthenticated"
        foreign = triton.tenants["rival"].api_key
        assert error_code(triton.infer(http, "echo", sealed, foreign)) in {"unknown_key_id", "context_mismatch"}
        for_hold = client.seal_request("hold", payload).body
        assert error_code(triton.infer(http, "echo", for_hold, shop.api_key)) == "context_mismatch"
        assert triton.infer(http, "echo", sealed, shop.api_key).status_code == 200
        assert error_code(triton.infer(http, "echo", sealed, shop.api_key)) == "replayed_request"
    with triton.client("fenced") as client, httpx.Client(timeout=60) as http:
        body = client.seal_request("echo", payload).body
        assert error_code(triton.infer(http, "echo", body, triton.tenants["fenced"].api_key)) == "address_unknown"
    assert triton.call("shop", "echo", payload) == payload  # still serving


def test_no_plaintext_left_in_triton_or_its_stubs(triton: Triton) -> None:
    hold_marker, echo_marker = new_marker(), new_marker()
    result: dict[str, bytes] = {}

    def held_call() -> None:
        tensor = torch.frombuffer(bytearray(marker_payload(hold_marker, 8192)), dtype=torch.uint8)
        result["out"] = triton.call("shop", "hold", save({"input": tensor}))

    worker = threading.Thread(target=held_call)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while not (triton.signals / "holding").exists():
            assert time.monotonic() < deadline, "the hold model never started"
            time.sleep(0.02)
        held = sum(scan_process(stub_pid(triton, "hold"), [hold_marker.encode()]).values())
    finally:
        (triton.signals / "release").touch()
        worker.join(60)
        (triton.signals / "release").unlink()
        (triton.signals / "holding").unlink(missing_ok=True)
    assert held > 0, "control failed: the scan cannot see a request held inside the model"
    assert hold_marker.encode() in result.pop("out")
    for size in (600, 20_000, 300_000):
        payload = marker_payload(echo_marker, size)
        assert triton.call("shop", "echo", payload) == payload
    del payload
    time.sleep(0.3)
    needles = encodings(hold_marker) + encodings(echo_marker)
    started = time.monotonic()
    hits = scan(triton.pids(), needles)
    print(f"\nscan of {len(hits)} Triton processes: {time.monotonic() - started:.1f} s")
    assert all(h == {} for h in hits.values()), f"plaintext left in Triton's processes: {hits}"
    assert not any(n in triton.log_path.read_bytes() for n in needles)


# --- fake pb_utils: no server -----------------------------------------------------------------------
@pytest.fixture
def fake_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[CleanroomTritonModel, dict[str, Any]]]:
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", FAKE_PB_UTILS)
    monkeypatch.setenv("CLEANROOM_DATA_DIR", str(tmp_path / "data"))
    model = CleanroomTritonModel()
    config = {"name": "echo", "parameters": {"cleanroom_model": {"string_value": "echo"}}}
    model.initialize({"model_config": json.dumps(config), "model_name": "echo"})
    tenants = {name: model.services.tenants.create(name) for name in ("shop", "rival")}
    yield model, tenants
    model.finalize()


def test_fake_pb_utils_batch_of_two_tenants_and_errors(fake_model: tuple[CleanroomTritonModel, dict[str, Any]]) -> None:
    model, tenants = fake_model
    sealed = {}
    requests = []
    for name in ("shop", "rival"):
        client = Client("http://unused", api_key=tenants[name].api_key, public_key=tenants[name].public_key)
        sealed[name] = client.seal_request("echo", f"hello {name}".encode())
        requests.append(
            FakeRequest({"SEALED_REQUEST": one(sealed[name].body)}, {"cleanroom_api_key": tenants[name].api_key})
        )
        client.close()
    requests.append(FakeRequest({}, {"cleanroom_api_key": tenants["shop"].api_key}))  # no input
    requests.append(
        FakeRequest(
            {"SEALED_REQUEST": np.array([b"a", b"b"], dtype=np.object_)}, {"cleanroom_api_key": tenants["shop"].api_key}
        )
    )  # two elements
    requests.append(FakeRequest({"SEALED_REQUEST": one(b"x")}, {}))  # no API key
    responses = model.execute(requests)
    assert len(responses) == len(requests)
    for name, response in zip(("shop", "rival"), responses[:2], strict=True):
        assert response.error is None
        assert sealed[name].open_response(response.output_tensors[0].as_numpy()[0]) == f"hello {name}".encode()
    codes = [json.loads(r.error.message)["error"]["code"] for r in responses[2:]]
    assert codes == ["missing_input", "invalid_input", "unauthenticated"]
    assert all(r.error.code == "INVALID_ARG" for r in responses[2:])


def test_fake_pb_utils_unexpected_exception_is_a_bare_internal_error(
    fake_model: tuple[CleanroomTritonModel, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tenants = fake_model
    secret = new_marker()

    def explode(call: Any, body: Any) -> bytearray:
        raise RuntimeError(f"model exploded on {secret}")

    monkeypatch.setattr(model.services.runtime, "handle", explode)
    client = Client("http://unused", api_key=tenants["shop"].api_key, public_key=tenants["shop"].public_key)
    request = FakeRequest(
        {"SEALED_REQUEST": one(client.seal_request("echo", b"x").body)}, {"cleanroom_api_key": tenants["shop"].api_key}
    )
    client.close()
    [response] = model.execute([request])
    assert response.error.code == "INTERNAL" and secret not in response.error.message
    assert json.loads(response.error.message)["error"]["code"] == "internal_error"


def test_client_side_protocol_helpers_round_trip() -> None:
    body, headers = encode_infer_request(b"\x00sealed\xff", "cr_key")
    header_length = int(headers["Inference-Header-Content-Length"])
    document = json.loads(body[:header_length])
    assert document["parameters"] == {"cleanroom_api_key": "cr_key"}
    assert body[header_length:] == (8).to_bytes(4, "little") + b"\x00sealed\xff"
    answer = json.dumps({"outputs": [{"name": "SEALED_RESPONSE", "parameters": {"binary_data_size": 7}}]}).encode()
    content = answer + (3).to_bytes(4, "little") + b"abc"
    assert decode_infer_response(content, {"Inference-Header-Content-Length": str(len(answer))}) == b"abc"
    assert config_parameters({"parameters": {"a": {"string_value": "b"}}}) == {"a": "b"}
