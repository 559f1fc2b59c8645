/* tests/cuda/emu/shim/kernels/cuda/common.cuh — stands in for kernels/cuda/common.cuh when
 * ssd_fast_fwd_emu.cpp compiles the SSD kernels as host C++ (SF_EMU): CUDA types and
 * intrinsics as plain C++, the warp/block primitives implemented by the harness. */
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <algorithm>
#include "kernels/kernels.h"
using std::min;
using std::max;
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
struct dim3 { unsigned x = 1, y = 1, z = 1; dim3() {} dim3(unsigned a, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {} };
extern thread_local dim3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
typedef int cudaError_t;
typedef void *cudaStream_t;
enum { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
template <typename K> int cudaFuncSetAttribute(K, int, int) { return 0; }
int hk_cuda_record(hk_backend *hk, cudaError_t err, const char *what);
void hk_cuda_fail(hk_backend *hk, int code, const char *fmt, ...);
struct hk_bf16 { uint16_t x; };
struct __nv_bfloat162 { hk_bf16 x, y; };
struct float2 { float x, y; };
struct float4 { float x, y, z, w; };
struct uint4 { unsigned x, y, z, w; };
inline float2 make_float2(float a, float b) { return {a, b}; }
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return {a, b, c, d}; }
struct alignas(8) uint2 { unsigned x, y; };
inline uint2 make_uint2(unsigned a, unsigned b) { return {a, b}; }
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
inline float __uint_as_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
inline uint32_t __float_as_uint(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
inline hk_bf16 __float2bfloat16_rn(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return {(uint16_t)((u >> 16) | 0x40)};
    u += 0x7fffu + ((u >> 16) & 1u);
    return {(uint16_t)(u >> 16)};
}
inline float __bfloat162float(hk_bf16 b) { return __uint_as_float((uint32_t)b.x << 16); }
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) { return {__float2bfloat16_rn(a), __float2bfloat16_rn(b)}; }
inline float __low2float(__nv_bfloat162 v) { return __bfloat162float(v.x); }
inline float __high2float(__nv_bfloat162 v) { return __bfloat162float(v.y); }
inline uint16_t __bfloat16_as_ushort(hk_bf16 b) { return b.x; }
inline float ld(float x) { return x; }
inline float ld(hk_bf16 x) { return __bfloat162float(x); }
/* warp / block primitives (sf_emu.cpp) */
void __syncthreads();
void __syncwarp(unsigned mask = 0xffffffffu);
float __shfl_xor_sync(unsigned, float v, int o);
float __shfl_up_sync(unsigned, float v, int d);
float __shfl_sync(unsigned, float v, int src);
void sf_emu_mma(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1);
void sf_emu_ldsm4(uint32_t r[4], const void *p, bool trans);
void sf_emu_cp(void *dst, const void *src, int bytes, bool valid);
void sf_emu_cp_commit();
void sf_emu_cp_wait(int n);
void sf_emu_bar(int id, int count);
unsigned char *sf_emu_smem();
