"""User models (`package.module:factory`) that misbehave with their input's memory, for
tests/test_memory_redteam.py. Ordinary Python a tenant could upload: nothing here imports cleanroom."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

# What `keeper` kept of its last input, the way a model caches "the previous request" in a global.
KEPT: dict[str, Any] = {}

Fn = Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]]


def keeper() -> Fn:
    """Keeps its input tensor, a slice, a `.numpy()` array and a memoryview of it past the request, and
    answers with the input itself (the output aliases the input's SecureBuffer)."""

    def run(inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = inputs["x"]
        array = x.numpy()
        KEPT.update(tensor=x, slice=x[1:9], array=array, view=memoryview(array), flat=x.view(-1))
        return {"echo": x}

    return run


def dropper() -> Fn:
    """Makes plaintext-derived temporaries (a tensor copy, `bytes`, a `str`) and drops them: memory the
    runtime never hears of."""

    def run(inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = inputs["x"]
        copy = x.clone()
        raw = bytes(copy.numpy())
        text = raw.decode("latin-1")
        length = len(text)
        del copy, raw, text
        return {"n": torch.tensor([length], dtype=torch.int64)}

    return run


def quantizer() -> Fn:
    """Answers with a quantized copy of its input: a layout `zero_()` cannot handle."""

    def run(inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = inputs["x"].to(torch.float32)
        return {"q": torch.quantize_per_tensor(x, 1.0, 0, torch.quint8), "s": x.to_sparse()}

    return run


def slicer() -> Fn:
    """Answers with a strided view of its input (rows of the marker without their separator): the
    runtime must copy it into the answer's SecureBuffer without an intermediate contiguous copy."""

    def run(inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, width = inputs["x"], int(inputs["width"])
        return {"rows": x.view(-1, width + 1)[:, :width]}

    return run
