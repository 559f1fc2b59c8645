/* tests/cuda/emu/attention.cpp — host emulation of the bf16 tensor-core attention kernels of
 * kernels/cuda/attention.cu, to check their index math without a GPU. Not built by CMake.
 *
 *   g++ -std=c++17 -O1 -DATT_EMU -I tests/cuda/emu/attention_inc -I . -x c++ tests/cuda/emu/attention.cpp \
 *       -o /tmp/attn_emu && /tmp/attn_emu
 *
 * Every CUDA thread is a ucontext fiber (one OS thread), __syncthreads a block barrier;
 * shuffles, mma.sync.m16n8k16 and ldmatrix exchange through per-warp arrays in the PTX
 * fragment layouts; cp.async copies are deferred to cp.async.wait_group (so reading a stage
 * before its wait shows up); shared memory is poisoned with bf16 NaN before each block.
 * Each shape runs the forward, dK/dV and dQ kernels with the (heads, B, tiles) grids of the
 * host code and compares them with the float64 reference of attn_ref.h on the same bf16 inputs
 * (relative norm error).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <functional>
#include <vector>

#include "kernels/cuda/common.cuh" /* the emulation shim in emu/attention_inc */

/* ---- fibers ------------------------------------------------------------------------------ */
enum { NTHR = 128, STACK = 256 * 1024 };
struct Fiber {
    ucontext_t ctx;
    int tid, done;
    std::vector<char> stack;
    /* pending cp.async copies: (group, dst, src, bytes, size); bytes 0: zero-filled */
    struct Cp { int group; uint32_t dst; const void *src; uint32_t bytes, size; };
    std::vector<Cp> cps;
    int group;
};
static Fiber fib[NTHR];
static ucontext_t sched_ctx;
static std::function<void()> *body;
emu_dim3 emu_block_idx, emu_grid_dim;
static Fiber *cur;
static int warp_cnt[NTHR / 32], warp_gen[NTHR / 32], blk_cnt, blk_gen;
alignas(16) unsigned char smem_raw[232 * 1024];
static long progress;

int emu_tid() { return cur->tid; }
static void yield() { swapcontext(&cur->ctx, &sched_ctx); }
void emu_warp_sync() {
    const int w = cur->tid >> 5, gen = warp_gen[w];
    progress++;
    if (++warp_cnt[w] == 32) warp_cnt[w] = 0, warp_gen[w]++;
    else
        while (warp_gen[w] == gen) yield();
}
void emu_syncthreads() {
    const int gen = blk_gen;
    progress++;
    if (++blk_cnt == NTHR) blk_cnt = 0, blk_gen++;
    else
        while (blk_gen == gen) yield();
}
static void fiber_main(int i) {
    (*body)();
    fib[i].done = 1;
    progress++;
}

/* ---- warp collectives ------------------------------------------------------------------- */
static float xf[NTHR / 32][32];
float emu_shfl_xor(float v, int o) {
    const int w = cur->tid >> 5, l = cur->tid & 31;
    xf[w][l] = v;
    emu_warp_sync();
    const float r = xf[w][l ^ o];
    emu_warp_sync();
    return r;
}
static float bf2f(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint16_t lo16(uint32_t u) { return (uint16_t)(u & 0xffffu); }
static uint16_t hi16(uint32_t u) { return (uint16_t)(u >> 16); }
static uint32_t xa[NTHR / 32][32][4], xb[NTHR / 32][32][2];
void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    const int w = cur->tid >> 5, l = cur->tid & 31;
    for (int k = 0; k < 4; k++) xa[w][l][k] = a[k];
    xb[w][l][0] = b0, xb[w][l][1] = b1;
    emu_warp_sync();
    float A[16][16], B[16][8];
    for (int L = 0; L < 32; L++) {
        const int g = L >> 2, t = L & 3;
        const int ar[4] = {g, g + 8, g, g + 8}, ac[4] = {2 * t, 2 * t, 2 * t + 8, 2 * t + 8};
        for (int k = 0; k < 4; k++) {
            A[ar[k]][ac[k]] = bf2f(lo16(xa[w][L][k]));
            A[ar[k]][ac[k] + 1] = bf2f(hi16(xa[w][L][k]));
        }
        B[2 * t][g] = bf2f(lo16(xb[w][L][0]));
        B[2 * t + 1][g] = bf2f(hi16(xb[w][L][0]));
        B[2 * t + 8][g] = bf2f(lo16(xb[w][L][1]));
        B[2 * t + 9][g] = bf2f(hi16(xb[w][L][1]));
    }
    emu_warp_sync();
    const int g = l >> 2, t = l & 3;
    for (int e = 0; e < 4; e++) {
        const int r = g + (e >> 1) * 8, col = 2 * t + (e & 1);
        double acc = c[e];
        for (int k = 0; k < 16; k++) acc += (double)A[r][k] * B[k][col];
        c[e] = (float)acc;
    }
}
static uint32_t xaddr[NTHR / 32][32];
static uint16_t sm16(uint32_t a) {
    if (a + 2 > sizeof smem_raw || (a & 1)) {
        fprintf(stderr, "ldmatrix address %u out of range\n", a);
        abort();
    }
    uint16_t v;
    memcpy(&v, smem_raw + a, 2);
    return v;
}
static void ldsm_any(uint32_t r[4], uint32_t addr, bool trans) {
    const int w = cur->tid >> 5, l = cur->tid & 31;
    if (addr & 15) {
        fprintf(stderr, "ldmatrix row address %u not 16-byte aligned\n", addr);
        abort();
    }
    xaddr[w][l] = addr;
    emu_warp_sync();
    const int g = l >> 2, t = l & 3;
    for (int i = 0; i < 4; i++) {
        uint16_t e0, e1;
        if (!trans) { /* M[g][2t], M[g][2t+1] */
            const uint32_t row = xaddr[w][8 * i + g];
            e0 = sm16(row + 4 * t), e1 = sm16(row + 4 * t + 2);
        } else { /* M[2t][g], M[2t+1][g] */
            e0 = sm16(xaddr[w][8 * i + 2 * t] + 2 * g), e1 = sm16(xaddr[w][8 * i + 2 * t + 1] + 2 * g);
        }
        r[i] = (uint32_t)e0 | ((uint32_t)e1 << 16);
    }
    emu_warp_sync();
}
void ldsm4(uint32_t r[4], uint32_t a) { ldsm_any(r, a, false); }
void ldsm4_t(uint32_t r[4], uint32_t a) { ldsm_any(r, a, true); }
uint32_t smem_u32(const void *p) {
    const unsigned char *q = (const unsigned char *)p;
    if (q < smem_raw || q >= smem_raw + sizeof smem_raw) {
        fprintf(stderr, "smem_u32 of a non-shared pointer\n");
        abort();
    }
    return (uint32_t)(q - smem_raw);
}
void cp_async16_u32(uint32_t dst, const void *src, uint32_t bytes) {
    if (dst & 15 || dst + 16 > sizeof smem_raw || ((uintptr_t)src & 15)) {
        fprintf(stderr, "cp.async bad address\n");
        abort();
    }
    cur->cps.push_back({cur->group, dst, src, bytes, 16u});
}
void cp_async4(float *smem, const float *gmem, uint32_t bytes) {
    const uint32_t dst = smem_u32(smem);
    if (dst & 3 || ((uintptr_t)gmem & 3)) {
        fprintf(stderr, "cp.async (4) bad address\n");
        abort();
    }
    cur->cps.push_back({cur->group, dst, gmem, bytes ? 4u : 0u, 4u});
}
void cp_commit() { cur->group++; }
void emu_cp_wait(int n) { /* complete every group but the newest n */
    std::vector<Fiber::Cp> keep;
    for (auto &c : cur->cps) {
        if (c.group < cur->group - n) {
            if (c.bytes) memcpy(smem_raw + c.dst, c.src, c.size);
            else memset(smem_raw + c.dst, 0, c.size);
        } else keep.push_back(c);
    }
    cur->cps.swap(keep);
}

/* ---- launch ---------------------------------------------------------------------------------- */
static void launch(emu_dim3 grid, std::function<void()> kernel) {
    emu_grid_dim = grid;
    body = &kernel;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                emu_block_idx = {x, y, z};
                for (size_t k = 0; k < sizeof smem_raw / 2; k++) memcpy(smem_raw + 2 * k, "\xc1\x7f", 2); /* NaN */
                memset(warp_cnt, 0, sizeof warp_cnt);
                blk_cnt = 0;
                for (int i = 0; i < NTHR; i++) {
                    Fiber &f = fib[i];
                    f.tid = i, f.done = 0, f.group = 0, f.cps.clear();
                    f.stack.resize(STACK);
                    getcontext(&f.ctx);
                    f.ctx.uc_stack.ss_sp = f.stack.data();
                    f.ctx.uc_stack.ss_size = STACK;
                    f.ctx.uc_link = &sched_ctx;
                    makecontext(&f.ctx, (void (*)())fiber_main, 1, i);
                }
                for (int live = NTHR; live > 0;) {
                    const long before = progress;
                    live = 0;
                    for (int i = 0; i < NTHR; i++) {
                        if (fib[i].done) continue;
                        cur = &fib[i];
                        swapcontext(&sched_ctx, &fib[i].ctx);
                        live += !fib[i].done;
                    }
                    if (live && progress == before) {
                        fprintf(stderr, "deadlock in block (%u,%u,%u)\n", x, y, z);
                        abort();
                    }
                }
                for (int i = 0; i < NTHR; i++)
                    if (!fib[i].cps.empty()) fprintf(stderr, "warning: cp.async never waited for\n");
            }
}

#include "kernels/cuda/attention.cu"
#include "tests/cuda/emu/attn_ref.h"

/* ---- reference and driver ---------------------------------------------------------------- */
static uint16_t f2bf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

template <int DH>
static int run_shape(int B, int T, int Hq, int Hkv, int window) {
    const size_t W = (size_t)(Hq + 2 * Hkv) * DH, OW = (size_t)Hq * DH, N = (size_t)B * T;
    std::vector<hk_bf16> qkv(N * W), out(N * OW), dout(N * OW), dqkv(N * W);
    std::vector<float> lse((size_t)B * Hq * T), Dv((size_t)B * Hq * T);
    for (auto &v : qkv) v.u = f2bf((float)(1.5 * (2 * urand() - 1)));
    for (auto &v : dout) v.u = f2bf((float)(2 * urand() - 1));
    for (auto &v : out) v.u = 0x7fc0;
    for (auto &v : dqkv) v.u = 0x7fc0;
    for (auto &v : lse) v = NAN;
    const float scale = 1.0f / sqrtf((float)DH), sl2 = ATT_LOG2E * scale;
    typedef tc_cfg<DH> C;
    const int BM = 64 * C::fwd_mt; /* grids (heads, B, tiles), as the host code launches them */
    launch({(unsigned)Hq, (unsigned)B, (unsigned)((T + BM - 1) / BM)},
           [&] { attn_fwd_tc<DH, C::fwd_mt>(out.data(), lse.data(), qkv.data(), T, Hq, Hkv, window, sl2); });
    /* float64 reference on the same bf16 inputs, with the kernel's fp32 scale */
    std::vector<double> xqkv(qkv.size()), xdout(dout.size());
    for (size_t i = 0; i < xqkv.size(); i++) xqkv[i] = bf2f(qkv[i].u);
    for (size_t i = 0; i < xdout.size(); i++) xdout[i] = bf2f(dout[i].u);
    const AttnRef ref = attn_ref(xqkv.data(), xdout.data(), B, T, Hq, Hkv, DH, window, scale);
    std::vector<double> go(N * OW), gl(lse.size()), gd(N * W);
    for (size_t i = 0; i < go.size(); i++) go[i] = bf2f(out[i].u);
    for (size_t i = 0; i < gl.size(); i++) gl[i] = lse[i];
    /* D from the kernel's own bf16 output, as attn_rowdot_kernel does */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < Hq; h++) {
                float s = 0;
                const size_t n = (size_t)b * T + t;
                for (int c = 0; c < DH; c++) s += bf2f(out[n * OW + (size_t)h * DH + c].u) * bf2f(dout[n * OW + (size_t)h * DH + c].u);
                Dv[((size_t)b * Hq + h) * T + t] = s;
            }
    const int BK = 64 * C::dkdv_mt, BQ = 64 * C::dq_mt;
    launch({(unsigned)Hkv, (unsigned)B, (unsigned)((T + BK - 1) / BK)}, [&] {
        attn_dkdv_tc<DH, C::dkdv_mt, C::dkdv_nc>(dqkv.data(), dout.data(), lse.data(), Dv.data(), qkv.data(), T, Hq,
                                                 Hkv, window, sl2, scale);
    });
    launch({(unsigned)Hq, (unsigned)B, (unsigned)((T + BQ - 1) / BQ)}, [&] {
        attn_dq_tc<DH, C::dq_mt, C::dq_nc>(dqkv.data(), dout.data(), lse.data(), Dv.data(), qkv.data(), T, Hq, Hkv,
                                           window, sl2, scale);
    });
    for (size_t i = 0; i < gd.size(); i++) gd[i] = bf2f(dqkv[i].u);
    const double eo = rel(go, ref.out), el = rel(gl, ref.lse), ed = rel(gd, ref.dqkv);
    const int ok = eo < 1e-2 && el < 1e-2 && ed < 1e-2;
    printf("EMU B%d T%d Hq%d/%d dh%d w%d: out %.2e lse %.2e dqkv %.2e %s\n", B, T, Hq, Hkv, DH, window, eo, el,
           ed, ok ? "ok" : "FAIL");
    fflush(stdout);
    return ok;
}

int main(void) {
    int ok = 1;
    ok &= run_shape<64>(2, 100, 4, 2, 0);
    ok &= run_shape<64>(1, 200, 6, 2, 37);
    ok &= run_shape<64>(2, 65, 3, 3, 0);
    ok &= run_shape<64>(1, 77, 2, 1, 9);
    ok &= run_shape<64>(1, 300, 4, 4, 0);
    ok &= run_shape<64>(1, 260, 2, 1, 70);
    ok &= run_shape<64>(2, 37, 4, 1, 0);
    ok &= run_shape<64>(1, 129, 4, 1, 130);
    /* window edges inside a 16-column backward chunk, T ending inside one */
    ok &= run_shape<64>(1, 161, 2, 1, 20);
    ok &= run_shape<64>(1, 230, 2, 2, 33);
    ok &= run_shape<128>(1, 150, 4, 1, 70);
    ok &= run_shape<128>(1, 100, 2, 2, 0);
    printf("%s\n", ok ? "ALL OK" : "FAILURES");
    return ok ? 0 : 1;
}
