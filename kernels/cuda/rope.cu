/* kernels/cuda/rope.cu — rotary position embedding on the q and k heads of a
 * packed qkv row (v copied), GPT-NeoX "rotate half" pairs (i, i + dh/2).
 *
 * Thread = one token row n, one 16-byte chunk of rotation indices i (8 for
 * bf16, 4 for fp32; one index when the row does not allow vectors) and a group
 * of ROPE_GROUP q/k heads. It forms the chunk's angles once and applies them to
 * that chunk of each head of its group, every access a 16-byte vector, all the
 * group's loads issued before any store. It also copies its share of the v part
 * when out != inp (one pass, no separate copy). out may alias inp (each
 * element is read, then written, by one thread). bwd is the inverse rotation.
 *
 * Accuracy at long T: the frequency theta^(−2i/dh) is computed in double
 * (once per block, in shared memory; relative error ~1e-15); each angle
 * t·freq is formed in double and reduced to [−π, π] in double — error below
 * ~1e-12 rad for t up to 10⁶ — and only the small reduced angle is rounded to
 * float (≤ 2·10⁻⁷ rad) for the fast float sincos (abs error ~4·10⁻⁷ on
 * [−π, π]). The angle error therefore does not grow with t; a float angle
 * t·freq would be off by ~t·6·10⁻⁸ rad (5·10⁻⁴ at t = 8192).
 * test_cuda_ops checks T = 16384 against the CPU (double angles).
 */
#include <math.h>

#include "kernels/cuda/common.cuh"

#define ROPE_THREADS 256
#define ROPE_GROUP 4 /* rotated heads per thread, their loads issued together */

/* One thread = one item: token row n, a group of ROPE_GROUP rotated heads, and V rotation
 * indices i0 .. i0 + V − 1 (VEC: V = 16 / sizeof(T), else V = 1). Items are ordered
 * (n, group, chunk), chunk fastest, so a warp reads whole half-heads. freq: dynamic
 * shared memory, dh/2 doubles. */
template <typename T, bool VEC>
__global__ void __launch_bounds__(ROPE_THREADS, 3) rope_rows_kernel(T *out, const T *inp, size_t N, int T_, int Hrot,
                                                                 int Hkv, int dh, float theta, float sign) {
    extern __shared__ double rope_freq[];
    constexpr int V = VEC ? hk_vec<T>::n : 1;
    const int half = dh / 2, chunks = half / V, groups = (Hrot + ROPE_GROUP - 1) / ROPE_GROUP;
    const double log_theta = log((double)theta);
    for (int i = threadIdx.x; i < half; i += blockDim.x) rope_freq[i] = exp(-(2.0 * i / dh) * log_theta);
    __syncthreads();
    const size_t item = (size_t)blockIdx.x * blockDim.x + threadIdx.x, per_row = (size_t)groups * chunks;
    if (item >= N * per_row) return;
    const size_t n = item / per_row;
    const int in_row = (int)(item - n * per_row), q = in_row / chunks, j = in_row - q * chunks, i0 = j * V;
    const double t = (double)(n % (size_t)T_);
    const double two_pi = 6.283185307179586, inv_two_pi = 0.15915494309189535;
    float cs[V], sn[V];
#pragma unroll
    for (int k = 0; k < V; k++) {
        double ang = t * rope_freq[i0 + k];
        ang -= two_pi * rint(ang * inv_two_pi);
        __sincosf((float)ang, &sn[k], &cs[k]);
        sn[k] *= sign;
    }
    const size_t W = (size_t)(Hrot + Hkv) * dh, row = n * W;
    const int h0 = q * ROPE_GROUP;
    /* every load before any store: the loads stay in flight together (the compiler may
     * not move a load above a store to out, which may alias inp) */
    hk_vec<T> a[ROPE_GROUP], b[ROPE_GROUP];
#pragma unroll
    for (int g = 0; g < ROPE_GROUP; g++)
        if (h0 + g < Hrot) {
            const size_t e = row + (size_t)(h0 + g) * dh + i0;
            if (VEC) {
                a[g] = vload(inp + e);
                b[g] = vload(inp + e + half);
            } else {
                a[g].v[0] = inp[e];
                b[g].v[0] = inp[e + half];
            }
        }
#pragma unroll
    for (int g = 0; g < ROPE_GROUP; g++)
        if (h0 + g < Hrot) {
            const size_t e = row + (size_t)(h0 + g) * dh + i0;
            hk_vec<T> oa, ob;
#pragma unroll
            for (int k = 0; k < V; k++) {
                const float x1 = ld(a[g].v[k]), x2 = ld(b[g].v[k]);
                oa.v[k] = st<T>(x1 * cs[k] - x2 * sn[k]);
                ob.v[k] = st<T>(x2 * cs[k] + x1 * sn[k]);
            }
            if (VEC) {
                vstore(out + e, oa);
                vstore(out + e + half, ob);
            } else {
                out[e] = oa.v[0];
                out[e + half] = ob.v[0];
            }
        }
    if (out != inp) { /* v part: this item's share of the row's v vectors */
        const size_t v0 = row + (size_t)Hrot * dh;
        const int vn = Hkv * dh / V;
        for (int k = in_row; k < vn; k += (int)per_row) {
            if (VEC) vstore(out + v0 + (size_t)k * V, vload(inp + v0 + (size_t)k * V));
            else out[v0 + k] = inp[v0 + k];
        }
    }
}

static void rope(hk_backend *hk, void *out, const void *inp, int B, int T, int Hq, int Hkv, int dh, float theta,
                 float sign, const char *what) {
    if (B <= 0 || T <= 0 || dh <= 0) return;
    if (dh % 2) {
        hk_cuda_fail(hk, HLAB_EINVAL, "%s: head dim %d must be even", what, dh);
        return;
    }
    const size_t N = (size_t)B * T;
    const int half = dh / 2, Hrot = Hq + Hkv;
    const size_t smem = (size_t)half * sizeof(double);
    cudaStream_t s = hk_cuda_stream(hk);
    HK_DISPATCH_ACT(hk, E, {
        const int V = hk_vec<E>::n;
        const int vec = half % V == 0 && hk_vec_ok(sizeof(E), (size_t)dh, out, inp);
        const size_t items = N * (size_t)((Hrot + ROPE_GROUP - 1) / ROPE_GROUP) * (vec ? half / V : half);
        const unsigned grid = (unsigned)((items + ROPE_THREADS - 1) / ROPE_THREADS);
        if (!items) return; /* no q or k heads */
        if (vec)
            rope_rows_kernel<E, true><<<grid, ROPE_THREADS, smem, s>>>((E *)out, (const E *)inp, N, T, Hrot, Hkv, dh,
                                                                      theta, sign);
        else
            rope_rows_kernel<E, false><<<grid, ROPE_THREADS, smem, s>>>((E *)out, (const E *)inp, N, T, Hrot, Hkv,
                                                                       dh, theta, sign);
    });
    hk_cuda_check_launch(hk, what);
}

void hk_cuda_rope_fwd(hk_backend *hk, void *out, const void *inp, int B, int T, int Hq, int Hkv, int dh, float theta) {
    rope(hk, out, inp, B, T, Hq, Hkv, dh, theta, 1.0f, "rope_fwd");
}

void hk_cuda_rope_bwd(hk_backend *hk, void *dinp, const void *dout, int B, int T, int Hq, int Hkv, int dh,
                      float theta) {
    rope(hk, dinp, dout, B, T, Hq, Hkv, dh, theta, -1.0f, "rope_bwd");
}
