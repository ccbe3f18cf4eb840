"""The audit half of invariant 5 for one request: write the decryption record, get a ticket for its durability.

A request's decryption record is written before any plaintext exists and must be durable before anything
leaves. Sinks differ (the audit log's group commit, a synchronous test sink), so this module gives the
session one way to ask: `record_ahead` / `record_many_ahead` return a `DurabilityTicket` whatever the
sink offers. Kept apart from the session because it knows only sinks and tickets, nothing of keys,
buffers or models (`cleanroom.audit.sink` implements the other side).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class AuditSink(Protocol):
    """Where decryption records go; `record` returns only once the record is durable, or raises
    `AuditUnavailable` (the request then fails closed).

    A sink may also offer `record_ahead(event) -> DurabilityTicket`: return once the record is written
    (it survives a kill of the process), with a ticket to wait for durability (`cleanroom.audit`'s
    `AuditLogSink` does). `record_ahead(sink, event)` below falls back to `record` for sinks without it.
    And `record_many_ahead(events) -> DurabilityTicket`: the same for a batch, written as one unit (one
    group commit); `record_many_ahead(sink, events)` below falls back to one `record_ahead` per event.
    """

    def record(self, event: Mapping[str, Any]) -> None: ...


class DurabilityTicket(Protocol):
    """A written audit record: `wait_durable()` returns once it is durable or raises `AuditUnavailable`
    (asking again gives the same answer); `start_sync()` starts making it durable without waiting."""

    def start_sync(self) -> None: ...

    def wait_durable(self) -> None: ...


class AlreadyDurable:
    """The ticket of a record that a synchronous `record` already made durable."""

    durable = True

    def start_sync(self) -> None:
        return None

    def wait_durable(self) -> None:
        return None


ALREADY_DURABLE = AlreadyDurable()


def record_ahead(sink: AuditSink, event: Mapping[str, Any]) -> DurabilityTicket:
    """Write `event` through the sink's `record_ahead` if it has one; else `record` it (durable at once)."""
    write_ahead = getattr(sink, "record_ahead", None)
    if write_ahead is None:
        sink.record(event)
        return ALREADY_DURABLE
    ticket: DurabilityTicket = write_ahead(event)
    return ticket


class AllDurable:
    """One ticket for several: durable once each of them is (a sink without `record_many_ahead`)."""

    def __init__(self, tickets: Sequence[DurabilityTicket]) -> None:
        self.tickets = tuple(tickets)

    @property
    def durable(self) -> bool:
        return all(getattr(ticket, "durable", False) for ticket in self.tickets)

    def start_sync(self) -> None:
        for ticket in self.tickets:
            ticket.start_sync()

    def wait_durable(self) -> None:
        for ticket in self.tickets:
            ticket.wait_durable()


def record_many_ahead(sink: AuditSink, events: Sequence[Mapping[str, Any]]) -> DurabilityTicket:
    """Write a batch's records through the sink's `record_many_ahead` (one unit, one ticket) if it has one;
    else one `record_ahead` per event. Raises (AuditUnavailable) if any of them could not be written."""
    write_many = getattr(sink, "record_many_ahead", None)
    if write_many is not None:
        ticket: DurabilityTicket = write_many(events)
        return ticket
    return AllDurable([record_ahead(sink, event) for event in events])
