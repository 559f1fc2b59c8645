/* kernels/cuda/ssd_fast_bwd.cu — the backward of the tensor-core SSD scan (see ssd_fast.cu for
 * the function, the conventions and the forward).
 * One design, v5 (docs/CUDA_SSD_FAST_BWD.md; v2 to v4 are in its history): C·Bᵀ and the group's
 * dscore products once per (chunk, group), both sides of a tile pair in one tile kernel (Mᵀ in
 * registers, factored off-diagonal decays), chunk dstates and the reverse state pass fused into one
 * scan kernel, a cp.async rows kernel for dC. v5 covers chunks of up to 256 (SFB_MAXT tiles of 64);
 * longer chunks run v1 (the first kernels, below under "v1") automatically: no switch selects it.
 * v5 is v4 with a new tile kernel (loads further ahead, fewer barriers; 19-27 % faster on the H100). */
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/ssd_fast.cuh"

/* ---- per-kernel timing (test only: hk_cuda_ssd_fast_bwd_profile at the end) ----------------
 * While sfb_prof is set, every launch of the backward is followed by an event on the stream, so
 * the time between consecutive events is one kernel's. Null in every library call. */
#define SFB_PROF_MAX 12
struct SfbProf {
#ifndef SF_EMU
    cudaEvent_t ev[SFB_PROF_MAX + 1];
#endif
    const char *name[SFB_PROF_MAX];
    int n;
};
static SfbProf *sfb_prof;

/* 1 when the launch failed (recorded); otherwise marks the kernel's end for the profiler */
static int sfb_launched(hk_backend *hk, cudaStream_t st, const char *what) {
    if (hk_cuda_check_launch(hk, what)) return 1;
    if (sfb_prof && sfb_prof->n < SFB_PROF_MAX) {
        sfb_prof->name[sfb_prof->n++] = what;
#ifndef SF_EMU
        cudaEventRecord(sfb_prof->ev[sfb_prof->n], st);
#else
        (void)st;
#endif
    }
    return 0;
}

/* ================================ v1 ================================================ */

/* ---- backward, j side: 64 columns j of one (chunk, group, b), the group's heads in turn ------
 * Per head: U = B_j dSᵀ → dx_j += w_j U_j, dw_j = x_j·U_j, dB_j += w_j x_j dS; then over the
 * row tiles i ≥ j: (C Bᵀ)ᵀ and (dy xᵀ)ᵀ in the [j][i] orientation, Mᵀ, dscoreᵀ, G; dx_j += Mᵀ dy_i,
 * dB_j += dscoreᵀ C_i, colG_j = Σ_i G_ij. Writes dx (with D dy), dB, ddelta_j, the j-side dcum, rlast. */

template <int N> static size_t sf_cols_smem() {
    return sizeof(hk_bf16) * (3 * SF_TILE * (N + 8) + 4 * SF_TILE * SF_LDP) + sizeof(float) * 3 * SF_TILE;
}

template <int N>
__global__ void __launch_bounds__(SF_THREADS)
    sf_bwd_cols_kernel(hk_bf16 *dxbc, float *ddelta, float *dcum_j, float *rlast, const hk_bf16 *dy,
                       const float *dSout, const hk_bf16 *xbc, const float *delta, const float *cum,
                       const float *Dskip, ssd_geom s) {
    constexpr int LDN = N + 8;
    extern __shared__ __align__(16) unsigned char sf_sm[];
    hk_bf16 *Bs = (hk_bf16 *)sf_sm, *Cs = Bs + SF_TILE * LDN, *dSs = Cs + SF_TILE * LDN;
    hk_bf16 *Xs = dSs + SF_P * LDN, *dYs = Xs + SF_TILE * SF_LDP, *MTs = dYs + SF_TILE * SF_LDP;
    hk_bf16 *DTs = MTs + SF_TILE * SF_LDQ;
    float *cum_j = (float *)(DTs + SF_TILE * SF_LDQ), *dl_j = cum_j + SF_TILE, *cum_i = dl_j + SF_TILE;
    const int jtiles = (s.Q + SF_TILE - 1) / SF_TILE;
    const int c = blockIdx.x / jtiles, jt = blockIdx.x % jtiles, g = blockIdx.y, b = blockIdx.z;
    const int t0 = c * s.Q, L = min(s.Q, s.T - t0), j0 = jt * SF_TILE;
    if (j0 >= L) return;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gr = lane >> 2, t = lane & 3, wr = warp * 16;
    const hk_bf16 *rows = xbc + ((size_t)b * s.T + t0) * s.W;
    sf_load_rows<N, LDN>(Bs, rows + s.HP + (size_t)g * N, s.W, j0, L);
    float accB[N / 8][4];
    sf_zero<N / 8>(accB);
    const int jl0 = wr + gr, jl1 = wr + gr + 8; /* this lane's two fragment rows */
    for (int h = g * s.hpg; h < (g + 1) * s.hpg; h++) {
        const size_t ob = ((size_t)b * s.H + h) * s.T + t0;
        const float last = cum[ob + L - 1];
        __syncthreads(); /* Xs, dSs, cum_j of the previous head are consumed */
        sf_load_rows<SF_P, SF_LDP>(Xs, rows + (size_t)h * SF_P, s.W, j0, L);
        sf_load_state<N>(dSs, dSout + (((size_t)b * s.nc + c) * s.H + h) * s.PN);
        if (threadIdx.x < SF_TILE) {
            const int j = j0 + threadIdx.x;
            cum_j[threadIdx.x] = j < L ? cum[ob + j] : 0.0f;
            dl_j[threadIdx.x] = j < L ? delta[ob + j] : 0.0f;
        }
        __syncthreads();
        /* U(j, p) = Σ_n B_j[n] dS[p][n]: A(j, n) = Bs[j][n], B(n, p) = dSs[p][n] */
        float accX[SF_P / 8][4];
        sf_zero<SF_P / 8>(accX);
        sf_mma<SF_P / 8, LDN, 1, 1, LDN>(accX, Bs + wr * LDN, dSs, N);
        const bool v0 = j0 + jl0 < L, v1 = j0 + jl1 < L;
        const float w0 = v0 ? expf(fminf(last - cum_j[jl0], 0.0f)) * dl_j[jl0] : 0.0f;
        const float w1 = v1 ? expf(fminf(last - cum_j[jl1], 0.0f)) * dl_j[jl1] : 0.0f;
        float dw0 = 0.0f, dw1 = 0.0f;
#pragma unroll
        for (int nt = 0; nt < SF_P / 8; nt++) {
            const int p = nt * 8 + 2 * t;
            const __nv_bfloat162 xa = *reinterpret_cast<const __nv_bfloat162 *>(Xs + jl0 * SF_LDP + p);
            const __nv_bfloat162 xb = *reinterpret_cast<const __nv_bfloat162 *>(Xs + jl1 * SF_LDP + p);
            dw0 += accX[nt][0] * __low2float(xa) + accX[nt][1] * __high2float(xa);
            dw1 += accX[nt][2] * __low2float(xb) + accX[nt][3] * __high2float(xb);
            accX[nt][0] *= w0, accX[nt][1] *= w0, accX[nt][2] *= w1, accX[nt][3] *= w1;
        }
        /* dB_j += w_j Σ_p x_j[p] dS[p][n]: A(j, p) = Xs[j][p], B(p, n) = dSs[p][n], 64 columns n at a time */
#pragma unroll
        for (int half = 0; half < N / 64; half++) {
            float tmp[8][4];
            sf_zero<8>(tmp);
            sf_mma<8, SF_LDP, 1, LDN, 1>(tmp, Xs + wr * SF_LDP, dSs + half * 64, SF_P);
#pragma unroll
            for (int nt = 0; nt < 8; nt++) {
                accB[half * 8 + nt][0] += w0 * tmp[nt][0], accB[half * 8 + nt][1] += w0 * tmp[nt][1];
                accB[half * 8 + nt][2] += w1 * tmp[nt][2], accB[half * 8 + nt][3] += w1 * tmp[nt][3];
            }
        }
        float colG0 = 0.0f, colG1 = 0.0f;
        for (int i0 = j0; i0 < L; i0 += SF_TILE) {
            __syncthreads(); /* Cs, dYs, cum_i of the previous row tile are consumed */
            sf_load_rows<N, LDN>(Cs, rows + s.HP + (size_t)(s.G + g) * N, s.W, i0, L);
            sf_load_rows<SF_P, SF_LDP>(dYs, dy + ((size_t)b * s.T + t0) * s.HP + (size_t)h * SF_P, s.HP, i0, L);
            if (threadIdx.x < SF_TILE) cum_i[threadIdx.x] = i0 + threadIdx.x < L ? cum[ob + i0 + threadIdx.x] : 0.0f;
            __syncthreads();
            float cbT[SF_TILE / 8][4], dmT[SF_TILE / 8][4];
            sf_zero<SF_TILE / 8>(cbT);
            sf_zero<SF_TILE / 8>(dmT);
            sf_mma<SF_TILE / 8, LDN, 1, 1, LDN>(cbT, Bs + wr * LDN, Cs, N);            /* B(n, i) = Cs[i][n] */
            sf_mma<SF_TILE / 8, SF_LDP, 1, 1, SF_LDP>(dmT, Xs + wr * SF_LDP, dYs, SF_P); /* B(p, i) = dYs[i][p] */
#pragma unroll
            for (int nt = 0; nt < SF_TILE / 8; nt++) {
#pragma unroll
                for (int hr = 0; hr < 2; hr++) {
                    const int jl = hr ? jl1 : jl0, j = j0 + jl, il = nt * 8 + 2 * t;
                    const float cj = cum_j[jl], dlj = dl_j[jl];
                    float mt[2], dt2[2];
#pragma unroll
                    for (int q = 0; q < 2; q++) {
                        const int i = i0 + il + q;
                        const bool vis = j <= i && i < L && j < L;
                        const float e = expf(fminf(cum_i[il + q] - cj, 0.0f));
                        const float cbv = cbT[nt][2 * hr + q], dmv = dmT[nt][2 * hr + q];
                        mt[q] = vis ? cbv * e * dlj : 0.0f;
                        dt2[q] = vis ? dmv * e * dlj : 0.0f;
                        const float gg = vis ? dmv * cbv * e : 0.0f;
                        if (hr) colG1 += gg;
                        else colG0 += gg;
                    }
                    sf_st2(MTs + jl * SF_LDQ + il, mt[0], mt[1]);
                    sf_st2(DTs + jl * SF_LDQ + il, dt2[0], dt2[1]);
                }
            }
            __syncwarp(); /* each warp reads back only its own 16 rows of MTs, DTs */
            sf_mma<SF_P / 8, SF_LDQ, 1, SF_LDP, 1>(accX, MTs + wr * SF_LDQ, dYs, SF_TILE); /* B(i, p) = dYs[i][p] */
            sf_mma<N / 8, SF_LDQ, 1, LDN, 1>(accB, DTs + wr * SF_LDQ, Cs, SF_TILE);       /* B(i, n) = Cs[i][n] */
        }
        dw0 = sf_quad_sum(dw0), dw1 = sf_quad_sum(dw1);
        colG0 = sf_quad_sum(colG0), colG1 = sf_quad_sum(colG1);
        const float Dh = Dskip[h];
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
            const int jl = hr ? jl1 : jl0, j = j0 + jl;
            if (j >= L) continue;
            const size_t row = (size_t)b * s.T + t0 + j;
#pragma unroll
            for (int nt = 0; nt < SF_P / 8; nt++) {
                const int p = nt * 8 + 2 * t;
                const __nv_bfloat162 dv = *reinterpret_cast<const __nv_bfloat162 *>(dy + row * s.HP + (size_t)h * SF_P + p);
                sf_st2(dxbc + row * s.W + (size_t)h * SF_P + p, accX[nt][2 * hr] + Dh * __low2float(dv),
                       accX[nt][2 * hr + 1] + Dh * __high2float(dv));
            }
            if (t == 0) {
                const float dw = hr ? dw1 : dw0, colG = hr ? colG1 : colG0, w = hr ? w1 : w0;
                const float e = expf(fminf(last - cum_j[jl], 0.0f));
                ddelta[ob + j] = dw * e + colG;
                dcum_j[ob + j] = -dw * w - colG * dl_j[jl];
                rlast[ob + j] = dw * w;
            }
        }
    }
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
        const int j = j0 + (hr ? jl1 : jl0);
        if (j >= L) continue;
        hk_bf16 *dBj = dxbc + ((size_t)b * s.T + t0 + j) * s.W + s.HP + (size_t)g * N;
#pragma unroll
        for (int nt = 0; nt < N / 8; nt++) sf_st2(dBj + nt * 8 + 2 * t, accB[nt][2 * hr], accB[nt][2 * hr + 1]);
    }
}

/* ---- backward, i side: 64 rows i of one (chunk, group, b), the group's heads in turn ---------
 * Per head: Z = dy_i S_in → dC_i += e_i Z_i, dcum_i += e_i C_i·Z_i; over the column tiles j ≤ i:
 * dscore = (dy xᵀ) ∘ e^{cum_i−cum_j} Δ_j, rowG_i = Σ_j dM CB e Δ_j, dC_i += dscore B_j.
 * Writes dC (summed over heads), the i-side dcum and the per-row D gradient. */

template <int N> static size_t sf_rows_smem() {
    return sizeof(hk_bf16) * (3 * SF_TILE * (N + 8) + 3 * SF_TILE * SF_LDP) + sizeof(float) * 3 * SF_TILE;
}

template <int N>
__global__ void __launch_bounds__(SF_THREADS)
    sf_bwd_rows_kernel(hk_bf16 *dxbc, float *dcum_i, float *dDrow, const hk_bf16 *dy, const float *states,
                       const hk_bf16 *xbc, const float *delta, const float *cum, ssd_geom s) {
    constexpr int LDN = N + 8;
    extern __shared__ __align__(16) unsigned char sf_sm[];
    hk_bf16 *Cs = (hk_bf16 *)sf_sm, *Bs = Cs + SF_TILE * LDN, *Ss = Bs + SF_TILE * LDN;
    hk_bf16 *dYs = Ss + SF_P * LDN, *Xs = dYs + SF_TILE * SF_LDP, *DSs = Xs + SF_TILE * SF_LDP;
    float *cum_i = (float *)(DSs + SF_TILE * SF_LDQ), *cum_j = cum_i + SF_TILE, *dl_j = cum_j + SF_TILE;
    const int itiles = (s.Q + SF_TILE - 1) / SF_TILE;
    const int c = blockIdx.x / itiles, it = blockIdx.x % itiles, g = blockIdx.y, b = blockIdx.z;
    const int t0 = c * s.Q, L = min(s.Q, s.T - t0), i0 = it * SF_TILE;
    if (i0 >= L) return;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gr = lane >> 2, t = lane & 3, wr = warp * 16;
    const hk_bf16 *rows = xbc + ((size_t)b * s.T + t0) * s.W;
    sf_load_rows<N, LDN>(Cs, rows + s.HP + (size_t)(s.G + g) * N, s.W, i0, L);
    float accC[N / 8][4];
    sf_zero<N / 8>(accC);
    const int il0 = wr + gr, il1 = wr + gr + 8;
    for (int h = g * s.hpg; h < (g + 1) * s.hpg; h++) {
        const size_t ob = ((size_t)b * s.H + h) * s.T + t0;
        __syncthreads(); /* dYs, Ss, cum_i of the previous head are consumed */
        sf_load_rows<SF_P, SF_LDP>(dYs, dy + ((size_t)b * s.T + t0) * s.HP + (size_t)h * SF_P, s.HP, i0, L);
        sf_load_state<N>(Ss, states + (((size_t)b * s.nc + c) * s.H + h) * s.PN);
        if (threadIdx.x < SF_TILE) cum_i[threadIdx.x] = i0 + threadIdx.x < L ? cum[ob + i0 + threadIdx.x] : 0.0f;
        __syncthreads();
        const float ci0 = cum_i[il0], ci1 = cum_i[il1];
        const float e0 = i0 + il0 < L ? expf(ci0) : 0.0f, e1 = i0 + il1 < L ? expf(ci1) : 0.0f;
        float dc0 = 0.0f, dc1 = 0.0f;
        /* Z(i, n) = Σ_p dy_i[p] S_in[p][n]: A(i, p) = dYs[i][p], B(p, n) = Ss[p][n], 64 columns at a time */
#pragma unroll
        for (int half = 0; half < N / 64; half++) {
            float tmp[8][4];
            sf_zero<8>(tmp);
            sf_mma<8, SF_LDP, 1, LDN, 1>(tmp, dYs + wr * SF_LDP, Ss + half * 64, SF_P);
#pragma unroll
            for (int nt = 0; nt < 8; nt++) {
                const int n = half * 64 + nt * 8 + 2 * t;
                const __nv_bfloat162 ca = *reinterpret_cast<const __nv_bfloat162 *>(Cs + il0 * LDN + n);
                const __nv_bfloat162 cb = *reinterpret_cast<const __nv_bfloat162 *>(Cs + il1 * LDN + n);
                const float z0 = e0 * tmp[nt][0], z1 = e0 * tmp[nt][1], z2 = e1 * tmp[nt][2], z3 = e1 * tmp[nt][3];
                accC[half * 8 + nt][0] += z0, accC[half * 8 + nt][1] += z1;
                accC[half * 8 + nt][2] += z2, accC[half * 8 + nt][3] += z3;
                dc0 += z0 * __low2float(ca) + z1 * __high2float(ca);
                dc1 += z2 * __low2float(cb) + z3 * __high2float(cb);
            }
        }
        float rowG0 = 0.0f, rowG1 = 0.0f;
        for (int j0 = 0; j0 <= i0; j0 += SF_TILE) {
            __syncthreads(); /* Bs, Xs, cum_j of the previous column tile are consumed */
            sf_load_rows<N, LDN>(Bs, rows + s.HP + (size_t)g * N, s.W, j0, L);
            sf_load_rows<SF_P, SF_LDP>(Xs, rows + (size_t)h * SF_P, s.W, j0, L);
            if (threadIdx.x < SF_TILE) {
                const int j = j0 + threadIdx.x;
                cum_j[threadIdx.x] = j < L ? cum[ob + j] : 0.0f;
                dl_j[threadIdx.x] = j < L ? delta[ob + j] : 0.0f;
            }
            __syncthreads();
            float cb[SF_TILE / 8][4], dm[SF_TILE / 8][4];
            sf_zero<SF_TILE / 8>(cb);
            sf_zero<SF_TILE / 8>(dm);
            sf_mma<SF_TILE / 8, LDN, 1, 1, LDN>(cb, Cs + wr * LDN, Bs, N);             /* B(n, j) = Bs[j][n] */
            sf_mma<SF_TILE / 8, SF_LDP, 1, 1, SF_LDP>(dm, dYs + wr * SF_LDP, Xs, SF_P); /* B(p, j) = Xs[j][p] */
#pragma unroll
            for (int nt = 0; nt < SF_TILE / 8; nt++) {
#pragma unroll
                for (int hr = 0; hr < 2; hr++) {
                    const int il = hr ? il1 : il0, i = i0 + il, jl = nt * 8 + 2 * t;
                    const float ci = hr ? ci1 : ci0;
                    float ds[2];
#pragma unroll
                    for (int q = 0; q < 2; q++) {
                        const int j = j0 + jl + q;
                        const bool vis = j <= i && i < L && j < L;
                        const float e = expf(fminf(ci - cum_j[jl + q], 0.0f)), dlj = dl_j[jl + q];
                        const float dmv = dm[nt][2 * hr + q];
                        ds[q] = vis ? dmv * e * dlj : 0.0f;
                        const float gg = vis ? dmv * cb[nt][2 * hr + q] * e * dlj : 0.0f;
                        if (hr) rowG1 += gg;
                        else rowG0 += gg;
                    }
                    sf_st2(DSs + il * SF_LDQ + jl, ds[0], ds[1]);
                }
            }
            __syncwarp(); /* each warp reads back only its own 16 rows of DSs */
            sf_mma<N / 8, SF_LDQ, 1, LDN, 1>(accC, DSs + wr * SF_LDQ, Bs, SF_TILE); /* B(j, n) = Bs[j][n] */
        }
        dc0 = sf_quad_sum(dc0), dc1 = sf_quad_sum(dc1);
        rowG0 = sf_quad_sum(rowG0), rowG1 = sf_quad_sum(rowG1);
        /* dD per row: Σ_p dy_i[p] x_i[p], the quad's 4 lanes split p */
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
            const int il = hr ? il1 : il0, i = i0 + il;
            float dd = 0.0f;
            if (i < L) {
                const hk_bf16 *xi = rows + (size_t)i * s.W + (size_t)h * SF_P;
                for (int p = 2 * t; p < SF_P; p += 8) {
                    const __nv_bfloat162 xv = *reinterpret_cast<const __nv_bfloat162 *>(xi + p);
                    const __nv_bfloat162 dv = *reinterpret_cast<const __nv_bfloat162 *>(dYs + il * SF_LDP + p);
                    dd += __low2float(xv) * __low2float(dv) + __high2float(xv) * __high2float(dv);
                }
            }
            dd = sf_quad_sum(dd);
            if (i < L && t == 0) {
                dcum_i[ob + i] = (hr ? dc1 + rowG1 : dc0 + rowG0);
                dDrow[ob + i] = dd;
            }
        }
    }
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
        const int i = i0 + (hr ? il1 : il0);
        if (i >= L) continue;
        hk_bf16 *dCi = dxbc + ((size_t)b * s.T + t0 + i) * s.W + s.HP + (size_t)(s.G + g) * N;
#pragma unroll
        for (int nt = 0; nt < N / 8; nt++) sf_st2(dCi + nt * 8 + 2 * t, accC[nt][2 * hr], accC[nt][2 * hr + 1]);
    }
}

/* ---- backward: per (chunk, h, b) the decay chain rule → ddt and parameter partials -----------
 * The block sums ⟨dS_out, S_in⟩; then warp 0 walks the chunk from its end in 32-row pieces:
 * da_i = Σ_{k≥i} dcum_k by a warp scan (lane 0 holds the highest row), carried between pieces. */

__global__ void sf_bwd_final_kernel(hk_bf16 *ddt, float *partial, const float *dSout, const float *states,
                                    const float *ddelta, const float *dcum_j, const float *dcum_i, const float *rlast,
                                    const float *dDrow, const hk_bf16 *dt, const float *dt_bias, const float *A_log,
                                    const float *delta, const float *cum, ssd_geom s) {
    const int c = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int t0 = c * s.Q, L = min(s.Q, s.T - t0);
    const size_t so = (((size_t)b * s.nc + c) * s.H + h) * s.PN, ob = ((size_t)b * s.H + h) * s.T + t0;
    float v = 0.0f;
    for (size_t e = threadIdx.x; e < s.PN; e += blockDim.x) v += dSout[so + e] * states[so + e];
    v = block_sum(v);
    if (threadIdx.x >= 32) return;
    const int lane = threadIdx.x;
    const float A = -expf(A_log[h]), bias = dt_bias[h];
    float rs = 0.0f;
    for (int j = lane; j < L; j += 32) rs += rlast[ob + j];
    const float extra = expf(cum[ob + L - 1]) * v + warp_sum(rs);
    float carry = 0.0f, dA = 0.0f, dbias = 0.0f, dD = 0.0f;
    for (int top = L - 1; top >= 0; top -= 32) {
        const int i = top - lane;
        float da = i >= 0 ? dcum_j[ob + i] + dcum_i[ob + i] + (i == L - 1 ? extra : 0.0f) : 0.0f;
#pragma unroll
        for (int off = 1; off < 32; off <<= 1) {
            const float u = __shfl_up_sync(0xffffffffu, da, off);
            if (lane >= off) da += u;
        }
        da += carry;
        carry = __shfl_sync(0xffffffffu, da, 31);
        if (i >= 0) {
            dA += da * delta[ob + i];
            const size_t n = ((size_t)b * s.T + t0 + i) * s.H + h;
            const float du = (ddelta[ob + i] + da * A) * ssd_sigmoid(ld(dt[n]) + bias);
            ddt[n] = st<hk_bf16>(du);
            dbias += du;
            dD += dDrow[ob + i];
        }
    }
    dA = warp_sum(dA), dbias = warp_sum(dbias), dD = warp_sum(dD);
    if (lane == 0) {
        float *pp = partial + (((size_t)h * s.B + b) * s.nc + c) * 3;
        pp[0] = dbias, pp[1] = dA * A, pp[2] = dD;
    }
}


/* ---- host -------------------------------------------------------------------------------------- */

template <int N>
static void sf_bwd_v1(hk_backend *hk, hk_bf16 *dxbc, hk_bf16 *ddt, float *ddt_bias, float *dA_log, float *dDskip,
                   const hk_bf16 *dy, const float *states, const hk_bf16 *xbc, const hk_bf16 *dt, const float *dt_bias,
                   const float *A_log, const float *Dskip, const ssd_geom &s) {
    /* bht rounded up to 4 floats: the state buffers after it are read as float4 */
    const size_t bht = ((size_t)s.B * s.H * s.T + 3) & ~(size_t)3, nst = (size_t)s.B * s.nc * s.H * s.PN;
    const size_t npart = (size_t)s.H * s.B * s.nc * 3;
    float *scr = (float *)hk_cuda_scratch(hk, sizeof(float) * (7 * bht + 2 * nst + npart));
    if (!scr) return;
    float *delta = scr, *cum = delta + bht, *ddelta = cum + bht, *dcum_j = ddelta + bht, *dcum_i = dcum_j + bht;
    float *rlast = dcum_i + bht, *dDrow = rlast + bht, *local = dDrow + bht, *dSout = local + nst;
    float *partial = dSout + nst;
    cudaStream_t st_ = hk_cuda_stream(hk);
    const int qtiles = (s.Q + SF_TILE - 1) / SF_TILE;
    sf_decay_kernel<<<dim3(s.nc, s.H, s.B), 32, 0, st_>>>(delta, cum, dt, dt_bias, A_log, s);
    if (sfb_launched(hk, st_, "ssd_fast_bwd decay")) return;
    sf_chunk_state_kernel<N, true><<<dim3(s.nc, s.H, s.B), SF_THREADS, 0, st_>>>(local, dy, s.HP, xbc, delta, cum, s);
    if (sfb_launched(hk, st_, "ssd_fast_bwd chunk dstates")) return;
    sf_state_pass_kernel<true><<<dim3((unsigned)((s.PN + 255) / 256), s.H, s.B), 256, 0, st_>>>(dSout, local, cum, s);
    if (sfb_launched(hk, st_, "ssd_fast_bwd state passing")) return;
    const size_t smem_c = sf_cols_smem<N>(), smem_r = sf_rows_smem<N>();
    if (!sf_smem_attr(hk, sf_bwd_cols_kernel<N>, smem_c)) return;
    sf_bwd_cols_kernel<N><<<dim3(s.nc * qtiles, s.G, s.B), SF_THREADS, smem_c, st_>>>(
        dxbc, ddelta, dcum_j, rlast, dy, dSout, xbc, delta, cum, Dskip, s);
    if (sfb_launched(hk, st_, "ssd_fast_bwd columns")) return;
    if (!sf_smem_attr(hk, sf_bwd_rows_kernel<N>, smem_r)) return;
    sf_bwd_rows_kernel<N><<<dim3(s.nc * qtiles, s.G, s.B), SF_THREADS, smem_r, st_>>>(dxbc, dcum_i, dDrow, dy,
                                                                                     states, xbc, delta, cum, s);
    if (sfb_launched(hk, st_, "ssd_fast_bwd rows")) return;
    sf_bwd_final_kernel<<<dim3(s.nc, s.H, s.B), 256, 0, st_>>>(ddt, partial, dSout, states, ddelta, dcum_j, dcum_i,
                                                              rlast, dDrow, dt, dt_bias, A_log, delta, cum, s);
    if (sfb_launched(hk, st_, "ssd_fast_bwd decay chain")) return;
    ssd_param_sum_kernel<<<(s.H + 127) / 128, 128, 0, st_>>>(ddt_bias, dA_log, dDskip, partial, s.H, s.B * s.nc);
    sfb_launched(hk, st_, "ssd_fast_bwd parameters");
}

/* ================================ v4 / v5 =========================================== *
 * Per (chunk c, group g, batch row b): tile t = 64 rows of the chunk. The tile kernel owns
 * column tile t (j rows of dx, dB) and the pairs (i tile ≥ t, t); the rows kernel owns row
 * tile t of dC. C·Bᵀ of a pair and the dscore products (dB += dscoreᵀ C, dC += dscore B) run
 * once per group: dscore = Σ_heads dM ∘ e Δ is summed over the heads in fp32 shared memory. */

#define SFB_MAXT 4      /* tiles per chunk: v5 runs for Q ≤ 256 */
#define SFB_THREADS 256 /* tile kernel: 8 warps, warp w owns rows 16 (w % 4) .., columns half w / 4 */

/* ---- operand loads ---------------------------------------------------------------------------------
 * sf_mma's operand spelling (A(m, k) = A[m·ASM + k·ASK], B(k, n) = B[k·BSK + n·BSN], one stride of
 * each 1), fetched by ldmatrix when LDSM (.trans for the k-strided operands: one instruction per
 * 16×16 instead of eight 16-bit loads). NT even; rows 16-byte aligned (every tile here: strides
 * N + 8, 72; column offsets multiples of 8). */
template <int NT, int ASM, int ASK, int BSK, int BSN, bool LDSM>
__device__ __forceinline__ void sfb_mm(float (*acc)[4], const hk_bf16 *A, const hk_bf16 *B, int K) {
    if constexpr (!LDSM) {
        sf_mma<NT, ASM, ASK, BSK, BSN>(acc, A, B, K);
    } else {
        static_assert(NT % 2 == 0 && (ASM == 1 || ASK == 1) && (BSK == 1 || BSN == 1), "ldmatrix operand shapes");
        for (int k0 = 0; k0 < K; k0 += 16) {
            uint32_t a[4];
            if constexpr (ASK == 1) sf_ldA(a, A, ASM, 0, k0); /* [m][k] */
            else sf_ldA_t(a, A, ASK, k0, 0);                   /* [k][m] */
#pragma unroll
            for (int q = 0; q < NT / 2; q++) {
                uint32_t bq[4];
                if constexpr (BSK == 1) sf_ldB(bq, B, BSN, q * 16, k0); /* [n][k] */
                else sf_ldB_t(bq, B, BSK, k0, q * 16);                   /* [k][n] */
                sf_mma16816(acc[2 * q], a[0], a[1], a[2], a[3], bq[0], bq[1]);
                sf_mma16816(acc[2 * q + 1], a[0], a[1], a[2], a[3], bq[2], bq[3]);
            }
        }
    }
}

/* ---- tile kernel: column tile t of one (chunk, group, b), 8 warps. Once per group: C·Bᵀ of the
 * pairs (i tile ≥ t, t). Per head: U = B_t dSᵀ → dx_t, dw_t; dB_t += (w∘x_t)·dS; per pair: dMᵀ =
 * x_t dy_iᵀ, Mᵀ, the G row / column sums, dx_t += Mᵀ dy_i, dscoreᵀ summed over the heads. The
 * per-head / per-pair tiles (x, cum, Δ, dy, dS) arrive by cp.async one step ahead into second
 * buffers. End: dB_t += Σ_i dscoreᵀ C_i once per group; the dscore tiles (bf16) out for the rows
 * kernel. dsc and cbs (both fp32: M and dscore are rounded to bf16 once, as in v1) are kept in
 * fragment order, [pair][n-tile][element][thread]: every thread touches only its own elements (no
 * barrier, no bank conflict). Beyond v3 (docs/CUDA_SSD_FAST_BWD.md, history):
 *  1. Mᵀ kept in registers: the C fragments of a warp's dMᵀ / Mᵀ tile (16 rows j × its 32 columns i)
 *     are the A fragments of the dx product over those 32 i, so each warp accumulates dx_j for all
 *     64 columns p over its own i half (accP) and the two warps of a row strip swap halves once per
 *     head through shared memory (fixed order: own + partner). No Mᵀ tile in shared memory, and no
 *     barrier between a pair's elementwise and its dx product (v3: one per pair per head);
 *  2. the pair's rowG partials (summed over the 4 row strips) double buffered and written out after
 *     the next barrier that is there anyway;
 *  3. the decay of the off-diagonal pairs (i tile > j tile) factored through the pair's first row i0:
 *     e^{cum_i − cum_j} = e^{cum_i − cum_i0} · e^{cum_i0 − cum_j}, both exponents ≤ 0 (i ≥ i0 > j; an
 *     underflow only drops what is smaller still), the vectors computed once per head by the block
 *     (er over the rows, ec per pair over the columns; er = 0 on rows past the chunk end, which also
 *     masks them): a multiply per element instead of an exp, no mask. The diagonal pair keeps the
 *     per-element exp and mask. */
/* ---- tile kernel v5: the work and the sums above (v4's kernel, in docs/CUDA_SSD_FAST_BWD.md),
 * reordered so that the loads are further ahead of their use (v4 waited for each pair's dy tile one
 * pair after issuing it: one block per SM, so that latency was not hidden) and a head costs np + 1
 * block barriers instead of np + 4:
 *  1. the group's (head, pair) steps are one sequence s; dy of step s + 2 is fetched at step s into a
 *     3-slot ring (cp.async groups: one per step, waited with 1 outstanding);
 *  2. the next head's x, cum, Δ and dS are fetched at the head's first step (v4: at its last), so
 *     they have the whole head to land; the first head's tiles load during the C·Bᵀ prologue;
 *  3. dB_t += w ∘ (x_t·dS) scales the fp32 product in registers (no w∘x tile, no barrier for it);
 *     D dy_t is added to dx from the diagonal pair's dy tile (no global dy load at the head end);
 *  4. the dx halves are swapped between the two warps of a row strip alone (named barrier, 64
 *     threads, one direction at a time through 8 KB); the per-column scalars (ddelta, dcum_j, rlast)
 *     and the last pair's rowG of a head are written after the next head's first barrier;
 *  5. the C tiles of the C·Bᵀ prologue and the dscoreᵀ C epilogue by cp.async, the next pair's in
 *     flight during the current one's products (two buffers over xch and the dy ring);
 *  6. cbs and dsc in fragment order with a thread's 4 elements of an n-tile adjacent
 *     ([pair][n-tile][thread][element]): one 16-byte access instead of four.
 * Every sum keeps a fixed order (different from v4 only in where w and D dy enter). */
#define SFB5_RING 3 /* dy slots: the current step's and the next two */

template <int N> struct SfbTile5Smem {
    static constexpr size_t LDN = N + 8, XTB = sizeof(hk_bf16) * SF_TILE * SF_LDP; /* bytes of an x / dy tile */
    static constexpr size_t dsc = 0;
    static constexpr size_t cbs = dsc + sizeof(float) * SFB_MAXT * 16 * SFB_THREADS;
    static constexpr size_t bs = cbs + sizeof(float) * SFB_MAXT * 16 * SFB_THREADS;
    static constexpr size_t ds = bs + sizeof(hk_bf16) * SF_TILE * LDN;
    static constexpr size_t xs = ds + sizeof(hk_bf16) * SF_P * LDN; /* 2 buffers */
    static constexpr size_t xch = xs + 2 * XTB;                     /* dx swap: fp32 [16][128] */
    static constexpr size_t dys = xch + sizeof(float) * 16 * (SFB_THREADS / 2); /* SFB5_RING slots */
    static constexpr size_t fl = dys + SFB5_RING * XTB;
    /* floats: cum over the pairs' rows and Δ_j (2 buffers each), dw and colG per column half, rowG per
     * row group (2 buffers), er and ec over the pairs' rows / columns */
    static constexpr size_t total = fl + sizeof(float) * (2 * SFB_MAXT * 64 + 2 * 64 + 128 + 128 + 2 * 256 + 2 * SFB_MAXT * 64);
    /* prologue / epilogue: two C tiles, over xch + slot 0 and over slots 1-2; the epilogue's bf16
     * dscore tile (XWs) over Bs */
    static constexpr size_t cs0 = xch, cs1 = dys + XTB;
    static_assert(sizeof(hk_bf16) * SF_TILE * LDN <= dys + XTB - xch && sizeof(hk_bf16) * SF_TILE * LDN <= 2 * XTB &&
                      SFB5_RING == 3 && XTB <= ds - bs,
                  "C tiles in the xch + dy ring region, XWs in Bs");
    static_assert(total <= 232448, "over the sm_90 shared memory per block");
};

template <int N>
__global__ void __launch_bounds__(SFB_THREADS, 1)
    sfb_tile5_kernel(hk_bf16 *dxbc, hk_bf16 *dsc_out, float *ddelta, float *dcum_j, float *rlast, float *rowgp,
                     float *dDrow, const hk_bf16 *dy, const hk_bf16 *dS16, const hk_bf16 *xbc, const float *delta,
                     const float *cum, const float *Dskip, ssd_geom s, size_t bht) {
    constexpr int LDN = N + 8, XT = SF_TILE * SF_LDP; /* XT: elements of one x / dy tile */
    static_assert(SFB5_RING == 3, "the cp.async waits below count 3 slots");
    using Lay = SfbTile5Smem<N>;
    extern __shared__ __align__(16) unsigned char sf_sm[];
    float *dsc = (float *)(sf_sm + Lay::dsc);
    float *cbs = (float *)(sf_sm + Lay::cbs);
    hk_bf16 *Bs = (hk_bf16 *)(sf_sm + Lay::bs), *dSs = (hk_bf16 *)(sf_sm + Lay::ds);
    hk_bf16 *Xs2 = (hk_bf16 *)(sf_sm + Lay::xs);
    float *xch = (float *)(sf_sm + Lay::xch);
    hk_bf16 *dYr = (hk_bf16 *)(sf_sm + Lay::dys), *XWs = Bs;
    hk_bf16 *Cs0 = (hk_bf16 *)(sf_sm + Lay::cs0), *Cs1 = (hk_bf16 *)(sf_sm + Lay::cs1); /* C tiles of even / odd pairs */
    float *cum2 = (float *)(sf_sm + Lay::fl), *dl2 = cum2 + 2 * SFB_MAXT * 64, *dwp = dl2 + 2 * 64;
    float *colp = dwp + 128, *rowp = colp + 128, *er = rowp + 2 * 256, *ec = er + SFB_MAXT * 64;
    /* heavy tiles (t = 0: the most pairs) first */
    const int t = blockIdx.x / s.nc, c = blockIdx.x % s.nc, g = blockIdx.y, b = blockIdx.z;
    const int t0 = c * s.Q, L = min(s.Q, s.T - t0), j0 = t * SF_TILE;
    if (j0 >= L) return;
    const int np = (L - j0 + SF_TILE - 1) / SF_TILE; /* pairs (i tile t + k, t), k < np */
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gr = lane >> 2, tq = lane & 3;
    const int rw = warp & 3, ch = warp >> 2, wr = rw * 16, jl0 = wr + gr, jl1 = jl0 + 8;
    const hk_bf16 *rows = xbc + ((size_t)b * s.T + t0) * s.W;
    const hk_bf16 *Bg = rows + s.HP + (size_t)g * N, *Cg = rows + s.HP + (size_t)(s.G + g) * N;
    const hk_bf16 *dyc = dy + ((size_t)b * s.T + t0) * s.HP;
    const int h_first = g * s.hpg, h_end = h_first + s.hpg, nsteps = s.hpg * np; /* step = (head, pair) */

    /* asynchronous tile fetches (rows past the chunk end zero-filled, their source clamped in bounds) */
    auto fetch_head = [&](int h, int buf) { /* dS, x_j, cum over the pairs' rows, Δ_j */
        const hk_bf16 *sg = dS16 + (((size_t)b * s.nc + c) * s.H + h) * s.PN;
        for (int idx = tid; idx < SF_P * (N / 8); idx += SFB_THREADS) {
            const int p = idx / (N / 8), v = idx % (N / 8);
            sf_cp16(dSs + p * LDN + v * 8, sg + (size_t)p * N + v * 8, true);
        }
        const size_t ob = ((size_t)b * s.H + h) * s.T + t0;
        for (int idx = tid; idx < SF_TILE * (SF_P / 8); idx += SFB_THREADS) {
            const int r = idx / (SF_P / 8), v = idx % (SF_P / 8);
            const bool ok = j0 + r < L;
            sf_cp16(Xs2 + buf * XT + r * SF_LDP + v * 8, rows + (size_t)(ok ? j0 + r : 0) * s.W + (size_t)h * SF_P + v * 8, ok);
        }
        for (int k = tid; k < np * SF_TILE; k += SFB_THREADS) {
            const bool ok = k < L - j0;
            sf_cp4(cum2 + buf * SFB_MAXT * 64 + k, cum + ob + j0 + (ok ? k : 0), ok);
        }
        if (tid < SF_TILE) {
            const bool ok = j0 + tid < L;
            sf_cp4(dl2 + buf * 64 + tid, delta + ob + j0 + (ok ? tid : 0), ok);
        }
    };
    auto fetch_step_dy = [&](int st) { /* dy_i of step st (if any) into its ring slot */
        if (st >= nsteps) return;
        const int h = h_first + st / np, i0 = j0 + (st % np) * SF_TILE;
        hk_bf16 *dst = dYr + (st % SFB5_RING) * XT;
        for (int idx = tid; idx < SF_TILE * (SF_P / 8); idx += SFB_THREADS) {
            const int r = idx / (SF_P / 8), v = idx % (SF_P / 8);
            const bool ok = i0 + r < L;
            sf_cp16(dst + r * SF_LDP + v * 8, dyc + (size_t)(ok ? i0 + r : 0) * s.HP + (size_t)h * SF_P + v * 8, ok);
        }
    };
    auto fetch_C = [&](int k) { /* C_i of pair k (prologue, epilogue) into C buffer k & 1 */
        hk_bf16 *dst = k & 1 ? Cs1 : Cs0;
        const int i0 = j0 + k * SF_TILE;
        for (int idx = tid; idx < SF_TILE * (N / 8); idx += SFB_THREADS) {
            const int r = idx / (N / 8), v = idx % (N / 8);
            const bool ok = i0 + r < L;
            sf_cp16(dst + r * LDN + v * 8, Cg + (size_t)(ok ? i0 + r : 0) * s.W + v * 8, ok);
        }
    };
    /* the per-column scalars and the last pair's rowG of head hh (after a barrier that follows its end) */
    auto finish_head = [&](int hh) {
        if (tid >= SF_TILE) return;
        const int hb = (hh - h_first) & 1;
        const float *cum_f = cum2 + hb * SFB_MAXT * 64, *dl_f = dl2 + hb * 64;
        const size_t ob = ((size_t)b * s.H + hh) * s.T + t0;
        if (j0 + (np - 1) * SF_TILE + tid < L) {
            const float *rp = rowp + ((np - 1) & 1) * 256;
            rowgp[(size_t)t * bht + ob + j0 + (np - 1) * SF_TILE + tid] = rp[tid] + rp[64 + tid] + rp[128 + tid] + rp[192 + tid];
        }
        if (j0 + tid < L) {
            const float e = expf(fminf(cum_f[L - 1 - j0] - cum_f[tid], 0.0f)), w = e * dl_f[tid];
            const float dw = dwp[tid] + dwp[64 + tid], colG = colp[tid] + colp[64 + tid];
            ddelta[ob + j0 + tid] = dw * e + colG;
            dcum_j[ob + j0 + tid] = -dw * w - colG * dl_f[tid];
            rlast[ob + j0 + tid] = dw * w;
        }
    };

    /* the first head's tiles land while C·Bᵀ is computed (their buffers are not touched by it) */
    fetch_head(h_first, 0);
    sf_cp_commit();
    /* once per group: CBᵀ(j, i) = B_j·C_i of every pair, dscoreᵀ = 0; C_i of the next pair in flight */
    for (int idx = tid; idx < SF_TILE * (N / 8); idx += SFB_THREADS) {
        const int r = idx / (N / 8), v = idx % (N / 8);
        const bool ok = j0 + r < L;
        sf_cp16(Bs + r * LDN + v * 8, Bg + (size_t)(ok ? j0 + r : 0) * s.W + v * 8, ok);
    }
    fetch_C(0);
    sf_cp_commit();
    for (int k = 0; k < np; k++) {
        sf_cp_wait(0);
        __syncthreads(); /* C_k (and B_j) have landed; pair k − 1 is consumed (its C buffer is refilled next) */
        if (k + 1 < np) fetch_C(k + 1);
        sf_cp_commit();
        const hk_bf16 *Cs = k & 1 ? Cs1 : Cs0;
        float cb[4][4];
        sf_zero<4>(cb);
        sfb_mm<4, LDN, 1, 1, LDN, true>(cb, Bs + wr * LDN, Cs + 32 * ch * LDN, N); /* B(n, i) = Cs[i][n] */
#pragma unroll
        for (int nt = 0; nt < 4; nt++) {
            float *f = cbs + ((k * 4 + nt) * SFB_THREADS + tid) * 4;
            *reinterpret_cast<float4 *>(f) = make_float4(cb[nt][0], cb[nt][1], cb[nt][2], cb[nt][3]);
            *reinterpret_cast<float4 *>(dsc + (f - cbs)) = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
    }
    sf_cp_wait(0);
    __syncthreads(); /* the C buffers (over xch and the dy ring) are consumed */
    /* cp.async groups from here, in commit order: dy of steps 0 and 1, then one group per step st (dy
     * of step st + 2; at a head's first step also the next head's tiles). So dy of step st is group
     * st of st + 2 committed at its step: all but the newest 1 have landed. */
    fetch_step_dy(0);
    sf_cp_commit();
    fetch_step_dy(1);
    sf_cp_commit();

    float accB[N / 16][4]; /* dB(j, n) over this warp's rows and column half, summed over the heads */
    sf_zero<N / 16>(accB);
    int st = 0; /* the current step */
    for (int h = h_first; h < h_end; h++) {
        const int hb = (h - h_first) & 1;
        const hk_bf16 *Xs = Xs2 + hb * XT;
        const float *cum_a = cum2 + hb * SFB_MAXT * 64, *dl_j = dl2 + hb * 64;
        const size_t ob = ((size_t)b * s.H + h) * s.T + t0;
        /* this head's tiles: the first head's have landed in the prologue; head h's were committed
         * np steps ago, so all but the newest np − 1 (at most 2 waited on) */
        if (h == h_first || np > 2) sf_cp_wait(2);
        else if (np == 2) sf_cp_wait(1);
        else sf_cp_wait(0);
        __syncthreads(); /* this head's tiles have landed (every thread's copies); the previous head is consumed */
        if (h > h_first) finish_head(h - 1);
        const float last = cum_a[L - 1 - j0];
        for (int idx = SF_TILE + tid; idx < np * SF_TILE; idx += SFB_THREADS) { /* pairs k ≥ 1 (read after a step barrier) */
            const float ci0 = cum_a[idx & ~(SF_TILE - 1)]; /* the pair's first row */
            er[idx] = idx < L - j0 ? expf(fminf(cum_a[idx] - ci0, 0.0f)) : 0.0f;
            ec[idx] = expf(fminf(ci0 - cum_a[idx & (SF_TILE - 1)], 0.0f));
        }
        const float w0 = j0 + jl0 < L ? expf(fminf(last - cum_a[jl0], 0.0f)) * dl_j[jl0] : 0.0f;
        const float w1 = j0 + jl1 < L ? expf(fminf(last - cum_a[jl1], 0.0f)) * dl_j[jl1] : 0.0f;
        const float Dh = Dskip[h];
        /* U(j, p) = Σ_n B_j[n] dS[p][n] → dx_j = w_j U_j, dw_j = x_j·U_j (this warp's 32 columns p) */
        float accX[4][4];
        sf_zero<4>(accX);
        sfb_mm<4, LDN, 1, 1, LDN, true>(accX, Bs + wr * LDN, dSs + 32 * ch * LDN, N);
        float dw0 = 0.0f, dw1 = 0.0f;
#pragma unroll
        for (int nt = 0; nt < 4; nt++) {
            const int p = 32 * ch + nt * 8 + 2 * tq;
            const __nv_bfloat162 xa = *reinterpret_cast<const __nv_bfloat162 *>(Xs + jl0 * SF_LDP + p);
            const __nv_bfloat162 xb = *reinterpret_cast<const __nv_bfloat162 *>(Xs + jl1 * SF_LDP + p);
            dw0 += accX[nt][0] * __low2float(xa) + accX[nt][1] * __high2float(xa);
            dw1 += accX[nt][2] * __low2float(xb) + accX[nt][3] * __high2float(xb);
            accX[nt][0] *= w0, accX[nt][1] *= w0, accX[nt][2] *= w1, accX[nt][3] *= w1;
        }
        /* dB_j += w_j Σ_p x_j[p] dS[p][n] (this warp's column half n, 16 columns at a time): A(j, p) =
         * Xs[j][p], B(p, n) = dSs[p][n]; the fp32 product scaled by w_j */
        {
            uint32_t xa[SF_P / 16][4];
#pragma unroll
            for (int kk = 0; kk < SF_P / 16; kk++) sf_ldA(xa[kk], Xs + wr * SF_LDP, SF_LDP, 0, 16 * kk);
#pragma unroll
            for (int q = 0; q < N / 32; q++) {
                float tmp[2][4];
                sf_zero<2>(tmp);
#pragma unroll
                for (int kk = 0; kk < SF_P / 16; kk++) {
                    uint32_t bq[4];
                    sf_ldB_t(bq, dSs + ch * (N / 2), LDN, 16 * kk, 16 * q);
                    sf_mma16816(tmp[0], xa[kk][0], xa[kk][1], xa[kk][2], xa[kk][3], bq[0], bq[1]);
                    sf_mma16816(tmp[1], xa[kk][0], xa[kk][1], xa[kk][2], xa[kk][3], bq[2], bq[3]);
                }
#pragma unroll
                for (int u = 0; u < 2; u++) {
                    accB[2 * q + u][0] += w0 * tmp[u][0], accB[2 * q + u][1] += w0 * tmp[u][1];
                    accB[2 * q + u][2] += w1 * tmp[u][2], accB[2 * q + u][3] += w1 * tmp[u][3];
                }
            }
        }
        /* accP: dx_j over all 64 columns p; w_j U_j (and, at the diagonal pair, D dy_j) in this warp's
         * half, the pairs' Mᵀ dy over this warp's 32 columns i added to both halves (the other half goes
         * to the partner warp at the end) */
        float accP[8][4];
#pragma unroll
        for (int nt = 0; nt < 8; nt++)
#pragma unroll
            for (int r = 0; r < 4; r++) accP[nt][r] = (nt >> 2) == ch ? accX[nt & 3][r] : 0.0f;

        float colG0 = 0.0f, colG1 = 0.0f;
        for (int k = 0; k < np; k++, st++) {
            const int i0 = j0 + k * SF_TILE;
            const hk_bf16 *dYs = dYr + (st % SFB5_RING) * XT;
            sf_cp_wait(1);
            /* this step's dy has landed; the previous step's dy slot and rowp buffer, and (k = 0) dS and
             * the previous head's x / cum / Δ buffers, are consumed */
            __syncthreads();
            if (k > 0 && tid < SF_TILE && i0 - SF_TILE + tid < L) { /* rowG of the previous pair, all 4 row groups */
                const float *rp = rowp + ((k - 1) & 1) * 256;
                rowgp[(size_t)t * bht + ob + i0 - SF_TILE + tid] = rp[tid] + rp[64 + tid] + rp[128 + tid] + rp[192 + tid];
            }
            fetch_step_dy(st + SFB5_RING - 1);
            if (k == 0 && h + 1 < h_end) fetch_head(h + 1, hb ^ 1);
            sf_cp_commit();
            if (k == 0) {
                { /* dD per row: Σ_p dy_j[p] x_j[p], 4 lanes per row */
                    const int r = tid >> 2, p0 = (tid & 3) * 16;
                    float dd = 0.0f;
#pragma unroll
                    for (int p = p0; p < p0 + 16; p += 2) {
                        const __nv_bfloat162 xv = *reinterpret_cast<const __nv_bfloat162 *>(Xs + r * SF_LDP + p);
                        const __nv_bfloat162 dv = *reinterpret_cast<const __nv_bfloat162 *>(dYs + r * SF_LDP + p);
                        dd += __low2float(xv) * __low2float(dv) + __high2float(xv) * __high2float(dv);
                    }
                    dd = sf_quad_sum(dd);
                    if ((tid & 3) == 0 && j0 + r < L) dDrow[ob + j0 + r] = dd;
                }
                /* dx_j += D dy_j in this warp's half (the diagonal pair's dy tile is dy_j) */
#pragma unroll
                for (int nt = 0; nt < 8; nt++) { /* static accP indices (a dynamic one would put accP in local memory) */
                    if ((nt >> 2) != ch) continue;
                    const int p = nt * 8 + 2 * tq;
                    const __nv_bfloat162 da = *reinterpret_cast<const __nv_bfloat162 *>(dYs + jl0 * SF_LDP + p);
                    const __nv_bfloat162 db = *reinterpret_cast<const __nv_bfloat162 *>(dYs + jl1 * SF_LDP + p);
                    accP[nt][0] += Dh * __low2float(da), accP[nt][1] += Dh * __high2float(da);
                    accP[nt][2] += Dh * __low2float(db), accP[nt][3] += Dh * __high2float(db);
                }
            }
            /* dMᵀ(j, i) = Σ_p x_j[p] dy_i[p]: A(j, p) = Xs[j][p], B(p, i) = dYs[i][p] */
            float dm[4][4];
            sf_zero<4>(dm);
            sfb_mm<4, SF_LDP, 1, 1, SF_LDP, true>(dm, Xs + wr * SF_LDP, dYs + 32 * ch * SF_LDP, SF_P);
            float rg[4][2];
            uint32_t mtp[4][2]; /* Mᵀ (bf16 pairs) in the A-fragment layout of the dx product */
            if (k == 0) { /* diagonal pair: per-element decay and mask */
#pragma unroll
                for (int nt = 0; nt < 4; nt++) {
                    const int il = 32 * ch + nt * 8 + 2 * tq;
                    float *fcb = cbs + (nt * SFB_THREADS + tid) * 4, *fds = dsc + (nt * SFB_THREADS + tid) * 4;
                    const float4 cb4 = *reinterpret_cast<const float4 *>(fcb);
                    const float cbr[4] = {cb4.x, cb4.y, cb4.z, cb4.w};
                    const float4 ds4 = *reinterpret_cast<const float4 *>(fds);
                    float dsr[4] = {ds4.x, ds4.y, ds4.z, ds4.w};
                    rg[nt][0] = rg[nt][1] = 0.0f;
#pragma unroll
                    for (int hr = 0; hr < 2; hr++) {
                        const int jl = hr ? jl1 : jl0, j = j0 + jl;
                        const float cj = cum_a[jl], dlj = dl_j[jl];
                        float mt[2];
#pragma unroll
                        for (int q = 0; q < 2; q++) {
                            const int i = i0 + il + q;
                            const bool vis = j <= i && i < L && j < L;
                            const float e = expf(fminf(cum_a[il + q] - cj, 0.0f));
                            const float cbv = cbr[2 * hr + q], dmv = dm[nt][2 * hr + q];
                            mt[q] = vis ? cbv * e * dlj : 0.0f;
                            dsr[2 * hr + q] += vis ? dmv * e * dlj : 0.0f;
                            const float gg = vis ? dmv * cbv * e : 0.0f;
                            if (hr) colG1 += gg;
                            else colG0 += gg;
                            rg[nt][q] += gg * dlj;
                        }
                        mtp[nt][hr] = sf_pack(mt[0], mt[1]);
                    }
                    *reinterpret_cast<float4 *>(fds) = make_float4(dsr[0], dsr[1], dsr[2], dsr[3]);
                }
            } else { /* below the diagonal: e = er_i · ec_j, no mask (rows past L have er = 0) */
                const float *erk = er + k * SF_TILE, *eck = ec + k * SF_TILE;
                const float ec0 = eck[jl0], ec1 = eck[jl1], ed0 = ec0 * dl_j[jl0], ed1 = ec1 * dl_j[jl1];
#pragma unroll
                for (int nt = 0; nt < 4; nt++) {
                    const int il = 32 * ch + nt * 8 + 2 * tq;
                    const float2 erv = *reinterpret_cast<const float2 *>(erk + il);
                    float *fcb = cbs + ((k * 4 + nt) * SFB_THREADS + tid) * 4, *fds = dsc + (fcb - cbs);
                    const float4 cb4 = *reinterpret_cast<const float4 *>(fcb);
                    const float cbr[4] = {cb4.x, cb4.y, cb4.z, cb4.w};
                    const float4 ds4 = *reinterpret_cast<const float4 *>(fds);
                    float dsr[4] = {ds4.x, ds4.y, ds4.z, ds4.w};
                    rg[nt][0] = rg[nt][1] = 0.0f;
#pragma unroll
                    for (int hr = 0; hr < 2; hr++) {
                        const float ecj = hr ? ec1 : ec0, edj = hr ? ed1 : ed0; /* e^{cum_i0 − cum_j}, × Δ_j */
                        float mt[2];
#pragma unroll
                        for (int q = 0; q < 2; q++) {
                            const float eri = q ? erv.y : erv.x;
                            const float cbv = cbr[2 * hr + q], dmv = dm[nt][2 * hr + q];
                            const float ed = eri * edj, g1 = dmv * cbv; /* e Δ_j; dM · CB */
                            mt[q] = cbv * ed;
                            dsr[2 * hr + q] += dmv * ed;
                            if (hr) colG1 += g1 * (eri * ecj);
                            else colG0 += g1 * (eri * ecj);
                            rg[nt][q] += g1 * ed;
                        }
                        mtp[nt][hr] = sf_pack(mt[0], mt[1]);
                    }
                    *reinterpret_cast<float4 *>(fds) = make_float4(dsr[0], dsr[1], dsr[2], dsr[3]);
                }
            }
            /* rowG_i partial = Σ_{j in this tile} G_ij Δ_j: over the 8 row lanes, then the 4 row groups */
#pragma unroll
            for (int nt = 0; nt < 4; nt++) {
#pragma unroll
                for (int q = 0; q < 2; q++) {
                    float v = rg[nt][q];
                    v += __shfl_xor_sync(0xffffffffu, v, 4);
                    v += __shfl_xor_sync(0xffffffffu, v, 8);
                    v += __shfl_xor_sync(0xffffffffu, v, 16);
                    if (gr == 0) rowp[(k & 1) * 256 + rw * 64 + 32 * ch + nt * 8 + 2 * tq + q] = v;
                }
            }
            /* dx_j += Σ_{i in this warp's 32} Mᵀ[j][i] dy_i[p], all 64 p: A from the registers (the
             * C fragments of dm are the A fragments of m16n8k16), B(i, p) = dYs[i][p] */
#pragma unroll
            for (int kk = 0; kk < 2; kk++) {
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    uint32_t bq[4];
                    sf_ldB_t(bq, dYs, SF_LDP, 32 * ch + 16 * kk, q * 16);
                    sf_mma16816(accP[2 * q], mtp[2 * kk][0], mtp[2 * kk][1], mtp[2 * kk + 1][0], mtp[2 * kk + 1][1], bq[0],
                                bq[1]);
                    sf_mma16816(accP[2 * q + 1], mtp[2 * kk][0], mtp[2 * kk][1], mtp[2 * kk + 1][0], mtp[2 * kk + 1][1],
                                bq[2], bq[3]);
                }
            }
        }
        dw0 = sf_quad_sum(dw0), dw1 = sf_quad_sum(dw1);
        colG0 = sf_quad_sum(colG0), colG1 = sf_quad_sum(colG1);
        if (tq == 0) {
            dwp[ch * 64 + jl0] = dw0, dwp[ch * 64 + jl1] = dw1;
            colp[ch * 64 + jl0] = colG0, colp[ch * 64 + jl1] = colG1;
        }
        /* dx_j of this warp's 32 columns p = own + partner's partial (same rows, other ch: thread
         * tid ^ 128), one direction at a time through xch[element][tid % 128]: ch 0 sends, ch 1 takes
         * and sends back in place (each slot read, then written, by one thread), ch 0 takes */
        float dxh[4][4];
        const int xs0 = tid & (SFB_THREADS / 2 - 1);
        if (ch == 0) {
#pragma unroll
            for (int nt = 0; nt < 4; nt++)
#pragma unroll
                for (int r = 0; r < 4; r++) xch[(nt * 4 + r) * (SFB_THREADS / 2) + xs0] = accP[4 + nt][r];
        }
        sf_bar(1 + rw, 64); /* the strip's two warps */
        if (ch == 1) {
#pragma unroll
            for (int nt = 0; nt < 4; nt++)
#pragma unroll
                for (int r = 0; r < 4; r++) {
                    float *x = xch + (nt * 4 + r) * (SFB_THREADS / 2) + xs0;
                    dxh[nt][r] = accP[4 + nt][r] + *x;
                    *x = accP[nt][r];
                }
        }
        sf_bar(1 + rw, 64);
        if (ch == 0) {
#pragma unroll
            for (int nt = 0; nt < 4; nt++)
#pragma unroll
                for (int r = 0; r < 4; r++) dxh[nt][r] = accP[nt][r] + xch[(nt * 4 + r) * (SFB_THREADS / 2) + xs0];
        }
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
            const int j = j0 + (hr ? jl1 : jl0);
            if (j >= L) continue;
            const size_t row = (size_t)b * s.T + t0 + j;
#pragma unroll
            for (int nt = 0; nt < 4; nt++)
                sf_st2(dxbc + row * s.W + (size_t)h * SF_P + 32 * ch + nt * 8 + 2 * tq, dxh[nt][2 * hr], dxh[nt][2 * hr + 1]);
        }
    }
    sf_cp_wait(0); /* nothing is in flight after the last step (its groups are empty); kept for the reuse below */
    /* dwp, colp and the last pair's rowp of the last head complete; xch, the dy ring (the C buffers)
     * and Bs (XWs) are consumed */
    __syncthreads();
    fetch_C(0);
    sf_cp_commit();
    finish_head(h_end - 1);

    /* once per group: dB_j += Σ_i dscoreᵀ(j, i) C_i; the dscore tiles go out for the rows kernel; C_i
     * of the next pair in flight */
    for (int k = 0; k < np; k++) {
        sf_cp_wait(0);
        __syncthreads(); /* C_k has landed; pair k − 1 (its C buffer, XWs) is consumed */
        if (k + 1 < np) fetch_C(k + 1);
        sf_cp_commit();
        const hk_bf16 *Cs = k & 1 ? Cs1 : Cs0;
#pragma unroll
        for (int nt = 0; nt < 4; nt++) {
            const float4 d4 = *reinterpret_cast<const float4 *>(dsc + ((k * 4 + nt) * SFB_THREADS + tid) * 4);
            sf_st2(XWs + jl0 * SF_LDQ + 32 * ch + nt * 8 + 2 * tq, d4.x, d4.y);
            sf_st2(XWs + jl1 * SF_LDQ + 32 * ch + nt * 8 + 2 * tq, d4.z, d4.w);
        }
        __syncthreads();
        /* global tile (i tile t + k, j tile t), bf16 [j][i] */
        hk_bf16 *gd = dsc_out + ((((size_t)b * s.nc + c) * s.G + g) * (SFB_MAXT * SFB_MAXT) + (t + k) * SFB_MAXT + t) *
                                    (SF_TILE * SF_TILE);
        for (int idx = tid; idx < SF_TILE * 8; idx += SFB_THREADS) {
            const int r = idx >> 3, v = idx & 7;
            *reinterpret_cast<uint4 *>(gd + r * SF_TILE + v * 8) = *reinterpret_cast<const uint4 *>(XWs + r * SF_LDQ + v * 8);
        }
        /* A(j, i) = XWs[j][i], B(i, n) = Cs[i][n] */
        sfb_mm<N / 16, SF_LDQ, 1, LDN, 1, true>(accB, XWs + wr * SF_LDQ, Cs + ch * (N / 2), SF_TILE);
    }
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
        const int j = j0 + (hr ? jl1 : jl0);
        if (j >= L) continue;
        hk_bf16 *dBj = dxbc + ((size_t)b * s.T + t0 + j) * s.W + s.HP + (size_t)g * N + ch * (N / 2);
#pragma unroll
        for (int nt = 0; nt < N / 16; nt++) sf_st2(dBj + nt * 8 + 2 * tq, accB[nt][2 * hr], accB[nt][2 * hr + 1]);
    }
}

/* ---- rows: dC for 64 rows i of one (chunk, group, b), 4 warps, warp w owns rows 16w .. 16w+15.
 * Per head Z = dy_i S_in → dC_i += e_i Z_i, dcum_i (inter-chunk part) = e_i C_i·Z_i; then once per
 * group dC_i += Σ_{j ≤ i} dscore_ij B_j from the tile kernel's dscore tiles. The per-head tiles
 * (dy_i, the bf16 S_in copy of the dstate scan, cum_i) are fetched by cp.async one head ahead into a
 * second buffer; Bs and DSs of the dscore phase alias the head buffers (nothing is in flight by then). */
template <int N> struct SfbRows4Smem {
    static constexpr size_t LDN = N + 8;
    static constexpr size_t cs = 0;
    static constexpr size_t ss = cs + sizeof(hk_bf16) * SF_TILE * LDN;     /* 2 buffers */
    static constexpr size_t dys = ss + 2 * sizeof(hk_bf16) * SF_P * LDN;   /* 2 buffers */
    static constexpr size_t cm = dys + 2 * sizeof(hk_bf16) * SF_TILE * SF_LDP;
    static constexpr size_t total = cm + sizeof(float) * 2 * SF_TILE;
    static_assert(sizeof(hk_bf16) * SF_TILE * SF_LDQ <= 2 * sizeof(hk_bf16) * SF_TILE * SF_LDP, "DSs in the dy buffers");
};

template <int N>
__global__ void __launch_bounds__(SF_THREADS)
    sfb_rows4_kernel(hk_bf16 *dxbc, float *dcum_i, const hk_bf16 *dy, const hk_bf16 *sbf, const hk_bf16 *xbc,
                     const hk_bf16 *dsc_in, const float *cum, ssd_geom s) {
    constexpr int LDN = N + 8;
    using Lay = SfbRows4Smem<N>;
    extern __shared__ __align__(16) unsigned char sf_sm[];
    hk_bf16 *Cs = (hk_bf16 *)(sf_sm + Lay::cs), *Ss2 = (hk_bf16 *)(sf_sm + Lay::ss);
    hk_bf16 *dYs2 = (hk_bf16 *)(sf_sm + Lay::dys);
    float *cum2 = (float *)(sf_sm + Lay::cm);
    hk_bf16 *Bs = Ss2, *DSs = dYs2; /* dscore phase only */
    /* chunk-major, the heaviest row tile (most column tiles) first */
    const int qt = (s.Q + SF_TILE - 1) / SF_TILE;
    const int it = qt - 1 - (int)blockIdx.x % qt, c = (int)blockIdx.x / qt, g = blockIdx.y, b = blockIdx.z;
    const int t0 = c * s.Q, L = min(s.Q, s.T - t0), i0 = it * SF_TILE;
    if (i0 >= L) return;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gr = lane >> 2, tq = lane & 3, wr = warp * 16;
    const int il0 = wr + gr, il1 = il0 + 8;
    const hk_bf16 *rows = xbc + ((size_t)b * s.T + t0) * s.W;
    const hk_bf16 *dyc = dy + ((size_t)b * s.T + t0) * s.HP;
    auto fetch = [&](int h, int buf) { /* dy_i, S_in (bf16), cum_i of head h */
        const size_t ob = ((size_t)b * s.H + h) * s.T + t0;
        hk_bf16 *ys = dYs2 + buf * SF_TILE * SF_LDP, *ss = Ss2 + buf * SF_P * LDN;
        for (int idx = tid; idx < SF_TILE * (SF_P / 8); idx += SF_THREADS) {
            const int r = idx / (SF_P / 8), v = idx % (SF_P / 8);
            const bool ok = i0 + r < L;
            sf_cp16(ys + r * SF_LDP + v * 8, dyc + (size_t)(ok ? i0 + r : 0) * s.HP + (size_t)h * SF_P + v * 8, ok);
        }
        const hk_bf16 *sg = sbf + (((size_t)b * s.nc + c) * s.H + h) * s.PN;
        for (int idx = tid; idx < SF_P * (N / 8); idx += SF_THREADS) {
            const int p = idx / (N / 8), v = idx % (N / 8);
            sf_cp16(ss + p * LDN + v * 8, sg + (size_t)p * N + v * 8, true);
        }
        if (tid < SF_TILE) {
            const bool ok = i0 + tid < L;
            sf_cp4(cum2 + buf * SF_TILE + tid, cum + ob + (ok ? i0 + tid : 0), ok);
        }
    };
    const int h_first = g * s.hpg, h_end = h_first + s.hpg;
    fetch(h_first, 0);
    sf_cp_commit();
    sf_load_rows<N, LDN>(Cs, rows + s.HP + (size_t)(s.G + g) * N, s.W, i0, L);
    float accC[N / 8][4];
    sf_zero<N / 8>(accC);
    for (int h = h_first; h < h_end; h++) {
        const int hb = (h - h_first) & 1;
        const size_t ob = ((size_t)b * s.H + h) * s.T + t0;
        sf_cp_wait(0);
        __syncthreads(); /* head h's tiles have landed (every thread's copies); head h − 1's are consumed */
        if (h + 1 < h_end) fetch(h + 1, hb ^ 1);
        sf_cp_commit();
        const hk_bf16 *dYs = dYs2 + hb * SF_TILE * SF_LDP, *Ss = Ss2 + hb * SF_P * LDN;
        const float *cum_i = cum2 + hb * SF_TILE;
        const float e0 = i0 + il0 < L ? expf(cum_i[il0]) : 0.0f, e1 = i0 + il1 < L ? expf(cum_i[il1]) : 0.0f;
        float dc0 = 0.0f, dc1 = 0.0f;
        /* Z(i, n) = Σ_p dy_i[p] S_in[p][n]: A(i, p) = dYs[i][p], B(p, n) = Ss[p][n], 64 columns at a time */
#pragma unroll
        for (int half = 0; half < N / 64; half++) {
            float tmp[8][4];
            sf_zero<8>(tmp);
            sfb_mm<8, SF_LDP, 1, LDN, 1, true>(tmp, dYs + wr * SF_LDP, Ss + half * 64, SF_P);
#pragma unroll
            for (int nt = 0; nt < 8; nt++) {
                const int n = half * 64 + nt * 8 + 2 * tq;
                const __nv_bfloat162 ca = *reinterpret_cast<const __nv_bfloat162 *>(Cs + il0 * LDN + n);
                const __nv_bfloat162 cb = *reinterpret_cast<const __nv_bfloat162 *>(Cs + il1 * LDN + n);
                const float z0 = e0 * tmp[nt][0], z1 = e0 * tmp[nt][1], z2 = e1 * tmp[nt][2], z3 = e1 * tmp[nt][3];
                accC[half * 8 + nt][0] += z0, accC[half * 8 + nt][1] += z1;
                accC[half * 8 + nt][2] += z2, accC[half * 8 + nt][3] += z3;
                dc0 += z0 * __low2float(ca) + z1 * __high2float(ca);
                dc1 += z2 * __low2float(cb) + z3 * __high2float(cb);
            }
        }
        dc0 = sf_quad_sum(dc0), dc1 = sf_quad_sum(dc1);
        if (tq == 0) {
            if (i0 + il0 < L) dcum_i[ob + i0 + il0] = dc0;
            if (i0 + il1 < L) dcum_i[ob + i0 + il1] = dc1;
        }
    }
    sf_cp_wait(0); /* nothing is in flight after the last head; kept for the buffer reuse below */
    for (int jt = 0; jt <= it; jt++) {
        __syncthreads(); /* the head buffers (Bs, DSs) and the previous column tile are consumed */
        sf_load_rows<N, LDN>(Bs, rows + s.HP + (size_t)g * N, s.W, jt * SF_TILE, L);
        const hk_bf16 *gd =
            dsc_in + ((((size_t)b * s.nc + c) * s.G + g) * (SFB_MAXT * SFB_MAXT) + it * SFB_MAXT + jt) * (SF_TILE * SF_TILE);
        sf_load_rows<SF_TILE, SF_LDQ>(DSs, gd, SF_TILE, 0, SF_TILE);
        __syncthreads();
        /* A(i, j) = DSs[j][i], B(j, n) = Bs[j][n] */
        sfb_mm<N / 8, 1, SF_LDQ, LDN, 1, true>(accC, DSs + wr, Bs, SF_TILE);
    }
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
        const int i = i0 + (hr ? il1 : il0);
        if (i >= L) continue;
        hk_bf16 *dCi = dxbc + ((size_t)b * s.T + t0 + i) * s.W + s.HP + (size_t)(s.G + g) * N;
#pragma unroll
        for (int nt = 0; nt < N / 8; nt++) sf_st2(dCi + nt * 8 + 2 * tq, accC[nt][2 * hr], accC[nt][2 * hr + 1]);
    }
}

/* ---- dstate scan: chunk dstates and the reverse state pass in one kernel (the forward's `state` kernel of
 * ssd_fast.cu run backwards). Block per (64-column slice of N, h, b), 4 warps, warp w owns dS rows
 * p = 16w .. 16w+15 × the slice's 64 columns; the running dS (fp32) lives in the mma accumulators.
 * Walking the chunks from the last: at the start of chunk c the accumulator is dS_out[c] (written
 * as bf16 for the tile kernel, and its per-warp ⟨dS_out[c], S_in[c]⟩ partial, S_in from registers
 * loaded one chunk ahead, and written back as the bf16 copy `sbf` that the rows kernel streams
 * in by cp.async), then dS ← e^{cum_last} dS and Σ_j (e^{cum_j} dy_j)ᵀ C_j of the chunk is
 * accumulated onto it. The chunk's 64-row tiles (dy, C, cum) stream through a STAGES-deep cp.async
 * ring. No fp32 chunk-local dstates go through DRAM (v1 writes and reads them back). */
#define SFB_SC_WS 68 /* floats per stage: cum[64], the chunk's last cum, pad */

template <int STAGES> __host__ __device__ constexpr size_t sfb_scan_smem() {
    return (size_t)STAGES * (2 * SF_TILE * SF_LDP * sizeof(hk_bf16) + SFB_SC_WS * sizeof(float));
}

template <int N, int STAGES>
__global__ void __launch_bounds__(SF_THREADS)
    sfb_dstate_scan_kernel(hk_bf16 *dS16, float *dotp, hk_bf16 *sbf, const hk_bf16 *dy, const hk_bf16 *xbc,
                           const float *states, const float *cum, ssd_geom s) {
    static_assert(STAGES >= 2, "dstate scan: at least two stages");
    constexpr int NDOT = N / 16; /* dot partials per (b, c, h): 4 warps × N / 64 slices */
    SF_DYN_SMEM(sf_sm);
    hk_bf16 *Ys = (hk_bf16 *)sf_sm, *Cs = Ys + STAGES * SF_TILE * SF_LDP;
    float *Ws = (float *)(Cs + STAGES * SF_TILE * SF_LDP);
    const int ns = blockIdx.x, n0 = ns * 64, h = blockIdx.y, b = blockIdx.z, g = h / s.hpg, tid = threadIdx.x;
    const int warp = tid >> 5, lane = tid & 31, gr = lane >> 2, t = lane & 3, pr = warp * 16 + gr;
    const int qt = (s.Q + SF_TILE - 1) / SF_TILE, total = s.nc * qt;
    const size_t bh = ((size_t)b * s.H + h) * s.T;
    const hk_bf16 *yg = dy + (size_t)b * s.T * s.HP + (size_t)h * SF_P;
    const hk_bf16 *cg = xbc + (size_t)b * s.T * s.W + s.HP + (size_t)(s.G + g) * N + n0;
    auto issue = [&](int k) { /* item k: tile k % qt of chunk nc − 1 − k / qt */
        if (k < total) {
            const int c = s.nc - 1 - k / qt, j0 = (k % qt) * SF_TILE, t0 = c * s.Q, L = min(s.Q, s.T - t0);
            const int st = k % STAGES;
            if (j0 < L) {
                hk_bf16 *ys = Ys + st * SF_TILE * SF_LDP, *cs = Cs + st * SF_TILE * SF_LDP;
                for (int idx = tid; idx < SF_TILE * 8; idx += SF_THREADS) {
                    const int r = idx >> 3, v = idx & 7;
                    const bool ok = j0 + r < L;
                    const size_t row = (size_t)t0 + j0 + (ok ? r : 0);
                    sf_cp16(ys + r * SF_LDP + v * 8, yg + row * s.HP + v * 8, ok);
                    sf_cp16(cs + r * SF_LDP + v * 8, cg + row * s.W + v * 8, ok);
                }
                float *ws = Ws + st * SFB_SC_WS;
                if (tid < SF_TILE) {
                    const bool ok = j0 + tid < L;
                    sf_cp4(ws + tid, cum + bh + t0 + j0 + (ok ? tid : 0), ok);
                } else if (tid == SF_TILE && j0 == 0) {
                    sf_cp4(ws + SF_TILE, cum + bh + t0 + L - 1, true);
                }
            }
        }
        sf_cp_commit(); /* one group per item: the wait counts stay uniform */
    };
    float sin[8][4]; /* S_in[c] of this thread's fragment elements, loaded one chunk ahead */
    auto load_sin = [&](int c) {
        const float *so = states + (((size_t)b * s.nc + c) * s.H + h) * s.PN;
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
            const int n = n0 + nt * 8 + 2 * t;
            const float2 u = *reinterpret_cast<const float2 *>(so + (size_t)pr * N + n);
            const float2 v = *reinterpret_cast<const float2 *>(so + (size_t)(pr + 8) * N + n);
            sin[nt][0] = u.x, sin[nt][1] = u.y, sin[nt][2] = v.x, sin[nt][3] = v.y;
        }
    };
    float acc[8][4];
    sf_zero<8>(acc);
    load_sin(s.nc - 1);
#pragma unroll
    for (int k = 0; k < STAGES - 1; k++) issue(k);
    for (int k = 0; k < total; k++) {
        sf_cp_wait(STAGES - 2); /* this thread's copies of item k have landed */
        __syncthreads();        /* everyone's have; item k − 1's stage is consumed */
        issue(k + STAGES - 1);
        const int c = s.nc - 1 - k / qt, j0 = (k % qt) * SF_TILE, t0 = c * s.Q, L = min(s.Q, s.T - t0);
        const int st = k % STAGES;
        const float *ws = Ws + st * SFB_SC_WS;
        if (j0 == 0) { /* chunk start: acc is dS_out[c] */
            const size_t bc = ((size_t)b * s.nc + c) * s.H + h;
            hk_bf16 *o = dS16 + bc * s.PN, *os = sbf + bc * s.PN;
            float dot = 0.0f;
#pragma unroll
            for (int nt = 0; nt < 8; nt++) {
                const int n = n0 + nt * 8 + 2 * t;
                sf_st2(o + (size_t)pr * N + n, acc[nt][0], acc[nt][1]);
                sf_st2(o + (size_t)(pr + 8) * N + n, acc[nt][2], acc[nt][3]);
                sf_st2(os + (size_t)pr * N + n, sin[nt][0], sin[nt][1]);
                sf_st2(os + (size_t)(pr + 8) * N + n, sin[nt][2], sin[nt][3]);
                dot += acc[nt][0] * sin[nt][0] + acc[nt][1] * sin[nt][1] + acc[nt][2] * sin[nt][2] +
                       acc[nt][3] * sin[nt][3];
            }
            dot = warp_sum(dot);
            if (lane == 0) dotp[bc * NDOT + ns * 4 + warp] = dot;
            if (c > 0) load_sin(c - 1);
            const float e = expf(ws[SF_TILE]);
#pragma unroll
            for (int nt = 0; nt < 8; nt++) acc[nt][0] *= e, acc[nt][1] *= e, acc[nt][2] *= e, acc[nt][3] *= e;
        }
        if (j0 >= L) continue;
        const hk_bf16 *ys = Ys + st * SF_TILE * SF_LDP, *cs = Cs + st * SF_TILE * SF_LDP;
        const int ksteps = min(4, (L - j0 + 15) >> 4); /* rows past L are zeros: skip whole k-steps of them */
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            if (kk >= ksteps) break;
            uint32_t a[4];
            sf_ldA_t(a, ys, SF_LDP, kk * 16, warp * 16); /* A(p, j) = dy[j][p] */
            const float w0 = expf(ws[kk * 16 + 2 * t]), w1 = expf(ws[kk * 16 + 2 * t + 1]);
            const float w8 = expf(ws[kk * 16 + 2 * t + 8]), w9 = expf(ws[kk * 16 + 2 * t + 9]);
            a[0] = sf_scale2(a[0], w0, w1), a[1] = sf_scale2(a[1], w0, w1);
            a[2] = sf_scale2(a[2], w8, w9), a[3] = sf_scale2(a[3], w8, w9);
#pragma unroll
            for (int q = 0; q < 4; q++) {
                uint32_t bq[4];
                sf_ldB_t(bq, cs, SF_LDP, kk * 16, q * 16); /* B(j, n) = C[j][n] */
                sf_mma16816(acc[2 * q], a[0], a[1], a[2], a[3], bq[0], bq[1]);
                sf_mma16816(acc[2 * q + 1], a[0], a[1], a[2], a[3], bq[2], bq[3]);
            }
        }
    }
}

/* ---- per (chunk, h, b): the decay chain rule → ddt and the parameter partials (as v1, with the
 * partials of the dstate scan summed in a fixed order: nwarp = N / 16 of them per (b, c, h)). One warp. */
__global__ void sfb_final_kernel(hk_bf16 *ddt, float *partial, const float *dotp, const float *ddelta,
                                 const float *dcum_j, const float *dcum_i, const float *rowgp, size_t bht,
                                 const float *rlast, const float *dDrow, const hk_bf16 *dt, const float *dt_bias,
                                 const float *A_log, const float *delta, const float *cum, ssd_geom s, int nwarp) {
    const int c = blockIdx.x, h = blockIdx.y, b = blockIdx.z, lane = threadIdx.x;
    const int t0 = c * s.Q, L = min(s.Q, s.T - t0);
    const size_t bc = ((size_t)b * s.nc + c) * s.H + h, ob = ((size_t)b * s.H + h) * s.T + t0;
    float v = 0.0f, rs = 0.0f;
    for (int k = lane; k < nwarp; k += 32) v += dotp[bc * nwarp + k];
    for (int j = lane; j < L; j += 32) rs += rlast[ob + j];
    const float A = -expf(A_log[h]), bias = dt_bias[h];
    const float extra = expf(cum[ob + L - 1]) * warp_sum(v) + warp_sum(rs);
    float carry = 0.0f, dA = 0.0f, dbias = 0.0f, dD = 0.0f;
    for (int top = L - 1; top >= 0; top -= 32) {
        const int i = top - lane;
        float da = 0.0f;
        if (i >= 0) {
            da = dcum_j[ob + i] + dcum_i[ob + i] + (i == L - 1 ? extra : 0.0f);
            for (int tt = 0; tt <= i / SF_TILE; tt++) da += rowgp[(size_t)tt * bht + ob + i];
        }
#pragma unroll
        for (int off = 1; off < 32; off <<= 1) {
            const float u = __shfl_up_sync(0xffffffffu, da, off);
            if (lane >= off) da += u;
        }
        da += carry;
        carry = __shfl_sync(0xffffffffu, da, 31);
        if (i >= 0) {
            dA += da * delta[ob + i];
            const size_t n = ((size_t)b * s.T + t0 + i) * s.H + h;
            const float du = (ddelta[ob + i] + da * A) * ssd_sigmoid(ld(dt[n]) + bias);
            ddt[n] = st<hk_bf16>(du);
            dbias += du;
            dD += dDrow[ob + i];
        }
    }
    dA = warp_sum(dA), dbias = warp_sum(dbias), dD = warp_sum(dD);
    if (lane == 0) {
        float *pp = partial + (((size_t)h * s.B + b) * s.nc + c) * 3;
        pp[0] = dbias, pp[1] = dA * A, pp[2] = dD;
    }
}

/* The fast backward for chunks of up to SFB_MAXT tiles: decay, the fused dstate scan (chunk dstates
 * and the reverse state pass; writes the bf16 S_in copy the rows kernel streams), the tile kernel
 * (dx, dB, dscore), the rows kernel (dC), the decay chain rule and the parameter sums. */
template <int N>
static void sf_bwd_v5(hk_backend *hk, hk_bf16 *dxbc, hk_bf16 *ddt, float *ddt_bias, float *dA_log, float *dDskip,
                      const hk_bf16 *dy, const float *states, const hk_bf16 *xbc, const hk_bf16 *dt,
                      const float *dt_bias, const float *A_log, const float *Dskip, const ssd_geom &s) {
    /* float counts, each a multiple of 4 (16-byte aligned sub-buffers) except the last */
    const size_t bht = ((size_t)s.B * s.H * s.T + 3) & ~(size_t)3, nst = (size_t)s.B * s.nc * s.H * s.PN;
    constexpr int ndot_per = N / 16; /* dot partials per (b, c, h) */
    const size_t ndot = ((size_t)s.B * s.nc * s.H * ndot_per + 3) & ~(size_t)3;
    const size_t ndsc = (size_t)s.B * s.nc * s.G * SFB_MAXT * SFB_MAXT * SF_TILE * SF_TILE; /* bf16 */
    const size_t npart = (size_t)s.H * s.B * s.nc * 3;
    float *scr = (float *)hk_cuda_scratch(hk, sizeof(float) * ((7 + SFB_MAXT) * bht + nst + ndot + ndsc / 2 + npart));
    if (!scr) return;
    float *delta = scr, *cum = delta + bht, *ddelta = cum + bht, *dcum_j = ddelta + bht, *dcum_i = dcum_j + bht;
    float *rlast = dcum_i + bht, *dDrow = rlast + bht, *rowgp = dDrow + bht;
    hk_bf16 *sbf = (hk_bf16 *)(rowgp + SFB_MAXT * bht); /* bf16 S_in copy */
    hk_bf16 *dS16 = sbf + nst;
    float *dotp = (float *)(dS16 + nst);
    hk_bf16 *dsc = (hk_bf16 *)(dotp + ndot);
    float *partial = (float *)(dsc + ndsc);
    cudaStream_t st_ = hk_cuda_stream(hk);
    const int qtiles = (s.Q + SF_TILE - 1) / SF_TILE;
    sf_decay_kernel<<<dim3(s.nc, s.H, s.B), 32, 0, st_>>>(delta, cum, dt, dt_bias, A_log, s);
    if (sfb_launched(hk, st_, "ssd_fast_bwd decay")) return;
    constexpr int STAGES = 5;
    constexpr size_t smem_s = sfb_scan_smem<STAGES>();
    if (!sf_smem_attr(hk, sfb_dstate_scan_kernel<N, STAGES>, smem_s)) return;
    sfb_dstate_scan_kernel<N, STAGES><<<dim3(N / 64, s.H, s.B), SF_THREADS, smem_s, st_>>>(dS16, dotp, sbf, dy, xbc,
                                                                                         states, cum, s);
    if (sfb_launched(hk, st_, "ssd_fast_bwd dstate scan")) return;
    constexpr size_t smem_t = SfbTile5Smem<N>::total;
    if (!sf_smem_attr(hk, sfb_tile5_kernel<N>, smem_t)) return;
    sfb_tile5_kernel<N><<<dim3(qtiles * s.nc, s.G, s.B), SFB_THREADS, smem_t, st_>>>(
        dxbc, dsc, ddelta, dcum_j, rlast, rowgp, dDrow, dy, dS16, xbc, delta, cum, Dskip, s, bht);
    if (sfb_launched(hk, st_, "ssd_fast_bwd tiles")) return;
    constexpr size_t smem_r = SfbRows4Smem<N>::total;
    if (!sf_smem_attr(hk, sfb_rows4_kernel<N>, smem_r)) return;
    sfb_rows4_kernel<N><<<dim3(qtiles * s.nc, s.G, s.B), SF_THREADS, smem_r, st_>>>(dxbc, dcum_i, dy, sbf, xbc, dsc,
                                                                                   cum, s);
    if (sfb_launched(hk, st_, "ssd_fast_bwd rows")) return;
    sfb_final_kernel<<<dim3(s.nc, s.H, s.B), 32, 0, st_>>>(ddt, partial, dotp, ddelta, dcum_j, dcum_i, rowgp, bht,
                                                          rlast, dDrow, dt, dt_bias, A_log, delta, cum, s, ndot_per);
    if (sfb_launched(hk, st_, "ssd_fast_bwd decay chain")) return;
    ssd_param_sum_kernel<<<(s.H + 127) / 128, 128, 0, st_>>>(ddt_bias, dA_log, dDskip, partial, s.H, s.B * s.nc);
    sfb_launched(hk, st_, "ssd_fast_bwd parameters");
}

/* v5 wherever it applies; v1 for chunks of more than SFB_MAXT tiles (the only way to reach it). */
static bool sf_bwd_uses_v1(const ssd_geom &s) { return (s.Q + SF_TILE - 1) / SF_TILE > SFB_MAXT; }

template <int N>
static void sf_bwd(hk_backend *hk, hk_bf16 *dxbc, hk_bf16 *ddt, float *ddt_bias, float *dA_log, float *dDskip,
                   const hk_bf16 *dy, const float *states, const hk_bf16 *xbc, const hk_bf16 *dt, const float *dt_bias,
                   const float *A_log, const float *Dskip, const ssd_geom &s) {
    if (sf_bwd_uses_v1(s))
        sf_bwd_v1<N>(hk, dxbc, ddt, ddt_bias, dA_log, dDskip, dy, states, xbc, dt, dt_bias, A_log, Dskip, s);
    else
        sf_bwd_v5<N>(hk, dxbc, ddt, ddt_bias, dA_log, dDskip, dy, states, xbc, dt, dt_bias, A_log, Dskip, s);
}

extern "C" void hk_cuda_ssd_fast_bwd(hk_backend *hk, void *dxbc, void *ddt, void *ddt_bias, void *dA_log,
                                     void *dDskip, const void *dy, const void *states, const void *xbc, const void *dt,
                                     const void *dt_bias, const void *A_log, const void *Dskip, hk_ssd_dims d) {
    if (hk->act != HK_BF16) {
        hk_cuda_ssd_bwd(hk, dxbc, ddt, ddt_bias, dA_log, dDskip, dy, states, xbc, dt, dt_bias, A_log, Dskip, d);
        return;
    }
    if (!sf_check(hk, d, "ssd_fast_bwd", dxbc, dy, xbc) || !sf_check(hk, d, "ssd_fast_bwd", states, dxbc, dy)) return;
    const ssd_geom s = ssd_make(d);
    if (d.N == 64)
        sf_bwd<64>(hk, (hk_bf16 *)dxbc, (hk_bf16 *)ddt, (float *)ddt_bias, (float *)dA_log, (float *)dDskip,
                   (const hk_bf16 *)dy, (const float *)states, (const hk_bf16 *)xbc, (const hk_bf16 *)dt,
                   (const float *)dt_bias, (const float *)A_log, (const float *)Dskip, s);
    else
        sf_bwd<128>(hk, (hk_bf16 *)dxbc, (hk_bf16 *)ddt, (float *)ddt_bias, (float *)dA_log, (float *)dDskip,
                    (const hk_bf16 *)dy, (const float *)states, (const hk_bf16 *)xbc, (const hk_bf16 *)dt,
                    (const float *)dt_bias, (const float *)A_log, (const float *)Dskip, s);
}

/* ---- test-only per-kernel profile ---------------------------------------------------------------
 * The DRAM bytes (each kernel's inputs read once, outputs written once; re-reads assumed L2 hits)
 * and the FLOPs each kernel executes (masked tile pairs counted: qt(qt+1)/2 of qt² per chunk), for
 * a floor per kernel. Approximate: full chunks, the scalar rows (B·H·T floats) counted per use. */
static void sfb_model(const ssd_geom &s, bool v1, const char *name, double *bytes, double *flops) {
    const double tok = (double)s.B * s.T, bht = tok * s.H, HP = (double)s.HP, GN = (double)s.G * s.N;
    const double nst = (double)s.B * s.nc * s.H * s.PN, P = SF_P, N = (double)(s.PN / SF_P);
    const double qt = (s.Q + SF_TILE - 1) / SF_TILE, np2 = qt * (qt + 1) / 2, sq = (double)SF_TILE * SF_TILE;
    const double chunks = (double)s.B * s.nc, hpg = s.hpg, dsc = chunks * s.G * np2 * sq * 2;
    double by = 0.0, fl = 0.0;
    if (strstr(name, "decay chain")) {
        by = bht * 4 * (7 + (!v1 ? np2 / qt : 0)) + tok * s.H * 4 + (v1 ? 2 * nst * 4 : 0);
    } else if (strstr(name, "decay")) {
        by = tok * s.H * 2 + 2 * bht * 4;
    } else if (strstr(name, "chunk dstates")) { /* v1 */
        by = tok * (HP + GN) * 2 + bht * 4 + nst * 4, fl = 2 * bht * P * N;
    } else if (strstr(name, "dstate scan")) { /* dy, C, cum, S_in fp32 in; bf16 dS_out, bf16 S_in copy, partials out */
        by = tok * (HP + GN) * 2 + bht * 4 + nst * 4 + 2 * nst * 2 + chunks * s.H * (N / 16) * 4, fl = 2 * bht * P * N;
    } else if (strstr(name, "state passing")) {
        by = 2 * nst * 4; /* v1 */
    } else if (strstr(name, "tiles")) { /* v5 */
        by = tok * (3 * HP + 3 * GN) * 2 + nst * 2 + dsc + bht * 4 * (6 + np2 / qt);
        fl = chunks * s.G * (np2 * 4 * sq * N + hpg * (qt * 4 * SF_TILE * P * N + np2 * 4 * sq * P));
    } else if (strstr(name, "columns")) { /* v1 */
        by = tok * (2 * HP + 3 * GN) * 2 + nst * 4 + bht * 4 * 5 + tok * HP * 2;
        fl = chunks * s.G * hpg * (qt * 4 * SF_TILE * P * N + np2 * (4 * sq * N + 4 * sq * P));
    } else if (strstr(name, "rows")) {
        if (!v1) { /* S_in as the scan's bf16 copy */
            by = tok * (HP + 3 * GN) * 2 + nst * 2 + dsc + 2 * bht * 4;
            fl = 2 * bht * P * N + chunks * s.G * np2 * 2 * sq * N;
        } else {
            by = tok * (2 * HP + 3 * GN) * 2 + nst * 4 + 5 * bht * 4;
            fl = 2 * bht * P * N + chunks * s.G * hpg * np2 * (4 * sq * N + 2 * sq * P);
        }
    } else {
        by = chunks * s.H * 3 * 4;
    }
    *bytes = by, *flops = fl;
}

static int sfb_cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* Runs the backward (v5, or v1 for chunks over 256) once to warm up, then `reps`
 * times (≤ 32) with an event after every kernel. Returns the kernel count n (≤ max): names[k], the
 * median ms[k], and the model's bytes[k], flops[k]; 0 where nothing ran (error recorded in hk). Test
 * only (the library never calls it); not thread-safe. Declared by the test itself. */
extern "C" int hk_cuda_ssd_fast_bwd_profile(hk_backend *hk, int reps, int max, const char **names,
                                            double *ms, double *bytes, double *flops, void *dxbc, void *ddt,
                                            void *ddt_bias, void *dA_log, void *dDskip, const void *dy,
                                            const void *states, const void *xbc, const void *dt, const void *dt_bias,
                                            const void *A_log, const void *Dskip, hk_ssd_dims d) {
#ifdef SF_EMU
    (void)hk, (void)reps, (void)max, (void)names, (void)ms, (void)bytes, (void)flops, (void)dxbc;
    (void)ddt, (void)ddt_bias, (void)dA_log, (void)dDskip, (void)dy, (void)states, (void)xbc, (void)dt;
    (void)dt_bias, (void)A_log, (void)Dskip, (void)d;
    return 0;
#else
    if (reps < 1 || reps > 32 || max < 1 || hk->act != HK_BF16) return 0;
    SfbProf prof;
    for (int k = 0; k <= SFB_PROF_MAX; k++)
        if (hk_cuda_record(hk, cudaEventCreate(&prof.ev[k]), "ssd_fast_bwd profile events")) return 0;
    static float t[SFB_PROF_MAX][32];
    cudaStream_t st = hk_cuda_stream(hk);
    int n = 0;
    for (int r = -1; r < reps; r++) {
        prof.n = 0;
        sfb_prof = &prof;
        cudaEventRecord(prof.ev[0], st);
        hk_cuda_ssd_fast_bwd(hk, dxbc, ddt, ddt_bias, dA_log, dDskip, dy, states, xbc, dt, dt_bias, A_log, Dskip, d);
        sfb_prof = nullptr;
        n = prof.n;
        if (n == 0 || hk_cuda_record(hk, cudaEventSynchronize(prof.ev[n]), "ssd_fast_bwd profile")) {
            n = 0;
            break;
        }
        for (int k = 0; r >= 0 && k < n; k++) cudaEventElapsedTime(&t[k][r], prof.ev[k], prof.ev[k + 1]);
    }
    const ssd_geom s = ssd_make(d);
    const bool v1 = sf_bwd_uses_v1(s); /* the version that ran */
    for (int k = 0; k <= SFB_PROF_MAX; k++) cudaEventDestroy(prof.ev[k]);
    if (n > max) n = max;
    for (int k = 0; k < n; k++) {
        qsort(t[k], (size_t)reps, sizeof(float), sfb_cmp_float);
        ms[k] = reps & 1 ? t[k][reps / 2] : 0.5 * (t[k][reps / 2 - 1] + t[k][reps / 2]);
        names[k] = prof.name[k];
        sfb_model(s, v1, prof.name[k], &bytes[k], &flops[k]);
    }
    return n;
#endif
}
