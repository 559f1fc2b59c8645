/* kernels/cuda/sm90a/attention_sm90a.h — the wgmma (sm_90a) attention kernels, internal to the
 * CUDA backend. attention.cu calls them first for bf16 inputs with dh 64 or 128 and falls back
 * to its mma.sync kernels when they return 0.
 *
 * Each returns 1 when it launched its kernels (errors, if any, recorded on hk as usual) and 0
 * when it launched nothing: device not compute capability 9.0, HLAB_ATTN_WGMMA=0 in the
 * environment, or a shape it does not take. Same arguments as the mma.sync launchers in
 * attention.cu; `parts` is attention.cu's ATT_PART_DKDV | ATT_PART_DQ mask (bench hook).
 */
#ifndef HLAB_KERNELS_CUDA_SM90A_ATTENTION_SM90A_H
#define HLAB_KERNELS_CUDA_SM90A_ATTENTION_SM90A_H

#include "kernels/cuda/cuda_ops.h"

/* Which backward kernels attention_bwd launches (HLAB_ATTN_BWD_PART, a timing hook). */
enum { ATT_PART_ROWDOT = 1, ATT_PART_DKDV = 2, ATT_PART_DQ = 4, ATT_PART_ALL = 7 };

#ifdef HLAB_HAVE_SM90A
int hk_cuda_attn_fwd_sm90a(hk_backend *hk, void *out, void *lse, const void *qkv, hk_attn_dims d);
int hk_cuda_attn_bwd_sm90a(hk_backend *hk, void *dqkv, const void *dout, const void *lse, const float *Dv,
                           const void *qkv, hk_attn_dims d, int parts);
#else /* a build without sm_90a code (HLAB_CUDA_ARCHS without 90): always the mma.sync kernels */
static inline int hk_cuda_attn_fwd_sm90a(hk_backend *, void *, void *, const void *, hk_attn_dims) { return 0; }
static inline int hk_cuda_attn_bwd_sm90a(hk_backend *, void *, const void *, const void *, const float *,
                                         const void *, hk_attn_dims, int) {
    return 0;
}
#endif

/* 1 where the sm_90a kernels may run: a CC 9.0 device and HLAB_ATTN_WGMMA not 0. */
static inline int hk_cuda_sm90a_enabled(hk_backend *hk) {
    return hk_cuda_cc(hk) == 90 && hk_cuda_env_int("HLAB_ATTN_WGMMA", 1) != 0;
}

#endif
