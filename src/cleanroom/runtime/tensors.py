"""Safetensors read and write over SecureBuffers, without copies into the Python heap.

The `safetensors` library's `load(bytes)`/`save() -> bytes` round-trip through immutable `bytes`, which we
cannot zero (DESIGN §2.3). The format is small and fully specified (8-byte little-endian header length, a
JSON header of dtype/shape/data_offsets, then raw little-endian data), so here tensors are *views* into the
decrypted buffer on the way in, and are copied straight into a SecureBuffer on the way out. Tests check
both directions byte for byte against the `safetensors` library.
"""

from __future__ import annotations

import contextlib
import json
import math
import struct
from collections.abc import Mapping
from typing import Any

import torch

from cleanroom.errors import InvalidPayload
from cleanroom.memory.secure_buffer import SecureAllocator, SecureBuffer

MAX_HEADER_BYTES = 1 << 20
_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_NAMES = {v: k for k, v in _DTYPES.items()}


_NOT_JSON = object()
# A product of dimensions this large overflows torch's int64 stride arithmetic: `torch.empty([0, 2**62,
# 2**62])` raised RuntimeError (and [0, 2**70] TypeError) past the size check, since a zero makes count 0.
MAX_ELEMENTS = 1 << 60
# numpy's own limit (NPY_MAXDIMS). torch has none, and its element-wise ops are quadratic in the number of
# dimensions: one `x * 2` on a tensor of 20 000 dimensions of size 1 took 3.3 s, 50 000 took 18 s, and
# 500 000 (what fits in the 1 MiB header) held a worker for > 120 s.
MAX_DIMENSIONS = 64


class _HeaderRefused(Exception):
    """Raised from inside the JSON decoder; it carries a reason and no text of the header."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):  # the later entry silently replaced the earlier one
        raise _HeaderRefused("has a duplicate name")
    return document


def _no_constants(_name: str) -> Any:
    raise _HeaderRefused("holds NaN or Infinity")


def _parse_header(raw: memoryview) -> dict[str, Any]:
    """The header as a JSON object, decoded as UTF-8 only (`json.loads(bytes)` also took UTF-16, UTF-32 and
    a BOM), without duplicate names or NaN/Infinity. Every reason is ours: nothing of the header is quoted."""
    header: Any = _NOT_JSON
    reason = "is not valid JSON"
    try:
        # ValueError also covers 1e999's int sibling: a 5000-digit integer. RecursionError: deep nesting.
        with contextlib.suppress(ValueError, UnicodeDecodeError, RecursionError):
            header = json.loads(str(raw, "utf-8"), object_pairs_hook=_unique_pairs, parse_constant=_no_constants)
    except _HeaderRefused as refused:
        reason = refused.reason
    # Raised here, outside any handler: the decoder's exception holds the header's text.
    if header is _NOT_JSON:
        raise InvalidPayload(f"safetensors header {reason}")
    if not isinstance(header, dict):
        raise InvalidPayload("safetensors header must be a JSON object")
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise InvalidPayload("safetensors __metadata__ must map names to strings")
    return header


def read_safetensors(view: memoryview) -> dict[str, torch.Tensor]:
    """Tensors that are views into `view` (which must stay alive and is zeroed by its owner).

    As strict as the `safetensors` library: integers only in shapes and offsets, and the entries' byte
    ranges cover the data exactly, without overlaps or holes (two tensors aliasing the same bytes, or bytes
    no tensor owns, were accepted)."""
    if len(view) < 8:
        raise InvalidPayload("safetensors payload is shorter than its 8-byte header length")
    (header_len,) = struct.unpack_from("<Q", view, 0)
    if header_len > MAX_HEADER_BYTES or 8 + header_len > len(view):
        raise InvalidPayload("safetensors header length is out of range")
    header = _parse_header(view[8 : 8 + header_len])
    data = view[8 + header_len :]
    tensors: dict[str, torch.Tensor] = {}
    ranges: list[tuple[int, int]] = []
    position = 0
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        position += 1
        tensor, start, end = _tensor_view(f"safetensors entry #{position}", spec, data)
        tensors[name] = tensor
        ranges.append((start, end))
    covered = 0
    for start, end in sorted(ranges):
        if start != covered:
            raise InvalidPayload("safetensors entries overlap or leave a hole in the data")
        covered = end
    if covered != len(data):
        raise InvalidPayload("safetensors data is longer than its entries")
    return tensors


def _int_list(value: Any) -> list[int] | None:
    """`value` if it is a JSON array of integers (not booleans, floats or strings), else None. `int()` on
    each item accepted 1.7, true and "3", and iterated a string or an object's keys as if it were a list."""
    if isinstance(value, list) and all(type(v) is int for v in value):
        return value
    return None


def _tensor_view(entry: str, spec: Any, data: memoryview) -> tuple[torch.Tensor, int, int]:
    """One entry as a view of `data`, with its byte range. Errors name the entry by its position (`entry`),
    never by its name: the name is plaintext from inside the sealed payload, and error bodies travel
    unsealed."""
    if not isinstance(spec, dict):
        raise InvalidPayload(f"{entry} is malformed or has an unsupported dtype")
    name = spec.get("dtype")
    dtype = _DTYPES.get(name) if isinstance(name, str) else None
    shape, offsets = _int_list(spec.get("shape")), _int_list(spec.get("data_offsets"))
    if dtype is None or shape is None or offsets is None or len(offsets) != 2:
        raise InvalidPayload(f"{entry} is malformed or has an unsupported dtype")
    if len(shape) > MAX_DIMENSIONS:
        raise InvalidPayload(f"{entry} has more than {MAX_DIMENSIONS} dimensions")
    if any(dim < 0 for dim in shape):
        raise InvalidPayload(f"{entry} has a negative dimension")
    if math.prod(dim for dim in shape if dim) > MAX_ELEMENTS:
        raise InvalidPayload(f"{entry} has a shape too large for any tensor")
    count = math.prod(shape)
    start, end = offsets
    itemsize = torch.empty(0, dtype=dtype).element_size()
    if not 0 <= start <= end <= len(data) or end - start != count * itemsize:
        raise InvalidPayload(f"{entry} has offsets that do not match its shape")
    if count == 0:
        return torch.empty(shape, dtype=dtype), start, end
    if start % itemsize:
        raise InvalidPayload(f"{entry} is not aligned to its element size")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        flat = torch.frombuffer(data, dtype=dtype, count=count, offset=start)
    return flat.view(shape), start, end


def write_safetensors(tensors: Mapping[str, torch.Tensor], allocator: SecureAllocator) -> SecureBuffer:
    """Serialize into a fresh SecureBuffer (the caller closes it); layout identical to `safetensors`."""
    specs: dict[str, Any] = {}
    offset = 0
    ordered = sorted(tensors.items(), key=lambda kv: (-_alignment(kv[1]), kv[0]))
    for position, (name, tensor) in enumerate(ordered, start=1):
        if tensor.dtype not in _NAMES:  # by position: a model may name its outputs after its inputs' names
            raise InvalidPayload(
                f"output tensor #{position} (in safetensors order) has unsupported dtype {tensor.dtype}"
            )
        size = tensor.numel() * tensor.element_size()
        specs[name] = {
            "dtype": _NAMES[tensor.dtype],
            "shape": list(tensor.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    header = json.dumps(specs, separators=(",", ":")).encode("utf-8")
    header += b" " * (-len(header) % 8)
    buffer = allocator.allocate(8 + len(header) + offset)
    try:
        view = buffer.view()
        struct.pack_into("<Q", view, 0, len(header))
        view[8 : 8 + len(header)] = header
        base = 8 + len(header)
        for name, tensor in ordered:
            start, end = specs[name]["data_offsets"]
            if end > start:
                # Copied straight into the buffer, whatever the layout: `.contiguous()`/`.cpu()` would make
                # an untracked heap copy of the answer (freed unzeroed where the allocator is not hardened).
                target = torch.frombuffer(view, dtype=tensor.dtype, count=tensor.numel(), offset=base + start)
                target.view(tensor.shape).copy_(tensor.detach())
        del view
        return buffer
    except BaseException:
        buffer.close()
        raise


def _alignment(tensor: torch.Tensor) -> int:
    return int(tensor.element_size())
