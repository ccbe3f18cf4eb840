"""`Client`: seal requests to a tenant's key, send them, open the answers.

    client = Client("https://127.0.0.1:8443", api_key="cr_...", verify="cleanroom-data/tls/dev-cert.pem")
    result = client.infer("echo", b"hello")

The client fetches the tenant's public key once (or takes it from `public_key=`), draws a fresh content
key per request, and checks that each response is the answer to the request it sent.

Pinning: `public_key=` (a token) or `pin=` (its SHA-256 fingerprint, as `tenant create --json` prints)
makes the client refuse every other key — unless the server proves a rotation with a chain of signatures
from the pinned key to the new one (`keys.public_key.follow_pin`). The pin then advances in memory
(`client.pinned_fingerprint`; persist it if you keep the client's configuration).
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import json
import re
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import httpcore
import httpx

from cleanroom.crypto.sealed import CONTENT_TYPE, SealedRequest, seal_request
from cleanroom.keys.public_key import PREFIX, KeyPinMismatch, TenantPublicKey, follow_pin

_STALE_KEY_CODES = frozenset({"key_expired", "unknown_key_id"})
DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024 * 1024
# An error or key document is small; a server or proxy that sends more is not answering what we asked.
MAX_DOCUMENT_BYTES = 64 * 1024
MAX_ERROR_MESSAGE_CHARS = 500
_CODE_RE = re.compile(r"^[a-z0-9_]{1,64}$")
_UNSAFE_CHARS_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_KEY_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")  # what a sealed request can carry (wire-format.md)
_PUBLIC_KEY_SUITE = "DHKEM(P-384,HKDF-SHA384)/HKDF-SHA384/AES-256-GCM"


def _safe_text(text: str, limit: int = MAX_ERROR_MESSAGE_CHARS) -> str:
    """Server-chosen text made safe to log: bounded, one line, no terminal or bidi control characters."""
    cut = text[: limit + 1]
    cleaned = _UNSAFE_CHARS_RE.sub("?", cut[:limit])
    return cleaned + "..." if len(cut) > limit else cleaned


class ClientError(Exception):
    """The server refused a request; `status` and `code` are the server's.

    `message` is the server's text, cut to 500 characters with control characters replaced (safe to log);
    a `code` that is not a plain lowercase identifier is reported as `http_error`.
    """

    def __init__(self, status: int, code: str, message: str) -> None:
        code = code if _CODE_RE.match(code) else "http_error"
        message = _safe_text(message)
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class UnexpectedResponse(ClientError):
    """The server (or something on the way) answered with something that is not a valid answer.

    A redirect, a success without a sealed body, a body over the client's size limit, a response that
    ends too late, a malformed public-key document. Nothing of it is returned as the model's answer.
    """

    def __init__(self, status: int, message: str, code: str = "unexpected_response") -> None:
        super().__init__(status, code, message)


class ConnectionFailed(ClientError):
    """The network failed: no complete answer came back. `status` is the HTTP status if it had arrived,
    else 0; the httpx error is `__cause__`.

    `may_have_been_processed` is what a retry decision needs. False (code `connection_failed`): the request
    never reached the server whole — connection refused, DNS failure, TLS handshake or certificate failure,
    a proxy's refusal, a connect timeout, a failed write. True: it was sent and the answer broke (code
    `connection_lost`: reset, truncated, malformed) or did not come within `timeout_s` (`response_timeout`):
    the model may have run. A retry seals a new request, so it is never refused as a replay.

    Code written before this class (the network was `httpx.HTTPError`) keeps working: each instance is
    also an instance of the httpx error it replaces (`except httpx.ConnectError` still catches a refusal).
    """

    def __init__(self, status: int, code: str, message: str, *, may_have_been_processed: bool) -> None:
        super().__init__(status, code, message)
        self.may_have_been_processed = may_have_been_processed


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


def _connection_failed(cause: httpx.HTTPError, status: int, where: str) -> ConnectionFailed:
    """`cause` as a ConnectionFailed that is also an instance of `type(cause)` (see the class)."""
    kind = type(cause)
    cls = _COMPAT_CLASSES.get(kind)
    if cls is None:
        namespace = {"__module__": __name__, "__qualname__": "ConnectionFailed", "__doc__": ConnectionFailed.__doc__}
        cls = _COMPAT_CLASSES[kind] = type("ConnectionFailed", (ConnectionFailed, kind), namespace)
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


def _cut_waits_to_the_deadline(client: httpx.Client) -> int:
    """Wrap the network backend of every pool `client` may use (direct, env proxies); returns how many.

    httpx takes no network backend, so this sets httpcore's pool attribute (httpx 0.28 / httpcore 1.0;
    tests/test_client_network.py fails if an upgrade moves it)."""
    wrapped = 0
    private: Any = client
    for transport in [private._transport, *private._mounts.values()]:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if backend is not None and not isinstance(backend, _DeadlineBackend):
            pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]
            wrapped += 1
    return wrapped


def _bytes_past_the_end(response: httpx.Response) -> tuple[int, Any]:
    """How many bytes the connection already holds past the end of `response`, and that connection.

    httpcore keeps a connection whose server sent more than its Content-Length (or after its last chunk)
    and parses the surplus as the answer to the NEXT request on it: a desync that lets whoever wrote the
    surplus answer a later call (sealing stops a forged sealed answer, not a forged error or key document).
    httpcore checks only the socket when it reuses a connection, not what h11 already buffered, so this
    looks there: private attributes of httpx 0.28 / httpcore 1.0 — tests/test_client_network.py fails
    if an upgrade moves them."""
    stream: Any = response.stream
    try:
        connection = stream._stream._httpcore_stream._stream._connection
        surplus, _closed = connection._h11_state.trailing_data
    except AttributeError:
        return 0, None
    return len(surplus), connection


def load_public_key(value: str | Path) -> TenantPublicKey:
    """A public-key token, or a file holding one (or the JSON that `tenant create --json` prints)."""
    text = str(value)
    if not text.startswith("cleanroom-pk:") and Path(text).exists():
        text = Path(text).read_text(encoding="utf-8").strip()
        if text.startswith("{"):
            text = str(json.loads(text)["public_key"])
    return TenantPublicKey.parse(text)


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


def _parse_public_key_document(status: int, body: bytes) -> tuple[TenantPublicKey, list[Any]]:
    """`GET /v1/tenants/self/public-key`'s answer, checked as docs/wire-format.md says before any sealing.

    `fingerprint` is not compared: whoever forges a document sets it to match, and the pin (not this
    field) is what protects a client; tests/test_key_pinning.py swaps keys without updating it.
    """
    try:
        document: Any = json.loads(body)
        current = TenantPublicKey.parse(str(document["public_key"]))
        consistent = (
            document.get("tenant_id") == current.tenant_id
            and document.get("key_id") == current.key_id
            and document.get("suite") == _PUBLIC_KEY_SUITE
            and _KEY_ID_RE.match(current.key_id) is not None
            and isinstance(document.get("chain", []), list)
        )
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise UnexpectedResponse(status, "malformed public-key document", "invalid_public_key") from None
    if not consistent:
        raise UnexpectedResponse(status, "public-key document contradicts its token", "invalid_public_key")
    chain: list[Any] = document.get("chain", [])
    return current, chain


class Client:
    def __init__(
        self,
        url: str,
        api_key: str,
        public_key: str | Path | TenantPublicKey | None = None,
        verify: bool | str | Path | ssl.SSLContext = True,
        *,
        timeout_s: float = 120.0,
        pin: str | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        """`timeout_s` bounds each call as a whole: connect, send, head and body (every socket wait is cut
        to the time left, so a server that trickles bytes cannot hold a call open); `max_response_bytes`
        bounds the sealed answer read into memory (larger: `UnexpectedResponse` code `response_too_large`).
        Redirects are never followed: the API key goes only to `url`.

        `verify`, as in httpx and requests: True (the system's CAs), False (no check: tests only), the path
        of a CA bundle (PEM) or of a directory of hashed CA certificates, or an `ssl.SSLContext`."""
        if max_response_bytes < 1:
            raise ValueError("max_response_bytes must be positive")
        if not isinstance(api_key, str) or not api_key or any(c.isspace() or not c.isprintable() for c in api_key):
            # Caught here, not by httpx after connecting as an 'Illegal header value' (an unset variable).
            raise ValueError("api_key is empty or holds whitespace: give the tenant's API key (cr_...)")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_response_bytes = max_response_bytes
        if isinstance(verify, str | Path) and not isinstance(verify, bool):
            verify = _ca_context(verify)
        # follow_redirects=False (httpx's default, stated so it stays): a 3xx is an error, and the
        # Authorization header never travels to another host. Proxies: see `http_client`.
        self._http = http_client(self.url, verify, timeout=timeout_s, follow_redirects=False)
        _cut_waits_to_the_deadline(self._http)  # timeout_s bounds a call as a whole, not each socket wait
        self._auth = {"Authorization": f"Bearer {api_key}"}
        if isinstance(public_key, TenantPublicKey) or public_key is None:
            self._public_key = public_key
        else:
            self._public_key = load_public_key(public_key)
        if pin is not None and pin.startswith(PREFIX):
            pin = TenantPublicKey.parse(pin).fingerprint()
        if pin is not None and (len(pin) != 64 or any(c not in "0123456789abcdef" for c in pin)):
            raise ValueError("pin is a tenant public-key token or its SHA-256 fingerprint (64 hex digits)")
        self.pinned_fingerprint: str | None = pin or (self._public_key.fingerprint() if self._public_key else None)
        if self._public_key is not None and pin is not None and self._public_key.fingerprint() != pin:
            raise KeyPinMismatch("public_key= and pin= name different keys")

    # --- keys -------------------------------------------------------------------------------------
    def public_key(self) -> TenantPublicKey:
        """The key requests are sealed to: the pinned one, or the server's current one (fetched once)."""
        if self._public_key is None:
            self._public_key = self.fetch_public_key()
        return self._public_key

    def fetch_public_key(self) -> TenantPublicKey:
        """The server's current key; for a pinned client, only if it chains back to the pin."""
        status, body = self._request("GET", "/v1/tenants/self/public-key", MAX_DOCUMENT_BYTES, json_body=True)
        current, chain = _parse_public_key_document(status, body)
        unpinned = self.pinned_fingerprint is None  # a pinned client: follow_pin decides, below
        if unpinned and self._public_key is not None and current.tenant_id != self._public_key.tenant_id:
            # Even an unpinned client knows which tenant it has been sealing to: another tenant's key is
            # a swap (the server checks tenant ids too, but the payload would already be sealed to it).
            raise KeyPinMismatch("the server offered a key of another tenant")
        if self.pinned_fingerprint is not None:
            current = follow_pin(self.pinned_fingerprint, current, chain)
            self.pinned_fingerprint = current.fingerprint()
        return current

    # --- calls ------------------------------------------------------------------------------------
    def seal_request(self, model: str, payload: bytes | memoryview, *, path: str = "") -> SealedRequest:
        key = self.public_key()
        return seal_request(key.key, key.key_id, payload, tenant_id=key.tenant_id, model=model, path=path)

    def infer(self, model: str, payload: bytes | memoryview) -> bytes:
        return self._sealed_post(f"/v1/models/{model}/infer", model, "", payload)

    def call(self, path: str, payload: bytes | memoryview) -> bytes:
        """A sealed POST to any path of an app behind the ASGI middleware; the request is bound to `path`.

        The built-in server's model routes take it too (`.call("/v1/models/echo/infer", ...)` is `.infer("echo",
        ...)` bound to the route's path instead of the model's name)."""
        if not path.startswith("/"):
            raise ValueError("path must start with '/'")
        return self._sealed_post(path, "", path, payload)

    def _sealed_post(self, url_path: str, model: str, path: str, payload: bytes | memoryview) -> bytes:
        for attempt in (1, 2):
            sealed = self.seal_request(model, payload, path=path)
            try:
                return self._send(url_path, sealed)
            except ClientError as exc:
                # The tenant rotated its HPKE key and the old one expired: fetch the current key once and
                # retry. A pinned client accepts it only through endorsements from its pin.
                if attempt == 2 or exc.code not in _STALE_KEY_CODES:
                    raise
                self._public_key = self.fetch_public_key()
            finally:
                sealed.close()
        raise AssertionError("unreachable")

    def _send(self, path: str, sealed: SealedRequest) -> bytes:
        headers = {**self._auth, "Content-Type": CONTENT_TYPE}
        _, body = self._request("POST", path, self.max_response_bytes, content=sealed.body, headers=headers)
        return sealed.open_response(body)

    def _request(
        self,
        method: str,
        path: str,
        limit_bytes: int,
        *,
        json_body: bool = False,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """One call; returns (status, body) of a 2xx answer of the expected type, read within the limits.

        Network failures are `ConnectionFailed`; anything that is not a well-framed answer of the expected
        type, `UnexpectedResponse` (with the status); never a wait much past `timeout_s`."""
        deadline = time.monotonic() + self.timeout_s
        status, desynced = [0], None
        try:
            with (
                network_errors(self.url, status, deadline),
                self._http.stream(method, path, content=content, headers=headers or self._auth) as response,
            ):
                status[0] = response.status_code
                if response.status_code >= 400:
                    self._raise_for_error(response, deadline)
                if not 200 <= response.status_code < 300:
                    location = " (a redirect; not followed)" if response.is_redirect else ""
                    raise UnexpectedResponse(response.status_code, f"unexpected HTTP status{location}")
                media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
                wanted = "application/json" if json_body else CONTENT_TYPE
                if media_type != wanted:
                    shown = _safe_text(media_type or "none", 80)
                    raise UnexpectedResponse(response.status_code, f"the answer is {shown}, not {wanted}")
                body = read_bounded(response, limit_bytes, deadline)
                surplus, desynced = _bytes_past_the_end(response)
                if not surplus:
                    desynced = None
                    return response.status_code, body
                raise UnexpectedResponse(
                    response.status_code,
                    f"{surplus} bytes past the end of the answer (broken framing: a server or proxy bug, or "
                    "response smuggling); the connection is dropped",
                    "response_framing",
                )
        finally:
            if desynced is not None:  # closed once the response has given it back, so the pool drops it
                desynced.close()

    @staticmethod
    def _raise_for_error(response: httpx.Response, deadline: float | None = None) -> None:
        """A 4xx/5xx as ClientError with the server's code; an answer that is not the server's JSON error
        (a proxy's HTML 502, a load balancer's text) says so, with its title or first line."""
        if response.status_code < 400:
            return
        if not response.is_stream_consumed:
            try:
                raw = read_bounded(response, MAX_DOCUMENT_BYTES, deadline)
            except UnexpectedResponse:
                raise ClientError(response.status_code, "http_error", "error body over 64 KiB (not read)") from None
        else:
            raw = response.content[:MAX_DOCUMENT_BYTES]
        try:
            error: Any = json.loads(raw)["error"]
            code, message = str(error["code"]), str(error["message"])
        except (ValueError, KeyError, TypeError, RecursionError):
            media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if media_type == CONTENT_TYPE:
                code, message = "http_error", "sealed error answer (not opened)"
            else:
                text = raw[:4096].decode("utf-8", "replace")
                title = re.search(r"<title[^>]*>([^<]{1,200})</title>", text, re.IGNORECASE)
                shown = " ".join((title.group(1) if title else text[:200]).split())
                code = "http_error"
                message = f"not the server's JSON error ({media_type or 'no content type'}; a proxy?): {shown}"
        raise ClientError(response.status_code, code, message)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
