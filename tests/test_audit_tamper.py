"""Tamper with the audit log in every way an attacker with disk access can, and check that `verify`
catches each one and names what and where."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.audit.checkpoints import CHECKPOINTS_FILE, Checkpoint, save_checkpoint, sign_checkpoint
from cleanroom.audit.log import AuditLog
from cleanroom.audit.merkle import CompactTree
from cleanroom.audit.reader import latest_checkpoint
from cleanroom.audit.records import SEGMENT_HEADER_LEN, AuditEvent
from cleanroom.audit.segments import list_segments, segment_name
from support.audit_checks import Keys, check_log, copy_log, expect_finding, frames_of, new_keys

SEGMENT_MAX = SEGMENT_HEADER_LEN + 70 * 1024


def _event(i: int) -> AuditEvent:
    return AuditEvent(
        event="decrypt.tenant_key",
        tenant_id=f"tenant-{i % 4}",
        key_id="k1",
        key_version=1,
        request_id=f"req-{i}",
        principal="cred-7",
        source="192.0.2.10",
        byte_count=i,
        details={"pad": "p" * 200},
    )


@pytest.fixture(scope="module")
def keys() -> Keys:
    return new_keys()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Path:
    directory = tmp_path_factory.mktemp("pristine") / "audit"
    with AuditLog(directory, *keys, checkpoint_every_records=40, segment_max_bytes=SEGMENT_MAX, fsync="none") as log:
        for i in range(520):
            log.append(_event(i))
    assert len(list_segments(directory)) >= 3
    return directory


@pytest.fixture
def log_dir(pristine: Path, tmp_path: Path) -> Path:
    return copy_log(pristine, tmp_path)


def _segment(directory: Path, index: int) -> Path:
    return directory / segment_name(index)


def test_pristine_log_is_intact(log_dir: Path, keys: Keys) -> None:
    report = check_log(log_dir, keys)
    assert report.ok and report.findings == [], report.summary()
    assert report.records == 520 and report.uncovered_records == 0
    assert report.latest_checkpoint is not None and report.latest_checkpoint.tree_size == 520


@pytest.mark.parametrize("where", [0, 3, 6, 12, 30, 60, 85, 95, 150, -1], ids=lambda w: f"byte{w}")
def test_flipped_byte_is_named_with_its_record(log_dir: Path, keys: Keys, where: int) -> None:
    path = _segment(log_dir, 2)
    frames = frames_of(path)
    target = frames[len(frames) // 2]
    data = bytearray(path.read_bytes())
    position = target.offset + (where if where >= 0 else len(target.raw) + where)
    data[position] ^= 0x01
    path.write_bytes(bytes(data))
    finding = expect_finding(check_log(log_dir, keys), "record_corrupt")
    assert (finding.segment, finding.offset, finding.seq) == (2, target.offset, target.header.seq)
    assert "checkpoint_mismatch" in check_log(log_dir, keys).kinds() or where in (0, 3)


def test_deleted_record(log_dir: Path, keys: Keys) -> None:
    path = _segment(log_dir, 2)
    frames = frames_of(path)
    victim = frames[10]
    data = path.read_bytes()
    path.write_bytes(data[: victim.offset] + data[victim.end :])
    finding = expect_finding(check_log(log_dir, keys), "record_deleted")
    assert finding.seq == victim.header.seq and finding.segment == 2 and finding.offset == victim.offset
    assert "1 record(s)" in finding.message


def test_deleted_first_record_of_a_segment(log_dir: Path, keys: Keys) -> None:
    path = _segment(log_dir, 3)
    first = frames_of(path)[0]
    data = path.read_bytes()
    path.write_bytes(data[: first.offset] + data[first.end :])
    assert expect_finding(check_log(log_dir, keys), "record_deleted").seq == first.header.seq


def test_inserted_duplicate_record(log_dir: Path, keys: Keys) -> None:
    path = _segment(log_dir, 2)
    frames = frames_of(path)
    data = path.read_bytes()
    copy_of, after = frames[5], frames[9]
    path.write_bytes(data[: after.end] + copy_of.raw + data[after.end :])
    finding = expect_finding(check_log(log_dir, keys), "record_inserted")
    assert finding.seq == copy_of.header.seq and finding.offset == after.end and finding.segment == 2


def test_inserted_forged_record(log_dir: Path, keys: Keys) -> None:
    path = _segment(log_dir, 1)
    frames = frames_of(path)
    data = path.read_bytes()
    # Well-formed frame shape, plausible header (next seq, right chain value), but no key to seal it.
    template = frames[20]
    forged = bytearray(template.raw)
    forged[8:16] = frames[21].raw[8:16]
    forged[100:140] = os.urandom(40)
    path.write_bytes(data[: template.end] + bytes(forged) + data[template.end :])
    finding = expect_finding(check_log(log_dir, keys), "record_inserted")
    assert finding.offset == template.end and finding.segment == 1
    assert "record_corrupt" not in check_log(log_dir, keys).kinds()


def test_inserted_record_from_another_segment(log_dir: Path, keys: Keys) -> None:
    foreign = frames_of(_segment(log_dir, 1))[3]
    path = _segment(log_dir, 2)
    frames = frames_of(path)
    data = path.read_bytes()
    path.write_bytes(data[: frames[4].end] + foreign.raw + data[frames[4].end :])
    finding = expect_finding(check_log(log_dir, keys), "record_inserted")
    assert finding.offset == frames[4].end


@pytest.mark.parametrize("distance", [1, 4])
def test_swapped_records(log_dir: Path, keys: Keys, distance: int) -> None:
    path = _segment(log_dir, 2)
    frames = frames_of(path)
    a, b = frames[7], frames[7 + distance]
    data = path.read_bytes()
    middle = data[a.end : b.offset]
    path.write_bytes(data[: a.offset] + b.raw + middle + a.raw + data[b.end :])
    report = check_log(log_dir, keys)
    expect_finding(report, "records_swapped")
    swapped = {f.seq for f in report.findings if f.kind == "records_swapped"}
    assert a.header.seq in swapped and all(f.segment == 2 for f in report.findings if f.kind == "records_swapped")
    assert "record_deleted" not in report.kinds() and "record_inserted" not in report.kinds()


def test_truncated_tail(log_dir: Path, keys: Keys) -> None:
    segments = list_segments(log_dir)
    last = segments[-1][1]
    frames = frames_of(last)
    cut = frames[-3]
    os.truncate(last, cut.offset)
    finding = expect_finding(check_log(log_dir, keys), "tail_truncated")
    assert finding.seq == cut.header.seq and "last 3" in finding.message


def test_deleted_last_segment(log_dir: Path, keys: Keys) -> None:
    index, last = list_segments(log_dir)[-1]
    last.unlink()
    report = check_log(log_dir, keys)
    assert expect_finding(report, "segment_missing").segment == index
    expect_finding(report, "tail_truncated")


def test_deleted_middle_segment(log_dir: Path, keys: Keys) -> None:
    _segment(log_dir, 2).unlink()
    report = check_log(log_dir, keys)
    assert expect_finding(report, "segment_missing").segment == 2
    assert expect_finding(report, "record_deleted").segment == 3


def test_segment_replaced_by_another_segment(log_dir: Path, keys: Keys) -> None:
    shutil.copyfile(_segment(log_dir, 1), _segment(log_dir, 2))
    finding = expect_finding(check_log(log_dir, keys), "segment_replaced")
    assert finding.segment == 2 and "holds segment 1" in finding.message


def test_segment_replaced_from_another_log_with_the_same_keys(log_dir: Path, keys: Keys, tmp_path: Path) -> None:
    other = tmp_path / "other"
    with AuditLog(other, *keys, segment_max_bytes=SEGMENT_MAX, fsync="none") as log:
        for i in range(300):
            log.append(_event(i))
    shutil.copyfile(_segment(other, 2), _segment(log_dir, 2))
    finding = expect_finding(check_log(log_dir, keys), "segment_replaced")
    assert finding.segment == 2 and "another audit log" in finding.message


def test_segment_replaced_by_garbage(log_dir: Path, keys: Keys) -> None:
    path = _segment(log_dir, 3)
    path.write_bytes(os.urandom(path.stat().st_size))
    assert expect_finding(check_log(log_dir, keys), "segment_replaced").segment == 3


def _checkpoint_lines(directory: Path) -> list[bytes]:
    return (directory / CHECKPOINTS_FILE).read_bytes().splitlines(keepends=True)


def test_forged_checkpoint_edited_fields(log_dir: Path, keys: Keys) -> None:
    lines = _checkpoint_lines(log_dir)
    cp = Checkpoint.loads(lines[-1])
    edited = Checkpoint(**{**cp.__dict__, "tree_size": cp.tree_size - 5})
    lines[-1] = (edited.dumps() + "\n").encode()
    (log_dir / CHECKPOINTS_FILE).write_bytes(b"".join(lines))
    assert expect_finding(check_log(log_dir, keys), "checkpoint_forged").checkpoint == cp.index


def test_forged_checkpoint_signed_by_another_key(log_dir: Path, keys: Keys) -> None:
    lines = _checkpoint_lines(log_dir)
    cp = Checkpoint.loads(lines[-1])
    attacker = ec.generate_private_key(ec.SECP384R1())
    forged = sign_checkpoint(
        attacker,
        index=cp.index + 1,
        log_id=cp.log_id,
        tree=CompactTree(),
        chain_head=cp.chain_head,
        prev_digest=cp.digest(),
        segment_index=1,
        segment_offset=SEGMENT_HEADER_LEN,
        last_record=None,
        time_ns=cp.time_ns + 1,
    )
    (log_dir / CHECKPOINTS_FILE).write_bytes(b"".join(lines) + (forged.dumps() + "\n").encode())
    assert expect_finding(check_log(log_dir, keys), "checkpoint_forged").checkpoint == cp.index + 1


def test_deleted_tail_checkpoints_are_missed_by_later_records(log_dir: Path, keys: Keys) -> None:
    lines = _checkpoint_lines(log_dir)
    (log_dir / CHECKPOINTS_FILE).write_bytes(b"".join(lines[:-4]))
    finding = expect_finding(check_log(log_dir, keys), "checkpoint_missing")
    # The newest checkpoint is written after the last record; the one before it is the newest any
    # record has seen, so that is the one reported gone.
    assert finding.checkpoint == Checkpoint.loads(lines[-2]).index


def test_deleted_checkpoint_breaks_the_digest_chain(log_dir: Path, keys: Keys) -> None:
    lines = _checkpoint_lines(log_dir)
    removed = Checkpoint.loads(lines[4])
    (log_dir / CHECKPOINTS_FILE).write_bytes(b"".join(lines[:4] + lines[5:]))
    assert expect_finding(check_log(log_dir, keys), "checkpoint_chain_broken").checkpoint == removed.index + 1


def test_reordered_checkpoints_break_the_digest_chain(log_dir: Path, keys: Keys) -> None:
    lines = _checkpoint_lines(log_dir)
    lines[2], lines[3] = lines[3], lines[2]
    (log_dir / CHECKPOINTS_FILE).write_bytes(b"".join(lines))
    expect_finding(check_log(log_dir, keys), "checkpoint_chain_broken")


def test_rewritten_log_is_caught_by_a_saved_checkpoint(log_dir: Path, keys: Keys, tmp_path: Path) -> None:
    """An insider holding both keys can rebuild a self-consistent log; only an anchor kept elsewhere
    (`audit checkpoint --out`) can tell. This is what the saved checkpoint is for."""
    saved = tmp_path / "anchor.json"
    cp = latest_checkpoint(log_dir, keys[1].public_key())
    assert cp is not None
    save_checkpoint(cp, saved)
    assert check_log(log_dir, keys, since_checkpoint=saved).ok
    shutil.rmtree(log_dir)
    with AuditLog(log_dir, *keys, segment_max_bytes=SEGMENT_MAX, fsync="none") as log:
        for i in range(600):
            log.append(_event(i) if i != 17 else AuditEvent(event="decrypt.tenant_key", tenant_id="innocent"))
    assert check_log(log_dir, keys).ok  # self-consistent on its own ...
    report = check_log(log_dir, keys, since_checkpoint=saved)
    assert "inconsistent_with_saved" in report.kinds() and not report.ok, report.summary()


def test_rollback_to_an_old_copy_is_caught_by_a_saved_checkpoint(log_dir: Path, keys: Keys, tmp_path: Path) -> None:
    old = tmp_path / "old-copy"
    shutil.copytree(log_dir, old)
    with AuditLog(log_dir, *keys, segment_max_bytes=SEGMENT_MAX, fsync="none") as log:
        for i in range(30):
            log.append(_event(1000 + i))
    saved = tmp_path / "anchor.json"
    cp = latest_checkpoint(log_dir, keys[1].public_key())
    assert cp is not None and cp.tree_size == 550
    save_checkpoint(cp, saved)
    grown = check_log(log_dir, keys, since_checkpoint=saved)
    assert grown.ok and grown.consistency_proof == []
    shutil.rmtree(log_dir)
    shutil.copytree(old, log_dir)  # segments AND checkpoints rolled back together
    assert check_log(log_dir, keys).ok
    finding = expect_finding(check_log(log_dir, keys, since_checkpoint=saved), "tail_truncated")
    assert "saved checkpoint" in finding.message


def test_consistency_proof_against_an_earlier_saved_checkpoint(log_dir: Path, keys: Keys, tmp_path: Path) -> None:
    saved = tmp_path / "anchor.json"
    cp = latest_checkpoint(log_dir, keys[1].public_key())
    assert cp is not None
    save_checkpoint(cp, saved)
    with AuditLog(log_dir, *keys, segment_max_bytes=SEGMENT_MAX, fsync="none") as log:
        for i in range(77):
            log.append(_event(i))
    report = check_log(log_dir, keys, since_checkpoint=saved)
    assert report.ok, report.summary()
    assert report.consistency_proof  # RFC 6962 proof from 520 to 597 leaves was produced and checked


def test_saved_checkpoint_that_was_tampered_is_rejected(log_dir: Path, keys: Keys, tmp_path: Path) -> None:
    saved = tmp_path / "anchor.json"
    cp = latest_checkpoint(log_dir, keys[1].public_key())
    assert cp is not None
    save_checkpoint(Checkpoint(**{**cp.__dict__, "tree_size": 1}), saved)
    expect_finding(check_log(log_dir, keys, since_checkpoint=saved), "saved_checkpoint_invalid")


# --------------------------------------------------------------------------- exhaustive mutation
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Path:
    directory = tmp_path_factory.mktemp("tiny") / "audit"
    with AuditLog(directory, *keys, fsync="none") as log:
        log.append(AuditEvent(event="decrypt.request_key", tenant_id="t", request_id="r1"))
        log.append(AuditEvent(event="decrypt.data_key", tenant_id="t", request_id="r1", byte_count=9))
    return directory


@pytest.mark.parametrize("name", [segment_name(1), CHECKPOINTS_FILE])
def test_every_single_byte_flip_is_detected(tiny: Path, keys: Keys, tmp_path: Path, name: str) -> None:
    directory = tmp_path / "audit"
    shutil.copytree(tiny, directory)
    path = directory / name
    original = path.read_bytes()
    assert check_log(directory, keys).ok
    missed = []
    for position in range(len(original)):
        mask = 0x01 if position % 2 else 0x80
        mutated = bytearray(original)
        mutated[position] ^= mask
        path.write_bytes(bytes(mutated))
        if check_log(directory, keys).ok:
            missed.append(position)
    path.write_bytes(original)
    assert missed == [], f"flips at {missed} in {name} went unnoticed"


@pytest.mark.parametrize("name", [segment_name(1), CHECKPOINTS_FILE])
def test_every_truncation_is_detected(tiny: Path, keys: Keys, tmp_path: Path, name: str) -> None:
    directory = tmp_path / "audit"
    shutil.copytree(tiny, directory)
    path = directory / name
    original = path.read_bytes()
    step = max(1, len(original) // 97)
    boundaries = {i + 1 for i, byte in enumerate(original) if byte == ord("\n")} | {0}
    for length in sorted({*range(0, len(original), step), *boundaries} - {len(original)}):
        path.write_bytes(original[:length])
        report = check_log(directory, keys)
        if name == CHECKPOINTS_FILE and "checkpoint_missing" not in report.kinds():
            # Cutting off checkpoints written after the last record is indistinguishable from a crash
            # before (or while) they were written: records are left unsigned, and verify says so.
            assert "unsigned_tail" in report.kinds(), report.summary()
            continue
        assert not report.ok, f"{name} cut to {length} bytes went unnoticed"
