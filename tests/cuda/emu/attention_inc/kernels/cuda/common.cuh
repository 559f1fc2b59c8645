/* tests/cuda/emu/attention_inc/kernels/cuda/common.cuh — stands in for the real common.cuh when
 * tests/cuda/emu/attention.cpp compiles kernels/cuda/attention.cu as host C++ (ATT_EMU). */
#ifndef ATT_EMU_COMMON_CUH
#define ATT_EMU_COMMON_CUH
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__
#define __align__(n)
#define __launch_bounds__(...)

struct emu_dim3 { unsigned x, y, z; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
int emu_tid();
extern emu_dim3 emu_block_idx, emu_grid_dim;
#define threadIdx (emu_dim3{(unsigned)emu_tid(), 0u, 0u})
#define blockIdx emu_block_idx
#define gridDim emu_grid_dim
#define blockDim (emu_dim3{128u, 1u, 1u})

void emu_warp_sync();
void emu_syncthreads();
float emu_shfl_xor(float v, int o);
#define __syncthreads() emu_syncthreads()
#define __syncwarp() emu_warp_sync()
static inline float __shfl_xor_sync(unsigned, float v, int o) { return emu_shfl_xor(v, o); }
static inline float __shfl_sync(unsigned, float, int) { abort(); }
static inline int min(int a, int b) { return a < b ? a : b; }

struct hk_bf16 { uint16_t u; };
struct __nv_bfloat162 { hk_bf16 x, y; };
static inline hk_bf16 __float2bfloat16_rn(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    hk_bf16 r;
    if ((u & 0x7fffffffu) > 0x7f800000u) r.u = 0x7fc0;
    else r.u = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return r;
}
static inline float __bfloat162float(hk_bf16 b) {
    uint32_t u = (uint32_t)b.u << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
    return __nv_bfloat162{__float2bfloat16_rn(lo), __float2bfloat16_rn(hi)};
}
static inline float ld(float x) { return x; }
static inline float ld(hk_bf16 x) { return __bfloat162float(x); }
template <typename T> T st(float x);
template <> inline float st<float>(float x) { return x; }
template <> inline hk_bf16 st<hk_bf16>(float x) { return __float2bfloat16_rn(x); }
static inline float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += emu_shfl_xor(v, o);
    return v;
}
static inline float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, emu_shfl_xor(v, o));
    return v;
}

/* PTX helpers of attention.cu (emulated in tests/cuda/emu/attention.cpp) */
void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1);
void ldsm4(uint32_t r[4], uint32_t a);
void ldsm4_t(uint32_t r[4], uint32_t a);
uint32_t smem_u32(const void *p);
void cp_async16_u32(uint32_t smem, const void *gmem, uint32_t bytes);
void cp_async4(float *smem, const float *gmem, uint32_t bytes);
void cp_commit();
void emu_cp_wait(int n);
template <int N> inline void cp_wait() { emu_cp_wait(N); }
static inline uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return (uint32_t)v.x.u | ((uint32_t)v.y.u << 16);
}
#endif
