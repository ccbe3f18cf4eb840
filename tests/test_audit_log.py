"""AuditLog: durability, group commit under 16 threads, rotation, torn-tail repair, fail-closed sinks,
and no plaintext on disk."""

from __future__ import annotations

import itertools
import json
import os
import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.audit.checkpoints import CHECKPOINTS_FILE, scan_checkpoint_file
from cleanroom.audit.log import AuditLog
from cleanroom.audit.reader import read_events
from cleanroom.audit.records import AuditEvent
from cleanroom.audit.segments import list_segments
from cleanroom.audit.verify import verify
from cleanroom.errors import AuditUnavailable, ConfigurationError


@pytest.fixture
def keys() -> tuple[bytearray, ec.EllipticCurvePrivateKey]:
    return bytearray(os.urandom(32)), ec.generate_private_key(ec.SECP384R1())


@pytest.fixture
def audit_dir(tmp_path: Path) -> Path:
    return tmp_path / "audit"


def _event(i: int, tenant: str = "tenant-acme") -> AuditEvent:
    return AuditEvent(
        event="decrypt.request_key",
        tenant_id=tenant,
        key_id=f"key-{i % 3}",
        key_version=2,
        purpose="request",
        request_id=f"req-{i:06d}-7f3a",
        principal="ak_12345",
        source="203.0.113.9",
        byte_count=1000 + i,
        details={"model": "echo"},
    )


def _verify_ok(audit_dir: Path, keys: tuple[bytearray, ec.EllipticCurvePrivateKey]) -> int:
    report = verify(audit_dir, keys[0], keys[1].public_key())
    assert report.ok, report.summary()
    return report.records


def test_append_returns_sequence_and_reads_back(audit_dir: Path, keys) -> None:  # type: ignore[no-untyped-def]
    with AuditLog(audit_dir, *keys, fsync="always") as log:
        seqs = [log.append(_event(i)) for i in range(5)]
        assert seqs == [0, 1, 2, 3, 4]
        assert log.size == 5
    events = list(read_events(audit_dir, keys[0]))
    assert [seq for seq, _ in events] == seqs
    assert events[3][1] == _event(3).__class__(**{**_event(3).__dict__, "time": events[3][1].time})
    assert events[3][1].request_id == "req-000003-7f3a"
    assert _verify_ok(audit_dir, keys) == 5


def test_reopen_continues_the_chain_and_close_checkpoints(audit_dir: Path, keys) -> None:  # type: ignore[no-untyped-def]
    with AuditLog(audit_dir, *keys, checkpoint_every_records=1000) as log:
        for i in range(7):
            log.append(_event(i))
    scan = scan_checkpoint_file(audit_dir / CHECKPOINTS_FILE)
    assert scan.lines[-1].checkpoint is not None and scan.lines[-1].checkpoint.tree_size == 7
    with AuditLog(audit_dir, *keys) as log:
        assert log.size == 7
        assert log.append(_event(7)) == 7
        assert log.repairs == []
    assert _verify_ok(audit_dir, keys) == 8


def test_checkpoints_every_n_records_chain_together(audit_dir: Path, keys) -> None:  # type: ignore[no-untyped-def]
    with AuditLog(audit_dir, *keys, checkpoint_every_records=10) as log:
        for i in range(35):
            log.append(_event(i))
    cps = [line.checkpoint for line in scan_checkpoint_file(audit_dir / CHECKPOINTS_FILE).lines]
    assert all(cp is not None for cp in cps)
    sizes = [cp.tree_size for cp in cps if cp is not None]
    assert sizes == sorted(sizes) and sizes[-1] == 35 and len(sizes) >= 4
    for prev, cur in itertools.pairwise(cps):
        assert prev is not None and cur is not None and cur.prev_digest == prev.digest()


def test_time_based_checkpoint_without_further_appends(audit_dir: Path, keys) -> None:  # type: ignore[no-untyped-def]
    import time

    with AuditLog(audit_dir, *keys, checkpoint_every_records=10_000, checkpoint_every_s=0.2) as log:
        log.append(_event(0))
        log.append(_event(1))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            last = log.last_checkpoint
            if last is not None and last.tree_size == 2:
                break
            time.sleep(0.05)
        assert log.last_checkpoint is not None and log.last_checkpoint.tree_size == 2


def test_sixteen_threads_never_interleave(audit_dir: Path, keys) -> None:  # type: ignore[no-untyped-def]
    per_thread = 60
    results: dict[int, list[int]] = {}
    with AuditLog(audit_dir, *keys, fsync="group", checkpoint_every_records=97, segment_max_bytes=128 * 1024) as log:
        barrier = threading.Barrier(16)

        def worker(t: int) -> None:
            barrier.wait()
            results[t] = [log.append(_event(i, tenant=f"t{t}")) for i in range(per_thread)]

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    all_seqs = sorted(s for seqs in results.values() for s in seqs)
    assert all_seqs == list(range(16 * per_thread))
    assert len(list_segments(audit_dir)) >= 2  # rotation happened under concurrency
    assert _verify_ok(audit_dir, keys) == 16 * per_thread
    by_tenant: dict[str, list[int]] = {}
    for seq, event in read_events(audit_dir, keys[0]):
        by_tenant.setdefault(event.tenant_id or "", []).append(seq)
    assert {t: sorted(v) for t, v in by_tenant.items()} == {f"t{t}": sorted(results[t]) for t in range(16)}


@pytest.mark.parametrize("policy", ["always", "group", "none"])
def test_every_fsync_policy_gives_a_valid_log(audit_dir: Path, keys, policy: str) -> None:  # type: ignore[no-untyped-def]
    with AuditLog(audit_dir, *keys, fsync=policy) as log:  # type: ignore[arg-type]
        for i in range(20):
            log.append(_event(i))
    assert _verify_ok(audit_dir, keys) == 20


def test_segments_rotate_by_size(audit_dir: Path, keys) -> None:  # type: ignore[no-untyped-def]
    limit = 80 * 1024
    with AuditLog(audit_dir, *keys, segment_max_bytes=limit) as log:
        big = AuditEvent(event="decrypt.data_key", tenant_id="t", details={"pad": "x" * 500})
        for _ in range(600):
            log.append(big)
    segments = list_segments(audit_dir)
    assert len(segments) >= 4
    assert all(path.stat().st_size <= limit for _, path in segments)
    assert _verify_ok(audit_dir, keys) == 600


def test_no_plaintext_on_disk(audit_dir: Path, keys) -> None:  # type: ignore[no-untyped-def]
    secret_tenant, secret_request = "tenant-zanzibar-31337", "request-9f8e7d6c5b4a"
    with AuditLog(audit_dir, *keys) as log:
        for _ in range(3):
            log.append(
                AuditEvent(
                    event="decrypt.tenant_key",
                    tenant_id=secret_tenant,
                    request_id=secret_request,
                    principal="ak_visible_id",
                    key_id="key-alpha",
                    source="198.51.100.77",
                )
            )
    needles = [secret_tenant, secret_request, "ak_visible_id", "key-alpha", "198.51.100.77", "decrypt"]
    for path in audit_dir.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            for needle in needles:
                for encoding in ("utf-8", "utf-16-le"):
                    assert needle.encode(encoding) not in blob, f"{needle} in clear in {path.name}"
    assert oct((audit_dir).stat().st_mode & 0o777) == "0o700"
    for _, path in list_segments(audit_dir):
        assert path.stat().st_mode & 0o077 == 0


def _append_raw(path: Path, data: bytes) -> None:
    with path.open("ab") as fh:
        fh.write(data)


@pytest.mark.parametrize("shape", ["partial_header", "partial_body", "zero_fill", "garbage_frame"])
def test_torn_tail_is_repaired_without_losing_records(audit_dir: Path, keys, shape: str) -> None:  # type: ignore[no-untyped-def]
    with AuditLog(audit_dir, *keys, checkpoint_every_records=5) as log:
        for i in range(12):
            log.append(_event(i))
        last_segment = list_segments(audit_dir)[-1][1]
        whole = last_segment.read_bytes()
    # A record written after the last checkpoint, then a crash mid-write of the next one.
    clean_size = last_segment.stat().st_size
    if shape == "partial_header":
        _append_raw(last_segment, b"CRA1\x00\x00")
    elif shape == "partial_body":
        last_frame_start = whole.rfind(b"CRA1")
        _append_raw(last_segment, whole[last_frame_start : last_frame_start + 150])
    elif shape == "zero_fill":
        _append_raw(last_segment, bytes(4096))
    else:
        last_frame_start = whole.rfind(b"CRA1")
        frame = bytearray(whole[last_frame_start:])
        frame[-5] ^= 0xFF  # full length on disk, contents never made it
        _append_raw(last_segment, bytes(frame))
    report = verify(audit_dir, keys[0], keys[1].public_key())
    assert report.ok and "torn_tail" in report.kinds(), report.summary()
    with AuditLog(audit_dir, *keys) as log:
        assert log.size == 12 + 1  # the 12 records survive, plus the repair record itself
        assert len(log.repairs) == 1 and log.repairs[0].offset == clean_size
        assert log.append(_event(99)) == 13
    events = [e for _, e in read_events(audit_dir, keys[0])]
    assert events[12].event == "audit.tail_repaired"
    assert events[12].details["offset"] == clean_size
    report = verify(audit_dir, keys[0], keys[1].public_key())
    assert report.ok and report.findings == [], report.summary()


def test_torn_checkpoint_line_is_repaired(audit_dir: Path, keys) -> None:  # type: ignore[no-untyped-def]
    with AuditLog(audit_dir, *keys) as log:
        log.append(_event(0))
    _append_raw(audit_dir / CHECKPOINTS_FILE, b'{"v":1,"index":')
    with AuditLog(audit_dir, *keys) as log:
        assert [r.file for r in log.repairs] == [CHECKPOINTS_FILE]
    assert _verify_ok(audit_dir, keys) == 2


_CHILD = """
import os, sys
from pathlib import Path
from cryptography.hazmat.primitives import serialization
from cleanroom.audit.log import AuditLog
from cleanroom.audit.records import AuditEvent
key = bytearray.fromhex(os.environ["AUDIT_KEY"])
signing = serialization.load_pem_private_key(Path(os.environ["SIGNING_PEM"]).read_bytes(), None)
log = AuditLog(Path(os.environ["AUDIT_DIR"]), key, signing, checkpoint_every_records=int(os.environ["EVERY"]))
for i in range(int(os.environ["COUNT"])):
    seq = log.append(AuditEvent(event="decrypt.data_key", tenant_id="t", request_id=f"r{i}"))
    sys.stdout.write(f"{seq}\\n")
    sys.stdout.flush()
os._exit(0)  # a crash: no close(), no final checkpoint
"""


def _crashing_writer(audit_dir: Path, keys, tmp: Path, count: int, every: int) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization

    pem = tmp / "signing.pem"
    pem.write_bytes(
        keys[1].private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    env = {
        **os.environ,
        "AUDIT_KEY": bytes(keys[0]).hex(),
        "SIGNING_PEM": str(pem),
        "AUDIT_DIR": str(audit_dir),
        "COUNT": str(count),
        "EVERY": str(every),
    }
    return subprocess.Popen([sys.executable, "-c", _CHILD], env=env, stdout=subprocess.PIPE, text=True)


def test_damage_before_the_tail_refuses_to_open(audit_dir: Path, keys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    child = _crashing_writer(audit_dir, keys, tmp_path, count=6, every=1)
    assert child.wait(60) == 0
    # every=1 checkpoints each record; damage one that is covered and not last: the signed head no longer
    # matches the data, and this is not a crash shape, so nothing may be "repaired".
    segment = list_segments(audit_dir)[-1][1]
    data = bytearray(segment.read_bytes())
    last = data.rfind(b"CRA1")
    data[last + 120] ^= 1
    segment.write_bytes(bytes(data))
    with pytest.raises(AuditUnavailable, match=r"no longer matches|damaged"):
        AuditLog(audit_dir, *keys)


def test_damage_after_the_checkpoint_but_before_the_tail_refuses_to_open(  # type: ignore[no-untyped-def]
    audit_dir: Path, keys, tmp_path: Path
) -> None:
    child = _crashing_writer(audit_dir, keys, tmp_path, count=6, every=1000)
    assert child.wait(60) == 0  # one checkpoint after record 0, records 1..5 unsigned
    segment = list_segments(audit_dir)[-1][1]
    data = bytearray(segment.read_bytes())
    starts = [i for i in range(len(data)) if data.startswith(b"CRA1", i)]
    data[starts[2] + 120] ^= 1
    segment.write_bytes(bytes(data))
    with pytest.raises(AuditUnavailable, match="damaged"):
        AuditLog(audit_dir, *keys)


def test_kill_during_appends_loses_nothing_acknowledged(audit_dir: Path, keys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    child = _crashing_writer(audit_dir, keys, tmp_path, count=100_000, every=50)
    acknowledged = -1
    assert child.stdout is not None
    for line in child.stdout:
        acknowledged = int(line)
        if acknowledged >= 300:
            break
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    child.stdout.close()
    with AuditLog(audit_dir, *keys) as log:
        assert log.size >= acknowledged + 1
    report = verify(audit_dir, keys[0], keys[1].public_key())
    assert report.ok, report.summary()


def test_truncation_below_a_checkpoint_refuses_to_open(audit_dir: Path, keys) -> None:  # type: ignore[no-untyped-def]
    with AuditLog(audit_dir, *keys) as log:
        for i in range(4):
            log.append(_event(i))
    segment = list_segments(audit_dir)[-1][1]
    os.truncate(segment, segment.stat().st_size - 10)
    with pytest.raises(AuditUnavailable, match=r"truncated|no longer matches"):
        AuditLog(audit_dir, *keys)


def test_only_one_writer_per_directory(audit_dir: Path, keys) -> None:  # type: ignore[no-untyped-def]
    with AuditLog(audit_dir, *keys), pytest.raises(AuditUnavailable, match="in use"):
        AuditLog(audit_dir, *keys)


@pytest.fixture
def fsize_limit() -> Iterator[None]:
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, old_handler)


def test_write_failure_fails_closed_then_recovers(audit_dir: Path, keys, fsize_limit: None) -> None:  # type: ignore[no-untyped-def]
    with AuditLog(audit_dir, *keys, checkpoint_every_records=1000) as log:
        for i in range(3):
            log.append(_event(i))
        segment = list_segments(audit_dir)[-1][1]
        size = segment.stat().st_size
        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 50, hard))  # the next record cannot fit
        errors: list[BaseException] = []

        def attempt() -> None:
            try:
                log.append(_event(50))
            except AuditUnavailable as exc:
                errors.append(exc)

        threads = [threading.Thread(target=attempt) for _ in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert len(errors) == 8 and all(e.status == 503 and e.code == "audit_unavailable" for e in errors)
        assert segment.stat().st_size == size  # the partial write was rolled back
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        assert log.append(_event(3)) == 3  # the sink recovers once the disk does
    assert _verify_ok(audit_dir, keys) == 4


def test_fault_injecting_file_fails_every_append(audit_dir: Path, keys) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(audit_dir, *keys)
    try:
        log.append(_event(0))
        full = os.open("/dev/full", os.O_WRONLY)  # every write: ENOSPC
        saved = os.dup(log._segments.fd)
        os.dup2(full, log._segments.fd)
        with pytest.raises(AuditUnavailable):
            log.append(_event(1))
        os.dup2(saved, log._segments.fd)
        os.close(saved)
        os.close(full)
        # /dev/full cannot be truncated back either, so the log stays closed for business (fail closed).
        with pytest.raises(AuditUnavailable, match="unusable"):
            log.append(_event(1))
    finally:
        log.close()
    with AuditLog(audit_dir, *keys) as reopened:
        assert reopened.append(_event(1)) == 1
    assert _verify_ok(audit_dir, keys) == 2


def test_fsync_failure_breaks_the_log_until_reopened(audit_dir: Path, keys) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(audit_dir, *keys, fsync="group")
    try:
        log.append(_event(0))
        read_end, write_end = os.pipe()  # write() succeeds, fdatasync() fails with EINVAL
        saved = os.dup(log._segments.fd)
        os.dup2(write_end, log._segments.fd)
        with pytest.raises(AuditUnavailable, match="fsync"):
            log.append(_event(1))
        os.dup2(saved, log._segments.fd)
        with pytest.raises(AuditUnavailable, match="unusable"):
            log.append(_event(2))
        for fd in (saved, read_end, write_end):
            os.close(fd)
    finally:
        log.close()
    with AuditLog(audit_dir, *keys) as reopened:
        assert reopened.size == 1


def test_record_mapping_adapter(audit_dir: Path, keys) -> None:  # type: ignore[no-untyped-def]
    with AuditLog(audit_dir, *keys) as log:
        seq = log.record(
            {
                "event": "decrypt.request_key",
                "tenant_id": "acme",
                "request_id": "ab12",
                "byte_count": 12,
                "model": "echo",
                "principal": "cred-1",
                "nested": {"a": 1},
                "key_version": None,
            }
        )
        with pytest.raises(AuditUnavailable):
            log.record({"event": "Not An Event"})
    [(got_seq, event)] = list(read_events(audit_dir, keys[0]))
    assert got_seq == seq and event.details == {"model": "echo", "nested": "{'a': 1}"}
    assert event.key_version is None and event.byte_count == 12


def test_bad_configuration_fails_in_constructor(audit_dir: Path, keys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigurationError):
        AuditLog(audit_dir, b"short", keys[1])
    with pytest.raises(ConfigurationError):
        AuditLog(audit_dir, keys[0], ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ConfigurationError):
        AuditLog(audit_dir, *keys, fsync="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        AuditLog(audit_dir, *keys, segment_max_bytes=1000)


def test_event_validation() -> None:
    with pytest.raises(ValueError):
        AuditEvent(event="nodot")
    with pytest.raises(ValueError):
        AuditEvent(event="decrypt.x", byte_count=-1)
    with pytest.raises(ValueError):
        AuditEvent(event="decrypt.x", details={"k": [1, 2]})  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        AuditEvent(event="decrypt.x", tenant_id="t" * 10_000)
    event = AuditEvent(event="admin.tenant_create", tenant_id="t", details={"n": 1, "ok": True, "r": 0.5})
    assert AuditEvent.from_json_bytes(event.to_json_bytes()) == event
    assert json.loads(event.to_json_bytes())["event"] == "admin.tenant_create"


def test_closed_log_refuses(audit_dir: Path, keys) -> None:  # type: ignore[no-untyped-def]
    log = AuditLog(audit_dir, *keys)
    log.close()
    log.close()
    with pytest.raises(AuditUnavailable, match="closed"):
        log.append(_event(0))
    assert all(b == 0 for b in log._audit_key)


def test_open_reads_only_the_last_checkpoint_line(tmp_path: Path, keys) -> None:  # type: ignore[no-untyped-def]
    from cleanroom.audit.checkpoints import read_last_checkpoint

    path = tmp_path / "cps.jsonl"
    assert read_last_checkpoint(path) == (None, None)
    directory = tmp_path / "audit"
    with AuditLog(directory, *keys, checkpoint_every_records=1) as log:
        for i in range(5):
            log.append(_event(i))
    lines = (directory / CHECKPOINTS_FILE).read_bytes().splitlines(keepends=True)
    last, torn = read_last_checkpoint(directory / CHECKPOINTS_FILE)
    assert torn is None and last is not None and last.checkpoint is not None and last.checkpoint.tree_size == 5
    path.write_bytes(b"".join(lines) + lines[0][:30])
    last, torn = read_last_checkpoint(path)
    assert torn == sum(len(line) for line in lines) and last is not None and last.checkpoint is not None
    path.write_bytes(lines[0][:-1])
    assert read_last_checkpoint(path) == (None, 0)
    path.write_bytes(lines[0].replace(b'"v":1', b'"v": 1'))
    last, torn = read_last_checkpoint(path)
    assert last is not None and last.checkpoint is None and "canonical" in (last.error or "")


def test_record_nonces_are_random_and_never_repeat(audit_dir: Path, keys) -> None:  # type: ignore[no-untyped-def]
    """Nonces are drawn from os.urandom in blocks of 64: none is handed out twice, across refills too."""
    with AuditLog(audit_dir, *keys) as log:
        log.append_many([_event(i) for i in range(300)])
    nonces = []
    for _, segment in list_segments(audit_dir):
        data = segment.read_bytes()
        offset = 76
        while offset < len(data):
            body_len = int.from_bytes(data[offset + 4 : offset + 8], "big")
            nonces.append(data[offset + 88 : offset + 100])
            offset += 8 + body_len
    assert len(nonces) == 300 and len(set(nonces)) == 300
    assert verify(audit_dir, keys[0], keys[1].public_key()).ok
