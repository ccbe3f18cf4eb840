"""DESIGN.md §5 and README's CLI section, used as a stranger would: only what test_cli.py and
test_docs_walkthrough.py do not already cover (serve refusals before start-up, one-line usage errors,
binary-safe `infer`, `Client` called as §5 writes it, `verify=` as httpx and requests take it)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.server import run_cli, server_env

SEALED = "application/vnd.cleanroom.sealed"


def one_line_error(result: subprocess.CompletedProcess[bytes], code: int) -> str:
    stderr = result.stderr.decode()
    assert result.returncode == code, (result.returncode, stderr)
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def cli_in_process(
    capsys: pytest.CaptureFixture[str], *args: str, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    """`cleanroom ARGS` in this process, with `stdin` as its standard input and its stdout kept as bytes."""
    from cleanroom.cli import main

    out = io.BytesIO()
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        patch.setattr(sys, "stdout", io.TextIOWrapper(out, write_through=True))
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        sys.stdout.flush()
        written = out.getvalue()
    return subprocess.CompletedProcess(list(args), code, written, capsys.readouterr().err.encode())


# --- serve: refused before anything starts ---------------------------------------------------------
def test_serve_on_a_port_in_use_is_one_cleanroom_line(tmp_path: Path) -> None:
    """Not uvicorn's `ERROR: [Errno 98] ...` and exit 3 after the models loaded: one line naming host:port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            "serve", "--data-dir", str(tmp_path / "d"), "--port", str(port), "--no-tls", "--models", "echo"
        )
    line = one_line_error(result, 1)
    assert line.startswith("cleanroom: ") and f"127.0.0.1:{port}" in line and "already in use" in line
    assert not (tmp_path / "d" / "server.json").exists()


def test_a_port_taken_after_the_early_check_is_still_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another process binds the port while the models load: uvicorn then fails its own bind (exit 3);
    serve explains it as the early check does."""
    from cleanroom.cli import UVICORN_STARTUP_FAILURE, run_explaining_bind_failures
    from cleanroom.config import Settings

    def uvicorn_failing_to_bind(_settings: Any) -> int:
        raise SystemExit(UVICORN_STARTUP_FAILURE)

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings(data_dir=tmp_path, port=port, tls_mode="off")
        assert run_explaining_bind_failures(settings, uvicorn_failing_to_bind) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"127.0.0.1:{port}" in err and "already in use" in err, err
    with pytest.raises(SystemExit):  # any other exit (a failed lifespan, SIGTERM's) is left alone
        run_explaining_bind_failures(settings, uvicorn_failing_to_bind)  # the port is free again: not ours


def test_serve_takes_an_ipv6_host_in_brackets(tmp_path: Path) -> None:
    """`--host [::1]` (docs/operations.md) was handed to the socket with its brackets: it did not resolve."""
    from cleanroom.config import Settings

    settings = Settings(data_dir=tmp_path, host="[::1]")
    assert settings.host == "::1" and settings.host_is_loopback
    with pytest.raises(ValueError, match="not an IPv6 address"):
        Settings(data_dir=tmp_path, host="[127.0.0.1]")


def test_tls_key_with_no_tls_is_a_usage_error(tmp_path: Path) -> None:
    """`--no-tls --tls-key K` used to serve plain HTTP and drop the key without a word."""
    with socket.socket() as taken:  # should the refusal regress, the server cannot start and hang the test
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        for flag in ("--no-tls", "--dev-tls"):
            result = run_cli(
                "serve", "--data-dir", str(tmp_path / "d"), "--port", port, flag, "--tls-key", str(tmp_path / "k.pem")
            )
            assert f"--tls-key goes with --tls-cert, not with {flag}" in one_line_error(result, 2)


def test_no_tls_on_localhost_resolves_the_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """`localhost` is loopback only if it resolves to loopback: a hostile /etc/hosts can map it anywhere."""
    from cleanroom.config import is_loopback_host, loopback_problem

    real = socket.getaddrinfo
    assert is_loopback_host("localhost")  # this host's own /etc/hosts
    assert is_loopback_host("127.0.0.2") and is_loopback_host("::1") and is_loopback_host("[::1]")

    def hostile(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "localhost":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", 0))]  # fmt: skip
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hostile)
    assert not is_loopback_host("localhost")
    assert "10.0.0.5" in (loopback_problem("localhost") or "")
    assert is_loopback_host("127.0.0.1") and not is_loopback_host("0.0.0.0")
    # docs/operations.md: any other name, and short forms, are refused whatever they resolve to
    assert not is_loopback_host("127.1") and not is_loopback_host("ip6-localhost")
    assert not is_loopback_host("::ffff:127.0.0.1")


def test_serve_no_tls_on_a_localhost_that_resolves_elsewhere(tmp_path: Path) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import socket\n"
        "_real = socket.getaddrinfo\n"
        "def _hostile(host, *a, **k):\n"
        "    if host == 'localhost':\n"
        "        return [(socket.AF_INET, socket.SOCK_STREAM, 6, '', ('192.0.2.7', 0))]\n"
        "    return _real(host, *a, **k)\n"
        "socket.getaddrinfo = _hostile\n"
    )
    env = server_env()
    env["PYTHONPATH"] = os.pathsep.join([str(hook), env["PYTHONPATH"]])
    result = run_cli(
        "serve", "--data-dir", str(tmp_path / "d"), "--host", "localhost", "--port", "0", "--no-tls",
        "--models", "echo", env=env,
    )  # fmt: skip
    line = one_line_error(result, 1)
    assert "--no-tls is refused on 'localhost'" in line and "192.0.2.7" in line


# --- usage errors: one line, exit 2 (README) -----------------------------------------------------
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("infer", "echo"), "the following arguments are required: --url, --api-key"),
        (("keys", "revoke"), "one of the arguments --credential --tenant --system is required"),
        (("serve", "--no-tls", "--dev-tls"), "not allowed with argument"),
        (("tenant", "create"), "the following arguments are required: name"),
        (("bench", "scrub", "--json"), "expected one argument"),
        (("no-such-command",), "invalid choice"),
        (("tenant",), "required: {create,list,update,keys,delete}"),
    ],
)
def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str], args: tuple[str, ...], expected: str) -> None:
    line = one_line_error(cli_in_process(capsys, *args), 2)
    assert expected in line and "--help" in line


def test_infer_with_a_url_that_is_no_url_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    key = ("--api-key", "cr_" + "A" * 36)
    result = cli_in_process(capsys, "infer", "echo", "--url", "127.0.0.1:8443", *key)
    assert "is not an http(s) URL" in one_line_error(result, 2)
    items, ticket = tmp_path / "items.jsonl", tmp_path / "job.ticket"
    items.write_text("x\n")
    batch = cli_in_process(
        capsys, "batch", "submit", "echo", "--url", "ftp://h", *key, "--input", str(items), "--ticket", str(ticket)
    )
    assert "is not an http(s) URL" in one_line_error(batch, 2) and not ticket.exists()


# --- infer: stdin to stdout, binary-safe -----------------------------------------------------------
def _infer_args(server: Any) -> list[str]:
    tenant = server.tenants["alpha"]
    return ["infer", "echo", "--url", server.url, "--api-key", tenant["api_key"],
            "--public-key", tenant["public_key"], "--cacert", server.cert]  # fmt: skip


def test_infer_is_binary_safe_through_real_pipes(shared_server: Any) -> None:
    payload = b"\x00\xff\xfe\r\n\x00" + os.urandom(10 * 1024 * 1024 - 6)  # 10 MiB: NULs, not UTF-8
    result = run_cli(*_infer_args(shared_server), input=payload)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == payload and result.stderr == b""


def test_infer_empty_payload_gives_empty_answer(shared_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    result = cli_in_process(capsys, *_infer_args(shared_server), stdin=b"")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""


def test_infer_refusal_is_one_line_exit_1(shared_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    args = _infer_args(shared_server)
    args[1] = "no-such-model"
    line = one_line_error(cli_in_process(capsys, *args, stdin=b"x"), 1)
    assert line.startswith("cleanroom: 404 unknown_model:")


def test_infer_against_an_untrusted_certificate_says_to_give_cacert(
    shared_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _infer_args(shared_server)[:-2]  # no --cacert: the dev certificate is self-signed
    line = one_line_error(cli_in_process(capsys, *args, stdin=b"x"), 1)
    assert "CERTIFICATE_VERIFY_FAILED" in line and "--cacert DATA_DIR/tls/dev-cert.pem" in line


# --- tenant: by name or id, --json keys -----------------------------------------------------------
def test_tenant_delete_takes_the_id_that_create_printed(shared_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = str(shared_server.data_dir)
    created = cli_in_process(capsys, "tenant", "create", "contract-by-id", "--data-dir", data_dir, "--json")
    assert created.returncode == 0, created.stderr
    document = json.loads(created.stdout)
    # DESIGN §5's three keys, and the three README adds (a key added here is a contract change: say so there)
    assert set(document) == {"tenant_id", "api_key", "public_key", "name", "key_id", "fingerprint"}
    deleted = cli_in_process(capsys, "tenant", "delete", document["tenant_id"], "--data-dir", data_dir, "--json")
    assert deleted.returncode == 0 and json.loads(deleted.stdout) == {"deleted": document["tenant_id"]}
    again = cli_in_process(capsys, "tenant", "delete", document["tenant_id"], "--data-dir", data_dir)
    assert "unknown_tenant" in one_line_error(again, 1)


# --- Python: Client as §5 writes it ----------------------------------------------------------------
def test_client_arguments_as_section_5_writes_them(shared_server: Any) -> None:
    """`Client(url, api_key=..., public_key=None, verify=True)`: positional or keyword, as the signature reads."""
    from cleanroom.client import Client

    tenant = shared_server.tenants["alpha"]
    with Client(shared_server.url, tenant["api_key"], tenant["public_key"], shared_server.cert) as client:
        assert client.infer("echo", b"positional") == b"positional"
    with Client(shared_server.url, api_key=tenant["api_key"], verify=Path(shared_server.cert)) as client:
        assert client.infer(model="echo", payload=b"\x00keyword") == b"\x00keyword"
        sealed = client.seal_request("echo", b"sent by the caller")
        answer = httpx.post(
            f"{shared_server.url}/v1/models/echo/infer",
            content=sealed.body,
            headers={
                "Authorization": f"Bearer {tenant['api_key']}",
                "Content-Type": "application/vnd.cleanroom.sealed",
            },
            verify=client_context(shared_server.cert),
        )
        assert answer.status_code == 200
        assert sealed.open_response(answer.content) == b"sent by the caller"


def test_client_call_reaches_a_model_route_bound_to_that_route_only(shared_server: Any) -> None:
    """§5: `.call(path, payload)` is a sealed POST to any path; on a model route it binds the route's path.
    A request sealed to one model's path does not open on another model's route."""
    from cleanroom.client import Client, ClientError

    tenant = shared_server.tenants["alpha"]
    with Client(shared_server.url, api_key=tenant["api_key"], verify=shared_server.cert) as client:
        assert client.call("/v1/models/echo/infer", b"\x00by path") == b"\x00by path"
        sealed = client.seal_request("", b"moved", path="/v1/models/double/infer")
        try:
            with pytest.raises(ClientError) as info:
                client._send("/v1/models/echo/infer", sealed)
        finally:
            sealed.close()
        assert (info.value.status, info.value.code) == (400, "context_mismatch")
        with pytest.raises(ClientError) as info:
            client.call("/v1/models/echo/infer/", b"x")  # not the route's own path: refused, not rebound
        assert info.value.status in (404, 405)


def client_context(cert: str) -> Any:
    import ssl

    return ssl.create_default_context(cafile=cert)


def test_client_verify_takes_a_ca_directory(shared_server: Any, tmp_path: Path) -> None:
    """requests and httpx users pass a CA directory (c_rehash layout) as `verify` too."""
    from cleanroom.client import Client

    digest = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", shared_server.cert], capture_output=True, check=False
    )
    # openssl is on every host that runs this suite (install-test-services.sh needs it for testssl.sh): a
    # failure here is a broken host, said plainly rather than skipped
    assert digest.returncode == 0, f"`openssl x509 -hash` failed: {digest.stderr.decode()[-300:]}"
    (tmp_path / f"{digest.stdout.decode().strip()}.0").write_bytes(Path(shared_server.cert).read_bytes())
    with Client(shared_server.url, api_key=shared_server.tenants["alpha"]["api_key"], verify=str(tmp_path)) as client:
        assert client.infer("echo", b"ca dir") == b"ca dir"


def test_client_verify_path_that_is_no_ca_bundle_names_it(tmp_path: Path) -> None:
    from cleanroom.client import Client

    missing = tmp_path / "nope.pem"
    with pytest.raises(ValueError, match=r"nope\.pem.*no such file"):
        Client("https://127.0.0.1:1", api_key="cr_" + "A" * 36, verify=str(missing))
    not_pem = tmp_path / "notes.txt"
    not_pem.write_text("not a certificate")
    with pytest.raises(ValueError, match=r"notes\.txt.*not a PEM CA bundle"):
        Client("https://127.0.0.1:1", api_key="cr_" + "A" * 36, verify=not_pem)
