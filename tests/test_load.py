"""Load and soak, bounded for the suite: 64 concurrent clients across 8 tenants for 20 s against a real TLS
server. Zero unexpected errors, every answer the right bytes, RSS flat within 10% after warm-up; p50/p99
reported. The 60 s version is `python benchmarks/load/run.py soak`."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from support.hardening import admin_create_tenant, server_errors_in_log
from support.load import run_load, sealed_echo_call
from support.server import start_server

CLIENTS, TENANTS = 64, 8
DURATION_S = float(os.environ.get("CLEANROOM_LOAD_TEST_S", "20"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    handle = start_server(tmp_path_factory.mktemp("load") / "data", "--models", "echo")
    try:
        for i in range(TENANTS):
            admin_create_tenant(handle, f"load{i}")
        yield handle
    finally:
        handle.stop()


def test_concurrent_tenants_under_load(server: Any, capsys: pytest.CaptureFixture[str], record_property: Any) -> None:
    keys = [server.tenants[f"load{i}"]["api_key"] for i in range(TENANTS)]
    report = run_load(
        lambda i: sealed_echo_call(server.url, keys[i % TENANTS], server.cert),
        clients=CLIENTS,
        duration_s=DURATION_S,
        pid=server.pid,
    )
    summary = report.summary()
    record_property("load", summary)
    with capsys.disabled():
        print(f"\nload ({CLIENTS} clients, {TENANTS} tenants, TLS, sealed echo 2 KiB): {json.dumps(summary)}")
    assert report.statuses() == {200: len(report.outcomes)}, f"unexpected outcomes: {report.statuses()}"
    assert len(report.ok) > CLIENTS * 5, f"too few requests completed to judge: {summary}"
    growth = report.rss_growth(warmup_fraction=0.3)
    assert growth <= 0.10, f"RSS grew {growth:.1%} after warm-up: {summary}"
    assert server.healthy()
    problems = server_errors_in_log(server.log_path)
    assert not problems, "\n".join(problems[:10])
