"""A client written only from the public documents (tests/independent_client.py) against a real server.

It proves three things: the documents are enough to interoperate (round trips, the test vectors byte for
byte), every hostile request such a client can build gets the documented 4xx and JSON error body (never a
500) with the server still healthy afterwards, and the client itself catches a tampered response.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from independent_client import (
    CONTENT_TYPE,
    HPKE_INFO_LABEL,
    HPKE_SUITE,
    REQUEST_KEY_LABEL,
    RESPONSE_KEY_LABEL,
    IndependentClient,
    ResponseRejected,
    SealedRequest,
    TenantKey,
    canonical_metadata,
    derive_key_nonce,
    encrypt_payload,
    frame_request,
    open_response,
    request_prefix,
    seal_hpke,
    seal_request,
    seal_response,
)

VECTORS = json.loads((Path(__file__).parent / "vectors" / "sealed-v1.json").read_text())
MAX_BODY_BYTES = 2 << 20  # room for the 1 MiB round trip, small enough to test 413 cheaply


@dataclass
class Deployment:
    url: str
    tenants: dict[str, dict[str, Any]]
    healthy: Callable[[], bool]

    def client(self, tenant: str) -> IndependentClient:
        return IndependentClient(httpx.Client(base_url=self.url, timeout=60), self.tenants[tenant]["api_key"])


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    from support.server import server_env, start_server

    env = server_env(CLEANROOM_MAX_BODY_BYTES=str(MAX_BODY_BYTES))
    server = start_server(tmp_path_factory.mktemp("independent") / "data", "--models", "echo", tls=False, env=env)
    try:
        server.create_tenant("alpha")
        server.create_tenant("beta")
        yield Deployment(server.url, server.tenants, server.healthy)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def alpha(deployment: Deployment) -> Iterator[IndependentClient]:
    client = deployment.client("alpha")
    with client.http:
        yield client


@pytest.fixture(scope="module")
def beta(deployment: Deployment) -> Iterator[IndependentClient]:
    client = deployment.client("beta")
    with client.http:
        yield client


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    """The documented status and `{"error": {"code", "message"}}`, nothing else in the body."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert body["error"]["code"] == code, body


# --- interoperability -------------------------------------------------------------------------------


def test_public_key_answer_matches_the_token_tenant_create_printed(deployment: Deployment, alpha) -> None:
    key = alpha.fetch_key()
    created = deployment.tenants["alpha"]
    assert (key.tenant_id, key.key_id) == (created["tenant_id"], created["key_id"])
    assert TenantKey.from_token(created["public_key"]) == key
    assert key.fingerprint == created["fingerprint"]


@pytest.mark.parametrize("size", [0, 1, 64 << 10, 1 << 20])
def test_echo_round_trip(alpha, size: int) -> None:
    payload = os.urandom(size)
    assert alpha.infer("echo", payload) == payload


def test_minilm_over_tls_on_the_shared_server(shared_server: Any) -> None:
    """One real model, through TLS; the suite's shared server (conftest) already loads minilm, so this
    costs no server start of its own in a full run."""
    client = IndependentClient(shared_server.http(), shared_server.tenants["alpha"]["api_key"])
    with client.http:
        out = client.infer("minilm", json.dumps({"inputs": ["hello world", "ünïcödé ✓"]}).encode())
        # safetensors: u64 little-endian header length, JSON header, raw tensor bytes
        (header_length,) = struct.unpack("<Q", out[:8])
        header = json.loads(out[8 : 8 + header_length])
        assert header["embeddings"]["dtype"] == "F32" and header["embeddings"]["shape"] == [2, 384]
        assert len(out) == 8 + header_length + 2 * 384 * 4
        refused = client.post("minilm", client.seal("minilm", b"not json").body)
        assert_refused(refused, 422, "invalid_payload")


def test_timestamps_inside_the_window_are_accepted(alpha) -> None:
    now = int(time.time())
    for ts in (now - 290, now + 290):
        sealed = alpha.seal("echo", b"in time", ts=ts)
        response = alpha.post("echo", sealed.body)
        assert response.status_code == 200, response.text
        assert sealed.open_response(response.content) == b"in time"


def test_request_ids_are_per_tenant(alpha, beta) -> None:
    request_id = os.urandom(16)
    for client in (alpha, beta):
        sealed = client.seal("echo", b"same id", request_id=request_id)
        response = client.post("echo", sealed.body)
        assert response.status_code == 200, response.text


# --- test vectors (docs/wire-format.md § Test vectors) -------------------------------------------------


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda case: case["name"])
def test_vector_reproduces_byte_for_byte(case: dict[str, Any]) -> None:
    assert VECTORS["suite"] == "DHKEM(P-384,HKDF-SHA384)/HKDF-SHA384/AES-256-GCM"
    private_key = ec.derive_private_key(int(VECTORS["recipient_private_scalar"], 16), ec.SECP384R1())
    body = bytes.fromhex(case["sealed_request"])
    cek, request_id = bytes.fromhex(case["content_key"]), bytes.fromhex(case["request_id"])
    payload = bytes.fromhex(case["payload"])

    metadata = canonical_metadata(
        tenant_id=case["tenant_id"], request_id=request_id, ts=case["ts"], model=case["model"], path=case["path"]
    )
    assert metadata == case["metadata"].encode()

    # The header up to the HPKE blob is deterministic; the blob holds a random ephemeral key, so it is
    # checked by opening it with the vector's recipient key.
    prefix = request_prefix(case["key_id"].encode())
    header_length = case["header_length"]
    hpke_blob = body[len(prefix) + 2 : header_length]
    assert body[:header_length] == frame_request(prefix, hpke_blob)
    assert HPKE_SUITE.decrypt(hpke_blob, private_key, info=HPKE_INFO_LABEL + prefix) == cek + metadata

    header = body[:header_length]
    ciphertext = encrypt_payload(cek, request_id, header, metadata, payload)
    assert ciphertext.hex() == case["payload_ciphertext"]
    assert header + ciphertext == body

    request = SealedRequest(body=body, request_id=request_id, cek=cek, metadata=metadata)
    response_plaintext = bytes.fromhex(case["response_plaintext"])
    assert seal_response(request, response_plaintext).hex() == case["sealed_response"]
    assert open_response(request, bytes.fromhex(case["sealed_response"])) == response_plaintext

    # what this client seals for the same inputs opens with the vector's key to the same content
    key = TenantKey(
        case["tenant_id"],
        case["key_id"],
        private_key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint),
    )
    ours = seal_request(
        key, payload, model=case["model"], path=case["path"], ts=case["ts"], request_id=request_id, cek=cek
    )
    assert ours.body[: len(prefix) + 2] == body[: len(prefix) + 2]
    assert HPKE_SUITE.decrypt(
        ours.body[len(prefix) + 2 : header_length], private_key, info=HPKE_INFO_LABEL + prefix
    ) == (cek + metadata)


def test_intermediate_values_in_the_doc_are_right() -> None:
    """The echo-short key, nonce and header bytes printed in docs/wire-format.md § Test vectors."""
    doc = (Path(__file__).parents[1] / "docs" / "wire-format.md").read_text()
    block = doc.split("Intermediate values for `echo-short`")[1].split("```")[1]
    values: dict[str, str] = {}
    label = ""
    for line in block.strip().splitlines():  # a 22-column label (blank on continuation lines), then hex
        label = line[:22].strip() or label
        values[label] = values.get(label, "") + line[22:].split("(")[0].replace(" ", "")
    case = VECTORS["cases"][0]
    assert case["name"] == "echo-short"
    cek, request_id = bytes.fromhex(case["content_key"]), bytes.fromhex(case["request_id"])
    private_key = ec.derive_private_key(int(VECTORS["recipient_private_scalar"], 16), ec.SECP384R1())
    point = private_key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    assert values["recipient public key"] == point.hex()
    assert values["bytes 0..8+K"] == case["sealed_request"][: 2 * (8 + len(case["key_id"]))]
    for which, info in (("request", REQUEST_KEY_LABEL), ("response", RESPONSE_KEY_LABEL)):
        key, nonce = derive_key_nonce(cek, request_id, info)
        assert (values[f"{which} key"], values[f"{which} nonce"]) == (key.hex(), nonce.hex())


def test_token_with_a_colon_in_the_key_id_parses() -> None:
    point = (
        ec.generate_private_key(ec.SECP384R1()).public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    )
    token = "cleanroom-pk:v1:t_0123456789abcdef:hk:a:b:" + base64.urlsafe_b64encode(point).decode().rstrip("=")
    key = TenantKey.from_token(token)
    assert (key.tenant_id, key.key_id, key.point) == ("t_0123456789abcdef", "hk:a:b", point)


# --- hostile requests -------------------------------------------------------------------------------
#
# Each builder gets (alpha, beta) and returns (model to POST to, body); alpha's API key sends it.

Builder = Callable[[IndependentClient, IndependentClient], tuple[str, bytes]]


def split(body: bytes) -> tuple[int, int]:
    """(K, E) of a sealed request built by this client."""
    k = body[5]
    return k, int.from_bytes(body[6 + k : 8 + k], "big")


def with_blob_length(body: bytes, length: int) -> bytes:
    k, _ = split(body)
    return body[: 6 + k] + length.to_bytes(2, "big") + body[8 + k :]


def with_metadata(metadata: Callable[[dict[str, Any]], bytes], request_id: bytes | None = None) -> Builder:
    """A request whose metadata bytes are `metadata(fields)`; the payload is correctly sealed to them."""

    def build(alpha: IndependentClient, _beta: IndependentClient) -> tuple[str, bytes]:
        rid = os.urandom(16)
        fields = {
            "model": "echo",
            "path": "",
            "request_id": rid.hex(),
            "tenant_id": alpha.key.tenant_id,
            "ts": int(time.time()),
            "v": 1,
        }
        return "echo", alpha.seal("echo", b"x", metadata=metadata(fields), request_id=request_id or rid).body

    return build


def canonical(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def sealed_with_plaintext(hpke_plaintext: bytes) -> Builder:
    def build(alpha: IndependentClient, _beta: IndependentClient) -> tuple[str, bytes]:
        prefix = request_prefix(alpha.key.key_id.encode())
        return "echo", frame_request(prefix, seal_hpke(alpha.key.public_key(), prefix, hpke_plaintext)) + bytes(16)

    return build


def sealed(**overrides: Any) -> Builder:
    """A request this client seals for echo, with `seal_request` overrides."""
    return lambda a, b: ("echo", a.seal("echo", b"x", **overrides).body)


def mutated(change: Callable[[bytes], bytes]) -> Builder:
    """A good echo request, then `change` applied to its bytes."""
    return lambda a, b: ("echo", change(a.seal("echo", b"hostile").body))


def stale_by(offset_s: int) -> Builder:
    return lambda a, b: ("echo", a.seal("echo", b"x", ts=int(time.time()) + offset_s).body)


def sealed_to(tenant_of: str, key_id_of: str, point_of: str) -> Builder:
    """Mix tenant id, key id and public key of alpha (`a`) and beta (`b`)."""

    def build(a: IndependentClient, b: IndependentClient) -> tuple[str, bytes]:
        pick = {"a": a.key, "b": b.key}
        key = TenantKey(pick[tenant_of].tenant_id, pick[key_id_of].key_id, pick[point_of].point)
        return "echo", seal_request(key, b"x", model="echo").body

    return build


BAD = (400, "invalid_sealed_message")
TAG = (400, "decryption_failed")
CONTEXT = (400, "context_mismatch")
STALE = (400, "stale_request")

HOSTILE: dict[str, tuple[Builder, int, str]] = {
    # which key
    "unknown key id": (sealed(key_id=b"hk_0000000000000000"), 400, "unknown_key_id"),
    "another tenant's key": (sealed_to("b", "b", "b"), 400, "unknown_key_id"),
    "own key id, other tenant's point": (sealed_to("a", "a", "b"), *TAG),
    "key id with invalid characters": (sealed(key_id=b"hk/../x"), *BAD),
    "key id not ASCII": (sealed(key_id=b"hk\xff"), *BAD),
    # what the metadata names, and when
    "metadata names another tenant": (sealed_to("b", "a", "a"), *CONTEXT),
    "metadata names another model": (lambda a, b: ("echo", a.seal("other", b"x").body), *CONTEXT),
    "metadata names a path on the infer route": (sealed(path="/v1/models/echo/infer"), *CONTEXT),
    "stale timestamp": (stale_by(-600), *STALE),
    "future timestamp": (stale_by(600), *STALE),
    "timestamp 0": (sealed(ts=0), *STALE),
    "timestamp -1": (sealed(ts=-1), *STALE),
    "timestamp 10**30": (sealed(ts=10**30), *STALE),
    "request id in metadata is not the one the payload key used": (
        with_metadata(lambda f: canonical({**f, "request_id": os.urandom(16).hex()})),
        *TAG,
    ),
    # metadata that is not the canonical JSON object
    "metadata not UTF-8": (with_metadata(lambda f: b"\xff\xfe" + canonical(f)[2:]), *BAD),
    "metadata UTF-16": (with_metadata(lambda f: canonical(f).decode().encode("utf-16")), *BAD),
    "metadata with a UTF-8 BOM": (with_metadata(lambda f: b"\xef\xbb\xbf" + canonical(f)), *BAD),
    "metadata not JSON": (with_metadata(lambda f: b"model=echo"), *BAD),
    "metadata a JSON array": (with_metadata(lambda f: b"[]"), *BAD),
    "metadata empty object": (with_metadata(lambda f: b"{}"), *BAD),
    "metadata with an extra field": (with_metadata(lambda f: canonical({**f, "priority": 1})), *BAD),
    "metadata missing a field": (with_metadata(lambda f: canonical({k: v for k, v in f.items() if k != "path"})), *BAD),
    "metadata with a duplicate key": (with_metadata(lambda f: canonical(f)[:-1] + b',"v":1}'), *BAD),
    "metadata with whitespace": (with_metadata(lambda f: json.dumps(f, sort_keys=True).encode()), *BAD),
    "metadata keys unsorted": (
        with_metadata(lambda f: json.dumps(dict(reversed(list(f.items()))), separators=(",", ":")).encode()),
        *BAD,
    ),
    "metadata trailing space": (with_metadata(lambda f: canonical(f) + b" "), *BAD),
    "metadata request id in upper case": (
        with_metadata(lambda f: canonical({**f, "request_id": f["request_id"].upper()})),
        *BAD,
    ),
    "metadata request id too short": (
        with_metadata(lambda f: canonical({**f, "request_id": f["request_id"][:30]})),
        *BAD,
    ),
    "metadata non-ASCII not escaped": (
        with_metadata(lambda f: canonical(f).replace(b'"echo"', '"écho"'.encode())),
        *BAD,
    ),
    "metadata version 2": (with_metadata(lambda f: canonical({**f, "v": 2})), *BAD),
    "metadata version 1.0": (with_metadata(lambda f: canonical(f).replace(b'"v":1', b'"v":1.0')), *BAD),
    "metadata ts a string": (with_metadata(lambda f: canonical({**f, "ts": str(f["ts"])})), *BAD),
    "metadata ts a float": (with_metadata(lambda f: canonical({**f, "ts": f["ts"] + 0.5})), *BAD),
    "metadata ts true": (with_metadata(lambda f: canonical({**f, "ts": True})), *BAD),
    "metadata ts NaN": (with_metadata(lambda f: canonical(f).replace(str(f["ts"]).encode(), b"NaN")), *BAD),
    "metadata model null": (with_metadata(lambda f: canonical({**f, "model": None})), *BAD),
    "metadata over 2048 bytes": (with_metadata(lambda f: canonical({**f, "path": "/" + "a" * 2000})), *BAD),
    "metadata empty": (sealed_with_plaintext(bytes(32)), *BAD),
    "HPKE plaintext shorter than the CEK": (sealed_with_plaintext(bytes(31)), *BAD),
    # framing and length fields
    "empty body": (lambda a, b: ("echo", b""), *BAD),
    "magic only": (lambda a, b: ("echo", b"CRQ1"), *BAD),
    "wrong magic": (mutated(lambda body: b"CRS1" + body[4:]), *BAD),
    "suite 0x02": (mutated(lambda body: body[:4] + b"\x02" + body[5:]), *BAD),
    "key id length 0": (mutated(lambda body: body[:5] + b"\x00" + body[6:]), *BAD),
    "key id length 65": (mutated(lambda body: body[:5] + b"\x41" + body[6:]), *BAD),
    "key id length 255": (mutated(lambda body: body[:5] + b"\xff" + body[6:]), *BAD),
    "body ends inside the key id": (mutated(lambda body: body[:9]), *BAD),
    "body ends inside the blob length": (mutated(lambda body: body[: 7 + split(body)[0]]), *BAD),
    "blob length 0": (mutated(lambda body: with_blob_length(body, 0)), *BAD),
    "blob length 113": (mutated(lambda body: with_blob_length(body, 113)), *BAD),
    "blob length 4097": (mutated(lambda body: with_blob_length(body, 4097)), *BAD),
    "blob length 65535": (mutated(lambda body: with_blob_length(body, 0xFFFF)), *BAD),
    "blob length past the end of the body": (mutated(lambda body: with_blob_length(body, 4000)), *BAD),
    "blob length one short": (mutated(lambda body: with_blob_length(body, split(body)[1] - 1)), *TAG),
    "blob length one long": (mutated(lambda body: with_blob_length(body, split(body)[1] + 1)), *TAG),
    "blob truncated by one byte": (mutated(lambda body: truncate_blob(body)), *TAG),
    "blob extended by one byte": (mutated(lambda body: extend_blob(body)), *TAG),
    "blob is only the encapsulated key": (
        lambda a, b: ("echo", frame_request(request_prefix(a.key.key_id.encode()), bytes(97)) + bytes(16)),
        *BAD,
    ),
    "encapsulated key not on the curve": (mutated(lambda body: replace_enc(body, b"\x04" + b"\x01" * 96)), *TAG),
    "no payload ciphertext": (mutated(lambda body: header_only(body)), *BAD),
    "payload shorter than its tag": (mutated(lambda body: header_only(body) + bytes(15)), *BAD),
    "payload tag flipped": (mutated(lambda body: flip(body, -1)), *TAG),
    "payload byte flipped": (mutated(lambda body: flip(body, -17)), *TAG),
    "a byte appended": (mutated(lambda body: body + b"\x00"), *TAG),
    # the HTTP layer
    "unknown model": (lambda a, b: ("nope", a.seal("nope", b"x").body), 404, "unknown_model"),
    "body over the server's limit": (lambda a, b: ("echo", bytes(MAX_BODY_BYTES + 1)), 413, "payload_too_large"),
}


def truncate_blob(body: bytes) -> bytes:
    k, e = split(body)
    end = 8 + k + e
    return with_blob_length(body[: end - 1] + body[end:], e - 1)


def extend_blob(body: bytes) -> bytes:
    k, e = split(body)
    end = 8 + k + e
    return with_blob_length(body[:end] + b"\x00" + body[end:], e + 1)


def replace_enc(body: bytes, enc: bytes) -> bytes:
    k, _ = split(body)
    return body[: 8 + k] + enc + body[8 + k + len(enc) :]


def header_only(body: bytes) -> bytes:
    k, e = split(body)
    return body[: 8 + k + e]


def flip(body: bytes, position: int) -> bytes:
    tampered = bytearray(body)
    tampered[position] ^= 0x80
    return bytes(tampered)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_request_gets_documented_error(deployment: Deployment, alpha, beta, name: str) -> None:
    build, status, code = HOSTILE[name]
    model, body = build(alpha, beta)
    assert_refused(alpha.post(model, body), status, code)
    assert deployment.healthy()


def test_replay_is_refused(deployment: Deployment, alpha) -> None:
    sealed = alpha.seal("echo", b"once")
    assert alpha.post("echo", sealed.body).status_code == 200
    assert_refused(alpha.post("echo", sealed.body), 400, "replayed_request")
    assert deployment.healthy()


def test_same_request_id_with_another_payload_is_refused(deployment: Deployment, alpha) -> None:
    first = alpha.seal("echo", b"first")
    assert alpha.post("echo", first.body).status_code == 200
    second = alpha.seal("echo", b"second, other key", request_id=first.request_id)
    assert_refused(alpha.post("echo", second.body), 400, "replayed_request")
    assert deployment.healthy()


def test_concurrent_copies_of_one_request_are_answered_once(deployment: Deployment, alpha) -> None:
    sealed = alpha.seal("echo", b"race")

    def post(_: int) -> tuple[int, str]:
        with httpx.Client(base_url=deployment.url, timeout=60) as http:
            headers = {"Authorization": f"Bearer {alpha.api_key}", "Content-Type": CONTENT_TYPE}
            response = http.post("/v1/models/echo/infer", content=sealed.body, headers=headers)
            return response.status_code, "" if response.status_code == 200 else response.json()["error"]["code"]

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(8)))
    # exactly one is answered; the others are replays (or, on a loaded host, shed before the check)
    assert [status for status, _ in answers].count(200) == 1, answers
    assert {code for status, code in answers if status != 200} <= {"replayed_request", "too_many_requests"}, answers


def test_a_payload_that_fails_still_uses_up_its_request_id(alpha) -> None:
    """docs/wire-format.md: the request id is remembered before the payload is decrypted."""
    sealed = alpha.seal("echo", b"x")
    assert_refused(alpha.post("echo", flip(sealed.body, -1)), 400, "decryption_failed")
    assert_refused(alpha.post("echo", sealed.body), 400, "replayed_request")


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"Content-Type": "application/octet-stream"}, 415, "unsupported_media_type"),
        ({"Content-Type": ""}, 415, "unsupported_media_type"),
        ({"Authorization": ""}, 401, "unauthenticated"),
        ({"Authorization": "Bearer cr_" + "a" * 36}, 401, "unauthenticated"),
        ({"Authorization": "Basic " + "a" * 39}, 401, "unauthenticated"),
        ({"Authorization": "Bearer " + "a" * 8000}, 401, "unauthenticated"),
    ],
    ids=["wrong content type", "no content type", "no API key", "unknown API key", "not bearer", "long API key"],
)
def test_http_refusals(deployment: Deployment, alpha, headers: dict[str, str], status: int, code: str) -> None:
    sent = {"Authorization": f"Bearer {alpha.api_key}", "Content-Type": CONTENT_TYPE, **headers}
    sent = {k: v for k, v in sent.items() if v}
    response = alpha.http.post("/v1/models/echo/infer", content=alpha.seal("echo", b"x").body, headers=sent)
    assert_refused(response, status, code)
    assert deployment.healthy()


# --- server bugs this client found (fixed) ------------------------------------------


@pytest.mark.parametrize("ts", [2**1024, -(10**400)], ids=["2**1024", "-10**400"])
def test_timestamp_too_large_for_a_float_is_stale_not_500(deployment: Deployment, ts: int) -> None:
    # a fresh connection: the 500 path resets the socket
    client = deployment.client("alpha")
    with client.http:
        response = client.post("echo", client.seal("echo", b"x", ts=ts).body)
    assert_refused(response, 400, "stale_request")
    assert deployment.healthy()


def test_unknown_model_without_api_key_is_401(deployment: Deployment) -> None:
    with httpx.Client(base_url=deployment.url, timeout=60) as http:
        response = http.post("/v1/models/nope/infer", content=b"x", headers={"Content-Type": CONTENT_TYPE})
    assert_refused(response, 401, "unauthenticated")


# --- the client refuses a tampered response ---------------------------------------------------------


@pytest.fixture
def answered(alpha) -> tuple[SealedRequest, bytes]:
    sealed = alpha.seal("echo", b"a" * 64)
    response = alpha.post("echo", sealed.body)
    assert response.status_code == 200
    assert sealed.open_response(response.content) == b"a" * 64
    return sealed, response.content


def test_every_flipped_response_byte_is_detected(answered: tuple[SealedRequest, bytes]) -> None:
    sealed, body = answered
    for position in range(len(body)):
        with pytest.raises(ResponseRejected):
            sealed.open_response(flip(body, position))


def test_truncated_or_extended_response_is_detected(answered: tuple[SealedRequest, bytes]) -> None:
    sealed, body = answered
    for length in range(len(body)):
        with pytest.raises(ResponseRejected):
            sealed.open_response(body[:length])
    with pytest.raises(ResponseRejected):
        sealed.open_response(body + b"\x00")


def test_response_to_another_request_is_detected(alpha, answered: tuple[SealedRequest, bytes]) -> None:
    _, body = answered
    other = alpha.seal("echo", b"a" * 64)
    with pytest.raises(ResponseRejected):
        other.open_response(body)
    # the same request id under another content key (a response forged by someone without the CEK)
    sealed = answered[0]
    forged = SealedRequest(body=b"", request_id=sealed.request_id, cek=os.urandom(32), metadata=sealed.metadata)
    with pytest.raises(ResponseRejected):
        forged.open_response(body)
