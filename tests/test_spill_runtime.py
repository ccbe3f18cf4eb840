"""The runtime's spill path for large sealed payloads (runtime/batch_open.py) and the deferred response key
(crypto/deferred.py): same checks and audit as the one-shot path, plaintext only in the encrypted spill,
nothing left behind on any failure, and byte-for-byte agreement with the one-shot formats."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from cleanroom.config import Settings
from cleanroom.crypto.deferred import DeferredResponseKey, open_payload_stream, payload_tag
from cleanroom.crypto.sealed import open_request_key, parse_request, seal_request
from cleanroom.errors import (
    ContextMismatch,
    CredentialRevoked,
    DecryptionFailed,
    InvalidSealedMessage,
    ReplayedRequest,
    SpillError,
)
from cleanroom.keys.public_key import TenantPublicKey
from cleanroom.memory.secure_buffer import SecureAllocator
from cleanroom.runtime.batch_open import PIECE_BYTES, SpilledRequest, open_into_spill
from cleanroom.runtime.session import CallContext
from cleanroom.runtime.spill import SpillFile, SpillIO
from cleanroom.server.services import Services, build_services
from cleanroom.tenants import Principal

PATH = "/v1/batches"


class RecordingAudit:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def record(self, event: Mapping[str, Any]) -> None:
        self.events.append(dict(event))


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Services, RecordingAudit, dict[str, Any]]]:
    audit = RecordingAudit()
    services = build_services(Settings(data_dir=tmp_path / "data", models=["echo"]), audit=audit)
    created = services.tenants.create("alice")
    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()
    try:
        yield services, audit, {"tenant": created, "spill_dir": spill_dir}
    finally:
        services.close()


def principal_of(services: Services, api_key: str) -> Principal:
    return services.tenants.authenticate(api_key, source="127.0.0.1")


def sealed_for(created: Any, payload: bytes, *, path: str = PATH, model: str = "") -> Any:
    key = TenantPublicKey.parse(created.public_key)
    return seal_request(key.key, key.key_id, payload, tenant_id=key.tenant_id, model=model, path=path)


def spill_fds(directory: Path) -> list[str]:
    links = []
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            links.append(target)
    return links


def open_it(services: Services, ctx: dict[str, Any], body: bytes, threshold: int, **kw: Any) -> SpilledRequest:
    created = ctx["tenant"]
    call = CallContext(principal=principal_of(services, created.api_key), model="", path=PATH, source="127.0.0.1")
    spill_io = kw.pop("spill_io", None)
    return open_into_spill(
        services.runtime.opener,
        call,
        body,
        threshold_bytes=threshold,
        allocator=services.allocator,
        new_spill=kw.pop("new_spill", None)
        or (lambda: SpillFile(ctx["spill_dir"], segment_size_bytes=64 * 1024, spill_io=spill_io)),
    )


@pytest.mark.parametrize("size", [0, 1, 100_000, PIECE_BYTES, 3 * PIECE_BYTES + 17])
@pytest.mark.parametrize("threshold", [0, 10 << 20], ids=["in-pieces", "one-shot"])
def test_both_paths_spill_the_same_plaintext(env: Any, size: int, threshold: int) -> None:
    services, audit, ctx = env
    payload = random.Random(size).randbytes(size)
    sealed = sealed_for(ctx["tenant"], payload)
    spilled = open_it(services, ctx, sealed.body, threshold)
    try:
        assert spilled.spilled_in_pieces is (size > threshold)
        assert spilled.spill.size_bytes == size and spilled.spill.read() == payload
        assert spilled.metadata == sealed.metadata
        # The response key derived on the server equals the client's, and seals what open_response opens.
        sealer = spilled.response_key.seal_stream()
        out = bytearray(len(payload) + 15)
        body = sealer.header + bytes(out[: sealer.update_into(memoryview(payload), out)]) + sealer.finish()
        assert sealed.open_response(body) == payload
    finally:
        spilled.close()
    [event] = [e for e in audit.events if e["event"] == "decrypt.request_key"]
    assert event["byte_count"] == size and event["model"] == PATH and event.get("spilled", False) is (size > threshold)
    assert spill_fds(ctx["spill_dir"]) == []


def test_audit_record_comes_before_the_first_plaintext_byte(env: Any) -> None:
    services, audit, ctx = env
    seen_at_first_spill: list[int] = []

    def new_spill() -> SpillFile:
        seen_at_first_spill.append(len([e for e in audit.events if e["event"] == "decrypt.request_key"]))
        return SpillFile(ctx["spill_dir"], segment_size_bytes=64 * 1024)

    spilled = open_it(services, ctx, sealed_for(ctx["tenant"], b"z" * 300_000).body, 1000, new_spill=new_spill)
    spilled.close()
    assert seen_at_first_spill == [1]


@pytest.mark.parametrize("where", ["payload-start", "payload-middle", "tag", "hpke-blob", "header"])
@pytest.mark.parametrize("threshold", [0, 10 << 20], ids=["in-pieces", "one-shot"])
def test_tampered_payload_leaves_nothing(env: Any, where: str, threshold: int) -> None:
    services, _, ctx = env
    payload = b"secret-" * 100_000
    body = bytearray(sealed_for(ctx["tenant"], payload).body)
    parsed = parse_request(bytes(body))
    start = len(parsed.header)
    position = {
        "payload-start": start,
        "payload-middle": start + len(payload) // 2,
        "tag": len(body) - 3,
        "hpke-blob": start - 20,
        "header": 5,
    }[where]
    body[position] ^= 0x10
    spills: list[SpillFile] = []

    def new_spill() -> SpillFile:
        spills.append(SpillFile(ctx["spill_dir"], segment_size_bytes=64 * 1024))
        return spills[-1]

    with pytest.raises((DecryptionFailed, InvalidSealedMessage)):
        open_it(services, ctx, bytes(body), threshold, new_spill=new_spill)
    assert all(s.closed for s in spills)  # key zeroed, file gone
    assert spill_fds(ctx["spill_dir"]) == [] and list(ctx["spill_dir"].iterdir()) == []


def test_context_and_replay_checks_hold_on_the_spill_path(env: Any) -> None:
    services, audit, ctx = env
    wrong_path = sealed_for(ctx["tenant"], b"x" * 5000, path="/v1/other")
    with pytest.raises(ContextMismatch):
        open_it(services, ctx, wrong_path.body, 0)
    wrong_model = sealed_for(ctx["tenant"], b"x" * 5000, model="echo")
    with pytest.raises(ContextMismatch):
        open_it(services, ctx, wrong_model.body, 0)
    assert not [e for e in audit.events if e["event"] == "decrypt.request_key"]  # refused before decrypting
    body = sealed_for(ctx["tenant"], b"x" * 5000).body
    open_it(services, ctx, body, 0).close()
    with pytest.raises(ReplayedRequest):
        open_it(services, ctx, body, 0)


def test_disk_full_while_spilling_a_large_payload(env: Any) -> None:
    services, _, ctx = env

    class Full(SpillIO):
        def pwrite(self, fd: int, data: memoryview, offset: int) -> int:
            if offset > 1 << 20:
                raise OSError(28, "No space left on device")
            return super().pwrite(fd, data, offset)

    with pytest.raises(SpillError) as caught:
        open_it(services, ctx, sealed_for(ctx["tenant"], b"q" * (3 << 20)).body, 0, spill_io=Full())
    assert caught.value.code == "spill_failed" and "ENOSPC" in caught.value.message
    assert spill_fds(ctx["spill_dir"]) == []


def test_stream_helpers_agree_with_the_one_shot_formats(env: Any) -> None:
    """Vectors: the streaming open equals decrypt_payload_into; the streaming seal equals seal_response."""
    services, _, ctx = env
    payload = os.urandom(2 * PIECE_BYTES + 5)
    sealed = sealed_for(ctx["tenant"], payload)
    parsed = parse_request(sealed.body)
    tenant = services.registry.tenant(ctx["tenant"].tenant_id)
    with open_request_key(parsed, services.keyring.hpke_private_key(tenant, parsed.key_id)) as opened:
        one_shot = bytearray(len(payload))
        opened.decrypt_payload_into(one_shot)
        stream, collected, out = open_payload_stream(opened), bytearray(), bytearray(PIECE_BYTES + 15)
        for count in stream.pieces(memoryview(out), PIECE_BYTES):
            collected += out[:count]
        stream.finish(payload_tag(opened))
        assert collected == one_shot == payload
        bad = open_payload_stream(opened)
        for _ in bad.pieces(memoryview(out), PIECE_BYTES):
            pass
        with pytest.raises(DecryptionFailed):
            bad.finish(bytes(16))
        expected = opened.seal_response(payload)
        with DeferredResponseKey.from_opened(opened, SecureAllocator()) as key:
            sealer = key.seal_stream()
            pieces = [sealer.header]
            for start in range(0, len(payload), 777_777):
                chunk = memoryview(payload)[start : start + 777_777]
                buf = bytearray(chunk.nbytes + 15)
                pieces.append(bytes(buf[: sealer.update_into(chunk, buf)]))
            pieces.append(sealer.finish())
            assert b"".join(pieces) == bytes(expected)
    # The client's key material opens it, exported and reloaded too (the CLI ticket), and only it.
    with DeferredResponseKey.from_sealed(sealed) as client_key:
        assert client_key.open(expected) == payload
        with DeferredResponseKey.load(client_key.export(), client_key.context) as reloaded:
            assert reloaded.open(expected) == payload
            for position in (0, 4, 21, len(expected) // 2, len(expected) - 1):
                tampered = bytearray(expected)
                tampered[position] ^= 1
                with pytest.raises((DecryptionFailed, InvalidSealedMessage)):
                    reloaded.open(tampered)
    other = sealed_for(ctx["tenant"], payload)
    with DeferredResponseKey.from_sealed(other) as other_key, pytest.raises(DecryptionFailed):
        other_key.open(expected)
    key = DeferredResponseKey.from_sealed(sealed)
    key.close()
    assert key.closed
    with pytest.raises(ValueError, match="shredded"):
        key.open(expected)


@pytest.mark.parametrize("threshold", [0, 10 << 20], ids=["in-pieces", "one-shot"])
def test_a_credential_revoked_after_admission_opens_nothing(env: Any, threshold: int) -> None:
    """A batch submission authenticated, then its API key revoked before it was opened: refused before any
    record or plaintext, on both spill paths (the in-pieces path skipped the credential check)."""
    services, audit, ctx = env
    extra = services.tenants.add_credential("alice", label="batch")
    call = CallContext(principal=principal_of(services, extra.api_key), model="", path=PATH, source="127.0.0.1")
    services.tenants.revoke_credential("alice", extra.credential_id)
    sealed = sealed_for(ctx["tenant"], b"x" * 1000)
    with pytest.raises(CredentialRevoked):
        open_into_spill(
            services.runtime.opener,
            call,
            sealed.body,
            threshold_bytes=threshold,
            allocator=services.allocator,
            new_spill=lambda: SpillFile(ctx["spill_dir"], segment_size_bytes=64 * 1024),
        )
    assert [e for e in audit.events if e["event"] == "decrypt.request_key"] == []
    assert spill_fds(ctx["spill_dir"]) == []
