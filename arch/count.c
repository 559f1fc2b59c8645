/* arch/count.c — exact parameter counts, FLOPs per token and memory estimates
 * of a resolved config (MODEL.md §8; docs/ARCH.md gives every formula).
 * Conventions: a multiply-accumulate is 2 FLOPs; everything is per token of a
 * training sequence of length T; parameter counts come from the same tensor
 * list the model allocates (params.c), so they cannot disagree with it.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "arch/arch_internal.h"

/* Mean number of keys a query sees: Σ_t min(t+1, W) / T (W = 0: full causal, (T+1)/2). */
static double mean_keys(int T, int W) {
    double s = 0;
    for (int t = 0; t < T; t++) s += (W > 0 && t + 1 > W) ? W : t + 1;
    return s / T;
}

/* Mean number of same-chunk positions s <= t (the intra-chunk causal half). */
static double mean_in_chunk(int T, int Q) {
    long long full = T / Q, r = T % Q;
    return ((double)full * Q * (Q + 1) / 2 + (double)r * (r + 1) / 2) / T;
}

int hlab_count(const hlab_model_config *c, int T, hlab_counts *o, hlab_err *err) {
    memset(o, 0, sizeof *o);
    if (T < 1) return hlab_fail(err, HLAB_EINVAL, "train.seq_len %d must be positive", T);
    if ((int)strlen(c->layout) != c->n_layers || c->d_ff < 1)
        return hlab_fail(err, HLAB_EINVAL, "hlab_count needs a resolved config (call hlab_model_config_resolve first)");
    int n = arch_tensors(c, NULL, 0);
    arch_tensor *ts = malloc((size_t)n * sizeof *ts);
    if (!ts) return hlab_fail(err, HLAB_ENOMEM, "out of memory listing %d parameter tensors", n);
    arch_tensors(c, ts, n);
    for (int i = 0; i < n; i++) {
        o->params += ts[i].info.numel;
        if (ts[i].role == R_EMBED || ts[i].role == R_HEAD) o->params_embedding += ts[i].info.numel;
    }
    free(ts);
    o->params_non_embedding = o->params - o->params_embedding;
    o->params_active = o->params;

    const double D = c->d_model, V = c->vocab_size, Tk = T;
    double mm = 0, attn = 0, ssd = 0, elt = 0, infer = 0;
    for (int l = 0; l < c->n_layers; l++) {
        arch_layer d;
        arch_layer_dims(c, l, &d);
        elt += 5 * D + D; /* norm1, residual add */
        if (d.attn) {
            double keys = mean_keys(T, c->window), qkvw = (double)(d.Hq + 2 * d.Hkv) * d.dh;
            mm += 2 * D * qkvw + 2 * (double)d.Hq * d.dh * D;
            attn += 4.0 * d.Hq * d.dh * keys; /* q·kᵀ and p·v over the visible keys */
            elt += 5.0 * d.Hq * keys + (c->rope ? 6.0 * (d.Hq + d.Hkv) * d.dh : 0) +
                   (c->qk_norm ? 5.0 * (d.Hq + d.Hkv) * d.dh : 0);
            int kv_tokens = c->window > 0 && c->window < T ? c->window : T;
            infer += 2.0 * 2 * d.Hkv * d.dh * kv_tokens / Tk; /* k and v, bf16, cache length min(W, T) */
        }
        if (d.mamba) {
            double qbar = mean_in_chunk(T, c->mamba_chunk), nch = (T + c->mamba_chunk - 1) / c->mamba_chunk;
            double HP = (double)d.H * d.P;
            mm += 2 * D * d.Win + 2 * (double)d.Di * D;
            /* the chunked kernel (kernels/cpu/ssd.c) computes the C·Bᵀ scores per head */
            ssd += 2.0 * d.H * d.Ns * qbar     /* C_t·B_s scores inside the chunk, causal half */
                   + 2.0 * HP * qbar           /* scores × Δ x summed into y inside the chunk */
                   + 2.0 * HP * d.Ns           /* chunk state Σ_s decay·x_s ⊗ B_s */
                   + 2.0 * HP * d.Ns           /* y += C_t · state entering the chunk */
                   + 2.0 * HP * d.Ns * nch / Tk; /* state passing between chunks */
            elt += 2.0 * d.K * d.Cc + 5.0 * d.Cc + 10.0 * d.H + 12.0 * d.Di;
            infer += 2.0 * ((double)d.H * d.P * d.Ns + (double)(d.K - 1) * d.Cc) / Tk;
        }
        if (d.kind == 'P') {
            if (c->fuse_op == HLAB_FUSE_CONCAT) mm += 2 * 2 * D * D;
            if (c->fuse_op == HLAB_FUSE_GATE) mm += 2 * D * D;
            elt += c->fuse_op == HLAB_FUSE_NORMADD ? 12 * D : c->fuse_op == HLAB_FUSE_GATE ? 6 * D : 2 * D;
        }
        if (d.channel == HLAB_CHANNEL_DENSE) {
            mm += 2 * D * 2.0 * c->d_ff + 2 * (double)c->d_ff * D;
            elt += 6 * D + 6.0 * c->d_ff;
        } else if (d.channel == HLAB_CHANNEL_MOE) {
            double F = c->moe_d_ff, E = c->moe_experts, k = c->moe_top_k, S = c->moe_shared;
            mm += 2 * D * E + (k + S) * (2 * D * 2 * F + 2 * F * D);
            elt += 6 * D + 5 * E + (k + S) * 6 * F + 2 * (k + S) * D;
            o->params_active -= (int64_t)(c->moe_experts - c->moe_top_k) * 3 * c->moe_d_ff * c->d_model;
        }
    }
    mm += 2 * D * V; /* the head, tied or not */
    elt += 5 * D + 5 * V;
    o->fwd_matmul_flops_per_token = mm;
    o->fwd_attn_flops_per_token = attn;
    o->fwd_ssd_flops_per_token = ssd;
    o->train_flops_per_token = 3 * (mm + attn + ssd);
    o->elementwise_flops_per_token = elt;
    o->infer_bytes_per_token = infer;
    return HLAB_OK;
}

/* Activation elements kept per token for backward (docs/ARCH.md), times B·T. */
int64_t hlab_activation_bytes(const hlab_model_config *c, int B, int T, int act_bytes) {
    if ((int)strlen(c->layout) != c->n_layers || T < 1 || B < 1) return 0;
    const double D = c->d_model;
    double per_tok = D; /* embedding output */
    /* backward scratch, shared by the layers: the widest of each kind */
    double s1 = 2 * D, s2 = D, s3 = D, cc = 0, hh = 0;
    for (int l = 0; l < c->n_layers; l++) {
        arch_layer d;
        arch_layer_dims(c, l, &d);
        double w = d.attn ? (double)(d.Hq + 2 * d.Hkv) * d.dh : 0, hd = d.attn ? (double)d.Hq * d.dh : 0;
        double di = d.mamba ? d.Di : 0, f = d.channel == HLAB_CHANNEL_DENSE ? c->d_ff : 0;
        s1 = fmax(s1, fmax(fmax(hd, di), f));
        s2 = fmax(s2, fmax(fmax(w, di), 2 * f));
        s3 = fmax(s3, fmax(w, di));
        if (d.mamba) cc = fmax(cc, d.Cc), hh = fmax(hh, d.H);
        per_tok += D + 1; /* norm1 output and its statistics */
        if (d.attn) {
            double w = (double)(d.Hq + 2 * d.Hkv) * d.dh;
            per_tok += w * (c->qk_norm ? 2 : 1) + (double)d.Hq * d.dh + d.Hq + D;
        }
        if (d.mamba) {
            double nch = (T + c->mamba_chunk - 1) / c->mamba_chunk;
            per_tok += 3.0 * d.Di + 2.0 * d.Cc + d.H + d.G + D + (double)d.H * d.P * d.Ns * nch / T;
        }
        if (d.kind == 'P') per_tok += D + (c->fuse_op == HLAB_FUSE_NORMADD || c->fuse_op == HLAB_FUSE_CONCAT ? 2 * D
                                           : c->fuse_op == HLAB_FUSE_GATE ? D : 0);
        per_tok += D; /* residual after the mixer */
        if (d.channel == HLAB_CHANNEL_DENSE) per_tok += D + 1 + 3.0 * c->d_ff + D;
        if (d.channel == HLAB_CHANNEL_MOE) {
            double k = c->moe_top_k, S = c->moe_shared, F = c->moe_d_ff;
            per_tok += D + 1 + D + c->moe_experts + (k + S) * (3 * F + D);
        }
    }
    per_tok += D + 1 + c->vocab_size + 1;              /* final norm, logits, losses */
    per_tok += 5 * D + s1 + s2 + s3 + 2 * cc + hh + 2; /* scratch gradients, tokens, targets */
    return (int64_t)(per_tok * B * T * act_bytes);
}
