"""Encrypted backups, attacked: key rotation and revocation (local KMS and a real OpenBao), hostile archive
members in a correctly sealed backup (what someone holding the backup key could write), cut and extended
streams, swapped headers, a server on the data dir, a disk that fills, and where `create --out` writes.

Every refused restore must leave the current data dir byte-for-byte as it was and no staging dir behind."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import cleanroom.backup as backup
import cleanroom.backup_stream as backup_stream
from cleanroom.backup import (
    BACKUP_KEY_NAME,
    KEY_CONTEXT,
    MAGIC,
    VERSION,
    BackupError,
    create_backup,
    restore_backup,
)
from cleanroom.backup_stream import stream_context
from cleanroom.config import Settings
from cleanroom.crypto.aead import zero_buffer
from cleanroom.crypto.stream import HEADER_SIZE_BYTES, TAG_SIZE_BYTES, StreamEncryptor
from cleanroom.errors import CleanroomError, Conflict
from cleanroom.keys.kms import KMS
from cleanroom.keys.local import LocalKMS

MASTER = "cleanroom-master"


def make_data_dir(data_dir: Path, **settings: Any) -> None:
    """A data dir with one tenant (registry, pepper, audit log and its keys), built in-process."""
    from cleanroom.admin_client import local_tenant_service

    service = local_tenant_service(Settings(data_dir=data_dir, **settings))
    service.create("acme")
    service.audit.close()
    service.keyring.kms.close()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("backup-redteam") / "data"
    make_data_dir(data)
    return data


@pytest.fixture
def data(pristine: Path, tmp_path: Path) -> Path:
    """A private copy of the data dir (its own local KMS), inside a dir of its own."""
    target = tmp_path / "site" / "data"
    shutil.copytree(pristine, target)
    return target


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def leftovers(data_dir: Path) -> list[str]:
    return [p.name for p in data_dir.parent.iterdir() if ".restore-" in p.name]


def refused(backup_file: Path, data_dir: Path, kms: KMS | None = None, code: str | None = None) -> CleanroomError:
    """Restore must fail with a CleanroomError, touching nothing and leaving no staging dir."""
    before = snapshot(data_dir)
    siblings = sorted(p.name for p in data_dir.parent.iterdir())
    with pytest.raises(CleanroomError) as caught:
        restore_backup(backup_file, data_dir, kms or LocalKMS(data_dir), MASTER)
    assert snapshot(data_dir) == before
    assert sorted(p.name for p in data_dir.parent.iterdir()) == siblings, "something was left beside the data dir"
    if code is not None:
        assert caught.value.code == code, caught.value.message
    return caught.value


def header_of(backup_file: Path) -> dict[str, Any]:
    blob = backup_file.read_bytes()
    (length,) = struct.unpack(">I", blob[5:9])
    return dict(json.loads(blob[9 : 9 + length]))


def seal(tar_bytes: bytes, out: Path, kms: KMS, key_name: str = BACKUP_KEY_NAME) -> Path:
    """A correctly sealed backup of arbitrary tar bytes: the format of create_backup, written by hand."""
    kms.create_key(key_name)
    data_key, wrapped = kms.generate_data_key(key_name, KEY_CONTEXT)
    header = json.dumps(
        {
            "created_at": time.time(),
            "backup_key": BACKUP_KEY_NAME,
            "wrapped_key": wrapped.to_json(),
            "segment_size": backup.SEGMENT_SIZE_BYTES,
            "source": "/elsewhere",
        },
        sort_keys=True,
    ).encode()
    try:
        sink = io.BytesIO()
        sink.write(MAGIC + bytes([VERSION]) + struct.pack(">I", len(header)) + header)
        encryptor = StreamEncryptor(
            data_key, context=stream_context(header), segment_size_bytes=backup.SEGMENT_SIZE_BYTES
        )
        sink.write(encryptor.header)
        writer = backup_stream.SealingWriter(encryptor, sink)
        writer.write(tar_bytes)
        writer.finish()
    finally:
        zero_buffer(data_key)
    out.write_bytes(sink.getvalue())
    return out


def genuine_tar(data_dir: Path, extra: Callable[[tarfile.TarFile], None]) -> bytes:
    """The members a real backup of `data_dir` holds, then whatever `extra` adds."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in backup._members(data_dir):
            archive.add(path, arcname=str(path.relative_to(data_dir)), recursive=False)
        extra(archive)
    return buffer.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"planted", **fields: Any) -> Callable[..., None]:
    def add(archive: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = 0o644
        for key, value in fields.items():
            setattr(info, key, value)
        if kind in (tarfile.REGTYPE, tarfile.AREGTYPE) and "size" not in fields:
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        else:
            archive.addfile(info)

    return add


# --- 1. key rotation and revocation: local KMS ------------------------------------------------------------
def test_old_backup_restores_after_backup_key_rotation_and_new_backups_use_the_new_version(
    data: Path, tmp_path: Path
) -> None:
    kms = LocalKMS(data)
    old = tmp_path / "old.crbk"
    create_backup(data, old, kms)
    assert header_of(old)["wrapped_key"]["version"] == 1
    assert kms.rotate(BACKUP_KEY_NAME) == 2
    new = tmp_path / "new.crbk"
    create_backup(data, new, kms)
    assert header_of(new)["wrapped_key"]["version"] == 2
    assert restore_backup(old, data, LocalKMS(data), MASTER)["tenants"] == 1
    assert restore_backup(new, data, LocalKMS(data), MASTER)["tenants"] == 1  # same second: a second kept dir
    assert len([p for p in data.parent.iterdir() if ".replaced-" in p.name]) == 2


def test_old_backup_restores_after_master_rotation_and_fails_clearly_once_the_old_master_is_retired(
    data: Path, tmp_path: Path
) -> None:
    from cleanroom.admin_client import local_key_manager

    old = tmp_path / "old.crbk"
    create_backup(data, old, LocalKMS(data))
    manager, _ = local_key_manager(Settings(data_dir=data))
    assert manager.rotate_master_key()["master_version"] == 2
    manager.audit.close()
    assert restore_backup(old, data, LocalKMS(data), MASTER)["tenants"] == 1  # version 1 still unwraps
    manager, _ = local_key_manager(Settings(data_dir=data))
    manager.rotate_master_key()
    manager.audit.close()
    LocalKMS(data).set_min_decryption_version(MASTER, 2)  # docs/keys.md §4: retire once nothing uses v1
    error = refused(old, data, code="backup_master_key_unavailable")
    assert "retired" in error.message and MASTER in error.message


@pytest.mark.parametrize("how", ["disabled", "retired", "destroyed"])
def test_an_unusable_backup_key_fails_with_a_clear_error(data: Path, tmp_path: Path, how: str) -> None:
    kms = LocalKMS(data)
    out = tmp_path / "b.crbk"
    create_backup(data, out, kms)
    if how == "disabled":
        kms.disable(BACKUP_KEY_NAME)
    elif how == "retired":
        kms.rotate(BACKUP_KEY_NAME)
        kms.set_min_decryption_version(BACKUP_KEY_NAME, 2)
    else:
        path = data / "kms" / "master-keys.json"
        document = json.loads(path.read_text())
        del document["keys"][BACKUP_KEY_NAME]
        path.write_text(json.dumps(document))
    error = refused(out, data, code="backup_key_unavailable")
    assert BACKUP_KEY_NAME in error.message
    assert "keys restore --system" not in error.message  # that would re-enable the master key, not this one
    assert LocalKMS(data).describe(MASTER).enabled
    if how == "disabled":
        with pytest.raises(BackupError) as creating:
            create_backup(data, tmp_path / "c.crbk", kms)
        assert creating.value.code == "backup_key_unavailable"
        assert not (tmp_path / "c.crbk").exists()


def test_backup_from_another_kms_is_refused_clearly(data: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    make_data_dir(elsewhere)  # a data dir with a local KMS of its own
    foreign = tmp_path / "foreign.crbk"
    create_backup(elsewhere, foreign, LocalKMS(elsewhere))
    refused(foreign, data, code="backup_key_unavailable")


def test_header_naming_another_kms_key_is_refused(data: Path, tmp_path: Path) -> None:
    """Only `cleanroom-backup` opens backups: a data key wrapped by the master key (same context) does not."""
    forged = seal(genuine_tar(data, lambda _a: None), tmp_path / "forged.crbk", LocalKMS(data), key_name=MASTER)
    refused(forged, data)


def test_swapped_headers_between_two_backups_are_refused(data: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "1.crbk", tmp_path / "2.crbk"
    create_backup(data, first, LocalKMS(data))
    create_backup(data, second, LocalKMS(data))
    a, b = first.read_bytes(), second.read_bytes()
    a_len, b_len = (9 + struct.unpack(">I", blob[5:9])[0] for blob in (a, b))
    (tmp_path / "ab.crbk").write_bytes(a[:a_len] + b[b_len:])
    refused(tmp_path / "ab.crbk", data)


# --- 1b. the same against a real OpenBao -----------------------------------------------------------------
@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from services import OpenBao

    with OpenBao(tmp_path_factory.mktemp("openbao")) as server:
        yield server


def test_vault_backup_key_rotation_and_revocation(bao: Any, tmp_path: Path) -> None:
    from cleanroom.keys.vault import VaultTransitKMS

    data = tmp_path / "site" / "data"
    make_data_dir(data, kms="vault", vault_addr=bao.addr, vault_token=bao.root_token)
    kms = VaultTransitKMS(bao.addr, bao.root_token, timeout_s=5)
    try:
        old = tmp_path / "old.crbk"
        create_backup(data, old, kms)
        assert header_of(old)["wrapped_key"] | {"ciphertext": ""} == {
            "kms": "vault",
            "key_name": BACKUP_KEY_NAME,
            "version": 1,
            "ciphertext": "",
        }
        assert kms.rotate(BACKUP_KEY_NAME) == 2
        assert kms.rotate(MASTER) == 2
        new = tmp_path / "new.crbk"
        create_backup(data, new, kms)
        assert header_of(new)["wrapped_key"]["version"] == 2
        assert restore_backup(old, data, kms, MASTER)["tenants"] == 1
        kms.set_min_decryption_version(BACKUP_KEY_NAME, 2)
        error = refused(old, data, kms, code="backup_key_unavailable")
        assert "version 1" in error.message
        assert restore_backup(new, data, kms, MASTER)["tenants"] == 1
        kms.disable(BACKUP_KEY_NAME)  # OpenBao soft delete
        refused(new, data, kms, code="backup_key_unavailable")
        kms.enable(BACKUP_KEY_NAME)
        assert restore_backup(new, data, kms, MASTER)["tenants"] == 1
    finally:
        kms.close()


# --- 2. hostile members in a correctly sealed backup ------------------------------------------------------
def cve_2025_4517_chain(ups: int) -> Callable[[tarfile.TarFile], None]:
    """The symlink chain that beats `tarfile`'s "data" filter before Python 3.11.13/3.12.11/3.13.4: the
    filter's `realpath` gives up past PATH_MAX and stays lexical, while the kernel follows the short links.
    `escape` then points `ups` levels above the extraction dir, and `escape/pwned.txt` is written there."""

    def entry(name: str, kind: bytes, linkname: str = "", size: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.size, info.mode = kind, linkname, size, 0o755
        return info

    def add(archive: tarfile.TarFile) -> None:
        long_dir, steps, path = "d" * 247, "abcdefghijklmnop", ""
        for step in steps:
            archive.addfile(entry(os.path.join(path, long_dir), tarfile.DIRTYPE))
            archive.addfile(entry(os.path.join(path, step), tarfile.SYMTYPE, long_dir))
            path = os.path.join(path, long_dir)
        link = os.path.join(*steps, "l" * 254)
        archive.addfile(entry(link, tarfile.SYMTYPE, "/".join([".."] * len(steps))))
        archive.addfile(entry("escape", tarfile.SYMTYPE, link + "/.." * ups))
        payload = b"written outside the staging dir\n"
        archive.addfile(entry("escape/pwned.txt", tarfile.REGTYPE, size=len(payload)), io.BytesIO(payload))

    return add


HOSTILE = {
    "cve-2025-4517-chain": cve_2025_4517_chain(ups=2),
    "dotdot": member("../escaped"),
    "dotdot-deep": member("audit/../../escaped"),
    "absolute": member("/tmp/cleanroom-redteam-absolute"),
    "symlink-out": member("tls/link", tarfile.SYMTYPE, linkname="../../escaped"),
    "symlink-absolute": member("tls/link", tarfile.SYMTYPE, linkname="/etc/passwd"),
    "symlink-inside": member("tls/link", tarfile.SYMTYPE, linkname="../tenants.json"),
    "hardlink-out": member("tls/hard", tarfile.LNKTYPE, linkname="../escaped"),
    "hardlink-inside": member("tls/hard", tarfile.LNKTYPE, linkname="tenants.json"),
    "fifo": member("tls/fifo", tarfile.FIFOTYPE),
    "chardev": member("tls/null", tarfile.CHRTYPE, devmajor=1, devminor=3),
    "blockdev": member("tls/sda", tarfile.BLKTYPE, devmajor=8, devminor=0),
    "kms-dir": member("kms/master-keys.json", data=b'{"keys": {}}'),
    "server-json": member("server.json", data=b'{"pid": 1, "url": "https://attacker.example"}'),
    "lock-file": member("audit/.x.lock"),
    "duplicate-registry": member("tenants.json", data=b'{"tenants": {}}'),
    "huge-size-claim": member("tls/huge", size=1 << 40),
    "dot-segment": member("tls/./x"),
}


def test_an_audit_log_without_its_keys_is_refused(data: Path, tmp_path: Path) -> None:
    """Leaving out audit/keys.json must not turn the audit check off (the log would restore unverified)."""
    (data / "audit" / "keys.json").rename(tmp_path / "keys.json")
    stripped = genuine_tar(data, lambda _a: None)
    (tmp_path / "keys.json").rename(data / "audit" / "keys.json")
    error = refused(seal(stripped, tmp_path / "stripped.crbk", LocalKMS(data)), data)
    assert error.code == "backup_audit_invalid"


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_member_is_refused(data: Path, tmp_path: Path, name: str) -> None:
    hostile = seal(genuine_tar(data, HOSTILE[name]), tmp_path / "hostile.crbk", LocalKMS(data))
    refused(hostile, data)
    assert not (data.parent / "escaped").exists() and not (data.parent.parent / "escaped").exists()
    assert not Path("/tmp/cleanroom-redteam-absolute").exists()
    assert not list(tmp_path.rglob("pwned.txt"))


def test_genuine_members_are_restored_private(data: Path, tmp_path: Path) -> None:
    """The control for the test above (the crafted tar itself restores), and modes are forced private."""
    (data / "tls").mkdir(exist_ok=True)
    crafted = seal(genuine_tar(data, member("tls/extra.pem", mode=0o666)), tmp_path / "ok.crbk", LocalKMS(data))
    restore_backup(crafted, data, LocalKMS(data), MASTER)
    assert (data / "tls" / "extra.pem").read_bytes() == b"planted"
    assert stat.S_IMODE((data / "tls" / "extra.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700


# --- 2b. cut and extended streams ------------------------------------------------------------------------
@pytest.fixture
def multi_segment(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, int, int]:
    """A backup of four 64 KiB segments or more (random padding so it is not all zeros)."""
    (data / "tls").mkdir(exist_ok=True)
    (data / "tls" / "padding.pem").write_bytes(os.urandom(200_000))
    monkeypatch.setattr(backup, "SEGMENT_SIZE_BYTES", 64 * 1024)
    out = tmp_path / "multi.crbk"
    create_backup(data, out, LocalKMS(data))
    (data / "tls" / "padding.pem").unlink()
    start = 9 + struct.unpack(">I", out.read_bytes()[5:9])[0] + HEADER_SIZE_BYTES
    return out, start, 64 * 1024 + TAG_SIZE_BYTES


def test_truncation_at_and_between_segments_and_appended_data_are_refused(
    data: Path, tmp_path: Path, multi_segment: tuple[Path, int, int]
) -> None:
    out, start, sealed_segment = multi_segment
    blob = out.read_bytes()
    assert len(blob) > start + 3 * sealed_segment
    cuts = {f"at-{k}": start + k * sealed_segment for k in range(4)}
    cuts |= {f"mid-{k}": start + k * sealed_segment + sealed_segment // 2 for k in range(3)}
    cuts |= {"stream-header": start - 1, "last-byte": len(blob) - 1, "tag-only": len(blob) - TAG_SIZE_BYTES}
    variants = {name: blob[:cut] for name, cut in cuts.items()}
    variants["append-byte"] = blob + b"\x00"
    variants["append-segment"] = blob + blob[start : start + sealed_segment]
    variants["append-tail"] = blob + blob[-TAG_SIZE_BYTES - 10 :]
    variants["drop-middle-segment"] = blob[: start + sealed_segment] + blob[start + 2 * sealed_segment :]
    variants["swap-segments"] = (
        blob[:start]
        + blob[start + sealed_segment : start + 2 * sealed_segment]
        + blob[start : start + sealed_segment]
        + blob[start + 2 * sealed_segment :]
    )
    bad = tmp_path / "bad.crbk"
    for name, variant in variants.items():
        bad.write_bytes(variant)
        try:
            refused(bad, data)
        except BaseException as exc:
            raise AssertionError(f"variant {name}: {exc}") from exc
    assert restore_backup(out, data, LocalKMS(data), MASTER)["tenants"] == 1  # the control


# --- 2c. the data dir's owner, the disk, the swap --------------------------------------------------------
def test_restore_is_refused_while_a_server_runs_on_the_data_dir(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "b.crbk"
    create_backup(data, out, LocalKMS(data))
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (data / "server.json").write_text(json.dumps({"pid": sleeper.pid, "url": "http://127.0.0.1:1"}))
        assert isinstance(refused(out, data), Conflict)

        # A server run by another user: we may not signal it, but it is alive all the same.
        real_kill = os.kill

        def not_permitted(pid: int, sig: int) -> None:
            if pid == sleeper.pid and sig == 0:
                raise PermissionError(errno.EPERM, "Operation not permitted")
            real_kill(pid, sig)

        monkeypatch.setattr(os, "kill", not_permitted)
        assert isinstance(refused(out, data), Conflict)
    finally:
        monkeypatch.undo()
        sleeper.kill()
        sleeper.wait()
    restore_backup(out, data, LocalKMS(data), MASTER)  # a dead pid in server.json is not a running server
    assert not (data / "server.json").exists()


@pytest.mark.parametrize("where", ["extracting", "copying-kms"])
def test_disk_full_midway_leaves_the_data_dir_and_no_staging(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    out = tmp_path / "b.crbk"
    create_backup(data, out, LocalKMS(data))

    def full(*_args: Any, **_kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "extracting":
        monkeypatch.setattr(tarfile, "copyfileobj", full)
    else:
        monkeypatch.setattr(shutil, "copytree", full)
    before = snapshot(data)
    with pytest.raises(OSError, match="No space"):
        restore_backup(out, data, LocalKMS(data), MASTER)
    assert snapshot(data) == before and not leftovers(data)


def test_a_failed_swap_puts_the_current_data_dir_back(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "b.crbk"
    create_backup(data, out, LocalKMS(data))
    before = snapshot(data)
    real_replace = os.replace

    def failing(source: Any, target: Any) -> None:
        if ".restore-" in str(source):
            raise OSError(errno.EIO, "Input/output error")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError):
        restore_backup(out, data, LocalKMS(data), MASTER)
    monkeypatch.undo()
    assert snapshot(data) == before and not leftovers(data)


def test_restore_leaves_the_parent_directory_mode_alone(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.crbk"
    create_backup(data, out, LocalKMS(data))
    os.chmod(data.parent, 0o755)  # e.g. /var/lib: not ours to make private
    restore_backup(out, data, LocalKMS(data), MASTER)
    assert stat.S_IMODE(data.parent.stat().st_mode) == 0o755


def test_restore_through_a_symlinked_data_dir_keeps_the_link(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.crbk"
    create_backup(data, out, LocalKMS(data))
    link = tmp_path / "current"
    link.symlink_to(data)
    report = restore_backup(out, link, LocalKMS(data), MASTER)
    assert link.is_symlink() and link.resolve() == data.resolve()
    assert (link / "tenants.json").exists() and (link / "kms" / "master-keys.json").exists()
    assert Path(report["previous"]).parent == data.parent and not Path(report["previous"]).is_symlink()


def test_create_failing_midway_leaves_no_partial_and_the_previous_backup(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "b.crbk"
    create_backup(data, out, LocalKMS(data))
    previous = out.read_bytes()

    def full(*_args: Any, **_kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(backup_stream.SealingWriter, "finish", full)
    with pytest.raises(OSError, match="No space"):
        create_backup(data, out, LocalKMS(data))
    assert out.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.crbk", "site"]


# --- 3. what `create` writes, and where -------------------------------------------------------------------
def test_backup_file_is_0600_even_under_a_permissive_umask(data: Path, tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        out = tmp_path / "loose" / "b.crbk"
        create_backup(data, out, LocalKMS(data))
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_out_onto_an_existing_file_or_symlink_replaces_it_not_its_target(data: Path, tmp_path: Path) -> None:
    existing = tmp_path / "existing.crbk"
    existing.write_bytes(b"yesterday")
    os.chmod(existing, 0o644)
    create_backup(data, existing, LocalKMS(data))
    assert existing.read_bytes()[:4] == MAGIC and stat.S_IMODE(existing.stat().st_mode) == 0o600

    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"not yours")
    link = tmp_path / "link.crbk"
    link.symlink_to(victim)
    create_backup(data, link, LocalKMS(data))
    assert victim.read_bytes() == b"not yours"
    assert not link.is_symlink() and link.read_bytes()[:4] == MAGIC
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")]


@pytest.mark.parametrize("where", ["directory", "inside-data-dir", "symlink-into-data-dir"])
def test_out_onto_a_directory_or_into_the_data_dir_is_refused_before_writing(
    data: Path, tmp_path: Path, where: str
) -> None:
    if where == "directory":
        out = tmp_path / "dir.crbk"
        out.mkdir()
    elif where == "inside-data-dir":
        out = data / "audit" / "b.crbk"
    else:
        (tmp_path / "into").symlink_to(data)
        out = tmp_path / "into" / "b.crbk"
    before = snapshot(data)
    with pytest.raises(BackupError) as caught:
        create_backup(data, out, LocalKMS(data))
    assert caught.value.code == "backup_bad_output"
    assert snapshot(data) == before
    assert not [p for p in tmp_path.rglob("*.partial")]


def test_fifo_and_hard_links_in_the_data_dir_still_make_a_restorable_backup(data: Path, tmp_path: Path) -> None:
    os.mkfifo(data / "audit" / "stray.fifo")
    os.link(data / "tenants.json", data / "audit" / "tenants-link.json")
    out = tmp_path / "b.crbk"
    create_backup(data, out, LocalKMS(data))
    restore_backup(out, data, LocalKMS(data), MASTER)
    assert not (data / "audit" / "stray.fifo").exists()
    assert (data / "audit" / "tenants-link.json").read_bytes() == (data / "tenants.json").read_bytes()
