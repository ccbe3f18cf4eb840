"""The README's first command, `make serve`, run from a fresh clone of this repository.

`make test` itself is what CI runs on a clean clone (so CI proves the test recipe installs from nothing).
This test proves the serve recipe: it clones the committed tree, lets the Makefile create its venv and
install the package (dependencies come from this environment through a .pth file so the test does not
download gigabytes), and checks that the server it starts answers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def test_make_serve_from_a_fresh_clone(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "_inherit_test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    data_dir = tmp_path / "data"
    log = open(tmp_path / "make-serve.log", "wb")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [
            "make",
            "-C",
            str(clone),
            "serve",
            f"VENV={venv}",
            f"DATA_DIR={data_dir}",
            "SERVE_ARGS=--port 0 --no-tls --models echo",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        state = data_dir / "server.json"
        deadline = time.monotonic() + 240
        while not state.exists():
            assert process.poll() is None, (tmp_path / "make-serve.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "make serve did not start a server in time"
            time.sleep(0.5)
        time.sleep(0.2)
        url = json.loads(state.read_text())["url"]
        assert httpx.get(f"{url}/healthz", timeout=10).json() == {"status": "ok"}
        assert (venv / "bin" / "cleanroom").exists()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        log.close()
