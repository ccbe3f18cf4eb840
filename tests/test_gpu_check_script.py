"""`benchmarks/gpu/check.sh` is run on a GPU host in one go, with no second chance: its plumbing (steps,
exit status, the summary JSON the closing note quotes) is exercised here on CPU, so a session that gets a
GPU finds a script that works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from support.server import REPO


def run_check(out: Path, device: str, **extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """check.sh with tiny sizes and no end-to-end step; returns the process and its check.json."""
    # CHECK_WHEELS points at an empty folder: wheels fetched for a GPU run stay out of this CPU test.
    # The offline step runs one quick file: test_kernels (emulated tiles, ~20 s) runs in the suite anyway.
    env = {**os.environ, "OUT": str(out), "CHECK_DEVICE": device, "CHECK_SIZES": "1M", "CHECK_E2E": "0"}
    env |= {"CHECK_OFFLINE_TESTS": "tests/test_scrub_snapshot.py", **extra}
    env |= {"PYTHON": sys.executable, "CHECK_WHEELS": str(out / "no-wheels")}
    command = ["bash", "benchmarks/gpu/check.sh"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    return done, json.loads((out / "check.json").read_text())


def test_check_script_runs_end_to_end_on_cpu(tmp_path: Path) -> None:
    done, summary = run_check(tmp_path, "cpu")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "CHECK PASSED" in done.stdout
    expected_steps = {"wheels": "skipped", "offline_tests": 0, "gpu_tests": 0, "bench": 0, "e2e": "skipped"}
    assert summary["steps"] == expected_steps
    assert summary["goals"]["leaked_bytes_is_0"] is True
    assert summary["bench"]["device"] == "cpu" and summary["bench"]["leaked_bytes"] == 0
    assert summary["goals"]["verify_ge_0.8x_copy"] is None  # no copy baseline without a GPU: not a zero
    for name in ("check.log", "device.json", "bench.json", "pytest-offline.xml"):
        assert (tmp_path / name).stat().st_size > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU host the CUDA bench succeeds")
def test_check_script_fails_when_a_step_fails(tmp_path: Path) -> None:
    # A CPU host asked for the CUDA bench: that step fails, and so must the whole check.
    done, summary = run_check(tmp_path, "cuda")
    assert done.returncode == 1, done.stdout[-3000:]
    assert "CHECK FAILED" in done.stdout
    assert summary["steps"]["bench"] != 0


def test_check_script_stays_within_its_time_budget(tmp_path: Path) -> None:
    # DESIGN §6: under 5 minutes on the device. The step timeouts used to add up to 10 minutes; now every
    # step gets min(its cap, what is left of CHECK_BUDGET_S), and a step with under 10 s left is not started.
    t0 = time.monotonic()
    done, summary = run_check(tmp_path, "cpu", CHECK_BUDGET_S="12")
    assert time.monotonic() - t0 < 60
    assert done.returncode == 1 and "CHECK FAILED" in done.stdout, done.stdout[-3000:]
    assert summary["steps"]["bench"] == 124 and summary["steps"]["gpu_tests"] == 124
    assert "budget is spent" in done.stdout
