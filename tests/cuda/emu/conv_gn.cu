/* tests/cuda/emu/conv_gn.cu — CPU emulation of the window conv1d + SiLU and warp gated
 * RMSNorm kernels (kernels/cuda/conv1d_window.cuh, gated_norm_warp.cuh): runs the kernels'
 * own per-thread / per-lane bodies over the launch geometry of conv1d.cu / gated_norm.cu
 * (threads one after another, block and finish reductions in the kernels' order) and
 * compares with a float64 evaluation of the kernels/cpu/mamba.c formulas. For machines
 * without a GPU; not part of ctest (the glob builds test_*.c only). Build and run:
 *   nvcc -std=c++17 -O1 -I. -Xcompiler=-Wall,-Wextra,-Werror tests/cuda/emu/conv_gn.cu -o /tmp/emu_conv_gn && /tmp/emu_conv_gn
 * Prints one line per check and exits 1 if any relative norm error passes its tolerance
 * (fp32 1e-5, bf16 1e-2).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <vector>

#include "kernels/cuda/conv1d_window.cuh"
#include "kernels/cuda/gated_norm_warp.cuh"

typedef __nv_bfloat16 bf16;
using conv_window::narrow;
using conv_window::widen;

static int failures = 0;
static unsigned long long rng_state = 12345;
static double urand() { /* uniform in [-1, 1) */
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return ((rng_state >> 11) * (1.0 / 9007199254740992.0)) * 2.0 - 1.0;
}

template <typename T> static std::vector<T> rand_vec(size_t n, double scale) {
    std::vector<T> v(n);
    for (auto &x : v) x = narrow<T>((float)(scale * urand() + 1e-3));
    return v;
}
template <typename T> static std::vector<double> to_d(const std::vector<T> &v) {
    std::vector<double> o(v.size());
    for (size_t i = 0; i < v.size(); i++) o[i] = widen(v[i]);
    return o;
}
static double sig(double x) { return 1.0 / (1.0 + exp(-x)); }

template <typename T> static void check(const char *what, const std::vector<T> &got, const std::vector<double> &ref,
                                        double tol, const char *shape) {
    double num = 0, den = 0;
    int bad = 0;
    for (size_t i = 0; i < ref.size(); i++) {
        const double g = widen(got[i]);
        if (!(g == g)) bad = 1;
        num += (g - ref[i]) * (g - ref[i]);
        den += ref[i] * ref[i];
    }
    const double err = bad ? INFINITY : sqrt(num / (den > 0 ? den : 1));
    const int ok = err <= tol;
    failures += !ok;
    printf("%s %-26s %-34s rel err %.2e (tol %.0e)\n", ok ? "ok  " : "FAIL", what, shape, err, tol);
}

/* ---- conv1d --------------------------------------------------------------------------- */
template <typename T, int K>
static void conv_case(int B, int T_, int Cc, int L, double tol) {
    using namespace conv_window;
    const size_t n = (size_t)B * T_ * Cc;
    std::vector<T> inp = rand_vec<T>(n, 2.0), dout = rand_vec<T>(n, 1.0);
    std::vector<float> w(Cc * K), bias(Cc), dw(Cc * K), db(Cc);
    for (auto &x : w) x = (float)(0.8 * urand());
    for (auto &x : bias) x = (float)(0.5 * urand());
    for (auto &x : dw) x = (float)urand();
    for (auto &x : db) x = (float)urand();
    const std::vector<float> dw0 = dw, db0 = db;
    std::vector<T> out(n, narrow<T>(NAN)), dinp(n, narrow<T>(NAN));
    /* same choice as conv_lanes(): 8-byte vectors when Cc allows (std::vector data is 16-aligned) */
    const int VEC = 8 / (int)sizeof(T), nv = Cc % VEC == 0 ? VEC : 1;
    const int nchunks = (T_ + L - 1) / L, gx = (Cc / nv + LANES_X - 1) / LANES_X;
    /* forward: every (block, thread) of the grid */
    const int gyf = (nchunks + FWD_TCH - 1) / FWD_TCH;
    for (int bz = 0; bz < B; bz++)
        for (int by = 0; by < gyf; by++)
            for (int bx = 0; bx < gx; bx++)
                for (int ty = 0; ty < FWD_TCH; ty++)
                    for (int tx = 0; tx < LANES_X; tx++) {
                        const int cv = bx * LANES_X + tx, t0 = (by * FWD_TCH + ty) * L;
                        if (cv >= Cc / nv || t0 >= T_) continue;
                        const size_t row0 = (size_t)bz * T_ * Cc;
                        if (nv == VEC)
                            fwd_thread<T, 8 / sizeof(T), K, FWD_U>(&out[row0], &inp[row0], w.data(), bias.data(), T_,
                                                                   Cc, cv * nv, t0, L);
                        else
                            fwd_thread<T, 1, K, FWD_U>(&out[row0], &inp[row0], w.data(), bias.data(), T_, Cc, cv, t0,
                                                       L);
                    }
    /* backward, with the block reduction and the finish kernel in their order */
    const int gyb = (nchunks + BWD_TCH - 1) / BWD_TCH, cols = (K + 1) * Cc, rows = B * gyb;
    std::vector<float> part((size_t)rows * cols, NAN);
    for (int bz = 0; bz < B; bz++)
        for (int by = 0; by < gyb; by++)
            for (int bx = 0; bx < gx; bx++) {
                constexpr int NVB = 8 / sizeof(T);
                std::vector<float> red((size_t)BWD_TCH * (K + 1) * NVB * LANES_X, 0.0f);
                for (int ty = 0; ty < BWD_TCH; ty++)
                    for (int tx = 0; tx < LANES_X; tx++) {
                        const int cv = bx * LANES_X + tx, t0 = (by * BWD_TCH + ty) * L;
                        float dwa[K][NVB] = {}, dba[NVB] = {};
                        if (cv < Cc / nv && t0 < T_) {
                            const size_t row0 = (size_t)bz * T_ * Cc;
                            if (nv == VEC) {
                                bwd_thread<T, NVB, K, BWD_U>(&dinp[row0], &dout[row0], &inp[row0], w.data(),
                                                             bias.data(), T_, Cc, cv * nv, t0, L, dwa, dba);
                            } else {
                                float dw1[K][1] = {}, db1[1] = {};
                                bwd_thread<T, 1, K, BWD_U>(&dinp[row0], &dout[row0], &inp[row0], w.data(),
                                                           bias.data(), T_, Cc, cv, t0, L, dw1, db1);
                                for (int j = 0; j < K; j++) dwa[j][0] = dw1[j][0];
                                dba[0] = db1[0];
                            }
                        }
                        const int NVr = nv; /* the kernel's NV */
                        const int COLS = (K + 1) * NVr * LANES_X;
                        for (int i = 0; i < NVr; i++) {
                            for (int j = 0; j < K; j++) red[(size_t)ty * COLS + (j * NVr + i) * LANES_X + tx] = dwa[j][i];
                            red[(size_t)ty * COLS + (K * NVr + i) * LANES_X + tx] = dba[i];
                        }
                    }
                const int NVr = nv, COLS = (K + 1) * NVr * LANES_X;
                for (int col = 0; col < COLS; col++) {
                    float s = 0.0f;
                    for (int y = 0; y < BWD_TCH; y++) s += red[(size_t)y * COLS + col];
                    const int q = col / (NVr * LANES_X), i = (col / LANES_X) % NVr, lane = col % LANES_X;
                    const int c = (bx * LANES_X + lane) * NVr + i;
                    if (c < Cc) part[((size_t)bz * gyb + by) * cols + (size_t)q * Cc + c] = s;
                }
            }
    for (int col = 0; col < cols; col++) {
        float s = 0.0f;
        for (int r = 0; r < rows; r++) s += part[(size_t)r * cols + col];
        const int q = col / Cc, c = col % Cc;
        if (q < K) dw[(size_t)c * K + q] += s;
        else db[c] += s;
    }
    /* float64 reference */
    const std::vector<double> x = to_d(inp), g = to_d(dout);
    std::vector<double> rout(n), rdinp(n, 0.0), dpre(n), rdw(dw0.begin(), dw0.end()), rdb(db0.begin(), db0.end());
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T_; t++)
            for (int c = 0; c < Cc; c++) {
                double pre = bias[c];
                for (int j = 0; j < K; j++) {
                    const int s = t - (K - 1) + j;
                    if (s >= 0) pre += w[(size_t)c * K + j] * x[((size_t)b * T_ + s) * Cc + c];
                }
                const size_t i = ((size_t)b * T_ + t) * Cc + c;
                rout[i] = pre * sig(pre);
                dpre[i] = g[i] * sig(pre) * (1 + pre * (1 - sig(pre)));
            }
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T_; t++)
            for (int c = 0; c < Cc; c++) {
                const size_t i = ((size_t)b * T_ + t) * Cc + c;
                rdb[c] += dpre[i];
                for (int j = 0; j < K; j++) {
                    const int s = t - (K - 1) + j;
                    if (s < 0) continue;
                    const size_t is = ((size_t)b * T_ + s) * Cc + c;
                    rdw[(size_t)c * K + j] += dpre[i] * x[is];
                    rdinp[is] += w[(size_t)c * K + j] * dpre[i];
                }
            }
    char shape[96];
    snprintf(shape, sizeof shape, "%s B%d T%d C%d K%d L%d nv%d", sizeof(T) == 2 ? "bf16" : "f32", B, T_, Cc, K, L, nv);
    check("conv fwd out", out, rout, tol, shape);
    check("conv bwd dinp", dinp, rdinp, tol, shape);
    check("conv bwd dw", dw, rdw, sizeof(T) == 2 ? 1e-3 : 1e-5, shape);
    check("conv bwd db", db, rdb, sizeof(T) == 2 ? 1e-3 : 1e-5, shape);
}

template <typename T> static void conv_cases(double tol) {
    const int Ls[3] = {8, 16, 64};
    for (int li = 0; li < 3; li++) {
        const int L = Ls[li];
        conv_case<T, 4>(2, 37, 40, L, tol);
        conv_case<T, 4>(3, 130, 256, L, tol);
        conv_case<T, 3>(2, 61, 36, L, tol);
        conv_case<T, 2>(1, 100, 24, L, tol);
        conv_case<T, 4>(2, 37, 7, L, tol);  /* Cc odd: one channel per thread */
        conv_case<T, 3>(1, 19, 45, L, tol); /* Cc odd */
        conv_case<T, 4>(2, 2, 16, L, tol);  /* T < K − 1 */
        conv_case<T, 4>(1, 1, 8, L, tol);
        conv_case<T, 4>(1, 67, 1056, L, tol); /* more than 32 vectors: two blocks across channels */
    }
}

/* ---- gated RMSNorm --------------------------------------------------------------------- */
template <typename T, int NV, int MAXV>
static void gn_case(int N, int Di, int G, double tol) {
    using namespace gn_warp;
    const int Dg = Di / G, nvec = Dg / NV;
    const size_t m = (size_t)N * Di;
    const float eps = 1e-5f;
    std::vector<T> y = rand_vec<T>(m, 2.0), z = rand_vec<T>(m, 3.0), dout = rand_vec<T>(m, 1.0);
    std::vector<float> w(Di), dw(Di), rstd((size_t)N * G, NAN);
    for (auto &x : w) x = (float)(1.5 * urand());
    for (auto &x : dw) x = (float)urand();
    const std::vector<float> dw0 = dw;
    std::vector<T> out(m, narrow<T>(NAN)), dy(m, narrow<T>(NAN)), dz(m, narrow<T>(NAN));
    /* forward: warp per (row, group) */
    for (int unit = 0; unit < N * G; unit++) {
        const int n = unit / G, g = unit % G;
        const size_t base = (size_t)n * Di + (size_t)g * Dg;
        static float gate[32][MAXV][NV];
        float ss = 0.0f;
        for (int lane = 0; lane < 32; lane++) ss += fwd_gates<T, NV, MAXV>(gate[lane], &y[base], &z[base], nvec, lane);
        const float r = 1.0f / sqrtf(ss / (float)Dg + eps);
        rstd[unit] = r;
        for (int lane = 0; lane < 32; lane++) fwd_out<T, NV, MAXV>(&out[base], gate[lane], &w[(size_t)g * Dg], r, nvec, lane);
    }
    /* backward: blocks of BWD_ROWS_PER_BLOCK rows × WARPS warps, per group */
    const int blocks = (N + BWD_ROWS_PER_BLOCK - 1) / BWD_ROWS_PER_BLOCK, ROW = MAXV * 32 * NV;
    std::vector<float> part((size_t)blocks * Di, NAN);
    for (int bx = 0; bx < blocks; bx++)
        for (int g = 0; g < G; g++) {
            std::vector<float> acc((size_t)WARPS * ROW, 0.0f);
            const int n0 = bx * BWD_ROWS_PER_BLOCK, n1 = std::min(N, n0 + BWD_ROWS_PER_BLOCK);
            for (int warp = 0; warp < WARPS; warp++)
                for (int n = n0 + warp; n < n1; n += WARPS) {
                    const size_t base = (size_t)n * Di + (size_t)g * Dg;
                    const float r = rstd[(size_t)n * G + g];
                    static bwd_row<T, NV, MAXV> rows[32];
                    float dot = 0.0f;
                    for (int lane = 0; lane < 32; lane++)
                        dot += bwd_dot<T, NV, MAXV>(rows[lane], &acc[(size_t)warp * ROW], &y[base], &z[base],
                                                    &dout[base], &w[(size_t)g * Dg], r, nvec, lane);
                    for (int lane = 0; lane < 32; lane++) {
                        keep_packed(rows[lane]);
                        bwd_out<T, NV, MAXV>(&dy[base], &dz[base], rows[lane], &w[(size_t)g * Dg], r,
                                             dot / (float)Dg, nvec, lane);
                    }
                }
            for (int c = 0; c < Dg; c++) {
                float s = 0.0f;
                for (int wi = 0; wi < WARPS; wi++) s += acc[(size_t)wi * ROW + c];
                part[(size_t)bx * Di + (size_t)g * Dg + c] = s;
            }
        }
    for (int c = 0; c < Di; c++) {
        float s = 0.0f;
        for (int b = 0; b < blocks; b++) s += part[(size_t)b * Di + c];
        dw[c] += s;
    }
    /* float64 reference */
    const std::vector<double> yd = to_d(y), zd = to_d(z), dd = to_d(dout);
    std::vector<double> rout(m), rr((size_t)N * G), rdy(m), rdz(m), rdw(dw0.begin(), dw0.end());
    for (int n = 0; n < N; n++)
        for (int g = 0; g < G; g++) {
            const size_t base = (size_t)n * Di + (size_t)g * Dg;
            double ss = 0, dot = 0;
            for (int k = 0; k < Dg; k++) {
                const double gt = yd[base + k] * zd[base + k] * sig(zd[base + k]);
                ss += gt * gt;
            }
            const double r = 1 / sqrt(ss / Dg + eps);
            rr[(size_t)n * G + g] = r;
            for (int k = 0; k < Dg; k++) {
                const double gh = yd[base + k] * zd[base + k] * sig(zd[base + k]) * r;
                rout[base + k] = gh * w[g * Dg + k];
                dot += w[g * Dg + k] * dd[base + k] * gh;
                rdw[g * Dg + k] += dd[base + k] * gh;
            }
            for (int k = 0; k < Dg; k++) {
                const double zz = zd[base + k], yy = yd[base + k], s = sig(zz), gh = yy * zz * s * r;
                const double dg = r * (w[g * Dg + k] * dd[base + k] - gh * dot / Dg);
                rdy[base + k] = dg * zz * s;
                rdz[base + k] = dg * yy * s * (1 + zz * (1 - s));
            }
        }
    char shape[96];
    snprintf(shape, sizeof shape, "%s N%d Di%d G%d nv%d maxv%d", sizeof(T) == 2 ? "bf16" : "f32", N, Di, G, NV, MAXV);
    check("gnorm fwd out", out, rout, tol, shape);
    check("gnorm fwd rstd", rstd, rr, 1e-5, shape);
    check("gnorm bwd dy", dy, rdy, tol, shape);
    check("gnorm bwd dz", dz, rdz, tol, shape);
    check("gnorm bwd dw", dw, rdw, sizeof(T) == 2 ? 1e-3 : 1e-5, shape);
}

int main() {
    conv_cases<float>(1e-5);
    conv_cases<bf16>(1e-2);
    /* gated norm: NV / MAXV as gn_warp_lanes() and GN_MAXV_SWITCH pick them */
    gn_case<float, 4, 2>(37, 96, 3, 1e-5);   /* Dg 32 */
    gn_case<float, 4, 8>(64, 1024, 1, 1e-5); /* Dg 1024: 8 vectors per lane */
    gn_case<float, 1, 4>(37, 150, 2, 1e-5);  /* Dg 75: scalar */
    gn_case<float, 4, 6>(70, 1536, 2, 1e-5); /* Dg 768 */
    gn_case<bf16, 8, 2>(37, 96, 3, 1e-2);
    gn_case<bf16, 8, 6>(64, 1536, 1, 1e-2);
    gn_case<bf16, 8, 8>(33, 2048, 1, 1e-2);
    gn_case<bf16, 1, 4>(37, 150, 2, 1e-2);
    gn_case<bf16, 8, 2>(5, 16, 1, 1e-2); /* Dg 16: two vectors, most lanes idle */
    printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
    return failures ? 1 : 0;
}
