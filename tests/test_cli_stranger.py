"""The `cleanroom` command as a stranger meets it: a wrong data dir, a master key file others can read or that
is a link, a dead KMS, missing TLS files, a second server, flags given twice, bad numbers, Ctrl-C while the
models load, SIGTERM. Each must end in one line on stderr and a documented exit code, never a traceback, and
lose nothing; `serve` must refuse before it loads torch and the models (seconds on a small host).

Interpreter start-ups are the cost here (~0.6 s each, ~3 s with torch): the serve refusals, `doctor` and the
Ctrl-C case share one probe process, the usage errors run in this process.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.server import REPO, server_env, start_server

# One process: doctor, then serve refusals that must come before torch, then Ctrl-C during model loading.
# Prints `@@ name rc` to stdout after each case, with the case's stderr framed by `@@ name` markers.
PROBE = r"""
import json, os, signal, sys, threading
from cleanroom.cli import main

root = sys.argv[1]
def case(name, argv, env=None):
    print(f"@@ {name}", file=sys.stderr, flush=True)
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    print(f"@@ end", file=sys.stderr, flush=True)
    print(json.dumps({"case": name, "rc": rc}), flush=True)

serve = ["serve", "--no-reexec", "--port", "0", "--models", "echo"]
case("doctor", ["doctor", "--json", "--no-kms", "--data-dir", f"{root}/doctor"])
print(json.dumps({"case": "torch after doctor", "loaded": "torch" in sys.modules}), flush=True)
vault = {"CLEANROOM_KMS": "vault", "CLEANROOM_VAULT_ADDR": "http://127.0.0.1:1", "CLEANROOM_VAULT_TOKEN": "t",
         "CLEANROOM_KMS_TIMEOUT_S": "3"}
case("dead vault", [*serve, "--no-tls", "--data-dir", f"{root}/vault"], vault)
case("tls files missing", [*serve, "--data-dir", f"{root}/tls", "--tls-cert", f"{root}/no.pem",
                           "--tls-key", f"{root}/no.key"])
case("master key 0644", [*serve, "--no-tls", "--data-dir", f"{root}/leaky"])
case("master key symlink", [*serve, "--no-tls", "--data-dir", f"{root}/linked"])
case("data dir is a file", [*serve, "--no-tls", "--data-dir", f"{root}/a-file"])
case("second serve", [*serve, "--no-tls", "--data-dir", f"{root}/locked"])
case("user model missing", [*serve, "--no-tls", "--data-dir", f"{root}/model", "--model", "m=no_such_mod.x:f"])
case("built-in unknown", ["serve", "--no-reexec", "--port", "0", "--models", "echo,nope", "--no-tls",
                          "--data-dir", f"{root}/builtin"])
print(json.dumps({"case": "torch after refusals", "loaded": "torch" in sys.modules}), flush=True)
threading.Timer(0.8, os.kill, (os.getpid(), signal.SIGINT)).start()  # while torch and the models load
case("ctrl-c", [*serve, "--no-tls", "--data-dir", f"{root}/interrupted"])
"""


def run_probe(root: Path) -> tuple[dict[str, dict[str, object]], dict[str, str]]:
    env = server_env(CLEANROOM_ALLOCATOR_HARDENING="false")
    for name in [k for k in env if k.startswith("CLEANROOM_") and k != "CLEANROOM_ALLOCATOR_HARDENING"]:
        del env[name]
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(root)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=REPO,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # an ignored SIGINT is inherited
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith('{"case"')]  # not doctor's report
    outcomes = {d["case"]: d for d in map(json.loads, lines)}
    stderr: dict[str, str] = {}
    current = None
    for line in result.stderr.splitlines():
        if line.startswith("@@ "):
            current = None if line == "@@ end" else line[3:]
            stderr.setdefault(current or "", "")
        elif current is not None and not line.startswith("{"):  # JSON log lines are the server's, not errors
            stderr[current] += line + "\n"
    return outcomes, stderr


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cleanroom: "), text
    assert "Traceback" not in text
    return lines[0]


def test_serve_refuses_before_loading_torch_and_doctor_does_not_load_it(tmp_path: Path) -> None:
    from cleanroom.cli import main

    # Where torch could see a GPU, doctor must ask it (and may load it); elsewhere torch can tell nothing
    # that doctor does not read from torch's files.
    gpu_host = any(os.path.exists(node) for node in ("/dev/nvidiactl", "/dev/dxg", "/dev/kfd"))
    for name in ("leaky", "linked"):
        assert main(["tenant", "create", "t", "--data-dir", str(tmp_path / name), "--json"]) == 0
    keys = tmp_path / "leaky" / "kms" / "master-keys.json"
    os.chmod(keys, 0o644)
    linked = tmp_path / "linked" / "kms" / "master-keys.json"
    os.replace(linked, tmp_path / "elsewhere.json")
    linked.symlink_to(tmp_path / "elsewhere.json")
    (tmp_path / "a-file").write_text("not a directory")
    (tmp_path / "locked").mkdir(mode=0o700)
    held = os.open(tmp_path / "locked", os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(held, fcntl.LOCK_EX)  # as a second `serve`, still loading its models, holds it
    try:
        outcomes, stderr = run_probe(tmp_path)
    finally:
        os.close(held)

    assert outcomes["doctor"]["rc"] == 0, stderr["doctor"]
    assert outcomes["torch after doctor"]["loaded"] is gpu_host
    expected = {
        "dead vault": "kms_unavailable",
        "tls files missing": "cannot load TLS certificate",
        "master key 0644": "has mode 0644",
        "master key symlink": "is a symlink",
        "data dir is a file": "(the data dir is a file)",
        "second serve": "another cleanroom serve is starting or running",
        "user model missing": "cannot load 'no_such_mod.x:f': No module named 'no_such_mod'",
        "built-in unknown": "unknown built-in model 'nope' (built-ins: echo, minilm)",
    }
    for name, text in expected.items():
        assert outcomes[name]["rc"] == 1, (name, stderr[name])
        assert text in one_line(stderr[name]), (name, stderr[name])
    assert outcomes["torch after refusals"]["loaded"] is gpu_host, "serve loaded torch before refusing"
    assert keys.stat().st_mode & 0o777 == 0o644 and linked.is_symlink(), "a refusal changed the key files"
    assert (tmp_path / "a-file").read_text() == "not a directory"

    assert outcomes["ctrl-c"]["rc"] == 130, stderr["ctrl-c"]
    assert one_line(stderr["ctrl-c"]) == "cleanroom: interrupted"
    assert not (tmp_path / "interrupted" / "server.json").exists()


@pytest.mark.parametrize(
    ("argv", "code", "text"),
    [
        (["tenant", "list", "--data-dir", "{a}", "--data-dir", "{b}"], 2, "--data-dir given twice"),
        (["serve", "--port", "abc"], 2, "invalid int value: 'abc'"),
        (["serve", "--port", "65536", "--data-dir", "{a}"], 2, "less than or equal to 65535"),
        (["tenant", "list", "--data-dir", "{file}"], 1, "Not a directory: {file} (the data dir is a file)"),
        (["keys", "status", "--data-dir", "{file}/sub"], 1, "Not a directory: {file} (a file on the path of"),
        (["audit", "verify", "--data-dir", "{file}"], 1, "Not a directory: {file} (the data dir is a file)"),
    ],
)
def test_usage_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, text: str
) -> None:
    from cleanroom.cli import main

    (tmp_path / "file").write_text("x")
    names = {"a": str(tmp_path / "a"), "b": str(tmp_path / "b"), "file": str(tmp_path / "file")}
    try:
        rc = main([arg.format(**names) for arg in argv])
    except SystemExit as exc:
        rc = exc.code
    err = capsys.readouterr().err
    assert rc == code and text.format(**names) in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_flag_twice_with_two_values_is_refused_the_same_value_and_exec_s_command_pass(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Parsed only: a `serve` that got past its parser would start a server (and re-exec) in this process."""
    from cleanroom.cli import build_parser

    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(["serve", "--port", "1", "--no-tls", "--port=2"])
    assert refused.value.code == 2
    assert "cleanroom serve: --port given twice ('1', then '2')" in capsys.readouterr().err
    args = build_parser().parse_args(["serve", "--port", "5", "--port", "5"])
    assert args.port == 5
    args = build_parser().parse_args(["exec", "--", "uvicorn", "--port", "1", "--port", "2"])
    assert args.command[-4:] == ["--port", "1", "--port", "2"]


def test_the_exit_after_a_drain_still_joins_threads_runs_atexit_and_flushes(tmp_path: Path) -> None:
    """`serve` ends with os._exit to skip ~2.4 s of teardown: what the interpreter would still have done
    that anyone can see must happen first."""
    marker = tmp_path / "thread-done"
    probe = (
        "import atexit, logging, sys, threading, time\n"
        "from cleanroom.cli_serve import exit_after_clean_drain\n"
        f"threading.Thread(target=lambda: (time.sleep(0.3), open({str(marker)!r}, 'w').close())).start()\n"
        "atexit.register(lambda: print('atexit ran', file=sys.stderr))\n"
        "logging.basicConfig(stream=sys.stderr, level='INFO'); logging.getLogger('x').info('logged')\n"
        "sys.stdout.write('partial line without newline')\n"
        "exit_after_clean_drain()\n"
        "print('not reached')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=REPO, env=server_env()
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "partial line without newline"
    assert "atexit ran" in result.stderr and "logged" in result.stderr
    assert marker.exists(), "a non-daemon thread was cut short"


def test_sigterm_after_a_drain_exits_zero_with_the_log_flushed_and_the_audit_log_intact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cleanroom.cli import main

    handle = start_server(tmp_path / "data", "--models", "echo", "--no-reexec", tls=False)
    try:
        os.kill(handle.pid, signal.SIGTERM)
        started = time.monotonic()
        code = handle.process.wait(timeout=60)
        waited = time.monotonic() - started
    finally:
        if handle.process.poll() is None:
            handle.process.kill()
    log = handle.log_path.read_text()
    assert code == 0, log[-3000:]
    assert waited < 30, f"{waited:.1f} s from SIGTERM to exit"  # a sanity ceiling, not a speed claim
    assert "Finished server process" in log.splitlines()[-1], log[-2000:]  # nothing logged was lost
    assert not (tmp_path / "data" / "server.json").exists()
    capsys.readouterr()
    assert main(["audit", "verify", "--data-dir", str(tmp_path / "data")]) == 0
    assert "INTACT" in capsys.readouterr().out


def test_doctor_s_torch_facts_read_from_the_files_are_what_torch_reports() -> None:
    """The no-import path must not make doctor's report differ from the one that imports torch."""
    torch = pytest.importorskip("torch")
    from cleanroom.runtime.device import torch_facts_unimported

    assert torch_facts_unimported() == (str(torch.__version__), torch.version.cuda)
