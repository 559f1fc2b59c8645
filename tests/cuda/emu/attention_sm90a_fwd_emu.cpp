/* tests/cuda/emu/attention_sm90a_fwd_emu.cpp — host emulation of the wgmma attention forward
 * (kernels/cuda/sm90a/attention_sm90a_fwd.cu) against the float64 reference of attn_ref.h on the same bf16
 * inputs: out (relative norm error ≤ 1e-2) and lse (≤ 1e-5). Run from the repository root:
 *
 *   g++ -std=c++17 -O1 -DWG_EMU -I tests/cuda/emu/sm90a_inc -I . -x c++ \
 *       tests/cuda/emu/attention_sm90a_fwd_emu.cpp -o /tmp/attn90_emu && /tmp/attn90_emu
 *
 * The kernel runs on the fiber runtime with the wgmma emulation (wgmma_emu.h: descriptors decoded
 * like the hardware, products at wg_wait, accumulators NaN while in flight, operand changes and
 * unfenced cp.async data caught), shared memory NaN-poisoned, cp.async landing at its wait. Shapes
 * cover dh 64 (3 consumers, 192-row blocks, lazy rescale, skipped tails) and dh 128 (2 consumers,
 * 128-row blocks), T not a multiple of the block rows or key tiles (the last block's last
 * warpgroups entirely past T), GQA groups 1-3 and windows 0 / small / odd / past T, cp.async
 * landing late (at its wait) and early (also at issue); schedules vary (forward, reverse, one warp
 * at a time, random), some runs move the shared window off 1024-byte alignment (the kernel aligns
 * its tiles itself), and the wide-score runs make the running max jump past the lazy threshold.
 * `./attn90_emu quick` runs a subset.
 */
#include "tests/cuda/emu/wgmma_emu.h"
#include "kernels/cuda/sm90a/attention_sm90a_fwd.cu"
#include "tests/cuda/emu/attn_ref.h"

static float bf2f(hk_bf16 b) { return __bfloat162float(b); }

static double amp = 1.5; /* input amplitude: larger spreads the scores (row maxima jump past the lazy threshold) */

template <int DH>
static int run_shape(int B, int T, int Hq, int Hkv, int window, int sched, uint32_t smem_base = 0, bool cp_eager = false) {
    const size_t W = (size_t)(Hq + 2 * Hkv) * DH, OW = (size_t)Hq * DH, N = (size_t)B * T;
    std::vector<hk_bf16> qkv(N * W), out(N * OW);
    std::vector<float> lse((size_t)B * Hq * T);
    for (auto &v : qkv) v = __float2bfloat16((float)(amp * (2 * urand() - 1)));
    for (auto &v : out) v.__x = 0x7fc0;
    for (auto &v : lse) v = NAN;
    hk_attn_dims d;
    memset(&d, 0, sizeof d);
    d.B = B, d.T = T, d.Hq = Hq, d.Hkv = Hkv, d.dh = DH, d.window = window;
    emu_schedule = sched;
    emu_smem_base = smem_base;
    emu_cp_eager = cp_eager;
    const float sl2 = F90_LOG2E / sqrtf((float)DH);
    typedef f90_cfg<DH> C;
    emu_launch(f90_grid(d, C::bm), C::threads, C::smem, [&] {
        attn_fwd_sm90a_kernel<DH>(out.data(), lse.data(), qkv.data(), d.T, d.Hq, d.Hkv, d.window, sl2);
    });
    emu_smem_base = 0;
    emu_cp_eager = false;
    /* float64 reference */
    std::vector<double> xqkv(qkv.size());
    for (size_t i = 0; i < xqkv.size(); i++) xqkv[i] = bf2f(qkv[i]);
    const AttnRef ref = attn_ref(xqkv.data(), nullptr, B, T, Hq, Hkv, DH, window, 1.0 / sqrt((double)DH));
    std::vector<double> go(N * OW), gl(lse.size());
    for (size_t i = 0; i < go.size(); i++) go[i] = bf2f(out[i]);
    for (size_t i = 0; i < gl.size(); i++) gl[i] = lse[i];
    const double eo = rel(go, ref.out), el = rel(gl, ref.lse);
    const int ok = eo < 1e-2 && el < 1e-5;
    static const char *sn[] = {"fwd", "rev", "warp", "rand"};
    printf("EMU sm90a fwd amp %.1f B%d T%d Hq%d/%d dh%d w%d sched %s%s%s: out %.2e lse %.2e %s\n", amp, B, T, Hq, Hkv, DH,
           window, sn[sched], smem_base ? " smem+16" : "", cp_eager ? " cp-eager" : "", eo, el, ok ? "ok" : "FAIL");
    fflush(stdout);
    return ok;
}

int main(int argc, char **argv) {
    const int quick = argc > 1 && strcmp(argv[1], "quick") == 0;
    int ok = 1;
    ok &= run_shape<64>(1, 37, 2, 1, 0, EMU_SCHED_FORWARD);
    ok &= run_shape<64>(2, 100, 4, 2, 0, EMU_SCHED_REVERSE);
    ok &= run_shape<64>(1, 128, 3, 1, 0, EMU_SCHED_WARP);
    ok &= run_shape<64>(1, 300, 3, 3, 0, EMU_SCHED_RANDOM);
    ok &= run_shape<128>(1, 200, 2, 1, 0, EMU_SCHED_FORWARD);
    ok &= run_shape<128>(1, 100, 2, 2, 0, EMU_SCHED_WARP, 16);
    ok &= run_shape<64>(1, 300, 2, 1, 0, EMU_SCHED_REVERSE);
    if (!quick) {
        ok &= run_shape<64>(1, 200, 6, 2, 37, EMU_SCHED_FORWARD);
        ok &= run_shape<64>(1, 300, 2, 1, 9, EMU_SCHED_REVERSE);
        ok &= run_shape<64>(1, 260, 2, 1, 130, EMU_SCHED_RANDOM, 16);
        ok &= run_shape<64>(1, 77, 2, 1, 500, EMU_SCHED_WARP);
        ok &= run_shape<64>(1, 700, 1, 1, 0, EMU_SCHED_FORWARD); /* 6 key tiles: the ring wraps */
        ok &= run_shape<64>(1, 900, 1, 1, 0, EMU_SCHED_RANDOM, 0, true);
        ok &= run_shape<128>(1, 600, 1, 1, 0, EMU_SCHED_REVERSE, 0, true);
        ok &= run_shape<64>(1, 600, 1, 1, 200, EMU_SCHED_RANDOM);
        ok &= run_shape<128>(1, 300, 3, 1, 70, EMU_SCHED_REVERSE);
        ok &= run_shape<128>(1, 520, 1, 1, 0, EMU_SCHED_RANDOM);
        ok &= run_shape<128>(2, 129, 2, 2, 1, EMU_SCHED_FORWARD);
        ok &= run_shape<64>(1, 650, 2, 1, 0, EMU_SCHED_RANDOM);
        ok &= run_shape<128>(1, 450, 2, 1, 100, EMU_SCHED_WARP, 16);
    }
    /* wide scores: the running max jumps by more than the lazy threshold (2^8) on later tiles */
    amp = 5.0;
    ok &= run_shape<64>(1, 700, 2, 1, 0, EMU_SCHED_RANDOM);
    ok &= run_shape<64>(1, 450, 2, 2, 150, EMU_SCHED_REVERSE);
    amp = 1.5;
    printf("%s\n", ok ? "ALL OK" : "FAILURES");
    return ok ? 0 : 1;
}
