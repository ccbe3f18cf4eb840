"""CuPy's device memory served from torch's caching allocator, so the between-tenant scrub sees it.

CuPy's own pool keeps freed chunks that cannot be enumerated; routed through torch (`route_cupy_through_torch`)
they appear in `torch.cuda.memory_snapshot()` and are zeroed with everything else. Imports cupy and torch
lazily: this module loads on a host with neither.
"""

from __future__ import annotations

from typing import Any


class _TorchBlock:
    """Owner of one caching-allocator block lent to CuPy; returns it to torch when CuPy drops it."""

    __slots__ = ("ptr",)

    def __init__(self, ptr: int) -> None:
        self.ptr = ptr

    def __del__(self) -> None:
        import torch

        torch.cuda.caching_allocator_delete(self.ptr)  # type: ignore[no-untyped-call]


def _torch_backed_alloc(size: int) -> Any:
    import cupy
    import torch

    dev = cupy.cuda.Device().id
    ptr = torch.cuda.caching_allocator_alloc(max(size, 1), dev, torch.cuda.current_stream(dev))
    mem = cupy.cuda.UnownedMemory(ptr, size, _TorchBlock(ptr), device_id=dev)
    return cupy.cuda.MemoryPointer(mem, 0)


def route_cupy_through_torch() -> None:
    """Serve CuPy's device allocations from torch's caching allocator (process-wide).

    CuPy's own pool keeps freed chunks it does not let us enumerate, and freeing them only returns stale
    memory to the driver. Routed through torch, CuPy's memory shows up in the snapshot and is scrubbed
    with everything else. Blocks are associated with torch's current stream at allocation time.
    """
    import cupy

    cupy.cuda.set_allocator(_torch_backed_alloc)


def cupy_routed_through_torch() -> bool:
    try:
        import cupy
    except ImportError:
        return False
    return cupy.cuda.get_allocator() is _torch_backed_alloc


def cupy_importable() -> bool:
    try:
        import cupy  # noqa: F401
    except ImportError:
        return False
    return True
