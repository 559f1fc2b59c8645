/* tests/cuda/emu/sm90a_inc/kernels/cuda/cuda_ops.h — stands in for kernels/cuda/cuda_ops.h under
 * WG_EMU: the CUDA types it needs and the backend services the sm_90a host code calls; the
 * emulator defines those functions (record what a launcher would report). */
#ifndef HLAB_TESTS_EMU_SM90A_CUDA_OPS_H
#define HLAB_TESTS_EMU_SM90A_CUDA_OPS_H
#include "kernels/kernels.h"
enum cudaError_t { cudaSuccess = 0, cudaErrorMemoryAllocation = 2, cudaErrorInvalidValue = 1 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
typedef void *cudaStream_t;
cudaStream_t hk_cuda_stream(hk_backend *hk);
int hk_cuda_record(hk_backend *hk, cudaError_t err, const char *what);
int hk_cuda_check_launch(hk_backend *hk, const char *what);
int hk_cuda_env_int(const char *name, int dflt);
int hk_cuda_cc(hk_backend *hk);
int hk_cuda_sm_count(hk_backend *hk);
void hk_cuda_fail(hk_backend *hk, int code, const char *fmt, ...);
#endif
