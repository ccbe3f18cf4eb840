"""Group commit: many threads append, one of them writes everything queued in one go.

Each queued `Slot` holds a lock its owner waits on. The thread that finds no batch running leads: it
takes every record queued so far (or one task), writes them, wakes each owner individually, and hands
leadership to the owner of the next queued slot, if any. One thread is woken per slot instead of
every waiter on every flush (a `Condition.notify_all` would wake hundreds of threads to find one
runnable), and no thread leads more than one batch, so under constant load nobody's request waits for
others indefinitely.

Costs: the mutex is taken once to queue a slot (a new leader takes its batch in that same critical
section) and once to finish a batch. Each follower costs one wake-up, and on a small VM that wake-up
(a thread rescheduled, then waiting its turn for the GIL) is the largest single cost of an append:
about 20 us of CPU on the 2-core dev box, more than sealing and hashing the record (docs/audit.md).

Synchronous appends (`Slot.durable`): a leader that is one, once it has written its batch and handed the lead on,
waits for the fdatasync covering the batch itself (`make_durable`, which coalesces with any other) and
only then wakes the owners of durable slots, so a synchronous append costs its owner one wake-up instead
of two (one for the write, one for the fdatasync). Write-ahead slots are woken as soon as the write is
done, before that wait. The next batch is written meanwhile by the successor, as before.

Errors: whatever fails a batch fails every slot in it, and the owner of each slot sees the error; the
writer decides (see `AuditLog._write_batch`) whether later batches may still succeed. A failed
`make_durable` fails the durable slots of the batch only (their records were written, never durable).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from cleanroom.errors import AuditUnavailable

logger = logging.getLogger("cleanroom.audit")


class Slot:
    """One queued unit of work: records to write (one or several, kept together and in order), or a task
    (a checkpoint, the final close) run alone in queue order.

    `wake` is held from creation and released exactly once per wait: when the slot is done, or when its
    owner must lead the next batch (`lead`). `seq` is the sequence number of the slot's first record.
    """

    __slots__ = ("done", "durable", "error", "lead", "plaintexts", "result", "seq", "task", "wake")

    def __init__(
        self, plaintexts: Sequence[bytes] = (), task: Callable[[], object] | None = None, *, durable: bool = False
    ) -> None:
        self.plaintexts = plaintexts
        self.durable = durable  # done only once its records are durable (the writer waits for it)
        self.task = task
        self.seq = -1
        self.result: object = None
        self.done = False
        self.lead = False
        self.error: AuditUnavailable | None = None
        self.wake = threading.Lock()
        self.wake.acquire()


class GroupCommit:
    """`write_records(batch)` runs for record batches, never concurrently with itself or a task.

    Errors: an `AuditUnavailable` from a batch fails every slot in it; any other exception is a bug,
    logged and turned into `AuditUnavailable` so the caller still fails closed.
    """

    def __init__(
        self,
        write_records: Callable[[list[Slot]], None],
        *,
        one_at_a_time: bool,
        on_records_written: Callable[[], None],
        make_durable: Callable[[int], None] | None = None,
    ) -> None:
        self.mutex = threading.Lock()
        self._make_durable = make_durable
        self._write_records = write_records
        self._one_at_a_time = one_at_a_time
        self._on_records_written = on_records_written
        self._queue: list[Slot] = []
        self._busy = False
        self.batches_written = 0  # record batches that succeeded: records / this = mean group size

    def submit(self, slot: Slot, admit: Callable[[], None] | None = None) -> None:
        """Queue `slot` (after `admit()`, which may raise to refuse it) and return once it is done."""
        with self.mutex:
            if admit is not None:
                admit()
            self._queue.append(slot)
            if self._busy:
                batch = None
            else:
                self._busy = True
                batch = self._take_batch()
        if batch is None:
            slot.wake.acquire()
            if slot.done:
                return
            with self.mutex:  # we were handed the lead: our slot is first in the queue
                batch = self._take_batch()
        self._run(batch)

    def _take_batch(self) -> list[Slot]:
        """Caller holds the mutex. A task alone, or the records queued before the next task."""
        queue = self._queue
        if queue[0].task is not None or self._one_at_a_time:
            return [queue.pop(0)]
        count = 1
        while count < len(queue) and queue[count].task is None:
            count += 1
        if count == len(queue):
            self._queue = []
            return queue
        batch = queue[:count]
        del queue[:count]
        return batch

    def _run(self, batch: list[Slot]) -> None:
        error: AuditUnavailable | None = None
        first = batch[0]
        try:
            if first.task is not None:
                first.result = first.task()
            else:
                self._write_records(batch)
        except AuditUnavailable as exc:
            error = exc
        except Exception as exc:  # a bug must still fail closed, never release plaintext unaudited
            logger.exception("audit log: unexpected error while writing")
            error = AuditUnavailable("the audit log could not record the event")
            error.__cause__ = exc
        durable_end = -1
        # Only a leader that itself waits for durability (a synchronous append: batch[0] is its own slot)
        # waits for the others: a write-ahead leader must get back to its request. Otherwise durable
        # slots are woken once written and their owners wait on their tickets (two wake-ups).
        if error is None and first.durable and self._make_durable is not None:
            for slot in batch:
                if slot.durable:
                    durable_end = slot.seq + len(slot.plaintexts)  # slots are in sequence order
        with self.mutex:
            if error is None and first.task is None:
                self.batches_written += 1
                self._on_records_written()
            for slot in batch:
                if durable_end < 0 or not slot.durable:
                    slot.done = True
                    slot.error = error
            successor = self._queue[0] if self._queue else None
            if successor is not None:
                successor.lead = True
            else:
                self._busy = False
        if durable_end < 0:
            for slot in batch:
                slot.wake.release()
            if successor is not None:
                successor.wake.release()
            return
        if successor is not None:
            successor.wake.release()  # the next batch is written while we wait for the fdatasync
        waiting = []
        for slot in batch:
            if slot.durable:
                waiting.append(slot)
            else:
                slot.wake.release()
        durable_error: AuditUnavailable | None = None
        try:
            assert self._make_durable is not None
            self._make_durable(durable_end)
        except AuditUnavailable as exc:
            durable_error = exc
        except Exception as exc:  # a bug must still fail closed
            logger.exception("audit log: unexpected error while making records durable")
            durable_error = AuditUnavailable("the audit log could not record the event")
            durable_error.__cause__ = exc
        for slot in waiting:
            slot.error = durable_error
            slot.done = True
            slot.wake.release()
