"""The server on a real OpenBao Transit master key: rotation under load, and a KMS outage mid-load."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from cleanroom.client import ClientError
from services import OpenBao
from support.server import ServerHandle, server_env, start_server


@pytest.fixture
def vault_server(tmp_path: Path) -> Iterator[tuple[ServerHandle, OpenBao]]:
    bao = OpenBao(tmp_path / "bao")
    bao.start()
    env = server_env(
        CLEANROOM_KMS="vault",
        CLEANROOM_VAULT_ADDR=bao.addr,
        CLEANROOM_VAULT_TOKEN=bao.root_token,
        CLEANROOM_KEY_CACHE_TTL_S="2",
        CLEANROOM_KMS_TIMEOUT_S="1",
    )
    server = start_server(tmp_path / "data", "--models", "echo", tls=False, env=env)
    try:
        server.create_tenant("one")
        server.create_tenant("two")
        yield server, bao
    finally:
        server.stop()
        bao.stop()


class Load:
    """A few clients sending requests until stopped; outcomes counted by status code."""

    def __init__(self, server: ServerHandle, tenants: list[str]) -> None:
        self.outcomes: Counter[str] = Counter()
        self.retry_after_seen = False
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(server, t), daemon=True) for t in tenants]

    def _run(self, server: ServerHandle, tenant: str) -> None:
        with server.client(tenant) as client:
            while not self._stop.is_set():
                try:
                    ok = client.infer("echo", b"payload under load") == b"payload under load"
                    self.outcomes["200" if ok else "wrong-answer"] += 1
                except ClientError as exc:
                    self.outcomes[f"{exc.status} {exc.code}"] += 1
                time.sleep(0.01)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def reset(self) -> Counter[str]:
        snapshot, self.outcomes = self.outcomes, Counter()
        return snapshot


def test_rotation_under_load_then_outage_and_recovery(vault_server) -> None:
    server, bao = vault_server
    data = str(server.data_dir)
    with Load(server, ["one", "two", "one"]) as load:
        time.sleep(1)
        server.cli("keys", "rotate", "--tenant", "one", "--data-dir", data)
        server.cli("keys", "rotate", "--master", "--data-dir", data)
        server.cli("keys", "rotate", "--tenant", "two", "--hpke", "--overlap-s", "600", "--data-dir", data)
        time.sleep(1)
        during_rotation = load.reset()
        assert set(during_rotation) == {"200"} and during_rotation["200"] > 10, during_rotation

        bao.kill()
        time.sleep(5)  # cached keys serve until their 2 s TTL, then the KMS is needed
        during_outage = load.reset()
        assert during_outage["503 kms_unavailable"] > 0, during_outage
        assert not [k for k in during_outage if k.startswith("5") and k != "503 kms_unavailable"], during_outage
        assert all(k in {"200", "503 kms_unavailable"} for k in during_outage), during_outage

        bao.start()
        deadline = time.monotonic() + 30
        while load.outcomes["200"] < 20:
            assert time.monotonic() < deadline, f"service did not recover: {load.outcomes}"
            time.sleep(0.2)
        load.reset()
        time.sleep(1)
        after = load.reset()
        assert set(after) == {"200"}, after
    assert server.healthy()
    with server.http() as http:
        assert 'cleanroom_errors_total{code="kms_unavailable"}' in http.get("/metrics").text
