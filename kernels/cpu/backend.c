/* kernels/cpu/backend.c — the CPU backend's plumbing: the op table, memory,
 * host copies with dtype conversion, and the sticky first error.
 *
 * Conventions. Compiled twice (cpu.h): `real` is float for "cpu" and double for
 * "cpu-f64"; on the CPU A = R = real. Memory is host memory: every alloc() block
 * is 64-byte aligned and carries a 64-byte header in front of the pointer that
 * records its size, so free() can keep the live/peak byte counts exact. Copies
 * convert element by element between F32, F64 and BF16 (bf16 = the top 16 bits
 * of an IEEE float, rounded to nearest even; NaN stays NaN). F64 -> BF16 rounds
 * through float first. The backend is used from one host thread; the ops
 * themselves may run OpenMP teams.
 */
#include <cblas.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu.h"

#define CPU_ALIGN 64
#define CPU_HEADER 64 /* bytes in front of each block; a multiple of CPU_ALIGN */
#define CONVERT_PAR_MIN 65536

typedef struct {
    size_t live_bytes, peak_bytes;
    hlab_err first_error; /* code HLAB_OK until the first failure */
} cpu_state;

static cpu_state *cpu_state_of(hk_backend *hk) { return (cpu_state *)hk->impl; }

void CPU_FN(fail)(hk_backend *hk, int code, const char *fmt, ...) {
    cpu_state *s = cpu_state_of(hk);
    if (s->first_error.code != HLAB_OK) return;
    s->first_error.code = code;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(s->first_error.msg, sizeof s->first_error.msg, fmt, ap);
    va_end(ap);
    if (n < 0) s->first_error.msg[0] = '\0';
}

int CPU_FN(check)(hk_backend *hk, hlab_err *err) {
    cpu_state *s = cpu_state_of(hk);
    if (s->first_error.code == HLAB_OK) return HLAB_OK;
    return hlab_fail(err, s->first_error.code, "%s: %s", hk->name, s->first_error.msg);
}

/* The CPU runs every op to completion before it returns: nothing is queued. */
int CPU_FN(sync)(hk_backend *hk, hlab_err *err) { return CPU_FN(check)(hk, err); }

void *CPU_FN(alloc)(hk_backend *hk, size_t bytes) {
    cpu_state *s = cpu_state_of(hk);
    size_t rounded = (bytes + CPU_ALIGN - 1) / CPU_ALIGN * CPU_ALIGN;
    if (rounded < bytes || rounded > SIZE_MAX - CPU_HEADER) {
        CPU_FN(fail)(hk, HLAB_ENOMEM, "alloc: %zu bytes is too large", bytes);
        return NULL;
    }
    unsigned char *block = aligned_alloc(CPU_ALIGN, CPU_HEADER + rounded);
    if (!block) {
        CPU_FN(fail)(hk, HLAB_ENOMEM, "alloc: out of host memory for %zu bytes (live %zu bytes)", bytes,
                     s->live_bytes);
        return NULL;
    }
    memcpy(block, &bytes, sizeof bytes);
    s->live_bytes += bytes;
    if (s->live_bytes > s->peak_bytes) s->peak_bytes = s->live_bytes;
    return block + CPU_HEADER;
}

void CPU_FN(free)(hk_backend *hk, void *ptr) {
    if (!ptr) return;
    unsigned char *block = (unsigned char *)ptr - CPU_HEADER;
    size_t bytes;
    memcpy(&bytes, block, sizeof bytes);
    cpu_state_of(hk)->live_bytes -= bytes;
    free(block);
}

void CPU_FN(zero)(hk_backend *hk, void *ptr, size_t bytes) {
    (void)hk;
    if (ptr && bytes) memset(ptr, 0, bytes);
}

size_t CPU_FN(peak_bytes)(hk_backend *hk) { return cpu_state_of(hk)->peak_bytes; }

/* ---- dtype conversion ------------------------------------------------------ */

static inline uint16_t cpu_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest, ties to even */
    return (uint16_t)(u >> 16);
}

static inline float cpu_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline double cpu_load(const void *src, hk_dtype t, size_t i) {
    switch (t) {
    case HK_F32: return ((const float *)src)[i];
    case HK_F64: return ((const double *)src)[i];
    default: return cpu_bf16_to_f32(((const uint16_t *)src)[i]);
    }
}

static inline void cpu_store(void *dst, hk_dtype t, size_t i, double x) {
    switch (t) {
    case HK_F32: ((float *)dst)[i] = (float)x; break;
    case HK_F64: ((double *)dst)[i] = x; break;
    default: ((uint16_t *)dst)[i] = cpu_f32_to_bf16((float)x); break;
    }
}

static int cpu_dtype_ok(hk_dtype t) { return t == HK_F32 || t == HK_F64 || t == HK_BF16; }

/* Every host <-> host copy goes through here; same dtype is a memmove. */
static void cpu_copy_convert(hk_backend *hk, const char *op, void *dst, hk_dtype dst_t, const void *src,
                             hk_dtype src_t, size_t n) {
    if (!cpu_dtype_ok(dst_t) || !cpu_dtype_ok(src_t)) {
        CPU_FN(fail)(hk, HLAB_EINVAL, "%s: unknown dtype (dst %d, src %d; expected F32, F64 or BF16)", op,
                     (int)dst_t, (int)src_t);
        return;
    }
    if (n == 0) return;
    if (!dst || !src) {
        CPU_FN(fail)(hk, HLAB_EINVAL, "%s: NULL pointer for %zu elements", op, n);
        return;
    }
    if (dst_t == src_t) {
        memmove(dst, src, n * hk_dtype_size(dst_t));
        return;
    }
    #pragma omp parallel for if (n >= CONVERT_PAR_MIN)
    for (size_t i = 0; i < n; i++) cpu_store(dst, dst_t, i, cpu_load(src, src_t, i));
}

void CPU_FN(from_host)(hk_backend *hk, void *dst, hk_dtype dst_t, const void *src, hk_dtype src_t, size_t n) {
    cpu_copy_convert(hk, "from_host", dst, dst_t, src, src_t, n);
}

void CPU_FN(to_host)(hk_backend *hk, void *dst, hk_dtype dst_t, const void *src, hk_dtype src_t, size_t n) {
    cpu_copy_convert(hk, "to_host", dst, dst_t, src, src_t, n);
}

void CPU_FN(convert)(hk_backend *hk, void *dst, hk_dtype dst_t, const void *src, hk_dtype src_t, size_t n) {
    cpu_copy_convert(hk, "convert", dst, dst_t, src, src_t, n);
}

/* ---- lifetime ---------------------------------------------------------------- */

void CPU_FN(destroy)(hk_backend *hk) {
    if (!hk) return;
    free(hk->impl);
    free(hk);
}

hk_backend *CPU_FN(create)(int threads, hlab_err *err) {
    hk_backend *hk = calloc(1, sizeof *hk);
    cpu_state *s = calloc(1, sizeof *s);
    if (!hk || !s) {
        free(hk);
        free(s);
        hlab_fail(err, HLAB_ENOMEM, "cpu backend: out of host memory");
        return NULL;
    }
    /* Thread counts are process-wide in OpenMP and OpenBLAS; set only on request. */
    if (threads > 0) {
        omp_set_num_threads(threads);
        openblas_set_num_threads(threads);
    }
    snprintf(hk->name, sizeof hk->name, "%s", HK_CPU_REAL == HK_F64 ? "cpu-f64" : "cpu");
    hk->real = HK_CPU_REAL;
    hk->act = HK_CPU_REAL;
    hk->impl = s;

    hk->destroy = CPU_FN(destroy);
    hk->check = CPU_FN(check);
    hk->sync = CPU_FN(sync);
    hk->alloc = CPU_FN(alloc);
    hk->free = CPU_FN(free);
    hk->zero = CPU_FN(zero);
    hk->from_host = CPU_FN(from_host);
    hk->to_host = CPU_FN(to_host);
    hk->convert = CPU_FN(convert);
    hk->peak_bytes = CPU_FN(peak_bytes);

    hk->embedding_fwd = CPU_FN(embedding_fwd);
    hk->embedding_bwd = CPU_FN(embedding_bwd);
    hk->matmul_fwd = CPU_FN(matmul_fwd);
    hk->matmul_bwd = CPU_FN(matmul_bwd);
    hk->rmsnorm_fwd = CPU_FN(rmsnorm_fwd);
    hk->rmsnorm_bwd = CPU_FN(rmsnorm_bwd);
    hk->layernorm_fwd = CPU_FN(layernorm_fwd);
    hk->layernorm_bwd = CPU_FN(layernorm_bwd);
    hk->add_rmsnorm_fwd = CPU_FN(add_rmsnorm_fwd);
    hk->add_layernorm_fwd = CPU_FN(add_layernorm_fwd);
    hk->qknorm_fwd = CPU_FN(qknorm_fwd);
    hk->qknorm_bwd = CPU_FN(qknorm_bwd);
    hk->rope_fwd = CPU_FN(rope_fwd);
    hk->rope_bwd = CPU_FN(rope_bwd);
    hk->attention_fwd = CPU_FN(attention_fwd);
    hk->attention_bwd = CPU_FN(attention_bwd);

    hk->conv1d_silu_fwd = CPU_FN(conv1d_silu_fwd);
    hk->conv1d_silu_bwd = CPU_FN(conv1d_silu_bwd);
    hk->ssd_fwd = CPU_FN(ssd_fwd);
    hk->ssd_bwd = CPU_FN(ssd_bwd);
    hk->gated_rmsnorm_fwd = CPU_FN(gated_rmsnorm_fwd);
    hk->gated_rmsnorm_bwd = CPU_FN(gated_rmsnorm_bwd);

    hk->swiglu_fwd = CPU_FN(swiglu_fwd);
    hk->swiglu_bwd = CPU_FN(swiglu_bwd);
    hk->moe_cache_bytes = CPU_FN(moe_cache_bytes);
    hk->moe_fwd = CPU_FN(moe_fwd);
    hk->moe_bwd = CPU_FN(moe_bwd);

    hk->add = CPU_FN(add);
    hk->axpby = CPU_FN(axpby);
    hk->concat_fwd = CPU_FN(concat_fwd);
    hk->concat_bwd = CPU_FN(concat_bwd);
    hk->gate_fwd = CPU_FN(gate_fwd);
    hk->gate_bwd = CPU_FN(gate_bwd);

    hk->xent_fwd = CPU_FN(xent_fwd);
    hk->xent_bwd = CPU_FN(xent_bwd);
    hk->xent_fwd_bwd = CPU_FN(xent_fwd_bwd);
    hk->sumsq = CPU_FN(sumsq);
    hk->adamw = CPU_FN(adamw);
    hk->loss_reduce = CPU_FN(loss_reduce);
    hk->grad_clip_scale = CPU_FN(grad_clip_scale);
    return hk;
}
