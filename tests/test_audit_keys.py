"""Audit keys: generated locally, stored only wrapped by the KMS (0600, atomic), shared by concurrent
creators, and refused when keys.json was tampered with."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.audit.keys import KEYS_FILE, load_audit_keys, load_or_create_audit_keys, load_public_key
from cleanroom.errors import CleanroomError, ConfigurationError
from cleanroom.keys.local import LocalKMS

MASTER = "cleanroom-master"


@pytest.fixture
def kms(tmp_path: Path) -> LocalKMS:
    return LocalKMS(tmp_path)


def test_create_then_load_gives_the_same_keys(tmp_path: Path, kms: LocalKMS) -> None:
    audit_dir = tmp_path / "audit"
    with load_or_create_audit_keys(audit_dir, kms, MASTER) as created:
        key = bytes(created.audit_key)
        public = created.public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        assert isinstance(created.require_signing_key().curve, ec.SECP384R1)
    assert all(b == 0 for b in created.audit_key)  # close() zeroed it
    with load_or_create_audit_keys(audit_dir, kms, MASTER) as loaded:
        assert bytes(loaded.audit_key) == key
        assert (
            loaded.public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            == public
        )
    path = audit_dir / KEYS_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    for encoding in (key.hex(), base64.b64encode(key).decode()):
        assert encoding not in text
    assert "PRIVATE KEY" not in text
    assert load_public_key(audit_dir).public_numbers() == loaded.public_key.public_numbers()
    assert [p.name for p in audit_dir.iterdir()] == [KEYS_FILE]  # no temp files left


def test_concurrent_creators_share_one_key(tmp_path: Path) -> None:
    audit_dir = tmp_path / "audit"
    results: list[bytes] = []
    barrier = threading.Barrier(4)

    def create() -> None:
        kms = LocalKMS(tmp_path)
        barrier.wait()
        with load_or_create_audit_keys(audit_dir, kms, MASTER) as keys:
            results.append(bytes(keys.audit_key) + keys.key_id.encode())

    threads = [threading.Thread(target=create) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(results) == 4 and len(set(results)) == 1


def test_replaced_public_key_is_refused(tmp_path: Path, kms: LocalKMS) -> None:
    audit_dir = tmp_path / "audit"
    load_or_create_audit_keys(audit_dir, kms, MASTER).close()
    path = audit_dir / KEYS_FILE
    document = json.loads(path.read_text())
    document["public_key_pem"] = (
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigurationError, match="tampered"):
        load_audit_keys(audit_dir, kms)


def test_wrapped_keys_are_bound_to_their_purpose(tmp_path: Path, kms: LocalKMS) -> None:
    audit_dir = tmp_path / "audit"
    load_or_create_audit_keys(audit_dir, kms, MASTER).close()
    path = audit_dir / KEYS_FILE
    document = json.loads(path.read_text())
    document["audit_key"], document["signing_key"] = document["signing_key"], document["audit_key"]
    path.write_text(json.dumps(document))
    with pytest.raises(CleanroomError):
        load_audit_keys(audit_dir, kms)


def test_missing_keys_are_a_clear_error(tmp_path: Path, kms: LocalKMS) -> None:
    with pytest.raises(ConfigurationError, match="never created"):
        load_audit_keys(tmp_path / "nowhere", kms)


def test_keys_need_the_master_key(tmp_path: Path, kms: LocalKMS) -> None:
    audit_dir = tmp_path / "audit"
    load_or_create_audit_keys(audit_dir, kms, MASTER).close()
    other = LocalKMS(tmp_path / "elsewhere")
    other.create_key(MASTER)
    with pytest.raises(CleanroomError):
        load_audit_keys(audit_dir, other)
