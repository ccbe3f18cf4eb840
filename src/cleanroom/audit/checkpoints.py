"""Signed checkpoints: ECDSA P-384 (SHA-384) signatures over the log's size, Merkle root and chain head.

A checkpoint is CT's signed tree head plus CloudTrail's digest chaining: each one names the SHA-256 of the
previous checkpoint's signed body, so deleting, reordering or replacing a checkpoint breaks the chain.
Checkpoints are appended, one JSON object per line, to `checkpoints.jsonl` in the audit directory and
fsynced after the records they cover.

Signed body (what the signature covers; `digest` = SHA-256 of it):

    "cleanroom-audit-checkpoint-v1\\n" || index u64 || log_id (16) || tree_size u64 || root (32) ||
    chain_head (32) || prev_digest (32) || time_ns u64 || segment_index u32 || segment_offset u64

`segment_index`/`segment_offset` name the byte position right after the last covered record, so a
verifier can say exactly where a truncation starts. The JSON line also carries unsigned hints that are
checked before use: `frontier` (must fold to `root`) and `last_record_segment`/`last_record_offset` (that
frame must chain to `chain_head`); they let `AuditLog` resume without re-reading the whole log.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.audit.fileio import open_regular, read_regular, read_until_hole, write_fully
from cleanroom.audit.merkle import CompactTree, sha256

CHECKPOINTS_FILE = "checkpoints.jsonl"
CHECKPOINT_VERSION = 1
_BODY_PREFIX = b"cleanroom-audit-checkpoint-v1\n"
ZERO_DIGEST = bytes(32)
_MAX_LINE_BYTES = 16 * 1024


class CheckpointFormatError(ValueError):
    """A checkpoint line that does not parse."""


def public_key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return sha256(der).hex()[:16]


def require_p384(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> None:
    if not isinstance(key.curve, ec.SECP384R1):
        raise ValueError("audit signing key must be ECDSA P-384")


@dataclass(frozen=True)
class Checkpoint:
    index: int
    log_id: bytes
    tree_size: int
    root: bytes
    chain_head: bytes
    prev_digest: bytes
    time_ns: int
    segment_index: int
    segment_offset: int
    signature: bytes
    key_id: str = ""
    frontier: tuple[bytes, ...] = field(default=(), compare=False)
    last_record_segment: int | None = field(default=None, compare=False)
    last_record_offset: int | None = field(default=None, compare=False)

    def signed_body(self) -> bytes:
        return b"".join(
            (
                _BODY_PREFIX,
                struct.pack(">Q", self.index),
                self.log_id,
                struct.pack(">Q", self.tree_size),
                self.root,
                self.chain_head,
                self.prev_digest,
                struct.pack(">QIQ", self.time_ns, self.segment_index, self.segment_offset),
            )
        )

    def digest(self) -> bytes:
        return sha256(self.signed_body())

    def signature_valid(self, public_key: ec.EllipticCurvePublicKey) -> bool:
        try:
            public_key.verify(self.signature, self.signed_body(), ec.ECDSA(hashes.SHA384()))
        except InvalidSignature:
            return False
        return True

    def compact_tree(self) -> CompactTree | None:
        """The frontier hint as a tree, or None if the hint is missing or does not fold to the root."""
        try:
            tree = CompactTree(self.tree_size, self.frontier)
        except ValueError:
            return None
        return tree if tree.root() == self.root else None

    def to_json(self) -> dict[str, Any]:
        return {
            "v": CHECKPOINT_VERSION,
            "index": self.index,
            "log_id": self.log_id.hex(),
            "tree_size": self.tree_size,
            "root": self.root.hex(),
            "chain_head": self.chain_head.hex(),
            "prev_digest": self.prev_digest.hex(),
            "time_ns": self.time_ns,
            "segment_index": self.segment_index,
            "segment_offset": self.segment_offset,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode("ascii"),
            "frontier": [h.hex() for h in self.frontier],
            "last_record_segment": self.last_record_segment,
            "last_record_offset": self.last_record_offset,
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, data: Any) -> Checkpoint:
        if not isinstance(data, dict) or data.get("v") != CHECKPOINT_VERSION:
            raise CheckpointFormatError("not a version-1 audit checkpoint")
        try:
            last = data.get("last_record_offset")
            last_seg = data.get("last_record_segment")
            cp = cls(
                index=_uint(data["index"]),
                log_id=_hex(data["log_id"], 16),
                tree_size=_uint(data["tree_size"]),
                root=_hex(data["root"], 32),
                chain_head=_hex(data["chain_head"], 32),
                prev_digest=_hex(data["prev_digest"], 32),
                time_ns=_uint(data["time_ns"]),
                segment_index=_uint(data["segment_index"]),
                segment_offset=_uint(data["segment_offset"]),
                signature=base64.b64decode(str(data["signature"]), validate=True),
                key_id=str(data.get("key_id", "")),
                frontier=tuple(_hex(h, 32) for h in data.get("frontier", [])),
                last_record_segment=None if last_seg is None else _uint(last_seg),
                last_record_offset=None if last is None else _uint(last),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointFormatError(f"malformed checkpoint: {exc}") from exc
        if cp.segment_index >= 1 << 32 or len(cp.signature) > 256:
            raise CheckpointFormatError("malformed checkpoint: field out of range")
        return cp

    @classmethod
    def loads(cls, text: str | bytes) -> Checkpoint:
        try:
            return cls.from_json(json.loads(text))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointFormatError("checkpoint is not JSON") from exc


def _uint(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise ValueError("expected an unsigned 64-bit integer")
    return value


def _hex(value: Any, length: int) -> bytes:
    raw = bytes.fromhex(str(value))
    if len(raw) != length:
        raise ValueError(f"expected {length} bytes of hex")
    return raw


def sign_checkpoint(
    signing_key: ec.EllipticCurvePrivateKey,
    *,
    index: int,
    log_id: bytes,
    tree: CompactTree,
    chain_head: bytes,
    prev_digest: bytes,
    segment_index: int,
    segment_offset: int,
    last_record: tuple[int, int] | None,
    time_ns: int,
) -> Checkpoint:
    unsigned = Checkpoint(
        index=index,
        log_id=log_id,
        tree_size=tree.size,
        root=tree.root(),
        chain_head=chain_head,
        prev_digest=prev_digest,
        time_ns=time_ns,
        segment_index=segment_index,
        segment_offset=segment_offset,
        signature=b"",
        key_id=public_key_id(signing_key.public_key()),
        frontier=tuple(tree.frontier),
        last_record_segment=None if last_record is None else last_record[0],
        last_record_offset=None if last_record is None else last_record[1],
    )
    signature = signing_key.sign(unsigned.signed_body(), ec.ECDSA(hashes.SHA384()))
    return Checkpoint(**{**unsigned.__dict__, "signature": signature})


@dataclass(frozen=True)
class CheckpointLine:
    """One line of checkpoints.jsonl: the parsed checkpoint or why it did not parse."""

    line_no: int
    offset: int
    checkpoint: Checkpoint | None
    error: str | None = None


@dataclass
class CheckpointFileScan:
    lines: list[CheckpointLine]
    torn_tail_offset: int | None  # start of an unterminated last line (crash mid-append), if any
    size: int
    torn_tail: bytes = b""  # its bytes, up to a hole the file may end in (a hole reads as zeros)


def scan_checkpoint_file(path: Path) -> CheckpointFileScan:
    """Read every line; a last line without its newline is a torn append, not a finding by itself.

    The file is read up to its first hole (`read_until_hole`): what follows a hole is not read, and is a
    malformed line if it holds data (the log never leaves a hole)."""
    try:
        read = read_until_hole(path)
    except FileNotFoundError:
        return CheckpointFileScan([], None, 0)
    data = read.data
    lines: list[CheckpointLine] = []
    offset = 0
    line_no = 0
    torn: int | None = None
    while offset < len(data):
        end = data.find(b"\n", offset)
        line_no += 1
        if end < 0:
            torn = offset
            break
        raw = data[offset:end]
        if len(raw) > _MAX_LINE_BYTES:
            lines.append(CheckpointLine(line_no, offset, None, "line too long"))
        else:
            try:
                checkpoint = Checkpoint.loads(raw)
                # One canonical encoding: a changed byte can never parse to the same checkpoint
                # (hex case, base64 padding bits, spacing, key order).
                if checkpoint.dumps().encode("ascii") != raw:
                    raise CheckpointFormatError("checkpoint line is not in canonical form")
                lines.append(CheckpointLine(line_no, offset, checkpoint))
            except CheckpointFormatError as exc:
                lines.append(CheckpointLine(line_no, offset, None, str(exc)))
        offset = end + 1
    if read.data_after_hole is not None:
        lines.append(CheckpointLine(line_no + 1, len(data), None, f"data after a hole at byte {len(data)}"))
    elif read.size > len(data) and torn is None:
        torn = len(data)  # nothing but a hole after the last line: the zeros a crash can leave
    return CheckpointFileScan(lines, torn, read.size, b"" if torn is None else data[torn:])


def read_last_checkpoint(path: Path) -> tuple[CheckpointLine | None, int | None]:
    """The last complete line and the offset of a torn (unterminated) tail, reading only the file's end.

    Opening the log must not cost O(checkpoints): a year of 60-second checkpoints is ~500k lines.
    Used by the writer, which may truncate a torn line: a symlink is refused (`open_regular`).
    """
    try:
        fd = open_regular(path, follow=False)
    except FileNotFoundError:
        return None, None
    with os.fdopen(fd, "rb") as fh:
        size = os.fstat(fd).st_size
        if size == 0:
            return None, None
        span = min(size, 2 * _MAX_LINE_BYTES + 2)
        fh.seek(size - span)
        chunk = fh.read(span)
    base = size - span
    torn: int | None = None
    if not chunk.endswith(b"\n"):
        newline = chunk.rfind(b"\n")
        if newline < 0:
            if base == 0:
                return None, 0
            return CheckpointLine(0, base, None, "line too long"), None
        torn = base + newline + 1
        chunk = chunk[: newline + 1]
    body = chunk[:-1]
    start = body.rfind(b"\n")
    if start < 0 and base > 0:
        return CheckpointLine(0, base, None, "line too long"), torn
    raw = body[start + 1 :]
    offset = base + start + 1
    try:
        checkpoint = Checkpoint.loads(raw)
        if checkpoint.dumps().encode("ascii") != raw:
            raise CheckpointFormatError("checkpoint line is not in canonical form")
    except CheckpointFormatError as exc:
        return CheckpointLine(0, offset, None, str(exc)), torn
    return CheckpointLine(0, offset, checkpoint), torn


def save_checkpoint(checkpoint: Checkpoint, out: Path) -> None:
    """Write one checkpoint to `out` (for `verify --since-checkpoint`) atomically."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_fully(fd, (json.dumps(checkpoint.to_json(), indent=2, sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, out)


def load_saved_checkpoint(path: Path) -> Checkpoint:
    return Checkpoint.loads(read_regular(path))
