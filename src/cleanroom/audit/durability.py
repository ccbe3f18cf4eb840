"""Write-ahead durability: records are written first, fdatasynced later, and a ticket says when.

`AuditLog.append_ahead` returns once a record is *written* (sequence number assigned, chained, in the
page cache: it survives a kill of the process). Its `AuditTicket.wait_durable()` returns once an
fdatasync that started after the write has succeeded, and raises `AuditUnavailable` if that fdatasync,
or any one before it, failed. A transport writes the record before it decrypts anything and waits on the
ticket before any answer leaves the process (docs/audit.md), so the fsync overlaps the decryption and the
model instead of preceding them.

Coalescing: the *sync role* is held by one thread at a time. The holder notes how many records have been
written (`written`), runs one fdatasync, publishes that count as `durable`, wakes every waiter it covered
and hands the role to the first waiter it did not cover (who syncs everything written meanwhile). So one
fdatasync covers every record written before it started, and a batch whose records were all written
before its first wait takes exactly one.

Never two fdatasyncs on the log at once: Linux reports a writeback error to the first fsync of a file
description that checks after it happened, so two concurrent fsyncs could hand an error that belongs to
one batch's pages to the other, and the batch whose pages were lost would be reported durable. Anything
else that syncs the segment or swaps its descriptor (a rotation, a rollback, a checkpoint, close) holds
the role too (`exclusive()`). After a failed fdatasync nothing that was not already durable ever becomes
durable again: the kernel may have dropped the dirty pages, so a later fsync that "succeeds" proves
nothing (fsyncgate); the log must be reopened.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from cleanroom.errors import AuditUnavailable

logger = logging.getLogger("cleanroom.audit")


def _held_lock() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


class _Waiter:
    """A thread waiting for records up to `end` (None: for the sync role itself, never "covered")."""

    __slots__ = ("end", "lead", "wake")

    def __init__(self, end: int | None) -> None:
        self.end = end
        self.lead = False
        self.wake = _held_lock()


class Durability:
    """Tracks `written` and `durable` record counts for one log and runs its fdatasyncs one at a time.

    `sync_records()` fdatasyncs the segment being written (raises OSError); `on_broken(reason)` marks the
    log unusable. `sync_on_wait=False` ("none" fsync policy): tickets resolve once written.
    """

    def __init__(
        self,
        sync_records: Callable[[], None],
        on_broken: Callable[[str], None],
        *,
        sync_on_wait: bool,
    ) -> None:
        self._sync_records = sync_records
        self._on_broken = on_broken
        self.sync_on_wait = sync_on_wait
        self._mutex = threading.Lock()
        self.written = 0  # records written to the segment files (or synced with an older segment)
        self.durable = 0  # records covered by a successful fdatasync
        self.syncs = 0  # fdatasyncs run for records (not counting rotations and rollbacks)
        self._held = False
        self._queue: list[_Waiter] = []
        self._error: AuditUnavailable | None = None
        self._kick_end = 0
        # The background syncer waits here; `start` puts a record count (None: stop). A SimpleQueue (C)
        # wakes it with one futex call, where an Event's condition variable costs ~2 us more per batch.
        self._kicks: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._kicker: threading.Thread | None = None
        self._stopping = False

    # ------------------------------------------------------------------ state, set by the writer
    def reset(self, written: int, durable: int) -> None:
        with self._mutex:
            self.written, self.durable = written, min(durable, written)

    def wrote(self, end: int) -> None:
        """The writer has written every record below `end` (in the current segment or a synced older one)."""
        with self._mutex:
            if end > self.written:
                self.written = end

    @property
    def error(self) -> AuditUnavailable | None:
        return self._error

    # ------------------------------------------------------------------ waiting
    def is_durable(self, end: int) -> bool:
        return self.durable >= end or (not self.sync_on_wait and self._error is None)

    def wait(self, end: int) -> None:
        """Return once records below `end` are durable; AuditUnavailable if they never will be."""
        if not self.sync_on_wait:
            if self._error is not None and self.durable < end:
                raise self._error
            return
        self.sync_through(end)

    def sync_through(self, end: int) -> None:
        """Like `wait`, whatever the policy (checkpoints sync what they cover even with fsync "none")."""
        with self._mutex:
            if self.durable >= end:
                return
            if self._error is not None:
                raise self._error
            waiter = self._enqueue(end)
        if waiter is not None:
            waiter.wake.acquire()
            if not waiter.lead:  # covered, or failed, by someone else's fdatasync
                if self.durable >= end:
                    return
                assert self._error is not None
                raise self._error
        self._sync_as_holder()  # we hold the role; raises the error if the fdatasync fails
        if self.durable < end:  # only when the log was broken or closed while we were queued
            assert self._error is not None
            raise self._error

    def start(self, end: int) -> None:
        """Start an fdatasync covering records below `end` in the background, unless one already covers
        them or is asked for; never blocks. A later `wait` finds it done, or in flight and joins it."""
        if not self.sync_on_wait:
            return
        with self._mutex:
            if self.durable >= end or self._kick_end >= end or self._error is not None or self._stopping:
                return
            self._kick_end = end
            if self._kicker is None:
                self._kicker = threading.Thread(target=self._kick_loop, name="cleanroom-audit-sync", daemon=True)
                self._kicker.start()
        self._kicks.put(end)

    def _kick_loop(self) -> None:
        while True:
            if self._kicks.get() is None or self._stopping:
                return
            try:
                self.wait(self._kick_end)
            except AuditUnavailable:
                pass  # the waiters see the same error
            except Exception:  # never let the thread die silently: waiters then sync themselves
                logger.exception("audit log: background fdatasync failed unexpectedly")

    # ------------------------------------------------------------------ the sync role
    def _enqueue(self, end: int | None) -> _Waiter | None:
        """Caller holds the mutex. None: the role is ours now; else a waiter released later."""
        if not self._held:
            self._held = True
            return None
        waiter = _Waiter(end)
        self._queue.append(waiter)
        return waiter

    def _sync_as_holder(self) -> None:
        """Caller holds the role: one fdatasync for every record written so far, then hand the role on."""
        published: int | None = None
        error: AuditUnavailable | None = None
        try:
            with self._mutex:
                target, failed = self.written, self._error
            if failed is None and target > self.durable:
                try:
                    self._sync_records()
                except OSError as exc:
                    error = AuditUnavailable(f"audit log fsync failed: {exc.strerror or exc}")
                    self._on_broken(f"fsync failed ({exc.strerror or exc})")
                else:
                    self.syncs += 1
                    published = target
        finally:
            self._release(published, error)
        if error is not None:
            raise error

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the sync role for a block (no fdatasync runs meanwhile): for whatever syncs the segment or
        changes its descriptor. Report what the block made durable with `covered`, a failure with `fail`."""
        with self._mutex:
            waiter = self._enqueue(None)
        if waiter is not None:
            waiter.wake.acquire()
        try:
            yield
        finally:
            self._release(None, None)

    def covered(self, end: int) -> None:
        """Caller holds the role and has just synced every record below `end`."""
        with self._mutex:
            if self._error is None and end > self.durable:
                self.durable = end

    def truncated(self, end: int) -> None:
        """Caller holds the role: the segment was cut back to the records below `end` (a failed batch
        rolled back). A rotation inside that batch may already have reported some of its records synced;
        they no longer exist, and the next records to take their sequence numbers are not durable."""
        with self._mutex:
            self.durable = min(self.durable, end)
            self.written = min(self.written, end)

    def fail(self, error: AuditUnavailable) -> None:
        """Caller holds the role: a sync failed; nothing not yet durable will ever be."""
        with self._mutex:
            if self._error is None:
                self._error = error

    def _release(self, published: int | None, error: AuditUnavailable | None) -> None:
        wake: list[_Waiter] = []
        with self._mutex:
            if error is not None and self._error is None:
                self._error = error
            if published is not None and self._error is None and published > self.durable:
                self.durable = published
            keep: list[_Waiter] = []
            for waiter in self._queue:
                # Exclusive holders (end None) always get their turn, even on a broken log (close).
                if waiter.end is not None and (self.durable >= waiter.end or self._error is not None):
                    wake.append(waiter)
                else:
                    keep.append(waiter)
            if keep:
                successor = keep.pop(0)
                successor.lead = True
                wake.append(successor)
            else:
                self._held = False
            self._queue = keep
        for waiter in wake:
            waiter.wake.release()

    def close(self, release_files: Callable[[], None]) -> None:
        """Stop the background syncer, then release the files while holding the role; afterwards every
        wait for a record not yet durable fails."""
        with self._mutex:
            self._stopping = True
            kicker = self._kicker
        self._kicks.put(None)
        if kicker is not None and kicker is not threading.current_thread():
            kicker.join()
        with self.exclusive():
            release_files()
            self.fail(AuditUnavailable("the audit log is closed"))


class AuditTicket:
    """The receipt of a written record (or batch): `seq` is its (first) sequence number.

    `wait_durable()` returns once an fdatasync covering it has succeeded and raises `AuditUnavailable`
    (the same error a synchronous `append` raises) if one failed; calling it again gives the same answer
    without syncing again. `start_sync()` asks for that fdatasync now, in the background, so that it runs
    while the caller decrypts and computes.
    """

    __slots__ = ("_durability", "end", "seq")

    def __init__(self, durability: Durability, seq: int, end: int) -> None:
        self._durability = durability
        self.seq = seq
        self.end = end

    @property
    def durable(self) -> bool:
        return self._durability.is_durable(self.end)

    def start_sync(self) -> None:
        self._durability.start(self.end)

    def wait_durable(self) -> None:
        self._durability.wait(self.end)
