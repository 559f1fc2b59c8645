/* tests/cuda/emu/wgmma_emu_selftest.cpp — self-test of the wgmma emulation; build and run with
 * tests/cuda/emu/wgmma_emu_selftest.sh. (1) The device probe (kernels/cuda/sm90a/wgmma_probe.cu,
 * five descriptor / register forms) under emulation must match its float64 product to 1e-5 under
 * every schedule. (2) Kernels that break a wgmma rule must be stopped by the emulator (run in a
 * child process, which must abort): an operand tile overwritten before wg_wait, cp.async data
 * read without fence.proxy.async, accumulators written while in flight, no wg_arrive; and
 * accumulators read before wg_wait must read NaN. */
#include <sys/wait.h>
#include <unistd.h>

#include "tests/cuda/emu/wgmma_emu.h"
#include WGMMA_PROBE_SRC /* includes the sm90a_inc common.cuh shim and wgmma.cuh */
#include "kernels/cuda/sm90a/sm90a_async.cuh"

/* A 64×64 · (64×64)ᵀ product through SW128 K-major tiles, with a deliberate fault. */
enum { FAULT_NONE, FAULT_OVERWRITE, FAULT_NO_PROXY_FENCE, FAULT_WRITE_ACC, FAULT_NO_ARRIVE, FAULT_READ_ACC };
static hk_bf16 g_src[64 * 64];
static float g_out[64 * 64];
static void fault_kernel(int fault) {
    const int tid = threadIdx.x;
    unsigned char *sA = smem, *sB = smem + 8192;
    for (int i = tid; i < 64 * 8; i += 128) { /* 16-byte chunks */
        const int r = i / 8, c = (i % 8) * 8;
        wg_cp_async16(wg_smem_addr(sA + wg_sw128_offset(r, c)), g_src + r * 64 + c, 16);
        wg_cp_async16(wg_smem_addr(sB + wg_sw128_offset(r, c)), g_src + r * 64 + c, 16);
    }
    wg_cp_commit();
    wg_cp_wait<0>();
    if (fault != FAULT_NO_PROXY_FENCE) wg_fence_proxy_async();
    __syncthreads();
    float d[32];
    for (int i = 0; i < 32; i++) d[i] = 0.f;
    if (fault != FAULT_NO_ARRIVE) wg_arrive();
    for (int k = 0; k < 4; k++)
        wg_mma<64>::ss<0, 0>(d, wg_desc_kmajor(wg_smem_addr(sA), k), wg_desc_kmajor(wg_smem_addr(sB), k), 1);
    wg_commit();
    if (fault == FAULT_WRITE_ACC) d[3] = 1.f;
    float early = d[0];
    __syncthreads();
    if (fault == FAULT_OVERWRITE && tid == 0) *(hk_bf16 *)(sB + 64) = __float2bfloat16(3.f);
    __syncthreads();
    wg_wait<0>();
    if (fault == FAULT_READ_ACC) d[0] = early;
    const int w = tid >> 5, lane = tid & 31, r = 16 * w + (lane >> 2), c = 2 * (lane & 3);
    for (int j = 0; j < 8; j++)
        for (int e = 0; e < 4; e++) g_out[(r + 8 * (e >> 1)) * 64 + 8 * j + c + (e & 1)] = d[4 * j + e];
}
/* 0: ran to the end and matched, 1: aborted with `msg` in its error, 2: wrong result, 3: other abort */
static int run_fault(int fault, const char *msg) {
    fflush(stdout);
    char path[] = "/tmp/wgmma_selftest_XXXXXX";
    const int fd = mkstemp(path);
    const pid_t pid = fork();
    if (pid == 0) {
        dup2(fd, 2);
        emu_launch(emu_dim3(1), 128, 16384, [&] { fault_kernel(fault); });
        double num = 0, den = 0;
        for (int r = 0; r < 64; r++)
            for (int c = 0; c < 64; c++) {
                double ref = 0;
                for (int k = 0; k < 64; k++) ref += (double)ld(g_src[r * 64 + k]) * ld(g_src[c * 64 + k]);
                num += (g_out[r * 64 + c] - ref) * (g_out[r * 64 + c] - ref), den += ref * ref;
            }
        _exit(std::isfinite(num) && sqrt(num / den) < 1e-5 ? 0 : 2);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    char buf[4096] = {0};
    if (pread(fd, buf, sizeof buf - 1, 0) < 0) buf[0] = 0;
    close(fd);
    unlink(path);
    if (getenv("EMU_SELFTEST_VERBOSE")) fputs(buf, stderr);
    if (WIFSIGNALED(st)) return msg && strstr(buf, msg) ? 1 : 3;
    return WEXITSTATUS(st);
}

int main() {
    int ok = 1;
    static const char *sched[] = {"forward", "reverse", "warp-at-a-time", "random"};
    for (int s = 0; s < EMU_SCHED_COUNT; s++) {
        emu_schedule = s;
        double err[5] = {0};
        const int n = hk_cuda_wgmma_probe(err);
        ok &= n == 5;
        for (int i = 0; i < 5; i++) {
            printf("EMU wgmma probe case %d (%s): rel %.3e %s\n", i, sched[s], err[i], err[i] <= 1e-5 ? "ok" : "FAIL");
            ok &= err[i] <= 1e-5;
        }
    }
    emu_schedule = EMU_SCHED_FORWARD;
    for (int i = 0; i < 64 * 64; i++) g_src[i] = __float2bfloat16((float)(i % 13) / 7.f - 0.8f);
    struct { int fault, expect; const char *what, *msg; } neg[] = {
        {FAULT_NONE, 0, "correct kernel runs and matches", NULL},
        {FAULT_OVERWRITE, 1, "operand overwritten before wg_wait aborts", "operand B changed"},
        {FAULT_NO_PROXY_FENCE, 1, "cp.async data without fence.proxy.async aborts", "without a later fence.proxy.async"},
        {FAULT_WRITE_ACC, 1, "accumulator written in flight aborts", "written while it was in flight"},
        {FAULT_NO_ARRIVE, 1, "wgmma without wg_arrive aborts", "without wg_arrive"},
        {FAULT_READ_ACC, 2, "accumulator read before wg_wait is NaN (wrong result)", NULL},
    };
    for (auto &t : neg) {
        const int got = run_fault(t.fault, t.msg);
        printf("EMU wgmma rule check: %-55s %s\n", t.what, got == t.expect ? "ok" : "FAIL");
        ok &= got == t.expect;
    }
    printf("%s\n", ok ? "ALL OK" : "FAILURES");
    return ok ? 0 : 1;
}
