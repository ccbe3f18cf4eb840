"""A minimal decryption audit trail: encrypted, hash-chained, fsynced before the plaintext is released.

This is the server's fallback when the full tamper-evident log (`cleanroom.audit`: Merkle tree, signed
checkpoints, segment rotation, group commit) is not installed. It keeps invariant 5 honest on its own:
each record is AES-256-GCM encrypted under an audit key wrapped by the KMS (separate from every tenant
key), chained by SHA-256 over the previous record's ciphertext, and fsynced before `record` returns; any
failure raises `AuditUnavailable` so the request fails closed.

File `DATA_DIR/audit/decrypt-chain.log`, one line per record: hex(nonce ‖ ciphertext ‖ tag); the plaintext
is canonical JSON including `seq` and `prev` (hex SHA-256 of the previous line's bytes, zeros first).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cleanroom.errors import AuditUnavailable, DecryptionFailed
from cleanroom.keys.kms import KMS, WrappedKey
from cleanroom.storage import atomic_write_json, ensure_private_dir, read_json

AUDIT_KEY_CONTEXT = b"cleanroom/audit-key/v1"
GENESIS = "0" * 64


def _aad(seq: int) -> bytes:
    return b"cleanroom/audit-record/v1\x00" + str(seq).encode()


def load_audit_key(audit_dir: Path, kms: KMS, master_key_name: str) -> bytearray:
    path = audit_dir / "audit-key.json"
    if path.exists():
        return kms.unwrap(WrappedKey.from_json(read_json(path)), AUDIT_KEY_CONTEXT)
    key, wrapped = kms.generate_data_key(master_key_name, AUDIT_KEY_CONTEXT)
    atomic_write_json(path, wrapped.to_json())
    return key


class ChainedAuditLog:
    def __init__(self, audit_dir: Path, audit_key: bytearray) -> None:
        self._dir = ensure_private_dir(audit_dir)
        self._path = self._dir / "decrypt-chain.log"
        self._aead = AESGCM(audit_key)
        self._mutex = threading.Lock()
        self._seq, self._prev = 0, GENESIS
        for line in self._read_lines():
            self._seq += 1
            self._prev = hashlib.sha256(line).hexdigest()
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def _read_lines(self) -> list[bytes]:
        try:
            return [line for line in self._path.read_bytes().split(b"\n") if line]
        except FileNotFoundError:
            return []

    def record(self, event: Mapping[str, Any]) -> None:
        with self._mutex:
            document = {**event, "seq": self._seq, "prev": self._prev, "time": event.get("time", time.time())}
            plaintext = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
            nonce = os.urandom(12)
            line = (nonce + self._aead.encrypt(nonce, plaintext, _aad(self._seq))).hex().encode()
            try:
                os.write(self._fd, line + b"\n")
                os.fsync(self._fd)
            except OSError as exc:
                raise AuditUnavailable(f"the audit log could not be written ({exc.strerror}); "
                                       "refusing to release plaintext", retry_after_s=5) from exc
            self._seq += 1
            self._prev = hashlib.sha256(line).hexdigest()

    def verify(self) -> list[dict[str, Any]]:
        """Decrypt and check the whole chain; raises DecryptionFailed naming the first bad record."""
        prev, records = GENESIS, []
        for seq, line in enumerate(self._read_lines()):
            raw = bytes.fromhex(line.decode())
            try:
                document = json.loads(self._aead.decrypt(raw[:12], raw[12:], _aad(seq)))
            except (InvalidTag, ValueError):
                raise DecryptionFailed(f"audit record {seq} was modified, moved or forged") from None
            if document.get("prev") != prev or document.get("seq") != seq:
                raise DecryptionFailed(f"audit chain broken at record {seq}")
            prev = hashlib.sha256(line).hexdigest()
            records.append(document)
        return records

    def close(self) -> None:
        os.close(self._fd)
