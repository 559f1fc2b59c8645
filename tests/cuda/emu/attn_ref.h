/* tests/cuda/emu/attn_ref.h — the float64 causal-attention reference shared by the attention
 * emulators (attention.cpp, attention_sm90a_fwd_emu.cpp, attention_sm90a_bwd_emu.cpp).
 *
 * Inputs already widened to double: qkv [B·T][(Hq + 2·Hkv)·dh] (Q heads, then K, then V groups),
 * dout [B·T][Hq·dh], or null for the forward only. Query head h reads kv group h / (Hq / Hkv);
 * query i sees keys j in (i - window, i] (window 0: all j ≤ i). scale multiplies the scores and
 * dS: callers pass the value their kernel uses (attention.cpp's fp32 1/sqrt(dh) differs from the
 * float64 one at dh 128). Results: out [B·T][Hq·dh] (float64, not rounded), lse [B][Hq][T]
 * (natural log), and with dout, dqkv in qkv's layout. The backward's D is rowsum(dO∘O) of the
 * float64 O; a caller that needs the kernel's D (fp32, from the bf16 O) computes it from out.
 * Sums run in a fixed order (b, h, i, then j or c ascending), so results are reproducible.
 */
#pragma once
#include <math.h>
#include <stddef.h>

#include <cmath>

#include <vector>

/* Relative norm error ‖a − ref‖ / ‖ref‖ (infinite if a holds a NaN or inf). */
static inline double rel(const std::vector<double> &a, const std::vector<double> &ref) {
    double n = 0, d = 0;
    for (size_t i = 0; i < a.size(); i++) {
        if (!std::isfinite(a[i])) return INFINITY;
        n += (a[i] - ref[i]) * (a[i] - ref[i]), d += ref[i] * ref[i];
    }
    return sqrt(n / (d > 0 ? d : 1));
}

/* The emulators' inputs: a fixed xorshift sequence in [0, 1), the same on every run. */
static unsigned long long rng = 88172645463325252ull;
static inline double urand() {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

struct AttnRef {
    std::vector<double> out, lse, dqkv;
};

static inline AttnRef attn_ref(const double *qkv, const double *dout, int B, int T, int Hq, int Hkv, int dh,
                               int window, double scale) {
    const size_t W = (size_t)(Hq + 2 * Hkv) * dh, OW = (size_t)Hq * dh, N = (size_t)B * T;
    AttnRef r;
    r.out.assign(N * OW, 0.0);
    r.lse.assign((size_t)B * Hq * T, 0.0);
    if (dout) r.dqkv.assign(N * W, 0.0);
    auto q = [&](size_t n, int h, int c) { return qkv[n * W + (size_t)h * dh + c]; };
    auto k = [&](size_t n, int g, int c) { return qkv[n * W + (size_t)(Hq + g) * dh + c]; };
    auto v = [&](size_t n, int g, int c) { return qkv[n * W + (size_t)(Hq + Hkv + g) * dh + c]; };
    auto dO = [&](size_t n, int h, int c) { return dout[n * OW + (size_t)h * dh + c]; };
    std::vector<double> P(T), dP(T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hq; h++) {
            const int g = h / (Hq / Hkv);
            for (int i = 0; i < T; i++) {
                const size_t ni = (size_t)b * T + i;
                const int j0 = window > 0 && i - window + 1 > 0 ? i - window + 1 : 0;
                double mx = -INFINITY;
                for (int j = j0; j <= i; j++) {
                    double s = 0;
                    for (int c = 0; c < dh; c++) s += q(ni, h, c) * k((size_t)b * T + j, g, c);
                    P[j] = s * scale;
                    mx = fmax(mx, P[j]);
                }
                double l = 0;
                for (int j = j0; j <= i; j++) l += P[j] = exp(P[j] - mx);
                for (int j = j0; j <= i; j++) P[j] /= l;
                r.lse[((size_t)b * Hq + h) * T + i] = mx + log(l);
                double Di = 0;
                for (int c = 0; c < dh; c++) {
                    double o = 0;
                    for (int j = j0; j <= i; j++) o += P[j] * v((size_t)b * T + j, g, c);
                    r.out[ni * OW + (size_t)h * dh + c] = o;
                    if (dout) Di += o * dO(ni, h, c);
                }
                if (!dout) continue;
                for (int j = j0; j <= i; j++) {
                    double d = 0;
                    for (int c = 0; c < dh; c++) d += dO(ni, h, c) * v((size_t)b * T + j, g, c);
                    dP[j] = P[j] * (d - Di);
                }
                double *rd = r.dqkv.data();
                for (int j = j0; j <= i; j++) {
                    const size_t nj = (size_t)b * T + j;
                    for (int c = 0; c < dh; c++) {
                        rd[ni * W + (size_t)h * dh + c] += dP[j] * scale * k(nj, g, c);
                        rd[nj * W + (size_t)(Hq + g) * dh + c] += dP[j] * scale * q(ni, h, c);
                        rd[nj * W + (size_t)(Hq + Hkv + g) * dh + c] += P[j] * dO(ni, h, c);
                    }
                }
            }
        }
    return r;
}
