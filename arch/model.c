/* arch/model.c — the model on a backend: parameters, activations, forward and
 * backward composed from the kernels.h ops only (so it runs unchanged on every
 * backend). MODEL.md is the maths; docs/ARCH.md names every tensor.
 *
 * Conventions (llm.c style):
 *  - One parameter block (R) with every decayed tensor first, one grads block of
 *    the same layout, and an A-dtype mirror the ops read matrices from (the
 *    params block itself when A == R). Vector parameters are read from params.
 *  - Every activation buffer is planned once at create for B × T rows, in one
 *    allocation (plan() runs twice: sizing, then placing). No allocation per step.
 *  - Parameter grads accumulate (+=); activation grads live in shared scratch
 *    buffers that each layer's backward overwrites. `dres` carries d(loss)/d(h)
 *    down the residual stream.
 *  - Init runs on the host from the seed (hlab_rng) in tensor order, then is
 *    uploaded, so every backend starts from the same weights.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "arch/arch_internal.h"

typedef struct {
    arch_layer d;
    int t[R_N_LAYER_ROLES]; /* tensor index per role, -1 when absent */
    /* saved activations (A, except the statistics and states, R) */
    void *ln1, *ln1_mean, *ln1_rstd;
    void *qkv, *qkv_n, *qk_rstd, *att, *lse, *a_out;                       /* attention branch */
    void *z, *xbc_pre, *dt, *xbc, *states, *y, *gn_rstd, *gn, *m_out;      /* Mamba branch */
    void *fa, *fm, *fa_rstd, *fm_rstd, *cat, *g, *mix;                    /* parallel fusion */
    void *u, *ln2, *ln2_mean, *ln2_rstd, *h13, *sw, *ch_out, *moe_cache; /* channel */
    hk_moe_dims md;
    int aux_slot; /* MoE layers: index of this layer's aux loss in the model's aux [n_moe] */
} layer_state;

struct hlab_model {
    hlab_model_config c;
    hk_backend *hk;
    int B, T;
    size_t as, rs; /* element sizes of A and R */
    int n_tensors;
    arch_tensor *tensors;
    int64_t n_elements, n_decay;
    int global_t[R_N_ROLES]; /* tensor index of the global roles */
    void *params, *grads, *mirror;
    layer_state *layers;
    /* activations */
    void *arena;
    void **res;         /* L+1 residual stream buffers [N,D] */
    void *lnf, *lnf_mean, *lnf_rstd, *logits, *losses, *aux; /* aux R [n_moe]: the MoE layers' in order */
    void *loss_stat; /* F64 [2] {loss, aux part} of the last forward with targets (loss_reduce) */
    int n_moe;
    int32_t *tokens, *targets; /* device copies */
    /* scratch gradients (sizes: the max over layers) */
    void *dres, *dx, *scratch1, *scratch2, *scratch3, *d_xbc, *d_xbc_pre, *d_dt, *da, *dm, *dg;
    int last_Bn, last_has_targets, losses_valid; /* losses_valid: losses hold the last forward's */
    int dlogits_ready; /* the forward left d(loss)/d(logits) over the logits (xent_fwd_bwd) */
};

/* ---- small helpers ------------------------------------------------------------ */
typedef struct { char *base; size_t used; } arena;
static void *take(arena *a, size_t bytes) {
    size_t off = a->used;
    a->used += (bytes + 63) & ~(size_t)63;
    return a->base ? a->base + off : NULL;
}

static const arch_tensor *tensor_of(const hlab_model *m, int l, arch_role r) {
    int i = l >= 0 ? m->layers[l].t[r] : m->global_t[r];
    return i >= 0 ? &m->tensors[i] : NULL;
}
/* a tensor as the ops read it: param_r from the master block (R: vectors, conv),
 * param_a from the A mirror (matrices), grad_r from the grads block (R) */
static void *param_r(const hlab_model *m, int l, arch_role r) {
    const arch_tensor *t = tensor_of(m, l, r);
    return t ? (char *)m->params + t->info.offset * m->rs : NULL;
}
static void *param_a(const hlab_model *m, int l, arch_role r) {
    const arch_tensor *t = tensor_of(m, l, r);
    return t ? (char *)m->mirror + t->info.offset * m->as : NULL;
}
static void *grad_r(const hlab_model *m, int l, arch_role r) {
    const arch_tensor *t = tensor_of(m, l, r);
    return t ? (char *)m->grads + t->info.offset * m->rs : NULL;
}
static void *offset_a(const hlab_model *m, void *p, size_t elems) { return (char *)p + elems * m->as; }
static void *offset_r(const hlab_model *m, void *p, size_t elems) { return (char *)p + elems * m->rs; }

static size_t max_z(size_t a, size_t b) { return a > b ? a : b; }

/* ---- planning ------------------------------------------------------------------- */
static void plan(hlab_model *m, arena *ar) {
    const size_t N = (size_t)m->B * m->T, D = (size_t)m->c.d_model, V = (size_t)m->c.vocab_size;
    const size_t as = m->as, rs = m->rs;
    hk_backend *hk = m->hk;
    size_t big1 = N * 2 * D, big2 = N * D, big3 = N * D, xbcw = 1, dtw = 1;
    for (int l = 0; l <= m->c.n_layers; l++) m->res[l] = take(ar, N * D * as);
    for (int l = 0; l < m->c.n_layers; l++) {
        layer_state *L = &m->layers[l];
        const arch_layer *d = &L->d;
        L->ln1 = take(ar, N * D * as);
        L->ln1_mean = take(ar, N * rs);
        L->ln1_rstd = take(ar, N * rs);
        if (d->attn) {
            size_t w = (size_t)(d->Hq + 2 * d->Hkv) * d->dh;
            L->qkv = take(ar, N * w * as);
            if (m->c.qk_norm) {
                L->qkv_n = take(ar, N * w * as);
                L->qk_rstd = take(ar, N * (size_t)(d->Hq + d->Hkv) * rs);
            }
            L->att = take(ar, N * (size_t)d->Hq * d->dh * as);
            L->lse = take(ar, N * (size_t)d->Hq * rs);
            L->a_out = take(ar, N * D * as);
            big1 = max_z(big1, N * (size_t)d->Hq * d->dh);
            big2 = max_z(big2, N * w);
            big3 = max_z(big3, N * w);
        }
        if (d->mamba) {
            size_t nch = (size_t)(m->T + m->c.mamba_chunk - 1) / m->c.mamba_chunk;
            L->z = take(ar, N * d->Di * as);
            L->xbc_pre = take(ar, N * d->Cc * as);
            L->dt = take(ar, N * d->H * as);
            L->xbc = take(ar, N * d->Cc * as);
            L->states = take(ar, (size_t)m->B * nch * d->H * d->P * d->Ns * rs);
            L->y = take(ar, N * d->Di * as);
            L->gn_rstd = take(ar, N * d->G * rs);
            L->gn = take(ar, N * d->Di * as);
            L->m_out = take(ar, N * D * as);
            big1 = max_z(big1, N * d->Di);
            big2 = max_z(big2, N * d->Di);
            big3 = max_z(big3, N * d->Di);
            xbcw = max_z(xbcw, (size_t)d->Cc);
            dtw = max_z(dtw, (size_t)d->H);
        }
        if (d->kind == 'P') {
            if (m->c.fuse_op == HLAB_FUSE_NORMADD) {
                L->fa = take(ar, N * D * as);
                L->fm = take(ar, N * D * as);
                L->fa_rstd = take(ar, N * rs);
                L->fm_rstd = take(ar, N * rs);
            } else if (m->c.fuse_op == HLAB_FUSE_CONCAT) {
                L->cat = take(ar, N * 2 * D * as);
            } else if (m->c.fuse_op == HLAB_FUSE_GATE) {
                L->g = take(ar, N * D * as);
            }
            L->mix = take(ar, N * D * as);
        } else {
            L->mix = d->attn ? L->a_out : L->m_out;
        }
        if (d->channel != HLAB_CHANNEL_NONE) {
            L->u = take(ar, N * D * as);
            L->ln2 = take(ar, N * D * as);
            L->ln2_mean = take(ar, N * rs);
            L->ln2_rstd = take(ar, N * rs);
            L->ch_out = take(ar, N * D * as);
        }
        if (d->channel == HLAB_CHANNEL_DENSE) {
            size_t F = (size_t)m->c.d_ff;
            L->h13 = take(ar, N * 2 * F * as);
            L->sw = take(ar, N * F * as);
            big1 = max_z(big1, N * F);
            big2 = max_z(big2, N * 2 * F);
        } else if (d->channel == HLAB_CHANNEL_MOE) {
            hk_moe_dims md = {(int)N, m->c.d_model, m->c.moe_experts, m->c.moe_top_k, m->c.moe_d_ff, m->c.moe_shared,
                              m->c.moe_d_ff, m->c.moe_renorm, m->c.moe_aux_alpha};
            L->md = md;
            L->moe_cache = take(ar, hk->moe_cache_bytes(hk, md));
        }
    }
    m->lnf = take(ar, N * D * as);
    m->lnf_mean = take(ar, N * rs);
    m->lnf_rstd = take(ar, N * rs);
    m->logits = take(ar, N * V * as);
    m->losses = take(ar, N * rs);
    m->aux = take(ar, (size_t)(m->n_moe > 0 ? m->n_moe : 1) * rs);
    m->loss_stat = take(ar, 2 * sizeof(double));
    m->tokens = take(ar, N * sizeof(int32_t));
    m->targets = take(ar, N * sizeof(int32_t));
    m->dres = take(ar, N * D * as);
    m->dx = take(ar, N * D * as);
    m->scratch1 = take(ar, big1 * as);
    m->scratch2 = take(ar, big2 * as);
    m->scratch3 = take(ar, big3 * as);
    m->d_xbc = take(ar, N * xbcw * as);
    m->d_xbc_pre = take(ar, N * xbcw * as);
    m->d_dt = take(ar, N * dtw * as);
    m->da = take(ar, N * D * as);
    m->dm = take(ar, N * D * as);
    m->dg = take(ar, N * D * as);
}

/* ---- lifetime ------------------------------------------------------------------- */
hlab_model *hlab_model_create(const hlab_model_config *cfg, hk_backend *hk, int B, int T, hlab_err *err) {
    if (!hk) {
        hlab_fail(err, HLAB_EINVAL, "hlab_model_create: no backend");
        return NULL;
    }
    if (B < 1 || T < 1) {
        hlab_fail(err, HLAB_EINVAL, "train.batch %d and train.seq_len %d must be positive", B, T);
        return NULL;
    }
    hlab_model *m = calloc(1, sizeof *m);
    if (!m) {
        hlab_fail(err, HLAB_ENOMEM, "out of host memory for the model");
        return NULL;
    }
    m->c = *cfg;
    if (hlab_model_config_resolve(&m->c, err)) goto fail;
    m->hk = hk;
    m->B = B;
    m->T = T;
    m->as = hk_dtype_size(hk->act);
    m->rs = hk_dtype_size(hk->real);
    const int L = m->c.n_layers;

    m->n_tensors = arch_tensors(&m->c, NULL, 0);
    m->tensors = calloc((size_t)m->n_tensors, sizeof *m->tensors);
    m->layers = calloc((size_t)L, sizeof *m->layers);
    m->res = calloc((size_t)L + 1, sizeof *m->res);
    if (!m->tensors || !m->layers || !m->res) {
        hlab_fail(err, HLAB_ENOMEM, "out of host memory for the model tables");
        goto fail;
    }
    arch_tensors(&m->c, m->tensors, m->n_tensors);
    for (int r = 0; r < R_N_ROLES; r++) m->global_t[r] = -1;
    for (int l = 0; l < L; l++) {
        for (int r = 0; r < R_N_LAYER_ROLES; r++) m->layers[l].t[r] = -1;
        arch_layer_dims(&m->c, l, &m->layers[l].d);
        m->layers[l].aux_slot = m->layers[l].d.channel == HLAB_CHANNEL_MOE ? m->n_moe++ : -1;
    }
    for (int i = 0; i < m->n_tensors; i++) {
        const arch_tensor *t = &m->tensors[i];
        if (t->layer >= 0) m->layers[t->layer].t[t->role] = i;
        else m->global_t[t->role] = i;
        m->n_elements += t->info.numel;
        if (t->info.decay) m->n_decay += t->info.numel;
    }

    m->params = hk->alloc(hk, (size_t)m->n_elements * m->rs);
    m->grads = hk->alloc(hk, (size_t)m->n_elements * m->rs);
    m->mirror = hk->act != hk->real ? hk->alloc(hk, (size_t)m->n_elements * m->as) : m->params;
    arena ar = {NULL, 0};
    plan(m, &ar);
    m->arena = hk->alloc(hk, ar.used);
    if (hk->check(hk, err) || !m->params || !m->grads || !m->mirror || !m->arena) {
        if (!err || !err->code) hlab_fail(err, HLAB_ENOMEM, "out of device memory");
        hlab_err_prefix(err, "allocating a model of %lld parameters and %.1f MiB of activations for batch %d x %d",
                        (long long)m->n_elements, ar.used / 1048576.0, B, T);
        goto fail;
    }
    ar.base = m->arena;
    ar.used = 0;
    plan(m, &ar);
    hk->zero(hk, m->arena, ar.used);
    hk->zero(hk, m->params, (size_t)m->n_elements * m->rs);
    hk->zero(hk, m->grads, (size_t)m->n_elements * m->rs);
    hlab_model_params_changed(m);
    if (hk->check(hk, err)) goto fail;
    return m;
fail:
    hlab_model_destroy(m);
    return NULL;
}

void hlab_model_destroy(hlab_model *m) {
    if (!m) return;
    if (m->hk) {
        if (m->arena) m->hk->free(m->hk, m->arena);
        if (m->mirror && m->mirror != m->params) m->hk->free(m->hk, m->mirror);
        if (m->grads) m->hk->free(m->hk, m->grads);
        if (m->params) m->hk->free(m->hk, m->params);
    }
    free(m->tensors);
    free(m->layers);
    free(m->res);
    free(m);
}

/* ---- accessors -------------------------------------------------------------------- */
const hlab_model_config *hlab_model_config_of(const hlab_model *m) { return &m->c; }
int hlab_model_n_params(const hlab_model *m, int *n_tensors, int64_t *n_elements) {
    if (n_tensors) *n_tensors = m->n_tensors;
    if (n_elements) *n_elements = m->n_elements;
    return HLAB_OK;
}
const hlab_param_info *hlab_model_param(const hlab_model *m, int i) {
    return i >= 0 && i < m->n_tensors ? &m->tensors[i].info : NULL;
}
int64_t hlab_model_n_decay(const hlab_model *m) { return m->n_decay; }
void *hlab_model_params(hlab_model *m) { return m->params; }
void *hlab_model_grads(hlab_model *m) { return m->grads; }
void *hlab_model_mirror(hlab_model *m) { return m->mirror; }
hk_backend *hlab_model_backend(hlab_model *m) { return m->hk; }
void hlab_model_params_changed(hlab_model *m) {
    if (m->mirror != m->params)
        m->hk->convert(m->hk, m->mirror, m->hk->act, m->params, m->hk->real, (size_t)m->n_elements);
}
void hlab_model_zero_grads(hlab_model *m) { m->hk->zero(m->hk, m->grads, (size_t)m->n_elements * m->rs); }

/* ---- init (MODEL.md §7 and §4) ------------------------------------------------------ */
int hlab_model_init(hlab_model *m, uint64_t seed, hlab_err *err) {
    double *host = malloc((size_t)m->n_elements * sizeof *host);
    if (!host) return hlab_fail(err, HLAB_ENOMEM, "out of host memory initialising %lld parameters", (long long)m->n_elements);
    hlab_rng rng;
    hlab_rng_seed(&rng, seed);
    const double std = 0.02, std_out = 0.02 / sqrt(2.0 * m->c.n_layers);
    for (int i = 0; i < m->n_tensors; i++) {
        const arch_tensor *t = &m->tensors[i];
        double *p = host + t->info.offset;
        int K = m->c.mamba_conv;
        for (int64_t j = 0; j < t->info.numel; j++) {
            switch (t->init) {
            case INIT_NORMAL: p[j] = std * hlab_rng_normal(&rng); break;
            case INIT_NORMAL_OUT: p[j] = std_out * hlab_rng_normal(&rng); break;
            case INIT_ONES: p[j] = 1.0; break;
            case INIT_ZEROS: p[j] = 0.0; break;
            case INIT_A_LOG: p[j] = log(1.0 + 15.0 * hlab_rng_uniform(&rng)); break;
            case INIT_DT_BIAS: {
                double lo = log(1e-3), hi = log(1e-1);
                double dt0 = exp(lo + (hi - lo) * hlab_rng_uniform(&rng));
                if (dt0 < 1e-4) dt0 = 1e-4;
                p[j] = dt0 + log(-expm1(-dt0)); /* softplus⁻¹ */
                break;
            }
            case INIT_CONV: p[j] = (2.0 * hlab_rng_uniform(&rng) - 1.0) / sqrt((double)K); break;
            }
        }
    }
    m->hk->from_host(m->hk, m->params, m->hk->real, host, HK_F64, (size_t)m->n_elements);
    free(host);
    hlab_model_params_changed(m);
    return m->hk->check(m->hk, err);
}

/* ---- pieces ----------------------------------------------------------------------- */
static void norm_fwd(hlab_model *m, void *out, void *mean, void *rstd, const void *inp, const void *w, const void *b,
                     int N) {
    if (m->c.norm == HLAB_NORM_LAYER)
        m->hk->layernorm_fwd(m->hk, out, mean, rstd, inp, w, b, N, m->c.d_model, m->c.norm_eps);
    else
        m->hk->rmsnorm_fwd(m->hk, out, rstd, inp, w, N, m->c.d_model, m->c.norm_eps);
}
/* The pre-norm that reads residual stream buffer res[l]: layer l's norm1, or the
 * final norm after the last layer. */
typedef struct {
    void *out, *mean, *rstd;
    const void *w, *b;
} pre_norm;
static pre_norm pre_norm_of_res(hlab_model *m, int l) {
    pre_norm p;
    if (l < m->c.n_layers) {
        layer_state *L = &m->layers[l];
        p.out = L->ln1;
        p.mean = L->ln1_mean;
        p.rstd = L->ln1_rstd;
        p.w = param_r(m, l, R_NORM1_W);
        p.b = param_r(m, l, R_NORM1_B);
    } else {
        p.out = m->lnf;
        p.mean = m->lnf_mean;
        p.rstd = m->lnf_rstd;
        p.w = param_r(m, -1, R_FNORM_W);
        p.b = param_r(m, -1, R_FNORM_B);
    }
    return p;
}
/* res_out = res_in + x, then the norm that reads res_out, in one pass over memory
 * (same values as add then norm_fwd). The backward needs nothing extra: norm_bwd
 * with accum = 1 adds the norm's path into dres, the gradient of both summands. */
static void add_norm_fwd(hlab_model *m, void *res_out, const void *res_in, const void *x, pre_norm p, int N) {
    hk_backend *hk = m->hk;
    if (m->c.norm == HLAB_NORM_LAYER)
        hk->add_layernorm_fwd(hk, res_out, p.out, p.mean, p.rstd, res_in, x, p.w, p.b, N, m->c.d_model, m->c.norm_eps);
    else
        hk->add_rmsnorm_fwd(hk, res_out, p.out, p.rstd, res_in, x, p.w, N, m->c.d_model, m->c.norm_eps);
}
static void norm_bwd(hlab_model *m, void *dinp, void *dw, void *db, const void *dout, const void *inp, const void *w,
                     const void *mean, const void *rstd, int N, int accum) {
    if (m->c.norm == HLAB_NORM_LAYER)
        m->hk->layernorm_bwd(m->hk, dinp, dw, db, dout, inp, w, mean, rstd, N, m->c.d_model, accum);
    else
        m->hk->rmsnorm_bwd(m->hk, dinp, dw, dout, inp, w, rstd, N, m->c.d_model, accum);
}

static hk_attn_dims attn_dims(const hlab_model *m, const arch_layer *d, int Bn) {
    hk_attn_dims a = {Bn, m->T, d->Hq, d->Hkv, d->dh, m->c.window};
    return a;
}
static hk_ssd_dims ssd_dims(const hlab_model *m, const arch_layer *d, int Bn) {
    hk_ssd_dims s = {Bn, m->T, d->H, d->P, d->G, d->Ns, m->c.mamba_chunk};
    return s;
}
static const void *attn_qkv_final(const hlab_model *m, const layer_state *L) {
    return m->c.qk_norm ? L->qkv_n : L->qkv;
}

/* x [N,D] → L->a_out [N,D] */
static void attn_fwd(hlab_model *m, int l, const void *x, int Bn) {
    hk_backend *hk = m->hk;
    layer_state *L = &m->layers[l];
    const arch_layer *d = &L->d;
    int N = Bn * m->T, D = m->c.d_model, W = (d->Hq + 2 * d->Hkv) * d->dh;
    hk->matmul_fwd(hk, L->qkv, x, param_a(m, l, R_QKV), NULL, N, D, W);
    void *q = L->qkv;
    if (m->c.qk_norm) {
        hk->qknorm_fwd(hk, L->qkv_n, L->qk_rstd, L->qkv, param_r(m, l, R_QNORM), param_r(m, l, R_KNORM), N, d->Hq, d->Hkv, d->dh,
                       m->c.norm_eps);
        q = L->qkv_n;
    }
    if (m->c.rope) hk->rope_fwd(hk, q, q, Bn, m->T, d->Hq, d->Hkv, d->dh, m->c.rope_theta);
    hk->attention_fwd(hk, L->att, L->lse, q, attn_dims(m, d, Bn));
    hk->matmul_fwd(hk, L->a_out, L->att, param_a(m, l, R_AOUT), NULL, N, d->Hq * d->dh, D);
}

/* dout [N,D] → dx [N,D] (= or += by accum) */
static void attn_bwd(hlab_model *m, int l, void *dx, const void *dout, const void *x, int Bn, int accum) {
    hk_backend *hk = m->hk;
    layer_state *L = &m->layers[l];
    const arch_layer *d = &L->d;
    int N = Bn * m->T, D = m->c.d_model, W = (d->Hq + 2 * d->Hkv) * d->dh;
    hk->matmul_bwd(hk, m->scratch1, grad_r(m, l, R_AOUT), NULL, dout, L->att, param_a(m, l, R_AOUT), N, d->Hq * d->dh, D, 0);
    hk->attention_bwd(hk, m->scratch2, m->scratch1, L->att, L->lse, attn_qkv_final(m, L), attn_dims(m, d, Bn));
    void *dcur = m->scratch2;
    if (m->c.rope) {
        hk->rope_bwd(hk, m->scratch3, dcur, Bn, m->T, d->Hq, d->Hkv, d->dh, m->c.rope_theta);
        dcur = m->scratch3;
    }
    if (m->c.qk_norm) {
        void *dst = dcur == m->scratch2 ? m->scratch3 : m->scratch2;
        hk->qknorm_bwd(hk, dst, grad_r(m, l, R_QNORM), grad_r(m, l, R_KNORM), dcur, L->qkv, param_r(m, l, R_QNORM),
                       param_r(m, l, R_KNORM), L->qk_rstd, N, d->Hq, d->Hkv, d->dh);
        dcur = dst;
    }
    hk->matmul_bwd(hk, dx, grad_r(m, l, R_QKV), NULL, dcur, x, param_a(m, l, R_QKV), N, D, W, accum);
}

/* x [N,D] → L->m_out [N,D]. W_in's rows are [z | xBC | dt]: three products on row slices. */
static void mamba_fwd(hlab_model *m, int l, const void *x, int Bn) {
    hk_backend *hk = m->hk;
    layer_state *L = &m->layers[l];
    const arch_layer *d = &L->d;
    int N = Bn * m->T, D = m->c.d_model;
    void *Win = param_a(m, l, R_INPROJ);
    hk->matmul_fwd(hk, L->z, x, Win, NULL, N, D, d->Di);
    hk->matmul_fwd(hk, L->xbc_pre, x, offset_a(m, Win, (size_t)d->Di * D), NULL, N, D, d->Cc);
    hk->matmul_fwd(hk, L->dt, x, offset_a(m, Win, (size_t)(d->Di + d->Cc) * D), NULL, N, D, d->H);
    hk->conv1d_silu_fwd(hk, L->xbc, L->xbc_pre, param_r(m, l, R_CONVW), param_r(m, l, R_CONVB), Bn, m->T, d->Cc, d->K);
    hk->ssd_fwd(hk, L->y, L->states, L->xbc, L->dt, param_r(m, l, R_DTBIAS), param_r(m, l, R_ALOG), param_r(m, l, R_DSKIP),
                ssd_dims(m, d, Bn));
    hk->gated_rmsnorm_fwd(hk, L->gn, L->gn_rstd, L->y, L->z, param_r(m, l, R_MNORM), N, d->Di, d->G, m->c.norm_eps);
    hk->matmul_fwd(hk, L->m_out, L->gn, param_a(m, l, R_MOUT), NULL, N, d->Di, D);
}

static void mamba_bwd(hlab_model *m, int l, void *dx, const void *dout, const void *x, int Bn, int accum) {
    hk_backend *hk = m->hk;
    layer_state *L = &m->layers[l];
    const arch_layer *d = &L->d;
    int N = Bn * m->T, D = m->c.d_model;
    void *d_gn = m->scratch1, *d_y = m->scratch2, *d_z = m->scratch3;
    hk->matmul_bwd(hk, d_gn, grad_r(m, l, R_MOUT), NULL, dout, L->gn, param_a(m, l, R_MOUT), N, d->Di, D, 0);
    hk->gated_rmsnorm_bwd(hk, d_y, d_z, grad_r(m, l, R_MNORM), d_gn, L->y, L->z, param_r(m, l, R_MNORM), L->gn_rstd, N, d->Di,
                          d->G);
    hk->ssd_bwd(hk, m->d_xbc, m->d_dt, grad_r(m, l, R_DTBIAS), grad_r(m, l, R_ALOG), grad_r(m, l, R_DSKIP), d_y, L->states, L->xbc,
                L->dt, param_r(m, l, R_DTBIAS), param_r(m, l, R_ALOG), param_r(m, l, R_DSKIP), ssd_dims(m, d, Bn));
    hk->conv1d_silu_bwd(hk, m->d_xbc_pre, grad_r(m, l, R_CONVW), grad_r(m, l, R_CONVB), m->d_xbc, L->xbc_pre, param_r(m, l, R_CONVW),
                        param_r(m, l, R_CONVB), Bn, m->T, d->Cc, d->K);
    void *Win = param_a(m, l, R_INPROJ), *Gin = grad_r(m, l, R_INPROJ);
    size_t zrows = (size_t)d->Di * D, xrows = (size_t)(d->Di + d->Cc) * D;
    hk->matmul_bwd(hk, dx, Gin, NULL, d_z, x, Win, N, D, d->Di, accum);
    hk->matmul_bwd(hk, dx, offset_r(m, Gin, zrows), NULL, m->d_xbc_pre, x, offset_a(m, Win, zrows), N, D, d->Cc, 1);
    hk->matmul_bwd(hk, dx, offset_r(m, Gin, xrows), NULL, m->d_dt, x, offset_a(m, Win, xrows), N, D, d->H, 1);
}

/* Parallel fusion of a = L->a_out and m = L->m_out into L->mix. */
static void fuse_fwd(hlab_model *m, int l, const void *x, int N) {
    hk_backend *hk = m->hk;
    layer_state *L = &m->layers[l];
    int D = m->c.d_model;
    size_t n = (size_t)N * D;
    switch (m->c.fuse_op) {
    case HLAB_FUSE_ADD: hk->add(hk, L->mix, L->a_out, L->m_out, n); break;
    case HLAB_FUSE_MEAN: hk->axpby(hk, L->mix, 0.5f, L->a_out, 0.5f, L->m_out, n); break;
    case HLAB_FUSE_NORMADD:
        /* β_a, β_m are the RMSNorm scales of each branch (Hymba-style) */
        hk->rmsnorm_fwd(hk, L->fa, L->fa_rstd, L->a_out, param_r(m, l, R_BETA_A), N, D, m->c.norm_eps);
        hk->rmsnorm_fwd(hk, L->fm, L->fm_rstd, L->m_out, param_r(m, l, R_BETA_M), N, D, m->c.norm_eps);
        hk->axpby(hk, L->mix, 0.5f, L->fa, 0.5f, L->fm, n);
        break;
    case HLAB_FUSE_CONCAT:
        hk->concat_fwd(hk, L->cat, L->a_out, L->m_out, N, D, D);
        hk->matmul_fwd(hk, L->mix, L->cat, param_a(m, l, R_FUSEW), NULL, N, 2 * D, D);
        break;
    case HLAB_FUSE_GATE:
        hk->matmul_fwd(hk, L->g, x, param_a(m, l, R_FUSEW), NULL, N, D, D);
        hk->gate_fwd(hk, L->mix, L->g, L->a_out, L->m_out, n);
        break;
    }
}

/* dmix → (*da, *dm) gradients of the two branch outputs; the gate's path into x
 * is written (=) to dx and *x_written set. */
static void fuse_bwd(hlab_model *m, int l, const void *dmix, const void *x, int N, const void **da, const void **dm,
                     int *x_written) {
    hk_backend *hk = m->hk;
    layer_state *L = &m->layers[l];
    int D = m->c.d_model;
    size_t n = (size_t)N * D;
    *x_written = 0;
    switch (m->c.fuse_op) {
    case HLAB_FUSE_ADD: *da = *dm = dmix; break;
    case HLAB_FUSE_MEAN:
        hk->axpby(hk, m->da, 0.5f, dmix, 0.0f, NULL, n);
        *da = *dm = m->da;
        break;
    case HLAB_FUSE_NORMADD:
        hk->axpby(hk, m->dg, 0.5f, dmix, 0.0f, NULL, n);
        hk->rmsnorm_bwd(hk, m->da, grad_r(m, l, R_BETA_A), m->dg, L->a_out, param_r(m, l, R_BETA_A), L->fa_rstd, N, D, 0);
        hk->rmsnorm_bwd(hk, m->dm, grad_r(m, l, R_BETA_M), m->dg, L->m_out, param_r(m, l, R_BETA_M), L->fm_rstd, N, D, 0);
        *da = m->da;
        *dm = m->dm;
        break;
    case HLAB_FUSE_CONCAT:
        hk->matmul_bwd(hk, m->scratch1, grad_r(m, l, R_FUSEW), NULL, dmix, L->cat, param_a(m, l, R_FUSEW), N, 2 * D, D, 0);
        hk->concat_bwd(hk, m->da, m->dm, m->scratch1, N, D, D);
        *da = m->da;
        *dm = m->dm;
        break;
    case HLAB_FUSE_GATE:
        hk->gate_bwd(hk, m->dg, m->da, m->dm, dmix, L->g, L->a_out, L->m_out, n);
        hk->matmul_bwd(hk, m->dx, grad_r(m, l, R_FUSEW), NULL, m->dg, x, param_a(m, l, R_FUSEW), N, D, D, 0);
        *da = m->da;
        *dm = m->dm;
        *x_written = 1;
        break;
    }
}

/* ---- forward / backward ------------------------------------------------------------- */
static int check_tokens(const hlab_model *m, const int32_t *t, int n, const char *what, hlab_err *err) {
    for (int i = 0; i < n; i++)
        if (t[i] < 0 || t[i] >= m->c.vocab_size)
            return hlab_fail(err, HLAB_EINVAL, "%s[%d] = %d is outside the vocabulary [0, %d)", what, i, (int)t[i],
                             m->c.vocab_size);
    return HLAB_OK;
}

int hlab_model_forward(hlab_model *m, const int32_t *tokens, const int32_t *targets, int Bn, float *loss, float *aux,
                       hlab_err *err) {
    hk_backend *hk = m->hk;
    if (Bn < 1 || Bn > m->B)
        return hlab_fail(err, HLAB_EINVAL, "forward on %d rows, but the model was planned for 1..%d", Bn, m->B);
    const int N = Bn * m->T, D = m->c.d_model, V = m->c.vocab_size;
    int rc = check_tokens(m, tokens, N, "tokens", err);
    if (!rc && targets) rc = check_tokens(m, targets, N, "targets", err);
    if (rc) return rc;
    m->last_Bn = Bn;
    m->last_has_targets = m->losses_valid = targets != NULL;
    m->dlogits_ready = 0;
    /* int32 travels as raw 4-byte elements: a same-dtype copy moves the bytes unchanged */
    hk->from_host(hk, m->tokens, HK_F32, tokens, HK_F32, (size_t)N);
    if (targets) hk->from_host(hk, m->targets, HK_F32, targets, HK_F32, (size_t)N);

    hk->embedding_fwd(hk, m->res[0], m->tokens, param_a(m, -1, R_EMBED), N, D);
    /* Every residual add is fused with the pre-norm that reads its result: the next
     * layer's norm1 (or the final norm) is computed at the end of this layer. */
    pre_norm first = pre_norm_of_res(m, 0);
    norm_fwd(m, first.out, first.mean, first.rstd, m->res[0], first.w, first.b, N);
    for (int l = 0; l < m->c.n_layers; l++) {
        layer_state *L = &m->layers[l];
        const arch_layer *d = &L->d;
        void *h = m->res[l], *out = m->res[l + 1];
        if (d->attn) attn_fwd(m, l, L->ln1, Bn);
        if (d->mamba) mamba_fwd(m, l, L->ln1, Bn);
        if (d->kind == 'P') fuse_fwd(m, l, L->ln1, N);
        if (d->channel == HLAB_CHANNEL_NONE) {
            add_norm_fwd(m, out, h, L->mix, pre_norm_of_res(m, l + 1), N);
            continue;
        }
        pre_norm n2 = {L->ln2, L->ln2_mean, L->ln2_rstd, param_r(m, l, R_NORM2_W), param_r(m, l, R_NORM2_B)};
        add_norm_fwd(m, L->u, h, L->mix, n2, N);
        if (d->channel == HLAB_CHANNEL_DENSE) {
            hk->matmul_fwd(hk, L->h13, L->ln2, param_a(m, l, R_W13), NULL, N, D, 2 * m->c.d_ff);
            hk->swiglu_fwd(hk, L->sw, L->h13, N, m->c.d_ff);
            hk->matmul_fwd(hk, L->ch_out, L->sw, param_a(m, l, R_W2), NULL, N, m->c.d_ff, D);
        } else {
            hk_moe_dims md = L->md;
            md.N = N;
            hk->moe_fwd(hk, L->ch_out, offset_r(m, m->aux, (size_t)L->aux_slot), L->moe_cache, L->ln2, param_a(m, l, R_ROUTER),
                        param_a(m, l, R_EW13), param_a(m, l, R_EW2), param_a(m, l, R_SW13), param_a(m, l, R_SW2), md);
        }
        add_norm_fwd(m, out, L->u, L->ch_out, pre_norm_of_res(m, l + 1), N);
    }
    void *Wh = m->c.tied_head ? param_a(m, -1, R_EMBED) : param_a(m, -1, R_HEAD);
    hk->matmul_fwd(hk, m->logits, m->lnf, Wh, NULL, N, D, V);
    if (!targets) return hk->check(hk, err);

    /* A forward that reads nothing back is the training step's (train/loop.c): its
     * backward follows, so one pass over the logits writes the losses and, in place,
     * the backward's d(mean CE)/d(logits) (read and write once instead of reading
     * twice). A forward that asks for the loss (evaluation) runs xent_fwd alone; a
     * backward after it runs xent_bwd. */
    if (!loss && !aux && hk->xent_fwd_bwd) {
        hk->xent_fwd_bwd(hk, m->losses, m->logits, m->logits, m->targets, 1.0f / N, N, V);
        m->dlogits_ready = 1;
    } else {
        hk->xent_fwd(hk, m->losses, m->logits, m->targets, N, V);
    }
    /* The loss stays on the device: a training step reads it back only at its end. */
    hk->loss_reduce(hk, m->loss_stat, m->losses, N, m->n_moe ? m->aux : NULL, m->n_moe);
    if (!loss && !aux) return hk->check(hk, err);
    double host[2] = {NAN, NAN};
    hk->to_host(hk, host, HK_F64, m->loss_stat, HK_F64, 2);
    if ((rc = hk->check(hk, err))) return rc;
    if (loss) *loss = (float)host[0];
    if (aux) *aux = (float)host[1];
    return HLAB_OK;
}

const void *hlab_model_loss_dev(const hlab_model *m) { return m->loss_stat; }

/* A read-back (a host-device sync on a GPU): for tests and evaluation, not for the step. */
double hlab_model_last_loss(const hlab_model *m) {
    double host[2] = {NAN, NAN};
    m->hk->to_host(m->hk, host, HK_F64, m->loss_stat, HK_F64, 2);
    return host[0];
}

int hlab_model_backward(hlab_model *m, hlab_err *err) {
    hk_backend *hk = m->hk;
    if (!m->last_has_targets || m->last_Bn < 1)
        return hlab_fail(err, HLAB_EINVAL, "backward needs a forward with targets first");
    const int Bn = m->last_Bn, N = Bn * m->T, D = m->c.d_model, V = m->c.vocab_size;

    /* loss = mean CE: d(logits) in place, unless the forward already wrote it */
    if (!m->dlogits_ready) hk->xent_bwd(hk, m->logits, m->logits, m->targets, 1.0f / N, N, V);
    m->last_has_targets = m->dlogits_ready = 0; /* the logits are gone: one backward per forward */
    if (m->c.tied_head)
        hk->matmul_bwd(hk, m->dx, grad_r(m, -1, R_EMBED), NULL, m->logits, m->lnf, param_a(m, -1, R_EMBED), N, D, V, 0);
    else
        hk->matmul_bwd(hk, m->dx, grad_r(m, -1, R_HEAD), NULL, m->logits, m->lnf, param_a(m, -1, R_HEAD), N, D, V, 0);
    norm_bwd(m, m->dres, grad_r(m, -1, R_FNORM_W), grad_r(m, -1, R_FNORM_B), m->dx, m->res[m->c.n_layers], param_r(m, -1, R_FNORM_W),
             m->lnf_mean, m->lnf_rstd, N, 0);

    for (int l = m->c.n_layers - 1; l >= 0; l--) {
        layer_state *L = &m->layers[l];
        const arch_layer *d = &L->d;
        /* channel: dres = d(out) → d(u) */
        if (d->channel != HLAB_CHANNEL_NONE) {
            if (d->channel == HLAB_CHANNEL_DENSE) {
                int F = m->c.d_ff;
                hk->matmul_bwd(hk, m->scratch1, grad_r(m, l, R_W2), NULL, m->dres, L->sw, param_a(m, l, R_W2), N, F, D, 0);
                hk->swiglu_bwd(hk, m->scratch2, m->scratch1, L->h13, N, F);
                hk->matmul_bwd(hk, m->dx, grad_r(m, l, R_W13), NULL, m->scratch2, L->ln2, param_a(m, l, R_W13), N, D, 2 * F, 0);
            } else {
                hk_moe_dims md = L->md;
                md.N = N;
                hk->moe_bwd(hk, m->dx, grad_r(m, l, R_ROUTER), grad_r(m, l, R_EW13), grad_r(m, l, R_EW2), grad_r(m, l, R_SW13),
                            grad_r(m, l, R_SW2), m->dres, 1.0f, L->moe_cache, L->ln2, param_a(m, l, R_ROUTER), param_a(m, l, R_EW13),
                            param_a(m, l, R_EW2), param_a(m, l, R_SW13), param_a(m, l, R_SW2), md);
            }
            norm_bwd(m, m->dres, grad_r(m, l, R_NORM2_W), grad_r(m, l, R_NORM2_B), m->dx, L->u, param_r(m, l, R_NORM2_W),
                     L->ln2_mean, L->ln2_rstd, N, 1);
        }
        /* mixer: dres = d(u) = d(mix) → dx = d(ln1) */
        if (d->kind == 'P') {
            const void *da = m->dres, *dm = m->dres;
            int x_written;
            fuse_bwd(m, l, m->dres, L->ln1, N, &da, &dm, &x_written);
            attn_bwd(m, l, m->dx, da, L->ln1, Bn, x_written);
            mamba_bwd(m, l, m->dx, dm, L->ln1, Bn, 1);
        } else if (d->attn) {
            attn_bwd(m, l, m->dx, m->dres, L->ln1, Bn, 0);
        } else {
            mamba_bwd(m, l, m->dx, m->dres, L->ln1, Bn, 0);
        }
        norm_bwd(m, m->dres, grad_r(m, l, R_NORM1_W), grad_r(m, l, R_NORM1_B), m->dx, m->res[l], param_r(m, l, R_NORM1_W),
                 L->ln1_mean, L->ln1_rstd, N, 1);
    }
    hk->embedding_bwd(hk, grad_r(m, -1, R_EMBED), m->dres, m->tokens, N, D);
    return hk->check(hk, err);
}

int hlab_model_token_losses(hlab_model *m, float *out, hlab_err *err) {
    if (!m->losses_valid) return hlab_fail(err, HLAB_EINVAL, "token losses need a forward with targets first");
    m->hk->to_host(m->hk, out, HK_F32, m->losses, m->hk->real, (size_t)m->last_Bn * m->T);
    return m->hk->check(m->hk, err);
}
