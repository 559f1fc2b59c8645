/* arch/arch_internal.h — shared by the arch/ sources only (not a public header).
 * One source of truth for every layer's dimensions and every parameter tensor:
 * the counter (count.c) and the model (model.c) both enumerate the same list
 * (params.c), so a parameter count can never disagree with what is allocated.
 */
#ifndef HLAB_ARCH_INTERNAL_H
#define HLAB_ARCH_INTERNAL_H

#include "arch/arch.h"

/* The resolved dimensions of layer l. */
typedef struct {
    char kind;          /* 'A', 'M' or 'P' */
    int attn, mamba;    /* which mixer branches exist (P: both) */
    int Hq, Hkv, dh;    /* attention branch */
    int H, P, Ns, G, K; /* Mamba branch: heads, head dim, state size, groups, conv width */
    int Di, Cc, Win;    /* d_inner = H·P, conv channels Di + 2·G·Ns, in_proj rows 2·Di + 2·G·Ns + H */
    hlab_channel channel;
} arch_layer;

void arch_layer_dims(const hlab_model_config *c, int l, arch_layer *out);

/* What each tensor is for; the model keeps a per-layer table role -> tensor. */
typedef enum {
    R_NORM1_W = 0, R_NORM1_B,
    R_QKV, R_QNORM, R_KNORM, R_AOUT,
    R_INPROJ, R_CONVW, R_CONVB, R_ALOG, R_DTBIAS, R_DSKIP, R_MNORM, R_MOUT,
    R_BETA_A, R_BETA_M, R_FUSEW,
    R_NORM2_W, R_NORM2_B,
    R_W13, R_W2,
    R_ROUTER, R_EW13, R_EW2, R_SW13, R_SW2,
    R_N_LAYER_ROLES,
    /* global tensors (layer = -1) */
    R_EMBED = R_N_LAYER_ROLES, R_FNORM_W, R_FNORM_B, R_HEAD,
    R_N_ROLES
} arch_role;

typedef enum {
    INIT_NORMAL = 0, /* N(0, 0.02) */
    INIT_NORMAL_OUT, /* N(0, 0.02/√(2L)): output projections of residual branches */
    INIT_ONES, INIT_ZEROS,
    INIT_A_LOG,      /* log U[1, 16] */
    INIT_DT_BIAS,    /* softplus⁻¹(Δ0), Δ0 = exp(U[log 1e-3, log 1e-1]) ≥ 1e-4 */
    INIT_CONV        /* U(±1/√K) */
} arch_init;

typedef struct {
    hlab_param_info info; /* offset assigned with decayed tensors first */
    arch_init init;
    arch_role role;
    int layer;            /* -1 for global tensors */
    int matrix;           /* read by the ops from the A-dtype mirror */
} arch_tensor;

/* Enumerates the tensors of a resolved config into out (when non-NULL, room for
 * max) and returns how many there are. Offsets: every decayed tensor first, in
 * enumeration order, then the rest. */
int arch_tensors(const hlab_model_config *c, arch_tensor *out, int max);

#endif
