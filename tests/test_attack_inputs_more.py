"""A second red-team pass on attack inputs: the HTTP framing, Host, methods and path parameters of a real
`cleanroom serve`; the sealed-request key id; safetensors headers; minilm text; the ASGI middleware's
singleton headers. What test_attack_inputs, test_fuzz, test_hostile_json and test_headers attack is not
repeated; the framing table here asserts each case's answer where test_fuzz only samples at random.

Broken before their fixes: a request without a Host header, with two, or with `Host: a b/c@d:-1` was a 200
(RFC 9112 §3.2 says 400); a safetensors header with `shape: [1e999]`, `[0, 2**70]` or `[0, 2**62, 2**62]`
raised OverflowError/TypeError/RuntimeError inside the model (422 `model_rejected_input`, logged as a model
failure), and shapes given as "1", [true], [1.7] or an object, overlapping tensors, duplicate names, a BOM
and non-string metadata were accepted; a key id with a trailing newline passed the key-id check; a lone
surrogate in a minilm input reached the tokenizer (TypeError: in a scheduler batch, every request failed)
and 10 MB of text held a worker for 42 s; the middleware let the first of two Authorization or Content-Type
headers win.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from cleanroom.crypto.sealed import CONTENT_TYPE, parse_request
from cleanroom.errors import InvalidPayload, InvalidSealedMessage
from cleanroom.runtime.tensors import read_safetensors
from support.hardening import json_error, open_socket, read_response, server_errors_in_log, serving_tenants
from support.server import start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    handle = start_server(
        tmp_path_factory.mktemp("attack_more") / "data",
        "--models",
        "echo",
        "--model",
        "counter=support.memory_models:dropper",
    )
    with serving_tenants(handle, "alpha"):
        yield handle


def tls(server: Any) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=server.cert)


def send_raw(server: Any, raw: bytes, timeout_s: float = 10) -> tuple[int, dict[str, str], bytes]:
    with open_socket(server.url, tls(server), timeout_s=timeout_s) as sock:
        sock.sendall(raw)
        return read_response(sock, head_request=raw.startswith(b"HEAD "))


def assert_healthy(server: Any) -> None:
    assert server.process.poll() is None, "the server died"
    with server.http() as http:
        assert http.get("/healthz").status_code == 200


def auth(server: Any) -> str:
    return f"Authorization: Bearer {server.tenants['alpha']['api_key']}\r\n"


def infer_head(server: Any, extra: str) -> bytes:
    return (
        f"POST /v1/models/echo/infer HTTP/1.1\r\nHost: x\r\n{auth(server)}Content-Type: {CONTENT_TYPE}\r\n{extra}"
    ).encode("latin-1")


# --- framing: each shape answered 400 malformed_http (the connection closed), never passed on -----------
SMUGGLING = {
    "content-length and chunked": (b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", b"0\r\n\r\n"),
    "two different lengths": (b"Content-Length: 3\r\nContent-Length: 5\r\n\r\n", b"abcde"),
    "two equal lengths": (b"Content-Length: 3\r\nContent-Length: 3\r\n\r\n", b"abc"),
    "negative length": (b"Content-Length: -3\r\n\r\n", b""),
    "signed length": (b"Content-Length: +3\r\n\r\n", b"abc"),
    "hex length": (b"Content-Length: 0x3\r\n\r\n", b"abc"),
    "length past u64": (b"Content-Length: 99999999999999999999999\r\n\r\n", b"abc"),
    "two numbers": (b"Content-Length: 3 3\r\n\r\n", b"abc"),
    "chunk size past u64": (b"Transfer-Encoding: chunked\r\n\r\n", b"FFFFFFFFFFFFFFFFFF\r\nabc\r\n0\r\n\r\n"),
    "chunked twice": (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", b"3\r\nabc\r\n0\r\n\r\n"),
    "xchunked": (b"Transfer-Encoding: xchunked\r\n\r\n", b"3\r\nabc\r\n0\r\n\r\n"),
    "space before colon": (b"Transfer-Encoding : chunked\r\n\r\n", b"3\r\nabc\r\n0\r\n\r\n"),
    "length in the trailer": (b"Transfer-Encoding: chunked\r\n\r\n", b"3\r\nabc\r\n0\r\nContent-Length: 5\r\n\r\n"),
    "obs-fold": (b"X-A: a\r\n b\r\nContent-Length: 0\r\n\r\n", b""),
    "NUL in a value": (b"X-A: a\x00b\r\nContent-Length: 0\r\n\r\n", b""),
    "bare CR": (b"X-A: a\rb\r\nContent-Length: 0\r\n\r\n", b""),
}


@pytest.mark.parametrize("name", sorted(SMUGGLING))
def test_request_smuggling_shapes_are_malformed_http(server: Any, name: str) -> None:
    head, body = SMUGGLING[name]
    status, headers, answer = send_raw(server, infer_head(server, "") + head + body)
    assert (status, json_error(answer)["code"]) == (400, "malformed_http"), (name, answer[:200])
    assert headers.get("connection") == "close"


@pytest.mark.parametrize(
    "line",
    [
        b"GET /heal\x00thz HTTP/1.1",
        b"GET /heal\xffthz HTTP/1.1",
        b"FOO /healthz HTTP/1.1",
        b"get /healthz HTTP/1.1",
        b"CONNECT evil.example:443 HTTP/1.1",
        b"PRI * HTTP/2.0",
    ],
)
def test_bad_request_lines_are_malformed_http(server: Any, line: bytes) -> None:
    status, _, body = send_raw(server, line + b"\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (status, json_error(body)["code"]) == (400, "malformed_http")


def test_chunk_extensions_and_trailers_are_read_past(server: Any) -> None:
    # A chunk extension (100 kB of it) and a harmless trailer: the body reaches the sealed-message parser.
    body = b"3;" + b"a" * 100_000 + b"\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n"
    status, _, answer = send_raw(
        server, infer_head(server, "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n") + body
    )
    assert (status, json_error(answer)["code"]) == (400, "invalid_sealed_message")


# --- Host (RFC 9112 §3.2) --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("host_lines", "reason"),
    [
        (b"", "needs a Host"),  # was 200
        (b"Host: a\r\nHost: b\r\n", "one Host"),  # was 200
        (b"Host: a b/c@d:-1\r\n", "host[:port]"),  # was 200
        (b"Host: evil.example/path\r\n", "host[:port]"),
        (b"Host: x\xff\r\n", "host[:port]"),
    ],
)
def test_a_missing_duplicate_or_invalid_host_is_400(server: Any, host_lines: bytes, reason: str) -> None:
    status, headers, body = send_raw(server, b"GET /healthz HTTP/1.1\r\n" + host_lines + b"Connection: close\r\n\r\n")
    error = json_error(body)
    assert (status, error["code"]) == (400, "invalid_host") and reason in error["message"]
    assert headers.get("x-content-type-options") == "nosniff"  # inside the security-headers layer


@pytest.mark.parametrize(
    "request_head",
    [
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:443\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: [::1]:8443\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: api.example.com\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: \r\n",  # empty: allowed when the URI has no authority
        b"GET /healthz HTTP/1.0\r\n",  # HTTP/1.0 needs no Host
    ],
)
def test_valid_hosts_and_http_1_0_without_one_are_served(server: Any, request_head: bytes) -> None:
    status, _, body = send_raw(server, request_head + b"Connection: close\r\n\r\n")
    assert status == 200 and json.loads(body) == {"status": "ok"}


# --- methods and path parameters -------------------------------------------------------------------------
ROUTES = [
    "/healthz",
    "/metrics",
    "/openapi.json",
    "/v1/tenants/self/public-key",
    "/v1/models/echo/infer",
    "/v1/batches",
    "/v1/batches/b_x",
    "/v1/batches/b_x/results",
    "/v1/admin/tenants",
]


def test_trace_options_patch_and_head_on_every_route_are_405_with_allow(server: Any) -> None:
    with server.http() as http:
        for method in ("TRACE", "OPTIONS", "PATCH", "HEAD"):
            for path in ROUTES:
                response = http.request(method, path)
                if method == "HEAD" and path in ("/healthz", "/openapi.json"):
                    assert response.status_code == 200
                    continue
                assert response.status_code == 405, (method, path)
                assert method not in response.headers["allow"]
                if method != "HEAD":
                    assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/batches/%00", 404, "unknown_batch"),
        ("/v1/batches/%ff%fe", 404, "unknown_batch"),
        ("/v1/batches/%E2%80%AE", 404, "unknown_batch"),
        ("/v1/batches/" + "b" * 8000, 404, "unknown_batch"),
        ("/v1/batches/..%2f..%2fhealthz", 404, "not_found"),
        ("/v1/batches/%2e%2e", 404, "unknown_batch"),
    ],
)
def test_hostile_batch_ids_are_a_plain_404(server: Any, path: str, status: int, code: str) -> None:
    with server.http() as http:
        for method in ("GET", "DELETE"):
            response = http.request(method, path, headers={"Authorization": auth(server).split(": ", 1)[1].strip()})
            assert (response.status_code, response.json()["error"]["code"]) == (status, code), (method, path)


@pytest.mark.parametrize(
    "key",
    [
        "cr_" + "A" * 36,  # right shape, wrong checksum
        "cr_" + "\uff11" * 36,  # fullwidth digits (str.isdigit() says True)
        "\u0441r_" + "A" * 36,  # Cyrillic es
        "cr_" + "A" * 35 + "\u200b",  # zero-width space
    ],
)
def test_api_keys_that_look_right_are_401(server: Any, key: str) -> None:
    raw = f"GET /v1/tenants/self/public-key HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
    status, _, body = send_raw(server, raw.encode("utf-8") + b"Connection: close\r\n\r\n")
    assert (status, json_error(body)["code"]) == (401, "unauthenticated")


# --- batch documents -------------------------------------------------------------------------------------
@pytest.mark.parametrize("count", [0, 10**6, 2**32 - 1])
def test_batch_item_counts_out_of_range_are_invalid_batch(server: Any, count: int) -> None:
    import httpx

    document = b"CRB1\x01\x04echo" + struct.pack(">I", count)
    with server.client("alpha") as client:
        sealed = client.seal_request("", document, path="/v1/batches")
        headers = {"Authorization": f"Bearer {server.tenants['alpha']['api_key']}", "Content-Type": CONTENT_TYPE}
        with httpx.Client(base_url=server.url, verify=tls(server), timeout=30) as http:
            response = http.post("/v1/batches", content=sealed.body, headers=headers)
    assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_batch")


# --- connections -----------------------------------------------------------------------------------------
def read_responses(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    buffer, answers = b"", []
    while len(answers) < count:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {len(answers)} responses"
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        length = int(
            next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        )
        while len(buffer) < length:
            buffer += sock.recv(65536)
        answers.append((int(head.split()[1]), buffer[:length]))
        buffer = buffer[length:]
    return answers


def test_pipelined_requests_are_answered_in_order(server: Any) -> None:
    with server.client("alpha") as client:
        sealed = client.seal_request("echo", b"pipelined")
        probe = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        raw = probe * 3 + infer_head(server, f"Content-Length: {len(sealed.body)}\r\n\r\n") + sealed.body + probe
        with open_socket(server.url, tls(server)) as sock:
            sock.sendall(raw)
            answers = read_responses(sock, 5)
        assert [s for s, _ in answers] == [200] * 5
        assert sealed.open_response(answers[3][1]) == b"pipelined"


@pytest.mark.slow
def test_slow_bodies_and_a_huge_chunk_do_not_stall_other_clients(server: Any) -> None:
    sockets = []
    try:
        for i in range(16):
            sock = open_socket(server.url, tls(server))
            if i % 2:  # announces 1 MB, sends 10 bytes
                sock.sendall(infer_head(server, "Content-Length: 1000000\r\n\r\n") + b"x" * 10)
            else:  # a 281 TB chunk, 3 bytes of it
                sock.sendall(infer_head(server, "Transfer-Encoding: chunked\r\n\r\n") + b"FFFFFFFFFFFF\r\nabc")
            sockets.append(sock)
        started = time.monotonic()
        assert_healthy(server)
        with server.client("alpha") as client:
            assert client.infer("echo", b"meanwhile") == b"meanwhile"
        assert time.monotonic() - started < 3
    finally:
        for sock in sockets:
            sock.close()


def test_a_client_that_closes_before_reading_its_answer(server: Any) -> None:
    with server.client("alpha") as client:
        sealed = client.seal_request("echo", b"z" * (2 << 20))
    for _ in range(3):
        sock = open_socket(server.url, tls(server))
        sock.sendall(infer_head(server, f"Content-Length: {len(sealed.body)}\r\n\r\n") + sealed.body)
        sock.close()
    time.sleep(0.3)
    assert_healthy(server)


# --- the sealed request's key id (in process) ------------------------------------------------------------
@pytest.mark.parametrize("key_id", [b"hk_1\n", b"hk_1\r", b"hk 1", b"hk_1\x00"])
def test_a_key_id_with_a_trailing_newline_is_not_a_key_id(key_id: bytes) -> None:
    # `re.match("^...$")` let "hk_1\n" through ("$" matches before a final newline): unknown_key_id, not this.
    body = b"CRQ1\x01" + bytes([len(key_id)]) + key_id + struct.pack(">H", 200) + bytes(200 + 16)
    with pytest.raises(InvalidSealedMessage, match="invalid characters"):
        parse_request(body)


# --- safetensors headers (in process, and once through a user model) ------------------------------------
def safetensors_blob(header: bytes | dict[str, Any], data: bytes = b"\x00" * 4) -> bytearray:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return bytearray(struct.pack("<Q", len(raw)) + raw + data)


def entry(shape: Any, offsets: Any = (0, 4), dtype: Any = "F32") -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": list(offsets) if isinstance(offsets, tuple) else offsets}


HOSTILE_HEADERS: dict[str, bytes | dict[str, Any]] = {
    "infinite dimension": b'{"x":{"dtype":"F32","shape":[1e999],"data_offsets":[0,4]}}',  # was OverflowError
    "NaN offset": b'{"x":{"dtype":"F32","shape":[1],"data_offsets":[NaN,4]}}',
    "zero beside 2**70": {"x": entry([0, 2**70], (0, 0))},  # was TypeError from torch.empty
    "zero beside 2**62 squared": {"x": entry([0, 2**62, 2**62], (0, 0))},  # was RuntimeError (stride overflow)
    "shape as a string": {"x": entry("1")},  # was iterated: shape [1]
    "shape as an object": {"x": entry({"1": 0})},
    "boolean dimension": {"x": entry([True])},
    "fractional dimension": {"x": entry([1.7])},
    "fractional offset": {"x": entry([1], [0.0, 4.9])},
    "dtype as a list": {"x": entry([1], dtype=["F32"])},
    "unknown dtype": {"x": entry([4], dtype="F8_E4M3")},
    "entry not an object": {"x": [1, 2, 3]},
    "overlapping tensors": {"x": entry([1]), "y": entry([1])},  # two views of the same bytes
    "a hole": {"x": entry([1], (4, 8))},
    "duplicate names": b'{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
    b'"x":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}',
    "UTF-8 BOM": b'\xef\xbb\xbf{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
    "UTF-16": '{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'.encode("utf-16"),
    "metadata not strings": {"__metadata__": {"a": 1}, "x": entry([1])},
    "metadata a list": {"__metadata__": [1], "x": entry([1])},
    "5000-digit dimension": b'{"x":{"dtype":"F32","shape":[' + b"9" * 5000 + b'],"data_offsets":[0,4]}}',
}


@pytest.mark.parametrize("name", sorted(HOSTILE_HEADERS))
def test_hostile_safetensors_headers_are_invalid_payload(name: str) -> None:
    data = b"\x00" * 8 if name == "a hole" else b"\x00" * 4
    with pytest.raises(InvalidPayload):
        read_safetensors(memoryview(safetensors_blob(HOSTILE_HEADERS[name], data)))


def test_what_the_safetensors_library_writes_still_reads() -> None:
    from safetensors.torch import save

    blob = bytearray(
        save({"b": torch.ones(3, dtype=torch.int64), "a": torch.zeros(0, 5), "c": torch.arange(4.0)}, {"k": "v"})
    )
    tensors = read_safetensors(memoryview(blob))
    assert tensors["a"].shape == (0, 5) and tensors["c"].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_a_hostile_shape_through_a_user_model_is_invalid_payload_not_a_model_failure(server: Any) -> None:
    from cleanroom.client import ClientError

    with server.client("alpha") as client:
        with pytest.raises(ClientError) as refused:
            client.infer("counter", bytes(safetensors_blob(HOSTILE_HEADERS["infinite dimension"])))
        assert (refused.value.status, refused.value.code) == (422, "invalid_payload")  # was model_rejected_input
        good = bytes(safetensors_blob({"x": entry([4], (0, 4), "U8")}))
        assert read_safetensors(memoryview(bytearray(client.infer("counter", good))))["n"].tolist() == [4]


# --- minilm text (parsing only: no model weights loaded) ----------------------------------------------
def minilm_parser() -> Any:
    from cleanroom.memory.secure_buffer import SecureBuffer
    from cleanroom.runtime.models import MiniLMModel

    model = MiniLMModel.__new__(MiniLMModel)  # parse_inputs needs no weights
    model.max_inputs = 256

    def parse(raw: bytes) -> list[str]:
        with SecureBuffer(len(raw)) as buffer:
            buffer.view()[:] = raw
            return list(model.parse_inputs(buffer))

    return parse


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b'{"inputs": ["ok", "\\ud800"]}', "lone surrogates"),  # was: TypeError in the tokenizer, whole batch
        (b'{"inputs": ["a\\udfffb"]}', "lone surrogates"),
        (json.dumps({"inputs": ["a " * 300_000, "b " * 300_000]}).encode(), "characters"),  # was ~2.5 s each MB
        (b'\xef\xbb\xbf{"inputs": ["x"]}', "UTF-8 JSON"),
        (b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "UTF-8 JSON"),
        (b'{"inputs": [1e999]}', "at least one string"),
        (b'{"inputs": NaN}', "at least one string"),
        (b'{"inputs": []}', "at least one string"),
        (b'{"inputs": "text"}', "at least one string"),
    ],
)
def test_hostile_minilm_inputs_are_invalid_payload(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidPayload, match=reason):
        minilm_parser()(raw)


def test_ordinary_unicode_minilm_inputs_still_parse() -> None:
    assert minilm_parser()('{"inputs": ["é", "日本", "\\ud83d\\ude00", "a\\u0000b"]}'.encode()) == [
        "é",
        "日本",
        "\U0001f600",
        "a\x00b",
    ]


# --- the ASGI middleware's singleton headers --------------------------------------------------------
@pytest.fixture
def middleware(data_dir: Path, memory_audit: Any) -> Iterator[tuple[Any, Any, str]]:
    from cleanroom.client import Client
    from cleanroom.config import Settings
    from cleanroom.integrations.asgi import CleanroomMiddleware
    from cleanroom.runtime.models import ModelRegistry
    from cleanroom.server.services import build_services

    services = build_services(Settings(data_dir=data_dir), audit=memory_audit, models=ModelRegistry({}))
    created = services.tenants.create("shop")
    reached: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    wrapped = CleanroomMiddleware(app, settings=services.settings, services=services, protected_paths=("/v1/",))
    client = Client("http://unused", api_key=created.api_key, public_key=created.public_key)
    try:
        yield wrapped, client, created.api_key
    finally:
        client.close()
        services.close()


def call_asgi(app: Any, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int, bytes]:
    import asyncio

    sent: list[dict[str, Any]] = []
    scope = {"type": "http", "method": "POST", "path": "/v1/x", "raw_path": b"/v1/x", "root_path": "",
             "query_string": b"", "headers": headers, "client": ("127.0.0.1", 1), "http_version": "1.1"}  # fmt: skip
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return int(sent[0]["status"]), b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.parametrize(
    "extra",
    [
        [(b"authorization", b"Bearer cr_" + b"A" * 36)],  # the first one used to win
        [(b"content-type", b"text/plain")],
    ],
)
def test_middleware_refuses_a_second_authorization_or_content_type(middleware: Any, extra: Any) -> None:
    app, client, api_key = middleware
    sealed = client.seal_request("", b"{}", path="/v1/x")
    headers = [(b"authorization", f"Bearer {api_key}".encode()), (b"content-type", CONTENT_TYPE.encode()), *extra]
    status, body = call_asgi(app, headers, sealed.body)
    assert (status, json_error(body)["code"]) == (400, "duplicate_header")


def test_middleware_reads_header_names_in_any_case(middleware: Any) -> None:
    app, client, api_key = middleware
    sealed = client.seal_request("", b"{}", path="/v1/x")
    headers = [(b"Authorization", f"Bearer {api_key}".encode()), (b"Content-Type", CONTENT_TYPE.encode())]
    status, body = call_asgi(app, headers, sealed.body)
    assert status == 200 and sealed.open_response(body) == b"{}"


# --- last: the server is whole ---------------------------------------------------------------------------
def test_zz_server_is_healthy_serving_and_its_log_clean(server: Any) -> None:
    assert_healthy(server)
    with server.client("alpha") as client:
        assert client.infer("echo", b"still serving") == b"still serving"
    problems = server_errors_in_log(server.log_path)
    assert not problems, "\n".join(problems[:5])
    log = server.log_path.read_text(errors="replace")
    assert server.tenants["alpha"]["api_key"] not in log and "pipelined" not in log
