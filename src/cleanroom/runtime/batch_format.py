"""The two plaintext documents of a batch job: the batch (what the client seals into `POST /v1/batches`)
and the results (what `GET /v1/batches/{id}/results` seals back). Both are length-prefixed binary, not
JSON: the server indexes and copies items without parsing them into Python strings it could never zero,
and an item is any bytes a model takes (UTF-8 JSON for `minilm`, raw bytes for `echo`, safetensors for
user models). Every length is checked before it is used. All integers are big-endian.

Batch document::

    offset      size  field
    0           4     magic b"CRB1"
    4           1     version 0x01
    5           1     M = model name length, 1..64
    6           M     model name, ASCII [A-Za-z0-9._-]
    6+M         4     N = number of items, >= 1 (the server's `max_batch_inputs` caps it)
    10+M        4N    length of each item (u32)
    10+M+4N     ...   the items, back to back; their lengths must add up to exactly the rest

Results document::

    0           4     magic b"CRR1"
    4           1     version 0x01
    5           4     N = number of items (the batch's)
    9           5N    per item: status u8 (0 = ok, 1 = failed), length u32
    9+5N        ...   per item, in order: ok -> the model's output bytes; failed -> the error code, ASCII
                      (e.g. `model_rejected_input`; never payload bytes)

This module imports neither torch nor the server, so the client uses it as is.
"""

from __future__ import annotations

import re
import struct
import sys
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from cleanroom.errors import InvalidPayload

BATCH_MAGIC: Final = b"CRB1"
RESULTS_MAGIC: Final = b"CRR1"
VERSION: Final = 1
MAX_MODEL_NAME_BYTES: Final = 64
STATUS_OK: Final = 0
STATUS_FAILED: Final = 1
# fullmatch, never match with ^...$: "$" also matches before a trailing newline ("echo\n" passed).
_MODEL_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_U32 = struct.Struct(">I")
_RESULT_ENTRY = struct.Struct(">BI")
MAX_ITEM_BYTES: Final = 2**32 - 1


# --- the batch document ------------------------------------------------------------------------------
def encode_batch(model: str, items: Sequence[bytes | bytearray | memoryview]) -> bytearray:
    """Client side: the batch document for `items` (each one model payload)."""
    if not _MODEL_RE.fullmatch(model):
        raise ValueError("model name must be 1..64 characters of [A-Za-z0-9._-]")
    if not items:
        raise ValueError("a batch needs at least one item")
    lengths = [memoryview(item).nbytes for item in items]
    if max(lengths) > MAX_ITEM_BYTES:
        raise ValueError("a batch item is larger than 4 GiB")
    name = model.encode("ascii")
    out = bytearray(BATCH_MAGIC + bytes([VERSION, len(name)]) + name + _U32.pack(len(items)))
    table = array("I", lengths)
    if sys.byteorder == "little":
        table.byteswap()  # the document is big-endian
    out += table.tobytes()
    for item in items:
        out += memoryview(item).cast("B")
    return out


@dataclass(frozen=True)
class BatchIndex:
    """Where each item of a batch document lies: `offsets[i]`, `lengths[i]` (bytes into the document)."""

    model: str
    offsets: array  # type: ignore[type-arg]  # array('Q')
    lengths: array  # type: ignore[type-arg]  # array('I')

    @property
    def count(self) -> int:
        return len(self.lengths)


ReadAt = Callable[[int, int], bytes]
"""read_at(offset, size) -> exactly `size` bytes of the document (framing only, never item bytes)."""


def index_batch(read_at: ReadAt, size_bytes: int, *, max_items: int, max_item_bytes: int) -> BatchIndex:
    """Server side: parse the framing of a batch document of `size_bytes` and index its items.

    Only the header and the length table are read (through `read_at`); the items stay where they are (an
    encrypted spill file). Raises InvalidPayload (422) for anything malformed.
    """
    if size_bytes < 10:
        raise InvalidPayload("the batch is shorter than its header (see docs/batches.md)", code="invalid_batch")
    head = read_at(0, 6)
    if head[:4] != BATCH_MAGIC:
        raise InvalidPayload("not a cleanroom batch document (bad magic)", code="invalid_batch")
    if head[4] != VERSION:
        raise InvalidPayload(f"unsupported batch version {head[4]}", code="invalid_batch")
    name_len = head[5]
    if not 1 <= name_len <= MAX_MODEL_NAME_BYTES or size_bytes < 10 + name_len:
        raise InvalidPayload("batch model name length is out of range", code="invalid_batch")
    raw = read_at(6, name_len + 4)
    try:
        model = raw[:name_len].decode("ascii")
    except UnicodeDecodeError:
        raise InvalidPayload("batch model name is not ASCII", code="invalid_batch") from None
    if not _MODEL_RE.fullmatch(model):
        raise InvalidPayload("batch model name has invalid characters", code="invalid_batch")
    (count,) = _U32.unpack(raw[name_len:])
    if not 1 <= count <= max_items:
        raise InvalidPayload(f"a batch holds 1..{max_items} items, this one says {count}", code="invalid_batch")
    table_start = 10 + name_len
    data_start = table_start + 4 * count
    if data_start > size_bytes:
        raise InvalidPayload("batch length table is truncated", code="invalid_batch")
    lengths = array("I")
    lengths.frombytes(read_at(table_start, 4 * count))
    if sys.byteorder == "little":
        lengths.byteswap()
    offsets = array("Q", bytes(8 * count))
    position = data_start
    for i, length in enumerate(lengths):
        if length > max_item_bytes:
            raise InvalidPayload(f"batch item {i} is larger than the {max_item_bytes}-byte limit", code="invalid_batch")
        offsets[i] = position
        position += length
    if position != size_bytes:
        raise InvalidPayload("batch item lengths do not add up to the document size", code="invalid_batch")
    return BatchIndex(model=model, offsets=offsets, lengths=lengths)


# --- the results document ----------------------------------------------------------------------------
def results_header(statuses: array, lengths: array) -> bytes:  # type: ignore[type-arg]
    """Server side: magic, version, count and the status/length table (the bodies follow)."""
    if len(statuses) != len(lengths):
        raise ValueError("one status per length")
    table = b"".join(_RESULT_ENTRY.pack(s, n) for s, n in zip(statuses, lengths, strict=True))
    return RESULTS_MAGIC + bytes([VERSION]) + _U32.pack(len(lengths)) + table


@dataclass(frozen=True)
class ItemResult:
    """One item's answer: `output` (ok) or `error_code` (failed)."""

    ok: bool
    output: bytes = b""
    error_code: str = ""


def decode_results(document: bytes | bytearray | memoryview) -> list[ItemResult]:
    """Client side: split a results document; raises ValueError if it is malformed."""
    view = memoryview(document).cast("B")
    if view.nbytes < 9 or bytes(view[:4]) != RESULTS_MAGIC or view[4] != VERSION:
        raise ValueError("not a cleanroom batch results document")
    (count,) = _U32.unpack(view[5:9])
    position = 9 + _RESULT_ENTRY.size * count
    if position > view.nbytes:
        raise ValueError("results table is truncated")
    results = []
    for i in range(count):
        status, length = _RESULT_ENTRY.unpack(view[9 + i * _RESULT_ENTRY.size : 9 + (i + 1) * _RESULT_ENTRY.size])
        body = bytes(view[position : position + length])
        if len(body) != length or status not in (STATUS_OK, STATUS_FAILED):
            raise ValueError(f"results entry {i} is malformed")
        position += length
        results.append(
            ItemResult(True, output=body)
            if status == STATUS_OK
            else ItemResult(False, error_code=body.decode("ascii", "replace"))
        )
    if position != view.nbytes:
        raise ValueError("results document has trailing bytes")
    return results
