"""`--torch-threads` / CLEANROOM_TORCH_THREADS: the thread count reaches torch whether or not it is loaded yet,
and reaches the re-exec'd server through its environment."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from support.server import REPO, server_env, start_server

SRC = str(REPO / "src")


def run_python(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, "PYTHONPATH": SRC, **env},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("torch_first", [True, False], ids=["torch-already-loaded", "torch-loaded-after"])
def test_limit_reaches_torch(torch_first: bool) -> None:
    out = run_python(
        ("import torch\n" if torch_first else "")
        + "import os\nfrom cleanroom.runtime.torch_threads import limit_torch_threads\n"
        + "limit_torch_threads(1)\nimport torch\n"
        + "print(torch.get_num_threads(), os.environ['OMP_NUM_THREADS'], os.environ['MKL_NUM_THREADS'])\n"
    )
    assert out == "1 1 1"


def test_control_torch_uses_more_than_one_thread_by_default() -> None:
    """Without the limit torch takes one thread per core: else the test above proves nothing (2+ cores)."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: torch's default is already 1")
    assert int(run_python("import torch; print(torch.get_num_threads())")) > 1


def test_zero_threads_is_refused() -> None:
    from cleanroom.runtime.torch_threads import limit_torch_threads

    with pytest.raises(ValueError, match="at least 1"):
        limit_torch_threads(0)


def test_serve_rejects_a_bad_value_with_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cleanroom",
            "serve",
            "--data-dir",
            str(tmp_path / "d"),
            "--torch-threads",
            "0",
            "--no-tls",
            "--host",
            "127.0.0.1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=server_env(),
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 2
    assert "torch_threads" in result.stderr and "greater than or equal to 1" in result.stderr


def test_serve_carries_the_setting_into_the_running_server(tmp_path: Path) -> None:
    env = {k: v for k, v in server_env().items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    server = start_server(tmp_path / "data", "--models", "echo", "--torch-threads", "1", tls=False, env=env)
    try:
        environ = Path(f"/proc/{server.pid}/environ").read_bytes().split(b"\0")
        assert b"OMP_NUM_THREADS=1" in environ and b"MKL_NUM_THREADS=1" in environ
        assert server.healthy()
    finally:
        server.stop()
