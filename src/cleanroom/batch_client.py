"""`BatchClient`: submit a batch job, follow it, fetch its sealed results (docs/batches.md).

    with Client(url, api_key=key, verify=cert) as client:
        batches = BatchClient(client)
        handle = batches.submit("minilm", [b'{"inputs": ["a", "b"]}', b'{"inputs": ["c"]}'])
        batches.wait(handle.batch_id)
        results = batches.fetch(handle)          # [ItemResult(ok=True, output=b"..."), ...]

The batch travels as one sealed request; its results come back as one sealed response to that request.
The handle keeps what opens them — the request's 44 bytes of response key material, derived at submit —
and the request's content key is zeroed as soon as the batch is sent. A handle can be saved as a ticket
(`to_ticket`, a 0600 JSON file in the CLI) to fetch from another process; the ticket opens the results,
not the request. Fetching shreds the job on the server: the results can be fetched once.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cleanroom.client import Client, ClientError, UnexpectedResponse, network_errors, read_bounded
from cleanroom.crypto.deferred import DeferredResponseKey, ResponseContext
from cleanroom.crypto.sealed import CONTENT_TYPE
from cleanroom.runtime.batch_format import ItemResult, decode_results, encode_batch

BATCHES_PATH = "/v1/batches"
TICKET_VERSION = 1
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "expired", "retrieved"})
_STALE_KEY_CODES = frozenset({"key_expired", "unknown_key_id"})


@dataclass
class BatchHandle:
    """A submitted batch: its id and the key material that opens its results. Close it when done."""

    batch_id: str
    response_key: DeferredResponseKey
    url: str = ""

    def open_results(self, sealed: bytes | bytearray | memoryview) -> list[ItemResult]:
        """Authenticate and decrypt the sealed results, then split them per item."""
        document = self.response_key.open(sealed)
        try:
            return decode_results(document)
        finally:
            document[:] = bytes(len(document))

    def to_ticket(self) -> dict[str, Any]:
        context = self.response_key.context
        return {
            "v": TICKET_VERSION,
            "url": self.url,
            "batch_id": self.batch_id,
            "request_id": context.request_id.hex(),
            "metadata": base64.b64encode(context.metadata_raw).decode("ascii"),
            "response_key": base64.b64encode(self.response_key.export()).decode("ascii"),
        }

    @classmethod
    def from_ticket(cls, ticket: dict[str, Any]) -> BatchHandle:
        if not isinstance(ticket, dict):
            raise ValueError("not a cleanroom batch ticket (not a JSON object)")
        try:
            if ticket.get("v") != TICKET_VERSION:
                raise ValueError("unknown ticket version")
            context = ResponseContext(bytes.fromhex(ticket["request_id"]), base64.b64decode(ticket["metadata"]))
            material = bytearray(base64.b64decode(ticket["response_key"]))
            try:
                key = DeferredResponseKey.load(material, context)
            finally:
                material[:] = bytes(len(material))
            return cls(batch_id=str(ticket["batch_id"]), response_key=key, url=str(ticket.get("url", "")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a cleanroom batch ticket ({exc})") from None

    def save(self, path: Path) -> None:
        """Write the ticket with mode 0600 (it opens the results)."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(self.to_ticket(), out)
            out.write("\n")

    @classmethod
    def load(cls, path: Path) -> BatchHandle:
        return cls.from_ticket(json.loads(Path(path).read_text(encoding="utf-8")))

    def close(self) -> None:
        self.response_key.close()

    def __enter__(self) -> BatchHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BatchClient:
    """Batch calls over a `Client` (its URL, TLS settings, API key and tenant public key)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def submit(self, model: str, items: Sequence[bytes | bytearray | memoryview]) -> BatchHandle:
        """Seal and send a batch of `items` (each one payload for `model`); returns its handle (202)."""
        document = encode_batch(model, items)
        try:
            for attempt in (1, 2):
                sealed = self.client.seal_request("", memoryview(document), path=BATCHES_PATH)
                try:
                    with network_errors(self.client.url, [0], self._deadline()):
                        response = self._http().post(
                            BATCHES_PATH, content=sealed.body, headers={**self._auth(), "Content-Type": CONTENT_TYPE}
                        )
                    try:
                        self._raise_for_error(response)
                    except ClientError as exc:
                        if attempt == 2 or exc.code not in _STALE_KEY_CODES:
                            raise
                        self.client._public_key = self.client.fetch_public_key()
                        continue
                    try:
                        batch_id = str(response.json()["batch_id"])
                    except (ValueError, KeyError, TypeError, RecursionError):
                        raise UnexpectedResponse(response.status_code, "no batch id in the answer") from None
                    key = DeferredResponseKey.from_sealed(sealed)
                    return BatchHandle(batch_id=batch_id, response_key=key, url=self.client.url)
                finally:
                    sealed.close()  # the content key: zeroed once the response key is derived
            raise AssertionError("unreachable")
        finally:
            document[:] = bytes(len(document))

    def status(self, batch_id: str) -> dict[str, Any]:
        with network_errors(self.client.url, [0], self._deadline()):
            response = self._http().get(f"{BATCHES_PATH}/{batch_id}", headers=self._auth())
        self._raise_for_error(response)
        return _status_document(response)

    def wait(self, batch_id: str, *, timeout_s: float = 600.0, poll_s: float = 0.5) -> dict[str, Any]:
        """Poll until the job is no longer queued or running; returns its last status document."""
        deadline = time.monotonic() + timeout_s
        while True:
            document = self.status(batch_id)
            if document["status"] in TERMINAL or time.monotonic() >= deadline:
                return document
            time.sleep(poll_s)

    def fetch(self, handle: BatchHandle) -> list[ItemResult]:
        """Download and open the results (the server shreds the job once they are sent)."""
        deadline = time.monotonic() + self.client.timeout_s
        status = [0]
        with (
            network_errors(self.client.url, status, deadline),
            self._http().stream("GET", f"{BATCHES_PATH}/{handle.batch_id}/results", headers=self._auth()) as r,
        ):
            status[0] = r.status_code
            Client._raise_for_error(r, deadline)
            if not 200 <= r.status_code < 300:
                raise UnexpectedResponse(r.status_code, "unexpected HTTP status (redirects are not followed)")
            # Bounded like every other answer: a hostile server cannot make the client buffer without end.
            body = read_bounded(r, self.client.max_response_bytes, deadline)
        return handle.open_results(body)

    def cancel(self, batch_id: str) -> dict[str, Any]:
        with network_errors(self.client.url, [0], self._deadline()):
            response = self._http().delete(f"{BATCHES_PATH}/{batch_id}", headers=self._auth())
        self._raise_for_error(response)
        return _status_document(response)

    def _deadline(self) -> float:
        """`timeout_s` bounds each call as a whole, as in `Client`."""
        return time.monotonic() + self.client.timeout_s

    # `Client` keeps its HTTP client and credentials private; these are the only places that reach in.
    def _http(self) -> Any:
        return self.client._http

    def _auth(self) -> dict[str, str]:
        auth: dict[str, str] = self.client._auth
        return auth

    @staticmethod
    def _raise_for_error(response: Any) -> None:
        Client._raise_for_error(response)


def _status_document(response: Any) -> dict[str, Any]:
    """A batch status answer: a JSON object with a `status`; anything else (a proxy's HTML page with a 200,
    a truncated body) is UnexpectedResponse, not a ValueError or KeyError from deep in `wait`."""
    try:
        document = response.json()
        if isinstance(document, dict) and isinstance(document.get("status"), str):
            return document
    except (ValueError, RecursionError):
        pass
    raise UnexpectedResponse(response.status_code, "the answer is not a batch status document")
