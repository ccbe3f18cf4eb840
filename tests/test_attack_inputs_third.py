"""A third red-team pass on attack inputs: the parsers and APIs the first two passes (test_attack_inputs,
test_attack_inputs_more, test_fuzz, test_hostile_json) did not reach, driven structure-aware rather than at
random: every length field of the sealed request, the stream header and the batch document at its edges
(0, 1, max, max+1, 2**32-1, 2**64-1), every header field truncated at every byte, trailing garbage, two
messages back to back, a valid message sent for another tenant, model or route, the AAD fields' encodings
(non-ASCII, NUL, long, differing only in Unicode normalisation or case); safetensors lies; the admin API's
JSON bodies and names; a chunked body whose size line alone exceeds every body limit.

Each answer must be a 4xx JSON error naming the problem (never a 500, never a hang past a short client
timeout), the server healthy afterwards, no file left in the spill directory, the audit log verifying.

Broken before their fixes: a chunk-size line announcing 1 GiB was answered only by the 60 s body deadline
(408 after 60.0 s; now 413 `payload_too_large` in ~0.01 s, as soon as the line is read); a safetensors
entry with 500 000 dimensions of 1 was accepted and hung a user model's first element-wise op (20 000
dims: 3.3 s, 50 000: 18 s, 500 000: > 120 s; numpy refuses > 64 dims, so did the `counter` model, as a
model failure); a tenant named "alpha\\n" passed the name check (`$` matches before a trailing newline)
and sat beside "alpha" in the registry.
"""

from __future__ import annotations

import json
import struct
import time
import unicodedata
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from cleanroom.crypto.sealed import CONTENT_TYPE, parse_request, seal_request
from cleanroom.crypto.stream import HEADER_SIZE_BYTES, StreamDecryptor, StreamHeader
from cleanroom.errors import InvalidPayload, InvalidSealedMessage
from cleanroom.runtime.batch_format import encode_batch, index_batch
from cleanroom.runtime.tensors import read_safetensors
from support.hardening import json_error, open_socket, read_response, server_errors_in_log, serving_tenants
from support.server import server_env, start_server

TIMEOUT_S = 10  # every answer must come well within this: a hang is a failure, not a slow test


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    base = tmp_path_factory.mktemp("attack_third")
    (base / "spill").mkdir()
    env = server_env(CLEANROOM_SPILL_THRESHOLD_BYTES="4096", CLEANROOM_SPILL_DIR=str(base / "spill"))
    handle = start_server(
        base / "data", "--models", "echo", "--model", "counter=support.memory_models:dropper", env=env
    )
    handle.spill_dir = base / "spill"  # type: ignore[attr-defined]
    with serving_tenants(handle, "alpha", "beta"):
        handle.data_entries = {p.name for p in (base / "data").iterdir()}  # type: ignore[attr-defined]
        yield handle


@pytest.fixture(scope="module")
def http(server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, verify=tls_context(server), timeout=TIMEOUT_S) as client:
        yield client


def key(server: Any, tenant: str = "alpha") -> str:
    return str(server.tenants[tenant]["api_key"])


def post_sealed(http: httpx.Client, server: Any, path: str, body: bytes, tenant: str = "alpha") -> httpx.Response:
    headers = {"Authorization": f"Bearer {key(server, tenant)}", "Content-Type": CONTENT_TYPE}
    return http.post(path, content=body, headers=headers)


def assert_4xx_json(response: httpx.Response, *codes: str) -> str:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    code = json_error(response.content)["code"]
    assert not codes or code in codes, (code, response.text[:300])
    return code


def sealed_for(server: Any, tenant: str = "alpha", model: str = "echo", payload: bytes = b"hello", **kw: Any) -> bytes:
    with server.client(tenant) as client:
        return bytes(client.seal_request(model, payload, **kw).body)


# --- the sealed request: length fields, truncation, garbage, concatenation --------------------------------
def with_key_id_length(body: bytes, k: int) -> bytes:
    return body[:5] + bytes([k]) + body[6:]


def with_blob_length(body: bytes, e: int) -> bytes:
    k = body[5]
    return body[: 6 + k] + struct.pack(">H", e) + body[8 + k :]


def test_every_truncation_of_the_sealed_header_is_refused_by_the_parser(server: Any) -> None:
    body = sealed_for(server)
    header_end = 8 + body[5] + struct.unpack_from(">H", body, 6 + body[5])[0]
    for cut in range(header_end + 16):  # every byte of magic, suite, K, key id, E, the blob, and the tag
        with pytest.raises(InvalidSealedMessage):
            parse_request(body[:cut])


def test_sealed_length_fields_at_their_edges_are_400(server: Any, http: httpx.Client) -> None:
    body = sealed_for(server)
    k = body[5]
    e = struct.unpack_from(">H", body, 6 + k)[0]
    cases = {f"K={v}": with_key_id_length(body, v) for v in (0, 1, k - 1, k + 1, 64, 65, 255)}
    cases |= {f"E={v}": with_blob_length(body, v) for v in (0, 1, 113, 114, e - 1, e + 1, 4096, 4097, 65535)}
    for name, mutated in cases.items():
        response = post_sealed(http, server, "/v1/models/echo/infer", mutated)
        assert_4xx_json(response, "invalid_sealed_message", "unknown_key_id", "decryption_failed")
        assert response.status_code == 400, name


def test_sealed_truncations_garbage_and_two_messages_are_400(server: Any, http: httpx.Client) -> None:
    # A fresh message for each case: a body that reached the replay check has used up its request id.
    with server.client("alpha") as client:
        fresh = [bytes(client.seal_request("echo", b"hello").body) for _ in range(5)]
    body = fresh[0]
    header_end = 8 + body[5] + struct.unpack_from(">H", body, 6 + body[5])[0]
    cuts = sorted({0, 1, 3, 4, 5, 6, 7, 8, 6 + body[5], 7 + body[5], 8 + body[5], header_end, header_end + 15})
    bodies = {f"cut {c}": body[:c] for c in cuts}
    bodies |= {"1 byte of garbage": fresh[1] + b"\x00", "4 KiB of garbage": fresh[2] + b"\xff" * 4096}
    bodies |= {"two messages": fresh[3] + fresh[0], "twice the same": fresh[4] + fresh[4]}
    for name, mutated in bodies.items():
        response = post_sealed(http, server, "/v1/models/echo/infer", mutated)
        assert response.status_code == 400, (name, response.text[:200])
        assert_4xx_json(response, "invalid_sealed_message", "decryption_failed")


def test_a_valid_message_for_another_tenant_model_or_route_is_refused(server: Any, http: httpx.Client) -> None:
    betas = sealed_for(server, "beta")
    assert_4xx_json(post_sealed(http, server, "/v1/models/echo/infer", betas), "unknown_key_id")
    for_counter = sealed_for(server, model="counter")
    assert_4xx_json(post_sealed(http, server, "/v1/models/echo/infer", for_counter), "context_mismatch")
    for_path = sealed_for(server, model="", path="/v1/batches")
    assert_4xx_json(post_sealed(http, server, "/v1/models/echo/infer", for_path), "context_mismatch")
    for_echo = sealed_for(server)
    assert_4xx_json(post_sealed(http, server, "/v1/batches", for_echo), "context_mismatch")
    k = for_echo[5]  # a well-formed 64-character key id that no tenant has
    long_id = for_echo[:5] + bytes([64]) + b"hk_" + b"0" * 61 + for_echo[6 + k :]
    assert_4xx_json(post_sealed(http, server, "/v1/models/echo/infer", long_id), "unknown_key_id")
    assert_4xx_json(post_sealed(http, server, "/v1/batches", betas, tenant="alpha"), "unknown_key_id")


def seal_with_metadata(server: Any, *, tenant_id: str | None = None, model: str = "echo") -> bytes:
    """Sealed to alpha's real key, with metadata fields the Client would never write."""
    with server.client("alpha") as client:
        public = client.public_key()
        return bytes(
            seal_request(
                public.key,
                public.key_id,
                b"x",
                tenant_id=tenant_id if tenant_id is not None else public.tenant_id,
                model=model,
            ).body
        )


def test_aad_fields_that_differ_only_in_encoding_are_context_mismatch(server: Any, http: httpx.Client) -> None:
    tenant_id = server.tenants["alpha"]["tenant_id"]
    for other in (tenant_id.upper(), tenant_id + "\x00", " " + tenant_id, tenant_id.replace("t_", "t\u200b_")):
        response = post_sealed(http, server, "/v1/models/echo/infer", seal_with_metadata(server, tenant_id=other))
        assert_4xx_json(response, "context_mismatch")
    for model in ("ECHO", "echo\x00", "ech\u043e", "e" * 1500, unicodedata.normalize("NFD", "\u00e9cho")):
        response = post_sealed(http, server, "/v1/models/echo/infer", seal_with_metadata(server, model=model))
        assert_4xx_json(response, "context_mismatch")


@pytest.mark.parametrize(
    "model", ["\u00e9cho", unicodedata.normalize("NFD", "\u00e9cho"), "ECHO", "echo\x00", "\u202eohce", "e" * 3000]
)
def test_model_names_in_the_url_and_the_aad_agree_and_are_4xx(server: Any, http: httpx.Client, model: str) -> None:
    # The metadata names the model exactly as the URL does, so the context check passes: the answer is the
    # model lookup's 404 (or the metadata's size limit), never a 500 or a normalised match of "echo".
    try:
        body = seal_with_metadata(server, model=model)
    except ValueError:  # the metadata is over 2048 bytes: the client refuses to seal it
        body = sealed_for(server)
    response = post_sealed(http, server, f"/v1/models/{quote(model, safe='')}/infer", body)
    assert_4xx_json(response)


@pytest.mark.parametrize("length", [2**32 - 1, 2**64 - 1, 2**64])
def test_content_length_at_the_integer_edges_is_413_or_400(server: Any, length: int) -> None:
    head = (
        f"POST /v1/models/echo/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key(server)}\r\n"
        f"Content-Type: {CONTENT_TYPE}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()
    with open_socket(server.url, tls_context(server), timeout_s=TIMEOUT_S) as sock:
        sock.sendall(head + b"abc")
        status, _, answer = read_response(sock)
    assert (status, json_error(answer)["code"]) in ((413, "payload_too_large"), (400, "malformed_http"))


# --- the chunked body: a size line over the limit is refused as soon as it is read ----------------------
def tls_context(server: Any) -> Any:
    import ssl

    return ssl.create_default_context(cafile=server.cert)


def chunked_head(server: Any, path: str = "/v1/models/echo/infer", token: str | None = None) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token or key(server)}\r\n"
        f"Content-Type: {CONTENT_TYPE}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("path", "size_line", "pause_s"),
    [
        ("/v1/models/echo/infer", b"40000000", 0),  # 1 GiB, nothing of it sent
        ("/v1/models/echo/infer", b"4000000", 0.15),  # 64 MiB + 5: over the infer limit, the line sent late
        ("/v1/batches", b"10000000", 0.15),  # 256 MiB + 5: over the batch limit
        ("/v1/admin/tenants", b"10000", 0),  # 64 KiB + 5: over the admin limit (no token: not read either)
        ("/v1/models/echo/infer", b"4000000;" + b"x" * 10_000, 0.15),  # with a 10 kB chunk extension
        ("/v1/models/echo/infer", b"0" * 100 + b"4000000", 0.15),  # zero-padded
    ],
)
def test_a_chunk_size_line_over_the_body_limit_is_refused_at_once(
    server: Any, path: str, size_line: bytes, pause_s: float
) -> None:
    # Before: nothing answered until the 60 s body deadline (408). The client here waits 5 s at most. A
    # line that arrives with the head is refused when the request reaches the app; a later one (pause_s)
    # by the protocol as soon as its LF is read.
    with open_socket(server.url, tls_context(server), timeout_s=5) as sock:
        sock.sendall(chunked_head(server, path) + b"5\r\nhello\r\n")
        time.sleep(pause_s)
        started = time.monotonic()
        sock.sendall(size_line + b"\r\n")
        status, headers, answer = read_response(sock)
        elapsed = time.monotonic() - started
    expected = (413, "payload_too_large")
    assert (status, json_error(answer)["code"]) == expected, answer[:200]
    assert elapsed < 2 and headers.get("connection") == "close"


@pytest.mark.parametrize(
    ("first", "rest", "expected"),
    [
        (b"40", b"00000\r\n", (413, "payload_too_large")),  # the size line split across two reads
        (b"4000000;" + b"e" * 5000, b"e" * 5000 + b"\r\n", (413, "payload_too_large")),  # in its extension
        (b"0" * 80, b"4000000\r\n", (400, "malformed_http")),  # zero-padded past what is kept: refused
    ],
)
def test_a_size_line_split_across_reads_is_still_read(
    server: Any, first: bytes, rest: bytes, expected: tuple[int, str]
) -> None:
    with open_socket(server.url, tls_context(server), timeout_s=5) as sock:
        sock.sendall(chunked_head(server) + b"5\r\nhello\r\n" + first)
        time.sleep(0.15)
        sock.sendall(rest)
        status, _, answer = read_response(sock)
    assert (status, json_error(answer)["code"]) == expected


def test_a_long_trailer_split_across_reads_is_not_a_size_line(server: Any) -> None:
    with server.client("alpha") as client:
        sealed = client.seal_request("echo", b"trailer")
    head = chunked_head(server)[:-2] + b"Connection: close\r\n\r\n"
    with open_socket(server.url, tls_context(server), timeout_s=5) as sock:
        sock.sendall(head + b"%x\r\n%s\r\n0\r\nX-Long: " % (len(sealed.body), sealed.body) + b"a" * 100)
        time.sleep(0.15)
        sock.sendall(b"a" * 100 + b"\r\n\r\n")
        status, _, answer = read_response(sock)
    assert status == 200 and sealed.open_response(answer) == b"trailer"


def test_chunks_that_add_up_to_over_the_limit_are_refused_at_the_line_that_crosses_it(server: Any) -> None:
    with open_socket(server.url, tls_context(server), timeout_s=5) as sock:
        token = admin(server)["Authorization"].split()[1]  # with the token: the route waits for the body
        sock.sendall(chunked_head(server, "/v1/admin/tenants", token) + b"8000\r\n" + b"{" * 0x8000 + b"\r\n")
        time.sleep(0.2)
        sock.sendall(b"8001\r\n")  # 32 KiB + 32 KiB + 1 > 64 KiB
        status, _, answer = read_response(sock)
    assert (status, json_error(answer)["code"]) == (413, "payload_too_large")


def test_a_chunked_body_in_many_pieces_and_a_long_extension_still_arrives(server: Any) -> None:
    with server.client("alpha") as client:
        sealed = client.seal_request("echo", b"in pieces\n" * 50)
    body = sealed.body
    pieces = [body[i : i + 7] for i in range(0, len(body), 7)]
    chunks = b"".join(
        b"%x;ext=%s\r\n%s\r\n" % (len(p), b"v" * (10_000 if i == 0 else 3), p) for i, p in enumerate(pieces)
    )
    raw = chunked_head(server)[:-2] + b"Connection: close\r\n\r\n" + chunks + b"0\r\nX-Trailer: t\r\n\r\n"
    with open_socket(server.url, tls_context(server), timeout_s=TIMEOUT_S) as sock:
        for i in range(0, len(raw), 1000):  # split across TCP writes at arbitrary points
            sock.sendall(raw[i : i + 1000])
        status, _, answer = read_response(sock)
    assert status == 200 and sealed.open_response(answer) == b"in pieces\n" * 50


# --- the stream header (spill files) -------------------------------------------------------------------
def test_stream_header_fields_at_their_edges_and_every_truncation_are_refused() -> None:
    good = StreamHeader(segment_size_bytes=64 * 1024, salt=b"s" * 32, nonce_prefix=b"p" * 7).to_bytes()
    for cut in range(HEADER_SIZE_BYTES):
        with pytest.raises(InvalidSealedMessage):
            StreamHeader.parse(good[:cut])
    for size in (0, 1, 64 * 1024 - 1, 1024 * 1024 + 1, 2**32 - 1):
        with pytest.raises(InvalidSealedMessage):
            StreamHeader.parse(good[:5] + struct.pack(">I", size) + good[9:])
    for version in (0, 2, 255):
        with pytest.raises(InvalidSealedMessage):
            StreamHeader.parse(good[:4] + bytes([version]) + good[5:])
    for total in (0, 1, HEADER_SIZE_BYTES, HEADER_SIZE_BYTES + 15, -(2**63), 2**64 - 1, 2**80):
        with pytest.raises(InvalidSealedMessage):
            StreamDecryptor(b"k" * 32, good, total, context=b"c")
    two = good + good  # two headers back to back: only the first 48 bytes are the header
    assert StreamHeader.parse(two) == StreamHeader.parse(good)


# --- the batch document --------------------------------------------------------------------------------
def index(document: bytes | bytearray, max_items: int = 10_000) -> Any:
    doc = bytes(document)
    return index_batch(
        lambda offset, size: doc[offset : offset + size], len(doc), max_items=max_items, max_item_bytes=2**20
    )


def test_batch_document_fields_at_their_edges_are_invalid_batch() -> None:
    good = bytes(encode_batch("echo", [b"ab", b"c"]))
    bad: dict[str, bytes] = {f"cut {c}": good[:c] for c in range(len(good))}
    bad |= {f"count {n}": good[:10] + struct.pack(">I", n) + good[14:] for n in (0, 1, 3, 10_001, 2**32 - 1)}
    bad |= {f"length {n}": good[:14] + struct.pack(">I", n) + good[18:] for n in (0, 1, 3, 2**20 + 1, 2**32 - 1)}
    bad |= {f"name length {n}": good[:5] + bytes([n]) + good[6:] for n in (0, 3, 5, 64, 65, 255)}
    bad |= {"trailing byte": good + b"\x00", "two documents": good + good}
    for name in ("ech\x00", "\u00e9ch".encode().decode("latin-1")[:4], "ec o", "ec/o"):
        raw = name.encode("latin-1")
        bad[f"name {name!r}"] = good[:6] + raw + good[10:]
    for label, document in bad.items():
        with pytest.raises(InvalidPayload) as refused:
            index(document)
        assert refused.value.code == "invalid_batch", label
    assert index(good).count == 2


def test_hostile_batch_documents_through_the_server_leave_no_spill_file(server: Any, http: httpx.Client) -> None:
    good = bytes(encode_batch("echo", [b"x" * 5000, b"y"]))
    documents = {
        "count 2**32-1": good[:10] + struct.pack(">I", 2**32 - 1) + good[14:],
        "item 2**32-1": good[:14] + struct.pack(">I", 2**32 - 1) + good[18:],
        "trailing garbage": good + b"\x00" * 4096,
        "two documents": good + good,
        "unknown model with NUL": bytes(encode_batch("echo", [b"x"])).replace(b"echo", b"ech\x00"),
    }
    for name, document in documents.items():
        body = sealed_for(server, model="", path="/v1/batches", payload=document)
        response = post_sealed(http, server, "/v1/batches", body)
        assert response.status_code == 422, (name, response.text[:200])
        assert_4xx_json(response, "invalid_batch")
    assert list(server.spill_dir.iterdir()) == []


def test_results_document_fields_at_their_edges_are_refused_by_the_client() -> None:
    from cleanroom.runtime.batch_format import decode_results, results_header

    good = results_header(array("B", [0, 1]), array("I", [2, 3])) + b"okbad"
    assert [r.ok for r in decode_results(good)] == [True, False]
    bad = {f"cut {c}": good[:c] for c in range(len(good))}
    bad |= {f"count {n}": good[:5] + struct.pack(">I", n) + good[9:] for n in (0, 1, 3, 2**32 - 1)}
    bad |= {f"length {n}": good[:10] + struct.pack(">I", n) + good[14:] for n in (0, 1, 3, 2**32 - 1)}
    bad |= {"status 2": good[:9] + b"\x02" + good[10:], "trailing": good + b"\x00", "twice": good + good}
    for label, document in bad.items():
        try:
            decode_results(document)
        except ValueError:
            continue
        pytest.fail(f"a results document with {label} was accepted")


# --- safetensors lies to a user model ------------------------------------------------------------------
def safetensors_blob(header: dict[str, Any], data: bytes = b"") -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def entry(shape: list[int], offsets: tuple[int, int], dtype: str = "U8") -> dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": list(offsets)}


SAFETENSORS_LIES = {
    "65 dimensions": ({"x": entry([1] * 65, (0, 1))}, b"z"),  # numpy's limit is 64
    "500 000 dimensions": ({"x": entry([1] * 500_000, (0, 1))}, b"z"),  # was: a model hung > 120 s
    "dtype lies about the size": ({"x": entry([2], (0, 2), "F32")}, b"zz"),
    "offset past the end": ({"x": entry([1], (4, 5))}, b"z"),
    "offsets reversed": ({"x": entry([0], (1, 0))}, b"z"),
    "offsets 2**64": ({"x": entry([1], (2**64 - 1, 2**64))}, b"z"),
    "overlapping": ({"x": entry([2], (0, 2)), "y": entry([2], (1, 3))}, b"zzz"),
    "non-contiguous": ({"x": entry([1], (0, 1)), "y": entry([1], (2, 3))}, b"zzz"),
    "shape product overflows": ({"x": entry([2**32, 2**32, 2**32], (0, 1))}, b"z"),
    "zero dim hides an overflow": ({"x": entry([0, 2**63, 2**63], (0, 0))}, b""),
    "duplicate names": (
        b'{"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}',
        b"z",
    ),
    "metadata bomb": ({"__metadata__": {f"k{i}": "v" * 100 for i in range(12_000)}, "x": entry([1], (0, 1))}, b"z"),
    "metadata not strings": ({"__metadata__": {"k": 1}, "x": entry([1], (0, 1))}, b"z"),
}


@pytest.mark.parametrize("name", sorted(SAFETENSORS_LIES))
def test_safetensors_lies_are_invalid_payload(name: str) -> None:
    header, data = SAFETENSORS_LIES[name]
    raw = (struct.pack("<Q", len(header)) + header) if isinstance(header, bytes) else safetensors_blob(header)
    with pytest.raises(InvalidPayload):
        read_safetensors(memoryview(bytearray(raw + data)))


def test_zero_size_tensors_and_64_dimensions_still_read() -> None:
    blob = safetensors_blob({"a": entry([0, 5], (0, 0)), "b": entry([0], (0, 0)), "c": entry([1] * 64, (0, 1))}, b"z")
    tensors = read_safetensors(memoryview(bytearray(blob)))
    assert tensors["a"].shape == (0, 5) and tensors["c"].dim() == 64


def test_a_tensor_with_thousands_of_dimensions_is_invalid_payload_at_the_server(server: Any) -> None:
    from cleanroom.client import ClientError

    with server.client("alpha") as client, pytest.raises(ClientError) as refused:
        client.infer("counter", safetensors_blob({"x": entry([1] * 5000, (0, 1))}, b"z"))
    assert (refused.value.status, refused.value.code) == (422, "invalid_payload")  # was model_rejected_input


# --- the admin API: bodies and names -------------------------------------------------------------------
def admin(server: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {(Path(server.data_dir) / 'admin.token').read_text().strip()}"}


BAD_CREATE_BODIES: list[Any] = [
    [],
    "alpha",
    None,
    {"name": 1},
    {"name": ["a"]},
    {"name": "gamma", "weight": "1"},
    {"name": "gamma", "weight": -1},
    {"name": "gamma", "weight": 0},
    {"name": "gamma", "weight": 10**400},
    {"name": "gamma", "weight": 1e308},
    {"name": "gamma", "allow": "10.0.0.0/8"},
    {"name": "gamma", "allow": [1]},
    {"name": "gamma", "allow": ["not a network"]},
    {"name": "gamma", "allow": ["10.0.0.0/8"] * 10_000},
]
BAD_NAMES = [
    "..",
    ".",
    "/",
    "a/b",
    "../alpha",
    "alpha\n",
    "alpha\x00",
    "\u0430lpha",  # Cyrillic a: a confusable of "alpha"
    "alpha\u202e",  # RTL override
    "ALPHA",
    "alpha ",
    "a" * 10_000,
    "",
]


RAW_CREATE_BODIES = [json.dumps(b).encode() for b in BAD_CREATE_BODIES] + [
    b'{"name": "gamma", "weight": 1e999}',
    b'{"name": "gamma", "weight": NaN}',
    b'{"name": "gamma"',
    b'{"name": "gamma", "name": "delta"}',  # was 201 "delta": pydantic keeps the last member
    b'\xef\xbb\xbf{"name": "gamma"}',
    b"[" * 50_000,
]


def tenant_names(server: Any, http: httpx.Client) -> list[str]:
    return sorted(t["name"] for t in http.get("/v1/admin/tenants", headers=admin(server)).json()["tenants"])


def assert_creates_nothing(server: Any, http: httpx.Client, body: bytes) -> None:
    before = tenant_names(server, http)
    response = http.post("/v1/admin/tenants", content=body, headers=admin(server))
    assert response.status_code in (400, 409, 413, 422), (body[:80], response.status_code, response.text[:200])
    assert json_error(response.content)["message"]
    assert tenant_names(server, http) == before


@pytest.mark.parametrize("body", RAW_CREATE_BODIES, ids=range(len(RAW_CREATE_BODIES)))
def test_hostile_admin_bodies_are_4xx_and_create_nothing(server: Any, http: httpx.Client, body: bytes) -> None:
    assert_creates_nothing(server, http, body)  # {"weight": "1"} was a 201: lax pydantic took the string


@pytest.mark.parametrize("name", BAD_NAMES, ids=range(len(BAD_NAMES)))
def test_hostile_tenant_names_are_4xx_and_create_nothing(server: Any, http: httpx.Client, name: str) -> None:
    assert_creates_nothing(server, http, json.dumps({"name": name}).encode())  # "alpha\n" was a 201


@pytest.mark.parametrize(
    "body",
    [
        {"weight": -5},
        {"weight": "heavy"},
        {"weight": 10**400},
        {"allow": "0.0.0.0/0"},
        {"allow": [None]},
        {"allow": ["::/0\x00"]},
        [1],
    ],
)
def test_hostile_tenant_updates_are_4xx_and_change_nothing(server: Any, http: httpx.Client, body: Any) -> None:
    response = http.patch("/v1/admin/tenants/beta", content=json.dumps(body).encode(), headers=admin(server))
    assert response.status_code in (400, 422), response.text[:200]
    json_error(response.content)
    tenants = http.get("/v1/admin/tenants", headers=admin(server)).json()["tenants"]
    assert [t["weight"] for t in tenants if t["name"] == "beta"] == [1.0]


@pytest.mark.parametrize("name", ["..", "%2E%2E", "%2F", "beta%00", "beta%0A", "%E2%80%AEbeta", "b" * 10_000, "BETA"])
def test_tenant_path_components_that_are_not_names_are_a_plain_4xx(server: Any, http: httpx.Client, name: str) -> None:
    for method, suffix, body in (("PATCH", "", b'{"weight": 2}'), ("GET", "/keys", b""), ("POST", "/keys", b"{}")):
        response = http.request(method, f"/v1/admin/tenants/{name}{suffix}", content=body, headers=admin(server))
        assert 400 <= response.status_code < 500, (method, name, response.status_code)
        json_error(response.content)
    response = http.delete(f"/v1/admin/tenants/{name}", headers=admin(server))
    assert 400 <= response.status_code < 500 and json_error(response.content)
    assert {t["name"] for t in http.get("/v1/admin/tenants", headers=admin(server)).json()["tenants"]} >= {
        "alpha",
        "beta",
    }


def test_hostile_credential_bodies_are_4xx(server: Any, http: httpx.Client) -> None:
    for body in (
        {"label": "x" * 10_000},
        {"label": "a\nb"},
        {"label": "\u202e"},
        {"label": 5},
        {"expires_in_s": -1},
        {"expires_in_s": 10**400},
        {"expires_in_s": "soon"},
    ):
        response = http.post("/v1/admin/tenants/beta/keys", content=json.dumps(body).encode(), headers=admin(server))
        assert response.status_code in (400, 422), (body, response.text[:200])
        json_error(response.content)


KEY_ACTION_BODIES = [
    ("retire", b'{"scope": "tenant", "target": "beta"}'),  # was a 500: KeyError on min_version
    ("retire", b'{"scope": "tenant", "target": "beta", "min_version": "abc"}'),  # was a 500: ValueError
    ("retire", b'{"scope": "tenant", "target": "beta", "min_version": 1e999}'),  # was a 500: OverflowError
    ("retire", b'{"scope": "tenant", "target": "beta", "min_version": [1]}'),  # was a 500: TypeError
    ("retire", b'{"scope": "tenant", "target": "beta", "min_version": -5}'),
    ("rotate", b'{"scope": "hpke", "target": "beta", "overlap_s": "abc"}'),  # was a 500
    ("rotate", b'{"scope": "hpke", "target": "beta", "overlap_s": NaN}'),
    ("rotate", b'{"scope": "hpke", "target": "beta", "overlap_s": -1}'),
    ("rotate", b'{"scope": "hpke", "target": "beta", "overlap_s": 1e999}'),
    ("rotate", b'{"scope": "hpke", "target": {"a": 1}}'),
    ("rotate", b'{"scope": "tenant", "target": "../beta"}'),
    ("byok", b'{"scope": "tenant", "target": "beta", "key": 5}'),
    ("revoke", b'{"scope": ["system"]}'),
    ("revoke", b'{"scope": "tenant", "target": "beta", "scope": "system"}'),
    ("status", b"[1]"),
    ("nope", b"{}"),
]


@pytest.mark.parametrize(("action", "body"), KEY_ACTION_BODIES, ids=range(len(KEY_ACTION_BODIES)))
def test_hostile_key_action_bodies_are_4xx(server: Any, http: httpx.Client, action: str, body: bytes) -> None:
    response = http.post(f"/v1/admin/keys/{action}", content=body, headers=admin(server))
    assert 400 <= response.status_code < 500, (action, body, response.status_code, response.text[:200])
    assert json_error(response.content)["message"]


# --- last: the server is whole, the spill directory empty, the audit log verifying --------------------
def test_zz_server_is_healthy_serving_clean_and_its_audit_log_verifies(server: Any) -> None:
    assert server.process.poll() is None
    with server.client("alpha") as client:
        assert client.infer("echo", b"still serving") == b"still serving"
    problems = server_errors_in_log(server.log_path)
    assert not problems, "\n".join(problems[:5])
    assert list(server.spill_dir.iterdir()) == []
    assert {p.name for p in Path(server.data_dir).iterdir()} - server.data_entries <= {"replay"}
    with httpx.Client(base_url=server.url, verify=tls_context(server), timeout=TIMEOUT_S) as http:
        assert tenant_names(server, http) == ["alpha", "beta"]
    verified = server.cli("audit", "verify", "--data-dir", str(server.data_dir), check=False)
    assert verified.returncode == 0, verified.stdout.decode()[-1000:] + verified.stderr.decode()[-1000:]
