/* tests/arch/test_model_cuda.c — the whole model on the CUDA backend against the
 * fp32 CPU reference: same config, same seed (init is on the host, so the
 * weights are identical), same tokens; the loss and every parameter gradient
 * are compared by relative norm error. CUDA with fp32 activations must match to
 * fp32 rounding; with bf16 activations, to bf16 rounding.
 * Skips (exit 77) where no GPU is present or the build has no CUDA.
 */
#include <string.h>

#include "arch/arch.h"
#include "test.h"

enum { B = 2, T = 37 };

static void base_config(hlab_model_config *c) {
    hlab_model_config_defaults(c);
    c->d_model = 64;
    c->n_layers = 2;
    c->vocab_size = 97;
    c->head_dim = 16;
    c->n_kv_heads = 2;
    c->mamba_headdim = 16;
    c->mamba_d_state = 16;
    c->mamba_chunk = 16; /* T = 37: chunks 16, 16, 5 */
    c->moe_experts = 4;
    c->moe_top_k = 2;
    c->moe_d_ff = 48;
}

/* Runs forward + backward; fills *loss and grads (host, float). */
static int run(const hlab_model_config *c, hk_backend *hk, const int32_t *tok, const int32_t *tgt, double *loss,
               float **grads, int64_t *n) {
    hlab_err err = {0};
    hlab_model *m = hlab_model_create(c, hk, B, T, &err);
    int rc = m ? hlab_model_init(m, 42, &err) : err.code;
    if (!rc) {
        hlab_model_zero_grads(m);
        rc = hlab_model_forward(m, tok, tgt, B, NULL, NULL, &err);
    }
    if (!rc) rc = hlab_model_backward(m, &err);
    if (!rc) {
        hlab_model_n_params(m, NULL, n);
        *loss = hlab_model_last_loss(m);
        *grads = malloc((size_t)*n * sizeof **grads);
        for (int64_t i = 0; i < *n; i++) (*grads)[i] = NAN; /* poison */
        hk->to_host(hk, *grads, HK_F32, hlab_model_grads(m), hk->real, (size_t)*n);
        rc = hk->check(hk, &err);
    }
    if (rc) fprintf(stderr, "%s on %s: %s\n", c->layout, hk->name, err.msg);
    hlab_model_destroy(m);
    return rc;
}

static void compare(const char *what, const hlab_model_config *c, hk_backend *cpu, hk_backend *gpu, double tol_loss,
                    double tol_grad) {
    hlab_rng r;
    hlab_rng_seed(&r, 7);
    int32_t tok[B * T], tgt[B * T];
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)hlab_rng_below(&r, (uint64_t)c->vocab_size);
    for (int i = 0; i < B * T; i++) tgt[i] = (int32_t)hlab_rng_below(&r, (uint64_t)c->vocab_size);
    double l_cpu = 0, l_gpu = 0;
    float *g_cpu = NULL, *g_gpu = NULL;
    int64_t n_cpu = 0, n_gpu = 0;
    int rc1 = run(c, cpu, tok, tgt, &l_cpu, &g_cpu, &n_cpu), rc2 = run(c, gpu, tok, tgt, &l_gpu, &g_gpu, &n_gpu);
    CHECK(!rc1 && !rc2, "%s: runs failed", what);
    if (!rc1 && !rc2) {
        CHECK(fabs(l_gpu - l_cpu) <= tol_loss * fabs(l_cpu), "%s: loss %s %.7f vs cpu %.7f", what, gpu->name, l_gpu,
              l_cpu);
        CHECK_REL(g_gpu, g_cpu, (size_t)n_cpu, tol_grad, what);
        printf("%-40s %s loss %.7f cpu %.7f, grad rel err %.2e\n", what, hk_dtype_name(gpu->act), l_gpu, l_cpu,
               test_rel_err_f32(g_gpu, g_cpu, (size_t)n_cpu));
    }
    free(g_cpu);
    free(g_gpu);
}

int main(void) {
    if (hk_cuda_available() < 1) test_skip("no CUDA device (or a build without CUDA)");
    hlab_err err = {0};
    hk_backend *cpu = hk_cpu_create(HK_F32, 0, &err);
    hk_backend *g32 = hk_cuda_create(0, HK_F32, &err);
    hk_backend *g16 = g32 ? hk_cuda_create(0, HK_BF16, &err) : NULL;
    if (!cpu || !g32 || !g16) {
        fprintf(stderr, "backends: %s\n", err.msg);
        return 1;
    }
    /* Every design kind (pure attention, pure Mamba-2, sequential hybrid, parallel with each of
     * the five fusion operators), each dense and with MoE; norms and QK-norm vary across cases. */
    struct { const char *what; const char *layout; hlab_fuse_op fuse; hlab_norm_kind norm; int qk; } kinds[] = {
        {"attention", "AA", HLAB_FUSE_ADD, HLAB_NORM_RMS, 0},
        {"attention qk-norm layernorm", "AA", HLAB_FUSE_ADD, HLAB_NORM_LAYER, 1},
        {"mamba", "MM", HLAB_FUSE_ADD, HLAB_NORM_RMS, 0},
        {"sequential hybrid MA", "MA", HLAB_FUSE_ADD, HLAB_NORM_RMS, 0},
        {"parallel add", "PP", HLAB_FUSE_ADD, HLAB_NORM_RMS, 0},
        {"parallel mean", "PP", HLAB_FUSE_MEAN, HLAB_NORM_LAYER, 0},
        {"parallel normadd", "PP", HLAB_FUSE_NORMADD, HLAB_NORM_RMS, 0},
        {"parallel concat", "PP", HLAB_FUSE_CONCAT, HLAB_NORM_LAYER, 0},
        {"parallel gate", "PM", HLAB_FUSE_GATE, HLAB_NORM_RMS, 1},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++)
        for (int moe = 0; moe <= 1; moe++) {
            hlab_model_config c;
            base_config(&c);
            strcpy(c.layout, kinds[i].layout);
            c.fuse_op = kinds[i].fuse;
            c.channel_attn = c.channel_mamba = c.channel_parallel = moe ? HLAB_CHANNEL_MOE : HLAB_CHANNEL_DENSE;
            c.norm = kinds[i].norm;
            c.qk_norm = kinds[i].qk;
            char what[96];
            snprintf(what, sizeof what, "%s %s", kinds[i].what, moe ? "moe" : "dense");
            TEST_UNIT(compare(what, &c, cpu, g32, 1e-5, 1e-5)); /* H100: loss 3e-8, grads <= 5e-7 */
            TEST_UNIT(compare(what, &c, cpu, g16, 1e-3, 3e-2)); /* H100: loss <= 7e-5, grads <= 9e-3 */
        }

    /* The same kinds at head dims that take the bf16 fast paths (tensor-core attention at dh 64,
     * tensor-core SSD at P 64, N 64), so the whole model runs through the kernels the bench uses. */
    struct { const char *what; const char *layout; hlab_fuse_op fuse; int moe; } fast[] = {
        {"fast attention", "AA", HLAB_FUSE_ADD, 0},   {"fast mamba", "MM", HLAB_FUSE_ADD, 0},
        {"fast hybrid MA moe", "MA", HLAB_FUSE_ADD, 1}, {"fast parallel normadd", "PP", HLAB_FUSE_NORMADD, 0},
        {"fast parallel gate moe", "PM", HLAB_FUSE_GATE, 1},
    };
    for (size_t i = 0; i < sizeof fast / sizeof *fast; i++) {
        hlab_model_config c;
        base_config(&c);
        c.d_model = 128;
        c.head_dim = 64;
        c.n_heads = 2;
        c.n_kv_heads = 1;
        c.mamba_headdim = 64;
        c.mamba_d_state = 64;
        c.par_attn_heads = 2;
        c.par_attn_kv_heads = 1;
        c.par_mamba_heads = 2;
        strcpy(c.layout, fast[i].layout);
        c.fuse_op = fast[i].fuse;
        c.channel_attn = c.channel_mamba = c.channel_parallel = fast[i].moe ? HLAB_CHANNEL_MOE : HLAB_CHANNEL_DENSE;
        TEST_UNIT(compare(fast[i].what, &c, cpu, g16, 1e-3, 3e-2));
    }
    hk_destroy(g16);
    hk_destroy(g32);
    hk_destroy(cpu);
    return test_summary();
}
