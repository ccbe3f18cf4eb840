"""Start a real `cleanroom serve` subprocess for tests and talk to it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ServerHandle:
    url: str
    pid: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes]
    cert: str | None
    tenants: dict[str, dict[str, Any]] = field(default_factory=dict)

    def http(self, **kwargs: Any) -> httpx.Client:
        import ssl

        verify: Any = ssl.create_default_context(cafile=self.cert) if self.cert else True
        return httpx.Client(base_url=self.url, verify=verify, timeout=120, **kwargs)

    def client(self, tenant: str, **kwargs: Any) -> Any:
        from cleanroom.client import Client

        return Client(self.url, api_key=self.tenants[tenant]["api_key"], verify=self.cert or True, **kwargs)

    def cli(self, *args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        result = subprocess.run(
            [sys.executable, "-m", "cleanroom", *args],
            input=input,
            capture_output=True,
            cwd=REPO,
            timeout=120,
            env=server_env(),
        )
        if check and result.returncode != 0:
            raise AssertionError(f"cleanroom {' '.join(args)} failed: {result.stderr.decode()[-2000:]}")
        return result

    def create_tenant(self, name: str) -> dict[str, Any]:
        """`cleanroom tenant create NAME --json`, without the subprocess when a server is live.

        Against a live server the CLI makes one admin API call (cli_tenant.py: `AdminAPI(state).request(
        "POST", "/v1/admin/tenants", ...)` with its defaults) and prints the answer; that same call is made
        here in-process, which saves the CLI's start-up (~0.6 s, ~50 tenants in a suite run). With no live
        server (server.json hidden or gone) the CLI itself runs, on the data dir, as before. The CLI
        command is still tested as such where it is the subject (test_cli, test_observability_redteam)."""
        from cleanroom.admin_client import AdminAPI, running_server

        state = running_server(self.data_dir)
        if state is None:
            out = self.cli("tenant", "create", name, "--data-dir", str(self.data_dir), "--json")
            self.tenants[name] = json.loads(out.stdout)
            return self.tenants[name]
        api = AdminAPI(state)
        try:
            created = api.request("POST", "/v1/admin/tenants", json={"name": name, "weight": 1.0, "allow": []})
        finally:
            api.close()
        self.tenants[name] = dict(created)
        return self.tenants[name]

    def healthy(self) -> bool:
        with self.http() as http:
            return http.get("/healthz").status_code == 200

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait()


def server_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests"), env.get("PYTHONPATH", "")])
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.update(extra)
    return env


def run_cli(
    *args: str, input: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """`python -m cleanroom ARGS...` from the repository root, with the test environment."""
    return subprocess.run(
        [sys.executable, "-m", "cleanroom", *args],
        input=input,
        capture_output=True,
        cwd=REPO,
        timeout=120,
        env=env or server_env(),
    )


def start_server(
    data_dir: Path,
    *args: str,
    env: dict[str, str] | None = None,
    tls: bool = True,
    timeout_s: float = 90,
    prefix: list[str] | None = None,
) -> ServerHandle:
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / f"{data_dir.name}-server.log"
    state = data_dir / "server.json"
    state.unlink(missing_ok=True)
    command = [
        *(prefix or []),
        sys.executable,
        "-m",
        "cleanroom",
        "serve",
        "--data-dir",
        str(data_dir),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        *([] if tls else ["--no-tls"]),
        *args,
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env or server_env())
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited with {process.returncode}:\n{log_path.read_text()[-4000:]}")
        if state.exists():
            try:
                info = json.loads(state.read_text())
                break
            except ValueError:
                pass
        time.sleep(0.1)
    else:
        process.kill()
        raise AssertionError(f"server did not start in {timeout_s} s:\n{log_path.read_text()[-4000:]}")
    return ServerHandle(
        url=info["url"],
        pid=info["pid"],
        data_dir=data_dir,
        log_path=log_path,
        process=process,
        cert=info.get("tls_cert"),
    )
