/* kernels/cuda/ssd.cu — the Mamba-2 SSD scan in chunked form, forward and backward.
 *
 * Conventions. xbc row n = b*T + t is [x (H·P) | B (G·N) | C (G·N)]; head h reads
 * group g = h / (H/G). Δ_t = softplus(dt_t + dt_bias), A = −exp(A_log), a_t = Δ_t·A.
 * In chunk c (rows t0 .. t0+L−1) cum_i = a_{t0} + … + a_{t0+i} (inclusive); every
 * decay is exp(cum_i − cum_j) with j ≤ i, an exponent ≤ 0. The same formulas as the
 * CPU reference (kernels/cpu/ssd.c):
 *   y_i   = Σ_{j≤i} (C_i·B_j) e^{cum_i−cum_j} Δ_j x_j + e^{cum_i} S_in C_i + D x_i
 *   S_out = e^{cum_last} S_in + Σ_j e^{cum_last−cum_j} Δ_j x_j B_jᵀ
 * states R [B, nchunks, H, P, N] holds each chunk's S_in (written by fwd, read by bwd).
 *
 * Kernels (fp32 arithmetic, A-typed loads widened once into shared memory):
 *   decay        per (b, h, chunk): Δ and cum into scratch
 *   chunk_state  per (b, h, chunk, 64×64 piece of P×N): the chunk's own state Σ_j w_j x_j B_jᵀ
 *                (bwd: the chunk's own dS contribution Σ_i e^{cum_i} dy_i C_iᵀ)
 *   state_pass   per (b, h, 256 state entries): the sequential pass over chunks
 *                (fwd: S_in of every chunk; bwd: dS_out of every chunk, in reverse)
 *   chunk_out    per (b, h, chunk, 64 rows): intra-chunk scores tile by tile + inter-chunk term
 *   bwd_cols     per (b, group, chunk, 64 rows j): dx_j, dB_j (summed over the group's heads in
 *                the block, so no atomics), and the j-side decay gradients
 *   bwd_rows     per (b, group, chunk, 64 rows i): dC_i and the i-side decay gradients
 *   bwd_final    per (b, h, chunk): reverse cumsum of dcum, softplus chain rule → ddt; per-chunk
 *                partials of ddt_bias, dA_log, dDskip, summed by param_sum in a fixed order.
 * Everything is deterministic. Shapes: P ≤ 128 and the shared-memory tiles must fit
 * the device (N up to about 256 at P = 64); anything else records HLAB_EUNSUPPORTED.
 */
#include <math.h>

#include "kernels/cuda/ssd_common.cuh"

#define SSD_TILE 64
#define SSD_THREADS 256
#define SSD_MAXP 128

/* Rows [r0, r0+64) ∩ [0, L) of a strided A matrix (cols columns) into smem [64][ld], zeros elsewhere. */
template <typename T>
__device__ __forceinline__ void ssd_load(float *s, int lds, const T *g, size_t stride, int r0, int L, int cols) {
    for (int idx = threadIdx.x; idx < SSD_TILE * cols; idx += blockDim.x) {
        const int r = idx / cols, c = idx % cols;
        s[r * lds + c] = r0 + r < L ? ld(g[(size_t)(r0 + r) * stride + c]) : 0.0f;
    }
}

/* acc[k] = Σ_{n<len} a[n] · b[(sub + 4k)·ldb + n] for the 16 columns sub + 4k of a 64-row tile:
 * a[n] is loaded once for 16 products (the columns' rows sit in distinct banks). */
__device__ __forceinline__ void ssd_dot16(float acc[16], const float *a, const float *b, int ldb, int sub, int len) {
#pragma unroll
    for (int k = 0; k < 16; k++) acc[k] = 0.0f;
    const float *bs = b + sub * ldb;
    for (int n = 0; n < len; n++) {
        const float av = a[n];
#pragma unroll
        for (int k = 0; k < 16; k++) acc[k] += av * bs[4 * k * ldb + n];
    }
}

/* ---- decay: Δ and the chunk-inclusive cumsum of Δ·A ---------------------------------- */

template <typename T>
__global__ void ssd_decay_kernel(float *delta, float *cum, const T *dt, const float *dt_bias, const float *A_log,
                                 ssd_geom s) {
    const int c = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    if (threadIdx.x != 0) return;
    const int t0 = c * s.Q, L = min(s.Q, s.T - t0);
    const float A = -expf(A_log[h]), bias = dt_bias[h];
    float run = 0.0f;
    const size_t o = ((size_t)b * s.H + h) * s.T + t0;
    for (int i = 0; i < L; i++) {
        const float dl = ssd_softplus(ld(dt[((size_t)b * s.T + t0 + i) * s.H + h]) + bias);
        run += dl * A;
        delta[o + i] = dl;
        cum[o + i] = run;
    }
}

/* ---- chunk_state: out[b,c,h] (P×N) = Σ_{j<L} wt_j X_j ⊗ Y_j ------------------------------
 * fwd: wt_j = e^{cum_last − cum_j} Δ_j, X = x, Y = B.  bwd: wt_j = e^{cum_j}, X = dy, Y = C. */

template <typename T, bool BWD>
__global__ void __launch_bounds__(SSD_THREADS)
    ssd_chunk_state_kernel(float *out, const T *X, size_t xstride, const T *Y, size_t ystride, const float *delta,
                           const float *cum, ssd_geom s) {
    __shared__ float Xs[32][SSD_TILE + 1], Ys[32][SSD_TILE + 1], ws[32];
    const int ptiles = (s.P + SSD_TILE - 1) / SSD_TILE, ntiles = (s.N + SSD_TILE - 1) / SSD_TILE;
    const int c = blockIdx.x / (ptiles * ntiles), pt = (blockIdx.x / ntiles) % ptiles, nt = blockIdx.x % ntiles;
    const int h = blockIdx.y, b = blockIdx.z, g = h / s.hpg;
    const int t0 = c * s.Q, L = min(s.Q, s.T - t0), p0 = pt * SSD_TILE, n0 = nt * SSD_TILE;
    const size_t ob = ((size_t)b * s.H + h) * s.T + t0;
    const float last = cum[ob + L - 1];
    const T *Xb = X + ((size_t)b * s.T + t0) * xstride + (size_t)h * s.P;
    const T *Yb = Y + ((size_t)b * s.T + t0) * ystride + (BWD ? s.HP + (size_t)(s.G + g) * s.N : s.HP + (size_t)g * s.N);
    const int tp = threadIdx.x / 16, tn = threadIdx.x % 16;
    float acc[4][4] = {};
    for (int j0 = 0; j0 < L; j0 += 32) {
        __syncthreads();
        for (int idx = threadIdx.x; idx < 32 * SSD_TILE; idx += SSD_THREADS) {
            const int r = idx / SSD_TILE, k = idx % SSD_TILE, j = j0 + r;
            Xs[r][k] = j < L && p0 + k < s.P ? ld(Xb[(size_t)j * xstride + p0 + k]) : 0.0f;
            Ys[r][k] = j < L && n0 + k < s.N ? ld(Yb[(size_t)j * ystride + n0 + k]) : 0.0f;
        }
        if (threadIdx.x < 32) {
            const int j = j0 + threadIdx.x;
            ws[threadIdx.x] = j < L ? (BWD ? expf(cum[ob + j]) : expf(last - cum[ob + j]) * delta[ob + j]) : 0.0f;
        }
        __syncthreads();
        for (int r = 0; r < 32; r++) {
            const float wr = ws[r];
            float xv[4], yv[4];
#pragma unroll
            for (int a = 0; a < 4; a++) xv[a] = Xs[r][tp + 16 * a] * wr, yv[a] = Ys[r][tn + 16 * a];
#pragma unroll
            for (int a = 0; a < 4; a++)
#pragma unroll
                for (int e = 0; e < 4; e++) acc[a][e] += xv[a] * yv[e];
        }
    }
    float *o = out + (((size_t)b * s.nc + c) * s.H + h) * s.PN;
#pragma unroll
    for (int a = 0; a < 4; a++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int p = p0 + tp + 16 * a, n = n0 + tn + 16 * e;
            if (p < s.P && n < s.N) o[(size_t)p * s.N + n] = acc[a][e];
        }
}

/* ---- state_pass: fwd S_in[c] = S; S = e^{last_c} S + local[c].  bwd (reverse): dS_out[c] = dS;
 * dS = e^{last_c} dS + local[c]. */
template <bool BWD>
__global__ void ssd_state_pass_kernel(float *dst, const float *local, const float *cum, ssd_geom s) {
    const size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int h = blockIdx.y, b = blockIdx.z;
    if (e >= s.PN) return;
    float S = 0.0f;
    for (int k = 0; k < s.nc; k++) {
        const int c = BWD ? s.nc - 1 - k : k;
        const int t0 = c * s.Q, L = min(s.Q, s.T - t0);
        const size_t off = (((size_t)b * s.nc + c) * s.H + h) * s.PN + e;
        dst[off] = S;
        S = expf(cum[((size_t)b * s.H + h) * s.T + t0 + L - 1]) * S + local[off];
    }
}

/* ---- chunk_out ------------------------------------------------------------------------ */

static size_t ssd_out_smem(const ssd_geom &s) {
    return sizeof(float) * ((size_t)SSD_TILE * (2 * (s.N + 1) + (s.P + 1) + SSD_TILE + 1) + 3 * SSD_TILE);
}

template <typename T>
__global__ void __launch_bounds__(SSD_THREADS)
    ssd_chunk_out_kernel(T *y, const float *states, const T *xbc, const float *delta, const float *cum,
                         const float *Dskip, ssd_geom s) {
    extern __shared__ float sm[];
    const int ldn = s.N + 1, ldp = s.P + 1, ldt = SSD_TILE + 1;
    float *Cs = sm, *Bs = Cs + SSD_TILE * ldn, *Xs = Bs + SSD_TILE * ldn, *Sc = Xs + SSD_TILE * ldp;
    float *cum_i = Sc + SSD_TILE * ldt, *cum_j = cum_i + SSD_TILE, *dl_j = cum_j + SSD_TILE;
    const int itiles = (s.Q + SSD_TILE - 1) / SSD_TILE;
    const int c = blockIdx.x / itiles, it = blockIdx.x % itiles, h = blockIdx.y, b = blockIdx.z, g = h / s.hpg;
    const int t0 = c * s.Q, L = min(s.Q, s.T - t0), i0 = it * SSD_TILE;
    if (i0 >= L) return;
    const size_t ob = ((size_t)b * s.H + h) * s.T + t0;
    const T *rows = xbc + ((size_t)b * s.T + t0) * s.W;
    const int r = threadIdx.x / 4, sub = threadIdx.x % 4;
    ssd_load(Cs, ldn, rows + s.HP + (size_t)(s.G + g) * s.N, s.W, i0, L, s.N);
    if (threadIdx.x < SSD_TILE) cum_i[threadIdx.x] = i0 + threadIdx.x < L ? cum[ob + i0 + threadIdx.x] : 0.0f;
    float acc[SSD_MAXP / 4];
#pragma unroll
    for (int k = 0; k < SSD_MAXP / 4; k++) acc[k] = 0.0f;
    for (int j0 = 0; j0 <= i0; j0 += SSD_TILE) {
        __syncthreads();
        ssd_load(Bs, ldn, rows + s.HP + (size_t)g * s.N, s.W, j0, L, s.N);
        ssd_load(Xs, ldp, rows + (size_t)h * s.P, s.W, j0, L, s.P);
        if (threadIdx.x < SSD_TILE) {
            const int j = j0 + threadIdx.x;
            cum_j[threadIdx.x] = j < L ? cum[ob + j] : 0.0f;
            dl_j[threadIdx.x] = j < L ? delta[ob + j] : 0.0f;
        }
        __syncthreads();
        float cb[16];
        ssd_dot16(cb, Cs + r * ldn, Bs, ldn, sub, s.N);
#pragma unroll
        for (int k = 0; k < SSD_TILE / 4; k++) {
            const int jj = sub + 4 * k, i = i0 + r, j = j0 + jj;
            Sc[r * ldt + jj] = j <= i && j < L && i < L ? cb[k] * expf(cum_i[r] - cum_j[jj]) * dl_j[jj] : 0.0f;
        }
        __syncthreads();
        for (int jj = 0; jj < SSD_TILE; jj++) {
            const float m = Sc[r * ldt + jj];
#pragma unroll
            for (int k = 0; k < SSD_MAXP / 4; k++)
                if (sub + 4 * k < s.P) acc[k] += m * Xs[jj * ldp + sub + 4 * k];
        }
    }
    /* inter-chunk: e^{cum_i} Σ_n C_i[n] S_in[p][n], S_in streamed 64 state rows at a time through Bs */
    const float *S = states + (((size_t)b * s.nc + c) * s.H + h) * s.PN;
    float inter[SSD_MAXP / 4];
#pragma unroll
    for (int k = 0; k < SSD_MAXP / 4; k++) inter[k] = 0.0f;
    for (int p0 = 0; p0 < s.P; p0 += SSD_TILE) {
        __syncthreads();
        for (int idx = threadIdx.x; idx < SSD_TILE * s.N; idx += SSD_THREADS) {
            const int pp = idx / s.N, n = idx % s.N;
            Bs[pp * ldn + n] = p0 + pp < s.P ? S[(size_t)(p0 + pp) * s.N + n] : 0.0f;
        }
        __syncthreads();
        float v[16]; /* v[k] = C_i · S_in[p0 + sub + 4k] */
        ssd_dot16(v, Cs + r * ldn, Bs, ldn, sub, s.N);
#pragma unroll
        for (int k = 0; k < SSD_MAXP / 4; k++) {
            const int p = sub + 4 * k;
            if (p >= p0 && p < p0 + SSD_TILE && p < s.P) inter[k] = v[k % 16];
        }
    }
    const int i = i0 + r;
    if (i >= L) return;
    const float ei = expf(cum_i[r]), Dh = Dskip[h];
    const T *xi = rows + (size_t)i * s.W + (size_t)h * s.P;
    T *yi = y + ((size_t)b * s.T + t0 + i) * s.HP + (size_t)h * s.P;
#pragma unroll
    for (int k = 0; k < SSD_MAXP / 4; k++) {
        const int p = sub + 4 * k;
        if (p < s.P) yi[p] = st<T>(acc[k] + ei * inter[k] + Dh * ld(xi[p]));
    }
}

/* ---- backward: the j side (columns of the score tile) ----------------------------------- */

static size_t ssd_cols_smem(const ssd_geom &s) {
    return sizeof(float) * ((size_t)SSD_TILE * (3 * (s.N + 1) + 2 * (s.P + 1) + 3 * (SSD_TILE + 1)) + 4 * SSD_TILE);
}

/* Score tiles for rows ii (of Ci/dYi) and columns jj (of Bj/Xj), thread (r, jj = sub + 4k):
 * E = e^{cum_i − cum_j} on the visible triangle; M = CB E Δ_j; dscore = dM E Δ_j; G = dM CB E. */
__device__ __forceinline__ void ssd_tiles(float *Mt, float *dSt, float *Gt, const float *Ci, const float *Bj,
                                          const float *dYi, const float *Xj, const float *cum_i, const float *cum_j,
                                          const float *dl_j, int i0, int j0, int L, const ssd_geom &s, float *rowG) {
    const int ldn = s.N + 1, ldp = s.P + 1, ldt = SSD_TILE + 1;
    const int r = threadIdx.x / 4, sub = threadIdx.x % 4;
    float cbv[16], dmv[16];
    ssd_dot16(cbv, Ci + r * ldn, Bj, ldn, sub, s.N);
    ssd_dot16(dmv, dYi + r * ldp, Xj, ldp, sub, s.P);
#pragma unroll
    for (int k = 0; k < SSD_TILE / 4; k++) {
        const int jj = sub + 4 * k, i = i0 + r, j = j0 + jj;
        float m = 0.0f, ds = 0.0f, gg = 0.0f;
        if (j <= i && i < L) {
            const float cb = cbv[k], dm = dmv[k];
            const float e = expf(cum_i[r] - cum_j[jj]);
            m = cb * e * dl_j[jj];
            ds = dm * e * dl_j[jj];
            gg = dm * cb * e;
            *rowG += gg * dl_j[jj];
        }
        if (Mt) Mt[r * ldt + jj] = m;
        dSt[r * ldt + jj] = ds;
        if (Gt) Gt[r * ldt + jj] = gg;
    }
}

template <typename T>
__global__ void __launch_bounds__(SSD_THREADS)
    ssd_bwd_cols_kernel(T *dxbc, float *ddelta, float *dcum_j, float *rlast, const T *dy, const float *dSout,
                        const T *xbc, const float *delta, const float *cum, const float *Dskip, ssd_geom s) {
    extern __shared__ float sm[];
    const int ldn = s.N + 1, ldp = s.P + 1, ldt = SSD_TILE + 1;
    float *Bs = sm, *Cs = Bs + SSD_TILE * ldn, *dBacc = Cs + SSD_TILE * ldn, *Sp = Cs; /* Cs is free after the i loop */
    float *Xs = dBacc + SSD_TILE * ldn, *dYs = Xs + SSD_TILE * ldp;
    float *Mt = dYs + SSD_TILE * ldp, *dSt = Mt + SSD_TILE * ldt, *Gt = dSt + SSD_TILE * ldt;
    float *cum_i = Gt + SSD_TILE * ldt, *cum_j = cum_i + SSD_TILE, *dl_j = cum_j + SSD_TILE, *dl_i = dl_j + SSD_TILE;
    const int jtiles = (s.Q + SSD_TILE - 1) / SSD_TILE;
    const int c = blockIdx.x / jtiles, jt = blockIdx.x % jtiles, g = blockIdx.y, b = blockIdx.z;
    const int t0 = c * s.Q, L = min(s.Q, s.T - t0), j0 = jt * SSD_TILE;
    if (j0 >= L) return;
    (void)dl_i;
    const T *rows = xbc + ((size_t)b * s.T + t0) * s.W;
    const int r = threadIdx.x / 4, sub = threadIdx.x % 4, j = j0 + r;
    ssd_load(Bs, ldn, rows + s.HP + (size_t)g * s.N, s.W, j0, L, s.N);
    for (int idx = threadIdx.x; idx < SSD_TILE * ldn; idx += SSD_THREADS) dBacc[idx] = 0.0f;
    for (int h = g * s.hpg; h < (g + 1) * s.hpg; h++) {
        const size_t ob = ((size_t)b * s.H + h) * s.T + t0;
        const float last = cum[ob + L - 1];
        __syncthreads();
        ssd_load(Xs, ldp, rows + (size_t)h * s.P, s.W, j0, L, s.P);
        if (threadIdx.x < SSD_TILE) {
            const int jj = j0 + threadIdx.x;
            cum_j[threadIdx.x] = jj < L ? cum[ob + jj] : 0.0f;
            dl_j[threadIdx.x] = jj < L ? delta[ob + jj] : 0.0f;
        }
        float accX[SSD_MAXP / 4];
#pragma unroll
        for (int k = 0; k < SSD_MAXP / 4; k++) accX[k] = 0.0f;
        float colG = 0.0f, unused = 0.0f;
        for (int i0 = j0; i0 < L; i0 += SSD_TILE) {
            __syncthreads();
            ssd_load(Cs, ldn, rows + s.HP + (size_t)(s.G + g) * s.N, s.W, i0, L, s.N);
            ssd_load(dYs, ldp, dy + ((size_t)b * s.T + t0) * s.HP + (size_t)h * s.P, s.HP, i0, L, s.P);
            if (threadIdx.x < SSD_TILE) cum_i[threadIdx.x] = i0 + threadIdx.x < L ? cum[ob + i0 + threadIdx.x] : 0.0f;
            __syncthreads();
            ssd_tiles(Mt, dSt, Gt, Cs, Bs, dYs, Xs, cum_i, cum_j, dl_j, i0, j0, L, s, &unused);
            __syncthreads();
            /* thread row r is now the column j: dX_j += Σ_i M_ij dY_i; dB_j += Σ_i dscore_ij C_i; colsum_j */
            for (int ii = 0; ii < SSD_TILE; ii++) {
                const float m = Mt[ii * ldt + r];
#pragma unroll
                for (int k = 0; k < SSD_MAXP / 4; k++)
                    if (sub + 4 * k < s.P) accX[k] += m * dYs[ii * ldp + sub + 4 * k];
            }
            for (int nb = 0; nb < s.N; nb += 128) { /* dB in registers, 128 state columns at a time */
                float acc[32];
#pragma unroll
                for (int k = 0; k < 32; k++) acc[k] = 0.0f;
                for (int ii = 0; ii < SSD_TILE; ii++) {
                    const float ds = dSt[ii * ldt + r];
#pragma unroll
                    for (int k = 0; k < 32; k++)
                        if (nb + sub + 4 * k < s.N) acc[k] += ds * Cs[ii * ldn + nb + sub + 4 * k];
                }
#pragma unroll
                for (int k = 0; k < 32; k++)
                    if (nb + sub + 4 * k < s.N) dBacc[r * ldn + nb + sub + 4 * k] += acc[k];
            }
            for (int ii = sub; ii < SSD_TILE; ii += 4) colG += Gt[ii * ldt + r];
        }
        /* chunk-state path: U_j = dS B_j (p), dX_j += w_j U_j, dw_j = x_j·U_j, dB_j += w_j Σ_p x_j[p] dS[p] */
        const float *dS = dSout + (((size_t)b * s.nc + c) * s.H + h) * s.PN;
        const float wj = j < L ? expf(last - cum_j[r]) * dl_j[r] : 0.0f;
        float dw = 0.0f;
        for (int p0 = 0; p0 < s.P; p0 += SSD_TILE) {
            __syncthreads();
            for (int idx = threadIdx.x; idx < SSD_TILE * s.N; idx += SSD_THREADS) {
                const int pp = idx / s.N, n = idx % s.N;
                Sp[pp * ldn + n] = p0 + pp < s.P ? dS[(size_t)(p0 + pp) * s.N + n] : 0.0f;
            }
            __syncthreads();
            float u[16]; /* u[k] = (dS B_j)[p0 + sub + 4k] */
            ssd_dot16(u, Bs + r * ldn, Sp, ldn, sub, s.N);
#pragma unroll
            for (int k = 0; k < SSD_MAXP / 4; k++) {
                const int p = sub + 4 * k;
                if (p >= p0 && p < p0 + SSD_TILE && p < s.P) {
                    accX[k] += wj * u[k % 16];
                    dw += Xs[r * ldp + p] * u[k % 16];
                }
            }
            const int pend = min(SSD_TILE, s.P - p0);
            for (int nb = 0; nb < s.N; nb += 128) {
                float acc[32];
#pragma unroll
                for (int k = 0; k < 32; k++) acc[k] = 0.0f;
                for (int pp = 0; pp < pend; pp++) {
                    const float xv = Xs[r * ldp + p0 + pp];
#pragma unroll
                    for (int k = 0; k < 32; k++)
                        if (nb + sub + 4 * k < s.N) acc[k] += xv * Sp[pp * ldn + nb + sub + 4 * k];
                }
#pragma unroll
                for (int k = 0; k < 32; k++)
                    if (nb + sub + 4 * k < s.N) dBacc[r * ldn + nb + sub + 4 * k] += wj * acc[k];
            }
        }
        dw += __shfl_xor_sync(0xffffffffu, dw, 1);
        dw += __shfl_xor_sync(0xffffffffu, dw, 2);
        colG += __shfl_xor_sync(0xffffffffu, colG, 1);
        colG += __shfl_xor_sync(0xffffffffu, colG, 2);
        if (j < L) {
            const float Dh = Dskip[h];
            const T *dyj = dy + ((size_t)b * s.T + t0 + j) * s.HP + (size_t)h * s.P;
            T *dxj = dxbc + ((size_t)b * s.T + t0 + j) * s.W + (size_t)h * s.P;
#pragma unroll
            for (int k = 0; k < SSD_MAXP / 4; k++) {
                const int p = sub + 4 * k;
                if (p < s.P) dxj[p] = st<T>(accX[k] + Dh * ld(dyj[p]));
            }
            if (sub == 0) {
                const float e = expf(last - cum_j[r]), w = e * dl_j[r];
                ddelta[ob + j] = dw * e + colG;
                dcum_j[ob + j] = -dw * w - colG * dl_j[r];
                rlast[ob + j] = dw * w;
            }
        }
    }
    __syncthreads();
    if (j < L) {
        T *dBj = dxbc + ((size_t)b * s.T + t0 + j) * s.W + s.HP + (size_t)g * s.N;
        for (int n = sub; n < s.N; n += 4) dBj[n] = st<T>(dBacc[r * ldn + n]);
    }
}

/* ---- backward: the i side (rows of the score tile) ---------------------------------------- */

static size_t ssd_rows_smem(const ssd_geom &s) {
    return sizeof(float) * ((size_t)SSD_TILE * (3 * (s.N + 1) + 2 * (s.P + 1) + (SSD_TILE + 1)) + 3 * SSD_TILE);
}

template <typename T>
__global__ void __launch_bounds__(SSD_THREADS)
    ssd_bwd_rows_kernel(T *dxbc, float *dcum_i, float *dDrow, const T *dy, const float *states, const T *xbc,
                        const float *delta, const float *cum, ssd_geom s) {
    extern __shared__ float sm[];
    const int ldn = s.N + 1, ldp = s.P + 1, ldt = SSD_TILE + 1;
    float *Cs = sm, *Bs = Cs + SSD_TILE * ldn, *dCacc = Bs + SSD_TILE * ldn, *Sp = Bs; /* Bs is free after the j loop */
    float *Xs = dCacc + SSD_TILE * ldn, *dYs = Xs + SSD_TILE * ldp, *dSt = dYs + SSD_TILE * ldp;
    float *cum_i = dSt + SSD_TILE * ldt, *cum_j = cum_i + SSD_TILE, *dl_j = cum_j + SSD_TILE;
    const int itiles = (s.Q + SSD_TILE - 1) / SSD_TILE;
    const int c = blockIdx.x / itiles, it = blockIdx.x % itiles, g = blockIdx.y, b = blockIdx.z;
    const int t0 = c * s.Q, L = min(s.Q, s.T - t0), i0 = it * SSD_TILE;
    if (i0 >= L) return;
    const T *rows = xbc + ((size_t)b * s.T + t0) * s.W;
    const int r = threadIdx.x / 4, sub = threadIdx.x % 4, i = i0 + r;
    ssd_load(Cs, ldn, rows + s.HP + (size_t)(s.G + g) * s.N, s.W, i0, L, s.N);
    for (int idx = threadIdx.x; idx < SSD_TILE * ldn; idx += SSD_THREADS) dCacc[idx] = 0.0f;
    for (int h = g * s.hpg; h < (g + 1) * s.hpg; h++) {
        const size_t ob = ((size_t)b * s.H + h) * s.T + t0;
        __syncthreads();
        ssd_load(dYs, ldp, dy + ((size_t)b * s.T + t0) * s.HP + (size_t)h * s.P, s.HP, i0, L, s.P);
        if (threadIdx.x < SSD_TILE) cum_i[threadIdx.x] = i0 + threadIdx.x < L ? cum[ob + i0 + threadIdx.x] : 0.0f;
        float rowG = 0.0f;
        for (int j0 = 0; j0 <= i0; j0 += SSD_TILE) {
            __syncthreads();
            ssd_load(Bs, ldn, rows + s.HP + (size_t)g * s.N, s.W, j0, L, s.N);
            ssd_load(Xs, ldp, rows + (size_t)h * s.P, s.W, j0, L, s.P);
            if (threadIdx.x < SSD_TILE) {
                const int jj = j0 + threadIdx.x;
                cum_j[threadIdx.x] = jj < L ? cum[ob + jj] : 0.0f;
                dl_j[threadIdx.x] = jj < L ? delta[ob + jj] : 0.0f;
            }
            __syncthreads();
            ssd_tiles(NULL, dSt, NULL, Cs, Bs, dYs, Xs, cum_i, cum_j, dl_j, i0, j0, L, s, &rowG);
            __syncthreads();
            for (int nb = 0; nb < s.N; nb += 128) {
                float acc[32];
#pragma unroll
                for (int k = 0; k < 32; k++) acc[k] = 0.0f;
                for (int jj = 0; jj < SSD_TILE; jj++) {
                    const float ds = dSt[r * ldt + jj];
#pragma unroll
                    for (int k = 0; k < 32; k++)
                        if (nb + sub + 4 * k < s.N) acc[k] += ds * Bs[jj * ldn + nb + sub + 4 * k];
                }
#pragma unroll
                for (int k = 0; k < 32; k++)
                    if (nb + sub + 4 * k < s.N) dCacc[r * ldn + nb + sub + 4 * k] += acc[k];
            }
        }
        /* inter-chunk: Qm_i = dY_i S_in (n); dC_i += e_i Qm_i; dcum_i += e_i C_i·Qm_i */
        const float *S = states + (((size_t)b * s.nc + c) * s.H + h) * s.PN;
        const float ei = i < L ? expf(cum_i[r]) : 0.0f;
        float dc = 0.0f;
        for (int p0 = 0; p0 < s.P; p0 += SSD_TILE) {
            __syncthreads();
            for (int idx = threadIdx.x; idx < SSD_TILE * s.N; idx += SSD_THREADS) {
                const int pp = idx / s.N, n = idx % s.N;
                Sp[pp * ldn + n] = p0 + pp < s.P ? S[(size_t)(p0 + pp) * s.N + n] : 0.0f;
            }
            __syncthreads();
            const int pend = min(SSD_TILE, s.P - p0);
            for (int nb = 0; nb < s.N; nb += 128) {
                float acc[32];
#pragma unroll
                for (int k = 0; k < 32; k++) acc[k] = 0.0f;
                for (int pp = 0; pp < pend; pp++) {
                    const float dv = dYs[r * ldp + p0 + pp];
#pragma unroll
                    for (int k = 0; k < 32; k++)
                        if (nb + sub + 4 * k < s.N) acc[k] += dv * Sp[pp * ldn + nb + sub + 4 * k];
                }
#pragma unroll
                for (int k = 0; k < 32; k++) {
                    const int n = nb + sub + 4 * k;
                    if (n < s.N) {
                        dCacc[r * ldn + n] += ei * acc[k];
                        dc += Cs[r * ldn + n] * ei * acc[k];
                    }
                }
            }
        }
        float dd = 0.0f;
        if (i < L) {
            const T *xi = rows + (size_t)i * s.W + (size_t)h * s.P;
            for (int p = sub; p < s.P; p += 4) dd += dYs[r * ldp + p] * ld(xi[p]);
        }
#pragma unroll
        for (int o = 1; o <= 2; o <<= 1) {
            dc += __shfl_xor_sync(0xffffffffu, dc, o);
            rowG += __shfl_xor_sync(0xffffffffu, rowG, o);
            dd += __shfl_xor_sync(0xffffffffu, dd, o);
        }
        if (i < L && sub == 0) {
            dcum_i[ob + i] = dc + rowG;
            dDrow[ob + i] = dd;
        }
    }
    __syncthreads();
    if (i < L) {
        T *dCi = dxbc + ((size_t)b * s.T + t0 + i) * s.W + s.HP + (size_t)(s.G + g) * s.N;
        for (int n = sub; n < s.N; n += 4) dCi[n] = st<T>(dCacc[r * ldn + n]);
    }
}

/* ---- backward: per chunk and head, the decay chain rule → ddt and parameter partials ------- */

template <typename T>
__global__ void ssd_bwd_final_kernel(T *ddt, float *partial, const float *dSout, const float *states,
                                     const float *ddelta, const float *dcum_j, const float *dcum_i, const float *rlast,
                                     const float *dDrow, const T *dt, const float *dt_bias, const float *A_log,
                                     const float *delta, const float *cum, ssd_geom s) {
    const int c = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int t0 = c * s.Q, L = min(s.Q, s.T - t0);
    const size_t so = (((size_t)b * s.nc + c) * s.H + h) * s.PN, ob = ((size_t)b * s.H + h) * s.T + t0;
    float v = 0.0f;
    for (size_t e = threadIdx.x; e < s.PN; e += blockDim.x) v += dSout[so + e] * states[so + e];
    v = block_sum(v);
    if (threadIdx.x != 0) return;
    const float A = -expf(A_log[h]), bias = dt_bias[h];
    float extra = expf(cum[ob + L - 1]) * v;
    for (int j = 0; j < L; j++) extra += rlast[ob + j];
    float da = 0.0f, dA = 0.0f, dbias = 0.0f, dD = 0.0f;
    for (int i = L - 1; i >= 0; i--) {
        const float dcum = dcum_j[ob + i] + dcum_i[ob + i] + (i == L - 1 ? extra : 0.0f);
        da += dcum;
        dA += da * delta[ob + i];
        const size_t n = ((size_t)b * s.T + t0 + i) * s.H + h;
        const float du = (ddelta[ob + i] + da * A) * ssd_sigmoid(ld(dt[n]) + bias);
        ddt[n] = st<T>(du);
        dbias += du;
        dD += dDrow[ob + i];
    }
    float *pp = partial + (((size_t)h * s.B + b) * s.nc + c) * 3;
    pp[0] = dbias, pp[1] = dA * A, pp[2] = dD;
}

/* ---- host ---------------------------------------------------------------------------------- */

static int ssd_check(hk_backend *hk, hk_ssd_dims d, const char *op, size_t smem) {
    if (d.B <= 0 || d.T <= 0 || d.H <= 0 || d.P <= 0 || d.N <= 0 || d.G <= 0 || d.chunk <= 0 || d.H % d.G != 0 ||
        d.B > 65535 || d.H > 65535) {
        hk_cuda_fail(hk, HLAB_EINVAL,
                     "%s: bad dims B=%d T=%d H=%d P=%d G=%d N=%d chunk=%d (expected all > 0, H %% G == 0, B, H <= 65535)",
                     op, d.B, d.T, d.H, d.P, d.G, d.N, d.chunk);
        return 0;
    }
    int dev = 0, optin = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (d.P > SSD_MAXP || smem > (size_t)optin) {
        hk_cuda_fail(hk, HLAB_EUNSUPPORTED,
                     "%s: SSD shape P=%d N=%d is not supported on CUDA (needs P <= %d and %zu bytes of shared memory "
                     "per block, the device has %d)",
                     op, d.P, d.N, SSD_MAXP, smem, optin);
        return 0;
    }
    return 1;
}

template <typename K> static int ssd_smem_attr(hk_backend *hk, K kernel, size_t smem) {
    return !hk_cuda_record(hk, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem),
                           "ssd shared memory");
}

void hk_cuda_ssd_fwd(hk_backend *hk, void *y, void *states, const void *xbc, const void *dt, const void *dt_bias,
                     const void *A_log, const void *Dskip, hk_ssd_dims d) {
    const ssd_geom s = ssd_make(d);
    const size_t smem = ssd_out_smem(s);
    if (!ssd_check(hk, d, "ssd_fwd", smem)) return;
    const size_t bht = (size_t)s.B * s.H * s.T, nst = (size_t)s.B * s.nc * s.H * s.PN;
    float *scr = (float *)hk_cuda_scratch(hk, sizeof(float) * (2 * bht + nst));
    if (!scr) return;
    float *delta = scr, *cum = delta + bht, *local = cum + bht;
    cudaStream_t st_ = hk_cuda_stream(hk);
    const int pn_tiles = ((s.P + SSD_TILE - 1) / SSD_TILE) * ((s.N + SSD_TILE - 1) / SSD_TILE);
    const int qtiles = (s.Q + SSD_TILE - 1) / SSD_TILE;
    HK_DISPATCH_ACT(hk, A, {
        ssd_decay_kernel<A><<<dim3(s.nc, s.H, s.B), 32, 0, st_>>>(delta, cum, (const A *)dt, (const float *)dt_bias,
                                                                  (const float *)A_log, s);
        if (hk_cuda_check_launch(hk, "ssd_fwd decay")) return;
        ssd_chunk_state_kernel<A, false><<<dim3(s.nc * pn_tiles, s.H, s.B), SSD_THREADS, 0, st_>>>(
            local, (const A *)xbc, s.W, (const A *)xbc, s.W, delta, cum, s);
        if (hk_cuda_check_launch(hk, "ssd_fwd chunk states")) return;
        ssd_state_pass_kernel<false><<<dim3((unsigned)((s.PN + 255) / 256), s.H, s.B), 256, 0, st_>>>(
            (float *)states, local, cum, s);
        if (hk_cuda_check_launch(hk, "ssd_fwd state passing")) return;
        if (!ssd_smem_attr(hk, ssd_chunk_out_kernel<A>, smem)) return;
        ssd_chunk_out_kernel<A><<<dim3(s.nc * qtiles, s.H, s.B), SSD_THREADS, smem, st_>>>(
            (A *)y, (const float *)states, (const A *)xbc, delta, cum, (const float *)Dskip, s);
    });
    hk_cuda_check_launch(hk, "ssd_fwd output");
}

void hk_cuda_ssd_bwd(hk_backend *hk, void *dxbc, void *ddt, void *ddt_bias, void *dA_log, void *dDskip,
                     const void *dy, const void *states, const void *xbc, const void *dt, const void *dt_bias,
                     const void *A_log, const void *Dskip, hk_ssd_dims d) {
    const ssd_geom s = ssd_make(d);
    const size_t smem_c = ssd_cols_smem(s), smem_r = ssd_rows_smem(s);
    if (!ssd_check(hk, d, "ssd_bwd", smem_c > smem_r ? smem_c : smem_r)) return;
    const size_t bht = (size_t)s.B * s.H * s.T, nst = (size_t)s.B * s.nc * s.H * s.PN;
    const size_t npart = (size_t)s.H * s.B * s.nc * 3;
    float *scr = (float *)hk_cuda_scratch(hk, sizeof(float) * (8 * bht + 2 * nst + npart));
    if (!scr) return;
    float *delta = scr, *cum = delta + bht, *ddelta = cum + bht, *dcum_j = ddelta + bht, *dcum_i = dcum_j + bht;
    float *rlast = dcum_i + bht, *dDrow = rlast + bht, *local = dDrow + bht + bht, *dSout = local + nst;
    float *partial = dSout + nst;
    cudaStream_t st_ = hk_cuda_stream(hk);
    const int pn_tiles = ((s.P + SSD_TILE - 1) / SSD_TILE) * ((s.N + SSD_TILE - 1) / SSD_TILE);
    const int qtiles = (s.Q + SSD_TILE - 1) / SSD_TILE;
    HK_DISPATCH_ACT(hk, A, {
        ssd_decay_kernel<A><<<dim3(s.nc, s.H, s.B), 32, 0, st_>>>(delta, cum, (const A *)dt, (const float *)dt_bias,
                                                                  (const float *)A_log, s);
        if (hk_cuda_check_launch(hk, "ssd_bwd decay")) return;
        ssd_chunk_state_kernel<A, true><<<dim3(s.nc * pn_tiles, s.H, s.B), SSD_THREADS, 0, st_>>>(
            local, (const A *)dy, s.HP, (const A *)xbc, s.W, delta, cum, s);
        if (hk_cuda_check_launch(hk, "ssd_bwd chunk dstates")) return;
        ssd_state_pass_kernel<true><<<dim3((unsigned)((s.PN + 255) / 256), s.H, s.B), 256, 0, st_>>>(dSout, local,
                                                                                                     cum, s);
        if (hk_cuda_check_launch(hk, "ssd_bwd state passing")) return;
        if (!ssd_smem_attr(hk, ssd_bwd_cols_kernel<A>, smem_c)) return;
        ssd_bwd_cols_kernel<A><<<dim3(s.nc * qtiles, s.G, s.B), SSD_THREADS, smem_c, st_>>>(
            (A *)dxbc, ddelta, dcum_j, rlast, (const A *)dy, dSout, (const A *)xbc, delta, cum, (const float *)Dskip,
            s);
        if (hk_cuda_check_launch(hk, "ssd_bwd columns")) return;
        if (!ssd_smem_attr(hk, ssd_bwd_rows_kernel<A>, smem_r)) return;
        ssd_bwd_rows_kernel<A><<<dim3(s.nc * qtiles, s.G, s.B), SSD_THREADS, smem_r, st_>>>(
            (A *)dxbc, dcum_i, dDrow, (const A *)dy, (const float *)states, (const A *)xbc, delta, cum, s);
        if (hk_cuda_check_launch(hk, "ssd_bwd rows")) return;
        ssd_bwd_final_kernel<A><<<dim3(s.nc, s.H, s.B), 256, 0, st_>>>(
            (A *)ddt, partial, dSout, (const float *)states, ddelta, dcum_j, dcum_i, rlast, dDrow, (const A *)dt,
            (const float *)dt_bias, (const float *)A_log, delta, cum, s);
        if (hk_cuda_check_launch(hk, "ssd_bwd decay chain")) return;
        ssd_param_sum_kernel<<<(s.H + 127) / 128, 128, 0, st_>>>((float *)ddt_bias, (float *)dA_log, (float *)dDskip,
                                                                 partial, s.H, s.B * s.nc);
    });
    hk_cuda_check_launch(hk, "ssd_bwd parameters");
}
