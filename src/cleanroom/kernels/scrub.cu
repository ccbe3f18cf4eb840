// cleanroom scrub kernels: zero, verify-zero and marker search over a list of byte ranges.
//
// Shipped as package data and compiled at run time by NVRTC (CuPy RawModule on a GPU host,
// `cleanroom.kernels.compile_offline` in CI). No headers: NVRTC provides uint4 and the intrinsics.
//
// Range descriptor (one per range, three unsigned 64-bit words, uploaded by the host):
//   desc[3*i + 0]  device address of the first byte
//   desc[3*i + 1]  length in bytes (> 0)
//   desc[3*i + 2]  exclusive prefix sum of tile counts: first global tile index of range i
// A range of n bytes is cut into ceil(n / 2^tile_shift) tiles. Each thread block takes whole tiles
// (grid-stride over all tiles), finds its range by binary search over the prefix column, and sweeps
// the tile with 16-byte vector accesses; the head up to the first 16-byte boundary and the tail
// after the last whole vector are done byte by byte, so any address and length are accepted.
// One launch covers every range, however many there are.

typedef unsigned long long u64;

struct Tile {
    unsigned char* base;  // first byte of the tile
    u64 n;                // bytes in the tile
};

// Locate global tile `t`: the range is the last i with desc[3*i+2] <= t.
__device__ __forceinline__ Tile find_tile(const u64* __restrict__ desc, long long n_ranges, u64 t,
                                          unsigned tile_shift) {
    long long lo = 0, hi = n_ranges - 1;
    while (lo < hi) {
        long long mid = (lo + hi + 1) >> 1;
        if (desc[3 * mid + 2] <= t) lo = mid; else hi = mid - 1;
    }
    const u64 start = desc[3 * lo + 0];
    const u64 len = desc[3 * lo + 1];
    const u64 off = (t - desc[3 * lo + 2]) << tile_shift;
    const u64 tile_bytes = 1ull << tile_shift;
    Tile tile;
    tile.base = reinterpret_cast<unsigned char*>(start + off);
    tile.n = (len - off) < tile_bytes ? (len - off) : tile_bytes;
    return tile;
}

// The block shares one tile lookup through shared memory (one binary search per tile, not per thread).
__device__ __forceinline__ Tile shared_tile(const u64* __restrict__ desc, long long n_ranges, u64 t,
                                            unsigned tile_shift) {
    __shared__ unsigned char* s_base;
    __shared__ u64 s_n;
    __syncthreads();  // everyone is done with the previous tile's values
    if (threadIdx.x == 0) {
        Tile tile = find_tile(desc, n_ranges, t, tile_shift);
        s_base = tile.base;
        s_n = tile.n;
    }
    __syncthreads();
    Tile tile;
    tile.base = s_base;
    tile.n = s_n;
    return tile;
}

__device__ __forceinline__ u64 head_bytes(const unsigned char* p, u64 n) {
    const u64 mis = reinterpret_cast<u64>(p) & 15ull;
    const u64 head = mis ? 16ull - mis : 0ull;
    return head < n ? head : n;
}

extern "C" __global__ void cleanroom_zero_ranges(const u64* __restrict__ desc, long long n_ranges,
                                                 u64 n_tiles, unsigned tile_shift) {
    for (u64 t = blockIdx.x; t < n_tiles; t += gridDim.x) {
        const Tile tile = shared_tile(desc, n_ranges, t, tile_shift);
        unsigned char* p = tile.base;
        const u64 n = tile.n;
        const u64 head = head_bytes(p, n);
        if (threadIdx.x < head) p[threadIdx.x] = 0;
        const u64 n_vec = (n - head) >> 4;
        uint4* v = reinterpret_cast<uint4*>(p + head);
        const uint4 z = make_uint4(0u, 0u, 0u, 0u);
        // Streaming (evict-first) stores: zeros written once should not push live data out of L2.
        for (u64 i = threadIdx.x; i < n_vec; i += blockDim.x) __stcs(v + i, z);
        const u64 tail_at = head + (n_vec << 4);
        if (threadIdx.x < n - tail_at) p[tail_at + threadIdx.x] = 0;
    }
}

__device__ __forceinline__ unsigned nonzero_bytes4(unsigned w) {
    // __vcmpne4 sets each byte lane that differs from 0 to 0xff: popcount / 8 = non-zero bytes.
    return __popc(__vcmpne4(w, 0u)) >> 3;
}

__device__ __forceinline__ u64 nonzero_bytes16(uint4 v) {
    return nonzero_bytes4(v.x) + nonzero_bytes4(v.y) + nonzero_bytes4(v.z) + nonzero_bytes4(v.w);
}

// Sum a per-thread count over the block and add it to *out with one atomic per block.
__device__ __forceinline__ void block_add(u64 mine, u64* out) {
    __shared__ u64 s_sum;
    if (threadIdx.x == 0) s_sum = 0;
    __syncthreads();
    for (int off = 16; off > 0; off >>= 1) mine += __shfl_down_sync(0xffffffffu, mine, off);
    if ((threadIdx.x & 31) == 0 && mine) atomicAdd(&s_sum, mine);
    __syncthreads();
    if (threadIdx.x == 0 && s_sum) atomicAdd(out, s_sum);
}

// out[0] += number of non-zero bytes; out[1] = min(out[1], lowest address of a non-zero 16-byte
// word, or byte in a head or tail, that any thread saw first in its sweep). The host initialises out to {0, ~0}. Loads are streaming (__ldcs): the data
// is read once and should not evict the next tenant's working set from L2.
extern "C" __global__ void cleanroom_verify_ranges(const u64* __restrict__ desc, long long n_ranges,
                                                   u64 n_tiles, unsigned tile_shift, u64* out) {
    u64 count = 0;
    u64 first_bad = ~0ull;
    for (u64 t = blockIdx.x; t < n_tiles; t += gridDim.x) {
        const Tile tile = shared_tile(desc, n_ranges, t, tile_shift);
        const unsigned char* p = tile.base;
        const u64 n = tile.n;
        const u64 head = head_bytes(p, n);
        if (threadIdx.x < head && p[threadIdx.x]) {
            count += 1;
            first_bad = min(first_bad, reinterpret_cast<u64>(p + threadIdx.x));
        }
        const u64 n_vec = (n - head) >> 4;
        const uint4* v = reinterpret_cast<const uint4*>(p + head);
        u64 i = threadIdx.x;
        // Four independent loads in flight per thread before any is used.
        for (; i + 3 * blockDim.x < n_vec; i += 4 * blockDim.x) {
            const uint4 a = __ldcs(v + i);
            const uint4 b = __ldcs(v + i + blockDim.x);
            const uint4 c = __ldcs(v + i + 2 * blockDim.x);
            const uint4 d = __ldcs(v + i + 3 * blockDim.x);
            const u64 ka = nonzero_bytes16(a), kb = nonzero_bytes16(b);
            const u64 kc = nonzero_bytes16(c), kd = nonzero_bytes16(d);
            if (ka | kb | kc | kd) {  // rare: only a failed scrub gets here
                count += ka + kb + kc + kd;
                const u64 at = ka ? 0 : kb ? 1 : kc ? 2 : 3;
                first_bad = min(first_bad, reinterpret_cast<u64>(v + i + at * blockDim.x));
            }
        }
        for (; i < n_vec; i += blockDim.x) {
            const u64 k = nonzero_bytes16(__ldcs(v + i));
            if (k) {
                count += k;
                first_bad = min(first_bad, reinterpret_cast<u64>(v + i));
            }
        }
        const u64 tail_at = head + (n_vec << 4);
        if (threadIdx.x < n - tail_at && p[tail_at + threadIdx.x]) {
            count += 1;
            first_bad = min(first_bad, reinterpret_cast<u64>(p + tail_at + threadIdx.x));
        }
    }
    block_add(count, out);
    if (first_bad != ~0ull) atomicMin(out + 1, first_bad);
}

// out[0] += number of 8-byte-aligned 64-bit words w in the ranges with (w & mask) == pattern.
// Used by the cross-tenant leak probe: tenant A's words carry a random marker in their high bits.
// Only whole aligned words are examined (allocator blocks are 512-byte aligned).
extern "C" __global__ void cleanroom_count_marker_words(const u64* __restrict__ desc, long long n_ranges,
                                                        u64 n_tiles, unsigned tile_shift, u64 mask,
                                                        u64 pattern, u64* out) {
    u64 count = 0;
    for (u64 t = blockIdx.x; t < n_tiles; t += gridDim.x) {
        const Tile tile = shared_tile(desc, n_ranges, t, tile_shift);
        const u64 addr = reinterpret_cast<u64>(tile.base);
        const u64 first = (addr + 7ull) & ~7ull;
        const u64 end = addr + tile.n;
        if (first >= end) continue;
        const u64 n_words = (end - first) >> 3;
        const u64* w = reinterpret_cast<const u64*>(first);
        for (u64 i = threadIdx.x; i < n_words; i += blockDim.x) {
            if ((__ldcs(w + i) & mask) == pattern) count += 1;
        }
    }
    block_add(count, out);
}
