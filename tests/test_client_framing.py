"""Bytes past the end of an answer never become another call's answer, whatever the path the answer took:
an error answer (read whole, then raised), a BatchClient call (read by httpx, not by `Client`), or a call
from another thread that takes the pooled connection between the answer's end and the framing check.

Each case failed on the tree before the check moved into the body stream's close (efb7287 checked after
the connection was back in the pool, and only on a 2xx answer of `Client._request`).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

import cleanroom.client as client_module
from cleanroom.batch_client import BatchClient
from cleanroom.client import Client, ClientError, UnexpectedResponse
from cleanroom.crypto.sealed import CONTENT_TYPE
from cleanroom.keys.public_key import TenantPublicKey
from support.listener import read_request, sealed_answer

PRIVATE = ec.generate_private_key(ec.SECP384R1())
KEY = TenantPublicKey("t_00112233445566ff", "hk_00112233445566ff", PRIVATE.public_key())
API_KEY = "cr_" + "F" * 36
Script = Callable[[bytes], bytes]  # the request's body -> what the server sends back


def answer(status: bytes, content_type: bytes, body: bytes) -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s" % (status, content_type, len(body), body)


FORGED = answer(b"401 Unauthorized", b"application/json", b'{"error":{"code":"forged","message":"forged"}}')


@contextmanager
def server(script: Script) -> Iterator[list[int]]:
    """127.0.0.1 server answering each request with `script(body)` (answer and surplus in one write);
    yields [url port, connections accepted so far]."""
    listener = socket.create_server(("127.0.0.1", 0))
    state = [listener.getsockname()[1], 0]

    def serve(sock: socket.socket) -> None:
        with sock:
            sock.settimeout(5)
            try:
                while (request := read_request(sock)) is not None:
                    body = request[1]
                    sock.sendall(script(body))
            except OSError:
                pass

    def accept() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            state[1] += 1
            threading.Thread(target=serve, args=(sock,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield state
    finally:
        listener.close()


def client_for(state: list[int]) -> Client:
    return Client(f"http://127.0.0.1:{state[0]}", api_key=API_KEY, public_key=KEY, timeout_s=5)


def test_bytes_past_an_error_answer_are_not_the_next_calls_answer() -> None:
    error = answer(b"404 Not Found", b"application/json", b'{"error":{"code":"not_found","message":"no"}}')
    with server(lambda _body: error + FORGED) as state, client_for(state) as client:
        for _ in range(2):
            with pytest.raises(ClientError) as info:
                client.infer("echo", b"x")
            assert info.value.code == "not_found"  # the server's own answer, twice; never the forged 401
        assert state[1] == 2  # the connection that carried the surplus was dropped


def test_bytes_past_a_batch_status_answer_are_not_the_next_calls_answer() -> None:
    status = answer(b"200 OK", b"application/json", b'{"status":"queued"}')
    with server(
        lambda body: (
            (status if not body else answer(b"200 OK", CONTENT_TYPE.encode(), sealed_answer(body, PRIVATE))) + FORGED
        )
    ) as state:
        with client_for(state) as client:
            assert BatchClient(client).status("b_1")["status"] == "queued"
            with pytest.raises(UnexpectedResponse) as info:
                client.infer("echo", b"x")
            assert info.value.code == "response_framing"  # its own surplus, on a new connection
        assert state[1] == 2


def test_another_call_cannot_take_the_connection_before_its_surplus_is_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another thread's call, made the moment this call's body has been read (where the old check found the
    connection already back in the pool), gets a new connection, not the surplus as its answer."""
    read_bounded = client_module.read_bounded
    other: list[BaseException] = []
    with server(lambda body: answer(b"200 OK", CONTENT_TYPE.encode(), sealed_answer(body, PRIVATE)) + FORGED) as state:
        with client_for(state) as client:

            def read_then_let_another_call_in(*args: object) -> bytes:
                body = read_bounded(*args)  # type: ignore[arg-type]
                if not other:
                    other.append(ClientError(0, "none", "no error"))
                    try:
                        client.infer("echo", b"another thread")
                    except ClientError as exc:
                        other[0] = exc
                return body

            monkeypatch.setattr(client_module, "read_bounded", read_then_let_another_call_in)
            with pytest.raises(UnexpectedResponse) as info:
                client.infer("echo", b"first")
            assert info.value.code == "response_framing"
            assert isinstance(other[0], ClientError) and other[0].code == "response_framing", other[0]
        assert state[1] == 2
