"""CUDA kernels for the between-tenant scrub: zero, verify-zero and marker search over byte ranges.

A sharp internal (DESIGN §3): the caller guarantees that every range is device memory it may write and
that nothing else touches it while a kernel runs. The CUDA source is `scrub.cu` beside this file, shipped
as package data; its header comment states the range-descriptor layout word by word.

Two ways in:
- `compile_offline(arch)` compiles the source with NVRTC through `cupy.cuda.nvrtc` and returns the cubin
  (``sm_XY``) or PTX (``compute_XY``). It needs `nvidia-cuda-nvrtc-cu12` (or the CUDA 13 one) but no GPU,
  so CI proves the kernels build for Hopper on every run.
- `ScrubKernels.load(device_index)` builds a CuPy `RawModule` on a GPU host and launches the kernels on a
  caller-given stream (the scrubber passes torch's current stream, so they are ordered with torch's work).

Imports only numpy at module load; CuPy is imported lazily, so `import cleanroom.kernels` works on a bare
CPU host.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

SOURCE_NAME = "scrub.cu"
ZERO_KERNEL = "cleanroom_zero_ranges"
VERIFY_KERNEL = "cleanroom_verify_ranges"
MARKER_KERNEL = "cleanroom_count_marker_words"
KERNEL_NAMES = (ZERO_KERNEL, VERIFY_KERNEL, MARKER_KERNEL)

# 1 MiB tiles: an 8 GiB free list is ~8k tiles, enough to keep 132 SMs busy without a long tail.
DEFAULT_TILE_SHIFT = 20
NVRTC_OPTIONS = ("-std=c++17",)
# Descriptor rows per launch. The table is allocated once, when the kernels load: a scrub must never call
# cudaMalloc, because the device is often full then (torch caches what it freed; the driver sweep has just
# taken every free byte). Longer free lists go in several launches on the same stream. 8192 rows = 192 KiB.
DEFAULT_RANGES_PER_LAUNCH = 8192
_U64_MAX = (1 << 64) - 1

Ranges = Sequence[tuple[int, int]] | npt.NDArray[np.uint64]


class KernelError(RuntimeError):
    """The scrub kernels could not be compiled, loaded or launched."""


def kernel_source() -> str:
    """The CUDA source of the scrub kernels, read from the installed package."""
    return importlib.resources.files(__name__).joinpath(SOURCE_NAME).read_text(encoding="utf-8")


def _nvrtc() -> Any:
    try:
        from cupy.cuda import nvrtc
    except ImportError as exc:  # cupy itself missing
        raise KernelError("cupy is not installed: install the gpu extra (pip install 'cleanroom[gpu]')") from exc
    return nvrtc


def nvrtc_version() -> tuple[int, int]:
    """(major, minor) of the NVRTC library CuPy loads; raises `KernelError` when none can be loaded."""
    nvrtc = _nvrtc()
    try:
        major, minor = nvrtc.getVersion()
    except Exception as exc:  # CuPy raises its own types for a missing or broken libnvrtc
        raise KernelError(
            f"NVRTC could not be loaded ({type(exc).__name__}: {exc}); install nvidia-cuda-nvrtc-cu12"
        ) from exc
    return int(major), int(minor)


def compile_offline(arch: str = "sm_90", *, options: Sequence[str] = NVRTC_OPTIONS) -> bytes:
    """Compile `scrub.cu` for `arch` without a GPU.

    ``arch="sm_90"`` returns a cubin (an ELF image for Hopper); ``arch="compute_90"`` returns PTX text as
    bytes. The NVRTC log is part of the error on failure.
    """
    if not (arch.startswith("sm_") or arch.startswith("compute_")) or not arch.split("_", 1)[1].isdigit():
        raise ValueError(f"arch must look like 'sm_90' or 'compute_90', not {arch!r}")
    nvrtc = _nvrtc()
    nvrtc_version()  # a clear error when the library is missing, before createProgram fails obscurely
    prog = nvrtc.createProgram(kernel_source(), SOURCE_NAME, [], [])
    try:
        try:
            nvrtc.compileProgram(prog, [f"--gpu-architecture={arch}", *options])
        except Exception as exc:
            log = nvrtc.getProgramLog(prog)
            raise KernelError(f"NVRTC failed to compile {SOURCE_NAME} for {arch}: {exc}\n{log}") from exc
        if arch.startswith("sm_"):
            return bytes(nvrtc.getCUBIN(prog))
        ptx = nvrtc.getPTX(prog)
        return ptx.encode() if isinstance(ptx, str) else bytes(ptx)
    finally:
        nvrtc.destroyProgram(prog)


def resource_usage(arch: str = "sm_90") -> str:
    """ptxas' resource report (registers, shared memory, spills) for each kernel, compiled offline."""
    nvrtc = _nvrtc()
    nvrtc_version()
    prog = nvrtc.createProgram(kernel_source(), SOURCE_NAME, [], [])
    try:
        nvrtc.compileProgram(prog, [f"--gpu-architecture={arch}", *NVRTC_OPTIONS, "--ptxas-options=-v"])
        return str(nvrtc.getProgramLog(prog))
    finally:
        nvrtc.destroyProgram(prog)


def build_descriptors(ranges: Ranges, tile_shift: int = DEFAULT_TILE_SHIFT) -> tuple[npt.NDArray[np.uint64], int]:
    """The descriptor table of `scrub.cu` for `ranges` and the total number of tiles.

    Each row is (address, length, first tile index). Zero-length ranges are dropped; a negative length,
    a negative address or a range that wraps past 2**64 is a caller bug and raises `ValueError`.
    """
    if not 9 <= tile_shift <= 30:
        raise ValueError("tile_shift must be between 9 (512 B) and 30 (1 GiB)")
    try:
        body = np.asarray(ranges, dtype=np.uint64).reshape(-1, 2)
    except (OverflowError, ValueError, TypeError) as exc:  # negative or > 2**64, or not pairs
        raise ValueError(f"ranges must be (address, length) pairs of unsigned 64-bit ints: {exc}") from exc
    if np.any(body[:, 0] > np.uint64(_U64_MAX) - body[:, 1]):
        raise ValueError("a range wraps past the end of the 64-bit address space")
    body = body[body[:, 1] > 0]
    desc = np.zeros((body.shape[0], 3), dtype=np.uint64)
    if body.shape[0] == 0:
        return desc, 0
    desc[:, :2] = body
    tile = np.uint64(1 << tile_shift)
    tiles = (body[:, 1] + tile - np.uint64(1)) // tile  # no overflow: lengths are < 2**63 in practice
    prefix = np.cumsum(tiles, dtype=np.uint64)
    desc[1:, 2] = prefix[:-1]
    return desc, int(prefix[-1])


def descriptor_batches(
    ranges: Ranges, tile_shift: int = DEFAULT_TILE_SHIFT, max_ranges: int = DEFAULT_RANGES_PER_LAUNCH
) -> list[tuple[npt.NDArray[np.uint64], int]]:
    """`build_descriptors` cut into tables of at most `max_ranges` rows, each with its own tile count and
    its prefix column rebased to 0 (what one launch over a fixed-size device table needs)."""
    if max_ranges < 1:
        raise ValueError("max_ranges must be positive")
    desc, n_tiles = build_descriptors(ranges, tile_shift)
    out: list[tuple[npt.NDArray[np.uint64], int]] = []
    for i in range(0, desc.shape[0], max_ranges):
        part = desc[i : i + max_ranges].copy()
        first = int(part[0, 2])
        end = int(desc[i + max_ranges, 2]) if i + max_ranges < desc.shape[0] else n_tiles
        part[:, 2] -= np.uint64(first)
        out.append((part, end - first))
    return out


class _StreamHandle:
    """A raw `cudaStream_t` exposed through the CUDA stream protocol (``__cuda_stream__``)."""

    def __init__(self, ptr: int) -> None:
        self.ptr = ptr

    def __cuda_stream__(self) -> tuple[int, int]:
        return (0, self.ptr)


class ScrubKernels:
    """The compiled kernels on one GPU, with their descriptor and result buffers.

    The descriptor and result buffers are raw `cudaMalloc` memory owned by this object, outside both
    torch's caching allocator and CuPy's pool: uploading a free list must never carve a block out of
    the memory that list describes. They hold addresses and counts, never tenant data.
    """

    def __init__(
        self,
        module: Any,
        device_index: int,
        sm_count: int,
        *,
        threads: int = 512,
        blocks_per_sm: int = 4,
        tile_shift: int = DEFAULT_TILE_SHIFT,
        max_ranges_per_launch: int = DEFAULT_RANGES_PER_LAUNCH,
    ) -> None:
        if max_ranges_per_launch < 1:
            raise ValueError("max_ranges_per_launch must be positive")
        if threads % 32 or not 32 <= threads <= 1024:
            raise ValueError("threads must be a multiple of 32 between 32 and 1024")
        if blocks_per_sm < 1 or sm_count < 1:
            raise ValueError("blocks_per_sm and sm_count must be positive")
        import cupy

        self._cupy = cupy
        self.device_index = device_index
        self.threads = threads
        self.max_blocks = sm_count * blocks_per_sm
        self.tile_shift = tile_shift
        self._fn = {name: module.get_function(name) for name in KERNEL_NAMES}
        # Allocated up front and never grown (see DEFAULT_RANGES_PER_LAUNCH).
        self._desc_capacity = max_ranges_per_launch
        with cupy.cuda.Device(device_index):
            self._desc_mem: Any = cupy.cuda.Memory(self._desc_capacity * 24)
            self._out_mem = cupy.cuda.Memory(16)
        self._out_host = np.zeros(2, dtype=np.uint64)
        self._host_tables: list[tuple[npt.NDArray[np.uint64], int]] = []
        self._warm_up()

    def _warm_up(self) -> None:
        """Launch each kernel once over no tiles: with CUDA's lazy module loading, the first launch may
        need device memory, which the driver sweep (it takes all free memory) must not depend on."""
        stream = self._cupy.cuda.Stream.null
        out = np.uint64(self._out_mem.ptr)
        self._launch(ZERO_KERNEL, 0, 0, stream)
        self._launch(VERIFY_KERNEL, 0, 0, stream, out)
        self._launch(MARKER_KERNEL, 0, 0, stream, np.uint64(0), np.uint64(0), out)
        stream.synchronize()

    @classmethod
    def load(cls, device_index: int = 0, **kwargs: Any) -> ScrubKernels:
        """Compile (NVRTC, cached by CuPy on disk) and load the kernels on `device_index`."""
        try:
            import cupy
        except ImportError as exc:
            raise KernelError("cupy is not installed: install the gpu extra") from exc
        try:
            with cupy.cuda.Device(device_index):
                module = cupy.RawModule(code=kernel_source(), options=NVRTC_OPTIONS)
                sm_count = int(cupy.cuda.runtime.getDeviceProperties(device_index)["multiProcessorCount"])
                return cls(module, device_index, sm_count, **kwargs)
        except KernelError:
            raise
        except Exception as exc:
            raise KernelError(f"could not load the scrub kernels on cuda:{device_index}: {exc}") from exc

    # --- launches ---------------------------------------------------------------------------------
    def _batches(self, ranges: Ranges) -> list[tuple[npt.NDArray[np.uint64], int]]:
        batches = descriptor_batches(ranges, self.tile_shift, self._desc_capacity)
        # CUDA stages a pageable memcpyAsync source before returning, but `zero` returns before its
        # launches ran: the host tables stay referenced until the next call, which costs nothing.
        self._host_tables = batches
        return batches

    def _upload(self, desc: npt.NDArray[np.uint64], stream: Any) -> None:
        """Copy one descriptor table into the device table, ordered on `stream` after every earlier
        launch there (which may still read the previous table)."""
        rt = self._cupy.cuda.runtime
        # Pageable source: the copy is staged before memcpyAsync returns, so `desc` may be dropped.
        rt.memcpyAsync(self._desc_mem.ptr, desc.ctypes.data, desc.nbytes, rt.memcpyHostToDevice, stream.ptr)

    def _run(self, name: str, ranges: Ranges, stream: Any, *extra: Any) -> int:
        """Launch `name` over `ranges`, one launch per descriptor table; returns the number of launches."""
        batches = self._batches(ranges)
        for desc, n_tiles in batches:
            self._upload(desc, stream)
            self._launch(name, desc.shape[0], n_tiles, stream, *extra)
        return len(batches)

    def _launch(self, name: str, n: int, n_tiles: int, stream: Any, *extra: Any) -> None:
        grid = max(1, min(n_tiles, self.max_blocks))
        args = (np.uint64(self._desc_mem.ptr), np.int64(n), np.uint64(n_tiles), np.uint32(self.tile_shift), *extra)
        with self._cupy.cuda.Device(self.device_index), stream:
            self._fn[name]((grid,), (self.threads,), args)

    def _stream(self, stream_ptr: int) -> Any:
        """A CuPy view of the caller's stream (torch's current stream): same queue, same ordering."""
        cuda = self._cupy.cuda
        if stream_ptr == 0:
            return cuda.Stream.null
        if hasattr(cuda.Stream, "from_external"):  # CuPy >= 14: the CUDA stream protocol
            return cuda.Stream.from_external(_StreamHandle(stream_ptr))
        return cuda.ExternalStream(stream_ptr, self.device_index)

    def _read_out(self, stream: Any) -> tuple[int, int]:
        rt = self._cupy.cuda.runtime
        rt.memcpyAsync(self._out_host.ctypes.data, self._out_mem.ptr, 16, rt.memcpyDeviceToHost, stream.ptr)
        stream.synchronize()
        return int(self._out_host[0]), int(self._out_host[1])

    def _reset_out(self, stream: Any, second: int) -> None:
        rt = self._cupy.cuda.runtime
        rt.memsetAsync(self._out_mem.ptr, 0, 8, stream.ptr)
        rt.memsetAsync(self._out_mem.ptr + 8, second, 8, stream.ptr)

    def zero(self, ranges: Ranges, stream_ptr: int) -> int:
        """Enqueue the zeroing of every range on `stream_ptr`; returns the bytes it will write.

        Asynchronous: the caller synchronizes (or verifies, which does) before relying on the zeros.
        """
        stream = self._stream(stream_ptr)
        if not self._run(ZERO_KERNEL, ranges, stream):
            return 0
        return int(np.asarray(ranges, dtype=np.uint64).reshape(-1, 2)[:, 1].sum())

    def count_nonzero(self, ranges: Ranges, stream_ptr: int) -> tuple[int, int | None]:
        """(non-zero bytes, lowest non-zero address seen or None) over `ranges`; waits for the result."""
        stream = self._stream(stream_ptr)
        batches = self._batches(ranges)
        if not batches:
            return 0, None
        self._reset_out(stream, 0xFF)  # once: every launch adds to the same counters
        for desc, n_tiles in batches:
            self._upload(desc, stream)
            self._launch(VERIFY_KERNEL, desc.shape[0], n_tiles, stream, np.uint64(self._out_mem.ptr))
        count, first_bad = self._read_out(stream)
        return count, (None if first_bad == _U64_MAX else first_bad)

    def count_marker_words(self, ranges: Ranges, mask: int, pattern: int, stream_ptr: int) -> int:
        """Aligned 64-bit words with ``word & mask == pattern`` over `ranges`; waits for the result."""
        stream = self._stream(stream_ptr)
        batches = self._batches(ranges)
        if not batches:
            return 0
        self._reset_out(stream, 0)
        out = np.uint64(self._out_mem.ptr)
        for desc, n_tiles in batches:
            self._upload(desc, stream)
            self._launch(MARKER_KERNEL, desc.shape[0], n_tiles, stream, np.uint64(mask), np.uint64(pattern), out)
        return self._read_out(stream)[0]


__all__ = [
    "DEFAULT_RANGES_PER_LAUNCH",
    "DEFAULT_TILE_SHIFT",
    "KERNEL_NAMES",
    "KernelError",
    "ScrubKernels",
    "build_descriptors",
    "compile_offline",
    "descriptor_batches",
    "kernel_source",
    "nvrtc_version",
    "resource_usage",
]
