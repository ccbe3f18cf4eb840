"""DESIGN §4 step 5 for one request: zero every tensor and buffer it produced, and release them.

Separate from opening and running because it is the one place that must work on any tensor layout a
model returns (quantized, sparse, nested) and must never skip closing a buffer: it is called from the
session's `finally` (`RequestOpener.end_request`) and by benchmarks and tests on their own scopes.
"""

from __future__ import annotations

import logging

import torch

from cleanroom.errors import SecureMemoryError
from cleanroom.runtime.models import RequestScope
from cleanroom.scrubbers.base import ScrubReport, request_storages, storage_bytes

log = logging.getLogger("cleanroom.runtime")


def zero_scope(scope: RequestScope) -> None:
    """Zero every tensor and close every buffer the request produced (invariant 1).

    Whole storages are zeroed, as the scrubber does, not `tensor.zero_()`: that raises on a quantized
    tensor (which left every buffer of the request open, plaintext in place, until a garbage collection)
    and only drops a sparse tensor's entries, its values keeping the plaintext. The buffers are closed
    (zeroed) whatever happens to the tensors; a tensor that still could not be zeroed fails the request.
    """
    failed = 0
    try:
        # Tensors made under inference mode refuse in-place updates outside it; inside it every one accepts.
        with torch.inference_mode():
            for tensor in scope.tensors:
                try:
                    zero_tensor_memory(tensor)
                except Exception:  # counted, and raised below once the buffers are closed
                    failed += 1
    finally:
        release_scope(scope)
    if failed:
        log.error("%d tensor(s) of a request could not be zeroed", failed)
        raise SecureMemoryError(f"{failed} tensor(s) of the request could not be zeroed")


def zero_tensor_memory(tensor: torch.Tensor) -> None:
    """Zero all memory behind `tensor`: its storage (a view's base too), `.grad`, sparse components, and
    the single buffer of a nested or quantized tensor."""
    try:
        storages = request_storages([tensor])
    except TypeError:  # nested, quantized: one plain storage underneath
        storages = [tensor.untyped_storage()]
    for storage in storages:
        if storage.nbytes():
            storage_bytes(storage).zero_()


def release_scope(scope: RequestScope) -> None:
    """Drop the request's tensors and close its buffers (`close` zeroes each buffer whatever happened);
    the tensors are not zeroed here: call it alone only once a scrub has zeroed and verified them."""
    scope.tensors.clear()
    for buffer in scope.buffers:
        buffer.close()
    scope.buffers.clear()


def verified_zero(report: ScrubReport | None) -> bool:
    """Whether a request scrub read back every byte it wrote and found them all zero. Then zeroing the
    same tensors again (`zero_scope`) only costs time: ~50-70 us of torch calls per minilm request."""
    return (
        report is not None
        and report.kind == "request"
        and report.nonzero_bytes == 0
        and report.bytes_verified == report.bytes_scrubbed
    )
