"""User models for tests, loaded by the server as `--model NAME=support.hold_model:FACTORY`."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

import torch


def hold_factory():  # type: ignore[no-untyped-def]
    """Echo `input` back, but first announce itself and wait for a release file (remanence control)."""
    signal_dir = Path(os.environ["CLEANROOM_TEST_SIGNAL_DIR"])

    def run(inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        (signal_dir / "holding").touch()
        deadline = time.monotonic() + 30
        while not (signal_dir / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return {"output": inputs["input"].clone()}

    return run


def double_factory():  # type: ignore[no-untyped-def]
    def run(inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: tensor * 2 for name, tensor in inputs.items()}

    return run


def picky_factory():  # type: ignore[no-untyped-def]
    """Raises from model code (like a real model given the wrong shapes) unless `x` is a float tensor."""

    def run(inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if "x" not in inputs or not inputs["x"].is_floating_point():
            raise ValueError("picky wants a float tensor named x")
        return {"y": inputs["x"] + 1}

    return run


def chatty_factory():  # type: ignore[no-untyped-def]
    """Prints its input (as text) every way a careless model might: print, stderr in pieces, the binary
    buffer, and an uncaught exception in a thread of its own (printed by `threading.excepthook`)."""
    import sys
    import threading

    def run(inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        text = bytes(inputs["input"].tolist()).decode()
        print("model saw:", text)
        sys.stderr.write("model debug: ")
        sys.stderr.write(text[: len(text) // 2])
        sys.stderr.write(text[len(text) // 2 :] + "\n")
        sys.stdout.buffer.write(b"raw " + text.encode() + b"\n")
        sys.stdout.flush()

        def fail() -> None:
            raise RuntimeError(f"cannot handle {text}")

        worker = threading.Thread(target=fail)
        worker.start()
        worker.join()
        return {"output": inputs["input"].clone()}

    return run
