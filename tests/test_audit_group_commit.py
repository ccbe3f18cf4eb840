"""Group commit failure paths and multi-record appends: what a failed write or fdatasync does to every
append waiting in the same group and behind it, and `append_many`/`record_many` as one unit."""

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


def _event(i: int, tenant: str = "tenant-acme") -> AuditEvent:
    return AuditEvent(
        event="decrypt.request_key",
        tenant_id=tenant,
        key_id="key-1",
        key_version=2,
        purpose="request",
        request_id=f"req-{i:06d}",
        principal="ak_12345",
        source="203.0.113.9",
        byte_count=1000 + i,
        details={"model": "echo"},
    )


def _verify_ok(audit_dir: Path, keys: Keys) -> int:
    report = verify(audit_dir, keys[0], keys[1].public_key())
    assert report.ok, report.summary()
    return report.records


def _wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for appends to queue"
        time.sleep(0.001)


class Appenders:
    """Threads that each append one event and keep what happened: a seq or the error."""

    def __init__(self, log: AuditLog) -> None:
        self.log = log
        self.outcomes: dict[int, int | BaseException] = {}
        self.threads: list[threading.Thread] = []

    def start(self, *indices: int) -> None:
        for i in indices:
            thread = threading.Thread(target=self._append, args=(i,))
            thread.start()
            self.threads.append(thread)

    def _append(self, i: int) -> None:
        try:
            self.outcomes[i] = self.log.append(_event(i))
        except BaseException as exc:
            self.outcomes[i] = exc

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=30)
            assert not thread.is_alive()


def _queued(log: AuditLog) -> int:
    return len(log._commit._queue)


def test_fsync_error_mid_group_fails_every_waiter_and_nothing_after_it(audit_dir: Path, keys: Keys) -> None:
    """fdatasync A succeeds; B's fails; records written during B's (C) must fail too.

    C's own fdatasync could well succeed (Linux reports a writeback error once), but C's records chain
    to B's, whose pages the kernel may have dropped: reporting C durable would be a lie ("fsyncgate").
    """
    log = AuditLog(audit_dir, *keys, fsync="group")
    try:
        log.append(_event(0))
        real_sync = log._segments.sync
        calls: list[int] = []

        def sync() -> None:
            calls.append(len(calls) + 1)
            # Counted as records written, not as waiting threads: a synchronous appender that leads a batch
            # waits for the fdatasync for every append of its batch (commit.py), so how many threads
            # queue for the sync role depends on how the appends were grouped.
            if len(calls) == 1:  # A: hold its fdatasync until group B (4 appends) is written
                _wait_until(lambda: log._durability.written == 6)
                real_sync()
            elif len(calls) == 2:  # B: hold it until group C (3 appends) is written, then fail
                _wait_until(lambda: log._durability.written == 9)
                raise OSError(errno.EIO, "Input/output error")
            else:
                real_sync()

        log._segments.sync = sync  # type: ignore[method-assign]
        appenders = Appenders(log)
        appenders.start(1)  # A: syncs
        _wait_until(lambda: len(calls) == 1)
        appenders.start(2, 3, 4, 5)  # B: written during A's fdatasync, not covered by it
        _wait_until(lambda: len(calls) == 2)
        appenders.start(6, 7, 8)  # C: written during B's fdatasync
        appenders.join()

        assert appenders.outcomes[1] == 1
        for i in range(2, 9):
            outcome = appenders.outcomes[i]
            assert isinstance(outcome, AuditUnavailable), (i, outcome)
            assert outcome.status == 503 and outcome.code == "audit_unavailable"
            assert "fsync" in str(outcome), (i, outcome)
        assert calls == [1, 2]  # nothing was synced after the failure: C never got an fdatasync of its own
        assert log.size == 2  # only what was durable
        with pytest.raises(AuditUnavailable, match="unusable"):
            log.append(_event(9))
    finally:
        log.close()
    with AuditLog(audit_dir, *keys) as reopened:
        # B's and C's bytes did reach the file (write succeeded); after a crash-free reopen they may be
        # found. Never fewer than the two records that were reported durable.
        assert reopened.size >= 2
        reopened.append(_event(10))
    _verify_ok(audit_dir, keys)


def test_write_error_mid_group_fails_the_group_and_rolls_back(audit_dir: Path, keys: Keys) -> None:
    """A failed write() fails every append of its group and leaves the file as before; later groups
    (nothing was synced with the failed bytes) go on."""
    with AuditLog(audit_dir, *keys, fsync="group") as log:
        log.append(_event(0))
        segment = list_segments(audit_dir)[-1][1]
        real_write = log._segments.write
        writes: list[int] = []
        size_after_first: list[int] = []

        def write(data: bytes) -> None:
            writes.append(len(data))
            if len(writes) == 1:  # group A: hold the write stage until group B (5 appends) queues
                _wait_until(lambda: _queued(log) == 5)
                real_write(data)
                size_after_first.append(segment.stat().st_size)
            elif len(writes) == 2:  # group B: half of it reaches the file, then ENOSPC
                real_write(data[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")
            else:
                real_write(data)

        log._segments.write = write  # type: ignore[method-assign]
        appenders = Appenders(log)
        appenders.start(1)
        _wait_until(lambda: len(writes) == 1)
        appenders.start(2, 3, 4, 5, 6)
        appenders.join()
        assert appenders.outcomes[1] == 1
        assert all(isinstance(appenders.outcomes[i], AuditUnavailable) for i in range(2, 7))
        assert segment.stat().st_size == size_after_first[0]  # the torn half-group was cut off
        assert log.size == 2
        assert log.append(_event(7)) == 2  # seq 2: the failed group left no gap in the chain
    assert _verify_ok(audit_dir, keys) == 3


def test_append_many_is_contiguous_and_never_interleaves(audit_dir: Path, keys: Keys) -> None:
    singles: dict[int, list[int]] = {}
    batches: dict[int, list[range]] = {}
    with AuditLog(audit_dir, *keys, fsync="group", checkpoint_every_records=37, segment_max_bytes=96 * 1024) as log:
        barrier = threading.Barrier(8)

        def single(t: int) -> None:
            barrier.wait()
            singles[t] = [log.append(_event(i, tenant=f"s{t}")) for i in range(40)]

        def many(t: int) -> None:
            barrier.wait()
            batches[t] = [log.append_many([_event(i * 5 + j, tenant=f"m{t}") for j in range(5)]) for i in range(8)]

        threads = [threading.Thread(target=single, args=(t,)) for t in range(4)]
        threads += [threading.Thread(target=many, args=(t,)) for t in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert log.size == 4 * 40 + 4 * 8 * 5
    assert len(list_segments(audit_dir)) >= 2  # some batches straddle a segment rotation
    assert _verify_ok(audit_dir, keys) == 320
    events = dict(read_events(audit_dir, keys[0]))
    for t, ranges in batches.items():
        for i, seqs in enumerate(ranges):
            assert len(seqs) == 5
            assert [events[s].request_id for s in seqs] == [f"req-{i * 5 + j:06d}" for j in range(5)]
            assert {events[s].tenant_id for s in seqs} == {f"m{t}"}
    all_seqs = sorted(
        [s for seqs in singles.values() for s in seqs]
        + [s for ranges in batches.values() for seqs in ranges for s in seqs]
    )
    assert all_seqs == list(range(320))


def test_append_many_is_all_or_nothing(audit_dir: Path, keys: Keys) -> None:
    with AuditLog(audit_dir, *keys) as log:
        assert log.append_many([]) == range(0)
        real_write = log._segments.write

        def failing_write(data: bytes) -> None:
            real_write(data[:100])
            raise OSError(errno.ENOSPC, "No space left on device")

        log._segments.write = failing_write  # type: ignore[method-assign]
        with pytest.raises(AuditUnavailable):
            log.append_many([_event(i) for i in range(4)])
        log._segments.write = real_write  # type: ignore[method-assign]
        assert log.size == 0
        assert log.record_many([{"event": "decrypt.request_key", "request_id": f"r{i}"} for i in range(3)]) == range(
            0, 3
        )
        with pytest.raises(AuditUnavailable, match="rejected"):  # a malformed mapping fails them all
            log.record_many([{"event": "decrypt.request_key"}, {"event": "Not An Event"}])
        with pytest.raises(TypeError):
            log.append_many([{"event": "decrypt.request_key"}])  # type: ignore[list-item]
        assert log.size == 3
    assert [e.request_id for _, e in read_events(audit_dir, keys[0])] == ["r0", "r1", "r2"]
    assert _verify_ok(audit_dir, keys) == 3


def test_append_many_with_fsync_always_is_one_sync(audit_dir: Path, keys: Keys) -> None:
    with AuditLog(audit_dir, *keys, fsync="always", checkpoint_every_records=1000) as log:
        log.append(_event(0))
        before = log.group_commits
        assert log.append_many([_event(i) for i in range(1, 6)]) == range(1, 6)
        assert log.group_commits == before + 1
    assert _verify_ok(audit_dir, keys) == 6


def test_grouped_synchronous_appends_return_only_once_durable(audit_dir: Path, keys: Keys) -> None:
    """A synchronous append's owner is woken once, by the leader that waited for the fdatasync covering
    its batch: when it returns, its record is durable; a write-ahead append in the same log is not held."""
    problems: list[str] = []
    with AuditLog(audit_dir, *keys, fsync="group") as log:

        def appender(base: int) -> None:
            for i in range(base, base + 25):
                seq = log.append(_event(i))
                if log._durability.durable <= seq:
                    problems.append(f"append {i} (seq {seq}) returned before it was durable")
            ticket = log.append_ahead(_event(base + 99))
            ticket.wait_durable()
            if not ticket.durable:
                problems.append(f"write-ahead ticket {ticket.seq} not durable after its wait")

        threads = [threading.Thread(target=appender, args=(n * 1000,)) for n in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
            assert not thread.is_alive()
        assert problems == []
        assert log.group_commits < 12 * 26  # appends did share writes
    assert _verify_ok(audit_dir, keys) == 12 * 26
