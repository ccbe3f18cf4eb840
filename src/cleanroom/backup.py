"""Encrypted backups of the data dir: `cleanroom backup create --out F` and `backup restore F`.

What is in a backup: the tenant registry (credential hashes, wrapped keys), the audit log, the TLS files
and the admin token — as a tar archive sealed with the streaming AEAD (crypto/stream.py) under a fresh
data key per backup. That data key is wrapped by the KMS key `cleanroom-backup`, **separate from every
other key**: a stolen backup without it reveals nothing, and a compromised tenant key or even the master
key does not open backups.

What is not: the local KMS's key store (`DATA_DIR/kms/`). A backup that carried the master key would hand
every tenant key to whoever holds the backup key; keep the KMS (or, for the local KMS, that directory)
backed up by its own means. Restore needs the KMS to hold `cleanroom-backup` and the master key.

File layout: b"CRBK" ‖ version (1) ‖ u32 header length ‖ header JSON (created_at, backup key name, wrapped
data key, segment size, source) ‖ stream (48-byte stream header ‖ segments). The stream context is
`cleanroom/backup/v1\\0` ‖ header JSON, so the header cannot be swapped or edited.

Restore decrypts into a staging directory beside the data dir, checks every member (only regular files and
directories with plain relative names, no excluded name, no duplicate: a backup never holds anything else, so
nothing else is let through — not even links inside the staging dir, since `tarfile`'s own "data" filter has
had escapes, CVE-2025-4517 among them), the registry and the audit chain, and only then swaps it in (the old
dir is kept as DATA_DIR.replaced-<time>); any failure leaves the current data dir untouched.

Key rotation: the header names the backup-key version that wrapped the data key, so a backup still opens after
`cleanroom-backup` (or the master key) is rotated, for as long as the KMS keeps that version usable. A
disabled, destroyed or retired version fails with `backup_key_unavailable` (backup key) or
`backup_master_key_unavailable` (the tenant keys inside, wrapped by a retired master version).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import stat
import struct
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from cleanroom.backup_stream import OpeningReader, SealingWriter, stream_context
from cleanroom.crypto.aead import zero_buffer
from cleanroom.crypto.stream import HEADER_SIZE_BYTES, StreamDecryptor, StreamEncryptor
from cleanroom.errors import (
    BadRequest,
    CleanroomError,
    Conflict,
    DecryptionFailed,
    InvalidSealedMessage,
    KeyError_,
    SystemSealed,
)
from cleanroom.keys.kms import KMS, WrappedKey

MAGIC = b"CRBK"
VERSION = 1
BACKUP_KEY_NAME = "cleanroom-backup"
KEY_CONTEXT = b"cleanroom/backup-key/v1"
SEGMENT_SIZE_BYTES = 256 * 1024
MAX_HEADER_BYTES = 64 * 1024
# `replay/`: request-id claims only meaningful for the live replay window (and possibly millions of files).
EXCLUDED = {"kms", "server.json", ".tenants.lock", "replay"}


class BackupError(BadRequest):
    code = "backup_invalid"


def _members(data_dir: Path) -> Iterator[Path]:
    """Regular files and directories only: what restore accepts (links, FIFOs, sockets are skipped)."""
    for path in sorted(data_dir.rglob("*")):
        relative = path.relative_to(data_dir)
        if relative.parts[0] in EXCLUDED or path.name.endswith(".lock"):
            continue
        mode = path.lstat().st_mode
        if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
            yield path


def _add_member(archive: tarfile.TarFile, path: Path, arcname: str) -> None:
    """Add one file or directory, always as itself: a file with several hard links is stored whole, never as
    a hard-link member (restore refuses every kind of link)."""
    info = archive.gettarinfo(str(path), arcname=arcname)
    if info.islnk():
        info.type, info.linkname, info.size = tarfile.REGTYPE, "", path.stat().st_size
    if info.isreg():
        with open(path, "rb") as handle:
            archive.addfile(info, handle)
    else:
        archive.addfile(info)


def _key_problem(exc: CleanroomError) -> str:
    """What a KMS refusal means for a restore, in words an operator can act on."""
    if isinstance(exc, SystemSealed):
        return "is disabled in the KMS (re-enable it there to restore)"
    if exc.code == "key_version_retired":
        return "is retired (below the key's minimum decryption version in the KMS)"
    if exc.code == "unknown_key":
        return "does not exist in this KMS (destroyed, or the backup comes from another KMS)"
    return "does not open the wrapped key (another KMS or data dir, or that key version was destroyed)"


def create_backup(data_dir: Path, out: Path, kms: KMS) -> dict[str, Any]:
    """Write an encrypted backup of `data_dir` to `out` (atomically: no partial file on failure)."""
    data_dir, out = Path(data_dir), Path(out)
    if not (data_dir / "tenants.json").exists():
        raise BackupError(f"{data_dir} has no tenant registry: nothing to back up", code="backup_nothing")
    if out.is_dir() and not out.is_symlink():
        raise BackupError(f"--out {out} is a directory; name the backup file", code="backup_bad_output")
    # Where the file lands (a symlink at `out` is replaced, not followed): inside the data dir it would back
    # up its own partial file, and every later backup the previous ones.
    landing = out.parent.resolve() / out.name
    if landing.is_relative_to(data_dir.resolve()):
        raise BackupError(f"--out {out} is inside the data dir; write the backup elsewhere", code="backup_bad_output")
    kms.create_key(BACKUP_KEY_NAME)
    try:
        data_key, wrapped = kms.generate_data_key(BACKUP_KEY_NAME, KEY_CONTEXT)
    except (SystemSealed, KeyError_) as exc:
        raise BackupError(
            f"the backup key {BACKUP_KEY_NAME!r} {_key_problem(exc)}", code="backup_key_unavailable"
        ) from None
    header = json.dumps(
        {
            "created_at": time.time(),
            "backup_key": BACKUP_KEY_NAME,
            "wrapped_key": wrapped.to_json(),
            "segment_size": SEGMENT_SIZE_BYTES,
            "source": str(data_dir.resolve()),
        },
        sort_keys=True,
    ).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    files = 0
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(MAGIC + bytes([VERSION]) + struct.pack(">I", len(header)) + header)
            encryptor = StreamEncryptor(data_key, context=stream_context(header), segment_size_bytes=SEGMENT_SIZE_BYTES)
            handle.write(encryptor.header)
            writer = SealingWriter(encryptor, handle)
            with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as archive:
                for path in _members(data_dir):
                    _add_member(archive, path, str(path.relative_to(data_dir)))
                    files += 1
            writer.finish()
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    finally:
        zero_buffer(data_key)
    return {"out": str(out), "files": files, "bytes": out.stat().st_size}


def _open_backup(path: Path, kms: KMS, handle: BinaryIO) -> tuple[StreamDecryptor, int, bytearray]:
    size = path.stat().st_size
    prefix = handle.read(9)
    if len(prefix) != 9 or prefix[:4] != MAGIC:
        raise BackupError("not a cleanroom backup (bad magic or truncated)")
    if prefix[4] != VERSION:
        raise BackupError(f"unsupported backup version {prefix[4]}")
    (header_len,) = struct.unpack(">I", prefix[5:9])
    if not 0 < header_len <= MAX_HEADER_BYTES or 9 + header_len + HEADER_SIZE_BYTES > size:
        raise BackupError("backup header length is out of range (truncated or damaged)")
    header = handle.read(header_len)
    try:
        document = json.loads(header)
        wrapped = WrappedKey.from_json(document["wrapped_key"])
    except (ValueError, KeyError, TypeError, RecursionError, InvalidSealedMessage):
        raise BackupError("backup header is damaged") from None
    if wrapped.key_name != BACKUP_KEY_NAME:  # only the backup key may open a backup, never another KMS key
        raise BackupError(f"backup header names the key {wrapped.key_name!r}, not {BACKUP_KEY_NAME!r}")
    try:
        data_key = kms.unwrap(wrapped, KEY_CONTEXT)
    except (SystemSealed, KeyError_, DecryptionFailed) as exc:  # KMSUnavailable passes: retry later
        raise BackupError(
            f"the backup key {BACKUP_KEY_NAME!r} version {wrapped.version} ({wrapped.kms} KMS) {_key_problem(exc)}",
            code="backup_key_unavailable",
        ) from None
    stream_start = 9 + header_len
    stream_header = handle.read(HEADER_SIZE_BYTES)
    try:
        decryptor = StreamDecryptor(data_key, stream_header, size - stream_start, context=stream_context(header))
    except (InvalidSealedMessage, ValueError):
        zero_buffer(data_key)
        raise BackupError("backup stream is damaged or truncated") from None
    return decryptor, stream_start, data_key


def verify_restored(stage: Path, kms: KMS, master_key_name: str) -> dict[str, Any]:
    """The checks a staged restore must pass before it replaces anything."""
    from cleanroom.keys.keyring import Keyring
    from cleanroom.keys.registry import Registry

    try:
        registry = Registry(stage)
        tenants = registry.tenants()
    except (ValueError, OSError) as exc:
        raise BackupError(f"restored tenant registry does not load: {exc}") from None
    keyring = Keyring(registry, kms, master_key_name=master_key_name, ttl_s=0)
    try:
        for record in tenants.values():  # every tenant's current key must open: the backup is usable
            key = keyring.unwrap_tenant_key(record, int(record["tenant_keys"]["latest_version"]))
            zero_buffer(key)
        audit_records = verify_audit(stage / "audit", kms, master_key_name)
    except (SystemSealed, KeyError_, DecryptionFailed) as exc:
        raise BackupError(
            f"a key in the backup is wrapped by a version of master key {master_key_name!r} that {_key_problem(exc)};"
            " a backup taken before a master rotation opens only while the older master versions stay usable",
            code="backup_master_key_unavailable",
        ) from None
    return {"tenants": len(tenants), "audit_records": audit_records}


def verify_audit(audit_dir: Path, kms: KMS, master_key_name: str) -> int:
    """The restored audit log must verify intact (hash chain, Merkle tree, signed checkpoints)."""
    if not (audit_dir / "keys.json").exists():
        if audit_dir.is_dir() and any(audit_dir.iterdir()):  # a log whose keys were left out cannot verify
            raise BackupError(
                "the backup holds an audit log without its keys (audit/keys.json): it cannot be verified",
                code="backup_audit_invalid",
            )
        return 0
    from cleanroom.audit.keys import load_audit_keys
    from cleanroom.audit.verify import verify

    with load_audit_keys(audit_dir, kms) as keys:
        report = verify(audit_dir, keys.audit_key, keys.public_key)
    if not report.ok:
        raise BackupError(
            f"the audit log in the backup does not verify: {report.summary()}", code="backup_audit_invalid"
        )
    return report.records


def _member_filter() -> Callable[[tarfile.TarInfo, str], tarfile.TarInfo]:
    """The extraction filter: only what `create_backup` writes gets through, private modes on disk."""
    seen: set[str] = set()

    def check(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        name = member.name.rstrip("/") if member.isdir() else member.name
        parts = name.split("/")
        if not (member.isdir() or (member.isfile() and not member.issparse())):
            raise BackupError(f"backup member {name!r} is not a regular file or directory")
        if not name or any(part in ("", ".", "..") for part in parts) or "\x00" in name:
            raise BackupError(f"backup member name {name!r} is not a plain relative path")
        if parts[0] in EXCLUDED or parts[-1].endswith(".lock"):
            raise BackupError(f"backup member {name!r} is a name backups never hold")
        if name in seen:
            raise BackupError(f"backup member {name!r} appears twice")
        seen.add(name)
        checked = tarfile.data_filter(member, dest)
        return checked.replace(mode=0o700 if member.isdir() else 0o600, deep=False)

    return check


def _server_is_running(data_dir: Path) -> bool:
    """A live process named by DATA_DIR/server.json — including one we may not signal (another user's)."""
    try:
        pid = int(json.loads((data_dir / "server.json").read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if pid <= 0:  # 0 and negatives name process groups, never one server
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def restore_backup(path: Path, data_dir: Path, kms: KMS, master_key_name: str) -> dict[str, Any]:
    """Restore `path` into `data_dir`; verified in a staging dir first, swapped in only if it all checks."""
    data_dir = Path(data_dir).resolve()  # a symlinked data dir: swap where it points, keep the link
    if _server_is_running(data_dir):
        raise Conflict("a server is running on this data dir; stop it before restoring", code="server_running")
    parent = data_dir.parent
    parent.mkdir(parents=True, exist_ok=True)  # never chmod it: it is not ours (e.g. /var/lib)
    stage = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}.restore-", dir=parent))  # 0700
    try:
        with open(path, "rb") as handle:
            decryptor, stream_start, data_key = _open_backup(path, kms, handle)
            reader = OpeningReader(decryptor, handle, stream_start)
            try:
                with tarfile.open(fileobj=io.BufferedReader(reader, 1 << 20), mode="r|") as archive:
                    archive.extractall(stage, filter=_member_filter())  # noqa: S202 - strict filter above
            except (tarfile.TarError, DecryptionFailed, InvalidSealedMessage) as exc:
                raise BackupError(f"backup does not decrypt or unpack cleanly ({type(exc).__name__}: {exc})") from None
            finally:
                reader.wipe()
                zero_buffer(data_key)
        report = verify_restored(stage, kms, master_key_name)
        kms_dir = data_dir / "kms"
        if kms_dir.exists():  # the local KMS's keys stay with the data dir they belong to
            shutil.copytree(kms_dir, stage / "kms")
        kept: Path | None = None
        if data_dir.exists():
            kept = data_dir.with_name(f"{data_dir.name}.replaced-{int(time.time())}")
            suffix = 1
            while kept.exists() or kept.is_symlink():  # a second restore within the same second
                kept, suffix = data_dir.with_name(f"{data_dir.name}.replaced-{int(time.time())}-{suffix}"), suffix + 1
            os.replace(data_dir, kept)
            report["previous"] = str(kept)
        try:
            os.replace(stage, data_dir)
        except BaseException:
            if kept is not None:
                os.replace(kept, data_dir)  # put the current data dir back before the stage is removed
            raise
        return report
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def run_backup(args: argparse.Namespace) -> int:
    from cleanroom.cli import settings_from_args
    from cleanroom.keys.factory import kms_from_settings, master_key_name

    settings = settings_from_args(args)
    kms = kms_from_settings(settings)
    try:
        if args.backup_command == "create":
            result = create_backup(Path(settings.data_dir), Path(args.out), kms)
        else:
            result = restore_backup(Path(args.file), Path(settings.data_dir), kms, master_key_name(settings))
    except CleanroomError:
        raise
    finally:
        kms.close()
    print(json.dumps(result))
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = subparsers.add_parser("backup", help="encrypted backups of the data dir")
    commands = backup.add_subparsers(dest="backup_command", required=True)
    create = commands.add_parser("create", help="write an encrypted backup (key: the KMS key cleanroom-backup)")
    create.add_argument("--out", required=True, type=Path)
    restore = commands.add_parser("restore", help="verify a backup, then replace the data dir with it")
    restore.add_argument("file", type=Path)
    for parser in (create, restore):
        parser.add_argument("--data-dir", type=Path, default=None)
        parser.set_defaults(func=run_backup)
