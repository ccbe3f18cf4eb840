"""An unprivileged deployment: no CAP_IPC_LOCK and RLIMIT_MEMLOCK = 8 MiB. Locking degrades, is reported
at start-up and in metrics, and never fails a request."""

from __future__ import annotations

import os
import re
from pathlib import Path

from support.server import start_server

UNPRIVILEGED = [
    "setpriv",
    "--bounding-set",
    "-ipc_lock",
    "--inh-caps",
    "-ipc_lock",
    "prlimit",
    "--memlock=8388608:8388608",
]


def test_requests_past_the_memlock_limit_still_succeed(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", "--models", "echo", tls=False, prefix=UNPRIVILEGED)
    try:
        server.create_tenant("small")
        payload = os.urandom(12 * 1024 * 1024)  # plaintext + tensor copy: far past 8 MiB of locked memory
        with server.client("small") as client:
            assert client.infer("echo", payload) == payload
            assert client.infer("echo", b"small one") == b"small one"
        with server.http() as http:
            metrics = http.get("/metrics").text
            ready = http.get("/readyz").json()
        failures = float(re.search(r"^cleanroom_mlock_failures (\S+)$", metrics, re.M).group(1))  # type: ignore[union-attr]
        assert failures >= 1
        assert "limited to 8388608 bytes" in ready["memory"]["mlock"]
        assert b"mlock: limited to 8388608 bytes" in server.log_path.read_bytes()
    finally:
        server.stop()
