/* tests/cuda/emu/sm90a_inc/kernels/cuda/common.cuh — stands in for kernels/cuda/common.cuh when
 * an sm_90a kernel file is compiled as host C++ under WG_EMU (see tests/cuda/emu/wgmma_emu.h):
 * CUDA keywords, built-in variables, warp intrinsics and bf16 on the fiber runtime, plus the few
 * CUDA runtime calls the probe's host code makes (memory is host memory, launches run emulated).
 */
#ifndef HLAB_TESTS_EMU_SM90A_COMMON_CUH
#define HLAB_TESTS_EMU_SM90A_COMMON_CUH

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/cuda/emu/fiber_rt.h"
#include "kernels/cuda/cuda_ops.h" /* the shim next to this file */

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__
#define __align__(n)
#define __launch_bounds__(...)
#define __restrict__ __restrict

#define threadIdx (emu_dim3((unsigned)emu_tid()))
#define blockIdx emu_block_idx
#define gridDim emu_grid_dim
#define blockDim emu_block_dim
typedef emu_dim3 dim3;

#define __syncthreads() emu_syncthreads()
#define __syncwarp(...) emu_warp_sync()
static inline float __shfl_xor_sync(unsigned, float v, int o) { return emu_shfl_xor(v, o); }
static inline float __shfl_sync(unsigned, float v, int l) { return emu_shfl(v, l); }
static inline int __shfl_xor_sync(unsigned, int v, int o) { return (int)emu_shfl_xor_u32((uint32_t)v, o); }
static inline int __shfl_sync(unsigned, int v, int l) { return (int)emu_shfl_u32((uint32_t)v, l); }
static inline unsigned __shfl_xor_sync(unsigned, unsigned v, int o) { return emu_shfl_xor_u32(v, o); }
static inline unsigned __shfl_sync(unsigned, unsigned v, int l) { return emu_shfl_u32(v, l); }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline float __uint_as_float(uint32_t u) { return emu_u2f(u); }
static inline uint32_t __float_as_uint(float f) { return emu_f2u(f); }
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __frcp_rn(float a) { return 1.0f / a; }

struct __nv_bfloat16 { uint16_t __x; };
struct __nv_bfloat162 { __nv_bfloat16 x, y; };
typedef __nv_bfloat16 hk_bf16;
static inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t u = emu_f2u(f);
    __nv_bfloat16 r;
    if ((u & 0x7fffffffu) > 0x7f800000u) r.__x = 0x7fc0;
    else r.__x = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return r;
}
static inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
static inline float __bfloat162float(__nv_bfloat16 b) { return emu_u2f((uint32_t)b.__x << 16); }
static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.__x; }
static inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return __nv_bfloat16{u}; }
static inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
    return __nv_bfloat162{__float2bfloat16_rn(lo), __float2bfloat16_rn(hi)};
}
static inline float ld(float x) { return x; }
static inline float ld(hk_bf16 x) { return __bfloat162float(x); }
template <typename T> T st(float x);
template <> inline float st<float>(float x) { return x; }
template <> inline hk_bf16 st<hk_bf16>(float x) { return __float2bfloat16_rn(x); }

/* CUDA runtime, enough for host code like wgmma_probe.cu's */
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
enum cudaDeviceAttr { cudaDevAttrComputeCapabilityMajor, cudaDevAttrComputeCapabilityMinor, cudaDevAttrMultiProcessorCount };
static inline cudaError_t cudaGetDevice(int *d) { return *d = 0, cudaSuccess; }
static inline cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int) {
    *v = a == cudaDevAttrComputeCapabilityMajor ? 9 : a == cudaDevAttrComputeCapabilityMinor ? 0 : 132;
    return cudaSuccess;
}
static inline cudaError_t cudaMalloc(void **p, size_t n) { return (*p = malloc(n)) ? cudaSuccess : cudaErrorMemoryAllocation; }
static inline cudaError_t cudaFree(void *p) { return free(p), cudaSuccess; }
static inline cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind) { return memcpy(d, s, n), cudaSuccess; }
static inline cudaError_t cudaMemset(void *d, int v, size_t n) { return memset(d, v, n), cudaSuccess; }
static inline cudaError_t cudaGetLastError() { return cudaSuccess; }
static inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
template <typename K> static inline cudaError_t cudaFuncSetAttribute(K, cudaFuncAttribute, int) { return cudaSuccess; }
#endif
