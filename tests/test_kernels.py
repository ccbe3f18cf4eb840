"""The scrub kernels compile for Hopper offline, and the host-side range/tile contract is exact.

No GPU needed: NVRTC (nvidia-cuda-nvrtc-cu12, through cupy.cuda.nvrtc) compiles the packaged source.
If NVRTC cannot be loaded these tests FAIL, on purpose: the gpu extra must be installed in CI.
"""

from __future__ import annotations

import re
import struct
import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cleanroom.kernels import (
    DEFAULT_TILE_SHIFT,
    KERNEL_NAMES,
    build_descriptors,
    compile_offline,
    kernel_source,
    nvrtc_version,
    resource_usage,
)

EM_CUDA = 190


def test_source_ships_as_package_data() -> None:
    import importlib.resources

    files = importlib.resources.files("cleanroom.kernels")
    assert files.joinpath("scrub.cu").is_file()
    src = kernel_source()
    for name in KERNEL_NAMES:
        assert f'extern "C" __global__ void {name}(' in src


def test_nvrtc_loads() -> None:
    major, _minor = nvrtc_version()  # raises KernelError with an install hint if it cannot load
    assert major >= 12


def cubin_sm_version(cubin: bytes) -> int:
    """The SM version in a CUDA ELF's e_flags. The field moved with the ELF ABI version: CUDA 12's NVRTC
    writes ABI 7 (SM in bits 0-7), CUDA 13's writes ABI 8 (SM in bits 8-15). The GPU image has CUDA 13."""
    flags = struct.unpack_from("<I", cubin, 48)[0]
    return int((flags >> 8) & 0xFF if cubin[8] >= 8 else flags & 0xFF)  # cubin[8]: e_ident[EI_ABIVERSION]


def test_cubin_for_sm90() -> None:
    cubin = compile_offline("sm_90")
    assert cubin[:4] == b"\x7fELF"
    assert struct.unpack_from("<H", cubin, 18)[0] == EM_CUDA  # e_machine
    assert cubin_sm_version(cubin) == 90
    assert cubin_sm_version(compile_offline("sm_100")) == 100  # the field is read, not assumed
    for name in KERNEL_NAMES:
        assert name.encode() in cubin


def test_ptx_for_compute90() -> None:
    ptx = compile_offline("compute_90").decode()
    assert ".target sm_90" in ptx
    for name in KERNEL_NAMES:
        assert re.search(rf"\.visible \.entry {name}\(", ptx)
    # 16-byte vector stores and streaming 16-byte loads are what the bandwidth goals rest on
    assert "st.global.cs.v4.u32" in ptx
    assert "ld.global.cs.v4.u32" in ptx


def test_no_spills_and_full_occupancy_at_512_threads() -> None:
    log = resource_usage("sm_90")
    assert "0 bytes spill stores" in log and not re.search(r"[1-9]\d* bytes spill", log)
    regs = [int(r) for r in re.findall(r"Used (\d+) registers", log)]
    assert len(regs) == len(KERNEL_NAMES)
    # 4 blocks of 512 threads per SM (the launch default) need <= 32 registers per thread on Hopper
    assert max(regs) <= 32, log


def test_bad_arch_rejected() -> None:
    with pytest.raises(ValueError):
        compile_offline("hopper")


def test_descriptors_layout() -> None:
    mib = 1 << 20
    desc, tiles = build_descriptors([(0x1000, 3), (0x2001, 3 * mib), (0x9000, 0), (0x10000, mib + 1)])
    assert desc.dtype == np.uint64
    assert desc.tolist() == [[0x1000, 3, 0], [0x2001, 3 * mib, 1], [0x10000, mib + 1, 4]]
    assert tiles == 1 + 3 + 2
    assert build_descriptors([])[1] == 0


@pytest.mark.parametrize("bad", [[(-1, 5)], [(1 << 64, 1)], [((1 << 64) - 8, 16)], [(1, 2, 3)]])
def test_descriptors_reject_bad_ranges(bad: list[tuple[int, ...]]) -> None:
    with pytest.raises(ValueError):
        build_descriptors(bad)  # type: ignore[arg-type]


def emulate_zero(desc: np.ndarray, n_tiles: int, tile_shift: int, mem: np.ndarray, base: int) -> list[int]:
    """The kernel's tile walk in Python (find_tile + head/vector/tail split) over a fake device memory.

    Returns the number of bytes each tile wrote, so the test can also check no byte is written twice.
    """
    n_ranges = desc.shape[0]
    written = []
    for t in range(n_tiles):
        lo, hi = 0, n_ranges - 1
        while lo < hi:
            mid = (lo + hi + 1) >> 1
            if int(desc[mid, 2]) <= t:
                lo = mid
            else:
                hi = mid - 1
        start, length, first = (int(x) for x in desc[lo])
        off = (t - first) << tile_shift
        n = min(length - off, 1 << tile_shift)
        p = start + off
        head = min((16 - (p & 15)) & 15, n)
        n_vec = (n - head) >> 4
        tail_at = head + n_vec * 16
        assert (p + head) % 16 == 0 or n_vec == 0
        o = p - base
        assert (mem[o : o + n] != 0xAA).sum() == 0, "byte written twice"
        mem[o : o + head] = 0
        mem[o + head : o + tail_at] = 0
        mem[o + tail_at : o + n] = 0
        written.append(n)
    return written


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 40_000), st.integers(0, 9_000)), max_size=12),
    st.integers(9, 12),
)
def test_tiles_cover_exactly_the_ranges(raw: list[tuple[int, int]], tile_shift: int) -> None:
    base = 0x7F0000000000 + 3  # deliberately unaligned
    # make the ranges disjoint: sort and shift
    ranges, cursor = [], 0
    for gap, length in raw:
        cursor += gap % 97
        ranges.append((base + cursor, length))
        cursor += length
    mem = np.full(cursor + 64, 0xAA, dtype=np.uint8)
    desc, n_tiles = build_descriptors(ranges, tile_shift)
    written = emulate_zero(desc, n_tiles, tile_shift, mem, base)
    expected = np.full_like(mem, 0xAA)
    for addr, length in ranges:
        expected[addr - base : addr - base + length] = 0
    assert np.array_equal(mem, expected)
    assert sum(written) == sum(length for _, length in ranges)
    assert all(0 < w <= 1 << tile_shift for w in written)


def test_default_tiles_for_8gib() -> None:
    _, tiles = build_descriptors([(1 << 40, 8 << 30)], DEFAULT_TILE_SHIFT)
    assert tiles == 8192


def test_unowned_memory_wraps_a_foreign_pointer_without_a_gpu() -> None:
    # How the GPU scrubber lends torch blocks to CuPy (route_cupy_through_torch): builds with no device.
    import cupy

    owner = object()
    mem = cupy.cuda.UnownedMemory(0x7F0000001000, 4096, owner, device_id=0)
    ptr = cupy.cuda.MemoryPointer(mem, 512)
    assert mem.ptr == 0x7F0000001000 and mem.size == 4096
    assert ptr.ptr == 0x7F0000001000 + 512


# --- the host side of ScrubKernels against an emulated device -------------------------------------------
class _FakeCuda:
    """Just enough of `cupy.cuda` for ScrubKernels, with "device memory" that is host memory (ctypes)."""

    def __init__(self) -> None:
        import ctypes
        import types

        self.ctypes = ctypes
        self.allocations: list[Any] = []
        fake = self

        self.oom = False

        class Memory:
            def __init__(self, size: int) -> None:
                if fake.oom:
                    raise MemoryError("cudaErrorMemoryAllocation (fake)")
                self.buf = (ctypes.c_char * size)()
                self.ptr = ctypes.addressof(self.buf)
                self.size = size
                fake.allocations.append(self)

        class Stream:
            def __init__(self, ptr: int = 0) -> None:
                self.ptr = ptr

            @classmethod
            def from_external(cls, obj: Any) -> Any:
                return cls(obj.__cuda_stream__()[1])

            def synchronize(self) -> None:
                pass

            def __enter__(self) -> Any:
                return self

            def __exit__(self, *exc: Any) -> None:
                pass

        Stream.null = Stream(0)  # type: ignore[attr-defined]

        class Device(Stream):
            pass

        def memcpy(dst: int, src: int, n: int, kind: int, stream: int) -> None:
            ctypes.memmove(dst, src, n)

        def memset(ptr: int, value: int, n: int, stream: int) -> None:
            ctypes.memset(ptr, value, n)

        self.runtime = types.SimpleNamespace(
            memcpyAsync=memcpy, memsetAsync=memset, memcpyHostToDevice=1, memcpyDeviceToHost=2
        )
        self.Memory, self.Stream, self.Device = Memory, Stream, Device


class _FakeKernel:
    """Runs the kernels' semantics in numpy over the descriptor table it is launched with."""

    def __init__(self, name: str, log: list[Any]) -> None:
        self.name, self.log = name, log

    def __call__(self, grid: tuple[int], block: tuple[int], args: tuple[Any, ...]) -> None:
        import ctypes

        self.log.append((self.name, grid, block, [type(a) for a in args]))
        desc_ptr, n, _n_tiles, _shift = (int(a) for a in args[:4])
        desc = np.frombuffer((ctypes.c_uint64 * (3 * n)).from_address(desc_ptr), dtype=np.uint64).reshape(n, 3)
        tiles = (desc[:, 1] + np.uint64((1 << _shift) - 1)) >> np.uint64(_shift)
        if n:  # (the warm-up launches have no table)
            assert list(desc[:, 2]) == [0, *np.cumsum(tiles)[:-1]] and _n_tiles == int(tiles.sum()), "bad table"
        views = [
            np.frombuffer((ctypes.c_uint8 * int(length)).from_address(int(addr)), dtype=np.uint8)
            for addr, length, _ in desc
        ]
        if self.name == "cleanroom_zero_ranges":
            for v in views:
                v[:] = 0
            return
        out = np.frombuffer((ctypes.c_uint64 * 2).from_address(int(args[-1])), dtype=np.uint64)
        if self.name == "cleanroom_verify_ranges":
            out[0] += sum(int(np.count_nonzero(v)) for v in views)
            bad = [
                int(addr) + int(np.flatnonzero(v)[0]) for (addr, _, _), v in zip(desc, views, strict=True) if v.any()
            ]
            if bad:
                out[1] = min(int(out[1]), min(bad))
        else:
            mask, pattern = int(args[4]), int(args[5])
            for (addr, _, _), v in zip(desc, views, strict=True):
                first = (-int(addr)) % 8
                words = v[first : first + (len(v) - first) // 8 * 8].view(np.uint64)
                out[0] += int(np.count_nonzero((words & np.uint64(mask)) == np.uint64(pattern)))


@pytest.fixture
def emulated(monkeypatch: pytest.MonkeyPatch) -> Any:
    import types

    from cleanroom.kernels import ScrubKernels

    cuda = _FakeCuda()
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(cuda=cuda))
    log: list[Any] = []
    module = types.SimpleNamespace(get_function=lambda name: _FakeKernel(name, log))
    k = ScrubKernels(module, 0, sm_count=132)
    assert [name for name, *_ in log] == list(KERNEL_NAMES)  # warm-up launches, one per kernel
    log.clear()
    k.launches = log  # type: ignore[attr-defined]
    return k


def test_host_side_zero_verify_marker(emulated: Any) -> None:
    mem = np.full(3 << 20, 0xEE, dtype=np.uint8)
    base = mem.ctypes.data
    ranges = [(base + 5, 1000), (base + (1 << 20) + 3, (1 << 20) + 17)]
    assert emulated.count_nonzero(ranges, 0) == (1000 + (1 << 20) + 17, base + 5)
    assert emulated.zero(ranges, 1234) == 1000 + (1 << 20) + 17
    assert emulated.count_nonzero(ranges, 1234) == (0, None)
    assert mem[5:1005].sum() == 0 and mem[4] == 0xEE and mem[1005] == 0xEE
    words = mem[2 << 20 :].view(np.uint64)
    words[::7] = (0xABCDE << 16) | 0x1111
    mask = ((1 << 47) - 1) << 16
    assert emulated.count_marker_words([(base + (2 << 20), 1 << 20)], mask, 0xABCDE << 16, 0) == len(words[::7])
    # argument types match the CUDA signatures: pointers and u64 as uint64, n_ranges int64, shift uint32
    name, grid, block, types_ = emulated.launches[0]
    assert name == "cleanroom_verify_ranges" and block == (512,) and 1 <= grid[0] <= 132 * 4
    assert types_ == [np.uint64, np.int64, np.uint64, np.uint32, np.uint64]
    assert emulated.launches[-1][3] == [np.uint64, np.int64, np.uint64, np.uint32, np.uint64, np.uint64, np.uint64]


def test_host_side_many_ranges_batched_without_allocating(emulated: Any) -> None:
    # A scrub runs when the device is full (torch caches what it freed; the driver sweep has just taken
    # every free byte): a long free list must not cudaMalloc a bigger table. It used to (5000 ranges >
    # the 1024 preallocated rows -> cupy.cuda.Memory mid-scrub -> OOM -> quarantine on a healthy GPU).
    from cleanroom.kernels import DEFAULT_RANGES_PER_LAUNCH

    n = 2 * DEFAULT_RANGES_PER_LAUNCH + 5
    mem = np.ones(n * 16, dtype=np.uint8)
    ranges = [(mem.ctypes.data + 16 * i, 8) for i in range(n)]
    allocations = len(emulated._cupy.cuda.allocations)
    emulated._cupy.cuda.oom = True  # any cudaMalloc from now on fails
    assert emulated.zero(ranges, 0) == 8 * n
    mem[16 * (n - 1)] = 9  # one byte in the last range of the last table
    assert emulated.count_nonzero(ranges, 0) == (1, mem.ctypes.data + 16 * (n - 1))
    assert emulated.count_marker_words(ranges, 0xFF, 9, 0) == 1
    assert len(emulated._cupy.cuda.allocations) == allocations
    assert mem.reshape(n, 16)[:, 8:].all() and not mem.reshape(n, 16)[:-1, :8].any()
    launches = [(name, grid) for name, grid, *_ in emulated.launches]
    assert [name for name, _ in launches] == ["cleanroom_zero_ranges"] * 3 + ["cleanroom_verify_ranges"] * 3 + [
        "cleanroom_count_marker_words"
    ] * 3


@pytest.mark.parametrize("max_ranges", [1, 2, 3, 7, 100])
def test_descriptor_batches_cover_the_same_tiles(max_ranges: int) -> None:
    from cleanroom.kernels import descriptor_batches

    rng = np.random.default_rng(max_ranges)
    starts, lengths = rng.integers(1, 1 << 40, 20) * 4096, rng.integers(0, 5 << 20, 20)
    ranges = [(int(a), int(n)) for a, n in zip(starts, lengths, strict=True)]
    desc, n_tiles = build_descriptors(ranges, 16)
    batches = descriptor_batches(ranges, 16, max_ranges)
    assert all(1 <= b.shape[0] <= max_ranges and int(b[0, 2]) == 0 for b, _ in batches)
    assert np.array_equal(np.concatenate([b[:, :2] for b, _ in batches]), desc[:, :2])
    assert sum(t for _, t in batches) == n_tiles
    for b, tiles in batches:  # each table's prefix column and tile count agree with its own lengths
        counts = (b[:, 1] + np.uint64((1 << 16) - 1)) >> np.uint64(16)
        assert list(b[:, 2]) == [0, *np.cumsum(counts)[:-1]] and tiles == int(counts.sum())


def test_host_side_empty_ranges_launch_nothing(emulated: Any) -> None:
    assert emulated.zero([], 0) == 0 and emulated.count_nonzero([], 0) == (0, None)
    assert emulated.launches == []


# --- the per-thread index arithmetic of the three kernels, exhaustively, in Python --------------------------
def _tile_accesses(p: int, n: int, threads: int, kernel: str) -> list[int]:
    """Byte addresses one thread block touches in one tile at address `p` of `n` bytes, following
    scrub.cu line by line (head_bytes, the 16-byte vector loop(s), the tail; the verify kernel's loop
    with four loads in flight, then its remainder loop). Each 16-byte vector counts as its 16 bytes."""
    out: list[int] = []
    mis = p & 15
    head = min(16 - mis if mis else 0, n)
    n_vec = (n - head) >> 4
    v = p + head
    for x in range(threads):
        if x < head:
            out.append(p + x)
        indices: list[int] = []
        if kernel == "zero":
            indices = list(range(x, n_vec, threads))
        else:  # verify
            i = x
            while i + 3 * threads < n_vec:
                indices += [i, i + threads, i + 2 * threads, i + 3 * threads]
                i += 4 * threads
            while i < n_vec:
                indices.append(i)
                i += threads
        for i in indices:
            assert (v + 16 * i) % 16 == 0, "a vector access is not 16-byte aligned"
            out.extend(range(v + 16 * i, v + 16 * i + 16))
        tail_at = head + (n_vec << 4)
        if x < n - tail_at:
            out.append(p + tail_at + x)
    return out


@pytest.mark.parametrize("kernel", ["zero", "verify"])
@pytest.mark.parametrize("threads", [32])  # the arithmetic is the same for every multiple of 32
def test_every_byte_of_a_tile_exactly_once(kernel: str, threads: int) -> None:
    # every misalignment, every length past two rounds of four loads per thread
    for mis in range(16):
        for n in range(0, 16 * 8 * threads + 40, 1 if mis in (0, 1, 15) else 7):
            p = 0x7F0000000000 + mis
            touched = _tile_accesses(p, n, threads, kernel)
            assert sorted(touched) == list(range(p, p + n)), (mis, n)


def test_marker_kernel_sees_every_whole_aligned_word() -> None:
    for start in range(16):
        for n in range(0, 200):
            addr = 0x7F0000000000 + start
            first = (addr + 7) & ~7
            end = addr + n
            n_words = (end - first) >> 3 if first < end else 0
            words = [first + 8 * i for i in range(n_words)]
            expected = [w for w in range(first, end, 8) if w + 8 <= end]
            assert words == expected


def test_tiles_of_ranges_over_4gib_have_no_overflow() -> None:
    # u64 lengths and tile offsets: a 5 GiB range at a high, unaligned address, 1 MiB tiles
    start, length = (1 << 47) + 3, (5 << 30) + 9
    desc, n_tiles = build_descriptors([(start, length)])
    assert n_tiles == ((length + (1 << 20) - 1) >> 20)
    last = n_tiles - 1
    off = (last - int(desc[0, 2])) << DEFAULT_TILE_SHIFT
    assert length - off == 9  # the last tile holds the 9 bytes past 5 GiB
