"""The docs, followed literally: README's walkthrough, the documented defaults and JSON keys, the spill
snippet, and the CLI's one-line errors for what a user mistypes (docs/hardening.md, keys.md, batches.md,
spill.md, scrub-verification.md)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support.server import REPO, run_cli


def one_line_error(result: subprocess.CompletedProcess[bytes]) -> str:
    """The CLI's contract for a user's mistake: nonzero exit, one line on stderr, no traceback."""
    stderr = result.stderr.decode()
    assert result.returncode != 0, stderr
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def test_readme_walkthrough(shared_server: Any, tmp_path: Path) -> None:
    """README "Using it": tenant create --json > acme.json, then infer minilm with --public-key acme.json."""
    from safetensors.numpy import load

    data_dir = str(shared_server.data_dir)
    created = run_cli("tenant", "create", "readme-acme", "--data-dir", data_dir, "--json")
    assert created.returncode == 0, created.stderr
    acme = tmp_path / "acme.json"
    acme.write_bytes(created.stdout)
    document = json.loads(created.stdout)
    assert set(document) >= {"tenant_id", "api_key", "public_key"}  # DESIGN §5
    answer = run_cli(
        "infer", "minilm", "--url", shared_server.url, "--api-key", document["api_key"],
        "--public-key", str(acme), "--cacert", shared_server.cert,
        input=b'{"inputs": ["hello world"]}',
    )  # fmt: skip
    assert answer.returncode == 0, answer.stderr
    embeddings = load(answer.stdout)["embeddings"]
    assert embeddings.shape == (1, 384) and str(embeddings.dtype) == "float32"


def test_serve_refuses_a_data_dir_a_live_server_uses(shared_server: Any) -> None:
    result = run_cli("serve", "--data-dir", str(shared_server.data_dir), "--port", "0", "--no-tls", "--models", "echo")
    line = one_line_error(result)
    assert result.returncode == 1
    assert f"pid {shared_server.pid}" in line and "already uses" in line
    assert shared_server.healthy()


def cli_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> subprocess.CompletedProcess[bytes]:
    """`cleanroom ARGS` in this process (no interpreter start-up: the box running the suite is busy). Only
    for commands that never reach `serve`'s re-exec."""
    from cleanroom.cli import main

    capsys.readouterr()
    with open(os.devnull, "rb") as devnull, pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stdin", io.TextIOWrapper(devnull))  # `infer` reads its payload from stdin
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse and SystemExit("message")
            code = exc.code if isinstance(exc.code, int) else 1
            if isinstance(exc.code, str):
                print(exc.code, file=sys.stderr)
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, captured.out.encode(), captured.err.encode())


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CLEANROOM_CONFIG": "/nonexistent/cleanroom.toml"}, "CLEANROOM_CONFIG names /nonexistent/cleanroom.toml"),
        ({"CLEANROOM_MODELS": "echo"}, "CLEANROOM_MODELS: list and dict settings take JSON"),
    ],
)
def test_settings_errors_name_the_variable(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    expected: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    line = one_line_error(cli_in_process(capsys, "keys", "status", "--data-dir", str(tmp_path)))
    assert expected in line


def test_bad_toml_config_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "cleanroom.toml"
    config.write_text("port = \n")
    monkeypatch.setenv("CLEANROOM_CONFIG", str(config))
    line = one_line_error(cli_in_process(capsys, "tenant", "list", "--data-dir", str(tmp_path)))
    assert f"CLEANROOM_CONFIG={config} is not valid TOML" in line


def test_public_key_that_is_neither_token_nor_file(
    shared_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api_key = shared_server.tenants["alpha"]["api_key"]
    common = ("--url", shared_server.url, "--api-key", api_key, "--cacert", shared_server.cert)
    missing = cli_in_process(capsys, "infer", "echo", *common, "--public-key", str(tmp_path / "nope.json"))
    assert "no such file" in one_line_error(missing) and missing.returncode == 2
    other = tmp_path / "other.json"
    other.write_text('{"not": "a key"}')
    wrong = cli_in_process(capsys, "infer", "echo", *common, "--public-key", str(other))
    assert "holds no public-key token" in one_line_error(wrong) and wrong.returncode == 2
    items, ticket = tmp_path / "items.jsonl", tmp_path / "job.ticket"
    items.write_text("x\n")
    batch = cli_in_process(
        capsys, "batch", "submit", "echo", *common, "--public-key", "cleanroom-pk:v1:bad",
        "--input", str(items), "--ticket", str(ticket),
    )  # fmt: skip
    assert "not a valid public-key token" in one_line_error(batch)
    assert not ticket.exists()


def test_user_mistakes_are_one_line(shared_server: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    api_key = shared_server.tenants["alpha"]["api_key"]
    missing_dir = str(tmp_path / "no-such-dir")
    cases = [
        (("tenant", "list", "--data-dir", missing_dir), "no data dir at"),
        (("keys", "status", "--data-dir", missing_dir), "no data dir at"),
        (("infer", "echo", "--url", "https://127.0.0.1:1", "--api-key", api_key), "cannot reach"),
        (
            (
                "infer",
                "echo",
                "--url",
                shared_server.url,
                "--api-key",
                "cr_" + "A" * 36,
                "--cacert",
                shared_server.cert,
            ),
            "401 unauthenticated",
        ),
        (("keys", "revoke", "--tenant", "nobody", "--data-dir", str(shared_server.data_dir)), "unknown_tenant"),
        (("infer", "echo", "--url", shared_server.url, "--api-key", "", "--cacert", shared_server.cert), "--api-key"),
        (("bench", "scrub", "--device", "tpu"), "--device must be"),
    ]
    for args, expected in cases:
        assert expected in one_line_error(cli_in_process(capsys, *args)), args
    # a bad setting stops `serve` before it re-executes itself; the loopback check runs after, in a new process
    port = cli_in_process(capsys, "serve", "--port", "99999", "--data-dir", missing_dir)
    assert "invalid setting port (CLEANROOM_PORT)" in one_line_error(port)
    public = run_cli("serve", "--host", "0.0.0.0", "--no-tls", "--data-dir", missing_dir)
    assert "--no-tls is refused" in one_line_error(public)


def _settings_table(doc: str, heading: str, name_column: int = 0) -> dict[str, str]:
    """`| name | default | ... |` rows (the name in `name_column`) of the first table after `heading`."""
    text = (REPO / "docs" / doc).read_text().split(heading, 1)[1]
    rows: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        if rows and not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) >= 3 + name_column and cells[name_column].startswith("`"):
            rows[cells[name_column].strip("`").lower().removeprefix("cleanroom_")] = cells[name_column + 1]
    return rows


def _as_number(text: str) -> float:
    match = re.match(r"`?([0-9.]+)\s*(KiB|MiB|s)?", text.replace(" ", ""))
    assert match, text
    scale = {"KiB": 1024, "MiB": 1024 * 1024}.get(match.group(2) or "", 1)
    return float(match.group(1)) * scale


def test_documented_defaults_match_settings() -> None:
    from cleanroom.config import Settings

    fields = Settings.model_fields
    batches = _settings_table("batches.md", "## Settings")
    limits = _settings_table("hardening.md", "| limit | setting", name_column=1)
    assert len(batches) >= 8 and len(limits) >= 6
    for setting, default in batches.items():
        name = setting
        if name == "spill_dir":
            assert fields[name].default is None  # DATA_DIR/spill
            continue
        assert float(fields[name].default) == _as_number(default), name
    for setting, default in limits.items():
        name = setting
        assert name in fields, f"hardening.md names {setting}, which is no setting"  # never skipped silently
        assert float(fields[name].default) == _as_number(default), name
    keys_md = " ".join((REPO / "docs" / "keys.md").read_text().split())
    assert "(`CLEANROOM_KEY_CACHE_TTL_S`, default 30 s" in keys_md and fields["key_cache_ttl_s"].default == 30.0
    assert "(default 3600 s; 0 turns it off)" in keys_md and fields["rewrap_interval_s"].default == 3600
    assert fields["hpke_overlap_s"].default == 7 * 86400 and fields["tenant_key_rotation_days"].default == 91


def test_bench_scrub_json_keys_are_the_documented_ones(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = run_cli("bench", "scrub", "--device", "cpu", "--sizes", "256K", "--repeats", "1", "--json", str(out))
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    doc = (REPO / "docs" / "scrub-verification.md").read_text().split("**JSON keys:**", 1)[1].split("\n\n")[0]
    top, row = doc.split("- per row:")
    documented_top = set(re.findall(r"`(\w+)(?:\[\])?`", top))
    assert documented_top == set(document), documented_top ^ set(document)
    assert set(re.findall(r"`(\w+)`", row)) <= set(document["rows"][0])


def test_spill_snippet_runs(tmp_path: Path) -> None:
    """docs/spill.md "Using it", with its placeholders filled in."""
    doc = (REPO / "docs" / "spill.md").read_text()
    snippet = doc.split("```python\n", 1)[1].split("```", 1)[0]
    snippet = snippet.replace('Path("/var/lib/cleanroom/spill")', "spill_dir")
    chunks = [bytes([i]) * 100_000 for i in range(7)]
    received = bytearray()
    namespace: dict[str, Any] = {
        "spill_dir": tmp_path,
        "produce": lambda: iter(chunks),
        "consume": received.extend,
    }
    exec(compile(snippet, "spill.md", "exec"), namespace)
    assert bytes(received) == b"".join(chunks)
    assert list(tmp_path.iterdir()) == []  # nameless files: nothing left behind


def _admin_state(tmp_path: Path, url: str, tls_cert: str | None) -> dict[str, Any]:
    token = tmp_path / "admin.token"
    token.write_text("t" * 40)
    return {"admin_token_file": str(token), "pid": os.getpid(), "url": url, "tls_cert": tls_cert}


def test_admin_cli_names_a_relative_server_certificate(tmp_path: Path) -> None:
    """`serve --tls-cert F` with a relative F, then `tenant`/`keys` from another directory (hardening.md)."""
    from cleanroom.admin_client import AdminAPI
    from cleanroom.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="start it with an absolute --tls-cert"):
        AdminAPI(_admin_state(tmp_path, "https://127.0.0.1:1", "pki/server.pem"))


def test_admin_cli_hints_at_client_certificates_when_the_server_hangs_up(tmp_path: Path) -> None:
    """A server with --client-cert-required drops a CLI without CLEANROOM_ADMIN_CLIENT_CERT: say so."""
    import socket
    import threading

    from cleanroom.admin_client import AdminAPI
    from cleanroom.errors import CleanroomError

    listener = socket.create_server(("127.0.0.1", 0))

    def hang_up() -> None:
        connection, _ = listener.accept()
        connection.recv(65536)
        connection.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    api = AdminAPI(_admin_state(tmp_path, f"http://127.0.0.1:{listener.getsockname()[1]}", None))
    try:
        with pytest.raises(CleanroomError, match="CLEANROOM_ADMIN_CLIENT_CERT") as caught:
            api.request("GET", "/v1/admin/tenants")
        assert caught.value.code == "admin_unreachable"
    finally:
        api.close()
        listener.close()
        thread.join(timeout=5)


def test_tenant_command_while_a_server_starts_says_so(shared_server: Any) -> None:
    """`cleanroom serve ... &` then at once `cleanroom tenant create` (README): before the server publishes
    server.json the command falls back to the data dir, whose audit log the server already holds."""
    from cleanroom.admin_client import local_tenant_service
    from cleanroom.config import Settings
    from cleanroom.errors import AuditUnavailable

    with pytest.raises(AuditUnavailable, match="if a server is starting there, retry once it listens"):
        local_tenant_service(Settings(data_dir=shared_server.data_dir))


@pytest.mark.parametrize("pid", [0, -1, None, "x"])
def test_a_damaged_server_json_is_no_running_server(tmp_path: Path, pid: Any) -> None:
    from cleanroom.admin_client import running_server

    (tmp_path / "server.json").write_text(json.dumps({"pid": pid, "url": "https://127.0.0.1:1"}))
    assert running_server(tmp_path) is None


def test_a_server_of_another_user_is_a_running_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kill(pid, 0) answers EPERM for a live process we may not signal: that server is running, and the
    tenant/keys commands must not edit its data dir behind it. A pid that is gone is no server."""
    import cleanroom.admin_client as admin_client

    (tmp_path / "server.json").write_text(json.dumps({"pid": 4242, "url": "https://127.0.0.1:1"}))

    def kill(pid: int, sig: int, error: type[OSError] = PermissionError) -> None:
        raise error(1, "not permitted")

    monkeypatch.setattr(admin_client.os, "kill", kill)
    assert admin_client.running_server(tmp_path) == {"pid": 4242, "url": "https://127.0.0.1:1"}
    monkeypatch.setattr(admin_client.os, "kill", lambda pid, sig: kill(pid, sig, ProcessLookupError))
    assert admin_client.running_server(tmp_path) is None


def test_serve_records_an_absolute_certificate_path_for_the_admin_cli(tmp_path: Path) -> None:
    """`serve --tls-cert F` with a relative F: server.json names the file absolutely, so `tenant`/`keys` run
    from any directory find the certificate to check the server against."""
    from cleanroom.server.tls import dev_certificate
    from support.server import REPO, start_server

    cert, key = dev_certificate(tmp_path / "pki", ["127.0.0.1"])
    relative_cert, relative_key = os.path.relpath(cert, REPO), os.path.relpath(key, REPO)
    assert not Path(relative_cert).is_absolute()
    server = start_server(tmp_path / "data", "--models", "echo", "--tls-cert", relative_cert, "--tls-key", relative_key)
    try:
        assert server.cert is not None and Path(server.cert).is_absolute()
        assert Path(server.cert).samefile(cert)
    finally:
        server.stop()
