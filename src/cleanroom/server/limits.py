"""Connection limits uvicorn does not enforce by itself, each with a clear JSON answer.

uvicorn's httptools protocol has no header-size limit, no deadline for a request head (a client that
connects and sends one byte every few seconds holds a connection forever: slowloris), and answers its own
limits with text/plain bodies. `hardened_protocol` subclasses it and adds, per connection:

| limit                           | answer                                       |
|---------------------------------|----------------------------------------------|
| request line + headers > N bytes | 431 `request_header_too_large`, closed       |
| head not complete in T seconds   | 408 `request_header_timeout`, closed         |
| body not complete in T seconds   | 408 `request_body_timeout`, closed           |
| malformed HTTP                   | 400 `malformed_http`, closed                 |
| more than N open connections     | 503 `too_many_connections`, closed           |
| more than N requests in flight   | 503 `server_busy` with Retry-After           |
| `Upgrade` with a chunked body     | 400 `unsupported_upgrade`, closed            |
| chunk sizes over the route's limit | 413 `payload_too_large` at the size line, closed |

`Upgrade` (h2c from `curl --http2 http://...`, a websocket-configured proxy in front) is ignored as RFC 9110
§7.8 allows: the request is served over HTTP/1.1 with its Content-Length body. httptools skips the body of
any upgrade request and parses what follows as the next request: the sealed body was dropped (a misleading
400 `invalid_sealed_message`) and, sent in a later packet, a body holding `GET /metrics HTTP/1.1` was
answered as a second request that a proxy in front never saw (request smuggling).

A closed TLS connection waits for the peer's close_notify for up to 30 s (asyncio's and uvloop's
`ssl_shutdown_timeout`, which uvicorn does not expose); an idle client that never reads held every graceful
shutdown for those 30 s and kept counting against the connection limit. Connections we close are
aborted after `close_grace_s` if the peer has not finished the TLS shutdown by then.

It also publishes the TLS session (and a verified client certificate) as the ASGI TLS extension, see
`mtls.tls_extension`. The body-size limit (413) stays in the app, which knows the route's limit, except for
chunked bodies: httptools does not pass the chunk size to `on_chunk_header`, so a size line announcing 1 GiB
was answered only by the 60 s body deadline (408). The protocol now reads the size line of a chunk whose data
is still to come (`_check_open_chunk`) and refuses a body that announces more than the route's limit
(`BodyLimitGuard` supplies it), as soon as that line has arrived.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cleanroom.server.errors import busy_app, raw_error_response
from cleanroom.server.guards import BODY_EXTENSION, ChunkedBody, harden_asgi
from cleanroom.server.headers import ABORT_EXTENSION
from cleanroom.server.mtls import tls_extension


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int = 16 * 1024
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    keep_alive_timeout_s: int = 5
    max_connections: int = 1024
    max_concurrent_requests: int = 512
    close_grace_s: float = 2.0

    def __post_init__(self) -> None:
        for name in (
            "max_header_bytes",
            "header_timeout_s",
            "body_timeout_s",
            "keep_alive_timeout_s",
            "max_connections",
            "max_concurrent_requests",
            "close_grace_s",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


class _HeadTooLarge(Exception):
    pass


# The start of a line left unterminated at the end of a read, kept for the next: a chunk size is at most 16
# hex digits (llhttp refuses a value past 2**64) unless padded with zeros; 64 bytes hold any a client writes.
_LINE_KEEP = 64
_HEX_DIGITS = b"0123456789abcdefABCDEF"


def _chunk_size(line: bytes) -> int | None:
    """The size on a chunk-size line (`HEX[;extensions]CRLF`) that llhttp accepted, or None."""
    try:
        return int(line.split(b";", 1)[0].rstrip(b"\r\n"), 16)
    except ValueError:
        return None


class HardenedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits in the module docstring. Use `hardened_protocol`."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._head_too_large = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._abort_timer: asyncio.TimerHandle | None = None
        self._tls: dict[str, Any] | None = None
        self._upgrade_body_left = 0  # body bytes of an Upgrade request httptools skipped; we read them
        self._chunked: ChunkedBody | None = None  # the request's, when its body is chunked
        self._line_head = b""  # the start of the line the last read left unterminated
        self._body_bytes = 0  # of this request, so far
        self._chunk_bytes = 0  # of the current chunk's data, so far
        self._in_chunk = False  # between a chunk's size line and the CRLF after its data
        self._chunk_began = False  # a size line ended in the read being parsed

    # --- connection ----------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.scheme == "https":
            self._tls = tls_extension(transport.get_extra_info("ssl_object"))
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        super().connection_lost(exc)

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None

    def _abort_if_lingering(self) -> None:
        """After we closed the transport: abort it if the TLS shutdown has not finished in time."""
        if self._abort_timer is None and self.transport is not None and self.transport.is_closing():
            self._abort_timer = self.loop.call_later(self.limits.close_grace_s, self.transport.abort)

    def timeout_keep_alive_handler(self) -> None:
        super().timeout_keep_alive_handler()
        self._abort_if_lingering()

    def shutdown(self) -> None:
        super().shutdown()
        self._abort_if_lingering()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._abort_if_lingering()  # `Connection: close` responses

    # --- request head --------------------------------------------------------------------------------
    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timed_out)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._chunked = None
        self._body_bytes = self._chunk_bytes = 0
        self._in_chunk = False
        self._arm_head_timer()
        if self._tls is not None:
            self.scope["extensions"] = {"tls": self._tls}  # type: ignore[dict-item]

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.limits.max_header_bytes:
            self._head_too_large = True
            raise _HeadTooLarge  # httptools turns it into HttpParserError -> send_400_response

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()
        if self.cycle is not None and self.cycle.scope is self.scope:  # this head's cycle (task not run yet)
            cycle = self.cycle
            scope = cast(dict[str, Any], self.scope)
            scope.setdefault("extensions", {})[ABORT_EXTENSION] = lambda: self._abort_response(cycle)
        if self._body_timer is None and self.cycle is not None and self.cycle.more_body:
            self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_timed_out)
        if self.parser.should_upgrade():
            self._ignore_upgrade()
        else:
            self._expect_body()

    # --- Upgrade: ignored, the body read by Content-Length (module docstring) ------------------------
    def _ignore_upgrade(self) -> None:
        headers = dict(self.headers)  # llhttp already refused duplicate or invalid framing headers
        if b"transfer-encoding" in headers:
            if self.cycle is not None:
                self.cycle.disconnected = True  # the app's sends are dropped; it never sees the request body
                self.cycle.message_event.set()
            self._write_error_and_close(
                400, "unsupported_upgrade", "Upgrade is not supported with a chunked body; send it without Upgrade"
            )
            return
        self._upgrade_body_left = int(headers.get(b"content-length", b"0"))

    def _feed_upgrade_body(self, data: bytes) -> bytes:
        """Hand the skipped body to the request; returns what follows it (the next pipelined request)."""
        take = data[: self._upgrade_body_left]
        self._upgrade_body_left -= len(take)
        if take:
            self.on_body(take)
        if self._upgrade_body_left == 0:
            self.on_message_complete()
        return data[len(take) :]

    # --- chunked bodies: the size of a chunk whose data is still to come ---------------------------------
    def _expect_body(self) -> None:
        if b"transfer-encoding" in dict(self.headers):  # llhttp refused any coding but a final "chunked"
            self._chunked = ChunkedBody()
            cast(dict[str, Any], self.scope).setdefault("extensions", {})[BODY_EXTENSION] = self._chunked

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        self._chunk_bytes += len(body)
        super().on_body(body)

    def on_chunk_header(self) -> None:  # called at the LF of a size line; httptools does not say the size
        self._chunk_bytes = 0
        self._in_chunk = self._chunk_began = True

    def on_chunk_complete(self) -> None:
        self._in_chunk = False

    def _feed(self, data: bytes) -> None:
        """`parser.feed_data(data)`; then, if a chunk began in `data` and its data has not all arrived, its
        size line is the one just before the chunk's last `_chunk_bytes` bytes (the end of `data`)."""
        head, self._chunk_began = self._line_head, False
        newline = data.rfind(b"\n")
        after = newline + 1
        self._line_head = (head + data[:_LINE_KEEP])[:_LINE_KEEP] if newline < 0 else data[after : after + _LINE_KEEP]
        self.parser.feed_data(data)
        chunked = self._chunked
        if chunked is not None and self._in_chunk and self._chunk_began and not self.transport.is_closing():
            self._check_open_chunk(chunked, head, data)

    def _check_open_chunk(self, chunked: ChunkedBody, head: bytes, data: bytes) -> None:
        end = len(data) - self._chunk_bytes  # where the chunk's data starts in `data`
        start = data.rfind(b"\n", 0, max(end - 1, 0)) + 1
        line = data[start:end] if start else head + data[:end]  # begun in an earlier read: `head` has it
        if not start and len(head) >= _LINE_KEEP and not head.strip(_HEX_DIGITS):
            self._refuse_body(400, "malformed_http", "a chunk size is zero-padded past 64 digits")
            return
        size = _chunk_size(line) if line.endswith(b"\r\n") else None
        if size is None:  # a trailer line after the last chunk; or all the data is in, its CRLF not yet
            return
        chunked.announced = self._body_bytes - self._chunk_bytes + size
        if chunked.limit is not None and chunked.announced > chunked.limit:
            message = f"the chunked body announces more than the {chunked.limit}-byte limit"
            self._refuse_body(413, "payload_too_large", message)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, except for Upgrade requests: their body is read here, not dropped or parsed as HTTP."""
        if self.transport.is_closing():
            return
        if self._upgrade_body_left:
            data = self._feed_upgrade_body(data)
            if not data:
                return
        self._unset_keepalive_if_required()
        try:
            self._feed(data)
        except httptools.HttpParserError:
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade as upgrade:  # raised at the end of the head; the parser resumed
            rest = data[int(upgrade.args[0]) :]
            if self._upgrade_body_left and not self.transport.is_closing():
                rest = self._feed_upgrade_body(rest)
            if rest:
                self.data_received(rest)

    def on_message_complete(self) -> None:
        if self._upgrade_body_left:
            return  # httptools skipped an Upgrade request's body: complete once it has been read
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if self._head_too_large:
            self._write_error_and_close(
                431,
                "request_header_too_large",
                f"the request line and headers exceed {self.limits.max_header_bytes} bytes",
            )
        else:
            self._write_error_and_close(400, "malformed_http", "the request is not valid HTTP/1.1")

    def _abort_response(self, cycle: Any) -> None:
        """Cut a response that cannot be finished (its data was shredded mid-stream): the peer sees the
        connection close short of Content-Length, the app's further sends are dropped, and uvicorn does
        not report the unfinished response as a server error."""
        cycle.disconnected = True
        cycle.message_event.set()
        if not self.transport.is_closing():
            self.logger.info("cut a response that could not be completed")
            self.transport.close()
            self._abort_if_lingering()

    # --- timeouts ------------------------------------------------------------------------------------
    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # a pipelined head stalled behind a response in progress
            self._abort_if_lingering()
            return
        self._write_error_and_close(
            408, "request_header_timeout", f"the request head did not arrive within {self.limits.header_timeout_s:g} s"
        )

    def _body_timed_out(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if cycle is None or not cycle.more_body or self.transport.is_closing():
            return
        message = f"the request body did not arrive within {self.limits.body_timeout_s:g} s"
        self._refuse_body(408, "request_body_timeout", message)

    def _refuse_body(self, status: int, code: str, message: str) -> None:
        """Stop reading a request's body: the answer if none has started, else the connection cut."""
        cycle = self.cycle
        if cycle is not None:
            cycle.disconnected = True  # the app's next receive() sees http.disconnect; its sends are dropped
            cycle.message_event.set()
        if cycle is None or not cycle.response_started:
            self._write_error_and_close(status, code, message)
        elif not self.transport.is_closing():
            self.transport.close()
            self._abort_if_lingering()

    def _write_error_and_close(self, status: int, code: str, message: str) -> None:
        self._cancel_timers()
        if not self.transport.is_closing():
            self.logger.warning("refused a request: %s", code)
            self.transport.write(raw_error_response(status, code, message, https=self.scheme == "https"))
            self.transport.close()
            self._abort_if_lingering()

    # --- concurrency ---------------------------------------------------------------------------------
    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if len(self.connections) > self.limits.max_connections:
            app = busy_app(
                "too_many_connections", "the server has too many open connections; retry shortly", close=True
            )
        elif len(self.tasks) >= self.limits.max_concurrent_requests:
            app = busy_app("server_busy", "the server is at its concurrent request limit; retry shortly", close=False)
        super()._start_asgi_task(cycle, app)


def hardened_protocol(limits: ConnectionLimits) -> type[HardenedHttpToolsProtocol]:
    """A protocol class bound to `limits`, for `uvicorn.Config(http=...)`."""
    return type("CleanroomHttpProtocol", (HardenedHttpToolsProtocol,), {"limits": limits})


__all__ = [
    "BODY_EXTENSION",
    "ChunkedBody",
    "ConnectionLimits",
    "HardenedHttpToolsProtocol",
    "harden_asgi",
    "hardened_protocol",
]
