"""`cleanroom audit verify|show|prove|check-proof|checkpoint` against a real LocalKMS data dir."""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cleanroom.audit.commands import parse_since, register
from cleanroom.audit.keys import load_or_create_audit_keys
from cleanroom.audit.log import AuditLog
from cleanroom.audit.records import AuditEvent
from cleanroom.audit.segments import list_segments
from cleanroom.keys.local import LocalKMS


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cleanroom")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CLEANROOM_KMS", raising=False)
    monkeypatch.delenv("CLEANROOM_CONFIG", raising=False)
    kms = LocalKMS(tmp_path)
    with (
        load_or_create_audit_keys(tmp_path / "audit", kms, "cleanroom-master") as keys,
        AuditLog(tmp_path / "audit", keys.audit_key, keys.require_signing_key()) as log,
    ):
        for i in range(6):
            log.append(
                AuditEvent(
                    event="decrypt.request_key",
                    time=1_700_000_000.0 + i * 3600,
                    tenant_id="acme" if i % 2 else "globex",
                    key_id="k1",
                    key_version=1,
                    request_id=f"req-{i}",
                    principal="cred-1",
                    source="192.0.2.1",
                    byte_count=10,
                )
            )
    kms.close()
    return tmp_path


def test_verify_intact_exits_zero(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["audit", "verify", "--data-dir", str(data_dir)]) == 0
    assert "INTACT" in capsys.readouterr().out


def test_verify_tampered_exits_one_and_says_where(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    segment = list_segments(data_dir / "audit")[0][1]
    data = bytearray(segment.read_bytes())
    data[-40] ^= 0x10
    segment.write_bytes(bytes(data))
    assert _run(["audit", "verify", "--data-dir", str(data_dir)]) == 1
    out = capsys.readouterr().out
    assert "record_corrupt" in out and "segment 1" in out and "record 5" in out
    assert _run(["audit", "verify", "--data-dir", str(data_dir), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["findings"][0]["kind"] == "record_corrupt"
    assert report["findings"][0]["seq"] == 5


def test_verify_without_keys_exits_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["audit", "verify", "--data-dir", str(tmp_path)]) == 2
    assert "never created" in capsys.readouterr().err


def test_show_json_lines_with_filters(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["audit", "show", "--data-dir", str(data_dir), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 6
    for row in rows:
        assert {"event", "tenant_id", "key_id", "request_id", "time", "seq"} <= row.keys()
    assert rows[0]["time"] == "2023-11-14T22:13:20.000000Z"
    assert (
        _run(
            [
                "audit",
                "show",
                "--data-dir",
                str(data_dir),
                "--json",
                "--tenant",
                "acme",
                "--since",
                "2023-11-15T00:00:00Z",
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["request_id"] for r in rows] == ["req-3", "req-5"]
    assert _run(["audit", "show", "--data-dir", str(data_dir)]) == 0
    assert "decrypt.request_key" in capsys.readouterr().out


def test_prove_and_check_proof(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proof = tmp_path / "proof.json"
    assert _run(["audit", "prove", "3", "--data-dir", str(data_dir), "--out", str(proof)]) == 0
    assert _run(["audit", "check-proof", str(proof), "--data-dir", str(data_dir)]) == 0
    checked = json.loads(capsys.readouterr().out)
    assert checked["valid"] and checked["record"]["request_id"] == "req-3"
    document = json.loads(proof.read_text())
    document["seq"] = 4
    proof.write_text(json.dumps(document))
    assert _run(["audit", "check-proof", str(proof), "--data-dir", str(data_dir)]) == 1
    assert _run(["audit", "prove", "99", "--data-dir", str(data_dir)]) == 2


def test_checkpoint_then_verify_since(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    anchor = tmp_path / "anchor.json"
    assert _run(["audit", "checkpoint", "--out", str(anchor), "--data-dir", str(data_dir)]) == 0
    assert "6 records" in capsys.readouterr().out
    assert _run(["audit", "verify", "--data-dir", str(data_dir), "--since-checkpoint", str(anchor)]) == 0
    segment = list_segments(data_dir / "audit")[-1][1]
    frames_end = segment.stat().st_size
    os.truncate(segment, frames_end - 1)  # tail damaged below the anchor
    assert _run(["audit", "verify", "--data-dir", str(data_dir), "--since-checkpoint", str(anchor)]) == 1


def test_parse_since() -> None:
    now = datetime(2024, 5, 1, 12, tzinfo=UTC).timestamp()
    assert parse_since("2h", now) == now - 7200
    assert parse_since("7d", now) == now - 7 * 86400
    assert parse_since("2024-05-01T10:00:00") == now - 7200
    with pytest.raises(argparse.ArgumentTypeError):
        parse_since("yesterday")


def test_wired_into_the_cleanroom_command(data_dir: Path) -> None:
    from cleanroom.cli import main

    assert main(["audit", "verify", "--data-dir", str(data_dir)]) == 0
