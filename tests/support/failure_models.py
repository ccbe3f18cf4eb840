"""Misbehaving user models for tests/test_remanence_failure_paths.py, loaded by the server as
`--model NAME=support.failure_models:FACTORY`.

Each one takes safetensors with a uint8 tensor `input` (the request's plaintext, with a marker in it) and
does one bad thing with it. `gate` holds a request inside the model until the test releases it by name.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

# The hoarding model's own copies and the views it was handed (module-level on purpose: the bad habit).
HOARD: list[torch.Tensor] = []
HANDED: list[torch.Tensor] = []


def _signals() -> Path:
    return Path(os.environ["CLEANROOM_TEST_SIGNAL_DIR"])


def _text(inputs: Mapping[str, torch.Tensor]) -> str:
    return bytes(inputs["input"].numpy()).decode("utf-8", "replace")


def gate_factory():  # type: ignore[no-untyped-def]
    """Echo `input`; if a uint8 tensor `gate` names a gate, touch `holding-NAME` and wait for `release-NAME`."""

    def run(inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if "gate" in inputs:
            name = bytes(inputs["gate"].numpy()).decode("ascii")
            (_signals() / f"holding-{name}").touch()
            deadline = time.monotonic() + 30
            while not (_signals() / f"release-{name}").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        return {"output": inputs["input"].clone()}

    return run


def raise_chained_factory():  # type: ignore[no-untyped-def]
    """Copies the input into a `str`, fails to parse it twice (a retry loop that keeps its last error:
    the frame and the JSONDecodeError, whose `doc` is the whole text, form a reference cycle), then raises
    from inside a handler (the new error's `__context__` is another JSONDecodeError)."""

    def run(inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        text = _text(inputs)
        last_error: Exception | None = None
        for _attempt in range(2):
            try:
                json.loads(text)
            except ValueError as error:
                last_error = error
        try:
            json.loads(text)
        except ValueError:
            raise RuntimeError(f"could not parse the input ({type(last_error).__name__})")  # noqa: B904
        return {"output": inputs["input"].clone()}

    return run


def raise_message_factory():  # type: ignore[no-untyped-def]
    """Raises mid-forward with the plaintext in its message and a tensor computed from it in its frame."""

    def run(inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        hidden = inputs["input"].clone()  # an activation made from the input, never tracked
        text = _text(inputs)
        raise ValueError(f"bad input: {text} ({hidden.numel()} bytes)")

    return run


def wrong_type_factory():  # type: ignore[no-untyped-def]
    """Returns something that is not a mapping of tensors; which one is chosen by a uint8 tensor `kind`."""

    def run(inputs: Mapping[str, torch.Tensor]) -> Any:
        kind = bytes(inputs["kind"].numpy()).decode("ascii")
        copy = inputs["input"].clone()
        if kind == "tensor":
            return copy  # a bare tensor
        if kind == "str":
            return {"output": _text(inputs)}
        if kind == "list":
            return [copy, copy * 1]
        if kind == "mixed":
            return {"output": copy, "text": _text(inputs).encode()}
        if kind == "noncontiguous":  # a valid answer that needs a copy to be written
            return {"output": copy.view(-1, 2).t()}
        return None

    return run


def hoard_factory():  # type: ignore[no-untyped-def]
    """Keeps its own copy of every input in a global, and the very view it was handed. With a tensor `check`:
    answers how many non-zero bytes the views it was handed still hold (the runtime must have zeroed them)."""

    def run(inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if "check" in inputs:
            nonzero = sum(int(t.count_nonzero()) for t in HANDED)
            return {"nonzero": torch.tensor([nonzero, len(HANDED)], dtype=torch.int64)}
        HOARD.append(inputs["input"].clone())
        HANDED.append(inputs["input"])
        return {"output": torch.zeros(4, dtype=torch.uint8)}

    return run


def probe_factory():  # type: ignore[no-untyped-def]
    """What the next tenant can read: `torch.empty` of many sizes (all kept alive while searching, so each
    is a different block), searched for the needle given XOR 0x5A in `needle_x`. Returns the hits per size."""

    def run(inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        needle = torch.bitwise_xor(inputs["needle_x"], 0x5A)
        sizes = [int(s) for s in inputs["sizes"].tolist()]
        blocks = [torch.empty(size, dtype=torch.uint8) for size in sizes for _ in range(4)]
        hits = torch.zeros(len(sizes), dtype=torch.int64)
        width = needle.numel()
        for index, block in enumerate(blocks):
            if block.numel() < width:
                continue
            # Unfold into every window of the needle's width, without a `bytes` copy of the block.
            windows = block.unfold(0, width, 1)
            first = (windows[:, 0] == needle[0]).nonzero().flatten()
            for start in first.tolist():
                if torch.equal(block[start : start + width], needle):
                    hits[index // 4] += 1
        for block in blocks:
            block.zero_()
        needle.zero_()
        return {"hits": hits}

    return run
