/* kernels/cuda/elementwise.cu — add, axpby, concat, gate (parallel fusion) and
 * SwiGLU, forward and backward.
 *
 * One generic map kernel (map_kernel) carries every pointwise op: it reads up to
 * four A tensors and writes up to three. When every pointer sits at the same
 * offset within 16 bytes (always so for buffers from the arena), the elements
 * before the first 16-byte boundary (head) and after the last whole vector
 * (tail) go one by one and the body in 16-byte vectors, whatever n is; only
 * mutually misaligned pointers take the all-scalar path. Math in fp32, one
 * rounding per output. Outputs may alias inputs (each element is read before it
 * is written by the same thread), as kernels.h allows for add and axpby.
 */
#include "kernels/cuda/common.cuh"

template <typename T> struct map_args {
    const T *in[4];
    T *out[3];
};

/* Elements [head, head + nvec·V) in vectors (16-byte aligned for every pointer);
 * the head and tail elements (fewer than V each, or all n when nvec = 0) singly. */
template <typename T, int NI, int NO, typename F>
__global__ void map_kernel(map_args<T> p, size_t n, size_t head, size_t nvec, F f) {
    constexpr int V = hk_vec<T>::n;
    size_t tid = blockIdx.x * (size_t)blockDim.x + threadIdx.x, stride = (size_t)gridDim.x * blockDim.x;
    float a[NI], o[NO];
    const size_t body_end = head + nvec * V;
    for (size_t i = tid; i < nvec; i += stride) {
        size_t e = head + i * V;
        hk_vec<T> x[NI], y[NO];
#pragma unroll
        for (int j = 0; j < NI; j++) x[j] = vload(p.in[j] + e);
#pragma unroll
        for (int k = 0; k < V; k++) {
#pragma unroll
            for (int j = 0; j < NI; j++) a[j] = ld(x[j].v[k]);
            f(a, o);
#pragma unroll
            for (int j = 0; j < NO; j++) y[j].v[k] = st<T>(o[j]);
        }
#pragma unroll
        for (int j = 0; j < NO; j++) vstore(p.out[j] + e, y[j]);
    }
    const size_t singles = head + (n - body_end);
    for (size_t i = tid; i < singles; i += stride) {
        size_t e = i < head ? i : body_end + (i - head);
#pragma unroll
        for (int j = 0; j < NI; j++) a[j] = ld(p.in[j][e]);
        f(a, o);
#pragma unroll
        for (int j = 0; j < NO; j++) p.out[j][e] = st<T>(o[j]);
    }
}

/* Elements before the first 16-byte boundary when every pointer has the same
 * offset within 16 bytes (a whole number of elements), else n (no vectors). */
template <typename T> static size_t map_head(const void *const *ptrs, int count, size_t n) {
    uintptr_t off = (uintptr_t)ptrs[0] & 15;
    if (off % sizeof(T)) return n;
    for (int j = 1; j < count; j++)
        if (((uintptr_t)ptrs[j] & 15) != off) return n;
    size_t head = ((16 - off) & 15) / sizeof(T);
    return head < n ? head : n;
}

template <typename T, int NI, int NO, typename F>
static void run_map(hk_backend *hk, const void *const *in, void *const *out, size_t n, F f, const char *what) {
    if (!n) return;
    map_args<T> p = {};
    const void *ptrs[NI + NO];
    for (int j = 0; j < NI; j++) p.in[j] = (const T *)(ptrs[j] = in[j]);
    for (int j = 0; j < NO; j++) p.out[j] = (T *)(ptrs[NI + j] = out[j]);
    size_t head = map_head<T>(ptrs, NI + NO, n);
    size_t nvec = (n - head) / hk_vec<T>::n, singles = n - nvec * hk_vec<T>::n;
    size_t work = nvec > singles ? nvec : singles;
    map_kernel<T, NI, NO, F><<<hk_grid_for(hk, work, 256), 256, 0, hk_cuda_stream(hk)>>>(p, n, head, nvec, f);
    hk_cuda_check_launch(hk, what);
}

struct add_fn {
    __device__ void operator()(const float *a, float *o) const { o[0] = a[0] + a[1]; }
};
struct scale_fn {
    float alpha;
    __device__ void operator()(const float *a, float *o) const { o[0] = alpha * a[0]; }
};
struct axpby_fn {
    float alpha, beta;
    __device__ void operator()(const float *a, float *o) const { o[0] = alpha * a[0] + beta * a[1]; }
};
/* inputs g, a, m */
struct gate_fwd_fn {
    __device__ void operator()(const float *x, float *o) const {
        float s = sigmoid_f(x[0]);
        o[0] = s * x[1] + (1.0f - s) * x[2];
    }
};
/* inputs dout, g, a, m; outputs dg, da, dm */
struct gate_bwd_fn {
    __device__ void operator()(const float *x, float *o) const {
        float s = sigmoid_f(x[1]);
        o[0] = x[0] * (x[2] - x[3]) * s * (1.0f - s);
        o[1] = x[0] * s;
        o[2] = x[0] * (1.0f - s);
    }
};

void hk_cuda_add(hk_backend *hk, void *out, const void *a, const void *b, size_t n) {
    const void *in[2] = {a, b};
    void *o[1] = {out};
    HK_DISPATCH_ACT(hk, T, run_map<T, 2, 1>(hk, in, o, n, add_fn(), "add"));
}

void hk_cuda_axpby(hk_backend *hk, void *out, float alpha, const void *a, float beta, const void *b, size_t n) {
    const void *in[2] = {a, b};
    void *o[1] = {out};
    if (!b) {
        scale_fn f = {alpha};
        HK_DISPATCH_ACT(hk, T, run_map<T, 1, 1>(hk, in, o, n, f, "axpby"));
    } else {
        axpby_fn f = {alpha, beta};
        HK_DISPATCH_ACT(hk, T, run_map<T, 2, 1>(hk, in, o, n, f, "axpby"));
    }
}

void hk_cuda_gate_fwd(hk_backend *hk, void *out, const void *g, const void *a, const void *m, size_t n) {
    const void *in[3] = {g, a, m};
    void *o[1] = {out};
    HK_DISPATCH_ACT(hk, T, run_map<T, 3, 1>(hk, in, o, n, gate_fwd_fn(), "gate_fwd"));
}

void hk_cuda_gate_bwd(hk_backend *hk, void *dg, void *da, void *dm, const void *dout, const void *g, const void *a,
                      const void *m, size_t n) {
    const void *in[4] = {dout, g, a, m};
    void *o[3] = {dg, da, dm};
    HK_DISPATCH_ACT(hk, T, run_map<T, 4, 3>(hk, in, o, n, gate_bwd_fn(), "gate_bwd"));
}

/* ---- concat: two strided 2-D copies each way ----------------------------------- */

static void copy_cols(hk_backend *hk, void *dst, size_t dpitch, const void *src, size_t spitch, size_t width, int rows,
                      const char *what) {
    if (!width || rows <= 0) return;
    hk_cuda_record(hk, cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, (size_t)rows, cudaMemcpyDeviceToDevice,
                                         hk_cuda_stream(hk)),
                   what);
}

void hk_cuda_concat_fwd(hk_backend *hk, void *out, const void *a, const void *b, int N, int C1, int C2) {
    size_t es = hk->act == HK_BF16 ? 2 : 4, row = (size_t)(C1 + C2) * es;
    copy_cols(hk, out, row, a, (size_t)C1 * es, (size_t)C1 * es, N, "concat_fwd");
    copy_cols(hk, (char *)out + (size_t)C1 * es, row, b, (size_t)C2 * es, (size_t)C2 * es, N, "concat_fwd");
}

void hk_cuda_concat_bwd(hk_backend *hk, void *da, void *db, const void *dout, int N, int C1, int C2) {
    size_t es = hk->act == HK_BF16 ? 2 : 4, row = (size_t)(C1 + C2) * es;
    copy_cols(hk, da, (size_t)C1 * es, dout, row, (size_t)C1 * es, N, "concat_bwd");
    copy_cols(hk, db, (size_t)C2 * es, (const char *)dout + (size_t)C1 * es, row, (size_t)C2 * es, N, "concat_bwd");
}

/* ---- SwiGLU: out[n,j] = SiLU(inp[n,j]) · inp[n,F+j] --------------------------- */

/* Grid: x over column vectors of a row, y strided over rows (no index division). */
template <typename T, bool VEC> __global__ void swiglu_fwd_kernel(T *out, const T *inp, int N, int F) {
    constexpr int V = VEC ? hk_vec<T>::n : 1;
    int j = (blockIdx.x * blockDim.x + threadIdx.x) * V;
    if (j >= F) return;
    for (size_t n = blockIdx.y; n < (size_t)N; n += gridDim.y) {
        const T *x1 = inp + n * 2 * F + j, *x3 = x1 + F;
        T *o = out + n * F + j;
        if (VEC) {
            hk_vec<T> a = vload(x1), b = vload(x3), y;
#pragma unroll
            for (int k = 0; k < V; k++) y.v[k] = st<T>(silu_f(ld(a.v[k])) * ld(b.v[k]));
            vstore(o, y);
        } else {
            o[0] = st<T>(silu_f(ld(x1[0])) * ld(x3[0]));
        }
    }
}

template <typename T, bool VEC> __global__ void swiglu_bwd_kernel(T *dinp, const T *dout, const T *inp, int N, int F) {
    constexpr int V = VEC ? hk_vec<T>::n : 1;
    int j = (blockIdx.x * blockDim.x + threadIdx.x) * V;
    if (j >= F) return;
    for (size_t n = blockIdx.y; n < (size_t)N; n += gridDim.y) {
        const T *x1 = inp + n * 2 * F + j, *x3 = x1 + F, *g = dout + n * F + j;
        T *d1 = dinp + n * 2 * F + j, *d3 = d1 + F;
        hk_vec<T> a, b, dy, r1, r3;
        if (VEC) {
            a = vload(x1);
            b = vload(x3);
            dy = vload(g);
        } else {
            a.v[0] = x1[0];
            b.v[0] = x3[0];
            dy.v[0] = g[0];
        }
#pragma unroll
        for (int k = 0; k < V; k++) {
            float x = ld(a.v[k]), s = sigmoid_f(x), d = ld(dy.v[k]);
            r1.v[k] = st<T>(d * ld(b.v[k]) * s * (1.0f + x * (1.0f - s)));
            r3.v[k] = st<T>(d * x * s);
        }
        if (VEC) {
            vstore(d1, r1);
            vstore(d3, r3);
        } else {
            d1[0] = r1.v[0];
            d3[0] = r3.v[0];
        }
    }
}

/* x blocks cover a row's F / V vectors; y blocks, enough to fill the chip. */
static dim3 swiglu_grid(hk_backend *hk, int N, int F, int V, int block) {
    unsigned gx = (unsigned)((F / V + block - 1) / block);
    size_t want = (size_t)hk_cuda_sm_count(hk) * 32 / gx + 1;
    unsigned gy = (unsigned)(want < (size_t)N ? want : (size_t)N);
    if (gy > 65535) gy = 65535;
    return dim3(gx, gy ? gy : 1);
}

void hk_cuda_swiglu_fwd(hk_backend *hk, void *out, const void *inp, int N, int F) {
    if (N <= 0 || F <= 0) return;
    HK_DISPATCH_ACT(hk, T, {
        int vec = hk_vec_ok(sizeof(T), (size_t)F, out, inp);
        dim3 grid = swiglu_grid(hk, N, F, vec ? hk_vec<T>::n : 1, 256);
        if (vec) swiglu_fwd_kernel<T, true><<<grid, 256, 0, hk_cuda_stream(hk)>>>((T *)out, (const T *)inp, N, F);
        else swiglu_fwd_kernel<T, false><<<grid, 256, 0, hk_cuda_stream(hk)>>>((T *)out, (const T *)inp, N, F);
    });
    hk_cuda_check_launch(hk, "swiglu_fwd");
}

void hk_cuda_swiglu_bwd(hk_backend *hk, void *dinp, const void *dout, const void *inp, int N, int F) {
    if (N <= 0 || F <= 0) return;
    HK_DISPATCH_ACT(hk, T, {
        int vec = hk_vec_ok(sizeof(T), (size_t)F, dinp, dout, inp);
        dim3 grid = swiglu_grid(hk, N, F, vec ? hk_vec<T>::n : 1, 256);
        if (vec)
            swiglu_bwd_kernel<T, true><<<grid, 256, 0, hk_cuda_stream(hk)>>>((T *)dinp, (const T *)dout,
                                                                            (const T *)inp, N, F);
        else
            swiglu_bwd_kernel<T, false><<<grid, 256, 0, hk_cuda_stream(hk)>>>((T *)dinp, (const T *)dout,
                                                                             (const T *)inp, N, F);
    });
    hk_cuda_check_launch(hk, "swiglu_bwd");
}
