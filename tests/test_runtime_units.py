"""Units of the runtime: safetensors views, the replay window, request scopes and settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load, save

from cleanroom.config import Settings, is_loopback_host
from cleanroom.errors import InvalidPayload, ReplayedRequest, ServiceUnavailable, StaleRequest
from cleanroom.memory.secure_buffer import SecureAllocator
from cleanroom.runtime.replay import ReplayCache
from cleanroom.runtime.tensors import read_safetensors, write_safetensors


def test_safetensors_write_is_byte_identical_to_the_library() -> None:
    tensors = {
        "b": torch.arange(10, dtype=torch.int64),
        "a": torch.randn(3, 5),
        "c": torch.ones(2, 2, dtype=torch.float16),
        "empty": torch.empty(0, 4),
    }
    allocator = SecureAllocator()
    with write_safetensors(tensors, allocator) as buffer:
        ours = bytes(buffer.view())
    loaded = load(ours)
    for name, tensor in tensors.items():
        assert torch.equal(loaded[name], tensor)
    assert ours == save(tensors)


def test_safetensors_read_gives_views_into_the_buffer() -> None:
    blob = bytearray(save({"x": torch.arange(6, dtype=torch.float32).reshape(2, 3)}))
    tensors = read_safetensors(memoryview(blob))
    assert torch.equal(tensors["x"], torch.arange(6, dtype=torch.float32).reshape(2, 3))
    blob[-4:] = b"\0\0\0\0"
    assert tensors["x"][1, 2] == 0  # a view, not a copy


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b[:4],
        lambda b: (10**9).to_bytes(8, "little") + b[8:],
        lambda b: b[:8] + b"[" + b[9:],
        lambda b: b[:-1],
        lambda b: b.replace(b'"F32"', b'"X99"'),
    ],
)
def test_safetensors_read_rejects_malformed_input(mutate) -> None:
    blob = save({"x": torch.ones(4)})
    with pytest.raises(InvalidPayload):
        read_safetensors(memoryview(bytearray(mutate(blob))))


def test_replay_window() -> None:
    now = [1000.0]
    cache = ReplayCache(window_s=60, max_entries=3, clock=lambda: now[0])
    cache.check_and_remember("t", b"1" * 16, 1000)
    with pytest.raises(ReplayedRequest):
        cache.check_and_remember("t", b"1" * 16, 1000)
    cache.check_and_remember("u", b"1" * 16, 1000)  # same id, other tenant: its own namespace
    with pytest.raises(StaleRequest):
        cache.check_and_remember("t", b"2" * 16, 900)
    with pytest.raises(StaleRequest):
        cache.check_and_remember("t", b"2" * 16, 1100)
    cache.check_and_remember("t", b"3" * 16, 1000)
    with pytest.raises(ServiceUnavailable):
        cache.check_and_remember("t", b"4" * 16, 1000)
    now[0] += 121
    cache.check_and_remember("t", b"4" * 16, int(now[0]))  # old entries expired
    assert len(cache) == 1


def test_settings_from_env_and_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEANROOM_PORT", "9999")
    monkeypatch.setenv("CLEANROOM_KEY_CACHE_TTL_S", "5")
    settings = Settings(host="::1")
    assert settings.port == 9999 and settings.key_cache_ttl_s == 5
    assert settings.host_is_loopback
    assert is_loopback_host("127.0.0.2") and is_loopback_host("localhost")
    assert not is_loopback_host("0.0.0.0") and not is_loopback_host("10.0.0.1")
    with pytest.raises(ValueError):
        Settings(port=70000)


@pytest.mark.parametrize(
    ("setting", "env", "expected"),
    [
        ("prepare_ahead", None, True),
        ("prepare_ahead", "false", False),
        ("prepare_ahead", "true", True),
        ("shared_batch_cost_factor", None, 1.5),
        ("shared_batch_cost_factor", "1", 1.0),
        ("shared_batch_cost_factor", "inf", float("inf")),
    ],
)
def test_scheduler_settings_reach_the_scheduler(
    setting: str, env: str | None, expected: object, data_dir: Path, memory_audit: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cleanroom.runtime.models import EchoModel, ModelRegistry
    from cleanroom.server.services import build_services

    if env is not None:
        monkeypatch.setenv(f"CLEANROOM_{setting.upper()}", env)
    services = build_services(
        Settings(data_dir=data_dir), audit=memory_audit, models=ModelRegistry({"echo": EchoModel()})
    )
    try:
        assert getattr(services.scheduler.config, setting) == expected
    finally:
        services.close()


def test_a_shared_batch_cost_factor_below_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLEANROOM_SHARED_BATCH_COST_FACTOR", "0.5")
    with pytest.raises(ValueError, match="shared_batch_cost_factor"):
        Settings()


def test_a_models_own_error_message_is_redacted_and_bounded() -> None:
    """The 422 body of a model's InvalidPayload travels outside the sealed envelope: no secret or PII from
    the input, and not the whole input either."""
    from cleanroom.runtime.session import MAX_MODEL_MESSAGE_CHARS, ModelErrors

    class Named:
        name = "picky"

    secret, email = "ghp_" + "Zq9" * 12, "carol.jones@example.org"
    guard = ModelErrors(Named())  # type: ignore[arg-type]
    with guard:
        raise InvalidPayload(f"cannot use {email} with token {secret}: " + "x" * 5000, code="picky_input")
    error = guard.failure()
    assert error.code == "picky_input" and error.status == 422
    body = str(error.to_body())
    assert secret not in body and email not in body and "[REDACTED:EMAIL]" in error.message, body
    assert len(error.message) <= MAX_MODEL_MESSAGE_CHARS and str(error) == error.message
