/* tests/kernels/test_profile.c — the profiling wrapper (kernels/profile.c) on the
 * CPU backend:
 *   - ops through the wrapper give bit-identical results to the bare backend
 *     (matmul with bias, attention full and windowed, SSD with a ragged last
 *     chunk, forward and backward), and are counted once per call;
 *   - FLOPs of matmul, attention (pairs counted by brute force over the mask)
 *     and SSD match hand-computed values; matmul bytes too;
 *   - switched off, ops run but are not counted; reset zeroes the counters;
 *   - a function the wrapper does not wrap (an op added later) works when
 *     called with the wrapper as hk (shared impl) and is not counted;
 *   - whole training steps (attention, Mamba-2 and parallel layers, QK-norm,
 *     window) through the wrapper give bit-identical losses, and
 *     hlab_bench_model_profiled counts exactly the profiled steps;
 *   - destroy frees the wrapper and the inner backend (ASan/LSan run).
 */
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "train/train.h"
#include "test.h"

static const hk_profile_op *find_op(const hk_profile_op *ops, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(ops[i].op, name)) return &ops[i];
    return NULL;
}

/* One buffer on each backend holding the same values. */
typedef struct {
    float *bare, *prof;
    size_t n;
} pair_buf;

static pair_buf pair_alloc(hk_backend *bare, hk_backend *prof, hlab_rng *r, size_t n, double scale) {
    pair_buf p = {bare->alloc(bare, n * sizeof(float)), prof->alloc(prof, n * sizeof(float)), n};
    float *host = malloc(n * sizeof *host);
    test_fill_f32(r, host, n, scale);
    bare->from_host(bare, p.bare, HK_F32, host, HK_F32, n);
    prof->from_host(prof, p.prof, HK_F32, host, HK_F32, n);
    free(host);
    return p;
}

static void pair_free(hk_backend *bare, hk_backend *prof, pair_buf *p) {
    bare->free(bare, p->bare);
    prof->free(prof, p->prof);
}

static int pair_same(hk_backend *bare, hk_backend *prof, const pair_buf *p) {
    float *a = malloc(p->n * sizeof *a), *b = malloc(p->n * sizeof *b);
    bare->to_host(bare, a, HK_F32, p->bare, HK_F32, p->n);
    prof->to_host(prof, b, HK_F32, p->prof, HK_F32, p->n);
    int same = !memcmp(a, b, p->n * sizeof *a);
    free(a);
    free(b);
    return same;
}

static double brute_pairs(hk_attn_dims d) {
    double n = 0;
    for (int i = 0; i < d.T; i++)
        for (int j = 0; j <= i; j++) n += d.window == 0 || i - j < d.window;
    return n * d.B;
}

/* spec: "cpu", or "cuda-f32" (fp32 activations, so every buffer here is f32) where a GPU is present. */
static void test_ops(const char *spec) {
    hlab_err err = {0};
    hk_backend *bare = hk_open(spec, &err);
    hk_backend *inner = bare ? hk_open(spec, &err) : NULL;
    hk_backend *prof = inner ? hk_profile_wrap(inner, &err) : NULL;
    CHECK(bare && prof, "%s backends: %s", spec, err.msg);
    if (!prof) hk_destroy(inner);
    if (!bare || !prof) {
        hk_destroy(bare);
        return;
    }
    printf("ops on %s\n", bare->name);
    CHECK(hk_profile_is(prof) && !hk_profile_is(bare) && hk_profile_inner(prof) == inner, "wrapper identity");
    CHECK(!strcmp(prof->name, bare->name) && prof->act == HK_F32 && prof->real == HK_F32,
          "wrapper keeps name and dtypes");
    hlab_rng r;
    hlab_rng_seed(&r, 42);

    /* matmul: N 3, C 5, OC 7, with bias; bwd with dinp and dbias. */
    const int N = 3, C = 5, OC = 7;
    pair_buf inp = pair_alloc(bare, prof, &r, (size_t)N * C, 1), w = pair_alloc(bare, prof, &r, (size_t)OC * C, 1);
    pair_buf bias = pair_alloc(bare, prof, &r, OC, 1), out = pair_alloc(bare, prof, &r, (size_t)N * OC, 1);
    pair_buf dout = pair_alloc(bare, prof, &r, (size_t)N * OC, 1), dinp = pair_alloc(bare, prof, &r, (size_t)N * C, 1);
    pair_buf dw = pair_alloc(bare, prof, &r, (size_t)OC * C, 1), db = pair_alloc(bare, prof, &r, OC, 1);
    hk_profile_reset(prof); /* the uploads above were counted (from_host) */
    for (int rep = 0; rep < 2; rep++) {
        bare->matmul_fwd(bare, out.bare, inp.bare, w.bare, bias.bare, N, C, OC);
        prof->matmul_fwd(prof, out.prof, inp.prof, w.prof, bias.prof, N, C, OC);
    }
    bare->matmul_bwd(bare, dinp.bare, dw.bare, db.bare, dout.bare, inp.bare, w.bare, N, C, OC, 0);
    prof->matmul_bwd(prof, dinp.prof, dw.prof, db.prof, dout.prof, inp.prof, w.prof, N, C, OC, 0);
    CHECK(pair_same(bare, prof, &out) && pair_same(bare, prof, &dinp) && pair_same(bare, prof, &dw) &&
              pair_same(bare, prof, &db),
          "matmul: wrapper results differ from the bare backend");
    hk_profile_op ops[HK_PROFILE_MAX_OPS];
    int n = hk_profile_read(prof, ops, HK_PROFILE_MAX_OPS);
    const hk_profile_op *mf = find_op(ops, n, "matmul_fwd"), *mb = find_op(ops, n, "matmul_bwd");
    CHECK(mf && mf->calls == 2, "matmul_fwd calls %lld, expected 2", mf ? (long long)mf->calls : -1LL);
    CHECK(mb && mb->calls == 1, "matmul_bwd calls %lld, expected 1", mb ? (long long)mb->calls : -1LL);
    /* fwd: 2·3·5·7 = 210 + bias 21 per call; bytes (f32): (15 + 35 + 21) · 4 + 7 · 4 = 312 per call */
    CHECK(mf && mf->flops == 2 * 231.0 && mf->bytes == 2 * 312.0, "matmul_fwd flops %g bytes %g, expected 462 624",
          mf ? mf->flops : -1, mf ? mf->bytes : -1);
    /* bwd: dinp 210 + dw 210 + dbias 21 = 441 */
    CHECK(mb && mb->flops == 441.0, "matmul_bwd flops %g, expected 441", mb ? mb->flops : -1);
    CHECK(mf && mf->seconds >= 0 && !mf->host_link, "matmul_fwd time and kind");
    const hk_profile_op *th = find_op(ops, n, "to_host"); /* the 4 read-backs of the comparison */
    CHECK(th && th->calls == 4 && th->host_link && th->bytes == 4.0 * (N * OC + N * C + OC * C + OC),
          "to_host counters");
    CHECK(n == 3, "only the ops called since the reset are listed (%d)", n);
    CHECK(hk_profile_read(prof, NULL, 0) == 3, "read with no room still counts the ops");

    /* Off: run, not counted. A later-added op (here: the inner function itself) called with the wrapper. */
    hk_profile_enable(prof, 0);
    prof->matmul_fwd(prof, out.prof, inp.prof, w.prof, NULL, N, C, OC);
    hk_profile_enable(prof, 1);
    inner->add(prof, out.prof, out.prof, out.prof, (size_t)N * OC);
    bare->matmul_fwd(bare, out.bare, inp.bare, w.bare, NULL, N, C, OC);
    bare->add(bare, out.bare, out.bare, out.bare, (size_t)N * OC);
    CHECK(pair_same(bare, prof, &out), "disabled op or pass-through op: result differs");
    n = hk_profile_read(prof, ops, HK_PROFILE_MAX_OPS);
    mf = find_op(ops, n, "matmul_fwd");
    CHECK(mf && mf->calls == 2 && !find_op(ops, n, "add"), "off / pass-through calls were counted");
    hlab_err cerr = {0};
    CHECK(prof->check(prof, &cerr) == HLAB_OK, "check after pass-through: %s", cerr.msg);
    hk_profile_reset(prof);
    CHECK(hk_profile_read(prof, ops, HK_PROFILE_MAX_OPS) == 0, "reset leaves counters");
    pair_buf *mm[] = {&inp, &w, &bias, &out, &dout, &dinp, &dw, &db};
    for (size_t i = 0; i < sizeof mm / sizeof mm[0]; i++) pair_free(bare, prof, mm[i]);

    /* attention: B 2, T 7, GQA 2:1, dh 4; full causal then window 3. */
    for (int window = 0; window <= 3; window += 3) {
        hk_attn_dims d = {.B = 2, .T = 7, .Hq = 2, .Hkv = 1, .dh = 4, .window = window};
        size_t nq = (size_t)d.B * d.T * (d.Hq + 2 * d.Hkv) * d.dh, no = (size_t)d.B * d.T * d.Hq * d.dh;
        pair_buf qkv = pair_alloc(bare, prof, &r, nq, 1), o = pair_alloc(bare, prof, &r, no, 1);
        pair_buf lse = pair_alloc(bare, prof, &r, (size_t)d.B * d.Hq * d.T, 1), dq = pair_alloc(bare, prof, &r, nq, 1);
        pair_buf go = pair_alloc(bare, prof, &r, no, 1);
        hk_profile_reset(prof);
        bare->attention_fwd(bare, o.bare, lse.bare, qkv.bare, d);
        prof->attention_fwd(prof, o.prof, lse.prof, qkv.prof, d);
        bare->attention_bwd(bare, dq.bare, go.bare, o.bare, lse.bare, qkv.bare, d);
        prof->attention_bwd(prof, dq.prof, go.prof, o.prof, lse.prof, qkv.prof, d);
        CHECK(pair_same(bare, prof, &o) && pair_same(bare, prof, &lse) && pair_same(bare, prof, &dq),
              "attention window %d: wrapper results differ", window);
        n = hk_profile_read(prof, ops, HK_PROFILE_MAX_OPS);
        const hk_profile_op *af = find_op(ops, n, "attention_fwd"), *ab = find_op(ops, n, "attention_bwd");
        /* pairs per sequence: 28 causal; window 3: 1 + 2 + 3·5 = 18 */
        double pairs = brute_pairs(d), hand = window ? 2 * 18.0 : 2 * 28.0;
        CHECK(pairs == hand && hk_profile_attention_pairs(d) == hand, "attention pairs %g / %g, expected %g", pairs,
              hk_profile_attention_pairs(d), hand);
        CHECK(af && af->calls == 1 && af->flops == 4.0 * 4 * 2 * hand, "attention_fwd flops %g, expected %g",
              af ? af->flops : -1, 4.0 * 4 * 2 * hand);
        CHECK(ab && ab->calls == 1 && ab->flops == 2.5 * 4.0 * 4 * 2 * hand, "attention_bwd flops %g, expected %g",
              ab ? ab->flops : -1, 2.5 * 4.0 * 4 * 2 * hand);
        pair_buf *ab_[] = {&qkv, &o, &lse, &dq, &go};
        for (size_t i = 0; i < sizeof ab_ / sizeof ab_[0]; i++) pair_free(bare, prof, ab_[i]);
    }

    /* SSD: B 1, T 10, chunk 4 (chunks 4, 4, 2), H 2, P 3, G 1, N 2. */
    {
        hk_ssd_dims d = {.B = 1, .T = 10, .H = 2, .P = 3, .G = 1, .N = 2, .chunk = 4};
        size_t tok = (size_t)d.B * d.T, wx = (size_t)d.H * d.P + 2 * d.G * d.N, nch = 3;
        pair_buf xbc = pair_alloc(bare, prof, &r, tok * wx, 1), dt = pair_alloc(bare, prof, &r, tok * d.H, 1);
        pair_buf dtb = pair_alloc(bare, prof, &r, d.H, 0.5), alog = pair_alloc(bare, prof, &r, d.H, 0.5);
        pair_buf dsk = pair_alloc(bare, prof, &r, d.H, 1), y = pair_alloc(bare, prof, &r, tok * d.H * d.P, 1);
        pair_buf st = pair_alloc(bare, prof, &r, nch * d.H * d.P * d.N, 1), dy = pair_alloc(bare, prof, &r, tok * d.H * d.P, 1);
        pair_buf dxbc = pair_alloc(bare, prof, &r, tok * wx, 1), ddt = pair_alloc(bare, prof, &r, tok * d.H, 1);
        pair_buf g1 = pair_alloc(bare, prof, &r, d.H, 1), g2 = pair_alloc(bare, prof, &r, d.H, 1),
                 g3 = pair_alloc(bare, prof, &r, d.H, 1);
        hk_profile_reset(prof);
        bare->ssd_fwd(bare, y.bare, st.bare, xbc.bare, dt.bare, dtb.bare, alog.bare, dsk.bare, d);
        prof->ssd_fwd(prof, y.prof, st.prof, xbc.prof, dt.prof, dtb.prof, alog.prof, dsk.prof, d);
        bare->ssd_bwd(bare, dxbc.bare, ddt.bare, g1.bare, g2.bare, g3.bare, dy.bare, st.bare, xbc.bare, dt.bare,
                      dtb.bare, alog.bare, dsk.bare, d);
        prof->ssd_bwd(prof, dxbc.prof, ddt.prof, g1.prof, g2.prof, g3.prof, dy.prof, st.prof, xbc.prof, dt.prof,
                      dtb.prof, alog.prof, dsk.prof, d);
        CHECK(pair_same(bare, prof, &y) && pair_same(bare, prof, &st) && pair_same(bare, prof, &dxbc) &&
                  pair_same(bare, prof, &ddt) && pair_same(bare, prof, &g1) && pair_same(bare, prof, &g2) &&
                  pair_same(bare, prof, &g3),
              "ssd: wrapper results differ");
        n = hk_profile_read(prof, ops, HK_PROFILE_MAX_OPS);
        const hk_profile_op *sf = find_op(ops, n, "ssd_fwd"), *sb = find_op(ops, n, "ssd_bwd");
        /* Σ L² = 16 + 16 + 4 = 36. fwd 2·G·N·36 + 2·H·P·36 + 4·H·P·N·T = 144 + 432 + 480;
         * bwd 6·G·N·36 + 4·H·P·36 + 8·H·P·N·T = 432 + 864 + 960. */
        CHECK(sf && sf->flops == 1056.0, "ssd_fwd flops %g, expected 1056", sf ? sf->flops : -1);
        CHECK(sb && sb->flops == 2256.0, "ssd_bwd flops %g, expected 2256", sb ? sb->flops : -1);
        /* bytes fwd (f32): xbc 10·10 + dt 20 + y 60 + states 36 + 3 params 6 = 222 elements */
        CHECK(sf && sf->bytes == 4.0 * 222, "ssd_fwd bytes %g, expected %g", sf ? sf->bytes : -1, 4.0 * 222);
        pair_buf *sp[] = {&xbc, &dt, &dtb, &alog, &dsk, &y, &st, &dy, &dxbc, &ddt, &g1, &g2, &g3};
        for (size_t i = 0; i < sizeof sp / sizeof sp[0]; i++) pair_free(bare, prof, sp[i]);
    }
    CHECK(prof->peak_bytes(prof) == inner->peak_bytes(inner) && prof->peak_bytes(prof) > 0, "peak passes through");
    hlab_err e1 = {0}, e2 = {0};
    CHECK(bare->sync(bare, &e1) == HLAB_OK && prof->sync(prof, &e2) == HLAB_OK, "%s: op errors: %s / %s", spec, e1.msg,
          e2.msg);
    hk_destroy(bare);
    hk_destroy(prof); /* destroys inner too: LeakSanitizer checks */
}

static hk_backend *wrap_open(const char *spec, hlab_err *err) {
    hk_backend *inner = hk_open(spec, err), *prof = inner ? hk_profile_wrap(inner, err) : NULL;
    if (!prof) hk_destroy(inner);
    return prof;
}

static void model_config(hlab_model_config *c) {
    hlab_model_config_defaults(c);
    c->d_model = 32;
    c->n_layers = 3;
    c->vocab_size = 40;
    snprintf(c->layout, sizeof c->layout, "AMP");
    c->head_dim = 8;
    c->n_kv_heads = 2;
    c->qk_norm = 1;
    c->window = 5;
    c->mamba_headdim = 8;
    c->mamba_d_state = 8;
    c->mamba_chunk = 4;
    c->d_ff = 48;
}

/* spec: "cpu", or "cuda" (bf16) where a GPU is present: its kernels are deterministic too. */
static void test_model(const char *spec) {
    hlab_model_config cfg;
    model_config(&cfg);
    hlab_err err = {0};
    enum { B = 2, T = 11, WARMUP = 1, STEPS = 2, PROFILED = 2 };
    printf("training steps on %s\n", spec);
    hk_backend *bare = hk_open(spec, &err);
    hlab_bench_result rb, rp, rq;
    int rc = bare ? hlab_bench_model(&cfg, bare, B, T, WARMUP, STEPS, 7, &rb, &err) : err.code;
    CHECK(rc == HLAB_OK, "bare bench: %s", err.msg);
    hk_destroy(bare);

    /* Every step (set-up included) through an enabled wrapper. */
    hk_backend *prof = wrap_open(spec, &err);
    CHECK(prof != NULL, "wrap: %s", err.msg);
    if (!prof) return;
    rc = hlab_bench_model(&cfg, prof, B, T, WARMUP, STEPS, 7, &rp, &err);
    CHECK(rc == HLAB_OK, "profiled bench: %s", err.msg);
    CHECK(!memcmp(&rb.loss_first, &rp.loss_first, sizeof(double)) &&
              !memcmp(&rb.loss_last, &rp.loss_last, sizeof(double)),
          "losses through the wrapper differ: %.9g %.9g vs %.9g %.9g", rp.loss_first, rp.loss_last, rb.loss_first,
          rb.loss_last);
    CHECK(rp.peak_bytes == rb.peak_bytes, "peak %lld vs %lld", (long long)rp.peak_bytes, (long long)rb.peak_bytes);
    hk_profile_op ops[HK_PROFILE_MAX_OPS];
    int n = hk_profile_read(prof, ops, HK_PROFILE_MAX_OPS);
    CHECK(n > 10, "only %d ops seen in training steps", n);
    hk_destroy(prof);

    /* Timed steps unprofiled, then PROFILED counted steps. */
    prof = wrap_open(spec, &err);
    if (!prof) return;
    rc = hlab_bench_model_profiled(&cfg, prof, B, T, WARMUP, STEPS, PROFILED, 7, &rq, &err);
    CHECK(rc == HLAB_OK, "bench with profiled steps: %s", err.msg);
    CHECK(!memcmp(&rb.loss_last, &rq.loss_last, sizeof(double)), "timed-step loss changed by profiling");
    CHECK(rq.profile_steps == PROFILED && rq.profile_step_s > 0, "profile steps %d, %g s", rq.profile_steps,
          rq.profile_step_s);
    n = hk_profile_read(prof, ops, HK_PROFILE_MAX_OPS);
    const hk_profile_op *af = find_op(ops, n, "attention_fwd"), *sf = find_op(ops, n, "ssd_fwd"),
                        *ab = find_op(ops, n, "attention_bwd"), *ad = find_op(ops, n, "adamw"),
                        *mf = find_op(ops, n, "matmul_fwd");
    /* A and P layers attend, M and P layers scan: 2 of each per step. */
    CHECK(af && af->calls == 2 * PROFILED && ab && ab->calls == 2 * PROFILED, "attention calls %lld, expected %d",
          af ? (long long)af->calls : -1LL, 2 * PROFILED);
    CHECK(sf && sf->calls == 2 * PROFILED, "ssd_fwd calls %lld, expected %d", sf ? (long long)sf->calls : -1LL,
          2 * PROFILED);
    hk_attn_dims d = {.B = B, .T = T, .Hq = 4, .Hkv = 2, .dh = 8, .window = 5};
    hk_attn_dims dp = d; /* the P layer's branch: half the query heads, kv heads in proportion */
    dp.Hq = 2;
    dp.Hkv = 1;
    double expect = PROFILED * (hk_profile_attention_flops(d, 0) + hk_profile_attention_flops(dp, 0));
    CHECK(af && af->flops == expect, "attention_fwd flops %g, expected %g", af ? af->flops : -1, expect);
    CHECK(ad && ad->calls % PROFILED == 0 && mf && mf->calls % PROFILED == 0, "per-step call counts");
    hk_profile_op none;
    CHECK(hk_profile_read(prof, &none, 0) == n, "count stable");
    hk_destroy(prof);

    /* Profiled steps need a wrapper. */
    bare = hk_open(spec, &err);
    rc = hlab_bench_model_profiled(&cfg, bare, B, T, 0, 1, 1, 7, &rq, &err);
    CHECK(rc == HLAB_EINVAL, "profiled steps on a plain backend: rc %d", rc);
    hk_destroy(bare);
}

int main(void) {
    /* The bitwise comparisons below pair two CUDA backends; with GEMM autotuning each would time
     * cuBLASLt's candidates on its own and may keep a different (equally valid) algorithm. */
    setenv("HLAB_GEMM_AUTOTUNE", "0", 1);
    hlab_err err = {0};
    CHECK(hk_profile_wrap(NULL, &err) == NULL && err.code == HLAB_EINVAL, "wrap(NULL)");
    test_ops("cpu");
    test_model("cpu");
    if (hk_cuda_available() > 0) { /* the same checks through the CUDA backend (pass-through via impl) */
        test_ops("cuda-f32");
        test_model("cuda");
    } else {
        printf("no CUDA device: CPU only\n");
    }
    return test_summary();
}
