"""Step 3 of a batch job's life (`batch_jobs`): stream its sealed results, and shred it before the tag.

The results leave as one sealed response: header, the results table, the results spill's plaintext
re-encrypted piece by piece through one `RESULT_PIECE_BYTES` SecureBuffer (never the whole document in
memory), then the 16-byte tag — and the job is shredded just before the tag goes out. Kept apart from
the store because this is where a job's plaintext passes through memory after it ran, and the rules for
an interrupted fetch (the job stays, the bytes are the same next time) live in one place.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from cleanroom.crypto.aead import TAG_BYTES
from cleanroom.crypto.deferred import RESPONSE_HEADER_BYTES, StreamingSealer
from cleanroom.errors import BatchGone, CleanroomError, SpillError
from cleanroom.memory.secure_buffer import SecureAllocator
from cleanroom.runtime.batch_chunks import SHREDDED, BatchJob, JobState
from cleanroom.runtime.batch_format import results_header

log = logging.getLogger("cleanroom.batch")

RESULT_PIECE_BYTES = 1 << 20


def begin_results(job: BatchJob) -> tuple[StreamingSealer, bytes, int]:
    """The sealer, the results table and the sealed response's size, for a job that succeeded (else 410)."""
    with job.lock:
        if job.state is not JobState.SUCCEEDED or job.response_key is None or job.results is None:
            raise gone(job)
        table = results_header(job.statuses, job.lengths)
        size = RESPONSE_HEADER_BYTES + len(table) + job.results.size_bytes + TAG_BYTES
        return job.response_key.seal_stream(), table, size


async def stream_results(
    job: BatchJob,
    sealer: StreamingSealer,
    table: bytes,
    *,
    allocator: SecureAllocator,
    clock: Callable[[], float],
) -> AsyncIterator[bytes]:
    """The sealed response, piece by piece: header, the results document's ciphertext, the tag. The job
    is shredded (retrieved) just before the tag is handed to the transport."""
    completed = False
    scratch = None
    try:
        yield sealer.header
        out = bytearray(len(table) + 15)
        yield bytes(out[: sealer.update_into(memoryview(table), out)])
        scratch = allocator.allocate(RESULT_PIECE_BYTES)
        position = 0
        while piece := await asyncio.to_thread(encrypt_piece, job, sealer, scratch.view(), position, clock):
            position += len(piece)
            yield piece
        tag = sealer.finish()
        completed = True
        # Shred before the last 16 bytes go out, so a client holding the whole response knows the
        # server's copy is gone (a connection lost in those 16 bytes loses the results: fetch is once).
        await asyncio.to_thread(job.shred, JobState.RETRIEVED, clock())
        log.info("batch %s retrieved and shredded", job.batch_id)
        yield tag
    finally:
        if scratch is not None:
            scratch.close()
        if not completed:
            sealer.abandon()  # an interrupted fetch: the job stays; a new fetch gives the same bytes


def encrypt_piece(
    job: BatchJob, sealer: StreamingSealer, scratch: memoryview, position: int, clock: Callable[[], float]
) -> bytes:
    """The next piece of ciphertext (b"" at the end); the plaintext passes through `scratch` only."""
    with job.lock:
        if job.results is None:
            raise gone(job)
        size = min(scratch.nbytes, job.results.size_bytes - position)
        if size <= 0:
            return b""
        try:
            job.results.seek(position)
            if job.results.readinto(scratch[:size]) != size:
                raise SpillError("the results spill ended early")
        except SpillError as exc:  # the spill discarded itself; the job cannot be delivered
            job._shred_locked(JobState.FAILED, clock(), exc.code)
            raise
        out = bytearray(size + 15)
        count = sealer.update_into(scratch[:size], out)
        return bytes(out[:count])


def gone(job: BatchJob) -> CleanroomError:
    """The 410 for a job whose data is shredded (or being shredded now), saying how it ended."""
    reasons = {
        JobState.EXPIRED: "its time to live ran out",
        JobState.CANCELLED: "it was cancelled",
        JobState.RETRIEVED: "its results were already fetched",
        JobState.FAILED: f"it failed ({job.error_code or 'unknown'})",
    }
    state = job.state if job.state in SHREDDED else (job.ending or job.state)  # being shredded: say how
    return BatchGone(f"the batch's data is shredded: {reasons.get(state, state.value)}", code=f"batch_{state.value}")
