"""Inclusion proofs: show one record to an auditor, and prove it is in the signed log, revealing nothing
else.

A proof carries the record's encrypted frame, that record's own key (records are encrypted under
per-record keys derived from the audit key, so this key opens no other record), the RFC 6962 audit path
from the record's leaf to the root, and the signed checkpoint whose root it reaches. `verify_proof` needs
only the audit *public* key. The frame's key commitment makes the disclosed key binding: a prover cannot
pick a second key that opens the same ciphertext to a different record.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.audit.checkpoints import CHECKPOINTS_FILE, Checkpoint, CheckpointFormatError
from cleanroom.audit.merkle import MerkleTree, leaf_hash, verify_inclusion
from cleanroom.audit.reader import iter_frames, latest_checkpoint
from cleanroom.audit.records import (
    AuditEvent,
    RecordCipher,
    RecordFormatError,
    open_frame_with_record_key,
    parse_frame_header,
)

PROOF_VERSION = 1


class ProofError(ValueError):
    """A proof that cannot be made (record not yet signed, log damaged) or does not verify."""


@dataclass(frozen=True)
class InclusionProof:
    seq: int
    segment_index: int
    frame: bytes
    record_key: bytes
    path: tuple[bytes, ...]
    checkpoint: Checkpoint

    def to_json(self) -> dict[str, Any]:
        return {
            "v": PROOF_VERSION,
            "seq": self.seq,
            "segment_index": self.segment_index,
            "frame": base64.b64encode(self.frame).decode("ascii"),
            "record_key": base64.b64encode(self.record_key).decode("ascii"),
            "leaf_hash": leaf_hash(self.frame).hex(),
            "tree_size": self.checkpoint.tree_size,
            "path": [h.hex() for h in self.path],
            "checkpoint": self.checkpoint.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any) -> InclusionProof:
        if not isinstance(data, dict) or data.get("v") != PROOF_VERSION:
            raise ProofError("not a version-1 audit inclusion proof")
        try:
            path = tuple(bytes.fromhex(str(h)) for h in data["path"])
            if any(len(h) != 32 for h in path) or len(path) > 64:
                raise ValueError("bad path")
            proof = cls(
                seq=_bounded_int(data["seq"], 1 << 64),
                segment_index=_bounded_int(data["segment_index"], 1 << 32),
                frame=base64.b64decode(str(data["frame"]), validate=True),
                record_key=base64.b64decode(str(data["record_key"]), validate=True),
                path=path,
                checkpoint=Checkpoint.from_json(data["checkpoint"]),
            )
        except (KeyError, TypeError, ValueError, CheckpointFormatError) as exc:
            raise ProofError(f"malformed proof: {exc}") from exc
        # The unsigned copies of what the proof is about must agree with it: a proof that claims one tree
        # size or leaf and proves another would mislead whoever reads the JSON.
        if "tree_size" in data and data["tree_size"] != proof.checkpoint.tree_size:
            raise ProofError("malformed proof: tree_size differs from the signed checkpoint's")
        if "leaf_hash" in data and data["leaf_hash"] != leaf_hash(proof.frame).hex():
            raise ProofError("malformed proof: leaf_hash is not the hash of the frame")
        return proof

    @property
    def path_bytes(self) -> int:
        return 32 * len(self.path)


def _bounded_int(value: Any, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < limit:
        raise ValueError(f"expected an integer in [0, {limit})")
    return value


def prove(
    directory: Path, audit_key: bytes | bytearray, seq: int, public_key: ec.EllipticCurvePublicKey | None = None
) -> InclusionProof:
    """Inclusion proof of record `seq` against the newest checkpoint that covers it."""
    try:
        checkpoint = latest_checkpoint(directory, public_key)
    except OSError as exc:
        raise ProofError(f"{CHECKPOINTS_FILE} cannot be read ({exc.strerror}); run `cleanroom audit verify`") from exc
    if checkpoint is None:
        raise ProofError("the audit log has no checkpoint yet")
    if not 0 <= seq < checkpoint.tree_size:
        raise ProofError(
            f"record {seq} is not covered by the newest checkpoint (it signs "
            f"{checkpoint.tree_size} records); retry after the next checkpoint"
        )
    leaves: list[bytes] = []
    found: tuple[int, bytes] | None = None
    for located in iter_frames(directory):
        if len(leaves) == checkpoint.tree_size:
            break
        frame = located.frame
        if frame.header.seq != len(leaves):
            raise ProofError(f"the log is damaged near record {len(leaves)}; run `cleanroom audit verify`")
        if frame.header.seq == seq:
            found = (located.segment, frame.raw)
        leaves.append(leaf_hash(frame.raw))
    tree = MerkleTree(leaves)
    if found is None or tree.size != checkpoint.tree_size or tree.root() != checkpoint.root:
        raise ProofError("the log does not match its newest checkpoint; run `cleanroom audit verify`")
    segment, raw = found
    with RecordCipher(audit_key, checkpoint.log_id) as cipher:
        key = cipher.record_key(seq)
        try:
            open_frame_with_record_key(raw, key, checkpoint.log_id, segment)
            record_key = bytes(key)
        except RecordFormatError as exc:
            raise ProofError(f"record {seq} does not authenticate: {exc}") from exc
        finally:
            key[:] = bytes(len(key))
    return InclusionProof(seq, segment, raw, record_key, tuple(tree.inclusion_proof(seq)), checkpoint)


def verify_proof(proof: InclusionProof, public_key: ec.EllipticCurvePublicKey) -> AuditEvent:
    """Check a proof with the audit public key alone; return the proven record. Raises ProofError."""
    cp = proof.checkpoint
    if not (0 <= proof.seq < 1 << 64 and 0 <= proof.segment_index < 1 << 32):
        raise ProofError("the proof's sequence number or segment index is out of range")
    if not cp.signature_valid(public_key):
        raise ProofError("the checkpoint's signature does not verify under the audit public key")
    try:
        plaintext = open_frame_with_record_key(proof.frame, proof.record_key, cp.log_id, proof.segment_index)
    except RecordFormatError as exc:
        raise ProofError(f"the record does not open with the disclosed key: {exc}") from exc
    if parse_frame_header(proof.frame).seq != proof.seq:
        raise ProofError("the record's sequence number differs from the one claimed")
    if not verify_inclusion(leaf_hash(proof.frame), proof.seq, cp.tree_size, proof.path, cp.root):
        raise ProofError("the audit path does not lead to the signed root")
    try:
        return AuditEvent.from_json_bytes(plaintext)
    except ValueError as exc:
        raise ProofError(f"the record does not decode: {exc}") from exc
