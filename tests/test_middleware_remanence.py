"""Invariants 1, 7 and 9 through `CleanroomMiddleware`, on a real uvicorn started with `cleanroom exec`.

The app is an ordinary FastAPI app that makes its own copies of the plaintext (JSON parse, `split`,
`upper`, an f-string, the JSON it answers with). The middleware cannot reach those copies; the hardened
allocator of `cleanroom exec` must wipe them when they are freed. So:

- remanence: after sealed requests, an external scan of /proc/PID/mem finds zero copies of the markers;
- control: the scan finds the marker while a request is held inside the handler (else it proves nothing);
- negative control: the same app under plain uvicorn (no `cleanroom exec`) leaves copies the scan finds;
- an app that raises with the plaintext in its exception message: 422 JSON, nothing in the log or memory;
- tamper: every byte of a sealed request flipped, truncations, extensions, replays, another tenant's
  key: always a 4xx with a JSON error, never a 5xx, and the server still answers afterwards.

Markers sit in the middle of long strings: glibc writes free-list pointers over the first 16 bytes of a
freed chunk, which would erase a marker at the very start of a short string by accident.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cleanroom.client import Client, ClientError
from cleanroom.crypto.sealed import CONTENT_TYPE
from services import free_port
from support.memscan import encodings, scan_process
from support.server import server_env

NOTES_APP = '''
"""A plain FastAPI app that copies its input around, wrapped by CleanroomMiddleware."""
import asyncio
import os
from pathlib import Path

from fastapi import FastAPI, Request

from cleanroom.integrations.asgi import CleanroomMiddleware

SIGNALS = Path(os.environ["CR_SIGNALS"])
inner = FastAPI()


@inner.post("/v1/notes")
async def notes(request: Request) -> dict[str, object]:
    document = await request.json()
    text = document["text"]
    words = text.split()
    shouted = text.upper()
    summary = f"note of {len(words)} words: {text}"
    return {"echo": text, "summary": summary, "words": words, "upper_len": len(shouted)}


@inner.post("/v1/hold")
async def hold(request: Request) -> dict[str, object]:
    document = await request.json()
    (SIGNALS / "holding").touch()
    while not (SIGNALS / "release").exists():
        await asyncio.sleep(0.02)
    return {"echo": document["text"]}


@inner.post("/v1/crash")
async def crash(request: Request) -> dict[str, object]:
    document = await request.json()
    known: dict[str, str] = {}
    return {"value": known[document["text"]]}  # KeyError whose message is the plaintext


@inner.get("/open/health")
async def health() -> dict[str, bool]:
    return {"ok": True}


app = CleanroomMiddleware(inner, data_dir=os.environ["CR_DATA"], protected_paths=("/v1/",))
'''

PAD = "lorem ipsum dolor sit amet " * 12


def new_marker() -> str:
    return "crmark" + secrets.token_hex(16)


def note(marker: str, repeat: int = 1) -> bytes:
    """A JSON body with the marker well inside long strings (`repeat` scales it up, e.g. past mmap size)."""
    return json.dumps({"text": f"{PAD}{marker}{PAD} and again {marker} end " * repeat}).encode()


@dataclass
class NotesServer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    signals: Path
    api_keys: dict[str, str]

    @property
    def pid(self) -> int:
        return self.process.pid

    def client(self, tenant: str = "shop") -> Client:
        return Client(self.url, api_key=self.api_keys[tenant])

    def log_text(self) -> bytes:
        return self.log_path.read_bytes()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()


def create_tenants(data_dir: Path, *names: str) -> dict[str, str]:
    from cleanroom.config import Settings
    from cleanroom.runtime.models import ModelRegistry
    from cleanroom.server.services import build_services
    from conftest import MemoryAudit

    services = build_services(Settings(data_dir=data_dir), audit=MemoryAudit(), models=ModelRegistry({}))
    try:
        return {name: services.tenants.create(name).api_key for name in names}
    finally:
        services.close()


def start_notes_server(base: Path, *, hardened: bool) -> NotesServer:
    base.mkdir(parents=True, exist_ok=True)
    (base / "notes_app.py").write_text(NOTES_APP)
    signals = base / "signals"
    signals.mkdir()
    api_keys = create_tenants(base / "data", "shop", "rival")
    port = free_port()
    env = server_env(CR_DATA=str(base / "data"), CR_SIGNALS=str(signals))
    env["PYTHONPATH"] = os.pathsep.join([str(base), env["PYTHONPATH"]])
    env.pop("PYTHONMALLOC", None)
    env.pop("GLIBC_TUNABLES", None)
    uvicorn = [sys.executable, "-m", "uvicorn", "notes_app:app", "--host", "127.0.0.1", "--port", str(port)]
    command = [sys.executable, "-m", "cleanroom", "exec", "--", *uvicorn] if hardened else uvicorn
    log_path = base / "server.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, env=env, cwd=base, stdout=log, stderr=subprocess.STDOUT)
    server = NotesServer(f"http://127.0.0.1:{port}", process, log_path, signals, api_keys)
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{server.url}/open/health", timeout=2)
            break
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                pytest.fail(f"uvicorn did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
    environ = Path(f"/proc/{process.pid}/environ").read_bytes().split(b"\0")
    assert (b"PYTHONMALLOC=malloc" in environ) == hardened, "the server's allocator is not what the test assumes"
    return server


@pytest.fixture(scope="module")
def hardened_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotesServer]:
    server = start_notes_server(tmp_path_factory.mktemp("notes-hardened"), hardened=True)
    try:
        yield server
    finally:
        server.stop()


def wait_for(path: Path, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def test_no_copies_left_after_requests_under_cleanroom_exec(hardened_server: NotesServer) -> None:
    server = hardened_server
    hold_marker, small, medium, large, crash_marker = (new_marker() for _ in range(5))

    # Control first: a request held inside the handler, after the app parsed it, must be visible.
    result: dict[str, Any] = {}

    def held_call() -> None:
        with server.client() as client:
            result["out"] = client.call("/v1/hold", note(hold_marker))

    worker = threading.Thread(target=held_call)
    worker.start()
    try:
        wait_for(server.signals / "holding")
        held_hits = scan_process(server.pid, encodings(hold_marker))
    finally:
        (server.signals / "release").touch()
        worker.join(60)
    assert sum(held_hits.values()) > 0, "control failed: the scan cannot see a request held in the handler"
    assert hold_marker in json.loads(result.pop("out"))["echo"]

    with server.client() as client:
        # Sizes: tcache/fastbin range, small bins, and past glibc's mmap threshold (128 KiB).
        for marker, repeat in ((small, 1), (medium, 12), (large, 300)):
            for _ in range(3):
                answer = json.loads(client.call("/v1/notes", note(marker, repeat)))
                assert marker in answer["echo"] and marker in answer["summary"]
        with pytest.raises(ClientError) as raised:
            client.call("/v1/crash", note(crash_marker))
    assert raised.value.status == 422 and raised.value.code == "app_rejected_input"

    time.sleep(0.3)
    markers = (hold_marker, small, medium, large, crash_marker)
    needles = [n for m in markers for n in encodings(m)] + [m.upper().encode() for m in markers]
    hits = scan_process(server.pid, needles)
    assert hits == {}, f"plaintext left in the server's memory after the requests: {hits}"
    assert not any(n in server.log_text() for n in needles), "plaintext reached the server log"


def test_without_cleanroom_exec_the_same_app_leaves_copies(tmp_path: Path) -> None:
    """Negative control: if this ever finds nothing, the test above has stopped proving anything."""
    server = start_notes_server(tmp_path / "plain", hardened=False)
    try:
        marker = new_marker()
        with server.client() as client:
            for _ in range(3):
                assert marker in json.loads(client.call("/v1/notes", note(marker)))["echo"]
        time.sleep(0.3)
        hits = scan_process(server.pid, encodings(marker))
        assert sum(hits.values()) > 0, "an unhardened server left no copies: the scan or the app changed"
    finally:
        server.stop()


# --- tamper ---------------------------------------------------------------------------------------
def post_sealed(http: httpx.Client, path: str, body: bytes, api_key: str) -> httpx.Response:
    return http.post(path, content=body, headers={"Content-Type": CONTENT_TYPE, "Authorization": f"Bearer {api_key}"})


def assert_json_4xx(response: httpx.Response, what: str) -> str:
    assert 400 <= response.status_code < 500, f"{what}: got {response.status_code} {response.text[:200]}"
    error = response.json()["error"]
    assert isinstance(error["code"], str) and error["code"] and isinstance(error["message"], str), what
    return str(error["code"])


def test_tampered_requests_get_json_4xx_never_5xx(hardened_server: NotesServer) -> None:
    server = hardened_server
    api_key = server.api_keys["shop"]
    payload = note(new_marker())
    codes: dict[str, int] = {}
    with server.client() as client, httpx.Client(base_url=server.url, timeout=30) as http:
        length = len(client.seal_request("", payload, path="/v1/notes").body)
        # Every byte of the header (magic, suite, key id, HPKE blob) and a stride through the payload and
        # tag; each flip on a freshly sealed request, so the replay cache cannot be what refuses it.
        positions = sorted(set(range(min(length, 400))) | set(range(400, length, 37)) | {length - 1})
        for position in positions:
            body = bytearray(client.seal_request("", payload, path="/v1/notes").body)
            body[position] ^= 0x01 << (position % 8)
            code = assert_json_4xx(post_sealed(http, "/v1/notes", bytes(body), api_key), f"flip at {position}")
            codes[code] = codes.get(code, 0) + 1
        for cut in (0, 1, 4, 6, 20, 120, length // 2, length - 17, length - 1):
            body = client.seal_request("", payload, path="/v1/notes").body[:cut]
            assert_json_4xx(post_sealed(http, "/v1/notes", body, api_key), f"truncated to {cut}")
        extended = client.seal_request("", payload, path="/v1/notes").body + b"\x00"
        assert_json_4xx(post_sealed(http, "/v1/notes", extended, api_key), "one byte appended")

        sealed = client.seal_request("", payload, path="/v1/notes")
        assert post_sealed(http, "/v1/notes", sealed.body, api_key).status_code == 200
        replayed = post_sealed(http, "/v1/notes", sealed.body, api_key)
        assert assert_json_4xx(replayed, "replay") == "replayed_request"
        other_path = client.seal_request("", payload, path="/v1/hold").body
        assert assert_json_4xx(post_sealed(http, "/v1/notes", other_path, api_key), "path") == "context_mismatch"
        rival_key = server.api_keys["rival"]
        foreign = client.seal_request("", payload, path="/v1/notes").body  # sealed to shop, sent as rival
        assert_json_4xx(post_sealed(http, "/v1/notes", foreign, rival_key), "another tenant's API key")
        assert_json_4xx(post_sealed(http, "/v1/notes", foreign, "cr_" + "x" * 36), "unknown API key")
        plain = http.post(
            "/v1/notes",
            content=payload,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"},
        )
        assert assert_json_4xx(plain, "unsealed body") == "unsupported_media_type"
        assert_json_4xx(http.post("/v1/notes", content=b"", headers={"Content-Type": CONTENT_TYPE}), "no API key")

        # No partial state: the server still answers a good request.
        marker = new_marker()
        assert marker in json.loads(client.call("/v1/notes", note(marker)))["echo"]
    assert server.process.poll() is None
    assert set(codes) <= {
        "invalid_sealed_message",
        "decryption_failed",
        "unknown_key_id",
        "bad_request",
        "context_mismatch",
        "stale_request",
        "key_unavailable",
    }, codes
    print(f"\ntamper: {len(positions)} flipped positions -> {codes}")
