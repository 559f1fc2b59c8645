/* tests/cuda/test_cuda_attention_tc.c — the bf16 tensor-core attention kernels (dh 64 and
 * 128) against the fp32 CPU reference, tolerance 1e-2. Shapes chosen for the tilings
 * (128-row blocks at dh 64, 64-row blocks at dh 128, 64-key forward tiles, 16-column backward
 * chunks): T below, at and between multiples of 64 and 128 (37..300), GQA groups 1..4,
 * window 0 / 9 / 20 / 33 / 37 / 70 / 130, and with HLAB_CUDA_LONG=1 T = 8192 (the CPU
 * reference needs about a minute). Each shape also runs twice on the GPU and the two results
 * must be bitwise equal (no atomics: deterministic).
 * Conventions: see parity.h. Skips (exit 77) where no CUDA device is usable.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "parity.h"

static void same_bits(par_ctx *x, buf2 b, void *again, const char *what) {
    hk_backend *hk = x->be[1];
    const size_t bytes = b.n * par_size(par_dtype(hk, b.kind));
    unsigned char *h0 = malloc(bytes ? bytes : 1), *h1 = malloc(bytes ? bytes : 1);
    hk->to_host(hk, h0, par_dtype(hk, b.kind), b.p[1], par_dtype(hk, b.kind), b.n);
    hk->to_host(hk, h1, par_dtype(hk, b.kind), again, par_dtype(hk, b.kind), b.n);
    const int same = memcmp(h0, h1, bytes) == 0;
    printf("DETERMINISM %-40s %s\n", what, same ? "bitwise equal" : "DIFFERENT");
    CHECK(same, "%s: two runs differ", what);
    free(h0);
    free(h1);
}

/* The relative errors of the Q, K and V column ranges of dqkv apart (diagnostics: which kernel). */
static void print_parts(par_ctx *x, buf2 dqkv, hk_attn_dims d, const char *tag) {
    float *ref = par_get(x, 0, dqkv), *got = par_get(x, 1, dqkv);
    const size_t N = (size_t)d.B * d.T, W = (size_t)(d.Hq + 2 * d.Hkv) * d.dh;
    const size_t lo[3] = {0, (size_t)d.Hq * d.dh, (size_t)(d.Hq + d.Hkv) * d.dh}, hi[3] = {lo[1], lo[2], W};
    double e[3];
    for (int p = 0; p < 3; p++) {
        double num = 0, den = 0;
        for (size_t r = 0; r < N; r++)
            for (size_t c = lo[p]; c < hi[p]; c++) {
                const double g = got[r * W + c], f = ref[r * W + c];
                num += (g - f) * (g - f);
                den += f * f;
            }
        e[p] = den > 0 ? sqrt(num / den) : sqrt(num);
    }
    printf("PARTS attn_bwd %-28s dq %.3e  dk %.3e  dv %.3e\n", tag, e[0], e[1], e[2]);
    free(ref);
    free(got);
}

static void t_attention(par_ctx *x, hk_attn_dims d) {
    const size_t N = (size_t)d.B * d.T, W = (size_t)(d.Hq + 2 * d.Hkv) * d.dh, OW = (size_t)d.Hq * d.dh;
    char tag[96], what[160];
    snprintf(tag, sizeof tag, "B%d T%d Hq%d/%d dh%d w%d", d.B, d.T, d.Hq, d.Hkv, d.dh, d.window);
    buf2 qkv = par_rand(x, N * W, KA, 1.5), out = par_poison(x, N * OW, KA);
    buf2 lse = par_poison(x, (size_t)d.B * d.Hq * d.T, KR);
    ON_BOTH(hk->attention_fwd(hk, D(out), D(lse), D(qkv), d));
    if (par_ran(x, "attention_fwd")) {
        snprintf(what, sizeof what, "attn_fwd out %s", tag);
        par_cmp(x, out, what);
        snprintf(what, sizeof what, "attn_fwd lse %s", tag);
        par_cmp(x, lse, what);
    }
    buf2 dout = par_rand(x, N * OW, KA, 1.0), dqkv = par_poison(x, N * W, KA);
    ON_BOTH(hk->attention_bwd(hk, D(dqkv), D(dout), D(out), D(lse), D(qkv), d));
    if (par_ran(x, "attention_bwd")) {
        snprintf(what, sizeof what, "attn_bwd dqkv %s", tag);
        par_cmp(x, dqkv, what);
        print_parts(x, dqkv, d, tag);
    }
    { /* again on the GPU: bitwise the same */
        hk_backend *hk = x->be[1];
        void *out2 = hk->alloc(hk, N * OW * 2), *lse2 = hk->alloc(hk, (size_t)d.B * d.Hq * d.T * 4);
        void *dqkv2 = hk->alloc(hk, N * W * 2);
        hk->attention_fwd(hk, out2, lse2, qkv.p[1], d);
        hk->attention_bwd(hk, dqkv2, dout.p[1], out2, lse2, qkv.p[1], d);
        if (par_ran(x, "attention again")) {
            snprintf(what, sizeof what, "out %s", tag);
            same_bits(x, out, out2, what);
            snprintf(what, sizeof what, "dqkv %s", tag);
            same_bits(x, dqkv, dqkv2, what);
        }
        hk->free(hk, out2); hk->free(hk, lse2); hk->free(hk, dqkv2);
    }
    par_free(x, &qkv); par_free(x, &out); par_free(x, &lse); par_free(x, &dout); par_free(x, &dqkv);
    par_recover(x);
}

static void run_shapes(par_ctx *x, int with_long) {
    const int dhs[2] = {64, 128};
    for (int k = 0; k < 2; k++) {
        const int dh = dhs[k];
        t_attention(x, (hk_attn_dims){2, 37, 4, 1, dh, 0});
        t_attention(x, (hk_attn_dims){1, 64, 2, 2, dh, 0});
        t_attention(x, (hk_attn_dims){2, 100, 4, 2, dh, 9});
        t_attention(x, (hk_attn_dims){1, 128, 3, 1, dh, 37});
        t_attention(x, (hk_attn_dims){1, 200, 6, 2, dh, 70});
        t_attention(x, (hk_attn_dims){2, 129, 4, 4, dh, 0});
        t_attention(x, (hk_attn_dims){1, 300, 4, 1, dh, 130});
        t_attention(x, (hk_attn_dims){1, 257, 6, 3, dh, 0});
        t_attention(x, (hk_attn_dims){1, 161, 2, 1, dh, 20}); /* window edges inside a 16-column chunk */
        t_attention(x, (hk_attn_dims){1, 230, 2, 2, dh, 33});
    }
    if (with_long) {
        t_attention(x, (hk_attn_dims){1, 8192, 2, 1, 64, 0});
        t_attention(x, (hk_attn_dims){1, 8192, 4, 2, 64, 1000});
        t_attention(x, (hk_attn_dims){1, 8192, 2, 2, 128, 0});
    }
}

int main(void) {
    if (hk_cuda_available() <= 0) test_skip("no CUDA device");
    const char *lg = getenv("HLAB_CUDA_LONG");
    par_ctx ctx, *x = &ctx;
    if (!par_open(x, HK_BF16, 9876)) return 1;
    { /* which forward / backward kernels run: the wgmma (sm_90a) ones on a CC 9.0 device unless 0 */
        const char *wg = getenv("HLAB_ATTN_WGMMA");
        printf("PATH attention: HLAB_ATTN_WGMMA=%s (wgmma sm_90a kernels on a compute capability 9.0 device "
               "unless it is 0; mma.sync otherwise)\n", wg ? wg : "unset");
    }
    run_shapes(x, lg && strcmp(lg, "1") == 0);
    par_close(x);
    return test_summary();
}
