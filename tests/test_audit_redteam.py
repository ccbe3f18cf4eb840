"""Red team of the audit log: an insider with write access to the data dir (but not the KMS-held keys),
crashes and full disks. Each attack must be named by `verify` (and `cleanroom audit verify`), or refused or
repaired safely by the writer: never accepted silently, never a traceback, never a hang.

Complements test_audit_tamper.py (single-record edits, every byte of a tiny log) and test_audit_log.py
(torn tails, one kill -9, write failures in-process): here the files are replaced by other kinds of files,
the checkpoint history is deleted or replayed, segments are reordered, sparse or cut at every boundary,
and writers crash, run out of disk and race in other processes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.audit.checkpoints import CHECKPOINTS_FILE, Checkpoint, sign_checkpoint
from cleanroom.audit.commands import register
from cleanroom.audit.commit import Slot
from cleanroom.audit.log import AuditLog
from cleanroom.audit.merkle import CompactTree, chain_genesis, chain_next, leaf_hash
from cleanroom.audit.proofs import InclusionProof, ProofError, prove, verify_proof
from cleanroom.audit.reader import read_events
from cleanroom.audit.records import FRAME_HEADER_LEN, SEGMENT_HEADER_LEN, TAG_LEN, AuditEvent
from cleanroom.audit.segments import list_segments, segment_name
from cleanroom.audit.verify import VerifyReport
from cleanroom.errors import AuditUnavailable
from support.audit_checks import Keys, check_log, copy_log, expect_finding, frames_of, new_keys

# The smallest segment the writer accepts: about 38 of the records below per segment.
SEGMENT_MAX = SEGMENT_HEADER_LEN + FRAME_HEADER_LEN + TAG_LEN + 64 * 1024
RECORDS = 100
EVERY = 16  # checkpoint every 16 records: several checkpoints per segment


def _event(i: int, tenant: str = "tenant-a") -> AuditEvent:
    return AuditEvent(
        event="decrypt.data_key",
        time=1_700_000_000.0 + i,  # same length in every log: records can be swapped in place
        tenant_id=tenant,
        key_id="k1",
        key_version=1,
        request_id=f"req-{i}",
        principal="cred-1",
        source="192.0.2.7",
        byte_count=i,
        details={f"pad{j}": "p" * 500 for j in range(3)},
    )


@pytest.fixture(scope="module")
def keys() -> Keys:
    return new_keys()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Path:
    directory = tmp_path_factory.mktemp("redteam") / "audit"
    with AuditLog(directory, *keys, checkpoint_every_records=EVERY, segment_max_bytes=SEGMENT_MAX, fsync="none") as log:
        for i in range(RECORDS):
            log.append(_event(i))
    assert len(list_segments(directory)) == 3
    return directory


@pytest.fixture
def log_dir(pristine: Path, tmp_path: Path) -> Path:
    return copy_log(pristine, tmp_path)


def _open_writer(directory: Path, keys: Keys, **kwargs: object) -> AuditLog:
    return AuditLog(directory, *keys, segment_max_bytes=SEGMENT_MAX, fsync="none", **kwargs)  # type: ignore[arg-type]


def _within(seconds: float, action: Callable[[], object], unblock: Callable[[], None]) -> object:
    """Run `action` in a thread; if it is still blocked after `seconds` (a hang on a FIFO), call `unblock`
    so the thread can finish, and fail. Not a synchronisation sleep: the join returns as soon as it ends."""
    result: list[object] = []

    def run() -> None:
        try:
            result.append(action())
        except BaseException as exc:  # handed to the test thread
            result.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        unblock()
        thread.join(10)
        pytest.fail(f"blocked for more than {seconds} s (a FIFO must be refused, not waited on)")
    return result[0]


def _release_fifo(path: Path) -> Callable[[], None]:
    def unblock() -> None:
        for flags in (os.O_WRONLY | os.O_NONBLOCK, os.O_RDONLY | os.O_NONBLOCK):
            with contextlib.suppress(OSError):
                os.close(os.open(path, flags))

    return unblock


# =========================================================================== found and fixed
def test_failed_rotation_does_not_report_the_rolled_back_records_durable(tmp_path: Path, keys: Keys) -> None:
    """A batch that spans a rotation writes its first part to the old segment; the rotation fsyncs it and
    counts those records durable. If creating the next segment then fails (disk full), the batch is rolled
    back, but the count stayed: the next records, reusing those numbers, were "durable" without any
    fdatasync, and `size` counted records that did not exist."""
    directory = tmp_path / "audit"
    log = AuditLog(
        directory,
        *keys,
        segment_max_bytes=SEGMENT_MAX,
        fsync="group",
        checkpoint_every_records=10**6,
        checkpoint_every_s=3600,
    )
    try:
        count = 0
        while (directory / segment_name(1)).stat().st_size + 3 * 1700 < SEGMENT_MAX:
            log.append(_event(count))
            count += 1
        blocker = directory / (segment_name(2) + ".tmp")
        blocker.mkdir()  # the new segment's temp file cannot be created: EISDIR, as ENOSPC would
        with pytest.raises(AuditUnavailable, match="write failed"):
            log.append_many([_event(1000 + i) for i in range(10)])
        blocker.rmdir()
        assert log.size == count, "records rolled back are still counted durable"
        syncs = log.fdatasyncs
        assert log.append(_event(count)) == count
        assert log.fdatasyncs == syncs + 1, "an append returned without any fdatasync"
        assert log.size == count + 1
    finally:
        log.close()
    report = check_log(directory, keys)
    assert report.ok and report.records == count + 1, report.summary()


def _edited(proof: InclusionProof, **fields: object) -> dict[str, object]:
    data = proof.to_json()
    data.update(fields)
    return data


@pytest.mark.parametrize(
    "fields",
    [
        {"segment_index": -1},
        {"segment_index": 1 << 32},
        {"seq": -1},
        {"seq": True},
        {"seq": "3"},
        {"seq": 3.0},
        {"tree_size": 10**6},
        {"leaf_hash": "00" * 32},
    ],
    ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()),
)
def test_proof_with_wrong_numbers_is_a_proof_error(pristine: Path, keys: Keys, fields: dict[str, object]) -> None:
    """`check-proof` ran struct.pack on an out-of-range segment index (a traceback), and accepted a proof
    whose stated tree size or leaf hash differed from what it proved."""
    proof = prove(pristine, keys[0], 3, keys[1].public_key())
    with pytest.raises(ProofError):
        verify_proof(InclusionProof.from_json(_edited(proof, **fields)), keys[1].public_key())
    if "segment_index" in fields:  # built directly, bypassing from_json
        direct = dataclasses.replace(proof, segment_index=fields["segment_index"])
        with pytest.raises(ProofError, match="out of range"):
            verify_proof(direct, keys[1].public_key())


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cleanroom")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


def test_check_proof_cli_rejects_an_out_of_range_segment_index(
    pristine: Path, keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pem = tmp_path / "audit.pem"
    pem.write_bytes(
        keys[1].public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    proof = prove(pristine, keys[0], 5, keys[1].public_key())
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(proof.to_json()), encoding="ascii")
    bad.write_text(json.dumps(_edited(proof, segment_index=1 << 32)), encoding="ascii")
    assert _run_cli(["audit", "check-proof", str(good), "--public-key", str(pem)]) == 0
    assert _run_cli(["audit", "check-proof", str(bad), "--public-key", str(pem)]) == 1
    assert "proof INVALID" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["directory", "symlink-to-dev-null"])
def test_checkpoints_file_replaced_by_a_directory(log_dir: Path, keys: Keys, kind: str) -> None:
    """verify and the writer raised IsADirectoryError (a traceback); with /dev/null in its place the
    writer would have "written" its checkpoints there."""
    (log_dir / CHECKPOINTS_FILE).unlink()
    if kind == "directory":
        (log_dir / CHECKPOINTS_FILE).mkdir()
    else:
        (log_dir / CHECKPOINTS_FILE).symlink_to("/dev/null")
    report = check_log(log_dir, keys)
    assert "not a regular file" in expect_finding(report, "checkpoints_unreadable").message
    expect_finding(report, "checkpoint_missing")
    with pytest.raises(AuditUnavailable, match=r"checkpoints\.jsonl cannot be read"):
        _open_writer(log_dir, keys)


def test_checkpoints_file_replaced_by_a_fifo(log_dir: Path, keys: Keys) -> None:
    """verify blocked forever opening the FIFO; the writer took it for an empty file and then blocked
    opening it for appending."""
    path = log_dir / CHECKPOINTS_FILE
    path.unlink()
    os.mkfifo(path)
    report = _within(20, lambda: check_log(log_dir, keys), _release_fifo(path))
    assert isinstance(report, VerifyReport)
    expect_finding(report, "checkpoints_unreadable")
    outcome = _within(20, lambda: _open_writer(log_dir, keys), _release_fifo(path))
    if isinstance(outcome, AuditLog):
        outcome.close()
        pytest.fail("the writer opened a log whose checkpoints are a FIFO")
    assert isinstance(outcome, AuditUnavailable), outcome


def test_saved_checkpoint_that_is_a_fifo(log_dir: Path, keys: Keys, tmp_path: Path) -> None:
    """`verify --since-checkpoint F` with F a FIFO blocked forever."""
    anchor = tmp_path / "anchor.json"
    os.mkfifo(anchor)
    report = _within(20, lambda: check_log(log_dir, keys, since_checkpoint=anchor), _release_fifo(anchor))
    assert isinstance(report, VerifyReport)
    assert "not a regular file" in expect_finding(report, "saved_checkpoint_invalid").message


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_keys_file_replaced_by_a_directory_is_a_clean_cli_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """`cleanroom audit verify` raised IsADirectoryError, or blocked forever on a FIFO."""
    monkeypatch.delenv("CLEANROOM_KMS", raising=False)
    monkeypatch.delenv("CLEANROOM_CONFIG", raising=False)
    path = tmp_path / "audit" / "keys.json"
    if kind == "directory":
        path.mkdir(parents=True)
    else:
        path.parent.mkdir()
        os.mkfifo(path)
    code = _within(20, lambda: _run_cli(["audit", "verify", "--data-dir", str(tmp_path)]), _release_fifo(path))
    assert code == 2
    assert "keys.json cannot be read" in capsys.readouterr().err


def _sparse(path: Path, size: int) -> None:
    with path.open("r+b" if path.exists() else "wb") as fh:
        fh.truncate(size)


def test_huge_sparse_segment_is_named_without_reading_it(log_dir: Path, keys: Keys) -> None:
    """A 1 TiB sparse file costs nothing on disk; verify read it whole (MemoryError, a traceback)."""
    _sparse(log_dir / segment_name(4), 1 << 40)
    report = check_log(log_dir, keys)
    assert expect_finding(report, "segment_replaced").segment == 4
    assert report.records == RECORDS


def test_sparse_tail_on_the_last_segment_is_a_torn_tail(log_dir: Path, keys: Keys, tmp_path: Path) -> None:
    """The genuine last segment extended to 1 TiB of holes: verify read it whole (MemoryError), and the
    writer searched the terabyte for a frame. Zeros after the newest checkpoint are the shape a crash
    leaves: reported, then cut off at the next open, which records what it removed."""
    last = log_dir / segment_name(3)
    size = last.stat().st_size
    _sparse(last, 1 << 40)
    report = check_log(log_dir, keys)
    assert report.ok and "torn_tail" in report.kinds(), report.summary()
    code = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from cryptography.hazmat.primitives import serialization\n"
        "from cleanroom.audit.log import AuditLog\n"
        "key = bytearray.fromhex(os.environ['AUDIT_KEY'])\n"
        "signing = serialization.load_pem_private_key(Path(os.environ['SIGNING_PEM']).read_bytes(), None)\n"
        "with AuditLog(Path(os.environ['AUDIT_DIR']), key, signing, fsync='none') as log:\n"
        "    print(log.repairs[0].offset, log.repairs[0].bytes_removed)\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", code],
        env=_child_env(log_dir, keys, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == [str(size), str((1 << 40) - size)]
    assert size < last.stat().st_size < size + 4096  # cut back, then the audit.tail_repaired record
    report = check_log(log_dir, keys)
    assert report.ok and report.findings == [], report.summary()
    repaired = [event for _, event in read_events(log_dir, keys[0])][-1]
    assert repaired.event == "audit.tail_repaired" and repaired.details["bytes_removed"] == (1 << 40) - size


def test_hole_followed_by_data_is_named(log_dir: Path, keys: Keys) -> None:
    """A segment rebuilt with a 1 GiB hole in the middle (the writer only appends: never a hole)."""
    path = log_dir / segment_name(2)
    data = path.read_bytes()
    cut = frames_of(path)[5].offset
    with path.open("wb") as fh:
        fh.write(data[:cut])
        fh.seek(cut + (1 << 30))
        fh.write(data[cut:])
    assert os.stat(path).st_blocks * 512 < path.stat().st_size
    finding = expect_finding(check_log(log_dir, keys), "segment_sparse")
    assert finding.segment == 2 and cut <= finding.offset < cut + 65536  # where the hole begins (a block)


def test_deleted_checkpoints_are_not_signed_over_by_the_writer(log_dir: Path, keys: Keys) -> None:
    """checkpoints.jsonl deleted: verify says checkpoint_missing, but the writer opened, signed a new chain
    from #0 and, once its indices caught up with the records' references, the log verified as intact."""
    (log_dir / CHECKPOINTS_FILE).unlink()
    expect_finding(check_log(log_dir, keys), "checkpoint_missing")
    with pytest.raises(AuditUnavailable, match="checkpoints were deleted"):
        _open_writer(log_dir, keys)


def test_checkpoint_file_cut_to_an_older_line_is_refused_by_the_writer(log_dir: Path, keys: Keys) -> None:
    lines = (log_dir / CHECKPOINTS_FILE).read_bytes().splitlines(keepends=True)
    (log_dir / CHECKPOINTS_FILE).write_bytes(b"".join(lines[:3]))
    expect_finding(check_log(log_dir, keys), "checkpoint_missing")
    with pytest.raises(AuditUnavailable, match="checkpoints were deleted"):
        _open_writer(log_dir, keys)


def test_replayed_old_checkpoint_is_refused_by_the_writer(log_dir: Path, keys: Keys) -> None:
    """An old (validly signed) checkpoint line appended again: the writer resumed from it and forked the
    checkpoint chain from there."""
    lines = (log_dir / CHECKPOINTS_FILE).read_bytes().splitlines(keepends=True)
    (log_dir / CHECKPOINTS_FILE).write_bytes(b"".join(lines) + lines[2])
    assert (
        expect_finding(check_log(log_dir, keys), "checkpoint_chain_broken").checkpoint
        == Checkpoint.loads(lines[2]).index
    )
    with pytest.raises(AuditUnavailable, match="checkpoints were deleted"):
        _open_writer(log_dir, keys)


def _sign_fresh_chain(directory: Path, signing: ec.EllipticCurvePrivateKey, count: int) -> None:
    """What the writer used to do after checkpoints.jsonl was deleted, fast-forwarded: a new chain #0..#count-1
    signed over the records as they are."""
    log_id = Checkpoint.loads((directory / CHECKPOINTS_FILE).read_bytes().splitlines()[0]).log_id
    tree, chain = CompactTree(), chain_genesis(log_id)
    last: tuple[int, int] = (0, 0)
    end = (0, 0)
    for index, path in list_segments(directory):
        for frame in frames_of(path):
            record = leaf_hash(frame.raw)
            tree.append(record)
            chain = chain_next(chain, record)
            last, end = (index, frame.offset), (index, frame.end)
    lines, prev = [], bytes(32)
    for index in range(count):
        cp = sign_checkpoint(
            signing,
            index=index,
            log_id=log_id,
            tree=tree,
            chain_head=chain,
            prev_digest=prev,
            segment_index=end[0],
            segment_offset=end[1],
            last_record=last,
            time_ns=1_800_000_000_000_000_000 + index,
        )
        lines.append(cp.dumps() + "\n")
        prev = cp.digest()
    (directory / CHECKPOINTS_FILE).write_text("".join(lines), encoding="ascii")


def test_checkpoint_chain_signed_afresh_is_detected(log_dir: Path, keys: Keys) -> None:
    """The log a writer left after re-signing (above): every index present, every root right. Only the
    records' checkpoint references show that #0 did not exist before record 0 was written."""
    count = len((log_dir / CHECKPOINTS_FILE).read_bytes().splitlines())
    _sign_fresh_chain(log_dir, keys[1], count)
    report = check_log(log_dir, keys)
    finding = expect_finding(report, "checkpoint_rewritten")
    assert (finding.seq, finding.segment, finding.offset) == (0, 1, SEGMENT_HEADER_LEN)


@pytest.mark.parametrize(
    "make",
    [
        lambda log: log.append(AuditEvent(event="decrypt.data_key", tenant_id="\ud800")),
        lambda log: log.append_ahead(AuditEvent(event="decrypt.data_key", details={"k": "\udfff"})),
        lambda log: log.record({"event": "decrypt.data_key", "request_id": "\udcff"}),
        lambda log: log.record_many_ahead([{"event": "decrypt.data_key"}, {"event": "decrypt.data_key", "x\ud800": 1}]),
        lambda log: log.record({"event": "decrypt.data_key", **{f"d{i}": "\x01" * 512 for i in range(40)}}),
    ],
    ids=["append", "append_ahead", "record", "record_many_ahead", "oversized"],
)
def test_unencodable_event_fails_closed_as_audit_unavailable(tmp_path: Path, keys: Keys, make) -> None:  # type: ignore[no-untyped-def]
    """A lone surrogate (UTF-8 cannot hold it) or an event over 64 KiB once encoded raised a bare
    UnicodeEncodeError/ValueError from append and record: a 500 for the request, not audit_unavailable."""
    with _open_writer(tmp_path / "audit", keys) as log:
        log.append(_event(0))
        with pytest.raises(AuditUnavailable, match="rejected"):
            make(log)
        assert log.append(_event(1)) == 1  # nothing of the rejected batch was written
    report = check_log(tmp_path / "audit", keys)
    assert report.ok and report.records == 2, report.summary()


@pytest.mark.parametrize(
    "plaintext",
    [
        b'{"event":"decrypt.data_key","time":1.5,"tenant_id":"victim","tenant_id":"other"}',
        b'{"time":1.5,"event":"decrypt.data_key"}',
        b'{"event": "decrypt.data_key", "time": 1.5}',
        b'{"event":"decrypt.data_key","time":1.5,"tenant_id":"\\u0061"}',
        b'{"event":"decrypt.data_key","time":1.5,"tenant_id":"\xff"}',
    ],
    ids=["duplicate-key", "reordered", "spaces", "escaped", "not-utf8"],
)
def test_record_json_in_any_but_the_canonical_form_is_malformed(tmp_path: Path, keys: Keys, plaintext: bytes) -> None:
    """Records are sealed by the key holder, so this is a buggy or compromised writer: a record whose JSON
    can be read two ways (duplicate keys) was accepted, the last key winning in Python."""
    directory = tmp_path / "audit"
    with _open_writer(directory, keys) as log:
        log.append(_event(0))
        slot = Slot((plaintext,), durable=True)
        log._submit(slot)
        assert slot.error is None
        log.append(_event(2))
    finding = expect_finding(check_log(directory, keys), "record_malformed")
    assert finding.seq == 1 and finding.segment == 1
    assert [seq for seq, _ in read_events(directory, keys[0])] == [0, 2]


def test_planted_temp_symlink_cannot_make_the_writer_overwrite_a_file(
    log_dir: Path, keys: Keys, tmp_path: Path
) -> None:
    """`segment-00000004.log.tmp` planted as a symlink to a file the server may write (the local KMS's key
    store, say): at the next rotation the writer opened it with O_TRUNC, truncated the file and wrote the
    new segment into it (then renamed the link into place)."""
    victim = tmp_path / "kms-master-key"
    victim.write_bytes(b"master key material\n" * 50)
    (log_dir / (segment_name(4) + ".tmp")).symlink_to(victim)
    with _open_writer(log_dir, keys) as log:
        for i in range(30):  # enough to fill segment 3 and rotate
            log.append(_event(RECORDS + i))
    assert victim.read_bytes() == b"master key material\n" * 50
    assert (log_dir / segment_name(4)).is_file() and not (log_dir / segment_name(4)).is_symlink()
    assert check_log(log_dir, keys).ok


def test_symlinked_checkpoints_file_is_refused_by_the_writer(log_dir: Path, keys: Keys, tmp_path: Path) -> None:
    """checkpoints.jsonl as a symlink: the writer appended its checkpoints to the file it named, and cut that
    file's unterminated last line off as a "torn checkpoint line"."""
    victim = tmp_path / "notes.txt"
    victim.write_bytes(b"first line\nan unterminated last line")
    (log_dir / CHECKPOINTS_FILE).unlink()
    (log_dir / CHECKPOINTS_FILE).symlink_to(victim)
    with pytest.raises(AuditUnavailable, match="symbolic link"):
        _open_writer(log_dir, keys)
    assert victim.read_bytes() == b"first line\nan unterminated last line"


def test_symlinked_last_segment_is_refused_by_the_writer(log_dir: Path, keys: Keys, tmp_path: Path) -> None:
    """The last segment moved elsewhere and symlinked back: its contents are genuine (verify accepts them),
    but the writer does not append through a link; it said so with a bare OSError at most."""
    moved = tmp_path / "elsewhere.log"
    shutil.move(log_dir / segment_name(3), moved)
    (log_dir / segment_name(3)).symlink_to(moved)
    assert check_log(log_dir, keys).ok
    with pytest.raises(AuditUnavailable, match="cannot be opened for appending"):
        _open_writer(log_dir, keys)


def _replace_with_copy(path: Path) -> None:
    copy = path.with_name("copy.tmp")
    copy.write_bytes(path.read_bytes())
    os.replace(copy, path)


@pytest.mark.parametrize("name", [segment_name(1), CHECKPOINTS_FILE])
def test_file_replaced_under_a_running_writer_fails_closed(tmp_path: Path, keys: Keys, name: str) -> None:
    """A copy renamed over the segment (or checkpoints.jsonl) while the writer runs: the writer went on
    writing into the unlinked file, acknowledging records (and checkpoints) as durable that were gone at
    the next open. Now the first fdatasync (or checkpoint) after it breaks the log."""
    directory = tmp_path / "audit"
    log = AuditLog(directory, *keys, fsync="group", checkpoint_every_records=10**6, checkpoint_every_s=3600)
    try:
        for i in range(3):
            log.append(_event(i))
        _replace_with_copy(directory / name)
        with pytest.raises(AuditUnavailable, match="replaced or removed"):
            log.append(_event(3))
            log.checkpoint_now()
        with pytest.raises(AuditUnavailable, match="unusable"):
            log.append(_event(4))
    finally:
        log.close()
    with _open_writer(directory, keys) as log:
        assert log.size >= 3
    assert check_log(directory, keys).ok


def test_one_far_segment_name_costs_one_finding(log_dir: Path, keys: Keys) -> None:
    """An empty `segment-01000000.log`: verify reported each of the 999,996 names before it as a missing
    segment, one finding (and one loop turn) each; `segment-99999999.log` made it run for minutes and
    gigabytes."""
    (log_dir / segment_name(1_000_000)).touch()
    report = check_log(log_dir, keys)
    assert len(report.findings) < 10, f"{len(report.findings)} findings"
    missing = expect_finding(report, "segment_missing")
    assert missing.segment == 4 and "4..999999" in missing.message
    assert expect_finding(report, "segment_replaced").segment == 1_000_000
    with pytest.raises(AuditUnavailable, match="not contiguous"):
        _open_writer(log_dir, keys)


@pytest.fixture
def cli_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data dir with audit keys wrapped by the local KMS, as `cleanroom audit …` finds it."""
    from cleanroom.audit.keys import load_or_create_audit_keys
    from cleanroom.keys.local import LocalKMS

    monkeypatch.delenv("CLEANROOM_KMS", raising=False)
    monkeypatch.delenv("CLEANROOM_CONFIG", raising=False)
    kms = LocalKMS(tmp_path)
    with (
        load_or_create_audit_keys(tmp_path / "audit", kms, "cleanroom-master") as keys,
        AuditLog(tmp_path / "audit", keys.audit_key, keys.require_signing_key(), fsync="none") as log,
    ):
        for i in range(6):
            log.append(_event(i))
    kms.close()
    return tmp_path


@pytest.mark.parametrize("damage", ["checkpoints-dir", "sparse-segment"])
def test_show_prove_and_checkpoint_commands_never_raise(
    cli_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    """`audit show`, `prove` and `checkpoint` (and the alert monitor's warm-up at start, through
    `read_events`) raised IsADirectoryError or MemoryError."""
    audit = cli_data_dir / "audit"
    if damage == "checkpoints-dir":
        (audit / CHECKPOINTS_FILE).unlink()
        (audit / CHECKPOINTS_FILE).mkdir()
    else:
        _sparse(audit / segment_name(2), 1 << 40)
    data_dir = ["--data-dir", str(cli_data_dir)]
    assert _run_cli(["audit", "show", "--json", *data_dir]) == 0
    shown = [json.loads(line)["seq"] for line in capsys.readouterr().out.splitlines()]
    assert shown == list(range(6))
    out = tmp_path / "cp.json"
    expected = 2 if damage == "checkpoints-dir" else 0
    assert _run_cli(["audit", "prove", "3", "--out", str(out), *data_dir]) == expected
    assert _run_cli(["audit", "checkpoint", "--out", str(out), *data_dir]) == expected
    assert _run_cli(["audit", "verify", *data_dir]) == 1
    if damage == "checkpoints-dir":
        assert "cannot be read" in capsys.readouterr().err


# =========================================================================== detected already
def _sample(length: int, count: int) -> list[int]:
    step = max(1, length // count)
    return sorted({*range(0, length, step), length - 1})


@pytest.mark.parametrize("index", [1, 2, 3])
def test_flip_one_byte_anywhere_in_a_segment(log_dir: Path, keys: Keys, index: int) -> None:
    """Sampled positions over a whole segment of a multi-segment log: header, frame headers, ciphertext."""
    path = log_dir / segment_name(index)
    original = path.read_bytes()
    positions = [*range(0, SEGMENT_HEADER_LEN, 5), *_sample(len(original), 40)]  # tamper: every byte of a tiny log
    missed = []
    for position in positions:
        mutated = bytearray(original)
        mutated[position] ^= 0x20
        path.write_bytes(bytes(mutated))
        report = check_log(log_dir, keys)
        if report.ok or not {f.segment for f in report.findings if f.severity == "error"} & {index}:
            missed.append(position)
    path.write_bytes(original)
    assert missed == [], f"flips at {missed} in {path.name} were not named with segment {index}"


def test_cut_a_middle_segment_at_every_boundary_and_mid_record(log_dir: Path, keys: Keys) -> None:
    path = log_dir / segment_name(2)
    original = path.read_bytes()
    frames = frames_of(path)
    cuts = sorted({f.offset for f in frames} | {f.offset + 50 for f in frames[::3]} | {f.end - 1 for f in frames[1::3]})
    for length in [0, 10, SEGMENT_HEADER_LEN, *cuts]:
        path.write_bytes(original[:length])
        report = check_log(log_dir, keys)
        assert not report.ok, f"segment 2 cut to {length} bytes went unnoticed"
        named = {
            f.segment for f in report.findings if f.kind in ("record_deleted", "record_corrupt", "segment_replaced")
        }
        assert named & {2, 3}, report.summary()
    path.write_bytes(original)


def test_cut_the_last_segment_below_the_newest_checkpoint(log_dir: Path, keys: Keys) -> None:
    """Every record boundary and a mid-record cut of every record of the last segment: all of it is signed
    (the log was closed), so verify names a truncation and the writer refuses to open."""
    path = log_dir / segment_name(3)
    original = path.read_bytes()
    frames = frames_of(path)
    for length in sorted({f.offset for f in frames} | {f.offset + 120 for f in frames}):
        path.write_bytes(original[:length])
        report = check_log(log_dir, keys)
        assert "tail_truncated" in report.kinds() and not report.ok, report.summary()
        with pytest.raises(AuditUnavailable, match=r"truncated|no longer matches|verify"):
            _open_writer(log_dir, keys)
    path.write_bytes(original)
    assert check_log(log_dir, keys).ok


def test_segments_renamed_into_each_others_place(log_dir: Path, keys: Keys) -> None:
    two, three = log_dir / segment_name(2), log_dir / segment_name(3)
    two.rename(log_dir / "swap")
    three.rename(two)
    (log_dir / "swap").rename(three)
    report = check_log(log_dir, keys)
    assert {f.segment for f in report.findings if f.kind == "segment_replaced"} == {2, 3}, report.summary()
    with pytest.raises(AuditUnavailable, match="verify"):
        _open_writer(log_dir, keys)


def test_last_segment_duplicated_as_a_new_one(log_dir: Path, keys: Keys) -> None:
    shutil.copyfile(log_dir / segment_name(3), log_dir / segment_name(4))
    assert expect_finding(check_log(log_dir, keys), "segment_replaced").segment == 4
    with pytest.raises(AuditUnavailable, match="out of place"):
        _open_writer(log_dir, keys)


def test_segment_symlinked_to_another_segment(log_dir: Path, keys: Keys) -> None:
    (log_dir / segment_name(2)).unlink()
    (log_dir / segment_name(2)).symlink_to(log_dir / segment_name(1))
    finding = expect_finding(check_log(log_dir, keys), "segment_replaced")
    assert finding.segment == 2 and "holds segment 1" in finding.message


def test_segment_replaced_by_a_fifo(log_dir: Path, keys: Keys) -> None:
    path = log_dir / segment_name(3)
    path.unlink()
    os.mkfifo(path)
    report = _within(20, lambda: check_log(log_dir, keys), _release_fifo(path))
    assert isinstance(report, VerifyReport)
    assert expect_finding(report, "segment_missing").segment == 3
    outcome = _within(20, lambda: _open_writer(log_dir, keys), _release_fifo(path))
    assert isinstance(outcome, AuditUnavailable), outcome


def test_record_moved_from_another_tenants_log_at_the_same_position(log_dir: Path, keys: Keys, tmp_path: Path) -> None:
    """Two data dirs that share the audit key (same KMS) but not the log id: a record copied over the one
    with the same sequence number in the same place does not authenticate here."""
    other = tmp_path / "other"
    with AuditLog(other, *keys, checkpoint_every_records=EVERY, segment_max_bytes=SEGMENT_MAX, fsync="none") as log:
        for i in range(RECORDS):
            log.append(_event(i, tenant="tenant-b"))
    mine, theirs = frames_of(log_dir / segment_name(2)), frames_of(other / segment_name(2))
    victim, donor = mine[7], theirs[7]
    assert victim.header.seq == donor.header.seq and len(victim.raw) == len(donor.raw)
    data = bytearray((log_dir / segment_name(2)).read_bytes())
    data[victim.offset : victim.end] = donor.raw
    (log_dir / segment_name(2)).write_bytes(bytes(data))
    finding = expect_finding(check_log(log_dir, keys), "record_corrupt")
    assert (finding.segment, finding.offset, finding.seq) == (2, victim.offset, victim.header.seq)


def test_rollback_of_segments_and_checkpoints_together_needs_a_saved_checkpoint(
    log_dir: Path, keys: Keys, tmp_path: Path
) -> None:
    """Accepted as documented: cutting the last segment and checkpoints.jsonl back to an older checkpoint
    leaves a log that was once genuine. A checkpoint saved elsewhere before the cut names it."""
    from cleanroom.audit.checkpoints import save_checkpoint
    from cleanroom.audit.reader import latest_checkpoint

    anchor = tmp_path / "anchor.json"
    newest = latest_checkpoint(log_dir, keys[1].public_key())
    assert newest is not None
    save_checkpoint(newest, anchor)
    lines = (log_dir / CHECKPOINTS_FILE).read_bytes().splitlines(keepends=True)
    older = Checkpoint.loads(lines[-3])
    (log_dir / CHECKPOINTS_FILE).write_bytes(b"".join(lines[:-2]))
    for index in range(older.segment_index + 1, 4):
        (log_dir / segment_name(index)).unlink()
    os.truncate(log_dir / segment_name(older.segment_index), older.segment_offset)
    assert check_log(log_dir, keys).ok  # on its own, an older log
    finding = expect_finding(check_log(log_dir, keys, since_checkpoint=anchor), "tail_truncated")
    assert finding.seq == older.tree_size


# --------------------------------------------------------------------------- other processes
_WRITER = """
import os, resource, signal, sys
from pathlib import Path
from cryptography.hazmat.primitives import serialization
from cleanroom.audit.log import AuditLog
from cleanroom.audit.records import AuditEvent
from cleanroom.errors import AuditUnavailable
key = bytearray.fromhex(os.environ["AUDIT_KEY"])
signing = serialization.load_pem_private_key(Path(os.environ["SIGNING_PEM"]).read_bytes(), None)
directory = Path(os.environ["AUDIT_DIR"])
mode = os.environ["MODE"]
log = AuditLog(directory, key, signing, checkpoint_every_records=7, segment_max_bytes=int(os.environ["SEGMENT_MAX"]))
PAD = {f"pad{j}": "q" * 500 for j in range(3)}
def event(i):
    return AuditEvent(event="decrypt.data_key", tenant_id="t", request_id=f"r{i}", details=PAD)
if mode == "hold":
    print("ready", flush=True)
    sys.stdin.read()
    log.close()
elif mode == "crash":
    i = 0
    while True:
        seq = log.append(event(i)) if i % 3 else log.append_many([event(i), event(i + 1)])[-1]
        print(seq, flush=True)
        i += 1
elif mode == "disk-full":
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    segment = sorted(directory.glob("segment-*.log"))[-1]
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    checkpoints = (directory / "checkpoints.jsonl").stat().st_size
    resource.setrlimit(resource.RLIMIT_FSIZE, (max(segment.stat().st_size, checkpoints) + 4000, hard))
    acked, refused = 0, 0
    for i in range(40):
        try:
            log.append(event(i))
            acked += 1
        except AuditUnavailable:
            refused += 1
    try:
        log.checkpoint_now()
        checkpoint = "written"
    except AuditUnavailable:
        checkpoint = "refused"
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    log.append(event(99))
    log.close()
    print(acked, refused, checkpoint, flush=True)
"""


def _child_env(directory: Path, keys: Keys, tmp: Path, mode: str = "hold") -> dict[str, str]:
    pem = tmp / "signing.pem"
    pem.write_bytes(
        keys[1].private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return {
        **os.environ,
        "AUDIT_KEY": bytes(keys[0]).hex(),
        "SIGNING_PEM": str(pem),
        "AUDIT_DIR": str(directory),
        "MODE": mode,
        "SEGMENT_MAX": str(SEGMENT_MAX),
    }


def _writer(directory: Path, keys: Keys, tmp: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER],
        env=_child_env(directory, keys, tmp, mode),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_second_writer_in_another_process_is_refused(log_dir: Path, keys: Keys, tmp_path: Path) -> None:
    child = _writer(log_dir, keys, tmp_path, "hold")
    assert child.stdout is not None and child.stdin is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        with pytest.raises(AuditUnavailable, match="in use by another process"):
            _open_writer(log_dir, keys)
    finally:
        child.stdin.close()
        assert child.wait(60) == 0
        child.stdout.close()
    with _open_writer(log_dir, keys) as log:
        assert log.append(_event(RECORDS)) == RECORDS
    assert check_log(log_dir, keys).ok


def test_deleted_lock_file_does_not_let_a_second_writer_in(log_dir: Path, keys: Keys, tmp_path: Path) -> None:
    """`.lock` removed while a writer runs (by hand, or a clean-up of *.lock files): a second writer took a
    fresh `.lock` and both appended to the same segment, records with the same numbers interleaved."""
    child = _writer(log_dir, keys, tmp_path, "hold")
    assert child.stdout is not None and child.stdin is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        (log_dir / ".lock").unlink()
        outcome: object = None
        try:
            outcome = _open_writer(log_dir, keys)
        except AuditUnavailable as exc:
            outcome = exc
        if isinstance(outcome, AuditLog):
            outcome.close()
            pytest.fail("a second writer opened the log while the first one held it")
        assert "in use by another process" in str(outcome)
    finally:
        child.stdin.close()
        assert child.wait(60) == 0
        child.stdout.close()
    assert check_log(log_dir, keys).ok


def test_kill_9_at_random_points_loses_no_acknowledged_record(tmp_path: Path, keys: Keys) -> None:
    """Three rounds of: a writer in another process appends (single records and pairs, rotating segments,
    checkpointing every 7), is killed with SIGKILL mid-stream; the log is reopened and verified."""
    directory = tmp_path / "audit"
    acknowledged = -1
    for round_no, stop_after in enumerate((45, 60, 30)):
        child = _writer(directory, keys, tmp_path, "crash")
        assert child.stdout is not None
        for seen, line in enumerate(child.stdout, 1):
            acknowledged = max(acknowledged, int(line))
            if seen >= stop_after:
                break
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        child.stdout.close()
        child.stdin.close()  # type: ignore[union-attr]
        report = check_log(directory, keys)
        assert report.ok, f"round {round_no}: {report.summary()}"
        with _open_writer(directory, keys) as log:  # repairs a torn tail if the kill left one
            assert log.size >= acknowledged + 1
        report = check_log(directory, keys)
        assert report.ok and report.findings == [], report.summary()
    assert len(list_segments(directory)) >= 3


def test_disk_full_in_another_process_fails_closed_and_recovers(tmp_path: Path, keys: Keys) -> None:
    """RLIMIT_FSIZE in a child writer: appends past the limit raise AuditUnavailable (the segment is cut
    back), a checkpoint that cannot be written is refused, and once the limit is lifted the same log goes
    on. Every acknowledged record is in the verified log."""
    directory = tmp_path / "audit"
    with _open_writer(directory, keys, checkpoint_every_records=7) as log:
        for i in range(5):
            log.append(_event(i))
    child = subprocess.run(
        [sys.executable, "-c", _WRITER],
        env=_child_env(directory, keys, tmp_path, "disk-full"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    acked, refused, checkpoint = child.stdout.split()
    assert int(refused) > 0 and int(acked) < 40
    assert checkpoint in ("written", "refused")
    report = check_log(directory, keys)
    assert report.ok and report.records == 5 + int(acked) + 1, report.summary()
    with _open_writer(directory, keys) as log:
        assert log.size == 5 + int(acked) + 1
