/* Host emulation of the grouped SSD forward (kernels/cuda/ssd_fast.cu, SF_EMU): every CUDA
 * thread an OS thread, __syncthreads / named barriers / warps as std::barrier, shuffles, mma and
 * ldmatrix exchanged through per-warp arrays in the PTX fragment layouts, cp.async poisoning its
 * destination at issue and copying at wait_group, dynamic shared memory NaN-poisoned per block.
 * Compared with a double-precision sequential recurrence (bf16 inputs; y is bf16).
 * Not part of the build (no GPU needed; checks index math, masks, barriers as written, fragment
 * bookkeeping and cp.async ordering; not real-hardware races, alignment faults or speed):
 *   g++ -std=c++20 -O2 -fno-strict-aliasing -pthread -DSF_EMU -Itests/cuda/emu/shim -I. -w \
 *       -o /tmp/ssd_fast_fwd_emu tests/cuda/emu/ssd_fast_fwd_emu.cpp && /tmp/ssd_fast_fwd_emu [shape]
 * (run from the repository root; the 10 shapes take a minute or two on 2 cores). */
#define SF_EMU 1
#include "kernels/cuda/common.cuh"
#include <barrier>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>
#include <functional>
thread_local dim3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
int hk_cuda_record(hk_backend *, cudaError_t, const char *) { return 0; }
void hk_cuda_fail(hk_backend *, int, const char *, ...) {}

struct Warp {
    std::barrier<> bar{32};
    uint32_t u[32][8];
    const void *addr[32];
};
struct Block {
    std::unique_ptr<std::barrier<>> all, named[16];
    std::vector<std::unique_ptr<Warp>> warps;
};
static Block *g_blk;
static std::vector<unsigned char> g_smem(232448);
unsigned char *sf_emu_smem() { return g_smem.data(); }
static inline int lane_() { return threadIdx.x & 31; }
static inline Warp &warp_() { return *g_blk->warps[threadIdx.x >> 5]; }
void __syncthreads() { g_blk->all->arrive_and_wait(); }
void __syncwarp(unsigned) { warp_().bar.arrive_and_wait(); }
void sf_emu_bar(int id, int count) {
    if (!g_blk->named[id] || (int)blockDim.x / count < 1) { fprintf(stderr, "named barrier %d not configured\n", id); abort(); }
    g_blk->named[id]->arrive_and_wait();
}
static float shfl(float v, int src, bool keep) {
    Warp &w = warp_();
    w.u[lane_()][0] = __float_as_uint(v);
    w.bar.arrive_and_wait();
    const float r = keep ? v : __uint_as_float(w.u[src][0]);
    w.bar.arrive_and_wait();
    return r;
}
float __shfl_xor_sync(unsigned, float v, int o) { return shfl(v, lane_() ^ o, false); }
float __shfl_up_sync(unsigned, float v, int d) { return shfl(v, lane_() - d, lane_() - d < 0); }
float __shfl_sync(unsigned, float v, int src) { return shfl(v, src, false); }
static float bl(uint32_t v) { return __uint_as_float(v << 16); }
static float bh(uint32_t v) { return __uint_as_float(v & 0xffff0000u); }
void sf_emu_mma(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1) {
    Warp &w = warp_();
    const int l = lane_();
    uint32_t *m = w.u[l];
    m[0] = a0, m[1] = a1, m[2] = a2, m[3] = a3, m[4] = b0, m[5] = b1;
    w.bar.arrive_and_wait();
    /* A(row, k), B(k, col) from the fragment owners: a0 (g, 2t..), a1 (g+8, 2t..), a2 (g, 2t+8..),
     * a3 (g+8, 2t+8..); b0 (k 2t.., n g), b1 (k 2t+8.., n g) */
    auto A = [&](int r, int k) {
        const int g = r & 7, t = (k & 7) >> 1, reg = (r >= 8) + 2 * (k >= 8);
        const uint32_t v = w.u[4 * g + t][reg];
        return (k & 1) ? bh(v) : bl(v);
    };
    auto B = [&](int k, int n) {
        const int t = (k & 7) >> 1, reg = 4 + (k >= 8);
        const uint32_t v = w.u[4 * n + t][reg];
        return (k & 1) ? bh(v) : bl(v);
    };
    const int g = l >> 2, t = l & 3;
    float out[4];
    for (int r = 0; r < 4; r++) {
        const int row = g + 8 * (r >= 2), col = 2 * t + (r & 1);
        double s = c[r];
        for (int k = 0; k < 16; k++) s += (double)A(row, k) * B(k, col);
        out[r] = (float)s;
    }
    w.bar.arrive_and_wait();
    for (int r = 0; r < 4; r++) c[r] = out[r];
}
void sf_emu_ldsm4(uint32_t r[4], const void *p, bool trans) {
    Warp &w = warp_();
    const int l = lane_();
    if (((uintptr_t)p & 15) != 0) { fprintf(stderr, "ldmatrix: unaligned row address\n"); abort(); }
    if ((unsigned char *)p < g_smem.data() || (unsigned char *)p + 16 > g_smem.data() + g_smem.size()) {
        fprintf(stderr, "ldmatrix: address outside shared memory\n"); abort();
    }
    w.addr[l] = p;
    w.bar.arrive_and_wait();
    for (int mi = 0; mi < 4; mi++) {
        uint16_t e[2];
        for (int q = 0; q < 2; q++) {
            int row, col;
            if (!trans) row = l >> 2, col = 2 * (l & 3) + q;
            else row = 2 * (l & 3) + q, col = l >> 2;
            memcpy(&e[q], (const uint16_t *)w.addr[mi * 8 + row] + col, 2);
        }
        r[mi] = (uint32_t)e[0] | ((uint32_t)e[1] << 16);
    }
    w.bar.arrive_and_wait();
}
struct Cp { void *dst; const void *src; int bytes; bool valid; int group; };
thread_local std::vector<Cp> t_cp;
thread_local int t_group;
void sf_emu_cp(void *dst, const void *src, int bytes, bool valid) {
    if (((uintptr_t)dst % bytes) || ((uintptr_t)src % bytes)) { fprintf(stderr, "cp.async misaligned\n"); abort(); }
    if ((unsigned char *)dst < g_smem.data() || (unsigned char *)dst + bytes > g_smem.data() + g_smem.size()) {
        fprintf(stderr, "cp.async: destination outside shared memory\n"); abort();
    }
    memset(dst, 0xff, bytes); /* in flight: NaN until waited for */
    t_cp.push_back({dst, src, bytes, valid, t_group});
}
void sf_emu_cp_commit() { t_group++; }
void sf_emu_cp_wait(int n) {
    std::vector<Cp> keep;
    for (auto &c : t_cp) {
        if (c.group < t_group - n) {
            if (c.valid) memcpy(c.dst, c.src, c.bytes);
            else memset(c.dst, 0, c.bytes);
        } else keep.push_back(c);
    }
    t_cp.swap(keep);
}

#include "kernels/cuda/ssd_fast.cu"

/* run a kernel: blocks in sequence, each block's threads as OS threads */
static void launch(dim3 grid, int threads, size_t smem, int named_count, const std::function<void()> &body) {
    if (smem > g_smem.size()) { fprintf(stderr, "smem %zu too large\n", smem); abort(); }
    gridDim = grid, blockDim = dim3(threads);
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                Block blk;
                blk.all = std::make_unique<std::barrier<>>(threads);
                if (named_count)
                    for (int i = 1; i <= threads / named_count; i++)
                        blk.named[i] = std::make_unique<std::barrier<>>(named_count);
                for (int w = 0; w < (threads + 31) / 32; w++) blk.warps.push_back(std::make_unique<Warp>());
                g_blk = &blk;
                memset(g_smem.data(), 0xff, g_smem.size());
                std::vector<std::thread> th;
                for (int t = 0; t < threads; t++)
                    th.emplace_back([&, t, x, y, z] {
                        threadIdx = dim3(t), blockIdx = dim3(x, y, z);
                        t_cp.clear();
                        t_group = 0;
                        body();
                        sf_emu_cp_wait(0);
                    });
                for (auto &t : th) t.join();
            }
}

static uint64_t rng_s = 12345;
static float urand() { rng_s = rng_s * 6364136223846793005ULL + 1442695040888963407ULL; return (float)((rng_s >> 40) / 16777216.0); }
static float bfr(float f) { return __bfloat162float(__float2bfloat16_rn(f)); }

static double relerr(const std::vector<double> &ref, const std::vector<float> &got) {
    double n = 0, d = 0;
    for (size_t i = 0; i < ref.size(); i++) {
        if (!std::isfinite(got[i])) return INFINITY;
        n += (ref[i] - got[i]) * (ref[i] - got[i]), d += ref[i] * ref[i];
    }
    return sqrt(n / (d > 0 ? d : 1));
}

/* the forward (ssd_fast.cu): decay_w · state_local · state_scan · out_group */
template <int N> static void run_state(const ssd_geom &s, float *states, hk_bf16 *sbf, const hk_bf16 *xbc,
                                       const float *wst, const float *cum) {
    const int qt = (s.Q + 63) / 64, hgb = (s.hpg + SF_LOC_HB - 1) / SF_LOC_HB;
    if (s.nc > 1)
        launch(dim3(s.nc - 1, s.G * hgb, s.B), 2 * SF_THREADS, sf_loc_smem<N>(qt), 0,
               [&] { sf_state_local_kernel<N>(states, xbc, wst, s); });
    launch(dim3((unsigned)((s.PN / 4 + 255) / 256), s.H, s.B), 256, 0, 0,
           [&] { sf_state_scan_kernel(states, sbf, cum, s); });
}

template <int N> static int run(int Bn, int T, int H, int G, int Q) {
    hk_ssd_dims d = {Bn, T, H, 64, G, N, Q};
    const ssd_geom s = ssd_make(d);
    const int P = 64;
    const size_t W = s.W, rows = (size_t)Bn * T, nst = (size_t)Bn * s.nc * H * P * N;
    std::vector<hk_bf16> xbc(rows * W), dt(rows * H), y(rows * H * P);
    std::vector<float> dtb(H), Alog(H), D(H), states(nst, NAN);
    for (auto &v : xbc) v = __float2bfloat16_rn(2 * urand() - 1);
    for (auto &v : dt) v = __float2bfloat16_rn(2 * urand() - 1);
    for (int h = 0; h < H; h++) dtb[h] = bfr(urand() - 0.5f), Alog[h] = bfr(2 * urand() - 1), D[h] = bfr(2 * urand() - 1);
    for (auto &v : y) v.x = 0xffff;
    /* reference: the sequential recurrence in double */
    std::vector<double> yr(rows * H * P), sr(nst);
    for (int b = 0; b < Bn; b++)
        for (int h = 0; h < H; h++) {
            const int g = h / s.hpg;
            std::vector<double> S((size_t)P * N, 0.0);
            const double A = -exp((double)Alog[h]);
            for (int t = 0; t < T; t++) {
                if (t % Q == 0) {
                    const int c = t / Q;
                    for (size_t e = 0; e < (size_t)P * N; e++) sr[(((size_t)b * s.nc + c) * H + h) * P * N + e] = S[e];
                }
                const hk_bf16 *r = &xbc[((size_t)b * T + t) * W];
                const double u = __bfloat162float(dt[((size_t)b * T + t) * H + h]) + dtb[h];
                const double dl = u > 0 ? u + log1p(exp(-u)) : log1p(exp(u)), a = exp(dl * A);
                for (int p = 0; p < P; p++) {
                    const double xp = __bfloat162float(r[h * P + p]);
                    double acc = 0;
                    for (int n = 0; n < N; n++) {
                        double &e = S[(size_t)p * N + n];
                        e = a * e + dl * xp * __bfloat162float(r[s.HP + (size_t)g * N + n]);
                        acc += e * __bfloat162float(r[s.HP + (size_t)(G + g) * N + n]);
                    }
                    yr[((size_t)b * T + t) * H * P + h * P + p] = acc + D[h] * xp;
                }
            }
        }
    /* the kernels */
    const size_t bht = ((size_t)Bn * H * T + 3) & ~(size_t)3;
    std::vector<float> scr(3 * bht + nst / 2 + 4, NAN);
    float *delta = scr.data(), *cum = delta + bht, *wst = cum + bht;
    hk_bf16 *sbf = (hk_bf16 *)(wst + bht);
    const int qt = (Q + 63) / 64, np = (qt + 1) / 2;
    launch(dim3(s.nc, H, Bn), 32, 0, 0, [&] { sf_decay_w_kernel(delta, cum, wst, dt.data(), dtb.data(), Alog.data(), s); });
    run_state<N>(s, states.data(), sbf, xbc.data(), wst, cum);
    const size_t og_smem = sf_og_smem<N>(qt);
    launch(dim3(s.nc * np, G, Bn), 2 * SF_THREADS, og_smem, SF_THREADS,
           [&] { sf_out_group_kernel<N>(y.data(), sbf, xbc.data(), delta, cum, D.data(), s); });
    std::vector<float> yf(y.size());
    for (size_t i = 0; i < y.size(); i++) yf[i] = __bfloat162float(y[i]);
    const double ey = relerr(yr, yf), es = relerr(sr, states);
    const bool ok = ey < 1e-2 && es < 1e-2;
    printf("%s B%d T%d H%d P64 G%d N%d Q%d: y %.3e states %.3e (smem out %zu)\n", ok ? "PASS" : "FAIL", Bn, T, H, G, N, Q,
           ey, es, og_smem);
    return ok;
}

int main(int argc, char **argv) {
    /* argv[1]: shape index (default all) */
    setvbuf(stdout, NULL, _IOLBF, 0); /* one line per run as it finishes */
    int ok = 1;
    const int which = argc > 1 ? atoi(argv[1]) : -1;
    if (which < 0 || which == 0) ok &= run<64>(2, 256, 4, 1, 64);
    if (which < 0 || which == 1) ok &= run<64>(2, 300, 4, 1, 64);
    if (which < 0 || which == 2) ok &= run<128>(2, 300, 4, 2, 64);
    if (which < 0 || which == 3) ok &= run<128>(2, 300, 4, 1, 256);
    if (which < 0 || which == 4) ok &= run<64>(2, 520, 4, 2, 128);
    if (which < 0 || which == 5) ok &= run<128>(2, 100, 4, 2, 48);
    if (which < 0 || which == 6) ok &= run<64>(1, 301, 2, 1, 64);
    if (which < 0 || which == 7) ok &= run<128>(1, 700, 6, 1, 192); /* qt 3: middle tile alone; odd heads per group */
    if (which < 0 || which == 8) ok &= run<128>(1, 1000, 3, 1, 256); /* hpg 3, 4 chunks, ragged */
    if (which < 0 || which == 9) ok &= run<64>(1, 200, 4, 2, 256);   /* one (short) chunk: no local states */
    return ok ? 0 : 1;
}
