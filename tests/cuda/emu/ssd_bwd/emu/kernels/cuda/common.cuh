/* Fake CUDA environment for the host emulation: every CUDA thread a ucontext fiber. */
#ifndef EMU_COMMON_CUH
#define EMU_COMMON_CUH
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
extern "C" {
#include "kernels/kernels.h"
}
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __restrict__
struct uint3 { unsigned x, y, z; };
struct dim3 { unsigned x, y, z; dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {} };
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
static inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return {a, b, c, d}; }
static inline float2 make_float2(float a, float b) { return {a, b}; }
static inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
typedef int cudaStream_t;
typedef int cudaError_t;
enum { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
template <typename K> static inline int cudaFuncSetAttribute(K, int, int) { return 0; }
struct __nv_bfloat16 { uint16_t x; };
struct __nv_bfloat162 { __nv_bfloat16 x, y; };
static inline float __uint_as_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t __float_as_uint(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return {(uint16_t)((u >> 16) | 0x40)};
    u += 0x7fffu + ((u >> 16) & 1u);
    return {(uint16_t)(u >> 16)};
}
static inline float __bfloat162float(__nv_bfloat16 b) { return __uint_as_float((uint32_t)b.x << 16); }
static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.x; }
static inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) { return {__float2bfloat16_rn(a), __float2bfloat16_rn(b)}; }
static inline float __low2float(__nv_bfloat162 v) { return __bfloat162float(v.x); }
static inline float __high2float(__nv_bfloat162 v) { return __bfloat162float(v.y); }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
typedef __nv_bfloat16 hk_bf16;
/* runtime (emu.cpp) */
void emu_syncthreads();
void emu_syncwarp();
float emu_shfl(float v, int mode, int arg); /* 0 xor, 1 up, 2 idx */
void emu_mma(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1);
#define sf_emu_mma emu_mma
void sf_emu_ldsm4(uint32_t *r, const void *p, bool trans);
/* cp.async: the destination is NaN-poisoned at issue and written at the wait that covers it, so
 * reading before the wait, or issuing into a buffer another thread still reads, shows as NaN */
void sf_emu_cp(void *dst, const void *src, int bytes, bool valid);
void sf_emu_cp_commit();
void sf_emu_cp_wait_n(int n);
#define sf_emu_cp_wait(n) sf_emu_cp_wait_n(n)
void sf_emu_bar(int id, int count);
unsigned char *sf_emu_smem();
#define __syncthreads() emu_syncthreads()
#define __syncwarp() emu_syncwarp()
static inline float __shfl_xor_sync(unsigned, float v, int m) { return emu_shfl(v, 0, m); }
static inline float __shfl_up_sync(unsigned, float v, int m) { return emu_shfl(v, 1, m); }
static inline float __shfl_sync(unsigned, float v, int m) { return emu_shfl(v, 2, m); }
extern unsigned char *emu_smem;
cudaStream_t hk_cuda_stream(hk_backend *hk);
int hk_cuda_record(hk_backend *hk, cudaError_t err, const char *what);
int hk_cuda_check_launch(hk_backend *hk, const char *what);
void *hk_cuda_scratch(hk_backend *hk, size_t bytes);
void hk_cuda_fail(hk_backend *hk, int code, const char *fmt, ...);
void hk_cuda_ssd_bwd(hk_backend *, void *, void *, void *, void *, void *, const void *, const void *, const void *,
                     const void *, const void *, const void *, const void *, hk_ssd_dims);

static inline float ld(float x) { return x; }
static inline float ld(hk_bf16 x) { return __bfloat162float(x); }
template <typename T> static inline T st(float x);
template <> inline float st<float>(float x) { return x; }
template <> inline hk_bf16 st<hk_bf16>(float x) { return __float2bfloat16_rn(x); }
static inline float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
static inline float block_sum(float v) {
    __shared__ float part[32];
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    float t = lane < nw ? part[lane] : 0.0f;
    return warp_sum(t);
}
/* launch: run every block, every thread a fiber */
void emu_run_grid(dim3 grid, dim3 block, size_t smem, void (*body)(void *), void *arg);
template <typename F, typename... A> static void emu_launch(F kernel, dim3 grid, dim3 block, size_t smem, cudaStream_t, A... args) {
    auto call = [&]() { kernel(args...); };
    emu_run_grid(grid, block, smem, [](void *p) { (*(decltype(call) *)p)(); }, &call);
}
#endif
