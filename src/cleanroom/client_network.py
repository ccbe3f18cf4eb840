"""The client's transport: httpx set up so that a bad network or a misbehaving server cannot hang a call,
desynchronise a connection, or reach an environment proxy with a loopback server's API key.

- `network_errors`: httpx's transport failures as `ConnectionFailed`, saying whether the request may have
  been processed; with a deadline, every socket wait inside is cut to it (`_DeadlineBackend`);
- `_FramingGuard`: a surplus after an answer is refused, not read as the next call's answer;
- `http_client`: loopback servers reached directly, never through HTTP(S)_PROXY;
- `read_bounded`: bodies read under a size limit and the call's deadline.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h11
import httpcore
import httpx

from cleanroom.client_errors import ClientError, ConnectionFailed, UnexpectedResponse, _safe_text

_COMPAT_CLASSES: dict[type[httpx.HTTPError], type[ConnectionFailed]] = {}

# the request did not reach the server whole: it cannot have been processed
_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
    httpx.PoolTimeout,
    httpx.WriteError,
    httpx.WriteTimeout,
)


def _compat_class(kind: type[httpx.HTTPError]) -> type[ConnectionFailed]:
    """The ConnectionFailed that is also a `kind` (one per httpx error class, made on first use)."""
    cls = _COMPAT_CLASSES.get(kind)
    if cls is None:
        namespace = {
            "__module__": __name__,
            "__qualname__": "ConnectionFailed",
            "__doc__": ConnectionFailed.__doc__,
            # made at run time, so not importable by name: pickle and copy go through the httpx class
            "__reduce__": lambda self: (_rebuild_compat, (kind, self.args, dict(self.__dict__))),
        }
        cls = _COMPAT_CLASSES[kind] = type("ConnectionFailed", (ConnectionFailed, kind), namespace)
    return cls


def _rebuild_compat(kind: type[httpx.HTTPError], args: tuple[Any, ...], state: dict[str, Any]) -> ConnectionFailed:
    cls = _compat_class(kind)
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


def _connection_failed(cause: httpx.HTTPError, status: int, where: str) -> ConnectionFailed:
    """`cause` as a ConnectionFailed that is also an instance of `type(cause)` (see the class)."""
    kind = type(cause)
    cls = _compat_class(kind)
    request = getattr(cause, "_request", None)
    if request is not None:  # the route, without query or userinfo (netloc is host:port only)
        where = f"{request.url.scheme}://{request.url.netloc.decode('ascii', 'replace')}{request.url.path}"
    detail = _safe_text(f"{kind.__name__}: {cause}", 300)
    if isinstance(cause, _NOT_SENT):
        code, processed = "connection_failed", False
        text = f"cannot reach {where} ({detail}); the request was not processed, a retry is safe"
        if "CERTIFICATE_VERIFY_FAILED" in str(cause):
            text += (
                "; the server's certificate is not trusted: give its CA bundle (verify=, or"
                " --cacert DATA_DIR/tls/dev-cert.pem for the dev certificate)"
            )
    elif isinstance(cause, httpx.TimeoutException):
        code, processed = "response_timeout", True
        text = f"no complete answer from {where} in time ({detail}); the request was sent and may have been processed"
    else:
        code, processed = "connection_lost", True
        text = f"the connection to {where} broke after the request was sent ({detail}); it may have been processed"
    error = cls(status, code, text, may_have_been_processed=processed)
    error._request = request  # type: ignore[attr-defined]  # httpx's `.request`, for code that reads it
    return error


@contextlib.contextmanager
def network_errors(where: str, status: list[int], deadline: float | None = None) -> Iterator[None]:
    """httpx's transport failures as `ConnectionFailed` (`status[0]`: the HTTP status once it arrived);
    with a `deadline` (monotonic), no socket wait inside goes past it."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    except ClientError:
        raise  # ours, ConnectionFailed included (it is an httpx error too)
    except httpx.DecodingError as exc:  # a Content-Encoding that does not decode: the body is not an answer
        raise UnexpectedResponse(status[0], f"the answer does not decode ({_safe_text(str(exc), 200)})") from exc
    except httpx.RequestError as exc:
        raise _connection_failed(exc, status[0], where) from exc
    finally:
        _DEADLINE.reset(token)


# The deadline of the call this thread is making (`network_errors` sets it): every socket wait is cut to it.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("cleanroom_client_deadline", default=None)


def _time_left(timeout: float | None) -> float | None:
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    left = max(0.001, deadline - time.monotonic())  # never 0: that would make the socket non-blocking
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write waits at most until the call's deadline.

    httpx's timeouts are per socket wait: a server sending one byte of its status line just before each
    read timeout held a call with `timeout_s=0.6` for minutes (h11 accepts a 16 KiB head)."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _time_left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _time_left(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, _time_left(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, _time_left(timeout), local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.connect_unix_socket(path, _time_left(timeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def harden_pools(client: httpx.Client) -> int:
    """Fit every pool `client` may use (direct, env proxies) with the deadline-cut network backend and the
    framing check (`_FramingGuard`); returns how many pools.

    httpx takes no network backend and no per-connection hook, so this sets httpcore's pool attributes
    (httpx 0.28 / httpcore 1.0; tests/test_client_network.py and tests/test_client_framing.py fail if an
    upgrade moves them)."""
    hardened = 0
    private: Any = client
    for transport in [private._transport, *private._mounts.values()]:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if backend is not None and not isinstance(backend, _DeadlineBackend):
            pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]
            pool.handle_request = _guarded(pool.handle_request)  # type: ignore[union-attr]
            hardened += 1
    return hardened


# Where an answer's `_FramingGuard` is found (httpx copies httpcore's extensions dict, not its values).
FRAMING = "cleanroom.framing"


class _FramingGuard:
    """An answer's body stream that, when closed, refuses bytes past the answer's end.

    httpcore keeps a connection whose server sent more than its Content-Length (or after its last chunk)
    and parses the surplus as the answer to the NEXT request on it: a desync that lets whoever wrote the
    surplus answer a later call (sealing stops a forged sealed answer, not a forged error or key document).
    httpcore checks only the socket when it reuses a connection, not what h11 already buffered. The check
    runs here, in `close`, before the connection goes back to the pool: checked after the release (as
    efb7287 did), another thread's call could take the connection first and read the surplus as its own
    answer, and an error answer (a 4xx read whole, then raised) was never checked at all. Every call on
    the pool passes here, BatchClient's and non-streamed ones included."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.surplus = 0

    def __iter__(self) -> Iterator[bytes]:
        yield from self._inner

    def close(self) -> None:
        connection = getattr(getattr(self._inner, "_stream", None), "_connection", None)
        state = getattr(connection, "_h11_state", None)
        if isinstance(state, h11.Connection) and state.their_state is h11.DONE:  # the answer was read whole
            surplus, _closed = state.trailing_data
            if surplus:
                self.surplus = len(surplus)
                state.send_failed()  # h11 in ERROR: httpcore closes the connection instead of pooling it
        self._inner.close()


def _guarded(handle_request: Any) -> Any:
    def handle(request: httpcore.Request) -> httpcore.Response:
        response: httpcore.Response = handle_request(request)
        guard = _FramingGuard(response.stream)
        response.stream = guard
        response.extensions[FRAMING] = guard
        return response

    return handle


def bytes_past_the_end(response: httpx.Response) -> int:
    """How many bytes came past the end of `response` (known once its body is read and closed); the
    connection that carried them has been dropped."""
    guard = response.extensions.get(FRAMING)
    return guard.surplus if isinstance(guard, _FramingGuard) else 0


def _ca_context(verify: str | Path) -> ssl.SSLContext:
    """`verify=PATH`: a CA bundle file or a CA directory (c_rehash layout), as httpx and requests take it;
    a path that is neither is a ValueError naming it, not an OSError without a file name."""
    path = Path(verify)
    try:
        if path.is_dir():
            return ssl.create_default_context(capath=str(path))
        return ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        why = "no such file" if not path.exists() else f"not a PEM CA bundle ({exc})"
        raise ValueError(
            f"verify={str(verify)!r}: {why}; give a CA bundle (PEM), a CA directory, True or False"
        ) from None


def is_loopback_host(host: str) -> bool:
    """localhost (and *.localhost, RFC 6761), 127.0.0.0/8, ::1 and ::ffff:127.x: this machine."""
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def http_client(url: str, verify: bool | ssl.SSLContext, **kwargs: Any) -> httpx.Client:
    """An httpx client for `url` that takes HTTP(S)_PROXY/ALL_PROXY from the environment, except for a
    server on this machine: that one is always reached directly (NO_PROXY semantics for loopback).

    A proxy in the environment is fine for sealed traffic over TLS (it sees a CONNECT and ciphertext), but a
    plain-HTTP loopback server behind HTTP_PROXY sent the API key in clear to the proxy, and a dead or SOCKS
    proxy (ImportError without socksio) broke every call to 127.0.0.1. An explicit transport is how httpx
    skips the environment's proxies and still honours SSL_CERT_FILE."""
    direct = is_loopback_host(httpx.URL(url).host)
    transport = httpx.HTTPTransport(verify=verify) if direct else None
    try:
        return httpx.Client(base_url=url, verify=verify, transport=transport, **kwargs)
    except ImportError as exc:  # ALL_PROXY=socks5://... without httpx[socks]
        raise ValueError(f"a proxy in the environment cannot be used: {exc} (or add the host to NO_PROXY)") from None


def read_bounded(response: httpx.Response, limit_bytes: int, deadline: float | None) -> bytes:
    """The body of a streamed `response`, refused past `limit_bytes` or past `deadline` (monotonic)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit_bytes:
        raise UnexpectedResponse(response.status_code, f"answer over {limit_bytes} bytes", "response_too_large")
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > limit_bytes:
            raise UnexpectedResponse(response.status_code, f"answer over {limit_bytes} bytes", "response_too_large")
        if deadline is not None and time.monotonic() > deadline:
            # a trickle (a byte now and then, never a read timeout) ends here; also an httpx.ReadTimeout
            raise _connection_failed(
                httpx.ReadTimeout("the answer did not arrive within timeout_s"), response.status_code, "the server"
            )
    return bytes(body)
