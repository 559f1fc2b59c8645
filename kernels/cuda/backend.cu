/* kernels/cuda/backend.cu — the CUDA backend's core: creation, the op table,
 * memory, copies with dtype conversion, errors, and the services of cuda_ops.h.
 *
 * Conventions:
 *  - One backend = one device, one non-blocking stream, one cuBLASLt handle and
 *    workspace (created here, once). Ops only queue work on the stream; the
 *    host waits only in sync(), to_host(), sumsq() and the MoE count read-back
 *    (a training step uses none of these but its one closing to_host, apart from
 *    the MoE counts: docs/TRAINING.md).
 *  - The first failure is sticky (like the CPU backend): later failures are
 *    dropped, check()/sync() return it. Bad inputs seen only by kernels (token
 *    ids, targets) are flagged on the device and reported at sync()/to_host().
 *  - Device memory is plain cudaMalloc (never managed memory). Every live
 *    allocation is tracked (pointer -> size) for the live/peak byte counts;
 *    destroy() frees whatever the caller left.
 *  - Ops assume the backend's device is current on the calling thread (one
 *    worker thread per device); create() makes it current.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_bf16.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/gemm.h"

typedef struct {
    void *ptr;
    size_t bytes;
} hk_cuda_allocation;

typedef struct {
    int device;
    cudaStream_t stream;
    hk_cuda_blas *blas;
    int sm_count;
    int cc; /* compute capability, 10 * major + minor (90 for Hopper) */
    void *scratch;
    size_t scratch_bytes;
    void *pinned; /* small host buffer for synchronous read-backs (sumsq, MoE counts) */
    unsigned *input_flags; /* device word of HK_BAD_* bits (common.cuh) */
    size_t pinned_bytes;
    hk_cuda_allocation *allocs;
    size_t n_allocs, cap_allocs;
    size_t live_bytes, peak_bytes;
    int err_code;
    char err_msg[512];
} hk_cuda_state;

typedef struct {
    hk_backend hk; /* first: the public table */
    hk_cuda_state st;
} hk_cuda_backend;

/* Through impl, not by casting hk: a wrapper backend (kernels/profile.c) passes
 * itself, sharing impl, to ops it does not wrap. */
static hk_cuda_state *state_of(hk_backend *hk) { return (hk_cuda_state *)hk->impl; }

/* ---- errors ----------------------------------------------------------------- */

static void set_error_v(hk_cuda_state *s, int code, const char *fmt, va_list ap) {
    if (s->err_code != HLAB_OK) return;
    s->err_code = code;
    vsnprintf(s->err_msg, sizeof s->err_msg, fmt, ap);
}

void hk_cuda_fail(hk_backend *hk, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    set_error_v(state_of(hk), code, fmt, ap);
    va_end(ap);
}

int hk_cuda_record(hk_backend *hk, cudaError_t e, const char *what) {
    if (e == cudaSuccess) return 0;
    int code = (e == cudaErrorMemoryAllocation) ? HLAB_ENOMEM : HLAB_EDEVICE;
    hk_cuda_fail(hk, code, "%s: CUDA error %s (%s)", what, cudaGetErrorName(e), cudaGetErrorString(e));
    return 1;
}

int hk_cuda_check_launch(hk_backend *hk, const char *what) { return hk_cuda_record(hk, cudaGetLastError(), what); }

int hk_cuda_env_int(const char *name, int dflt) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

static int fill_err(hlab_err *err, int code, const char *msg) {
    if (err) {
        err->code = code;
        snprintf(err->msg, sizeof err->msg, "%s", msg);
    }
    return code;
}

int hk_cuda_check(hk_backend *hk, hlab_err *err) {
    hk_cuda_state *s = state_of(hk);
    if (s->err_code == HLAB_OK) return HLAB_OK;
    return fill_err(err, s->err_code, s->err_msg);
}

/* After a stream sync: turns bad-input bits set by kernels into a sticky error. */
static void read_input_flags(hk_backend *hk) {
    hk_cuda_state *s = state_of(hk);
    unsigned flags = 0;
    if (!s->input_flags || s->err_code != HLAB_OK) return;
    if (hk_cuda_record(hk, cudaMemcpy(&flags, s->input_flags, sizeof flags, cudaMemcpyDeviceToHost), "input check"))
        return;
    if (flags & HK_BAD_TOKEN)
        hk_cuda_fail(hk, HLAB_EINVAL, "embedding_fwd: a token id < 0 (expected 0 <= id < vocabulary size)");
    else if (flags & HK_BAD_TARGET)
        hk_cuda_fail(hk, HLAB_EINVAL, "xent: a target outside [0, V) (expected 0 <= target < vocabulary size)");
}

int hk_cuda_sync(hk_backend *hk, hlab_err *err) {
    if (!hk_cuda_record(hk, cudaStreamSynchronize(state_of(hk)->stream), "sync")) read_input_flags(hk);
    return hk_cuda_check(hk, err);
}

/* ---- services ------------------------------------------------------------- */

cudaStream_t hk_cuda_stream(hk_backend *hk) { return state_of(hk)->stream; }
int hk_cuda_sm_count(hk_backend *hk) { return state_of(hk)->sm_count; }
int hk_cuda_cc(hk_backend *hk) { return state_of(hk)->cc; }
unsigned *hk_cuda_input_flags(hk_backend *hk) { return state_of(hk)->input_flags; }
hk_cuda_blas *hk_cuda_blas_of(hk_backend *hk) { return state_of(hk)->blas; }

void *hk_cuda_scratch(hk_backend *hk, size_t bytes) {
    hk_cuda_state *s = state_of(hk);
    if (bytes <= s->scratch_bytes && s->scratch) return s->scratch;
    /* Grow by at least half again so a slowly growing request pattern does not
     * reallocate every call; cudaFree waits for queued work that may use it. */
    size_t want = bytes + bytes / 2 + 256;
    if (s->scratch) {
        if (hk_cuda_record(hk, cudaFree(s->scratch), "scratch free")) return NULL;
        s->scratch = NULL;
        s->scratch_bytes = 0;
    }
    if (hk_cuda_record(hk, cudaMalloc(&s->scratch, want), "scratch alloc")) {
        s->scratch = NULL;
        return NULL;
    }
    s->scratch_bytes = want;
    return s->scratch;
}

void *hk_cuda_pinned(hk_backend *hk, size_t bytes) {
    hk_cuda_state *s = state_of(hk);
    if (bytes <= s->pinned_bytes) return s->pinned;
    if (s->pinned) cudaFreeHost(s->pinned);
    s->pinned = NULL;
    s->pinned_bytes = 0;
    if (hk_cuda_record(hk, cudaMallocHost(&s->pinned, bytes), "pinned alloc")) return NULL;
    s->pinned_bytes = bytes;
    return s->pinned;
}

/* ---- memory ----------------------------------------------------------------- */

void *hk_cuda_alloc(hk_backend *hk, size_t bytes) {
    hk_cuda_state *s = state_of(hk);
    if (bytes == 0) bytes = 1; /* a valid, distinct pointer like malloc(0) may give */
    if (s->n_allocs == s->cap_allocs) {
        size_t cap = s->cap_allocs ? 2 * s->cap_allocs : 64;
        hk_cuda_allocation *a = (hk_cuda_allocation *)realloc(s->allocs, cap * sizeof *a);
        if (!a) {
            hk_cuda_fail(hk, HLAB_ENOMEM, "alloc: host table of allocations could not grow");
            return NULL;
        }
        s->allocs = a;
        s->cap_allocs = cap;
    }
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        cudaGetLastError(); /* clear, so later launches do not report it again */
        hk_cuda_fail(hk, HLAB_ENOMEM, "alloc of %zu bytes failed on cuda:%d (%s); %zu bytes live", bytes,
                     s->device, cudaGetErrorString(e), s->live_bytes);
        return NULL;
    }
    s->allocs[s->n_allocs].ptr = p;
    s->allocs[s->n_allocs].bytes = bytes;
    s->n_allocs++;
    s->live_bytes += bytes;
    if (s->live_bytes > s->peak_bytes) s->peak_bytes = s->live_bytes;
    return p;
}

void hk_cuda_free(hk_backend *hk, void *ptr) {
    if (!ptr) return;
    hk_cuda_state *s = state_of(hk);
    /* Search from the end: buffers are usually freed in reverse order. */
    for (size_t i = s->n_allocs; i-- > 0;) {
        if (s->allocs[i].ptr != ptr) continue;
        s->live_bytes -= s->allocs[i].bytes;
        s->allocs[i] = s->allocs[--s->n_allocs];
        hk_cuda_record(hk, cudaFree(ptr), "free");
        return;
    }
    hk_cuda_fail(hk, HLAB_EINVAL, "free: %p was not allocated by this backend", ptr);
}

size_t hk_cuda_peak_bytes(hk_backend *hk) { return state_of(hk)->peak_bytes; }

void hk_cuda_zero(hk_backend *hk, void *ptr, size_t bytes) {
    if (!bytes) return;
    hk_cuda_record(hk, cudaMemsetAsync(ptr, 0, bytes, state_of(hk)->stream), "zero");
}

/* ---- dtype conversion -------------------------------------------------------- */

static size_t dtype_size(hk_dtype t) { return t == HK_F64 ? 8 : t == HK_BF16 ? 2 : 4; }
static int dtype_valid(hk_dtype t) { return t == HK_F32 || t == HK_F64 || t == HK_BF16; }

/* Host bf16 <-> float, round to nearest even (NaN kept quiet). */
static uint16_t host_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
static float host_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static double host_load(const void *p, hk_dtype t, size_t i) {
    if (t == HK_F32) return ((const float *)p)[i];
    if (t == HK_F64) return ((const double *)p)[i];
    return host_bf16_to_f32(((const uint16_t *)p)[i]);
}
static void host_convert(void *dst, hk_dtype dt, const void *src, hk_dtype srct, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double v = host_load(src, srct, i);
        if (dt == HK_F32) ((float *)dst)[i] = (float)v;
        else if (dt == HK_F64) ((double *)dst)[i] = v;
        else ((uint16_t *)dst)[i] = host_f32_to_bf16((float)v);
    }
}

template <typename D, typename S> __global__ void convert_kernel(D *dst, const S *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = st<D>(ld(src[i]));
}
/* f64 -> f64 and f64 -> f32 keep double precision where the destination can hold it. */
template <> __global__ void convert_kernel<double, double>(double *dst, const double *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = src[i];
}
template <> __global__ void convert_kernel<double, float>(double *dst, const float *src, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = (double)src[i];
}

template <typename D>
static void convert_from(hk_backend *hk, D *dst, const void *src, hk_dtype st_, size_t n, unsigned grid) {
    cudaStream_t s = hk_cuda_stream(hk);
    if (st_ == HK_F32) convert_kernel<D, float><<<grid, 256, 0, s>>>(dst, (const float *)src, n);
    else if (st_ == HK_F64) convert_kernel<D, double><<<grid, 256, 0, s>>>(dst, (const double *)src, n);
    else convert_kernel<D, hk_bf16><<<grid, 256, 0, s>>>(dst, (const hk_bf16 *)src, n);
}

void hk_cuda_convert(hk_backend *hk, void *dst, hk_dtype dst_t, const void *src, hk_dtype src_t, size_t n) {
    if (!n) return;
    if (!dtype_valid(dst_t) || !dtype_valid(src_t)) {
        hk_cuda_fail(hk, HLAB_EINVAL, "convert: unknown dtype (%d -> %d)", (int)src_t, (int)dst_t);
        return;
    }
    if (dst_t == src_t) {
        if (dst != src)
            hk_cuda_record(hk, cudaMemcpyAsync(dst, src, n * dtype_size(dst_t), cudaMemcpyDeviceToDevice,
                                               hk_cuda_stream(hk)),
                           "convert copy");
        return;
    }
    unsigned grid = hk_grid_for(hk, n, 256);
    if (dst_t == HK_F32) convert_from(hk, (float *)dst, src, src_t, n, grid);
    else if (dst_t == HK_F64) convert_from(hk, (double *)dst, src, src_t, n, grid);
    else convert_from(hk, (hk_bf16 *)dst, src, src_t, n, grid);
    hk_cuda_check_launch(hk, "convert");
}

/* Host -> device. Same dtype: one copy (also how int32 tokens travel, as 4-byte
 * elements). Otherwise converted on the host first, so the device never sees
 * the wider type. Returns when src may be reused: a copy from pageable host
 * memory returns only once the source has been staged. */
void hk_cuda_from_host(hk_backend *hk, void *dst, hk_dtype dst_t, const void *src, hk_dtype src_t, size_t n) {
    if (!n) return;
    if (!dtype_valid(dst_t) || !dtype_valid(src_t)) {
        hk_cuda_fail(hk, HLAB_EINVAL, "from_host: unknown dtype (%d -> %d)", (int)src_t, (int)dst_t);
        return;
    }
    cudaStream_t s = hk_cuda_stream(hk);
    size_t bytes = n * dtype_size(dst_t);
    if (dst_t == src_t) {
        hk_cuda_record(hk, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s), "from_host");
        return;
    }
    void *tmp = malloc(bytes);
    if (!tmp) {
        hk_cuda_fail(hk, HLAB_ENOMEM, "from_host: %zu bytes of host memory for conversion", bytes);
        return;
    }
    host_convert(tmp, dst_t, src, src_t, n);
    hk_cuda_record(hk, cudaMemcpyAsync(dst, tmp, bytes, cudaMemcpyHostToDevice, s), "from_host");
    free(tmp);
}

/* Device -> host: waits for queued work, then converts on the host. */
void hk_cuda_to_host(hk_backend *hk, void *dst, hk_dtype dst_t, const void *src, hk_dtype src_t, size_t n) {
    if (!n) return;
    if (!dtype_valid(dst_t) || !dtype_valid(src_t)) {
        hk_cuda_fail(hk, HLAB_EINVAL, "to_host: unknown dtype (%d -> %d)", (int)src_t, (int)dst_t);
        return;
    }
    cudaStream_t s = hk_cuda_stream(hk);
    size_t bytes = n * dtype_size(src_t);
    if (dst_t == src_t) {
        int bad = hk_cuda_record(hk, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s), "to_host");
        if (!bad && !hk_cuda_record(hk, cudaStreamSynchronize(s), "to_host")) read_input_flags(hk);
        return;
    }
    void *tmp = malloc(bytes);
    if (!tmp) {
        hk_cuda_fail(hk, HLAB_ENOMEM, "to_host: %zu bytes of host memory for conversion", bytes);
        return;
    }
    int bad = hk_cuda_record(hk, cudaMemcpyAsync(tmp, src, bytes, cudaMemcpyDeviceToHost, s), "to_host");
    bad = bad || hk_cuda_record(hk, cudaStreamSynchronize(s), "to_host");
    if (!bad) {
        host_convert(dst, dst_t, tmp, src_t, n);
        read_input_flags(hk);
    }
    free(tmp);
}

/* ---- lifetime --------------------------------------------------------------- */

void hk_cuda_destroy(hk_backend *hk) {
    if (!hk) return;
    hk_cuda_state *s = state_of(hk);
    cudaSetDevice(s->device);
    if (s->stream) cudaStreamSynchronize(s->stream);
    for (size_t i = 0; i < s->n_allocs; i++) cudaFree(s->allocs[i].ptr);
    free(s->allocs);
    if (s->scratch) cudaFree(s->scratch);
    if (s->pinned) cudaFreeHost(s->pinned);
    if (s->input_flags) cudaFree(s->input_flags);
    hk_cuda_blas_destroy(s->blas);
    if (s->stream) cudaStreamDestroy(s->stream);
    free(hk);
}

#ifndef HLAB_HAVE_SM90A
/* Test hook of kernels/cuda/sm90a/wgmma_probe.cu: -2 says the sm_90a kernels are not built. */
extern "C" int hk_cuda_wgmma_probe(double *err) {
    (void)err;
    return -2;
}
#endif

extern "C" int hk_cuda_available(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

static void fill_table(hk_backend *hk) {
#define HK_SET(op) hk->op = hk_cuda_##op
    HK_SET(destroy); HK_SET(check); HK_SET(sync); HK_SET(alloc); HK_SET(free); HK_SET(zero);
    HK_SET(from_host); HK_SET(to_host); HK_SET(convert); HK_SET(peak_bytes);
    HK_SET(embedding_fwd); HK_SET(embedding_bwd); HK_SET(matmul_fwd); HK_SET(matmul_bwd);
    HK_SET(rmsnorm_fwd); HK_SET(rmsnorm_bwd); HK_SET(layernorm_fwd); HK_SET(layernorm_bwd);
    HK_SET(add_rmsnorm_fwd); HK_SET(add_layernorm_fwd);
    HK_SET(qknorm_fwd); HK_SET(qknorm_bwd); HK_SET(rope_fwd); HK_SET(rope_bwd);
    HK_SET(attention_fwd); HK_SET(attention_bwd); HK_SET(conv1d_silu_fwd); HK_SET(conv1d_silu_bwd);
    HK_SET(gated_rmsnorm_fwd); HK_SET(gated_rmsnorm_bwd);
    HK_SET(swiglu_fwd); HK_SET(swiglu_bwd); HK_SET(moe_cache_bytes); HK_SET(moe_fwd); HK_SET(moe_bwd);
    HK_SET(add); HK_SET(axpby); HK_SET(concat_fwd); HK_SET(concat_bwd); HK_SET(gate_fwd); HK_SET(gate_bwd);
    HK_SET(xent_fwd); HK_SET(xent_bwd); HK_SET(xent_fwd_bwd); HK_SET(sumsq); HK_SET(adamw); HK_SET(loss_reduce); HK_SET(grad_clip_scale);
    /* SSD: the tensor-core path where it applies, else the SIMT kernels (ssd_fast.cu). */
    hk->ssd_fwd = hk_cuda_ssd_dispatch_fwd;
    hk->ssd_bwd = hk_cuda_ssd_dispatch_bwd;
#undef HK_SET
}

extern "C" hk_backend *hk_cuda_create(int device, hk_dtype act, hlab_err *err) {
    if (act != HK_BF16 && act != HK_F32) {
        fill_err(err, HLAB_EINVAL, "cuda backend: activation dtype must be bf16 or f32");
        return NULL;
    }
    int n = hk_cuda_available();
    if (device < 0 || device >= n) {
        char msg[128];
        snprintf(msg, sizeof msg, "cuda:%d: no such CUDA device (%d found)", device, n);
        fill_err(err, HLAB_EDEVICE, msg);
        return NULL;
    }
    hk_cuda_backend *b = (hk_cuda_backend *)calloc(1, sizeof *b);
    if (!b) {
        fill_err(err, HLAB_ENOMEM, "cuda backend: out of host memory");
        return NULL;
    }
    hk_backend *hk = &b->hk;
    hk_cuda_state *s = &b->st;
    s->device = device;
    snprintf(hk->name, sizeof hk->name, "cuda:%d", device);
    hk->real = HK_F32;
    hk->act = act;
    hk->impl = s;
    fill_table(hk);

    char msg[512] = "";
    cudaError_t e = cudaSetDevice(device);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&s->sm_count, cudaDevAttrMultiProcessorCount, device);
    int cc_major = 0, cc_minor = 0;
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&cc_major, cudaDevAttrComputeCapabilityMajor, device);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&cc_minor, cudaDevAttrComputeCapabilityMinor, device);
    s->cc = 10 * cc_major + cc_minor;
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaMalloc((void **)&s->input_flags, sizeof(unsigned));
    if (e == cudaSuccess) e = cudaMemset(s->input_flags, 0, sizeof(unsigned));
    if (e != cudaSuccess) {
        snprintf(msg, sizeof msg, "cuda:%d: %s", device, cudaGetErrorString(e));
        cudaGetLastError();
        fill_err(err, HLAB_EDEVICE, msg);
        hk_cuda_destroy(hk);
        return NULL;
    }
    s->blas = hk_cuda_blas_create(s->stream, msg, sizeof msg);
    if (!s->blas) {
        fill_err(err, HLAB_EDEVICE, msg);
        hk_cuda_destroy(hk);
        return NULL;
    }
    return hk;
}
