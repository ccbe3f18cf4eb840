"""Encrypted backups: restore into an empty dir serves the same tenants; tampering and truncation are
refused with the current state untouched; no secret is readable in the file."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from cleanroom.backup import BackupError, create_backup, restore_backup
from cleanroom.errors import CleanroomError
from cleanroom.keys.local import LocalKMS
from support.server import start_server


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("backup")
    server = start_server(base / "data", "--models", "echo", tls=False)
    server.create_tenant("acme")
    server.create_tenant("globex")
    with server.client("acme") as client:
        assert client.infer("echo", b"before the backup") == b"before the backup"
    server.stop()
    out = base / "backup.crbk"
    created = create_backup(server.data_dir, out, LocalKMS(server.data_dir))
    assert created["files"] >= 3
    return server, out, base


def test_restore_into_an_empty_dir_serves_the_same_tenants(served) -> None:
    server, out, base = served
    fresh = base / "fresh"
    # The local KMS's key store is not in the backup (by design): it travels by its own means.
    shutil.copytree(server.data_dir / "kms", fresh / "kms")
    report = restore_backup(out, fresh, LocalKMS(fresh), "cleanroom-master")
    assert report["tenants"] == 2 and report["audit_records"] >= 1
    # The replay window's request-id claims stay behind: only meaningful to the live window, maybe millions.
    assert any((server.data_dir / "replay").rglob("*")) and not (fresh / "replay").exists()
    restored = start_server(fresh, "--models", "echo", tls=False)
    try:
        restored.tenants = dict(server.tenants)
        for name in ("acme", "globex"):
            with restored.client(name) as client:
                assert client.infer("echo", name.encode()) == name.encode()
    finally:
        restored.stop()


def test_no_secret_in_clear(served) -> None:
    server, out, _ = served
    blob = out.read_bytes()
    registry = json.loads((server.data_dir / "tenants.json").read_text())
    needles = [t["api_key"].encode() for t in server.tenants.values()]
    needles += [name.encode() for name in ("acme", "globex")]
    needles += [t_id.encode() for t_id in registry["tenants"]]
    for record in registry["tenants"].values():
        needles.append(record["tenant_keys"]["versions"]["1"]["ciphertext"].encode())
        needles.append(record["hpke_keys"][0]["encrypted_private_key"].encode())
    needles.append((server.data_dir / "admin.token").read_bytes().strip())
    assert not [n for n in needles if n in blob]
    assert os.stat(out).st_mode & 0o077 == 0


@pytest.mark.parametrize(
    "damage", ["flip-stream", "flip-header", "truncate-end", "truncate-mid", "empty", "wrong-magic"]
)
def test_damaged_backup_is_refused_and_current_state_untouched(served, tmp_path: Path, damage: str) -> None:
    server, out, _ = served
    blob = bytearray(out.read_bytes())
    if damage == "flip-stream":
        blob[len(blob) // 2] ^= 0x01
    elif damage == "flip-header":
        blob[20] ^= 0x01
    elif damage == "truncate-end":
        blob = blob[:-1]
    elif damage == "truncate-mid":
        blob = blob[: len(blob) // 2]
    elif damage == "empty":
        blob = bytearray()
    else:
        blob[:4] = b"XXXX"
    bad = tmp_path / "bad.crbk"
    bad.write_bytes(bytes(blob))
    current = tmp_path / "current"
    shutil.copytree(server.data_dir, current)
    before = {p.relative_to(current): p.read_bytes() for p in current.rglob("*") if p.is_file()}
    with pytest.raises(CleanroomError):
        restore_backup(bad, current, LocalKMS(current), "cleanroom-master")
    after = {p.relative_to(current): p.read_bytes() for p in current.rglob("*") if p.is_file()}
    assert after == before
    assert not [p for p in tmp_path.iterdir() if ".restore-" in p.name]  # no staging left behind


def test_backup_key_is_separate_from_the_master_key(served, tmp_path: Path) -> None:
    server, out, _ = served
    current = tmp_path / "current"
    shutil.copytree(server.data_dir, current)
    kms = LocalKMS(current)
    kms.disable("cleanroom-backup")  # without the backup key, the master key alone opens nothing
    with pytest.raises(CleanroomError):
        restore_backup(out, current, kms, "cleanroom-master")
    assert kms.describe("cleanroom-master").enabled


def test_backup_of_a_dir_without_registry_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BackupError):
        create_backup(tmp_path, tmp_path / "x.crbk", LocalKMS(tmp_path))
    assert not (tmp_path / "x.crbk").exists()
