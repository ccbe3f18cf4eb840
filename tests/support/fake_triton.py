"""A stand-in for Triton's `triton_python_backend_utils` (pb_utils), so `CleanroomTritonModel` runs in
process without a Triton server: tensors, responses, errors, and request parameters as Triton hands them
over (a JSON string, or whatever a hostile caller put there).

A request holding a tensor named "raise" (or asking for "EXPLODE") makes the stub itself fail, as a broken
backend would: the model must answer INTERNAL without the plaintext."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import numpy as np


class FakeTensor:
    def __init__(self, name: str, array: Any) -> None:
        self.name, self.array = name, array

    def as_numpy(self) -> Any:
        return self.array


class FakeResponse:
    def __init__(self, output_tensors: list[FakeTensor], error: Any = None) -> None:
        self.output_tensors, self.error = output_tensors, error


class FakeError:
    INVALID_ARG, NOT_FOUND, UNAVAILABLE, INTERNAL = "INVALID_ARG", "NOT_FOUND", "UNAVAILABLE", "INTERNAL"

    def __init__(self, message: str, code: str | None = None) -> None:
        self.message, self.code = message, code


class FakeRequest:
    def __init__(self, tensors: dict[str, Any], parameters: Any) -> None:
        self.tensors, self._parameters = tensors, parameters

    def parameters(self) -> Any:
        return self._parameters if isinstance(self._parameters, str | bytes) else json.dumps(self._parameters)


def _get_input(request: FakeRequest, name: str) -> Any:
    if name == "EXPLODE" or "raise" in request.tensors:
        raise RuntimeError("the stub failed")
    return FakeTensor(name, request.tensors[name]) if name in request.tensors else None


FAKE_PB_UTILS = SimpleNamespace(
    Tensor=FakeTensor, InferenceResponse=FakeResponse, TritonError=FakeError, get_input_tensor_by_name=_get_input
)


def one(value: Any) -> Any:
    """A one-element object array holding `value`: how Triton hands over a single BYTES input."""
    array = np.empty(1, dtype=np.object_)
    array[0] = value
    return array
