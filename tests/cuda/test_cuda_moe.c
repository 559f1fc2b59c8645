/* tests/cuda/test_cuda_moe.c — the MoE channel sublayer on CUDA against the fp32
 * CPU reference: output, aux loss, input gradient and every parameter gradient
 * (pre-filled with random values: += is checked), with top-1 and top-2, with and
 * without renormalisation and shared experts, in the fp32 and bf16 modes.
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

static void t_moe(par_ctx *x, int N, int C, int E, int k, int F, int S, int Fs, int renorm) {
    hk_moe_dims d = {N, C, E, k, F, S, Fs, renorm, 0.01f};
    char tag[64];
    snprintf(tag, sizeof tag, "moe N%d E%d k%d S%d r%d", N, E, k, S, renorm);
    buf2 inp = par_rand(x, (size_t)N * C, KA, 1.0), wr = par_rand(x, (size_t)E * C, KA, 0.3);
    buf2 w13 = par_rand(x, (size_t)E * 2 * F * C, KA, 0.15), w2 = par_rand(x, (size_t)E * C * F, KA, 0.15);
    buf2 ws13 = par_rand(x, (size_t)(S ? S : 1) * 2 * Fs * C, KA, 0.15);
    buf2 ws2 = par_rand(x, (size_t)(S ? S : 1) * C * Fs, KA, 0.15);
    buf2 out = par_poison(x, (size_t)N * C, KA), aux = par_poison(x, 1, KR);
    buf2 cache = moe_cache_alloc(x, d);
    ON_BOTH(hk->moe_fwd(hk, D(out), D(aux), D(cache), D(inp), D(wr), D(w13), D(w2), S ? D(ws13) : NULL,
                        S ? D(ws2) : NULL, d));
    char what[96];
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
    for (int mi = 0; mi < 2; mi++) {
        par_ctx ctx, *x = &ctx;
        if (!par_open(x, modes[mi], 777 + mi)) return 1;
        t_moe(x, 64, 64, 8, 2, 48, 1, 32, 1);
        t_moe(x, 37, 40, 5, 1, 24, 0, 0, 0);
        t_moe(x, 50, 48, 6, 2, 32, 2, 16, 0);
        t_moe(x, 300, 128, 16, 2, 96, 1, 64, 1);
        par_close(x);
    }
    if (!compared) test_skip("the CPU MoE reference is not available in this build");
    return test_summary();
}
