/* tests/cuda/test_cuda_moe.c — the MoE channel sublayer on CUDA against the fp32
 * CPU reference: output, aux loss, input gradient and every parameter gradient
 * (pre-filled with random values: += is checked), with top-1 and top-2, with and
 * without renormalisation and shared experts, with skewed routing (one expert
 * taking every token, experts receiving none), widths that are not multiples of
 * 8 (the grouped GEMM's SIMT path in bf16), in the fp32 and bf16 modes, through
 * both expert paths: the device-side grouped GEMM (default) and the host-synced
 * per-expert cuBLASLt GEMMs (HLAB_MOE_SYNC=1; tags say "sync"); in bf16 also the grouped
 * GEMM's 128 x 256 tile, its earlier 32-wide k-tile and its weight-gradient split over row chunks
 * (tags "bn256", "bk32", "split").
 * Conventions: see parity.h. Skips (exit 77) where no CUDA device is usable.
 */
#include "parity.h"

static int compared;

/* The cache is backend-private: each side gets its own size. */
static buf2 moe_cache_alloc(par_ctx *x, hk_moe_dims d) {
    buf2 b = {{NULL, NULL}, 0, KR};
    for (int k = 0; k < 2; k++) {
        size_t bytes = x->be[k]->moe_cache_bytes(x->be[k], d);
        b.p[k] = x->be[k]->alloc(x->be[k], bytes ? bytes : 1);
    }
    return b;
}

enum { SKEW_NONE, SKEW_ONE, SKEW_ZERO };
static int sync_path;
static const char *variant = ""; /* grouped GEMM switches in force (HLAB_GG_BN, HLAB_GG_BK, HLAB_GG_SPLITK) */

/* Routing inputs: random, or skewed through a constant input column 0 and the
 * router's column 0 (the other router weights small: logit noise ~0.25):
 * SKEW_ONE puts expert 0's logit 3 above the rest (every token picks it first)
 * and the last expert's 3 below; SKEW_ZERO puts the last three experts 3 below
 * (no token reaches them for k <= E - 5). A moderate gap keeps the softmax away
 * from saturation, where the router gradient is a difference of near-equal
 * numbers and fp32 parity would measure rounding, not the kernels. */
static void moe_route_inputs(par_ctx *x, buf2 *inp, buf2 *wr, int N, int C, int E, int skew) {
    float *hi = (float *)malloc((size_t)N * C * sizeof(float)), *hw = (float *)malloc((size_t)E * C * sizeof(float));
    for (size_t i = 0; i < (size_t)N * C; i++) hi[i] = (float)(2.0 * hlab_rng_uniform(&x->rng) - 1.0);
    double ws = skew == SKEW_NONE ? 0.3 : 0.1;
    for (size_t i = 0; i < (size_t)E * C; i++) hw[i] = (float)(ws * (2.0 * hlab_rng_uniform(&x->rng) - 1.0));
    if (skew != SKEW_NONE) {
        for (int n = 0; n < N; n++) hi[(size_t)n * C] = 1.5f;
        for (int e = 0; e < E; e++) hw[(size_t)e * C] = 0.0f;
        if (skew == SKEW_ONE) {
            hw[0] = 2.0f;
            hw[(size_t)(E - 1) * C] = -2.0f;
        } else {
            for (int e = E - 3; e < E; e++) hw[(size_t)e * C] = -2.0f;
        }
    }
    *inp = par_from(x, hi, (size_t)N * C, KA);
    *wr = par_from(x, hw, (size_t)E * C, KA);
    free(hi);
    free(hw);
}

static void t_moe(par_ctx *x, int N, int C, int E, int k, int F, int S, int Fs, int renorm, int skew) {
    hk_moe_dims d = {N, C, E, k, F, S, Fs, renorm, 0.01f};
    char tag[80];
    static const char *skews[3] = {"", " one-expert", " empty-experts"};
    snprintf(tag, sizeof tag, "moe%s%s N%d C%d E%d k%d F%d S%d r%d%s", sync_path ? " sync" : "", variant, N, C, E,
             k, F, S, renorm, skews[skew]);
    buf2 inp, wr;
    moe_route_inputs(x, &inp, &wr, N, C, E, skew);
    buf2 w13 = par_rand(x, (size_t)E * 2 * F * C, KA, 0.15), w2 = par_rand(x, (size_t)E * C * F, KA, 0.15);
    buf2 ws13 = par_rand(x, (size_t)(S ? S : 1) * 2 * Fs * C, KA, 0.15);
    buf2 ws2 = par_rand(x, (size_t)(S ? S : 1) * C * Fs, KA, 0.15);
    buf2 out = par_poison(x, (size_t)N * C, KA), aux = par_poison(x, 1, KR);
    buf2 cache = moe_cache_alloc(x, d);
    ON_BOTH(hk->moe_fwd(hk, D(out), D(aux), D(cache), D(inp), D(wr), D(w13), D(w2), S ? D(ws13) : NULL,
                        S ? D(ws2) : NULL, d));
    char what[128];
    if (par_ran(x, tag)) {
        snprintf(what, sizeof what, "%s out", tag);
        par_cmp(x, out, what);
        snprintf(what, sizeof what, "%s aux", tag);
        par_cmp(x, aux, what);
        compared++;
    } else {
        goto out;
    }
    {
        buf2 dout = par_rand(x, (size_t)N * C, KA, 1.0), dinp = par_poison(x, (size_t)N * C, KA);
        buf2 dwr = par_rand(x, (size_t)E * C, KR, 0.1), dw13 = par_rand(x, (size_t)E * 2 * F * C, KR, 0.1);
        buf2 dw2 = par_rand(x, (size_t)E * C * F, KR, 0.1);
        buf2 dws13 = par_rand(x, (size_t)(S ? S : 1) * 2 * Fs * C, KR, 0.1);
        buf2 dws2 = par_rand(x, (size_t)(S ? S : 1) * C * Fs, KR, 0.1);
        ON_BOTH(hk->moe_bwd(hk, D(dinp), D(dwr), D(dw13), D(dw2), S ? D(dws13) : NULL, S ? D(dws2) : NULL, D(dout),
                            1.0f, D(cache), D(inp), D(wr), D(w13), D(w2), S ? D(ws13) : NULL, S ? D(ws2) : NULL, d));
        if (par_ran(x, "moe_bwd")) {
            snprintf(what, sizeof what, "%s dinp", tag);
            par_cmp(x, dinp, what);
            snprintf(what, sizeof what, "%s dw_router", tag);
            par_cmp(x, dwr, what);
            snprintf(what, sizeof what, "%s dw13", tag);
            par_cmp(x, dw13, what);
            snprintf(what, sizeof what, "%s dw2", tag);
            par_cmp(x, dw2, what);
            if (S) {
                snprintf(what, sizeof what, "%s dws13", tag);
                par_cmp(x, dws13, what);
                snprintf(what, sizeof what, "%s dws2", tag);
                par_cmp(x, dws2, what);
            }
        }
        par_free(x, &dout); par_free(x, &dinp); par_free(x, &dwr); par_free(x, &dw13); par_free(x, &dw2);
        par_free(x, &dws13); par_free(x, &dws2);
    }
out:
    par_free(x, &inp); par_free(x, &wr); par_free(x, &w13); par_free(x, &w2); par_free(x, &ws13);
    par_free(x, &ws2); par_free(x, &out); par_free(x, &aux); par_free(x, &cache);
    par_recover(x);
}

int main(void) {
    if (hk_cuda_available() <= 0) test_skip("no CUDA device");
    hk_dtype modes[2] = {HK_F32, HK_BF16};
    for (sync_path = 0; sync_path < 2; sync_path++) {
        if (sync_path) setenv("HLAB_MOE_SYNC", "1", 1);
        else unsetenv("HLAB_MOE_SYNC");
        for (int mi = 0; mi < 2; mi++) {
            par_ctx ctx, *x = &ctx;
            if (!par_open(x, modes[mi], 777 + mi)) return 1;
            t_moe(x, 64, 64, 8, 2, 48, 1, 32, 1, SKEW_NONE);
            t_moe(x, 37, 40, 5, 1, 24, 0, 0, 0, SKEW_NONE);
            t_moe(x, 50, 48, 6, 2, 32, 2, 16, 0, SKEW_NONE);
            t_moe(x, 300, 128, 16, 2, 96, 1, 64, 1, SKEW_NONE);
            t_moe(x, 200, 64, 6, 1, 40, 0, 0, 1, SKEW_ONE);    /* 200 rows in one expert: 2 row tiles */
            t_moe(x, 150, 48, 8, 2, 32, 1, 16, 0, SKEW_ZERO);  /* experts 5..7 get no token */
            t_moe(x, 45, 36, 5, 2, 20, 0, 0, 1, SKEW_NONE);    /* widths not multiples of 8 */
            t_moe(x, 700, 256, 8, 2, 192, 0, 0, 1, SKEW_NONE); /* several row and column tiles per expert */
            par_close(x);
        }
    }
    unsetenv("HLAB_MOE_SYNC");
    /* bf16 grouped-GEMM variants: the 128 x 256 tile, the earlier 32-wide k-tile, and the weight gradients
     * split over row chunks (the automatic choice splits only at larger row counts than these); top-3
     * takes the gather's division path (top-1, -2: a shift) */
    static const char *vars[5][4] = {{" bn256", "256", NULL, NULL},
                                     {" bk32", NULL, NULL, "32"},
                                     {" split3", NULL, "3", NULL},
                                     {" bn256 split5", "256", "5", NULL},
                                     {" bn256 bk32 split2", "256", "2", "32"}};
    for (int v = 0; v < 5; v++) {
        par_ctx ctx, *x = &ctx;
        if (vars[v][1]) setenv("HLAB_GG_BN", vars[v][1], 1);
        else unsetenv("HLAB_GG_BN");
        if (vars[v][2]) setenv("HLAB_GG_SPLITK", vars[v][2], 1);
        else unsetenv("HLAB_GG_SPLITK");
        if (vars[v][3]) setenv("HLAB_GG_BK", vars[v][3], 1);
        else unsetenv("HLAB_GG_BK");
        variant = vars[v][0];
        if (!par_open(x, HK_BF16, 900 + v)) return 1;
        t_moe(x, 700, 256, 8, 2, 192, 0, 0, 1, SKEW_NONE);
        t_moe(x, 200, 64, 6, 1, 40, 0, 0, 1, SKEW_ONE);
        t_moe(x, 150, 48, 8, 2, 32, 1, 16, 0, SKEW_ZERO);
        t_moe(x, 300, 128, 8, 3, 96, 0, 0, 1, SKEW_NONE);
        par_close(x);
    }
    unsetenv("HLAB_GG_BN");
    unsetenv("HLAB_GG_SPLITK");
    unsetenv("HLAB_GG_BK");
    variant = "";
    if (!compared) test_skip("the CPU MoE reference is not available in this build");
    return test_summary();
}
