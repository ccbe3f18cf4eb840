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


def read_safetensors(view: memoryview) -> dict[str, torch.Tensor]:
    """Tensors that are views into `view` (which must stay alive and is zeroed by its owner)."""
    if len(view) < 8:
        raise InvalidPayload("safetensors payload is shorter than its 8-byte header length")
    (header_len,) = struct.unpack_from("<Q", view, 0)
    if header_len > MAX_HEADER_BYTES or 8 + header_len > len(view):
        raise InvalidPayload("safetensors header length is out of range")
    header: Any = _NOT_JSON
    # Raised below, outside any handler: the decoder's exception holds the header's text. RecursionError:
    # deeply nested JSON.
    with contextlib.suppress(ValueError, UnicodeDecodeError, RecursionError):
        header = json.loads(bytes(view[8 : 8 + header_len]))
    if header is _NOT_JSON:
        raise InvalidPayload("safetensors header is not valid JSON")
    if not isinstance(header, dict):
        raise InvalidPayload("safetensors header must be a JSON object")
    data = view[8 + header_len :]
    tensors: dict[str, torch.Tensor] = {}
    position = 0
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        position += 1
        tensors[name] = _tensor_view(f"safetensors entry #{position}", spec, data)
    return tensors


def _tensor_view(entry: str, spec: Any, data: memoryview) -> torch.Tensor:
    """One entry as a view of `data`. Errors name the entry by its position (`entry`), never by its name:
    the name is plaintext from inside the sealed payload, and error bodies travel unsealed."""
    try:
        dtype = _DTYPES[spec["dtype"]]
        shape = [int(d) for d in spec["shape"]]
        start, end = (int(o) for o in spec["data_offsets"])
    except (KeyError, TypeError, ValueError):
        raise InvalidPayload(f"{entry} is malformed or has an unsupported dtype") from None
    count = 1
    for dim in shape:
        if dim < 0:
            raise InvalidPayload(f"{entry} has a negative dimension")
        count *= dim
    itemsize = torch.empty(0, dtype=dtype).element_size()
    if not 0 <= start <= end <= len(data) or end - start != count * itemsize:
        raise InvalidPayload(f"{entry} has offsets that do not match its shape")
    if count == 0:
        return torch.empty(shape, dtype=dtype)
    if start % itemsize:
        raise InvalidPayload(f"{entry} is not aligned to its element size")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        flat = torch.frombuffer(data, dtype=dtype, count=count, offset=start)
    return flat.view(shape)


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
