/* kernels/cuda/gated_norm_warp.cuh — the per-lane bodies of the warp-per-row grouped gated
 * RMSNorm (Mamba-2), forward and backward.
 *
 * One warp owns one (row, group) of Dg channels, read as NV-element vectors: lane l holds
 * vectors v = l + 32·k (k < MAXV, v < Dg / NV), so each warp load covers 32 consecutive
 * vectors. The row stays in registers between the reduction and the output pass, so every
 * input is read from memory once. The backward also accumulates the lane's dw partial over
 * the rows its warp visits (the group's columns are fixed per warp).
 *
 * __host__ __device__ so that tests/cuda/emu/conv_gn.cu runs this code on the CPU; the warp
 * sum between the two passes is the caller's. Formulas and multiplication order are those
 * of kernels/cpu/mamba.c:
 *   gate = y·z·σ(z);  rstd = 1/√(Σ gate²/Dg + eps);  out = gate·(rstd·w)
 *   ĝ = gate·rstd;  mean = Σ w·dout·ĝ / Dg;  dg = rstd·(w·dout − ĝ·mean)
 *   dy = dg·z·σ(z);  dz = dg·y·σ(z)(1 + z(1 − σ(z)));  dw += dout·ĝ
 */
#ifndef HLAB_KERNELS_CUDA_GATED_NORM_WARP_CUH
#define HLAB_KERNELS_CUDA_GATED_NORM_WARP_CUH

#include "kernels/cuda/conv1d_window.cuh"

namespace gn_warp {

using conv_window::load_pack;
using conv_window::narrow;
using conv_window::pack;
using conv_window::sigmoid;
using conv_window::store_pack;
using conv_window::widen;

enum { WARPS = 4, BWD_ROWS_PER_BLOCK = 32 };

/* Pass 1 of the forward: the lane's gates into g, returns the lane's Σ gate². y, z point at
 * the (row, group) start; nvec = Dg / NV. */
template <typename T, int NV, int MAXV>
CW_HD float fwd_gates(float (&g)[MAXV][NV], const T *__restrict__ y, const T *__restrict__ z, int nvec, int lane) {
    pack<T, NV> py[MAXV], pz[MAXV];
CW_UNROLL
    for (int k = 0; k < MAXV; k++) {
        const int v = lane + 32 * k;
        if (v < nvec) {
            py[k] = load_pack<T, NV>(y + (size_t)v * NV);
            pz[k] = load_pack<T, NV>(z + (size_t)v * NV);
        }
    }
    float ss = 0.0f;
CW_UNROLL
    for (int k = 0; k < MAXV; k++) {
        const int v = lane + 32 * k;
CW_UNROLL
        for (int i = 0; i < NV; i++) {
            float gate = 0.0f;
            if (v < nvec) {
                const float zz = widen(pz[k].v[i]);
                gate = widen(py[k].v[i]) * zz * sigmoid(zz);
            }
            g[k][i] = gate;
            ss += gate * gate;
        }
    }
    return ss;
}

/* Pass 2 of the forward. w points at the group's weights. */
template <typename T, int NV, int MAXV>
CW_HD void fwd_out(T *__restrict__ out, const float (&g)[MAXV][NV], const float *__restrict__ w, float r, int nvec,
                   int lane) {
CW_UNROLL
    for (int k = 0; k < MAXV; k++) {
        const int v = lane + 32 * k;
        if (v >= nvec) break;
        const pack<float, NV> wv = load_pack<float, NV>(w + (size_t)v * NV);
        pack<T, NV> o;
CW_UNROLL
        for (int i = 0; i < NV; i++) o.v[i] = narrow<T>(g[k][i] * (r * wv.v[i]));
        store_pack<T, NV>(out + (size_t)v * NV, o);
    }
}

/* The lane's inputs of one (row, group), kept for pass 2 of the backward. */
template <typename T, int NV, int MAXV> struct bwd_row {
    pack<T, NV> y[MAXV], z[MAXV], d[MAXV];
};

/* Makes the packed row opaque to the compiler between the passes, so that pass 2 widens
 * it again instead of keeping pass 1's fp32 values live (227 registers at bf16 Dg = 1536
 * without it). No instruction is emitted. */
template <typename T, int NV, int MAXV> CW_HD void keep_packed(bwd_row<T, NV, MAXV> &row) {
#ifdef __CUDA_ARCH__
    static_assert(sizeof(pack<T, NV>) % 2 == 0, "packs are whole 16-bit words");
    pack<T, NV> *all[3] = {row.y, row.z, row.d};
CW_UNROLL
    for (int a = 0; a < 3; a++)
CW_UNROLL
        for (int k = 0; k < MAXV; k++) {
            if (sizeof(pack<T, NV>) % 4 == 0) {
                unsigned *u = reinterpret_cast<unsigned *>(&all[a][k]);
CW_UNROLL
                for (int q = 0; q < (int)(sizeof(pack<T, NV>) / 4); q++) asm volatile("" : "+r"(u[q]));
            } else {
                unsigned short *u = reinterpret_cast<unsigned short *>(&all[a][k]);
CW_UNROLL
                for (int q = 0; q < (int)(sizeof(pack<T, NV>) / 2); q++) asm volatile("" : "+h"(u[q]));
            }
        }
#else
    (void)row;
#endif
}

/* Pass 1 of the backward: loads the row into `row`, adds dout·ĝ to dwacc[c] (c = the
 * channel within the group; only the lane's own channels are touched), returns the lane's
 * Σ w·dout·ĝ. */
template <typename T, int NV, int MAXV>
CW_HD float bwd_dot(bwd_row<T, NV, MAXV> &row, float *__restrict__ dwacc, const T *__restrict__ y,
                    const T *__restrict__ z, const T *__restrict__ dout, const float *__restrict__ w, float r,
                    int nvec, int lane) {
CW_UNROLL
    for (int k = 0; k < MAXV; k++) {
        const int v = lane + 32 * k;
        if (v < nvec) {
            row.y[k] = load_pack<T, NV>(y + (size_t)v * NV);
            row.z[k] = load_pack<T, NV>(z + (size_t)v * NV);
            row.d[k] = load_pack<T, NV>(dout + (size_t)v * NV);
        }
    }
    float dot = 0.0f;
CW_UNROLL
    for (int k = 0; k < MAXV; k++) {
        const int v = lane + 32 * k;
        if (v >= nvec) break;
        const pack<float, NV> wv = load_pack<float, NV>(w + (size_t)v * NV);
        pack<float, NV> acc = load_pack<float, NV>(dwacc + (size_t)v * NV);
CW_UNROLL
        for (int i = 0; i < NV; i++) {
            const float zz = widen(row.z[k].v[i]), d = widen(row.d[k].v[i]);
            const float gh = widen(row.y[k].v[i]) * zz * sigmoid(zz) * r;
            dot += wv.v[i] * d * gh;
            acc.v[i] += d * gh;
        }
        store_pack<float, NV>(dwacc + (size_t)v * NV, acc);
    }
    return dot;
}

/* Pass 2 of the backward: dy, dz of the row from `row`, given mean = Σ w·dout·ĝ / Dg. */
template <typename T, int NV, int MAXV>
CW_HD void bwd_out(T *__restrict__ dy, T *__restrict__ dz, const bwd_row<T, NV, MAXV> &row,
                   const float *__restrict__ w, float r, float mean, int nvec, int lane) {
CW_UNROLL
    for (int k = 0; k < MAXV; k++) {
        const int v = lane + 32 * k;
        if (v >= nvec) break;
        const pack<float, NV> wv = load_pack<float, NV>(w + (size_t)v * NV);
        pack<T, NV> oy, oz;
CW_UNROLL
        for (int i = 0; i < NV; i++) {
            const float zz = widen(row.z[k].v[i]), yy = widen(row.y[k].v[i]), d = widen(row.d[k].v[i]);
            const float s = sigmoid(zz), silu = zz * s, gh = yy * silu * r;
            const float dg = r * (wv.v[i] * d - gh * mean);
            oy.v[i] = narrow<T>(dg * silu);
            oz.v[i] = narrow<T>(dg * yy * s * (1.0f + zz * (1.0f - s)));
        }
        store_pack<T, NV>(dy + (size_t)v * NV, oy);
        store_pack<T, NV>(dz + (size_t)v * NV, oz);
    }
}

} // namespace gn_warp

#endif
