"""Inclusion proofs: one record proven against a signed checkpoint with the public key alone, nothing else
revealed, and every alteration of a proof rejected."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.audit.checkpoints import sign_checkpoint
from cleanroom.audit.log import AuditLog
from cleanroom.audit.merkle import CompactTree, leaf_hash
from cleanroom.audit.proofs import InclusionProof, ProofError, prove, verify_proof
from cleanroom.audit.records import AuditEvent, RecordFormatError, open_frame_with_record_key
from cleanroom.audit.segments import list_segments

Keys = tuple[bytearray, ec.EllipticCurvePrivateKey]
COUNT = 37


@pytest.fixture(scope="module")
def keys() -> Keys:
    return bytearray(os.urandom(32)), ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Path:
    directory = tmp_path_factory.mktemp("proofs") / "audit"
    with AuditLog(directory, *keys, fsync="none", checkpoint_every_records=10, segment_max_bytes=70 * 1024) as log:
        for i in range(COUNT):
            log.append(
                AuditEvent(
                    event="decrypt.data_key",
                    tenant_id=f"tenant-{i}",
                    request_id=f"secret-req-{i}",
                    details={f"pad{j}": "z" * 500 for j in range(6)},
                )
            )
    assert len(list_segments(directory)) >= 2
    return directory


def test_every_record_has_a_valid_proof(log_dir: Path, keys: Keys) -> None:
    public = keys[1].public_key()
    for seq in range(COUNT):
        proof = prove(log_dir, keys[0], seq, public)
        event = verify_proof(InclusionProof.from_json(json.loads(json.dumps(proof.to_json()))), public)
        assert event.request_id == f"secret-req-{seq}" and event.tenant_id == f"tenant-{seq}"
        assert proof.checkpoint.tree_size == COUNT
        assert len(proof.path) <= (COUNT - 1).bit_length()  # ceil(log2 n) hashes at most


def test_proof_reveals_no_other_record(log_dir: Path, keys: Keys) -> None:
    proof = prove(log_dir, keys[0], 5)
    text = json.dumps(proof.to_json())
    for other in range(COUNT):
        if other != 5:
            assert f"secret-req-{other}" not in text and f'tenant-{other}"' not in text
    other_proof = prove(log_dir, keys[0], 6)
    # The disclosed per-record key opens its own record only.
    with pytest.raises(RecordFormatError):
        open_frame_with_record_key(
            other_proof.frame, proof.record_key, proof.checkpoint.log_id, other_proof.segment_index
        )
    assert proof.record_key != bytes(keys[0])


def _mutations(proof: InclusionProof, keys: Keys) -> dict[str, InclusionProof]:
    other = dataclasses.replace
    flipped_frame = bytearray(proof.frame)
    flipped_frame[-3] ^= 1
    cp = proof.checkpoint
    attacker = ec.generate_private_key(ec.SECP384R1())
    tree = CompactTree()
    tree.append(leaf_hash(proof.frame))
    forged_cp = sign_checkpoint(
        attacker,
        index=cp.index,
        log_id=cp.log_id,
        tree=tree,
        chain_head=cp.chain_head,
        prev_digest=cp.prev_digest,
        segment_index=1,
        segment_offset=0,
        last_record=None,
        time_ns=cp.time_ns,
    )
    return {
        "frame": other(proof, frame=bytes(flipped_frame)),
        "seq": other(proof, seq=proof.seq + 1),
        "segment": other(proof, segment_index=proof.segment_index + 1),
        "key": other(proof, record_key=os.urandom(32)),
        "path": other(proof, path=(bytes(32), *proof.path[1:])),
        "short_path": other(proof, path=proof.path[:-1]),
        "root": other(proof, checkpoint=dataclasses.replace(cp, root=bytes(32))),
        "size": other(proof, checkpoint=dataclasses.replace(cp, tree_size=cp.tree_size + 1)),
        "forged_checkpoint": other(proof, path=(), seq=0, checkpoint=forged_cp),
    }


def test_every_alteration_is_rejected(log_dir: Path, keys: Keys) -> None:
    proof = prove(log_dir, keys[0], 12)
    for name, bad in _mutations(proof, keys).items():
        with pytest.raises(ProofError):
            verify_proof(bad, keys[1].public_key())
            pytest.fail(f"mutation {name} accepted")


def test_proof_under_another_public_key_fails(log_dir: Path, keys: Keys) -> None:
    proof = prove(log_dir, keys[0], 0)
    with pytest.raises(ProofError, match="signature"):
        verify_proof(proof, ec.generate_private_key(ec.SECP384R1()).public_key())


def test_unsigned_record_cannot_be_proven(tmp_path: Path, keys: Keys) -> None:
    directory = tmp_path / "audit"
    log = AuditLog(directory, *keys, checkpoint_every_records=1000, checkpoint_every_s=3600)
    try:
        log.append(AuditEvent(event="decrypt.data_key"))
        log.append(AuditEvent(event="decrypt.data_key"))
        assert log.last_checkpoint is not None and log.last_checkpoint.tree_size == 0
        with pytest.raises(ProofError, match="not covered"):
            prove(directory, keys[0], 1)
        log.checkpoint_now()
        assert verify_proof(prove(directory, keys[0], 1), keys[1].public_key()).event == "decrypt.data_key"
    finally:
        log.close()


def test_damaged_log_refuses_to_prove(tmp_path: Path, keys: Keys, log_dir: Path) -> None:
    import shutil

    copy = tmp_path / "audit"
    shutil.copytree(log_dir, copy)
    segment = list_segments(copy)[0][1]
    data = bytearray(segment.read_bytes())
    data[500] ^= 1
    segment.write_bytes(bytes(data))
    with pytest.raises(ProofError):
        prove(copy, keys[0], 0)


def test_malformed_proof_json() -> None:
    with pytest.raises(ProofError):
        InclusionProof.from_json({"v": 1, "seq": 0})
    with pytest.raises(ProofError):
        InclusionProof.from_json([])
