"""Attacker-shaped JSON and numbers at every parser a request reaches: a clear 4xx error, never a 500.

Found by the independent client (tests/test_independent_client.py) and a review after it: a timestamp too
large for a float, ~1000 nested brackets (Python's `json` raises RecursionError, which is not a
ValueError), and library exception text echoed into error messages.
"""

from __future__ import annotations

import json
import struct

import pytest

from cleanroom.crypto.sealed import RequestMetadata
from cleanroom.errors import InvalidPayload, InvalidSealedMessage, StaleRequest, UnknownModel
from cleanroom.runtime.models import EchoModel, ModelRegistry
from cleanroom.runtime.replay import ReplayCache
from cleanroom.runtime.tensors import read_safetensors

NOW = 1_800_000_000.0


def replay_cache() -> ReplayCache:
    return ReplayCache(300, 1000, clock=lambda: NOW)


@pytest.mark.parametrize("ts", [2**1024, -(10**400), 10**30, int(NOW) + 301, int(NOW) - 301])
def test_timestamps_outside_the_window_are_stale_however_large(ts: int) -> None:
    with pytest.raises(StaleRequest):
        replay_cache().check_and_remember("t", b"r" * 16, ts)


@pytest.mark.parametrize("ts", [int(NOW), int(NOW) + 300, int(NOW) - 300])
def test_timestamps_inside_the_window_pass(ts: int) -> None:
    replay_cache().check_and_remember("t", b"r" * 16, ts)


def valid_metadata(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {"model": "echo", "path": "", "request_id": "ab" * 16, "tenant_id": "t_1", "ts": 1, "v": 1}
    doc.update(changes)
    return doc


def canonical(doc: object) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"[" * 1500, "not JSON"),
        (b'{"a":' + b"[" * 1000, "not JSON"),
        ("{}".encode("utf-16"), "not UTF-8"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"1" * 5000, "not JSON"),  # beyond int()'s digit limit: a ValueError with a library message
        (canonical(valid_metadata(request_id="zz" * 16)), "request_id"),
        (canonical(valid_metadata(request_id=5)), "not a string"),
        (canonical(valid_metadata(ts="1")), "ts is not an integer"),
        (canonical(valid_metadata(ts=True)), "ts is not an integer"),
        (canonical({k: v for k, v in valid_metadata().items() if k != "ts"}), "missing ts"),
        (canonical(valid_metadata(v=2)), "unknown metadata version"),
    ],
)
def test_malformed_metadata_is_refused_in_our_own_words(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidSealedMessage) as info:
        RequestMetadata.decode(raw)
    assert reason in str(info.value)
    assert "codec" not in str(info.value) and "position" not in str(info.value)


def test_valid_metadata_still_decodes() -> None:
    meta = RequestMetadata.decode(canonical(valid_metadata(ts=2**70)))
    assert meta.ts == 2**70 and meta.request_id == bytes.fromhex("ab" * 16)


def test_a_long_unknown_model_name_is_not_echoed_whole() -> None:
    registry = ModelRegistry({"echo": EchoModel()})
    with pytest.raises(UnknownModel) as info:
        registry.get("x" * 10_000)
    assert len(str(info.value)) < 200 and "echo" in str(info.value)


def test_deeply_nested_safetensors_header_is_invalid_payload() -> None:
    header = b"[" * 2000
    with pytest.raises(InvalidPayload, match="not valid JSON"):
        read_safetensors(memoryview(struct.pack("<Q", len(header)) + header))
