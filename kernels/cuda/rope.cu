/* kernels/cuda/rope.cu — rotary position embedding on the q and k heads of a
 * packed qkv row (v copied), GPT-NeoX "rotate half" pairs (i, i + dh/2).
 *
 * Angles t · theta^(−2i/dh) are formed and reduced to [−π, π] in double
 * precision (at t ~ 10⁴ a float angle would already be off by ~1e-3 rad); the
 * reduced angle's sine and cosine are then taken in float. out may alias inp
 * (each pair is read, then written, by one thread). bwd is the inverse
 * rotation (angle negated).
 */
#include <math.h>

#include "kernels/cuda/common.cuh"


/* Thread = one rotation pair (head h, index i) of a q/k head, for a run of
 * `rows` token rows. The frequency theta^(−2i/dh) is formed in double once; each
 * angle t·freq is formed and reduced to [−π, π] in double, then only the
 * small reduced angle goes through the fast float sincos. */
template <typename T>
__global__ void rope_kernel(T *out, const T *inp, size_t N, int T_, int Hq, int Hkv, int dh, float theta, float sign,
                            int rows) {
    int half = dh / 2, pairs = (Hq + Hkv) * half, W = (Hq + 2 * Hkv) * dh;
    int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= pairs) return;
    int h = p / half, i = p % half;
    double freq = exp(-(2.0 * i / dh) * log((double)theta));
    const double two_pi = 6.283185307179586, inv_two_pi = 0.15915494309189535;
    size_t n0 = (size_t)blockIdx.y * rows;
    for (size_t n = n0; n < n0 + rows && n < N; n++) {
        double ang = (double)(n % (size_t)T_) * freq;
        ang -= two_pi * rint(ang * inv_two_pi);
        float sn, cs;
        __sincosf((float)ang, &sn, &cs);
        sn *= sign;
        size_t e = n * (size_t)W + (size_t)h * dh + i;
        float x1 = ld(inp[e]), x2 = ld(inp[e + half]);
        out[e] = st<T>(x1 * cs - x2 * sn);
        out[e + half] = st<T>(x2 * cs + x1 * sn);
    }
}

static void rope(hk_backend *hk, void *out, const void *inp, int B, int T, int Hq, int Hkv, int dh, float theta,
                 float sign, const char *what) {
    if (B <= 0 || T <= 0 || dh <= 0) return;
    if (dh % 2) {
        hk_cuda_fail(hk, HLAB_EINVAL, "%s: head dim %d must be even", what, dh);
        return;
    }
    size_t N = (size_t)B * T;
    int pairs = (Hq + Hkv) * (dh / 2);
    size_t rows = 16;
    if ((N + rows - 1) / rows > 65535) rows = (N + 65534) / 65535; /* grid.y limit */
    dim3 grid((pairs + 127) / 128, (unsigned)((N + rows - 1) / rows));
    HK_DISPATCH_ACT(hk, E, rope_kernel<E><<<grid, 128, 0, hk_cuda_stream(hk)>>>((E *)out, (const E *)inp, N, T, Hq,
                                                                               Hkv, dh, theta, sign, (int)rows));
    if (hk_cuda_check_launch(hk, what)) return;
    if (out != inp && Hkv > 0) { /* v part: a strided copy */
        size_t es = hk->act == HK_BF16 ? 2 : 4, row = (size_t)(Hq + 2 * Hkv) * dh * es;
        size_t voff = (size_t)(Hq + Hkv) * dh * es, vbytes = (size_t)Hkv * dh * es;
        hk_cuda_record(hk, cudaMemcpy2DAsync((char *)out + voff, row, (const char *)inp + voff, row, vbytes,
                                             (size_t)B * T, cudaMemcpyDeviceToDevice, hk_cuda_stream(hk)),
                       what);
    }
}

void hk_cuda_rope_fwd(hk_backend *hk, void *out, const void *inp, int B, int T, int Hq, int Hkv, int dh, float theta) {
    rope(hk, out, inp, B, T, Hq, Hkv, dh, theta, 1.0f, "rope_fwd");
}

void hk_cuda_rope_bwd(hk_backend *hk, void *dinp, const void *dout, int B, int T, int Hq, int Hkv, int dh,
                      float theta) {
    rope(hk, dinp, dout, B, T, Hq, Hkv, dh, theta, -1.0f, "rope_bwd");
}
