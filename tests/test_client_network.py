"""`Client` on a bad network, as a stranger would meet it: every failure is a `ClientError` subclass with
the status when one arrived, in bounded time, and a `ConnectionFailed` says whether the request may have
been processed. The servers are raw sockets scripted byte by byte (MockTransport has no clock or socket).
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.client import Client, ClientError, ConnectionFailed, UnexpectedResponse
from cleanroom.crypto.sealed import CONTENT_TYPE
from cleanroom.keys.public_key import TenantPublicKey
from support.listener import ThreadedListener, read_request, sealed_answer

PRIVATE = ec.generate_private_key(ec.SECP384R1())
KEY = TenantPublicKey("t_00112233445566ff", "hk_00112233445566ff", PRIVATE.public_key())
API_KEY = "cr_" + "N" * 36
SEALED = CONTENT_TYPE.encode()
TIMEOUT_S = 0.6
Script = Callable[[socket.socket, bytes], None]  # (connection, the request's body)


class Fake(ThreadedListener):
    """127.0.0.1 server: each request on each connection is answered by `script`."""

    def __init__(self, script: Script) -> None:
        self.script, self.stop = script, threading.Event()
        super().__init__()

    def serve(self, sock: socket.socket) -> None:
        while not self.stop.is_set() and (request := read_request(sock)) is not None:
            self.script(sock, request[1])


@contextmanager
def fake(script: Script) -> Iterator[Fake]:
    server = Fake(script)
    try:
        yield server
    finally:
        server.stop.set()
        server.close()


def answer(status: bytes, content_type: bytes, body: bytes, extra: bytes = b"") -> bytes:
    head = b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type
    return head + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body + extra


def reset(sock: socket.socket) -> None:
    """Close with a TCP RST (SO_LINGER 0), not a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def call(url: str, **kwargs: object) -> tuple[BaseException, float]:
    """The error of one `infer`, and how long the call took (the client's construction not counted: on a
    loaded box it alone can take a good part of the margins below)."""
    client = Client(url, api_key=API_KEY, public_key=KEY, timeout_s=TIMEOUT_S, **kwargs)  # type: ignore[arg-type]
    with client, pytest.raises(ClientError) as info:
        started = time.monotonic()
        client.infer("echo", b"x")
    return info.value, time.monotonic() - started


# --- the request never arrived: not processed -----------------------------------------------------------


def closed_port_url() -> str:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    return f"http://127.0.0.1:{port}"


def plain_server_spoken_to_in_tls() -> Iterator[str]:
    """A server that answers a TLS ClientHello with plain HTTP: the handshake fails."""

    def script(sock: socket.socket) -> None:
        with sock:
            sock.recv(4096)
            sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=lambda: script(listener.accept()[0]), daemon=True).start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


@pytest.mark.parametrize("where", ["refused", "dns", "tls-handshake"])
def test_a_request_that_never_arrived_is_connection_failed_not_processed(where: str) -> None:
    if where == "refused":
        error, elapsed = call(closed_port_url())
        cause: type[Exception] = httpx.ConnectError
    elif where == "dns":
        error, elapsed = call("http://cleanroom-test-host.invalid:9")  # RFC 6761: never resolves
        cause = httpx.ConnectError
    else:
        servers = plain_server_spoken_to_in_tls()
        error, elapsed = call(next(servers), verify=ssl.create_default_context())
        servers.close()
        cause = httpx.ConnectError
    assert isinstance(error, ConnectionFailed), repr(error)
    assert (error.status, error.code, error.may_have_been_processed) == (0, "connection_failed", False)
    assert "cannot reach http" in error.message and "not processed, a retry is safe" in error.message
    assert isinstance(error.__cause__, cause)
    assert isinstance(error, cause)  # code written for the old contract (httpx errors) still catches it
    assert API_KEY not in str(error)
    assert elapsed < TIMEOUT_S + 2


# --- the request was sent, the answer broke: may have been processed ------------------------------------


def reset_before_answering(sock: socket.socket, body: bytes) -> None:
    reset(sock)


def reset_mid_answer(sock: socket.socket, body: bytes) -> None:
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: " + SEALED + b"\r\nContent-Length: 500\r\n\r\nCRS1\x01")
    reset(sock)


def truncated(sock: socket.socket, body: bytes) -> None:
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: " + SEALED + b"\r\nContent-Length: 100\r\n\r\n" + b"C" * 30)
    sock.shutdown(socket.SHUT_WR)  # a clean FIN, 70 bytes short


def garbage_status_line(sock: socket.socket, body: bytes) -> None:
    sock.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    sock.shutdown(socket.SHUT_WR)


@pytest.mark.parametrize(
    ("script", "status"),
    [(reset_before_answering, 0), (reset_mid_answer, 200), (truncated, 200), (garbage_status_line, 0)],
    ids=["reset-before-answer", "reset-mid-answer", "truncated", "not-http"],
)
def test_an_answer_that_broke_is_connection_lost_may_have_been_processed(script: Script, status: int) -> None:
    with fake(script) as server:
        error, elapsed = call(server.url)
    assert isinstance(error, ConnectionFailed), repr(error)
    assert (error.status, error.code, error.may_have_been_processed) == (status, "connection_lost", True)
    assert "may have been processed" in error.message
    assert isinstance(error.__cause__, httpx.TransportError) and isinstance(error, httpx.TransportError)
    assert elapsed < TIMEOUT_S + 2


def silent(sock: socket.socket, body: bytes) -> None:
    time.sleep(TIMEOUT_S + 1.5)


def silent_after_head(sock: socket.socket, body: bytes) -> None:
    sock.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: " + SEALED + b"\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nCRS1\x01\r\n"
    )
    time.sleep(TIMEOUT_S + 1.5)


def endless_chunks(sock: socket.socket, body: bytes) -> None:
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: " + SEALED + b"\r\nTransfer-Encoding: chunked\r\n\r\n")
    for _ in range(int((TIMEOUT_S + 1.5) / 0.05)):
        sock.sendall(b"1\r\nA\r\n")  # one byte every 50 ms: never a read timeout
        time.sleep(0.05)


def just_in_time(sock: socket.socket, body: bytes) -> None:
    """Each phase answered just before a per-wait timeout would fire: the head, then three body bytes.
    Per-wait timeouts alone take ~2.8 s here (4 waits of 0.54 s, then one of 0.6), far past the bound."""
    time.sleep(TIMEOUT_S * 0.9)
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: " + SEALED + b"\r\nContent-Length: 40\r\n\r\n")
    for byte in b"CRS":
        time.sleep(TIMEOUT_S * 0.9)
        sock.sendall(bytes([byte]))
    time.sleep(TIMEOUT_S * 0.9)


def trickled_head(sock: socket.socket, body: bytes) -> None:
    """Slowloris from the server: one byte of the status line every 0.2 s (each socket wait succeeds;
    httpx's per-wait timeouts held a 0.6 s call for minutes, h11 takes a 16 KiB head)."""
    for byte in b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 40:
        sock.sendall(bytes([byte]))
        time.sleep(0.2)


@pytest.mark.parametrize(
    ("script", "status"),
    [(silent, 0), (silent_after_head, 200), (endless_chunks, 200), (just_in_time, 200), (trickled_head, 0)],
    ids=["silent", "silent-after-head", "endless-chunks", "just-in-time", "trickled-head"],
)
def test_no_complete_answer_within_timeout_s_is_response_timeout(script: Script, status: int) -> None:
    with fake(script) as server:
        error, elapsed = call(server.url)
    assert isinstance(error, ConnectionFailed), repr(error)
    assert (error.status, error.code, error.may_have_been_processed) == (status, "response_timeout", True)
    assert isinstance(error, httpx.TimeoutException)
    assert elapsed < TIMEOUT_S + 0.4, elapsed  # timeout_s bounds the call, not each wait


# --- answers that are not answers -----------------------------------------------------------------------


def test_bytes_past_the_content_length_are_refused_and_never_read_as_the_next_answer() -> None:
    forged = answer(b"401 Unauthorized", b"application/json", b'{"error":{"code":"forged","message":"forged"}}')

    def honest_plus_forged(sock: socket.socket, body: bytes) -> None:
        sock.sendall(answer(b"200 OK", SEALED, sealed_answer(body, PRIVATE), extra=forged))

    with fake(honest_plus_forged) as server, Client(server.url, api_key=API_KEY, public_key=KEY) as client:
        with pytest.raises(UnexpectedResponse) as info:
            client.infer("echo", b"first")
        assert (info.value.status, info.value.code) == (200, "response_framing")
        assert str(len(forged)) in info.value.message
        # the next call opens a new connection: the forged 401 is never anybody's answer
        with pytest.raises(UnexpectedResponse):
            client.infer("echo", b"second")
        assert server.connections == 2


def test_redirect_to_another_host_is_not_followed_and_gets_no_api_key() -> None:
    seen: list[bytes] = []

    def record(sock: socket.socket, body: bytes) -> None:
        seen.append(body)
        sock.sendall(answer(b"200 OK", SEALED, sealed_answer(body, PRIVATE)))

    with fake(record) as other:

        def redirect(sock: socket.socket, body: bytes) -> None:
            location = other.url.replace("127.0.0.1", "localhost").encode() + b"/v1/models/echo/infer"
            sock.sendall(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n")

        with fake(redirect) as server:
            error, _ = call(server.url)
    assert isinstance(error, UnexpectedResponse) and error.status == 307 and "not followed" in error.message
    assert other.connections == 0 and not seen


@pytest.mark.parametrize(
    ("status", "content_type", "body", "code", "shown"),
    [
        (b"200 OK", b"text/plain", b"hello", "unexpected_response", "text/plain"),
        (b"200 OK", b"application/json", b'{"ok": true}', "unexpected_response", "application/json"),
        (
            b"502 Bad Gateway",
            b"text/html",
            b"<html><title>502 Bad Gateway</title><body>nginx</body>",
            "http_error",
            "502 Bad Gateway",
        ),
        (b"503 Service Unavailable", b"text/plain", b"upstream connect error", "http_error", "upstream connect error"),
    ],
    ids=["200-text", "200-json", "502-html", "503-text"],
)
def test_wrong_content_type_or_a_proxy_page_is_a_client_error_with_the_status(
    status: bytes, content_type: bytes, body: bytes, code: str, shown: str
) -> None:
    with fake(lambda sock, _: sock.sendall(answer(status, content_type, body))) as server:
        error, _ = call(server.url)
    assert type(error) in (ClientError, UnexpectedResponse) and not isinstance(error, ConnectionFailed)
    assert (error.status, error.code) == (int(status.split()[0]), code)
    assert shown in error.message


def test_a_content_encoding_that_does_not_decode_is_unexpected_response() -> None:
    def bad_gzip(sock: socket.socket, body: bytes) -> None:
        sock.sendall(answer(b"200 OK", SEALED + b"\r\nContent-Encoding: gzip", b"not gzip at all"))

    with fake(bad_gzip) as server:
        error, _ = call(server.url)
    assert isinstance(error, UnexpectedResponse) and error.status == 200 and "decode" in error.message


def test_an_endless_html_error_page_ends_within_timeout_s() -> None:
    """The error body was read without a deadline: a proxy trickling its 502 page held the call."""

    def trickled_502(sock: socket.socket, body: bytes) -> None:
        sock.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(int((TIMEOUT_S + 1.5) / 0.05)):
            sock.sendall(b"1\r\n<\r\n")
            time.sleep(0.05)

    with fake(trickled_502) as server:
        error, elapsed = call(server.url)
    assert isinstance(error, ConnectionFailed) and (error.status, error.code) == (502, "response_timeout")
    assert elapsed < TIMEOUT_S + 0.4


def test_batch_client_calls_fail_the_same_way() -> None:
    """BatchClient posts and polls through the same httpx client: a refusal was a raw httpx error, a
    proxy's 200 page a ValueError from `.json()`."""
    from cleanroom.batch_client import BatchClient

    with Client(closed_port_url(), api_key=API_KEY, public_key=KEY, timeout_s=TIMEOUT_S) as client:
        with pytest.raises(ConnectionFailed) as refused:
            BatchClient(client).status("b_0")
        assert (refused.value.code, refused.value.may_have_been_processed) == ("connection_failed", False)
    portal = answer(b"200 OK", b"text/html", b"<html>portal</html>")
    with fake(lambda sock, _: sock.sendall(portal)) as server:
        client = Client(server.url, api_key=API_KEY, public_key=KEY, timeout_s=TIMEOUT_S)
        with client, pytest.raises(UnexpectedResponse) as page:
            BatchClient(client).status("b_0")
    assert page.value.status == 200


@pytest.mark.parametrize(
    ("status", "content_type", "body", "code", "shown"),
    [
        (b"200 OK", b"text/html", b"<html>router login</html>", "unexpected_response", "not JSON"),
        (b"403 Forbidden", b"application/json", b'{"error": "nope"}', "http_error", "nope"),
    ],
    ids=["200-html", "error-not-an-object"],
)
def test_admin_api_answers_that_are_not_its_json_are_cleanroom_errors(
    tmp_path: Path, status: bytes, content_type: bytes, body: bytes, code: str, shown: str
) -> None:
    """The CLI reported the first as 'a file is not valid JSON ... corrupt or truncated?' and the second as
    an unexpected TypeError blaming the data dir."""
    from cleanroom.admin_client import AdminAPI
    from cleanroom.errors import CleanroomError

    token = tmp_path / "admin-token"
    token.write_text("t" * 40)
    with fake(lambda sock, _: sock.sendall(answer(status, content_type, body))) as server:
        api = AdminAPI({"url": server.url, "admin_token_file": str(token)})
        try:
            with pytest.raises(CleanroomError) as info:
                api.request("GET", "/v1/admin/tenants")
        finally:
            api.close()
    assert info.value.code == code and shown in info.value.message


def test_every_pool_the_client_may_use_cuts_its_waits_to_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deadline lives in httpcore's network backend, reached through private attributes: an httpx or
    httpcore upgrade that moves them must fail here, not silently bring back per-wait timeouts."""
    from cleanroom.client_network import _DeadlineBackend

    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # a remote URL goes through an env proxy mount
    for url in ("http://127.0.0.1:9", "https://cleanroom.invalid"):
        with Client(url, api_key=API_KEY, public_key=KEY) as client:
            http: object = client._http
            pools = [t._pool for t in [http._transport, *http._mounts.values()] if t is not None]  # type: ignore[attr-defined]
            assert pools and all(isinstance(p._network_backend, _DeadlineBackend) for p in pools)
