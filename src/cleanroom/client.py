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

import ssl
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from cleanroom.crypto.sealed import CONTENT_TYPE, SealedRequest, seal_request
from cleanroom.keys.public_key import PREFIX, KeyPinMismatch, TenantPublicKey, follow_pin

_STALE_KEY_CODES = frozenset({"key_expired", "unknown_key_id"})


class ClientError(Exception):
    """The server refused a request; `status` and `code` are the server's."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def load_public_key(value: str | Path) -> TenantPublicKey:
    """A public-key token, or a file holding one (or the JSON that `tenant create --json` prints)."""
    text = str(value)
    if not text.startswith("cleanroom-pk:") and Path(text).exists():
        text = Path(text).read_text(encoding="utf-8").strip()
        if text.startswith("{"):
            import json

            text = str(json.loads(text)["public_key"])
    return TenantPublicKey.parse(text)


class Client:
    def __init__(
        self,
        url: str,
        *,
        api_key: str,
        public_key: str | Path | TenantPublicKey | None = None,
        verify: bool | str | Path | ssl.SSLContext = True,
        timeout_s: float = 120.0,
        pin: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        if isinstance(verify, str | Path) and not isinstance(verify, bool):
            verify = ssl.create_default_context(cafile=str(verify))
        self._http = httpx.Client(base_url=self.url, verify=verify, timeout=timeout_s)
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
        response = self._http.get("/v1/tenants/self/public-key", headers=self._auth)
        self._raise_for_error(response)
        document = response.json()
        current = TenantPublicKey.parse(document["public_key"])
        if self.pinned_fingerprint is not None:
            current = follow_pin(self.pinned_fingerprint, current, document.get("chain", []))
            self.pinned_fingerprint = current.fingerprint()
        return current

    # --- calls ------------------------------------------------------------------------------------
    def seal_request(self, model: str, payload: bytes | memoryview, *, path: str = "") -> SealedRequest:
        key = self.public_key()
        return seal_request(key.key, key.key_id, payload, tenant_id=key.tenant_id, model=model, path=path)

    def infer(self, model: str, payload: bytes | memoryview) -> bytes:
        return self._sealed_post(f"/v1/models/{model}/infer", model, "", payload)

    def call(self, path: str, payload: bytes | memoryview) -> bytes:
        """A sealed POST to any path (apps behind the ASGI middleware)."""
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
        response = self._http.post(path, content=sealed.body, headers={**self._auth, "Content-Type": CONTENT_TYPE})
        self._raise_for_error(response)
        return sealed.open_response(response.content)

    @staticmethod
    def _raise_for_error(response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            error: Any = response.json()["error"]
            code, message = str(error["code"]), str(error["message"])
        except (ValueError, KeyError, TypeError):
            code, message = "http_error", response.text[:200]
        raise ClientError(response.status_code, code, message)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
