"""A client in another language (tests/node_client/client.mjs: Node.js built-ins only, written from the
public documents alone) against the test vectors and a real server.

What it proves beyond tests/test_independent_client.py: a second implementation sharing no library with
the server — HPKE composed from RFC 9180's pseudocode over node's ECDH, HMAC and AES-GCM, canonical JSON
from JSON.stringify — interoperates from docs/wire-format.md alone, and the refusals it meets are the
documented JSON codes.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).resolve().parent
CLIENT = TESTS / "node_client" / "client.mjs"
VECTORS = TESTS / "vectors" / "sealed-v1.json"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(
    NODE is None,
    reason="missing interpreter: `node` (v18+) is not on PATH, so the Node.js client cannot run "
    "(not a skipped service: nothing on the server side is missing)",
)


def run_node(*args: str, stdin: bytes = b"", cert: str | None = None) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ)
    if cert:
        env["NODE_EXTRA_CA_CERTS"] = cert  # the server's self-signed dev certificate, for node's fetch
    assert NODE is not None
    return subprocess.run([NODE, str(CLIENT), *args], input=stdin, capture_output=True, timeout=60, env=env)


PAYLOADS = {"empty": b"", "short": os.urandom(100), "1MiB": os.urandom(1 << 20)}
MINILM = json.dumps({"inputs": ["hello world", "ünïcödé ✓"]}).encode()
TAMPERED = {
    "magic": ["--tamper-response", "0"],
    "request-id": ["--tamper-response", "5"],
    "ciphertext": ["--tamper-response", "21"],  # the first ciphertext byte
    "tag": ["--tamper-response", "-1"],
    "truncated": ["--truncate-response", "36"],  # one byte short of header + tag
    "swapped": ["--swap-response"],  # another request's genuine answer
}
SCENARIOS: list[dict[str, Any]] = [
    *({"id": f"echo-{name}", "model": "echo", "payload": p} for name, p in PAYLOADS.items()),
    {"id": "minilm", "model": "minilm", "payload": MINILM},
    *(
        {"id": f"tampered-{name}", "model": "echo", "payload": b"do not trust the wire", "flags": f}
        for name, f in TAMPERED.items()
    ),
    {"id": "stale-past", "model": "echo", "payload": b"late", "flags": ["--ts-offset", "-400"]},
    {"id": "stale-future", "model": "echo", "payload": b"early", "flags": ["--ts-offset", "400"]},
    {"id": "replay", "model": "echo", "payload": b"once only", "flags": ["--replay"]},
]


@pytest.fixture(scope="module")
def outcomes(shared_server: Any) -> dict[str, dict[str, Any]]:
    """Every live scenario through one node process (a node start + TLS handshake is ~0.4 s here)."""
    scenarios = [{**s, "payload": base64.b64encode(s["payload"]).decode()} for s in SCENARIOS]
    api_key = shared_server.tenants["alpha"]["api_key"]
    result = run_node(
        "scenarios",
        "--url",
        shared_server.url,
        "--api-key",
        api_key,
        stdin=json.dumps(scenarios).encode(),
        cert=shared_server.cert,
    )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["id"] for line in lines] == [s["id"] for s in SCENARIOS]
    return {line["id"]: line for line in lines}


def answer(outcome: dict[str, Any]) -> bytes:
    assert outcome["exit"] == 0, outcome
    return base64.b64decode(outcome["result"])


def failure(result: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    """The one JSON line the client writes on stderr when it exits nonzero."""
    lines = result.stderr.decode().strip().splitlines()
    assert lines, result
    report: dict[str, Any] = json.loads(lines[-1])
    return report


def test_vectors_byte_for_byte() -> None:
    result = run_node("vectors", str(VECTORS))
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout) == {"echo-short": "ok", "empty": "ok", "path-call": "ok"}


# strings the canonical JSON must escape exactly as Python's json.dumps does (wire-format.md, Metadata):
# DEL (ASCII, yet escaped: the docs said only "non-ASCII" until session 11), C0 controls with and without
# a short escape, quote and backslash, Latin-1, BMP, an astral character (a surrogate pair), a lone
# surrogate, and `/` (not escaped)
AWKWARD = ["\x7f", "\x00\x01\x1f", "\b\f\n\r\t", '"\\', "é", "✓ü", "😀", "\ud800", "/v1/x?a=1&b=%2F"]


def test_canonical_metadata_escapes_like_python() -> None:
    fields = [
        {"model": text, "path": text[::-1], "request_id": os.urandom(16).hex(), "tenant_id": "t_0", "ts": 1 << 40}
        for text in AWKWARD
    ]
    result = run_node("canonical", stdin=json.dumps(fields).encode())
    assert result.returncode == 0, result.stderr.decode()
    want = [json.dumps({**f, "v": 1}, sort_keys=True, separators=(",", ":")) for f in fields]
    assert result.stdout.decode("ascii").splitlines() == want


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_echo_round_trip(outcomes: dict[str, dict[str, Any]], name: str) -> None:
    assert answer(outcomes[f"echo-{name}"]) == PAYLOADS[name]


def test_minilm_round_trip(outcomes: dict[str, dict[str, Any]]) -> None:
    out = answer(outcomes["minilm"])
    (header_length,) = struct.unpack("<Q", out[:8])  # safetensors: u64 LE header length, JSON header, data
    header = json.loads(out[8 : 8 + header_length])
    assert header["embeddings"]["dtype"] == "F32" and header["embeddings"]["shape"] == [2, 384]
    assert len(out) == 8 + header_length + 2 * 384 * 4


@pytest.mark.parametrize("name", list(TAMPERED))
def test_tampered_response_is_rejected_by_the_node_client(outcomes: dict[str, dict[str, Any]], name: str) -> None:
    outcome = outcomes[f"tampered-{name}"]
    assert (outcome["exit"], outcome["error"]) == (3, "response_rejected"), outcome
    assert "result" not in outcome


@pytest.mark.parametrize("name", ["stale-past", "stale-future"])
def test_timestamp_outside_the_window_is_stale(outcomes: dict[str, dict[str, Any]], name: str) -> None:
    outcome = outcomes[name]
    assert (outcome["exit"], outcome["status"], outcome["code"]) == (2, 400, "stale_request"), outcome
    assert outcome["message"]


def test_replayed_body_is_refused(outcomes: dict[str, dict[str, Any]]) -> None:
    """The client opened the first answer (else exit 3), then the same body came back refused."""
    outcome = outcomes["replay"]
    assert (outcome["exit"], outcome["status"], outcome["code"]) == (2, 400, "replayed_request"), outcome
    assert outcome["message"]


def test_single_call_cli_and_wrong_api_key(shared_server: Any) -> None:
    """The one-shot `infer` command: stdout is the answer; a refusal is exit 2 and one JSON line."""
    common = ["infer", "--url", shared_server.url, "--model", "echo"]
    api_key = shared_server.tenants["alpha"]["api_key"]
    ok = run_node(*common, "--api-key", api_key, stdin=b"one shot", cert=shared_server.cert)
    assert (ok.returncode, ok.stdout) == (0, b"one shot"), ok.stderr.decode()[-2000:]
    refused = run_node(*common, "--api-key", "cr_" + "0" * 36, cert=shared_server.cert)
    assert refused.returncode == 2, refused.stderr.decode()[-2000:]
    assert (failure(refused)["status"], failure(refused)["code"]) == (401, "unauthenticated")
