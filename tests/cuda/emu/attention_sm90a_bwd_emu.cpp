/* tests/cuda/emu/attention_sm90a_bwd_emu.cpp — host emulation of the wgmma attention backward
 * kernels (kernels/cuda/sm90a/attention_sm90a_bwd.cu: attn_dkdv_wg, attn_dq_wg) on the fiber
 * runtime and wgmma emulation of tests/cuda/emu/wgmma_emu.h. Not built by CMake.
 *
 *   g++ -std=c++17 -O1 -DWG_EMU -I tests/cuda/emu/sm90a_inc -I . -x c++ \
 *       tests/cuda/emu/attention_sm90a_bwd_emu.cpp -o /tmp/attn_bwd_emu && /tmp/attn_bwd_emu
 *
 * Each shape: random bf16 qkv and dO; lse, O (rounded to bf16) and D = rowsum(dO∘O) from a
 * float64 forward (attn_ref.h; D in fp32 from the bf16 O, as attn_rowdot_kernel computes it); the two
 * kernels launched with the host code's grids, threads and shared memory (ab_launch: dK/dV
 * with 3 warpgroups at dh 64, 2 at dh 128; dQ with 2), dqkv NaN-poisoned first; then the Q, K
 * and V parts of dqkv against its float64 backward on the same bf16 inputs (relative norm error,
 * limit 1e-2). Shapes rotate through the fiber schedules, a shared window off 1024-byte
 * alignment (emu_smem_base = 16, which the kernels must align themselves) and the cp.async
 * landing time.
 */
#include "tests/cuda/emu/wgmma_emu.h"

#include "kernels/cuda/common.cuh" /* the shim in tests/cuda/emu/sm90a_inc */

/* The kernel file's cp.async / bf16 helpers (its device versions are inline PTX). fiber_rt.h
 * lands a copy at the wait that covers it, the latest moment the hardware may, which shows reads
 * before the wait but hides a copy that overwrites a tile an in-flight wgmma still reads. With
 * cp_eager the copy also lands at issue, the earliest moment: wgmma_emu.h then sees the operand
 * change between issue and wait (or unfenced cp.async data) where the ring refills too early. */
static bool cp_eager = false;
static void ab_cp(uint32_t dst, const void *gmem, uint32_t bytes, uint32_t size) {
    emu_cp_async(dst, gmem, bytes, size);
    if (cp_eager) {
        unsigned char *d = emu_smem_at(dst, size);
        memcpy(d, gmem, bytes);
        memset(d + bytes, 0, size - bytes);
        emu_mark_generic_write(dst, size);
    }
}
void ab_cp16(uint32_t dst, const void *gmem, uint32_t bytes) { ab_cp(dst, gmem, bytes, 16); }
void ab_cp4(uint32_t dst, const void *gmem, uint32_t bytes) { ab_cp(dst, gmem, bytes, 4); }
void ab_cp_commit() { emu_cp_commit(); }
void ab_cp_wait_n(int n) { emu_cp_wait(n); }
uint32_t ab_pack(float lo, float hi) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return (uint32_t)v.x.__x | ((uint32_t)v.y.__x << 16);
}

#include "kernels/cuda/sm90a/attention_sm90a_bwd.cu"
#include "tests/cuda/emu/attn_ref.h"

#include <vector>

static float bf2f(hk_bf16 b) { return __bfloat162float(b); }

static const char *sched_name[EMU_SCHED_COUNT] = {"forward", "reverse", "warp", "random"};

template <int DH>
static int run_shape(int B, int T, int Hq, int Hkv, int window, int sched, uint32_t smem_base, bool eager) {
    const size_t W = (size_t)(Hq + 2 * Hkv) * DH, OW = (size_t)Hq * DH, N = (size_t)B * T;
    std::vector<hk_bf16> qkv(N * W), dout(N * OW), dqkv(N * W);
    std::vector<float> lse((size_t)B * Hq * T), Dv((size_t)B * Hq * T);
    for (auto &v : qkv) v = __float2bfloat16_rn((float)(1.5 * (2 * urand() - 1)));
    for (auto &v : dout) v = __float2bfloat16_rn((float)(2 * urand() - 1));
    for (auto &v : dqkv) v.__x = 0x7fc0; /* NaN: every element must be written */
    const double scale = 1.0 / sqrt((double)DH);
    std::vector<double> xqkv(qkv.size()), xdout(dout.size());
    for (size_t i = 0; i < xqkv.size(); i++) xqkv[i] = bf2f(qkv[i]);
    for (size_t i = 0; i < xdout.size(); i++) xdout[i] = bf2f(dout[i]);
    const AttnRef ref = attn_ref(xqkv.data(), xdout.data(), B, T, Hq, Hkv, DH, window, scale);
    /* the kernels' inputs: lse in fp32, and D as attn_rowdot_kernel computes it (fp32, from the
     * forward's bf16 O) */
    for (size_t li = 0; li < lse.size(); li++) lse[li] = (float)ref.lse[li];
    for (int b = 0; b < B; b++)
        for (int h = 0; h < Hq; h++)
            for (int i = 0; i < T; i++) {
                const size_t ni = (size_t)b * T + i;
                float Df = 0;
                for (int c = 0; c < DH; c++) {
                    const size_t e = ni * OW + (size_t)h * DH + c;
                    Df += bf2f(__float2bfloat16_rn((float)ref.out[e])) * (float)xdout[e];
                }
                Dv[((size_t)b * Hq + h) * T + i] = Df;
            }
    const float sl2 = (float)(AB_LOG2E / sqrt((double)DH)), fscale = (float)scale;
    emu_schedule = sched;
    emu_smem_base = smem_base;
    cp_eager = eager;
    /* the launcher's grids, threads and shared-memory sizes (ab_launch) */
    typedef ab_dkdv_shape<DH> S;
    emu_launch(emu_dim3(Hkv, B, (unsigned)((T + S::rows - 1) / S::rows)), S::threads, ab_dkdv_smem<DH>::bytes, [&] {
        attn_dkdv_wg<DH>(dqkv.data(), dout.data(), lse.data(), Dv.data(), qkv.data(), T, Hq, Hkv, window, sl2, fscale);
    });
    emu_launch(emu_dim3(Hq, B, (unsigned)((T + AB_ROWS - 1) / AB_ROWS)), AB_THREADS, ab_dq_smem<DH>::bytes, [&] {
        attn_dq_wg<DH>(dqkv.data(), dout.data(), lse.data(), Dv.data(), qkv.data(), T, Hq, Hkv, window, sl2, fscale);
    });
    emu_smem_base = 0;
    std::vector<double> gq, rq, gk, rk, gv, rv;
    for (size_t n = 0; n < N; n++)
        for (size_t c = 0; c < W; c++) {
            const double x = bf2f(dqkv[n * W + c]), r = ref.dqkv[n * W + c];
            if (c < OW) gq.push_back(x), rq.push_back(r);
            else if (c < OW + (size_t)Hkv * DH) gk.push_back(x), rk.push_back(r);
            else gv.push_back(x), rv.push_back(r);
        }
    const double eq = rel(gq, rq), ek = rel(gk, rk), ev = rel(gv, rv);
    const int ok = eq < 1e-2 && ek < 1e-2 && ev < 1e-2;
    printf("EMU B%d T%d Hq%d/%d dh%d w%d sched %s base %u cp.async %s: dQ %.2e dK %.2e dV %.2e %s\n", B, T, Hq, Hkv,
           DH, window, sched_name[sched], smem_base, eager ? "eager" : "late", eq, ek, ev, ok ? "ok" : "FAIL");
    fflush(stdout);
    return ok;
}

int main(int argc, char **argv) {
    const bool quick = argc > 1 && strcmp(argv[1], "quick") == 0;
    /* T not a multiple of the tiles, GQA groups 1-3, windows 0, small odd ones, at a tile edge */
    struct Shape { int dh, B, T, Hq, Hkv, window; };
    static const Shape shapes[] = {
        {64, 1, 100, 2, 1, 0},   {128, 1, 100, 2, 2, 0}, {64, 2, 37, 3, 1, 0},   {64, 1, 200, 6, 2, 37},
        {64, 1, 300, 3, 3, 0},   {64, 1, 260, 2, 1, 9},  {64, 1, 129, 2, 1, 130}, {64, 1, 230, 4, 2, 65},
        {64, 1, 300, 2, 1, 0},   {64, 2, 170, 4, 2, 0},  {128, 1, 37, 3, 1, 0},   {128, 1, 200, 3, 1, 21},
        {128, 1, 300, 2, 2, 0},  {128, 2, 150, 2, 1, 70}, {128, 1, 330, 2, 1, 0},
        /* longer: many trips around the stage ring, heads crossed by the prefetch */
        {64, 1, 520, 3, 1, 0},   {64, 1, 450, 2, 1, 200}, {128, 1, 400, 2, 1, 131},
    };
    int ok = 1, n = 0;
    for (const Shape &x : shapes) {
        if (quick && n == 2) break;
        /* rotate the fiber schedule, the shared window's alignment and the cp.async landing time;
         * every shape twice, the second time with the other alignment and landing time */
        for (int rep = 0; rep < 2; rep++) {
            const int sched = (n + 2 * rep) % EMU_SCHED_COUNT;
            const uint32_t base = (n + rep) % 2 ? 16 : 0;
            const bool eager = (n % 3 != 1) != (rep == 1);
            if (x.dh == 64) ok &= run_shape<64>(x.B, x.T, x.Hq, x.Hkv, x.window, sched, base, eager);
            else ok &= run_shape<128>(x.B, x.T, x.Hq, x.Hkv, x.window, sched, base, eager);
        }
        n++;
    }
    printf("%s\n", ok ? "ALL OK" : "FAILURES");
    return ok ? 0 : 1;
}
