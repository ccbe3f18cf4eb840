"""A loopback TCP listener that serves each accepted connection on its own daemon thread.

The fake servers of the client tests (tests/test_client_network.py, tests/test_other_clients.py) differ
only in how they play a connection; this is the part they share: bind, accept, count connections, close.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any


class ThreadedListener:
    """Subclasses implement `serve(sock)`; `connections` counts accepted connections, `url` is plain HTTP."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.create_server((host, 0), family=family)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:  # closed
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        with sock:
            sock.settimeout(5)
            with contextlib.suppress(OSError):  # the client went away: nothing to play to
                self.serve(sock)

    def serve(self, sock: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.listener.close()


def read_request(sock: socket.socket) -> tuple[bytes, bytes] | None:
    """One request's (head, body), Content-Length framed as `Client` sends it; None once the peer is gone
    (also mid-body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(v) for k, _, v in (x.partition(b":") for x in head.split(b"\r\n")) if k.lower() == b"content-length"), 0
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        body += chunk
    return head, body


def sealed_answer(body: bytes, private_key: Any) -> bytes:
    """What an honest server answers to the sealed request `body` sent to `private_key`: its payload back."""
    from cleanroom.crypto.sealed import open_request_key, parse_request

    opened = open_request_key(parse_request(body), private_key)
    plaintext = bytearray(len(opened.parsed.payload_ciphertext) - 16)
    opened.decrypt_payload_into(plaintext)
    with opened:
        return bytes(opened.seal_response(bytes(plaintext)))
