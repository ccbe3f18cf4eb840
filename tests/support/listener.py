"""A loopback TCP listener that serves each accepted connection on its own daemon thread.

The fake servers of the client tests (tests/test_client_network.py, tests/test_other_clients.py) differ
only in how they play a connection; this is the part they share: bind, accept, count connections, close.
"""

from __future__ import annotations

import contextlib
import socket
import threading


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
