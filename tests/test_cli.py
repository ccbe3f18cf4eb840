"""The `cleanroom` command as users run it: tenants, infer, exec, and refusing unsafe flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support.server import run_cli, server_env


def test_tenant_commands_through_the_running_server(shared_server) -> None:
    created = shared_server.create_tenant("gamma")
    listed = json.loads(shared_server.cli("tenant", "list", "--data-dir", str(shared_server.data_dir), "--json").stdout)
    assert "gamma" in {t["name"] for t in listed}
    assert created["api_key"] not in json.dumps(listed)
    # The running server sees the new tenant at once.
    with shared_server.client("gamma") as client:
        assert client.infer("echo", b"new tenant works") == b"new tenant works"
    with shared_server.http() as http:
        assert f'tenant_id="{created["tenant_id"]}"' in http.get("/metrics").text
    shared_server.cli("tenant", "delete", "gamma", "--data-dir", str(shared_server.data_dir))
    with shared_server.http() as http:
        refused = http.get("/v1/tenants/self/public-key", headers={"Authorization": f"Bearer {created['api_key']}"})
        metrics = http.get("/metrics").text
    assert refused.status_code == 401
    # Its scheduling state and every metric series labelled with it went with it (tenant churn must not
    # grow the process or the label cardinality).
    assert created["tenant_id"] not in metrics


def test_tenant_commands_without_a_server(tmp_path: Path) -> None:
    data_dir = str(tmp_path / "data")
    first = run_cli("tenant", "create", "solo", "--data-dir", data_dir, "--json")
    assert first.returncode == 0, first.stderr
    created = json.loads(first.stdout)
    assert set(created) >= {"tenant_id", "api_key", "public_key"}
    duplicate = run_cli("tenant", "create", "solo", "--data-dir", data_dir)
    assert duplicate.returncode == 1 and b"tenant_exists" in duplicate.stderr
    bad = run_cli("tenant", "create", "Not Valid", "--data-dir", data_dir)
    assert bad.returncode == 1 and b"invalid_tenant_name" in bad.stderr
    assert run_cli("tenant", "delete", "solo", "--data-dir", data_dir).returncode == 0
    assert json.loads(run_cli("tenant", "list", "--data-dir", data_dir, "--json").stdout) == []


def test_commands_other_than_create_refuse_a_missing_data_dir(tmp_path: Path) -> None:
    """A mistyped --data-dir must not grow a fresh master key and audit log just to list nothing."""
    missing = tmp_path / "typo"
    for command in (
        ("tenant", "list"),
        ("tenant", "delete", "solo"),
        ("tenant", "keys", "list", "solo"),
        ("keys", "status"),
        ("keys", "revoke", "--system"),
    ):
        result = run_cli(*command, "--data-dir", str(missing))
        assert result.returncode == 1, (command, result.stderr)
        assert b"no data dir at" in result.stderr and b"Traceback" not in result.stderr, command
        assert not missing.exists(), f"{command} created the data dir"


def test_infer_command_pins_the_public_key(shared_server, tmp_path: Path) -> None:
    tenant = shared_server.tenants["alpha"]
    key_file = tmp_path / "alpha.json"
    key_file.write_text(json.dumps(tenant))
    result = shared_server.cli(
        "infer",
        "echo",
        "--url",
        shared_server.url,
        "--api-key",
        tenant["api_key"],
        "--public-key",
        str(key_file),
        "--cacert",
        shared_server.cert,
        input=b"through the CLI",
    )
    assert result.stdout == b"through the CLI"
    # Pinned to beta's key while authenticating as alpha: the server cannot open it.
    beta = shared_server.tenants["beta"]
    refused = shared_server.cli(
        "infer",
        "echo",
        "--url",
        shared_server.url,
        "--api-key",
        tenant["api_key"],
        "--public-key",
        beta["public_key"],
        "--cacert",
        shared_server.cert,
        input=b"x",
        check=False,
    )
    assert refused.returncode == 1 and b"does not chain back to the pinned key" in refused.stderr


def test_no_tls_is_refused_off_loopback(tmp_path: Path) -> None:
    result = run_cli(
        "serve", "--data-dir", str(tmp_path / "d"), "--host", "0.0.0.0", "--no-tls", "--no-reexec", "--models", "echo"
    )
    assert result.returncode == 1
    assert b"--no-tls is refused" in result.stderr


def test_exec_applies_the_hardening() -> None:
    probe = (
        "import os, resource, ctypes; libc = ctypes.CDLL(None); "
        "print(os.environ.get('PYTHONMALLOC'), os.environ.get('GLIBC_TUNABLES'), "
        "resource.getrlimit(resource.RLIMIT_CORE)[0], libc.prctl(3, 0, 0, 0, 0))"
    )
    result = run_cli("exec", "--", sys.executable, "-c", probe)
    assert result.returncode == 0, result.stderr
    malloc, tunables, core, dumpable = result.stdout.decode().split()
    assert malloc == "malloc" and "glibc.malloc.perturb=" in tunables and "tcache_count=0" in tunables
    assert core == "0"
    # execve resets dumpability (the embedded middleware sets it again in-process); RLIMIT_CORE=0 persists.
    assert dumpable in {"0", "1"}


def test_exec_without_command_is_a_usage_error() -> None:
    result = run_cli("exec")
    assert result.returncode == 2


def test_settings_errors_are_clear(tmp_path: Path) -> None:
    env = server_env(CLEANROOM_PORT="not-a-port")
    result = run_cli("tenant", "list", "--data-dir", str(tmp_path), env=env)
    assert result.returncode == 2 and b"invalid setting port (CLEANROOM_PORT)" in result.stderr
    assert os.environ.get("CLEANROOM_PORT") is None


def test_doctor_reports_the_hardening_serve_gets(tmp_path: Path) -> None:
    result = run_cli("doctor", "--data-dir", str(tmp_path / "d"), "--json")
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    report = json.loads(result.stdout)
    assert report["hardening"]["allocator_hardened"] is True
    assert report["hardening"]["not_dumpable"] is True and report["hardening"]["core_dumps_disabled"] is True
    assert report["device"]["kind"] in {"cpu", "cuda"} and report["problems"] == []
    leaky = tmp_path / "leaky"
    leaky.mkdir(mode=0o755)
    os.chmod(leaky, 0o755)
    bad = run_cli("doctor", "--data-dir", str(leaky), "--json", "--no-kms")
    assert bad.returncode == 1 and "readable by others" in json.loads(bad.stdout)["problems"][0]


def test_doctor_table_says_when_the_data_dir_and_master_key_do_not_exist_yet(tmp_path: Path) -> None:
    """An "ok" for a data dir that is not there would read as a checked KMS: the table says what it means."""
    result = run_cli("doctor", "--data-dir", str(tmp_path / "not-yet"))
    assert result.returncode == 0, result.stderr.decode()
    text = " ".join(result.stdout.decode().split())
    assert "(not created yet)" in text and "no master key yet" in text


def test_key_and_tenant_commands_do_not_load_the_model_stack(tmp_path: Path) -> None:
    """`tenant` and `keys` commands run without a server open the keyring and the audit log, nothing else:
    they used to import the server's services and with them torch (~1.2 s of every such command)."""
    data_dir = str(tmp_path / "data")
    probe = (
        "import sys\n"
        "from cleanroom.cli import main\n"
        "assert not main(sys.argv[1:]), sys.argv\n"
        "heavy = sorted(m for m in ('torch', 'fastapi', 'uvicorn', 'transformers') if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    for command in ("tenant create solo --json", "tenant list", "keys status"):
        argv = [*command.split(), "--data-dir", data_dir]
        result = subprocess.run(
            [sys.executable, "-c", probe, *argv], capture_output=True, text=True, env=server_env(), timeout=120
        )
        assert result.returncode == 0, (command, result.stderr[-2000:])
        assert "HEAVY []" in result.stderr, (command, result.stderr[-2000:])
