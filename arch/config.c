/* arch/config.c — a design point's model config: defaults, the layout derived
 * from ratio + placement, validation, names, and the JSON form.
 * Conventions: errors name the YAML key the user wrote ("model.mamba.headdim")
 * and the rule broken; resolve() is idempotent (resolving a resolved config
 * changes nothing). docs/ARCH.md documents the derivation rules.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "arch/arch_internal.h"

void hlab_model_config_defaults(hlab_model_config *c) {
    memset(c, 0, sizeof *c);
    c->d_model = 256;
    c->n_layers = 6;
    c->vocab_size = 256;
    c->tied_head = 1;
    c->norm = HLAB_NORM_RMS;
    c->norm_eps = 1e-5f;
    c->ratio_attn = 1;
    c->ratio_mamba = 5;
    c->placement = HLAB_PLACE_UNIFORM;
    c->fusion = HLAB_FUSION_SEQUENTIAL;
    c->fuse_op = HLAB_FUSE_ADD;
    c->head_dim = 64;
    c->rope = 1;
    c->rope_theta = 10000.0f;
    c->mamba_expand = 2;
    c->mamba_headdim = 64;
    c->mamba_d_state = 128;
    c->mamba_groups = 1;
    c->mamba_conv = 4;
    c->mamba_chunk = 256;
    c->channel_attn = c->channel_mamba = c->channel_parallel = HLAB_CHANNEL_DENSE;
    c->moe_experts = 8;
    c->moe_top_k = 2;
    c->moe_renorm = 1;
    c->moe_aux_alpha = 0.01f;
}

/* ---- names ------------------------------------------------------------------ */
static const char *const norm_names[] = {"rmsnorm", "layernorm"};
static const char *const fuse_names[] = {"add", "mean", "normadd", "concat", "gate"};
static const char *const channel_names[] = {"dense", "moe", "none"};
static const char *const placement_names[] = {"uniform", "front", "middle", "back", "indices"};

#define NAME_OF(table, v) ((unsigned)(v) < sizeof table / sizeof *table ? table[v] : "?")
const char *hlab_norm_name(hlab_norm_kind k) { return NAME_OF(norm_names, k); }
const char *hlab_fuse_op_name(hlab_fuse_op f) { return NAME_OF(fuse_names, f); }
const char *hlab_channel_name(hlab_channel c) { return NAME_OF(channel_names, c); }
const char *hlab_placement_name(hlab_placement p) { return NAME_OF(placement_names, p); }

static int parse_name(const char *s, const char *const *names, int n, int *out) {
    for (int i = 0; s && i < n; i++)
        if (!strcmp(s, names[i])) {
            *out = i;
            return HLAB_OK;
        }
    return HLAB_EINVAL;
}
int hlab_norm_parse(const char *s, hlab_norm_kind *out) {
    int v, rc = parse_name(s, norm_names, 2, &v);
    if (!rc) *out = (hlab_norm_kind)v;
    return rc;
}
int hlab_fuse_op_parse(const char *s, hlab_fuse_op *out) {
    int v, rc = parse_name(s, fuse_names, 5, &v);
    if (!rc) *out = (hlab_fuse_op)v;
    return rc;
}
int hlab_channel_parse(const char *s, hlab_channel *out) {
    int v, rc = parse_name(s, channel_names, 3, &v);
    if (!rc) *out = (hlab_channel)v;
    return rc;
}
int hlab_placement_parse(const char *s, hlab_placement *out) {
    int v, rc = parse_name(s, placement_names, 5, &v);
    if (!rc) *out = (hlab_placement)v;
    return rc;
}

/* ---- layout derivation ----------------------------------------------------------
 * n_attn = round(L·a/(a+m)), halves rounded up; then at least one attention layer
 * when a > 0 and at least one Mamba layer when m > 0 (where L allows).
 * uniform: the L layers are cut into n_attn periods, period i = [⌊iL/n⌋, ⌊(i+1)L/n⌋),
 *          and its LAST layer is attention (1:5 over 12 → MMMMMAMMMMMA).
 * front / back: the first / last n_attn layers. middle: a block of n_attn layers
 * starting at ⌊(L − n_attn)/2⌋. indices: exactly the listed layers (ratio unused). */
int hlab_layout_derive(int n_layers, int ratio_attn, int ratio_mamba, hlab_placement placement,
                       const int *indices, int n_indices, char *out, hlab_err *err) {
    int L = n_layers;
    if (L < 1 || L > HLAB_MAX_LAYERS)
        return hlab_fail(err, HLAB_EINVAL, "model.n_layers %d must lie in [1, %d]", L, HLAB_MAX_LAYERS);
    memset(out, 'M', (size_t)L);
    out[L] = '\0';
    if (placement == HLAB_PLACE_INDICES) {
        if (n_indices < 0 || n_indices > L)
            return hlab_fail(err, HLAB_EINVAL,
                             "model.placement lists %d attention layer indices but the layout has only %d layers",
                             n_indices, L);
        for (int i = 0; i < n_indices; i++) {
            int k = indices[i];
            if (k < 0 || k >= L)
                return hlab_fail(err, HLAB_EINVAL, "model.placement index %d is out of range [0, %d) for model.n_layers %d",
                                 k, L, L);
            if (out[k] == 'A')
                return hlab_fail(err, HLAB_EINVAL, "model.placement lists layer index %d twice", k);
            out[k] = 'A';
        }
        return HLAB_OK;
    }
    if (ratio_attn < 0 || ratio_mamba < 0 || ratio_attn + ratio_mamba == 0)
        return hlab_fail(err, HLAB_EINVAL,
                         "model.ratio %d:%d must be attention:mamba with non-negative parts, not both zero (e.g. 1:5)",
                         ratio_attn, ratio_mamba);
    long long a = ratio_attn, s = (long long)ratio_attn + ratio_mamba;
    int n = (int)((2 * L * a + s) / (2 * s)); /* round half up */
    if (ratio_attn > 0 && n == 0) n = 1;
    if (ratio_mamba > 0 && n == L && L > 1) n = L - 1;
    if (n == 0) return HLAB_OK;
    switch (placement) {
    case HLAB_PLACE_UNIFORM:
        for (int i = 0; i < n; i++) out[(int)((long long)(i + 1) * L / n) - 1] = 'A';
        break;
    case HLAB_PLACE_FRONT:
        memset(out, 'A', (size_t)n);
        break;
    case HLAB_PLACE_BACK:
        memset(out + (L - n), 'A', (size_t)n);
        break;
    case HLAB_PLACE_MIDDLE:
        memset(out + (L - n) / 2, 'A', (size_t)n);
        break;
    default:
        return hlab_fail(err, HLAB_EINVAL, "model.placement %d is not one of uniform, front, middle, back, indices",
                         (int)placement);
    }
    return HLAB_OK;
}

/* ---- resolve ------------------------------------------------------------------ */
static int uses_channel(const hlab_model_config *c, hlab_channel ch) {
    for (const char *p = c->layout; *p; p++) {
        hlab_channel k = *p == 'A' ? c->channel_attn : *p == 'M' ? c->channel_mamba : c->channel_parallel;
        if (k == ch) return 1;
    }
    return 0;
}

int hlab_model_config_resolve(hlab_model_config *c, hlab_err *err) {
    if (c->d_model < 1) return hlab_fail(err, HLAB_EINVAL, "model.d_model %d must be positive", c->d_model);
    if (c->n_layers < 1 || c->n_layers > HLAB_MAX_LAYERS)
        return hlab_fail(err, HLAB_EINVAL, "model.n_layers %d must lie in [1, %d]", c->n_layers, HLAB_MAX_LAYERS);
    if (c->vocab_size < 2)
        return hlab_fail(err, HLAB_EINVAL, "model.vocab_size %d must be at least 2 (256 for byte data)", c->vocab_size);
    if ((unsigned)c->norm > HLAB_NORM_LAYER)
        return hlab_fail(err, HLAB_EINVAL, "model.norm %d is not rmsnorm or layernorm", (int)c->norm);
    if (c->norm_eps == 0) c->norm_eps = 1e-5f;
    if (!(c->norm_eps > 0) || !isfinite(c->norm_eps))
        return hlab_fail(err, HLAB_EINVAL, "model.norm_eps %g must be a positive number", (double)c->norm_eps);
    if ((unsigned)c->fusion > HLAB_FUSION_PARALLEL)
        return hlab_fail(err, HLAB_EINVAL, "model.fusion %d is not sequential or parallel", (int)c->fusion);
    if ((unsigned)c->fuse_op > HLAB_FUSE_GATE)
        return hlab_fail(err, HLAB_EINVAL, "model.fuse %d is not add, mean, normadd, concat or gate", (int)c->fuse_op);
    c->tied_head = c->tied_head ? 1 : 0;
    c->qk_norm = c->qk_norm ? 1 : 0;
    c->rope = c->rope ? 1 : 0;
    c->moe_renorm = c->moe_renorm ? 1 : 0;

    /* layout */
    const char *nul = memchr(c->layout, '\0', sizeof c->layout);
    size_t len = nul ? (size_t)(nul - c->layout) : sizeof c->layout;
    if (len == sizeof c->layout)
        return hlab_fail(err, HLAB_EINVAL, "model.layout is longer than %d layers", HLAB_MAX_LAYERS);
    if (len == 0) {
        if (c->fusion == HLAB_FUSION_PARALLEL) {
            memset(c->layout, 'P', (size_t)c->n_layers);
            c->layout[c->n_layers] = '\0';
        } else {
            int rc = hlab_layout_derive(c->n_layers, c->ratio_attn, c->ratio_mamba, c->placement, c->attn_indices,
                                        c->n_attn_indices, c->layout, err);
            if (rc) return rc;
        }
    } else {
        if ((int)len != c->n_layers)
            return hlab_fail(err, HLAB_EINVAL, "model.layout '%s' has %zu layers but model.n_layers is %d", c->layout, len,
                             c->n_layers);
        for (size_t i = 0; i < len; i++)
            if (c->layout[i] != 'A' && c->layout[i] != 'M' && c->layout[i] != 'P')
                return hlab_fail(err, HLAB_EINVAL, "model.layout '%s' has '%c' at layer %zu: expected A, M or P", c->layout,
                                 c->layout[i], i);
    }
    int has_attn = strchr(c->layout, 'A') != NULL, has_mamba = strchr(c->layout, 'M') != NULL;
    int has_par = strchr(c->layout, 'P') != NULL;

    /* attention */
    if (c->head_dim == 0) c->head_dim = 64;
    if (c->head_dim < 2 || c->head_dim % 2)
        return hlab_fail(err, HLAB_EINVAL, "model.head_dim %d must be a positive even number (RoPE rotates pairs)",
                         c->head_dim);
    if (c->n_heads < 0 || c->n_kv_heads < 0 || c->window < 0)
        return hlab_fail(err, HLAB_EINVAL, "model.n_heads %d, model.n_kv_heads %d and model.window %d must be >= 0",
                         c->n_heads, c->n_kv_heads, c->window);
    if (c->n_heads == 0) {
        if ((has_attn || has_par) && c->d_model % c->head_dim)
            return hlab_fail(err, HLAB_EINVAL, "model.d_model %d is not divisible by model.head_dim %d", c->d_model,
                             c->head_dim);
        c->n_heads = c->d_model / c->head_dim;
        if (c->n_heads == 0) c->n_heads = 1; /* unused: no attention layer */
    }
    if (c->n_kv_heads == 0) c->n_kv_heads = c->n_heads;
    if (c->n_heads % c->n_kv_heads)
        return hlab_fail(err, HLAB_EINVAL, "model.n_heads %d is not divisible by model.n_kv_heads %d", c->n_heads,
                         c->n_kv_heads);
    if (c->rope_theta == 0) c->rope_theta = 10000.0f;
    if (!(c->rope_theta > 0) || !isfinite(c->rope_theta))
        return hlab_fail(err, HLAB_EINVAL, "model.rope_theta %g must be positive", (double)c->rope_theta);

    /* Mamba-2 */
    if (c->mamba_expand == 0) c->mamba_expand = 2;
    if (c->mamba_headdim == 0) c->mamba_headdim = 64;
    if (c->mamba_d_state == 0) c->mamba_d_state = 128;
    if (c->mamba_groups == 0) c->mamba_groups = 1;
    if (c->mamba_conv == 0) c->mamba_conv = 4;
    if (c->mamba_chunk == 0) c->mamba_chunk = 256;
    if (c->mamba_expand < 1 || c->mamba_headdim < 1 || c->mamba_d_state < 1 || c->mamba_groups < 1 ||
        c->mamba_conv < 1 || c->mamba_chunk < 1)
        return hlab_fail(err, HLAB_EINVAL,
                         "model.mamba.expand %d, headdim %d, d_state %d, groups %d, conv %d and chunk %d must be positive",
                         c->mamba_expand, c->mamba_headdim, c->mamba_d_state, c->mamba_groups, c->mamba_conv,
                         c->mamba_chunk);
    if (has_mamba) {
        int di = c->mamba_expand * c->d_model;
        if (di % c->mamba_headdim)
            return hlab_fail(err, HLAB_EINVAL,
                             "model.mamba d_inner %d (expand %d × d_model %d) is not divisible by model.mamba.headdim %d", di,
                             c->mamba_expand, c->d_model, c->mamba_headdim);
        if ((di / c->mamba_headdim) % c->mamba_groups)
            return hlab_fail(err, HLAB_EINVAL, "model.mamba heads %d are not divisible by model.mamba.groups %d",
                             di / c->mamba_headdim, c->mamba_groups);
    }

    /* parallel branch split */
    if (c->par_attn_heads < 0 || c->par_attn_kv_heads < 0 || c->par_mamba_heads < 0)
        return hlab_fail(err, HLAB_EINVAL, "model.parallel.attn_heads, attn_kv_heads and mamba_heads must be >= 0");
    if (c->par_attn_heads == 0) c->par_attn_heads = c->n_heads / 2 > 0 ? c->n_heads / 2 : 1;
    if (c->par_attn_kv_heads == 0) {
        int kv = (int)((long long)c->par_attn_heads * c->n_kv_heads / c->n_heads);
        c->par_attn_kv_heads = kv > 0 ? kv : 1;
        while (c->par_attn_heads % c->par_attn_kv_heads) c->par_attn_kv_heads--; /* largest divisor below */
    }
    if (c->par_attn_heads % c->par_attn_kv_heads)
        return hlab_fail(err, HLAB_EINVAL, "model.parallel.attn_heads %d is not divisible by model.parallel.attn_kv_heads %d",
                         c->par_attn_heads, c->par_attn_kv_heads);
    if (c->par_mamba_heads == 0) {
        if (has_par && c->d_model < c->mamba_headdim)
            return hlab_fail(err, HLAB_EINVAL,
                             "model.d_model %d is smaller than model.mamba.headdim %d: set model.parallel.mamba_heads",
                             c->d_model, c->mamba_headdim);
        c->par_mamba_heads = c->d_model / c->mamba_headdim > 0 ? c->d_model / c->mamba_headdim : 1;
    }
    if (has_par && c->par_mamba_heads % c->mamba_groups)
        return hlab_fail(err, HLAB_EINVAL, "model.parallel.mamba_heads %d is not divisible by model.mamba.groups %d",
                         c->par_mamba_heads, c->mamba_groups);

    /* channel sublayers */
    if ((unsigned)c->channel_attn > HLAB_CHANNEL_NONE || (unsigned)c->channel_mamba > HLAB_CHANNEL_NONE ||
        (unsigned)c->channel_parallel > HLAB_CHANNEL_NONE)
        return hlab_fail(err, HLAB_EINVAL, "model.ffn: expected dense, moe or none");
    if (c->d_ff < 0) return hlab_fail(err, HLAB_EINVAL, "model.d_ff %d must be >= 0 (0 = 8/3·d_model)", c->d_ff);
    if (c->d_ff == 0) c->d_ff = (int)(((8LL * c->d_model + 2) / 3 + 63) / 64 * 64);
    if (c->moe_d_ff < 0) return hlab_fail(err, HLAB_EINVAL, "model.moe.d_ff %d must be >= 0 (0 = model.d_ff)", c->moe_d_ff);
    if (c->moe_d_ff == 0) c->moe_d_ff = c->d_ff;
    if (!(c->moe_aux_alpha >= 0) || !isfinite(c->moe_aux_alpha))
        return hlab_fail(err, HLAB_EINVAL, "model.moe.aux_alpha %g must be >= 0", (double)c->moe_aux_alpha);
    if (uses_channel(c, HLAB_CHANNEL_MOE)) {
        if (c->moe_experts < 1) return hlab_fail(err, HLAB_EINVAL, "model.moe.experts %d must be positive", c->moe_experts);
        if (c->moe_top_k < 1) return hlab_fail(err, HLAB_EINVAL, "model.moe.top_k %d must be positive", c->moe_top_k);
        if (c->moe_top_k > c->moe_experts)
            return hlab_fail(err, HLAB_EINVAL, "model.moe.top_k %d > model.moe.experts %d", c->moe_top_k, c->moe_experts);
        if (c->moe_shared < 0) return hlab_fail(err, HLAB_EINVAL, "model.moe.shared %d must be >= 0", c->moe_shared);
    }
    return HLAB_OK;
}

/* ---- layer dimensions ------------------------------------------------------------ */
void arch_layer_dims(const hlab_model_config *c, int l, arch_layer *d) {
    memset(d, 0, sizeof *d);
    d->kind = c->layout[l];
    d->attn = d->kind != 'M';
    d->mamba = d->kind != 'A';
    d->dh = c->head_dim;
    d->Hq = d->kind == 'P' ? c->par_attn_heads : c->n_heads;
    d->Hkv = d->kind == 'P' ? c->par_attn_kv_heads : c->n_kv_heads;
    d->P = c->mamba_headdim;
    d->H = d->kind == 'P' ? c->par_mamba_heads : c->mamba_expand * c->d_model / c->mamba_headdim;
    d->Ns = c->mamba_d_state;
    d->G = c->mamba_groups;
    d->K = c->mamba_conv;
    d->Di = d->H * d->P;
    d->Cc = d->Di + 2 * d->G * d->Ns;
    d->Win = 2 * d->Di + 2 * d->G * d->Ns + d->H;
    d->channel = d->kind == 'A' ? c->channel_attn : d->kind == 'M' ? c->channel_mamba : c->channel_parallel;
}

/* ---- JSON ------------------------------------------------------------------------ */
int hlab_model_config_to_json(const hlab_model_config *c, hlab_buf *b, hlab_err *err) {
    hlab_buf_printf(b, "{\"d_model\":%d,\"n_layers\":%d,\"vocab_size\":%d,\"tied_head\":%s,", c->d_model, c->n_layers,
                    c->vocab_size, c->tied_head ? "true" : "false");
    hlab_buf_printf(b, "\"norm\":\"%s\",\"norm_eps\":%.9g,\"layout\":", hlab_norm_name(c->norm), (double)c->norm_eps);
    hlab_buf_json_string(b, c->layout);
    hlab_buf_printf(b, ",\"ratio\":\"%d:%d\",\"placement\":\"%s\",\"attn_indices\":[", c->ratio_attn, c->ratio_mamba,
                    hlab_placement_name(c->placement));
    for (int i = 0; i < c->n_attn_indices && i < HLAB_MAX_LAYERS; i++)
        hlab_buf_printf(b, "%s%d", i ? "," : "", c->attn_indices[i]);
    hlab_buf_printf(b, "],\"fusion\":\"%s\",\"fuse\":\"%s\",",
                    c->fusion == HLAB_FUSION_PARALLEL ? "parallel" : "sequential", hlab_fuse_op_name(c->fuse_op));
    hlab_buf_printf(b,
                    "\"n_heads\":%d,\"n_kv_heads\":%d,\"head_dim\":%d,\"qk_norm\":%s,\"rope\":%s,\"rope_theta\":%.9g,"
                    "\"window\":%d,",
                    c->n_heads, c->n_kv_heads, c->head_dim, c->qk_norm ? "true" : "false", c->rope ? "true" : "false",
                    (double)c->rope_theta, c->window);
    hlab_buf_printf(b, "\"parallel\":{\"attn_heads\":%d,\"attn_kv_heads\":%d,\"mamba_heads\":%d},", c->par_attn_heads,
                    c->par_attn_kv_heads, c->par_mamba_heads);
    hlab_buf_printf(b, "\"mamba\":{\"expand\":%d,\"headdim\":%d,\"d_state\":%d,\"groups\":%d,\"conv\":%d,\"chunk\":%d},",
                    c->mamba_expand, c->mamba_headdim, c->mamba_d_state, c->mamba_groups, c->mamba_conv, c->mamba_chunk);
    hlab_buf_printf(b, "\"ffn\":{\"attention\":\"%s\",\"mamba\":\"%s\",\"parallel\":\"%s\"},\"d_ff\":%d,",
                    hlab_channel_name(c->channel_attn), hlab_channel_name(c->channel_mamba),
                    hlab_channel_name(c->channel_parallel), c->d_ff);
    hlab_buf_printf(b, "\"moe\":{\"experts\":%d,\"top_k\":%d,\"shared\":%d,\"d_ff\":%d,\"renorm\":%s,\"aux_alpha\":%.9g}}",
                    c->moe_experts, c->moe_top_k, c->moe_shared, c->moe_d_ff, c->moe_renorm ? "true" : "false",
                    (double)c->moe_aux_alpha);
    return hlab_buf_status(b, err);
}
