"""`cleanroom bench scrub` on the CPU: small sizes, the JSON contract, the plot, argument errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from cleanroom.bench.scrub import PATTERNS, human_size, parse_size, plot, resolve_device, run_bench
from cleanroom.cli import main

REQUIRED_KEYS = {
    "device",
    "leaked_bytes",
    "scrub_bytes_per_s",
    "verify_bytes_per_s",
    "baseline_bytes_per_s",
    "switch_latency_s",
}
ROW_KEYS = {
    "size_bytes",
    "pattern",
    "scrub_bytes_per_s",
    "verify_bytes_per_s",
    "baseline_bytes_per_s",
    "switch_latency_s",
    "leaked_bytes",
    "scrub_vs_baseline",
}


@pytest.fixture(scope="module")
def cpu_result() -> dict[str, object]:
    return run_bench("cpu", [256 << 10, 2 << 20], PATTERNS, repeats=3, seed=7)


def test_json_keys_and_rows(cpu_result: dict[str, object]) -> None:
    assert set(cpu_result) >= REQUIRED_KEYS
    assert cpu_result["device"] == "cpu" and cpu_result["baseline"] == "numpy_memset"
    rows = cpu_result["rows"]
    assert isinstance(rows, list) and len(rows) == 4
    assert {(r["size_bytes"], r["pattern"]) for r in rows} == {(s, p) for s in (256 << 10, 2 << 20) for p in PATTERNS}
    for r in rows:
        assert set(r) >= ROW_KEYS
        assert r["scrub_bytes_per_s"] > 0 and r["verify_bytes_per_s"] > 0 and r["baseline_bytes_per_s"] > 0
        assert r["copy_bytes_per_s"] is None  # GPU only
    json.dumps(cpu_result)


def test_no_leak_on_cpu(cpu_result: dict[str, object]) -> None:
    assert cpu_result["leaked_bytes"] == 0


def test_summary_is_largest_interleaved_row(cpu_result: dict[str, object]) -> None:
    assert cpu_result["summary_row"] == {"size_bytes": 2 << 20, "pattern": "interleaved"}


def test_cli_writes_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib", reason="the plot extra is not installed")
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    rc = main(
        [
            "bench",
            "scrub",
            "--device",
            "cpu",
            "--sizes",
            "128K,1M",
            "--repeats",
            "2",
            "--json",
            str(out),
            "--plot",
            str(png),
        ]
    )
    assert rc == 0
    result = json.loads(out.read_text())
    assert set(result) >= REQUIRED_KEYS and len(result["rows"]) == 4
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "scrub bench" in capsys.readouterr().out


def test_plot_without_matplotlib_is_a_clear_error(
    cpu_result: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    with pytest.raises(RuntimeError, match=r"cleanroom\[plot\]"):
        plot(cpu_result, tmp_path / "x.png")


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--device", "cpu", "--sizes", "lots"], "not a size: 'lots'"),
        (["--device", "cpu", "--sizes", "1M", "--patterns", "swiss"], "swiss"),
        (["--device", "tpu"], "--device must be auto, cpu, cuda or cuda:N, not 'tpu'"),
        (["--device", "cpu", "--sizes", "x" * 200], "not a size"),
    ],
)
def test_bad_arguments(capsys: pytest.CaptureFixture[str], args: list[str], text: str) -> None:
    """One line, prefixed like every other command's errors (not a bare `error:`), never wrapped."""
    assert main(["bench", "scrub", *args]) == 2
    err = capsys.readouterr().err
    assert err.strip().startswith("cleanroom bench scrub: ") and text in err and len(err.strip().splitlines()) == 1, err


def test_cuda_requested_on_cpu_host() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this host has CUDA")
    with pytest.raises(ValueError, match="no CUDA"):
        resolve_device("cuda")
    assert resolve_device("auto") == "cpu"


@pytest.mark.parametrize(
    ("text", "n"), [("4096", 4096), ("64K", 65536), ("16m", 16 << 20), ("8G", 8 << 30), ("1MiB", 1 << 20)]
)
def test_parse_size(text: str, n: int) -> None:
    assert parse_size(text) == n


@pytest.mark.parametrize("text", ["", "0", "-1M", "1T", "1.5G", "M"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_human_size() -> None:
    assert [human_size(n) for n in (512, 1 << 10, 3 << 20, 8 << 30, 1000)] == ["512", "1K", "3M", "8G", "1000"]


def test_cli_without_rich_prints_a_plain_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The stock CUDA image check.sh runs on may lack rich: the command used to die with ImportError there
    # (bench step failed after nothing was measured).
    for name in ("rich", "rich.console", "rich.progress", "rich.table"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "bench.json"
    argv = ["bench", "scrub", "--device", "cpu", "--sizes", "64K", "--patterns", "contiguous", "--repeats", "1"]
    assert main([*argv, "--json", str(out)]) == 0
    captured = capsys.readouterr()
    assert "scrub bench" in captured.out and "leaked bytes" in captured.out and "[1/1] 64K contiguous" in captured.err
    assert json.loads(out.read_text())["leaked_bytes"] == 0
    assert main([*argv, "--plot", str(tmp_path / "x.png")]) == 2
    assert "pip install 'cleanroom[plot]'" in capsys.readouterr().err
