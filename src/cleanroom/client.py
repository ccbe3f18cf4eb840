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

import json
import re
import ssl
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from cleanroom.client_errors import ClientError, ConnectionFailed, UnexpectedResponse, _safe_text
from cleanroom.client_network import (
    _ca_context,
    bytes_past_the_end,
    harden_pools,
    http_client,
    is_loopback_host,
    network_errors,
    read_bounded,
)
from cleanroom.crypto.sealed import CONTENT_TYPE, SealedRequest, seal_request
from cleanroom.keys.public_key import PREFIX, KeyPinMismatch, TenantPublicKey, follow_pin

_STALE_KEY_CODES = frozenset({"key_expired", "unknown_key_id"})
DEFAULT_MAX_RESPONSE_BYTES = 256 * 1024 * 1024
# An error or key document is small; a server or proxy that sends more is not answering what we asked.
MAX_DOCUMENT_BYTES = 64 * 1024
_KEY_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")  # what a sealed request can carry (wire-format.md)
_PUBLIC_KEY_SUITE = "DHKEM(P-384,HKDF-SHA384)/HKDF-SHA384/AES-256-GCM"


def load_public_key(value: str | Path) -> TenantPublicKey:
    """A public-key token, or a file holding one (or the JSON that `tenant create --json` prints)."""
    text = str(value)
    if not text.startswith("cleanroom-pk:") and Path(text).exists():
        text = Path(text).read_text(encoding="utf-8").strip()
        if text.startswith("{"):
            text = str(json.loads(text)["public_key"])
    return TenantPublicKey.parse(text)


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


def bound_path(path: str) -> str:
    """The `path` a request to `path` is sealed with (docs/wire-format.md): the path percent-decoded, then
    `?` and the query exactly as it goes on the wire. httpx encodes what the caller wrote (`a b` becomes
    `a%20b`) and the server binds what it decoded, so the client seals what httpx will send, decoded the
    same way: `/v1/items/a%20b` and `/v1/items/a b` are the same route."""
    url = httpx.URL(path)
    query = url.query.decode("ascii")
    return url.path + (f"?{query}" if query else "")


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
        harden_pools(self._http)  # timeout_s bounds a call as a whole; bytes past an answer are refused
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
        return self._sealed_post(path, "", bound_path(path), payload)

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
        status = [0]
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
        surplus = bytes_past_the_end(response)  # the pool has already dropped the connection that carried it
        if surplus:
            raise UnexpectedResponse(
                response.status_code,
                f"{surplus} bytes past the end of the answer (broken framing: a server or proxy bug, or "
                "response smuggling); the connection is dropped",
                "response_framing",
            )
        return response.status_code, body

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


# The errors and transport helpers live in client_errors / client_network; callers import them from here.
__all__ = [
    "Client",
    "ClientError",
    "ConnectionFailed",
    "UnexpectedResponse",
    "http_client",
    "is_loopback_host",
    "load_public_key",
    "network_errors",
    "read_bounded",
]
