/* arch/arch.h — what a design point is: its config, its layout, its parameters
 * (shapes, init, exact counts), its training FLOPs and activation memory, and
 * the model's forward and backward composed from the kernels/ ops.
 * The maths is ../shared/docs/MODEL.md; where this code and that page disagree,
 * one of them is a bug.
 */
#ifndef HLAB_ARCH_H
#define HLAB_ARCH_H

#include <stdint.h>

#include "common/hlab.h"
#include "kernels/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HLAB_MAX_LAYERS 256

typedef enum { HLAB_NORM_RMS = 0, HLAB_NORM_LAYER = 1 } hlab_norm_kind;
typedef enum { HLAB_FUSION_SEQUENTIAL = 0, HLAB_FUSION_PARALLEL = 1 } hlab_fusion;
typedef enum { HLAB_FUSE_ADD = 0, HLAB_FUSE_MEAN, HLAB_FUSE_NORMADD, HLAB_FUSE_CONCAT, HLAB_FUSE_GATE } hlab_fuse_op;
typedef enum { HLAB_CHANNEL_DENSE = 0, HLAB_CHANNEL_MOE = 1, HLAB_CHANNEL_NONE = 2 } hlab_channel;
typedef enum {
    HLAB_PLACE_UNIFORM = 0, HLAB_PLACE_FRONT, HLAB_PLACE_MIDDLE, HLAB_PLACE_BACK, HLAB_PLACE_INDICES
} hlab_placement;

/* One design point's model. Fields set to 0 / -1 where documented take
 * defaults in hlab_model_config_resolve(). */
typedef struct {
    int d_model;        /* D */
    int n_layers;       /* L */
    int vocab_size;     /* V (256 for byte data) */
    int tied_head;      /* 1 (default): W_head = E */
    hlab_norm_kind norm;
    float norm_eps;     /* 1e-5 */

    /* Layout: either given as a string over {A, M, P} of length L (P = a parallel
     * layer with both branches), or derived from ratio + placement. fusion ==
     * PARALLEL with no layout string makes every layer P. */
    char layout[HLAB_MAX_LAYERS + 1]; /* "" = derive */
    int ratio_attn, ratio_mamba;      /* a:m, e.g. 1:5; 0:1 pure Mamba-2; 1:0 pure attention */
    hlab_placement placement;
    int attn_indices[HLAB_MAX_LAYERS]; /* placement == INDICES */
    int n_attn_indices;
    hlab_fusion fusion;
    hlab_fuse_op fuse_op;              /* parallel layers only */

    /* attention (A layers) */
    int n_heads;       /* Hq; 0 = d_model / head_dim */
    int n_kv_heads;    /* Hkv; 0 = n_heads */
    int head_dim;      /* dh, default 64 */
    int qk_norm;       /* 0/1 */
    int rope;          /* 1 (default) / 0 */
    float rope_theta;  /* 10000 */
    int window;        /* 0 = full causal */

    /* parallel (P layers): branch split */
    int par_attn_heads;    /* query heads of the attention branch; 0 = n_heads / 2 */
    int par_attn_kv_heads; /* 0 = max(1, par_attn_heads * n_kv_heads / n_heads) */
    int par_mamba_heads;   /* Mamba branch heads; its d_inner = par_mamba_heads · mamba_headdim; 0 = d_model / headdim */

    /* Mamba-2 (M layers) */
    int mamba_expand;   /* e, default 2: d_inner = e·D */
    int mamba_headdim;  /* P, 64 */
    int mamba_d_state;  /* N, 128 */
    int mamba_groups;   /* G, 1 */
    int mamba_conv;     /* K, 4 */
    int mamba_chunk;    /* Q, 256 */

    /* channel sublayer per layer kind */
    hlab_channel channel_attn, channel_mamba, channel_parallel;
    int d_ff;           /* 0 = 8/3·D rounded up to a multiple of 64 */

    /* MoE (channel == MOE) */
    int moe_experts;    /* E */
    int moe_top_k;      /* k */
    int moe_shared;     /* shared experts */
    int moe_d_ff;       /* 0 = d_ff */
    int moe_renorm;     /* 1 */
    float moe_aux_alpha;/* 0.01 */
} hlab_model_config;

void hlab_model_config_defaults(hlab_model_config *c);
/* Fills derived fields (layout, heads, d_ff, ...) and validates everything.
 * Errors name the field and the rule broken, e.g.
 * "model.d_model 500 is not divisible by model.head_dim 64". */
int hlab_model_config_resolve(hlab_model_config *c, hlab_err *err);
/* Derives a layout string over {A, M} from ratio a:m and placement (see README). */
int hlab_layout_derive(int n_layers, int ratio_attn, int ratio_mamba, hlab_placement placement,
                       const int *indices, int n_indices, char *out, hlab_err *err);
/* The resolved config as JSON text (every field, stable key order). */
int hlab_model_config_to_json(const hlab_model_config *c, hlab_buf *out, hlab_err *err);
const char *hlab_norm_name(hlab_norm_kind k);      /* "rmsnorm", "layernorm" */
const char *hlab_fuse_op_name(hlab_fuse_op f);     /* "add", "mean", "normadd", "concat", "gate" */
const char *hlab_channel_name(hlab_channel c);     /* "dense", "moe", "none" */
const char *hlab_placement_name(hlab_placement p); /* "uniform", "front", "middle", "back", "indices" */
/* Parse helpers for the YAML front ends: return HLAB_OK or HLAB_EINVAL. */
int hlab_norm_parse(const char *s, hlab_norm_kind *out);
int hlab_fuse_op_parse(const char *s, hlab_fuse_op *out);
int hlab_channel_parse(const char *s, hlab_channel *out);
int hlab_placement_parse(const char *s, hlab_placement *out);

/* ---- counting (MODEL.md §8), on a resolved config -------------------------- */
typedef struct {
    int64_t params;              /* total, tied embedding counted once */
    int64_t params_embedding;    /* E (and W_head when untied) */
    int64_t params_non_embedding;
    int64_t params_active;       /* per token with MoE: routed experts counted k of E */
    double fwd_matmul_flops_per_token;    /* 2·MAC of every matrix product, forward */
    double fwd_attn_flops_per_token;      /* scores + values, causal half / window */
    double fwd_ssd_flops_per_token;       /* chunked SSD terms */
    double train_flops_per_token;         /* 3 × (matmul + attn + ssd) forward */
    double elementwise_flops_per_token;   /* reported apart, left out of MFU */
    double infer_bytes_per_token;         /* KV cache + SSM state bytes per token at seq_len (bf16) */
} hlab_counts;
int hlab_count(const hlab_model_config *c, int seq_len, hlab_counts *out, hlab_err *err);
/* Bytes of activations kept for backward at batch B, length T, act dtype size. */
int64_t hlab_activation_bytes(const hlab_model_config *c, int B, int T, int act_bytes);

/* ---- the model on a backend ------------------------------------------------ */
typedef struct hlab_model hlab_model;

typedef struct {
    char name[96];    /* e.g. "layers.3.mamba.in_proj.weight" (README lists them all) */
    int ndim;
    int shape[4];
    int64_t offset;   /* elements from the start of the parameter block */
    int64_t numel;
    int decay;        /* 1: weight decay applies (matrices, conv weights) */
} hlab_param_info;

/* Plans and allocates everything for batch B × length T once (no allocation per step). */
hlab_model *hlab_model_create(const hlab_model_config *c, hk_backend *hk, int B, int T, hlab_err *err);
void hlab_model_destroy(hlab_model *m); /* NULL-safe */
/* MODEL.md §7 init from a seed (host RNG, so identical on every backend). */
int hlab_model_init(hlab_model *m, uint64_t seed, hlab_err *err);
const hlab_model_config *hlab_model_config_of(const hlab_model *m);
int hlab_model_n_params(const hlab_model *m, int *n_tensors, int64_t *n_elements);
const hlab_param_info *hlab_model_param(const hlab_model *m, int i);
/* Parameters are laid out with every decayed tensor first: elements
 * [0, n_decay) take weight decay, [n_decay, n_elements) do not. */
int64_t hlab_model_n_decay(const hlab_model *m);
/* Device buffers (R) of n_elements each: master weights, grads. mirror is the
 * A-dtype copy the ops read matrices from (== params when A == R). */
void *hlab_model_params(hlab_model *m);
void *hlab_model_grads(hlab_model *m);
void *hlab_model_mirror(hlab_model *m);
/* Call after writing params directly (init, checkpoint load): refreshes mirror. */
void hlab_model_params_changed(hlab_model *m);

/* Forward on host tokens/targets [B*T] (int32, uploaded here). With targets,
 * *loss gets the mean cross-entropy + Σ MoE aux (and *aux the aux part alone;
 * either pointer may be NULL: with both NULL nothing is read back, see
 * hlab_model_loss_dev). With targets and both pointers NULL the forward is a
 * training forward: it also writes the logits' gradient in the same pass
 * (xent_fwd_bwd), which the next hlab_model_backward uses. targets == NULL:
 * logits only. Rows used: Bn ≤ B. */
int hlab_model_forward(hlab_model *m, const int32_t *tokens, const int32_t *targets, int Bn, float *loss,
                       float *aux, hlab_err *err);
/* Backward of the last forward (with targets); grads accumulate (+=).
 * Call hlab_model_zero_grads before the first micro-batch of a step. */
int hlab_model_backward(hlab_model *m, hlab_err *err);
void hlab_model_zero_grads(hlab_model *m);
/* Per-token losses of the last forward, host copy (N = Bn*T floats). */
int hlab_model_token_losses(hlab_model *m, float *out, hlab_err *err);
/* The last forward's loss (mean CE + Σ MoE aux) in double precision: the
 * float64 finite-difference tests need more digits than *loss carries. Reads
 * it back from the device (a sync on a GPU). */
double hlab_model_last_loss(const hlab_model *m);
/* The same, left on the device: F64 [2] {loss, aux part} in backend memory,
 * written by every forward with targets (hk->loss_reduce). Forwards with
 * loss == aux == NULL never wait for the device: a training step reads this
 * at its end instead. */
const void *hlab_model_loss_dev(const hlab_model *m);
hk_backend *hlab_model_backend(hlab_model *m);

#ifdef __cplusplus
}
#endif

#endif
