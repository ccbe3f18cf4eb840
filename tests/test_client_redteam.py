"""Red team against the client: the server (or a proxy) is the attacker.

A hostile server sits behind `httpx.MockTransport` (or a raw socket on 127.0.0.1 for the slow cases). The
client must never return bytes the attacker chose as the model's answer, never send its API key to another
host, and fail every time with a clear exception of its own: `ClientError` (its subclass
`UnexpectedResponse`), `InvalidSealedMessage`/`DecryptionFailed`, `KeyPinMismatch`, or an httpx timeout.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.client import Client, ClientError, UnexpectedResponse
from cleanroom.crypto.sealed import (
    CONTENT_TYPE,
    OpenedRequestKey,
    RequestMetadata,
    open_request_key,
    parse_request,
    seal_response,
)
from cleanroom.errors import DecryptionFailed, InvalidSealedMessage
from cleanroom.keys.public_key import KeyPinMismatch, TenantPublicKey

API_KEY = "cr_" + "A" * 36
TENANT = "t_0123456789abcdef"
SUITE_NAME = "DHKEM(P-384,HKDF-SHA384)/HKDF-SHA384/AES-256-GCM"
URL = "https://cleanroom.test"
PRIVATE = ec.generate_private_key(ec.SECP384R1())
KEY = TenantPublicKey(TENANT, "hk_0123456789abcdef", PRIVATE.public_key())
OTHER_PRIVATE = ec.generate_private_key(ec.SECP384R1())


def key_document(key: TenantPublicKey, **overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "tenant_id": key.tenant_id,
        "key_id": key.key_id,
        "public_key": key.token(),
        "fingerprint": key.fingerprint(),
        "suite": SUITE_NAME,
        "chain": [],
    }
    document.update(overrides)
    return document


def open_sealed(body: bytes) -> tuple[OpenedRequestKey, bytes]:
    """What the genuine server does: open the request with the tenant's private key."""
    opened = open_request_key(parse_request(body), PRIVATE)
    plaintext = bytearray(len(opened.parsed.payload_ciphertext) - 16)
    opened.decrypt_payload_into(plaintext)
    return opened, bytes(plaintext)


def honest_answer(request: httpx.Request) -> httpx.Response:
    opened, plaintext = open_sealed(request.content)
    with opened:
        sealed = opened.seal_response(plaintext)
    return httpx.Response(200, content=bytes(sealed), headers={"Content-Type": CONTENT_TYPE})


class Hostile:
    """A server whose answers the test chooses; it records every request it sees (host and headers)."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response] = honest_answer) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []
        self.key_documents: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        if request.url.path == "/v1/tenants/self/public-key" and self.key_documents:
            return httpx.Response(200, json=self.key_documents.pop(0))
        if request.url.path == "/v1/tenants/self/public-key":
            return httpx.Response(200, json=key_document(KEY))
        return self.answer(request)

    def client(self, **kwargs: Any) -> Client:
        client = Client(URL, api_key=API_KEY, **kwargs)
        client._http.close()
        client._http = httpx.Client(
            base_url=URL, transport=httpx.MockTransport(self), timeout=client.timeout_s, follow_redirects=False
        )
        return client


def test_honest_server_round_trip() -> None:
    with Hostile().client() as client:
        assert client.infer("echo", b"hello") == b"hello"
        assert client.call("/v1/app/predict", b"x") == b"x"


def test_redirects_stay_off_in_the_client_it_builds() -> None:
    with Client(URL, api_key=API_KEY) as client:
        assert client._http.follow_redirects is False


# --- tampered sealed answers ---------------------------------------------------------------------------


def mutate(mutation: Callable[[bytes], bytes]) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        good = honest_answer(request).content
        return httpx.Response(200, content=mutation(good), headers={"Content-Type": CONTENT_TYPE})

    return answer


def flip(position: int) -> Callable[[bytes], bytes]:
    def apply(body: bytes) -> bytes:
        out = bytearray(body)
        out[position % len(out)] ^= 0x01
        return bytes(out)

    return apply


MUTATIONS: dict[str, Callable[[bytes], bytes]] = {
    "flip-magic": flip(0),
    "flip-suite": flip(4),
    "flip-request-id": flip(10),
    "flip-ciphertext": flip(22),
    "flip-tag": flip(-1),
    "truncated-to-header": lambda b: b[:21],
    "truncated-by-one": lambda b: b[:-1],
    "extended": lambda b: b + b"\x00",
    "doubled": lambda b: b + b,
    "empty": lambda b: b"",
    "json-error-as-sealed": lambda b: b'{"error": {"code": "ok", "message": "attacker text"}}',
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_tampered_answer_is_refused(name: str) -> None:
    with Hostile(mutate(MUTATIONS[name])).client() as client, pytest.raises(InvalidSealedMessage):
        client.infer("echo", b"the real answer")


def test_replayed_answer_of_an_earlier_request_is_refused() -> None:
    recorded: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if not recorded:
            recorded.append(honest_answer(request).content)
        return httpx.Response(200, content=recorded[0], headers={"Content-Type": CONTENT_TYPE})

    with Hostile(answer).client() as client:
        assert client.infer("echo", b"first") == b"first"
        with pytest.raises(DecryptionFailed):
            client.infer("echo", b"second")


def test_answer_sealed_with_the_right_key_for_another_request_id_is_refused() -> None:
    """The server holds the CEK but binds its answer to another request id (its own header and AAD)."""

    def answer(request: httpx.Request) -> httpx.Response:
        opened, _ = open_sealed(request.content)
        with opened:
            meta = opened.metadata
            other = RequestMetadata(bytes(16), meta.tenant_id, meta.model, meta.path, meta.ts)
            sealed = seal_response(opened._content_key, other, other.encode(), b"attacker's answer")
        return httpx.Response(200, content=bytes(sealed), headers={"Content-Type": CONTENT_TYPE})

    with Hostile(answer).client() as client, pytest.raises(DecryptionFailed):
        client.infer("echo", b"x")


@pytest.mark.parametrize(
    ("status", "content_type", "body"),
    [
        (200, "application/json", b'{"error": {"code": "x", "message": "y"}}'),
        (200, "text/plain", b"the answer is 42"),
        (200, "", b"the answer is 42"),
        (204, CONTENT_TYPE, b""),
    ],
)
def test_success_without_a_sealed_body_is_an_error(status: int, content_type: str, body: bytes) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"Content-Type": content_type} if content_type else {})

    with Hostile(answer).client() as client, pytest.raises((UnexpectedResponse, InvalidSealedMessage)):
        client.infer("echo", b"x")


def test_a_valid_sealed_body_with_another_content_type_is_refused() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=honest_answer(request).content, headers={"Content-Type": "text/plain"})

    with Hostile(answer).client() as client, pytest.raises(UnexpectedResponse):
        client.infer("echo", b"x")


# --- size ----------------------------------------------------------------------------------------------


def test_huge_streamed_answer_is_cut_off() -> None:
    sent = []

    def chunks() -> Iterator[bytes]:
        for _ in range(10_000):  # 640 MiB if the client read it all
            sent.append(1)
            yield b"\x00" * 65536

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=chunks(), headers={"Content-Type": CONTENT_TYPE})

    with Hostile(answer).client(max_response_bytes=1 << 20) as client, pytest.raises(UnexpectedResponse) as info:
        client.infer("echo", b"x")
    assert info.value.code == "response_too_large"
    assert len(sent) <= 20


def test_declared_huge_answer_is_refused_before_reading() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Type": CONTENT_TYPE, "Content-Length": str(1 << 40)}
        return httpx.Response(200, stream=httpx.ByteStream(b""), headers=headers)

    with Hostile(answer).client() as client, pytest.raises(UnexpectedResponse) as info:
        client.infer("echo", b"x")
    assert info.value.code == "response_too_large"


def test_max_response_bytes_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Client(URL, api_key=API_KEY, max_response_bytes=0)


def record(hostile: Hostile, request: httpx.Request) -> httpx.Response:
    hostile.requests.append(request)
    return hostile.answer(request)


# --- redirects -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("route", ["infer", "public-key"])
def test_redirect_to_another_host_is_not_followed(status: int, route: str) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers={"Location": "https://evil.test/steal"})

    hostile = Hostile(answer)
    if route == "public-key":
        hostile.__call__ = None  # type: ignore[method-assign,assignment]
        hostile.key_documents = []
        client = hostile.client()
        client._http = httpx.Client(base_url=URL, transport=httpx.MockTransport(lambda r: record(hostile, r)))
    else:
        client = hostile.client(public_key=KEY)
    with client, pytest.raises(UnexpectedResponse) as info:
        client.infer("echo", b"secret payload")
    assert info.value.status == status
    assert API_KEY not in str(info.value)
    assert [r.url.host for r in hostile.requests] == ["cleanroom.test"]


# --- the public key ------------------------------------------------------------------------------------


def other_tenant_key() -> TenantPublicKey:
    return TenantPublicKey("t_fedcba9876543210", "hk_fedcba9876543210", OTHER_PRIVATE.public_key())


BAD_DOCUMENTS: dict[str, Any] = {
    "not-an-object": ["cleanroom-pk:v1:..."],
    "no-token": {"tenant_id": TENANT},
    "token-not-a-token": key_document(KEY, public_key="hello"),
    "token-bad-base64": key_document(KEY, public_key=f"cleanroom-pk:v1:{TENANT}:hk_1:!!!!"),
    "token-point-off-curve": key_document(
        KEY,
        public_key=f"cleanroom-pk:v1:{TENANT}:{KEY.key_id}:"
        + base64.urlsafe_b64encode(b"\x04" + b"\x01" * 96).decode(),
    ),
    "token-too-many-fields": key_document(KEY, public_key=KEY.token().replace(TENANT, TENANT + ":x")),
    "tenant-id-differs-from-token": key_document(KEY, tenant_id="t_fedcba9876543210"),
    "key-id-differs-from-token": key_document(KEY, key_id="hk_other"),
    "unknown-suite": key_document(KEY, suite="X25519/none"),
    "key-id-not-sealable": key_document(
        TenantPublicKey(TENANT, "hk_\u00e9" + "x" * 70, PRIVATE.public_key()),
        key_id="hk_\u00e9" + "x" * 70,
    ),
    "chain-not-a-list": key_document(KEY, chain="nope"),
}


@pytest.mark.parametrize("name", sorted(BAD_DOCUMENTS))
def test_malformed_public_key_document_is_refused_before_sealing(name: str) -> None:
    hostile = Hostile()
    hostile.key_documents = [BAD_DOCUMENTS[name]]
    with hostile.client() as client, pytest.raises(UnexpectedResponse) as info:
        client.infer("echo", b"secret payload")
    assert info.value.code == "invalid_public_key"
    assert [r.method for r in hostile.requests] == ["GET"]  # nothing sealed, nothing sent


def test_pinned_client_refuses_a_changed_key_without_endorsements() -> None:
    swapped = TenantPublicKey(TENANT, "hk_attacker", OTHER_PRIVATE.public_key())
    hostile = Hostile()
    hostile.key_documents = [key_document(swapped)]
    with hostile.client(pin=KEY.fingerprint()) as client, pytest.raises(KeyPinMismatch):
        client.infer("echo", b"secret payload")
    assert [r.method for r in hostile.requests] == ["GET"]


@pytest.mark.parametrize(
    "chain",
    [
        [["not", "a", "dict"]],
        ["a string"],
        [{"key_id": "hk_attacker"}],
        [{"key_id": "hk_attacker", "public_key": "garbage"}],
        [{"key_id": "hk_attacker", "public_key": 17}],
    ],
)
def test_pinned_client_refuses_a_malformed_chain(chain: list[Any]) -> None:
    swapped = TenantPublicKey(TENANT, "hk_attacker", OTHER_PRIVATE.public_key())
    hostile = Hostile()
    hostile.key_documents = [key_document(swapped, chain=chain)]
    with hostile.client(pin=KEY.fingerprint()) as client, pytest.raises(KeyPinMismatch):
        client.infer("echo", b"secret payload")


def test_refetched_key_of_another_tenant_is_refused_even_unpinned() -> None:
    """After a stale-key refusal the client refetches; a server that then names another tenant is lying."""
    answers = iter([httpx.Response(400, json={"error": {"code": "unknown_key_id", "message": "rotated"}})])

    def answer(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or honest_answer(request)

    hostile = Hostile(answer)
    hostile.key_documents = [key_document(KEY), key_document(other_tenant_key())]
    with hostile.client() as client, pytest.raises(KeyPinMismatch):
        client.infer("echo", b"secret payload")
    assert [r.method for r in hostile.requests] == ["GET", "POST", "GET"]


def test_unpinned_client_seals_to_whatever_key_it_first_gets() -> None:
    """Documented: without a pin the first key is trusted (the server then refuses the tenant mismatch)."""
    hostile = Hostile(
        lambda request: httpx.Response(400, json={"error": {"code": "decryption_failed", "message": "."}})
    )
    hostile.key_documents = [key_document(other_tenant_key())]
    with hostile.client() as client, pytest.raises(ClientError):
        client.infer("echo", b"x")
    assert client.public_key().tenant_id == "t_fedcba9876543210"


# --- error bodies --------------------------------------------------------------------------------------


def test_ten_megabyte_error_message_is_bounded() -> None:
    message = "A" * (10 << 20)

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"code": "decryption_failed", "message": message}})

    with Hostile(answer).client() as client, pytest.raises(ClientError) as info:
        client.infer("echo", b"x")
    assert len(info.value.message) <= 600 and len(str(info.value)) <= 700
    assert info.value.status == 400


def test_ten_megabyte_error_json_is_not_buffered() -> None:
    body = json.dumps({"error": {"code": "x", "message": "A" * (10 << 20)}}).encode()

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, content=iter([body[i : i + 65536] for i in range(0, len(body), 65536)]))

    with Hostile(answer).client() as client, pytest.raises(ClientError) as info:
        client.infer("echo", b"x")
    assert info.value.code == "http_error" and len(str(info.value)) < 200


@pytest.mark.parametrize(
    "message",
    ["\x1b[2J\x1b[31mfake log line\nERROR root: forged", "a\rb\x00c\x7fd\x85e", "right\u202eto-left\u2028line"],
)
def test_control_characters_in_error_messages_are_replaced(message: str) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json={"error": {"code": "tenant_revoked", "message": message}})

    with Hostile(answer).client() as client, pytest.raises(ClientError) as info:
        client.infer("echo", b"x")
    text = str(info.value)
    assert text.isprintable() and not any(c in text for c in "\x1b\r\n\x00\x7f\x85\u202e\u2028")
    assert info.value.code == "tenant_revoked"


@pytest.mark.parametrize("code", ["x" * 10_000, "bad\ncode", "\x1b[31m", ""])
def test_unusual_error_codes_become_http_error(code: str) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": {"code": code, "message": "m"}})

    with Hostile(answer).client() as client, pytest.raises(ClientError) as info:
        client.infer("echo", b"x")
    assert info.value.code == "http_error"


def test_non_json_error_body_with_binary_bytes_is_safe() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, content=bytes(range(256)) * 100, headers={"Content-Type": "text/html"})

    with Hostile(answer).client() as client, pytest.raises(ClientError) as info:
        client.infer("echo", b"x")
    assert str(info.value).isprintable() and len(str(info.value)) < 300


def test_api_key_and_payload_never_in_client_errors() -> None:
    def answer(request: httpx.Request) -> httpx.Response:  # a proxy that echoes the request into its error
        echoed = request.headers["Authorization"] + request.content.decode("latin-1")
        return httpx.Response(400, json={"error": {"code": "x", "message": echoed}})

    with Hostile(answer).client() as client, pytest.raises(ClientError) as info:
        client.infer("echo", b"secret payload")
    # the proxy chose to echo the key: the client cannot stop that text, but it is cut to 500 characters
    assert b"secret payload" not in str(info.value).encode("latin-1", "replace")
    assert len(info.value.message) <= 503


# --- slow and partial answers (a real socket: MockTransport has no clock) ------------------------------


class SlowServer:
    """Accepts one connection on 127.0.0.1 and plays `script(connection)` on it."""

    def __init__(self, script: Callable[[socket.socket], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(script,), daemon=True)
        self.thread.start()

    def _serve(self, script: Callable[[socket.socket], None]) -> None:
        connection, _ = self.listener.accept()
        with connection:
            connection.settimeout(5)
            try:
                read_whole_request(connection)  # closing with unread bytes would be a TCP reset, not the case
                script(connection)
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(timeout=5)


def read_whole_request(connection: socket.socket) -> None:
    """The request's head and its Content-Length body, however the client's writes were split."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(1 << 16)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        0,
    )
    while len(body) < length:
        chunk = connection.recv(1 << 16)
        if not chunk:
            return
        body += chunk


def silent(connection: socket.socket) -> None:
    # Read whatever else the client sends (its body may arrive after the first recv) until it gives up and
    # closes: returning early would close with unread data, a TCP reset instead of the client's timeout.
    while connection.recv(1 << 16):
        pass


def trickle(stop: threading.Event) -> Callable[[socket.socket], None]:
    def play(connection: socket.socket) -> None:
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: " + CONTENT_TYPE.encode() + b"\r\n")
        connection.sendall(b"Transfer-Encoding: chunked\r\n\r\n")
        while not stop.is_set():
            connection.sendall(b"1\r\nA\r\n")  # one byte every 50 ms: never a read timeout
            time.sleep(0.05)

    return play


def cut_short(connection: socket.socket) -> None:
    connection.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: " + CONTENT_TYPE.encode() + b"\r\nContent-Length: 100\r\n\r\n"
    )
    connection.sendall(b"CRS1\x01" + b"\x00" * 20)


@pytest.mark.parametrize("case", ["silent", "trickle", "cut-short"])
def test_slow_or_partial_answers_fail_in_bounded_time(case: str) -> None:
    stop = threading.Event()
    script = {"silent": silent, "trickle": trickle(stop), "cut-short": cut_short}[case]
    server = SlowServer(script)
    client = Client(f"http://127.0.0.1:{server.port}", api_key=API_KEY, public_key=KEY, timeout_s=0.5)
    started = time.monotonic()
    try:
        with client, pytest.raises((httpx.TimeoutException, httpx.RemoteProtocolError)):
            client.infer("echo", b"x")
        assert time.monotonic() - started < 2.5  # timeout_s (0.5) plus one read timeout, not a hang
    finally:
        stop.set()
        server.close()


@pytest.mark.parametrize("api_key", ["", " ", "cr_abc def", "cr_abc\n", "\t"])
def test_an_unusable_api_key_is_refused_when_the_client_is_made(api_key: str) -> None:
    """An unset shell variable gives "": refused at once, naming the problem, not after connecting as
    httpx's 'Illegal header value' (which reads like a network fault)."""
    with pytest.raises(ValueError, match="api_key is empty or holds whitespace"):
        Client("https://127.0.0.1:1", api_key=api_key)
