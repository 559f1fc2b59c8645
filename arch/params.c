/* arch/params.c — the parameter tensors of a resolved config: names, shapes,
 * init kinds, decay flags and offsets. The one list both the counter and the
 * model use. Matrices are [out, in] row-major (a linear layer is x·Wᵀ).
 * Offsets put every decayed tensor (matrices, conv weights) first, in
 * enumeration order, then every other tensor (norms, biases, A_log, dt_bias, D, β).
 */
#include <stdio.h>
#include <string.h>

#include "arch/arch_internal.h"

typedef struct {
    arch_tensor *out;
    int max, n;
} tensor_list;

static void add(tensor_list *t, int layer, arch_role role, const char *suffix, int ndim, int s0, int s1, int s2,
                arch_init init, int decay, int matrix) {
    if (t->out && t->n < t->max) {
        arch_tensor *x = &t->out[t->n];
        memset(x, 0, sizeof *x);
        if (layer >= 0) snprintf(x->info.name, sizeof x->info.name, "layers.%d.%s", layer, suffix);
        else snprintf(x->info.name, sizeof x->info.name, "%s", suffix);
        x->info.ndim = ndim;
        x->info.shape[0] = s0;
        x->info.shape[1] = ndim > 1 ? s1 : 0;
        x->info.shape[2] = ndim > 2 ? s2 : 0;
        x->info.numel = (int64_t)s0 * (ndim > 1 ? s1 : 1) * (ndim > 2 ? s2 : 1);
        x->info.decay = decay;
        x->init = init;
        x->role = role;
        x->layer = layer;
        x->matrix = matrix;
    }
    t->n++;
}

#define MAT(role, name, rows, cols, init) add(&t, l, role, name, 2, rows, cols, 0, init, 1, 1)
#define VEC(role, name, n, init) add(&t, l, role, name, 1, n, 0, 0, init, 0, 0)

int arch_tensors(const hlab_model_config *c, arch_tensor *out, int max) {
    tensor_list t = {out, max, 0};
    const int D = c->d_model, V = c->vocab_size, L = c->n_layers;
    const int ln = c->norm == HLAB_NORM_LAYER;
    int l = -1;
    MAT(R_EMBED, "embed.weight", V, D, INIT_NORMAL);
    for (l = 0; l < L; l++) {
        arch_layer d;
        arch_layer_dims(c, l, &d);
        VEC(R_NORM1_W, "norm1.weight", D, INIT_ONES);
        if (ln) VEC(R_NORM1_B, "norm1.bias", D, INIT_ZEROS);
        if (d.attn) {
            MAT(R_QKV, "attn.qkv.weight", (d.Hq + 2 * d.Hkv) * d.dh, D, INIT_NORMAL);
            if (c->qk_norm) {
                VEC(R_QNORM, "attn.q_norm.weight", d.dh, INIT_ONES);
                VEC(R_KNORM, "attn.k_norm.weight", d.dh, INIT_ONES);
            }
            MAT(R_AOUT, "attn.out.weight", D, d.Hq * d.dh, INIT_NORMAL_OUT);
        }
        if (d.mamba) {
            MAT(R_INPROJ, "mamba.in_proj.weight", d.Win, D, INIT_NORMAL);
            /* conv weights decay (MODEL.md §7) but are vectors to the ops (R dtype) */
            add(&t, l, R_CONVW, "mamba.conv.weight", 2, d.Cc, d.K, 0, INIT_CONV, 1, 0);
            VEC(R_CONVB, "mamba.conv.bias", d.Cc, INIT_CONV);
            VEC(R_ALOG, "mamba.A_log", d.H, INIT_A_LOG);
            VEC(R_DTBIAS, "mamba.dt_bias", d.H, INIT_DT_BIAS);
            VEC(R_DSKIP, "mamba.D", d.H, INIT_ONES);
            VEC(R_MNORM, "mamba.norm.weight", d.Di, INIT_ONES);
            MAT(R_MOUT, "mamba.out.weight", D, d.Di, INIT_NORMAL_OUT);
        }
        if (d.kind == 'P') {
            if (c->fuse_op == HLAB_FUSE_NORMADD) {
                VEC(R_BETA_A, "fuse.beta_a", D, INIT_ONES);
                VEC(R_BETA_M, "fuse.beta_m", D, INIT_ONES);
            } else if (c->fuse_op == HLAB_FUSE_CONCAT) {
                MAT(R_FUSEW, "fuse.weight", D, 2 * D, INIT_NORMAL_OUT);
            } else if (c->fuse_op == HLAB_FUSE_GATE) {
                MAT(R_FUSEW, "fuse.weight", D, D, INIT_NORMAL);
            }
        }
        if (d.channel != HLAB_CHANNEL_NONE) {
            VEC(R_NORM2_W, "norm2.weight", D, INIT_ONES);
            if (ln) VEC(R_NORM2_B, "norm2.bias", D, INIT_ZEROS);
        }
        if (d.channel == HLAB_CHANNEL_DENSE) {
            MAT(R_W13, "mlp.w13.weight", 2 * c->d_ff, D, INIT_NORMAL);
            MAT(R_W2, "mlp.w2.weight", D, c->d_ff, INIT_NORMAL_OUT);
        } else if (d.channel == HLAB_CHANNEL_MOE) {
            const int E = c->moe_experts, F = c->moe_d_ff, S = c->moe_shared;
            MAT(R_ROUTER, "moe.router.weight", E, D, INIT_NORMAL);
            add(&t, l, R_EW13, "moe.w13", 3, E, 2 * F, D, INIT_NORMAL, 1, 1);
            add(&t, l, R_EW2, "moe.w2", 3, E, D, F, INIT_NORMAL_OUT, 1, 1);
            if (S > 0) {
                add(&t, l, R_SW13, "moe.shared_w13", 3, S, 2 * F, D, INIT_NORMAL, 1, 1);
                add(&t, l, R_SW2, "moe.shared_w2", 3, S, D, F, INIT_NORMAL_OUT, 1, 1);
            }
        }
    }
    l = -1;
    VEC(R_FNORM_W, "final_norm.weight", D, INIT_ONES);
    if (ln) VEC(R_FNORM_B, "final_norm.bias", D, INIT_ZEROS);
    if (!c->tied_head) MAT(R_HEAD, "head.weight", V, D, INIT_NORMAL);

    if (out && t.n <= max) {
        int64_t off = 0;
        for (int pass = 1; pass >= 0; pass--)
            for (int i = 0; i < t.n; i++)
                if (out[i].info.decay == pass) {
                    out[i].info.offset = off;
                    off += out[i].info.numel;
                }
    }
    return t.n;
}
