/* kernels/cuda/sm90a/sm90a_async.cuh — cp.async and named-barrier helpers for the sm_90a
 * kernels, with host-emulation hooks (WG_EMU: tests/cuda/emu/fiber_rt.h, included before).
 *
 *   wg_cp_async16(dst, src, bytes)  16-byte cp.async.cg to shared address dst; bytes < 16
 *                                   zero-fills the rest (0: all zeros, src not read)
 *   wg_cp_commit(), wg_cp_wait<n>() commit the group / wait until at most n groups are pending
 *   wg_bar_sync(id, n)              bar.sync id, n: n threads (multiple of 32) meet at barrier id
 *   wg_bar_arrive(id, n)            bar.arrive: count this warp in, do not wait
 * Barrier 0 is __syncthreads; kernels number their named barriers from 1.
 * cp.async data reaches wgmma only after wg_cp_wait, wg_fence_proxy_async() by the writer and
 * a barrier (wgmma.cuh).
 */
#ifndef HLAB_KERNELS_CUDA_SM90A_ASYNC_CUH
#define HLAB_KERNELS_CUDA_SM90A_ASYNC_CUH

#include <stdint.h>

#ifdef WG_EMU
static inline void wg_cp_async16(uint32_t dst, const void *src, uint32_t bytes) { emu_cp_async(dst, src, bytes, 16); }
static inline void wg_cp_commit() { emu_cp_commit(); }
template <int N> static inline void wg_cp_wait() { emu_cp_wait(N); }
static inline void wg_bar_sync(int id, int n) { emu_bar_sync(id, n); }
static inline void wg_bar_arrive(int id, int n) { emu_bar_arrive(id, n); }
#else
__device__ __forceinline__ void wg_cp_async16(uint32_t dst, const void *src, uint32_t bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes) : "memory");
}
__device__ __forceinline__ void wg_cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void wg_cp_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void wg_bar_sync(int id, int n) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}
__device__ __forceinline__ void wg_bar_arrive(int id, int n) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(n) : "memory");
}
#endif

#endif
