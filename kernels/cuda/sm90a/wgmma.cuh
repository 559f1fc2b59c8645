/* kernels/cuda/sm90a/wgmma.cuh — Hopper warpgroup MMA (wgmma) helpers for the sm_90a kernels.
 *
 * wgmma exists only for the arch-specific target sm_90a: files that include this header are
 * compiled for 90a alone (kernels/CMakeLists.txt, target hlab_cuda_sm90a) and their host code
 * checks for a compute-capability-9.0 device before it launches them.
 *
 * One wgmma computes a 64 × N tile (N = 64, 128, 256) with K = 16 for the 4 warps (128 threads)
 * of a warpgroup:
 *   - D, f32: warp w of the warpgroup owns rows 16w..16w+15; thread `lane` holds, for each
 *     8-column block j (0 ≤ j < N/8), d[4j + 0..3] = D[16w + lane/4 + {0, 0, 8, 8}]
 *     [8j + 2(lane%4) + {0, 1, 0, 1}]: the mma.sync m16n8 C layout repeated over N.
 *   - A from registers (`rs`): the warp's 16 × 16 block in the mma.sync m16n8k16 A layout
 *     (a[0] = rows lane/4, k 2(lane%4)..+1; a[1] = rows +8; a[2] = k +8; a[3] = rows +8, k +8).
 *     Two adjacent 8-column blocks of a D tile, rounded to bf16 pairs, are exactly such an A
 *     block (the FlashAttention P → A trick).
 *   - A and B from shared memory (`ss`, and B of `rs`) through 64-bit descriptors (wg_desc).
 *
 * Shared-memory layout used by every hlab sm_90a kernel: "SW128", tiles of rows of 64 bf16
 * (128 bytes) with the 16-byte chunk index XOR-ed by (row % 8) (wg_sw128_offset), each tile
 * 1024-byte aligned. Wider rows (dh 128) are stored as column slabs of 64, one after the other.
 *   - K-major operand (the contraction index runs along the 128-byte row: A = Q[rows][d] for
 *     Q·Kᵀ, B = K[keys][d]): descriptor of the tile's first row, LBO unused (16), SBO = 1024 (the
 *     next group of 8 rows); the k-th 16-wide K step adds 32·k bytes to the start address.
 *   - MN-major operand (the contraction index runs down the rows: B = V[keys][d] for P·V):
 *     tnsp = 1; SBO = 1024 (the next 8 rows of K), LBO = the byte distance between 64-column
 *     slabs (only read when N > 64); the k-th 16-row K step adds 2048·k bytes.
 * (PTX ISA, "Asynchronous Warpgroup Level Matrix Shared Memory Layout"; CUTLASS names these
 * the canonical K-major and MN-major SW128 layouts.)
 *
 * Ordering rules the kernels follow:
 *   - Shared memory written by threads (st.shared, cp.async) is visible to wgmma, which reads
 *     through the async proxy, only after wg_fence_proxy_async() by the writers and a barrier.
 *   - wg_arrive() (wgmma.fence) before the first wgmma that touches registers written since
 *     the last wgmma; wg_commit() closes a group; wg_wait<n>() waits until at most n groups
 *     are pending. Accumulators must not be read or written between issue and wait:
 *     wg_fence_operand() keeps the compiler from moving register uses across those points.
 *
 * Host emulation (tests/cuda/emu): with WG_EMU defined the wrappers call emu_wgmma_ss /
 * emu_wgmma_rs, which the emulator implements from the descriptor fields above.
 */
#ifndef HLAB_KERNELS_CUDA_SM90A_WGMMA_CUH
#define HLAB_KERNELS_CUDA_SM90A_WGMMA_CUH

#include <stdint.h>

/* Byte offset of element (row, col) (col < 64) inside an SW128 tile. */
__host__ __device__ __forceinline__ uint32_t wg_sw128_offset(int row, int col) {
    return (uint32_t)row * 128u + ((uint32_t)((col >> 3) ^ (row & 7)) << 4) + (uint32_t)(col & 7) * 2u;
}

enum { WG_SWIZZLE_NONE = 0, WG_SWIZZLE_128B = 1, WG_SWIZZLE_64B = 2, WG_SWIZZLE_32B = 3 };

/* Descriptor of a shared-memory operand: start address, leading and stride byte offsets (all
 * multiples of 16), swizzle mode in bits 62-63; base offset 0 (tiles are 1024-byte aligned). */
__host__ __device__ __forceinline__ uint64_t wg_desc(uint32_t smem_addr, uint32_t lbo_bytes, uint32_t sbo_bytes,
                                                     int swizzle) {
    return (uint64_t)((smem_addr >> 4) & 0x3FFFu) | ((uint64_t)((lbo_bytes >> 4) & 0x3FFFu) << 16) |
           ((uint64_t)((sbo_bytes >> 4) & 0x3FFFu) << 32) | ((uint64_t)(swizzle & 3) << 62);
}

/* The two layouts above. `k` is the 16-wide step along the contraction dimension. */
__host__ __device__ __forceinline__ uint64_t wg_desc_kmajor(uint32_t tile_addr, int k) {
    return wg_desc(tile_addr + 32u * (uint32_t)k, 16u, 1024u, WG_SWIZZLE_128B);
}
__host__ __device__ __forceinline__ uint64_t wg_desc_mnmajor(uint32_t tile_addr, int k, uint32_t slab_bytes) {
    return wg_desc(tile_addr + 2048u * (uint32_t)k, slab_bytes, 1024u, WG_SWIZZLE_128B);
}

template <int N> struct wg_mma; /* ss<TA, TB>(d, da, db, scale_d), rs<TB>(d, a, db, scale_d) */

#ifdef WG_EMU
/* Implemented by the host emulator: the warpgroup's 128 threads call in together. */
void emu_wgmma_ss(int n, int ta, int tb, float *d, uint64_t da, uint64_t db, int scale_d);
void emu_wgmma_rs(int n, int tb, float *d, const uint32_t *a, uint64_t db, int scale_d);
void emu_wgmma_arrive();
void emu_wgmma_commit();
void emu_wgmma_wait(int n);
void emu_fence_proxy_async();
template <int N> struct wg_mma {
    template <int TA, int TB> static void ss(float (&d)[N / 2], uint64_t da, uint64_t db, int scale_d) {
        emu_wgmma_ss(N, TA, TB, d, da, db, scale_d);
    }
    template <int TB> static void rs(float (&d)[N / 2], const uint32_t (&a)[4], uint64_t db, int scale_d) {
        emu_wgmma_rs(N, TB, d, a, db, scale_d);
    }
};
static inline uint32_t wg_smem_addr(const void *p) { return emu_smem_addr(p); }
static inline void wg_arrive() { emu_wgmma_arrive(); }
static inline void wg_commit() { emu_wgmma_commit(); }
template <int Pending> static inline void wg_wait() { emu_wgmma_wait(Pending); }
static inline void wg_fence_proxy_async() { emu_fence_proxy_async(); }
template <typename T> static inline void wg_fence_operand(T &) {}
#else
#include "kernels/cuda/sm90a/wgmma_gen.inc"

__device__ __forceinline__ uint32_t wg_smem_addr(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void wg_arrive() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int Pending> __device__ __forceinline__ void wg_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(Pending) : "memory");
}
__device__ __forceinline__ void wg_fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
__device__ __forceinline__ void wg_fence_operand(float &r) { asm volatile("" : "+f"(r)::"memory"); }
__device__ __forceinline__ void wg_fence_operand(uint32_t &r) { asm volatile("" : "+r"(r)::"memory"); }
template <int N> __device__ __forceinline__ void wg_fence_operand(float (&r)[N]) {
#pragma unroll
    for (int i = 0; i < N; i++) wg_fence_operand(r[i]);
}
#endif

#endif /* HLAB_KERNELS_CUDA_SM90A_WGMMA_CUH */
