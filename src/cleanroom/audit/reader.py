"""Reading an audit directory without writing to it: events for `audit show`, leaves for proofs.

Safe to run while a server appends: a record being written shows up as an incomplete last frame and is
simply not yielded yet.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from cleanroom.audit.checkpoints import CHECKPOINTS_FILE, Checkpoint, scan_checkpoint_file
from cleanroom.audit.fileio import read_until_hole
from cleanroom.audit.records import (
    SEGMENT_HEADER_LEN,
    AuditEvent,
    RecordCipher,
    RecordFormatError,
    parse_segment_header,
)
from cleanroom.audit.segments import Frame, list_segments, scan_frames

logger = logging.getLogger("cleanroom.audit")


def latest_checkpoint(directory: Path, public_key: ec.EllipticCurvePublicKey | None = None) -> Checkpoint | None:
    """The newest checkpoint line that parses (and, given a key, whose signature verifies)."""
    for line in reversed(scan_checkpoint_file(Path(directory) / CHECKPOINTS_FILE).lines):
        cp = line.checkpoint
        if cp is not None and (public_key is None or cp.signature_valid(public_key)):
            return cp
    return None


def log_id_of(directory: Path) -> bytes | None:
    try:
        cp = latest_checkpoint(directory)
    except OSError as exc:  # not a regular file: fall back to the segments, `verify` names it
        logger.warning("audit: %s cannot be read (%s); run `cleanroom audit verify`", CHECKPOINTS_FILE, exc.strerror)
        cp = None
    if cp is not None:
        return cp.log_id
    for _, path in list_segments(Path(directory)):
        try:
            with path.open("rb") as fh:
                return parse_segment_header(fh.read(SEGMENT_HEADER_LEN)).log_id
        except (OSError, RecordFormatError):
            continue
    return None


@dataclass(frozen=True)
class LocatedFrame:
    segment: int
    frame: Frame


def iter_frames(directory: Path, cipher: RecordCipher | None = None) -> Iterator[LocatedFrame]:
    """Well-framed records in file order (authenticated when a cipher is given). Damage is skipped."""
    for index, path in list_segments(Path(directory)):
        try:
            # Up to the first hole: a sparse terabyte is neither read nor searched (`read_until_hole`).
            data = read_until_hole(path).data
        except OSError as exc:
            logger.warning("audit: skipping %s: %s (run `cleanroom audit verify`)", path.name, exc.strerror)
            continue
        if cipher is not None:
            try:
                cipher.check_segment_header(data[:SEGMENT_HEADER_LEN])
            except RecordFormatError as exc:
                logger.warning("audit: skipping %s: %s (run `cleanroom audit verify`)", path.name, exc)
                continue
        for item in scan_frames(data, SEGMENT_HEADER_LEN, index, cipher):
            if isinstance(item, Frame):
                yield LocatedFrame(index, item)


def read_events(
    directory: Path,
    audit_key: bytes | bytearray,
    *,
    tenant: str | None = None,
    since: float | None = None,
) -> Iterator[tuple[int, AuditEvent]]:
    """(seq, event) for every readable record, oldest first, optionally filtered by tenant and time."""
    log_id = log_id_of(directory)
    if log_id is None:
        return
    with RecordCipher(audit_key, log_id) as cipher:
        for located in iter_frames(directory, cipher):
            frame = located.frame
            if not frame.authentic or frame.plaintext is None:
                logger.warning(
                    "audit: record at segment %d offset %d does not authenticate; skipped "
                    "(run `cleanroom audit verify`)",
                    located.segment,
                    frame.offset,
                )
                continue
            try:
                event = AuditEvent.from_json_bytes(frame.plaintext)
            except ValueError:
                logger.warning("audit: record %d does not decode; skipped", frame.header.seq)
                continue
            if tenant is not None and event.tenant_id != tenant:
                continue
            if since is not None and event.time < since:
                continue
            yield frame.header.seq, event
