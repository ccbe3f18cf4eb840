"""Group commit: many threads append, one of them writes everything queued in one go.

Each queued `Slot` holds a lock its owner waits on. The thread that finds no batch running leads: it
takes every record queued so far (or one task), writes them, wakes each owner individually, and hands
leadership to the owner of the next queued slot, if any. One thread is woken per record instead of
every waiter on every flush, which keeps group commit cheap with hundreds of threads; and no thread
leads more than one batch, so under constant load nobody's request waits for others indefinitely.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from cleanroom.errors import AuditUnavailable

logger = logging.getLogger("cleanroom.audit")


def _held_lock() -> threading.Lock:
    lock = threading.Lock()
    lock.acquire()
    return lock


@dataclass
class Slot:
    """One queued unit of work: a record to write, or a task (a checkpoint, the final close) run in order.

    `wake` is held from creation and released exactly once per wait: when the slot is done, or when its
    owner must lead the next batch (`lead`).
    """

    plaintext: bytes | None = None
    task: Callable[[], object] | None = None
    seq: int = -1
    result: object = None
    done: bool = False
    lead: bool = False
    error: AuditUnavailable | None = None
    wake: threading.Lock = field(default_factory=_held_lock)


class GroupCommit:
    """`write_records(batch)` runs for record batches, never concurrently with itself or a task.

    Errors: an `AuditUnavailable` from a batch fails every slot in it; any other exception is a bug,
    logged and turned into `AuditUnavailable` so the caller still fails closed.
    """

    def __init__(self, write_records: Callable[[list[Slot]], None], *, one_at_a_time: bool,
                 on_records_written: Callable[[], None]) -> None:
        self.mutex = threading.Lock()
        self._write_records = write_records
        self._one_at_a_time = one_at_a_time
        self._on_records_written = on_records_written
        self._queue: list[Slot] = []
        self._busy = False

    def submit(self, slot: Slot, admit: Callable[[], None] | None = None) -> None:
        """Queue `slot` (after `admit()`, which may raise to refuse it) and return once it is done."""
        with self.mutex:
            if admit is not None:
                admit()
            self._queue.append(slot)
            lead = not self._busy
            self._busy = True
        if not lead:
            slot.wake.acquire()
            if slot.done:
                return
        self._lead_once()  # our slot is first in the queue, so this batch completes it

    def _lead_once(self) -> None:
        with self.mutex:
            if self._queue[0].task is not None:
                batch = [self._queue.pop(0)]
            else:
                count = 0
                limit = 1 if self._one_at_a_time else len(self._queue)
                while count < limit and self._queue[count].task is None:
                    count += 1
                batch = self._queue[:count]
                del self._queue[:count]
        error: AuditUnavailable | None = None
        try:
            task = batch[0].task
            if task is not None:
                batch[0].result = task()
            else:
                self._write_records(batch)
        except AuditUnavailable as exc:
            error = exc
        except Exception as exc:  # a bug must still fail closed, never release plaintext unaudited
            logger.exception("audit log: unexpected error while writing")
            error = AuditUnavailable("the audit log could not record the event")
            error.__cause__ = exc
        with self.mutex:
            if error is None and batch[0].task is None:
                self._on_records_written()
            for slot in batch:
                slot.done = True
                slot.error = error
            successor = self._queue[0] if self._queue else None
            if successor is not None:
                successor.lead = True
            else:
                self._busy = False
        for slot in batch:
            slot.wake.release()
        if successor is not None:
            successor.wake.release()
