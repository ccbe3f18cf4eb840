"""Red-team inputs against a real server and the CLI, each one a bug found by hand and fixed.

Every input here got a 500, a traceback in the log, a hang, a half-written key, a wrong status or a
misleading header before its fix. What the other hostile-input suites already cover (test_fuzz,
test_hostile_json, test_headers, test_batch_jobs) is not repeated.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cleanroom.batch_client import BatchClient
from cleanroom.cli import main
from cleanroom.client import ClientError
from cleanroom.crypto.sealed import CONTENT_TYPE
from support.hardening import (
    json_error,
    open_socket,
    read_response,
    server_errors_in_log,
    serving_tenants,
)
from support.server import REPO, server_env, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    handle = start_server(tmp_path_factory.mktemp("attack") / "data", "--models", "echo")
    with serving_tenants(handle, "alpha", "beta"):
        yield handle


def raw_exchange(server: Any, head_lines: list[str], body: bytes = b"", timeout_s: float = 10) -> Any:
    """Send a request written by hand (duplicate headers, lying lengths); return (status, headers, body)."""
    context = ssl.create_default_context(cafile=server.cert)
    head = "\r\n".join([*head_lines, "Host: 127.0.0.1", "Connection: close"]) + "\r\n\r\n"
    with open_socket(server.url, context, timeout_s=timeout_s) as sock:
        sock.sendall(head.encode("latin-1") + body)
        return read_response(sock, head_request=head_lines[0].startswith("HEAD "))


def admin_headers(server: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {(Path(server.data_dir) / 'admin.token').read_text().strip()}"}


# --- admin API ----------------------------------------------------------------------------------------
def test_admin_body_is_not_read_before_the_admin_token(server: Any) -> None:
    # FastAPI read and parsed a body parameter before the handler checked the token: a client without one
    # could make the server buffer any amount of JSON (300 MB took 600 MB of RSS), or hold the request open
    # for the whole body timeout by announcing a body it never sends.
    started = time.monotonic()
    status, _, body = raw_exchange(
        server,
        ["POST /v1/admin/tenants HTTP/1.1", "Content-Type: application/json", f"Content-Length: {200 << 20}"],
        b'{"name": "',
    )
    assert status == 401 and json_error(body)["code"] == "unauthenticated"
    assert time.monotonic() - started < 5


def test_admin_bodies_are_bounded_even_with_the_token(server: Any) -> None:
    with server.http() as http:
        response = http.post(
            "/v1/admin/tenants", content=b'{"name": "' + b"a" * 100_000 + b'"}', headers=admin_headers(server)
        )
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize(
    "body",
    [
        b'{"expires_in_s": 1e400}',  # JSON's 1e400 is inf: stored as `Infinity`, then the response failed (500)
        b'{"expires_in_s": 1e308}',  # a credential for 3e300 years
        b'{"label": "a\\u0000b"}',
        b'{"label": "line\\nbreak"}',
        b"",
        b"[" * 5000,
    ],
)
def test_bad_credential_requests_are_422_and_store_nothing(server: Any, body: bytes) -> None:
    path = "/v1/admin/tenants/alpha/keys"
    with server.http() as http:
        before = http.get(path, headers=admin_headers(server)).json()["credentials"]
        response = http.post(path, content=body, headers={**admin_headers(server), "Content-Type": "application/json"})
        after = http.get(path, headers=admin_headers(server)).json()["credentials"]
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    assert after == before, "a refused request still stored a credential"
    assert "Infinity" not in (Path(server.data_dir) / "tenants.json").read_text()


def test_a_valid_credential_request_still_works(server: Any) -> None:
    with server.http() as http:
        response = http.post(
            "/v1/admin/tenants/beta/keys",
            json={"label": "ci runner ✓", "expires_in_s": 86400},
            headers=admin_headers(server),
        )
    assert response.status_code == 201, response.text
    assert response.json()["api_key"].startswith("cr_")


# --- routing and headers ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/healthz", "GET, HEAD"),  # was `Allow: HEAD`: two routes, Starlette named the first only
        ("PUT", "/readyz", "GET, HEAD"),
        ("POST", "/v1/batches/b_x", "DELETE, GET"),  # was `Allow: GET`
        ("GET", "/v1/models/echo/infer", "POST"),
    ],
)
def test_405_names_every_method_the_path_serves(server: Any, method: str, path: str, allowed: str) -> None:
    with server.http() as http:
        response = http.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize("path", ["/v1/models/echo/infer/", "/healthz/", "/v1/batches/"])
def test_a_trailing_slash_is_a_json_404_not_a_redirect_to_the_clients_host(server: Any, path: str) -> None:
    # Was a 307 with an empty body and `Location: https://<the client's Host header>/...`.
    status, headers, body = raw_exchange(server, [f"POST {path} HTTP/1.1", "Content-Length: 0"])
    assert status == 404 and "location" not in headers
    assert json_error(body)["code"] == "not_found"


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ("Authorization: Bearer cr_" + "A" * 36, "duplicate_header"),  # the first one used to win
        ("Content-Type: text/plain", "duplicate_header"),
    ],
)
def test_duplicate_singleton_headers_are_refused(server: Any, extra: str, code: str) -> None:
    key = server.tenants["alpha"]["api_key"]
    status, _, body = raw_exchange(
        server,
        [
            "POST /v1/models/echo/infer HTTP/1.1",
            f"Authorization: Bearer {key}",
            f"Content-Type: {CONTENT_TYPE}",
            extra,
            "Content-Length: 3",
        ],
        b"abc",
    )
    assert status == 400 and json_error(body)["code"] == code


def test_a_duplicate_authorization_header_is_refused_on_get_routes_too(server: Any) -> None:
    key = server.tenants["alpha"]["api_key"]
    status, _, body = raw_exchange(
        server,
        ["GET /v1/tenants/self/public-key HTTP/1.1", f"Authorization: Bearer {key}", f"Authorization: Bearer {key}x"],
    )
    assert status == 400 and json_error(body)["code"] == "duplicate_header"


@pytest.mark.parametrize("coding", ["gzip", "br", "identity, gzip", "identity"])
def test_a_content_encoding_on_a_sealed_body_is_415_unless_identity(server: Any, coding: str) -> None:
    with server.client("alpha") as client:
        sealed = client.seal_request("echo", b"plain")
        with server.http() as http:
            response = http.post(
                "/v1/models/echo/infer",
                content=sealed.body,
                headers={
                    "Authorization": f"Bearer {server.tenants['alpha']['api_key']}",
                    "Content-Type": CONTENT_TYPE,
                    "Content-Encoding": coding,
                },
            )
        if coding == "identity":
            assert response.status_code == 200 and sealed.open_response(response.content) == b"plain"
        else:
            assert response.status_code == 415 and response.json()["error"]["code"] == "unsupported_content_encoding"


# --- batch results cut by a cancel ---------------------------------------------------------------------
def test_cancel_during_a_results_download_cuts_it_without_a_server_error(server: Any) -> None:
    # The results stream raised BatchGone after the 200 head was sent: uvicorn logged "Exception in ASGI
    # application" with a traceback. Now the connection is closed short of Content-Length, quietly.
    with server.client("alpha") as client:
        batches = BatchClient(client)
        handle = batches.submit("echo", [os.urandom(4 << 20) for _ in range(8)])  # 32 MiB of results
        with handle:
            assert batches.wait(handle.batch_id, timeout_s=60, poll_s=0.1)["status"] == "succeeded"
            context = ssl.create_default_context(cafile=server.cert)
            with open_socket(server.url, context, timeout_s=30) as sock:
                key = server.tenants["alpha"]["api_key"]
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
                request = (
                    f"GET /v1/batches/{handle.batch_id}/results HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: Bearer {key}\r\nConnection: close\r\n\r\n"
                )
                sock.sendall(request.encode())
                head = b""
                while b"\r\n\r\n" not in head:
                    head += sock.recv(4096)
                assert head.startswith(b"HTTP/1.1 200 ")
                declared = int(
                    next(
                        line.split(b":")[1]
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    )
                )
                time.sleep(0.5)  # the server is now blocked on a full socket, mid-stream
                cancelled = batches.cancel(handle.batch_id)
                assert cancelled["status"] == "cancelled"
                received = len(head.partition(b"\r\n\r\n")[2])
                while chunk := sock.recv(1 << 20):
                    received += len(chunk)
            assert received < declared, "the download should have been cut short"
    with server.http() as http:
        gone = http.get(f"/v1/batches/{handle.batch_id}/results", headers={"Authorization": f"Bearer {key}"})
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "batch_cancelled"
    time.sleep(0.2)
    problems = server_errors_in_log(server.log_path)
    assert not problems, "\n".join(problems[:5])


def test_concurrent_fetches_and_cancels_never_cause_a_server_error(server: Any) -> None:
    with server.client("beta") as client:
        batches = BatchClient(client)
        handle = batches.submit("echo", [os.urandom(1 << 20) for _ in range(4)])
        with handle:
            assert batches.wait(handle.batch_id, timeout_s=60, poll_s=0.1)["status"] == "succeeded"
            statuses: list[int] = []
            key = server.tenants["beta"]["api_key"]

            def call(method: str, suffix: str) -> None:
                with server.http() as http:
                    try:
                        response = http.request(
                            method, f"/v1/batches/{handle.batch_id}{suffix}", headers={"Authorization": f"Bearer {key}"}
                        )
                        statuses.append(response.status_code)
                    except Exception:  # a cut download: the client sees the connection close early
                        statuses.append(0)

            threads = [
                threading.Thread(target=call, args=args)
                for args in [("GET", "/results"), ("DELETE", ""), ("GET", "/results"), ("DELETE", ""), ("GET", "")]
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
    assert all(s in (0, 200, 410) for s in statuses), statuses
    time.sleep(0.2)
    assert not server_errors_in_log(server.log_path)


# --- CLI ----------------------------------------------------------------------------------------------
def test_a_path_made_to_stall_the_log_redactor_does_not_stall_the_server(server: Any) -> None:
    """One unauthenticated GET with a path of `001001...` (7.8 kB): its access-log line went through the
    redactor on the event loop, where the international phone rule split the digit run every possible way
    (0.6 ms a character): every other request waited 5 s. The rule is possessive now (linear)."""
    import threading
    import time

    with server.http() as http:
        attack = threading.Thread(target=lambda: http.get("/" + "001" * 2600))
        attack.start()
        time.sleep(0.2)
        with server.http() as other:
            started = time.perf_counter()
            assert other.get("/healthz").status_code == 200
            waited = time.perf_counter() - started
        attack.join(60)
    assert waited < 2.0, f"/healthz waited {waited:.1f} s behind one hostile log line"


@pytest.fixture(scope="module")
def base_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("cli") / "data"
    assert main(["tenant", "create", "one", "--data-dir", str(data_dir), "--json"]) == 0
    return data_dir


def corrupt_copy(base: Path, tmp_path: Path, relative: str, content: bytes | None) -> Path:
    data_dir = tmp_path / "data"
    shutil.copytree(base, data_dir)
    target = data_dir / relative
    if content is None:  # a directory where the file should be
        target.unlink()
        target.mkdir()
    else:
        target.write_bytes(content)
    return data_dir


@pytest.mark.parametrize(
    ("relative", "content", "expected"),
    [
        ("tenants.json", b'{"version": 1, "tena', "tenants.json is not valid JSON"),
        ("tenants.json", b"", "tenants.json is not valid JSON"),
        ("tenants.json", b"[]", "may be corrupt"),
        ("tenants.json", b'{"version": 1}', "may be corrupt"),
        ("tenants.json", b"\xff\xfe", "tenants.json is not valid JSON"),
        ("tenants.json", None, "Is a directory"),
        ("kms/master-keys.json", b'{"keys": {"clean', "master-keys.json"),
        ("kms/master-keys.json", b"{}", "master-keys.json"),
    ],
)
def test_a_corrupt_data_dir_is_one_line_not_a_traceback(
    base_data_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    relative: str,
    content: bytes | None,
    expected: str,
) -> None:
    data_dir = corrupt_copy(base_data_dir, tmp_path, relative, content)
    assert main(["tenant", "list", "--data-dir", str(data_dir)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cleanroom: ") and "\n" not in err and expected in err, err
    assert "Traceback" not in err


def test_a_data_dir_that_is_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    assert main(["tenant", "list", "--data-dir", str(not_a_dir)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cleanroom: Not a directory") and "\n" not in err, err


@pytest.mark.parametrize(
    "argv",
    [
        ["exec", "--perturb-byte", "0", "--", "true"],  # 0 turns glibc's perturb off
        ["exec", "--perturb-byte", "999", "--", "true"],  # glibc ignores an out-of-range tunable
        ["exec", "--perturb-byte", "x", "--", "true"],
        ["tenant", "keys", "add", "one", "--expires-in-days", "inf"],  # stored `Infinity` in tenants.json
        ["tenant", "keys", "add", "one", "--expires-in-days", "nan"],  # NaN: a key that never expires
        ["tenant", "create", "two", "--weight", "nan"],
    ],
)
def test_flags_that_would_silently_weaken_a_guarantee_are_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import cleanroom.memory.hardening as hardening

    def no_exec(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"the flag was accepted: {argv}")

    # In process: a regression must fail here, not replace the test run with `true` (exit 0).
    monkeypatch.setattr(hardening, "exec_hardened", no_exec)
    monkeypatch.setattr(hardening, "apply_process_hardening", no_exec)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "must be" in err or "not " in err, err


def test_perturb_byte_accepts_hex() -> None:
    from cleanroom.cli import perturb_byte

    assert perturb_byte("0x5a") == 0x5A and perturb_byte("165") == 165


@pytest.mark.parametrize(
    ("argv", "expected", "status"),
    [
        (["--url", "https://127.0.0.1:1", "--api-key", "cr_x"], "cannot reach https://127.0.0.1:1/", 1),
        # A flag value that is unusable on its face is a usage error (exit 2), before anything is sent.
        (["--url", "not-a-url", "--api-key", "cr_x"], "not an http(s) URL", 2),
        (["--url", "https://127.0.0.1:1", "--api-key", "cr_x", "--pin", "zz"], "64 hex digits", 2),
        (["--url", "https://127.0.0.1:1", "--api-key", "cr_x", "--public-key", "garbage"], "cleanroom-pk:v1:", 2),
        (["--url", "https://127.0.0.1:1", "--api-key", " "], "--api-key is empty", 2),
    ],
)
def test_infer_failures_are_one_line(
    argv: list[str],
    expected: str,
    status: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", open(os.devnull))
    try:
        code = main(["infer", "echo", *argv])
    except SystemExit as exited:
        code = exited.code
    assert code == status
    err = capsys.readouterr().err.strip()
    assert err.startswith("cleanroom: ") and expected in err and "\n" not in err, err
    assert "cr_x" not in err


def test_infer_with_a_missing_cacert_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.pem"
    assert main(["infer", "echo", "--url", "https://127.0.0.1:1", "--api-key", "k", "--cacert", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err


def test_the_real_command_prints_one_line_for_a_truncated_registry(base_data_dir: Path, tmp_path: Path) -> None:
    data_dir = corrupt_copy(base_data_dir, tmp_path, "tenants.json", b'{"version": 1, "tenants": {"t_')
    result = subprocess.run(
        [sys.executable, "-m", "cleanroom", "tenant", "list", "--data-dir", str(data_dir)],
        capture_output=True,
        cwd=REPO,
        timeout=120,
        env=server_env(),
    )
    assert result.returncode == 1
    err = result.stderr.decode().strip()
    assert "Traceback" not in err and err.count("\n") == 0, err
    assert f"{data_dir / 'tenants.json'} is not valid JSON" in err


def test_server_log_is_clean_after_the_attacks(server: Any) -> None:
    assert server.process.poll() is None and server.healthy()
    with server.client("alpha") as client:
        assert client.infer("echo", b"still serving") == b"still serving"
    log = server.log_path.read_text(errors="replace")
    assert not server_errors_in_log(server.log_path)
    assert json.dumps(server.tenants["alpha"]["api_key"])[1:-1] not in log


def test_a_registry_broken_while_serving_is_503_until_fixed(server: Any) -> None:
    """tenants.json edited by hand into invalid JSON while the server runs: requests are refused with a
    503 naming the problem (was: 500 internal_error on every request while /readyz said ready), /readyz
    takes the server out of rotation, and service resumes once the file is fixed. Last in the module: its
    503s are meant, and the log check above must not see them."""
    registry = Path(server.data_dir) / "tenants.json"
    good = registry.read_bytes()
    with server.client("alpha") as client:
        client.public_key()  # fetched while the registry is good
        try:
            for broken in (good[: len(good) // 2], b"[]", b'{"version": 1}'):
                registry.write_bytes(broken)
                with pytest.raises(ClientError) as refused:
                    client.infer("echo", b"x")
                assert (refused.value.status, refused.value.code) == (503, "registry_unreadable"), broken
                with server.http() as http:
                    ready = http.get("/readyz")
                assert ready.status_code == 503 and ready.json()["error"]["code"] == "registry_unreadable"
        finally:
            registry.write_bytes(good)
        assert client.infer("echo", b"back") == b"back"
    with server.http() as http:
        assert http.get("/readyz").status_code == 200
