"""Write-ahead appends (`AuditLog.append_ahead` / `AuditTicket`): written first, durable on `wait_durable`,
one fdatasync for everything written before it, never two fdatasyncs at once, failures never forgotten."""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.audit.log import AuditLog
from cleanroom.audit.reader import read_events
from cleanroom.audit.records import AuditEvent
from cleanroom.audit.segments import list_segments
from cleanroom.audit.verify import verify
from cleanroom.errors import AuditUnavailable

Keys = tuple[bytearray, ec.EllipticCurvePrivateKey]


@pytest.fixture
def keys() -> Keys:
    return bytearray(os.urandom(32)), ec.generate_private_key(ec.SECP384R1())


@pytest.fixture
def audit_dir(tmp_path: Path) -> Path:
    return tmp_path / "audit"


def _event(i: int, pad: int = 0) -> AuditEvent:
    details = {"pad": "x" * pad} if pad else {}
    return AuditEvent(
        event="decrypt.request_key", tenant_id="tenant-acme", request_id=f"req-{i:06d}", byte_count=i, details=details
    )


def _wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def _count_syncs(log: AuditLog) -> list[int]:
    calls: list[int] = []
    real_sync = log._segments.sync

    def sync() -> None:
        calls.append(1)
        real_sync()

    log._segments.sync = sync  # type: ignore[method-assign]
    return calls


def test_append_ahead_is_written_before_it_is_synced(audit_dir: Path, keys: Keys) -> None:
    with AuditLog(audit_dir, *keys, fsync="group") as log:
        syncs = _count_syncs(log)
        ticket = log.append_ahead(_event(0))
        assert ticket.seq == 0 and not ticket.durable and syncs == []
        # In the file (the page cache) already: a kill of the process now would keep it.
        assert [e.request_id for _, e in read_events(audit_dir, keys[0])] == ["req-000000"]
        ticket.wait_durable()
        assert ticket.durable and syncs == [1] and log.size == 1
        ticket.wait_durable()  # already durable: no second fdatasync
        assert syncs == [1]
    assert verify(audit_dir, keys[0], keys[1].public_key()).ok


def test_one_fdatasync_covers_every_record_written_before_it(audit_dir: Path, keys: Keys) -> None:
    with AuditLog(audit_dir, *keys, fsync="group") as log:
        syncs = _count_syncs(log)
        tickets = [log.append_ahead(_event(i)) for i in range(16)]
        assert [t.seq for t in tickets] == list(range(16))
        before = log.fdatasyncs
        for ticket in reversed(tickets):
            ticket.wait_durable()
        assert syncs == [1] and log.fdatasyncs == before + 1
        assert all(t.durable for t in tickets)


def test_start_sync_runs_in_the_background(audit_dir: Path, keys: Keys) -> None:
    with AuditLog(audit_dir, *keys, fsync="group") as log:
        syncs = _count_syncs(log)
        tickets = [log.append_ahead(_event(i)) for i in range(4)]
        tickets[-1].start_sync()
        _wait_until(lambda: all(t.durable for t in tickets))
        assert syncs == [1]
        tickets[0].wait_durable()
        assert syncs == [1]


def test_failed_fdatasync_fails_every_ticket_it_should_have_covered(audit_dir: Path, keys: Keys) -> None:
    log = AuditLog(audit_dir, *keys, fsync="group")
    try:
        durable = log.append_ahead(_event(0))
        durable.wait_durable()
        pending = [log.append_ahead(_event(i)) for i in (1, 2, 3)]

        def failing_sync() -> None:
            raise OSError(errno.EIO, "Input/output error")

        log._segments.sync = failing_sync  # type: ignore[method-assign]
        for ticket in pending:
            with pytest.raises(AuditUnavailable, match="fsync failed") as caught:
                ticket.wait_durable()
            assert caught.value.status == 503 and caught.value.code == "audit_unavailable"
        with pytest.raises(AuditUnavailable, match="fsync failed"):
            pending[0].wait_durable()  # asked again: the same answer, never a late "success"
        durable.wait_durable()  # what was durable before stays durable
        assert log.size == 1
        with pytest.raises(AuditUnavailable, match="unusable"):
            log.append_ahead(_event(4))
    finally:
        log.close()


def test_a_later_successful_fsync_never_vouches_for_records_after_a_failed_one(audit_dir: Path, keys: Keys) -> None:
    """Written before the failure, waited on after the fsync works again: still refused (fsyncgate)."""
    log = AuditLog(audit_dir, *keys, fsync="group")
    try:
        first = log.append_ahead(_event(0))
        second = log.append_ahead(_event(1))
        real_sync = log._segments.sync
        failures = [OSError(errno.EIO, "Input/output error")]

        def sync_once_failing() -> None:
            if failures:
                raise failures.pop()
            real_sync()

        log._segments.sync = sync_once_failing  # type: ignore[method-assign]
        with pytest.raises(AuditUnavailable):
            first.wait_durable()
        with pytest.raises(AuditUnavailable):
            second.wait_durable()
        assert log.size == 0
    finally:
        log.close()


def test_never_two_fdatasyncs_at_once(audit_dir: Path, keys: Keys) -> None:
    """Many threads, write-ahead and synchronous appends, background syncs, rotations and checkpoints: the
    segment is never synced (or swapped) by two threads at the same time."""
    log = AuditLog(audit_dir, *keys, fsync="group", checkpoint_every_records=25, segment_max_bytes=96 * 1024)
    active = [0]
    peak = [0]
    guard = threading.Lock()
    real_sync, real_open = log._segments.sync, log._segments.open

    def tracked(inner: Callable[..., None]) -> Callable[..., None]:
        def run(*args: object) -> None:
            with guard:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            try:
                time.sleep(0.0005)
                inner(*args)
            finally:
                with guard:
                    active[0] -= 1

        return run

    log._segments.sync = tracked(real_sync)  # type: ignore[method-assign]
    log._segments.open = tracked(real_open)  # type: ignore[method-assign]
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            for i in range(30):
                if i % 3 == 0:
                    log.append(_event(t * 100 + i, pad=500))
                else:
                    ticket = log.append_ahead(_event(t * 100 + i, pad=500))
                    if i % 2:
                        ticket.start_sync()
                    ticket.wait_durable()
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors
        assert log.size == 240
        assert log.fdatasyncs < 240  # coalesced
    finally:
        log.close()
    assert peak[0] == 1
    assert len(list_segments(audit_dir)) >= 2  # rotations happened meanwhile
    assert log.last_checkpoint is not None and log.last_checkpoint.index >= 5
    report = verify(audit_dir, keys[0], keys[1].public_key())
    assert report.ok and report.records == 240


def test_close_makes_written_records_durable(audit_dir: Path, keys: Keys) -> None:
    log = AuditLog(audit_dir, *keys, fsync="group")
    ticket = log.append_ahead(_event(0))
    log.close()
    ticket.wait_durable()  # the final checkpoint synced it
    with AuditLog(audit_dir, *keys) as reopened:
        assert reopened.size == 1


def test_fsync_policies(audit_dir: Path, keys: Keys, tmp_path: Path) -> None:
    with AuditLog(audit_dir, *keys, fsync="always") as log:
        ticket = log.append_ahead(_event(0))
        assert ticket.durable  # "always": synced before the write stage moved on
    with AuditLog(tmp_path / "none", *keys, fsync="none") as log:
        syncs = _count_syncs(log)
        ticket = log.append_ahead(_event(0))
        ticket.wait_durable()  # "none" promises only the write
        assert ticket.durable and syncs == []


# ---------------------------------------------------------------------- a whole batch at once


def _fields(i: int) -> dict[str, object]:
    return {"event": "decrypt.request_key", "tenant_id": "tenant-acme", "request_id": f"req-{i:06d}", "model": "m"}


def test_record_many_ahead_writes_one_batch_with_one_ticket(audit_dir: Path, keys: Keys) -> None:
    with AuditLog(audit_dir, *keys, fsync="group") as log:
        log.append(_event(99))
        syncs = _count_syncs(log)
        commits = log.group_commits
        ticket = log.record_many_ahead([_fields(i) for i in range(8)])
        assert (ticket.seq, ticket.end) == (1, 9)
        assert log.group_commits == commits + 1 and syncs == [] and not ticket.durable
        # Written (in the page cache) before any fdatasync: all eight, in order.
        assert [e.request_id for _, e in read_events(audit_dir, keys[0])][1:] == [f"req-{i:06d}" for i in range(8)]
        ticket.start_sync()
        ticket.wait_durable()
        assert ticket.durable and log.size == 9 and len(syncs) == 1
        second = log.append_many_ahead([_event(i) for i in range(10, 13)])
        assert (second.seq, second.end) == (9, 12)
        second.wait_durable()
        empty = log.append_many_ahead([])
        assert empty.end - empty.seq == 0 and empty.durable
        empty.wait_durable()
    assert verify(audit_dir, keys[0], keys[1].public_key()).records == 12


def test_record_many_ahead_rejects_the_whole_batch_before_writing(audit_dir: Path, keys: Keys) -> None:
    with AuditLog(audit_dir, *keys, fsync="group") as log:
        with pytest.raises(AuditUnavailable, match="rejected"):
            log.record_many_ahead([_fields(0), {"event": "Not An Event"}, _fields(2)])
        with pytest.raises(TypeError):
            log.append_many_ahead([_fields(0)])  # type: ignore[list-item]
        assert log.group_commits == 0
        log.record_many_ahead([_fields(3)]).wait_durable()
    assert [e.request_id for _, e in read_events(audit_dir, keys[0])] == ["req-000003"]


def test_failed_write_fails_the_whole_batch_and_the_log_goes_on(audit_dir: Path, keys: Keys) -> None:
    with AuditLog(audit_dir, *keys, fsync="group") as log:
        log.append(_event(0))
        real_write = log._segments.write

        def torn_write(data: bytes) -> None:
            real_write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        log._segments.write = torn_write  # type: ignore[method-assign]
        with pytest.raises(AuditUnavailable, match="write failed") as caught:
            log.record_many_ahead([_fields(i) for i in range(8)])
        assert caught.value.status == 503
        log._segments.write = real_write  # type: ignore[method-assign]
        assert log.size == 1
        ticket = log.record_many_ahead([_fields(i) for i in range(8, 10)])
        assert ticket.seq == 1  # no gap: the torn batch was cut off and the chain rolled back
        ticket.wait_durable()
    assert verify(audit_dir, keys[0], keys[1].public_key()).records == 3


def test_failed_fdatasync_fails_the_batch_ticket_for_good(audit_dir: Path, keys: Keys) -> None:
    log = AuditLog(audit_dir, *keys, fsync="group")
    try:
        ticket = log.record_many_ahead([_fields(i) for i in range(8)])

        def failing_sync() -> None:
            raise OSError(errno.EIO, "Input/output error")

        log._segments.sync = failing_sync  # type: ignore[method-assign]
        ticket.start_sync()
        for _ in range(2):  # asked again: the same answer
            with pytest.raises(AuditUnavailable, match="fsync failed"):
                ticket.wait_durable()
        assert not ticket.durable and log.size == 0
        with pytest.raises(AuditUnavailable, match="unusable"):
            log.record_many_ahead([_fields(9)])
    finally:
        log.close()


def test_batches_from_two_threads_never_interleave(audit_dir: Path, keys: Keys) -> None:
    tickets: dict[int, list[tuple[int, int]]] = {0: [], 1: []}

    def device(t: int) -> None:
        for b in range(20):
            ticket = log.record_many_ahead([{**_fields(b * 8 + j), "tenant_id": f"dev{t}"} for j in range(8)])
            ticket.start_sync()
            ticket.wait_durable()
            tickets[t].append((ticket.seq, ticket.end))

    with AuditLog(audit_dir, *keys, fsync="group", checkpoint_every_records=50, segment_max_bytes=96 * 1024) as log:
        threads = [threading.Thread(target=device, args=(t,)) for t in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    events = dict(read_events(audit_dir, keys[0]))
    for t, ranges in tickets.items():
        for b, (seq, end) in enumerate(ranges):
            assert end - seq == 8
            assert [events[s].request_id for s in range(seq, end)] == [f"req-{b * 8 + j:06d}" for j in range(8)]
            assert {events[s].tenant_id for s in range(seq, end)} == {f"dev{t}"}
    assert verify(audit_dir, keys[0], keys[1].public_key()).records == 320
