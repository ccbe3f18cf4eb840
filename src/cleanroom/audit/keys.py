"""The audit log's own keys: an AES-256 key for records and an ECDSA P-384 key for checkpoints.

Both are generated locally and stored only wrapped by the KMS master key, in `audit_dir/keys.json`
(mode 0600, written atomically). The audit key is separate from every tenant key, so revoking or
destroying a tenant key never makes the audit trail unreadable, and a tenant key never opens it.
The public key is also stored in clear so that third parties can check checkpoints and proofs; our own
verifier does not trust that copy: it re-derives the public key from the unwrapped private key.

keys.json fields: `version` (1), `kms`, `master_key_name`, `audit_key` and `signing_key` (WrappedKey
JSON; the signing key is wrapped as PKCS#8 DER), `public_key_pem`, `key_id` (first 16 hex digits of
SHA-256 over the SubjectPublicKeyInfo DER), `created_at` (seconds).
Wrap contexts: "cleanroom/audit/v1/aes-key" and "cleanroom/audit/v1/signing-key".
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.audit.checkpoints import public_key_id
from cleanroom.audit.fileio import fsync_directory, read_regular, write_fully
from cleanroom.errors import ConfigurationError
from cleanroom.keys.kms import KMS, WrappedKey

logger = logging.getLogger("cleanroom.audit")

KEYS_FILE = "keys.json"
AES_CONTEXT = b"cleanroom/audit/v1/aes-key"
SIGNING_CONTEXT = b"cleanroom/audit/v1/signing-key"


class AuditKeys:
    """Unwrapped audit keys. A context manager: `close()` zeroes the AES key.

    The EC private key lives inside OpenSSL (cryptography offers no way to wipe it); it is dropped with
    this object.
    """

    def __init__(self, audit_key: bytearray, signing_key: ec.EllipticCurvePrivateKey) -> None:
        if len(audit_key) != 32:
            raise ConfigurationError("audit key must be 32 bytes")
        if not isinstance(signing_key.curve, ec.SECP384R1):
            raise ConfigurationError("audit signing key must be P-384")
        self.audit_key = audit_key
        self.signing_key: ec.EllipticCurvePrivateKey | None = signing_key
        self.public_key = signing_key.public_key()
        self.key_id = public_key_id(self.public_key)

    def require_signing_key(self) -> ec.EllipticCurvePrivateKey:
        if self.signing_key is None:
            raise ConfigurationError("audit keys are closed")
        return self.signing_key

    def close(self) -> None:
        self.audit_key[:] = bytes(len(self.audit_key))
        self.signing_key = None

    def __enter__(self) -> AuditKeys:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_or_create_audit_keys(audit_dir: Path, kms: KMS, master_key_name: str) -> AuditKeys:
    """Load the audit keys, creating and storing them on first use. Safe against concurrent creators."""
    audit_dir = Path(audit_dir)
    path = audit_dir / KEYS_FILE
    if path.exists():
        return load_audit_keys(audit_dir, kms)
    audit_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    kms.create_key(master_key_name)
    audit_key, wrapped_aes = kms.generate_data_key(master_key_name, AES_CONTEXT, 32)
    signing_key = ec.generate_private_key(ec.SECP384R1())
    der = bytearray(
        signing_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    try:
        wrapped_signing = kms.wrap(master_key_name, der, SIGNING_CONTEXT)
    finally:
        der[:] = bytes(len(der))
    public_pem = (
        signing_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    document = {
        "version": 1,
        "kms": kms.name,
        "master_key_name": master_key_name,
        "audit_key": wrapped_aes.to_json(),
        "signing_key": wrapped_signing.to_json(),
        "public_key_pem": public_pem,
        "key_id": public_key_id(signing_key.public_key()),
        "created_at": time.time(),
    }
    if not _publish(path, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("ascii")):
        # Another process created the keys first: use theirs, so every writer shares one log key.
        audit_key[:] = bytes(len(audit_key))
        return load_audit_keys(audit_dir, kms)
    logger.info("audit: created audit keys %s in %s", document["key_id"], path)
    return AuditKeys(audit_key, signing_key)


def _publish(path: Path, data: bytes) -> bool:
    """Write to a temp file and hard-link it into place: never a partial file, never an overwrite."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        write_fully(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fsync_directory(path.parent)


def _read_document(audit_dir: Path) -> dict[str, Any]:
    path = Path(audit_dir) / KEYS_FILE
    try:
        document = json.loads(read_regular(path).decode("ascii"))
    except FileNotFoundError as exc:
        raise ConfigurationError(f"no audit keys at {path}: the audit log was never created here") from exc
    except OSError as exc:  # a directory or FIFO in its place: an error, never a traceback or a hang
        raise ConfigurationError(f"{path} cannot be read: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigurationError(f"{path} is not valid JSON") from exc
    if not isinstance(document, dict) or document.get("version") != 1:
        raise ConfigurationError(f"{path}: unsupported audit keys version")
    return document


def load_audit_keys(audit_dir: Path, kms: KMS) -> AuditKeys:
    """Unwrap existing audit keys; ConfigurationError if they are missing or inconsistent."""
    document = _read_document(audit_dir)
    aes_wrapped = WrappedKey.from_json(document["audit_key"])
    signing_wrapped = WrappedKey.from_json(document["signing_key"])
    audit_key = kms.unwrap(aes_wrapped, AES_CONTEXT)
    der = kms.unwrap(signing_wrapped, SIGNING_CONTEXT)
    try:
        private = serialization.load_der_private_key(bytes(der), password=None)
    finally:
        der[:] = bytes(len(der))
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        audit_key[:] = bytes(len(audit_key))
        raise ConfigurationError("audit signing key is not an EC key")
    keys = AuditKeys(audit_key, private)
    stored = load_public_key(audit_dir, document)
    if public_key_id(stored) != keys.key_id:
        keys.close()
        raise ConfigurationError("keys.json public key does not match the wrapped signing key (tampered)")
    return keys


def load_public_key(audit_dir: Path, document: dict[str, Any] | None = None) -> ec.EllipticCurvePublicKey:
    """The clear public key from keys.json, for verifiers without KMS access (trust it out of band)."""
    document = _read_document(audit_dir) if document is None else document
    key = serialization.load_pem_public_key(str(document["public_key_pem"]).encode("ascii"))
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise ConfigurationError("audit public key is not ECDSA P-384")
    return key
