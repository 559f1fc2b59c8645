/* tests/cuda/emu/ssd_bwd/emu.cpp — host emulation of the CUDA SSD backward (see run.sh). Not part of
 * the build: the fibers, barriers and fragment exchanges stand in for the GPU so that index math,
 * masks, barriers-as-written and fragment bookkeeping can be checked without a device. */
#include <ucontext.h>
#include <cstdarg>
#include <vector>
#include <random>
#include "kernels/cuda/common.cuh"

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;
static const size_t SMEM_MAX = 232448;
alignas(16) static unsigned char smem_buf[SMEM_MAX];
unsigned char *emu_smem = smem_buf;
enum { RUN, BAR, WBAR, NBAR, DONE };
/* NBAR: waiting at named barrier nbar_id (1..15) of nbar_count threads */
struct Fiber { ucontext_t ctx; int state; char *stack; int nbar_id, nbar_count; };
static Fiber fib[1024];
static ucontext_t sched_ctx;
static int cur, nthr;
static void (*g_body)(void *);
static void *g_arg;
static const size_t STACK = 256 * 1024;
static long n_blocks, n_mma;

static void trampoline() {
    g_body(g_arg);
    fib[cur].state = DONE;
    swapcontext(&fib[cur].ctx, &sched_ctx);
}
static void wait_state(int st) {
    fib[cur].state = st;
    swapcontext(&fib[cur].ctx, &sched_ctx);
}
void emu_syncthreads() { wait_state(BAR); }
void emu_syncwarp() { wait_state(WBAR); }
static float xf[32][32];
float emu_shfl(float v, int mode, int arg) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    xf[w][lane] = v;
    emu_syncwarp();
    const int src = mode == 0 ? (lane ^ arg) : mode == 1 ? (lane >= arg ? lane - arg : lane) : arg;
    const float r = xf[w][src];
    emu_syncwarp();
    return r;
}
unsigned char *sf_emu_smem() { return smem_buf; }
struct PendingCopy { void *dst; const void *src; int bytes; bool valid; int group; };
static std::vector<PendingCopy> cp_pending[1024];
static int cp_groups[1024]; /* committed groups per thread */
static long n_cp_late;      /* copies never waited for by the end of their block */
void sf_emu_cp(void *dst, const void *src, int bytes, bool valid) {
    memset(dst, 0xff, bytes);
    cp_pending[cur].push_back({dst, src, bytes, valid, cp_groups[cur]});
}
void sf_emu_cp_commit() { cp_groups[cur]++; }
void sf_emu_cp_wait_n(int n) { /* every committed group but the newest n lands */
    auto &q = cp_pending[cur];
    size_t keep = 0;
    for (size_t i = 0; i < q.size(); i++) {
        if (q[i].group < cp_groups[cur] - n) {
            if (q[i].valid) memcpy(q[i].dst, q[i].src, q[i].bytes);
            else memset(q[i].dst, 0, q[i].bytes);
        } else {
            q[keep++] = q[i];
        }
    }
    q.resize(keep);
}
void sf_emu_bar(int id, int count) {
    if (count == (int)blockDim.x) return emu_syncthreads();
    if (id < 1 || id > 15 || count <= 0 || count % 32 || count > (int)blockDim.x) {
        fprintf(stderr, "bad named barrier %d/%d\n", id, count);
        abort();
    }
    fib[cur].nbar_id = id, fib[cur].nbar_count = count;
    wait_state(NBAR);
}
static const void *xp[32][32];
static uint16_t ldsm_elem(const void *p, int k) { uint16_t v; memcpy(&v, (const char *)p + 2 * k, 2); return v; }
void sf_emu_ldsm4(uint32_t *r, const void *p, bool trans) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    xp[w][lane] = p;
    emu_syncwarp();
    for (int i = 0; i < 4; i++) {
        uint32_t lo, hi;
        if (!trans) { /* row lane/4 of matrix i, elements 2(lane%4), +1 */
            const void *row = xp[w][i * 8 + (lane >> 2)];
            lo = ldsm_elem(row, 2 * (lane & 3)), hi = ldsm_elem(row, 2 * (lane & 3) + 1);
        } else { /* element (row 2(lane%4) (+1), column lane/4) */
            lo = ldsm_elem(xp[w][i * 8 + 2 * (lane & 3)], lane >> 2), hi = ldsm_elem(xp[w][i * 8 + 2 * (lane & 3) + 1], lane >> 2);
        }
        r[i] = lo | (hi << 16);
    }
    emu_syncwarp();
}
static uint32_t xa[32][32][4], xb[32][32][2];
static float bfbits(uint32_t reg, int half) { return __uint_as_float(((reg >> (16 * half)) & 0xffffu) << 16); }
void emu_mma(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0, uint32_t b1) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    xa[w][lane][0] = a0, xa[w][lane][1] = a1, xa[w][lane][2] = a2, xa[w][lane][3] = a3;
    xb[w][lane][0] = b0, xb[w][lane][1] = b1;
    emu_syncwarp();
    const int g = lane >> 2, t = lane & 3;
    for (int r = 0; r < 4; r++) {
        const int row = g + 8 * (r >= 2), col = 2 * t + (r & 1);
        double acc = 0;
        for (int k = 0; k < 16; k++) {
            const float a = bfbits(xa[w][(row % 8) * 4 + (k % 8) / 2][(row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0)], k & 1);
            const float b = bfbits(xb[w][col * 4 + (k % 8) / 2][k >= 8 ? 1 : 0], k & 1);
            acc += (double)a * b;
        }
        c[r] = (float)(c[r] + acc);
    }
    if (lane == 0) n_mma++;
    emu_syncwarp();
}

void emu_run_grid(dim3 grid, dim3 block, size_t smem, void (*body)(void *), void *arg) {
    if (smem > SMEM_MAX || block.y != 1 || block.z != 1 || block.x > 1024 || block.x % 32) {
        fprintf(stderr, "bad launch: smem %zu block %u\n", smem, block.x);
        abort();
    }
    gridDim = grid, blockDim = block, nthr = (int)block.x;
    for (int i = 0; i < nthr; i++)
        if (!fib[i].stack) fib[i].stack = (char *)malloc(STACK);
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                blockIdx = {x, y, z};
                memset(smem_buf, 0xff, sizeof smem_buf); /* bf16 and fp32 NaN */
                g_body = body, g_arg = arg;
                for (int i = 0; i < nthr; i++) {
                    getcontext(&fib[i].ctx);
                    fib[i].ctx.uc_stack.ss_sp = fib[i].stack;
                    fib[i].ctx.uc_stack.ss_size = STACK;
                    fib[i].ctx.uc_link = nullptr;
                    makecontext(&fib[i].ctx, trampoline, 0);
                    fib[i].state = RUN;
                }
                n_blocks++;
                for (int i = 0; i < nthr; i++) n_cp_late += (long)cp_pending[i].size(), cp_pending[i].clear(), cp_groups[i] = 0;
                for (;;) {
                    bool ran = false;
                    static const bool rev = getenv("EMU_REV") != nullptr;
                    /* EMU_SERIAL=1: only the first warp (in scheduling order) with a runnable thread
                     * runs, so a warp reaches its next block-wide barrier before the next warp starts:
                     * a missing barrier between warps shows up as a wrong or NaN result */
                    static const bool serial = getenv("EMU_SERIAL") != nullptr;
                    int only_warp = -1;
                    for (int ii = 0; serial && ii < nthr && only_warp < 0; ii++) {
                        const int i = rev ? nthr - 1 - ii : ii;
                        if (fib[i].state == RUN) only_warp = i >> 5;
                    }
                    for (int ii = 0; ii < nthr; ii++) {
                        const int i = rev ? nthr - 1 - ii : ii;
                        if (only_warp >= 0 && (i >> 5) != only_warp) continue;
                        if (fib[i].state == RUN) {
                            cur = i;
                            threadIdx = {(unsigned)i, 0, 0};
                            swapcontext(&sched_ctx, &fib[i].ctx);
                            ran = true;
                        }
                    }
                    int live = 0, atbar = 0;
                    for (int i = 0; i < nthr; i++) live += fib[i].state != DONE, atbar += fib[i].state == BAR;
                    if (!live) break;
                    bool rel = false;
                    for (int w = 0; w < nthr / 32; w++) {
                        int wl = 0, ww = 0;
                        for (int l = 0; l < 32; l++) {
                            const int s = fib[w * 32 + l].state;
                            wl += s != DONE, ww += s == WBAR;
                        }
                        if (wl && ww == wl) {
                            for (int l = 0; l < 32; l++) fib[w * 32 + l].state = RUN;
                            rel = true;
                        }
                    }
                    for (int id = 1; id <= 15; id++) { /* a named barrier opens when its count has arrived */
                        int n = 0, want = 0;
                        for (int i = 0; i < nthr; i++)
                            if (fib[i].state == NBAR && fib[i].nbar_id == id) n++, want = fib[i].nbar_count;
                        for (int i = 0; n && i < nthr; i++)
                            if (fib[i].state == NBAR && fib[i].nbar_id == id && fib[i].nbar_count != want) {
                                fprintf(stderr, "named barrier %d: thread counts differ\n", id);
                                abort();
                            }
                        if (n && n == want) {
                            for (int i = 0; i < nthr; i++)
                                if (fib[i].state == NBAR && fib[i].nbar_id == id) fib[i].state = RUN;
                            rel = true;
                        } else if (n > want) {
                            fprintf(stderr, "named barrier %d: %d threads for a count of %d\n", id, n, want);
                            abort();
                        }
                    }
                    if (atbar == live) {
                        for (int i = 0; i < nthr; i++)
                            if (fib[i].state == BAR) fib[i].state = RUN;
                        rel = true;
                    }
                    if (!ran && !rel) {
                        fprintf(stderr, "deadlock in block (%u,%u,%u)\n", x, y, z);
                        abort();
                    }
                }
            }
}

/* ---- backend stubs ---- */
static std::vector<unsigned char> scratch_buf;
cudaStream_t hk_cuda_stream(hk_backend *) { return 0; }
int hk_cuda_record(hk_backend *, cudaError_t, const char *) { return 0; }
int hk_cuda_check_launch(hk_backend *, const char *) { return 0; }
void *hk_cuda_scratch(hk_backend *, size_t bytes) {
    scratch_buf.assign(bytes + 64, 0xff); /* NaN poison */
    return (void *)(((uintptr_t)scratch_buf.data() + 15) & ~(uintptr_t)15);
}
void hk_cuda_fail(hk_backend *, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "hk_cuda_fail %d: ", code);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}
void hk_cuda_ssd_bwd(hk_backend *, void *, void *, void *, void *, void *, const void *, const void *, const void *,
                     const void *, const void *, const void *, const void *, hk_ssd_dims) {
    fprintf(stderr, "SIMT called\n");
    exit(2);
}

#include "bwd_gen.cpp" /* generated by gen.py into the build folder */

extern "C" {
void ref_ssd_fwd(hk_backend *, void *, void *, const void *, const void *, const void *, const void *, const void *,
                 hk_ssd_dims);
void ref_ssd_bwd(hk_backend *, void *, void *, void *, void *, void *, const void *, const void *, const void *,
                 const void *, const void *, const void *, const void *, hk_ssd_dims);
void ref_fail(hk_backend *, int code, const char *fmt, ...) {
    fprintf(stderr, "ref fail %d %s\n", code, fmt);
    exit(2);
}
}

static float rbf(float f) { return __bfloat162float(__float2bfloat16_rn(f)); }
static double rel(const float *a, const float *ref, size_t n, size_t stride = 1, size_t off = 0, size_t w = 1,
                  size_t rows = 0) {
    double num = 0, den = 0;
    bool nan = false;
    if (!rows) rows = n;
    for (size_t r = 0; r < rows; r++)
        for (size_t k = 0; k < w; k++) {
            const size_t i = r * stride + off + k;
            const double d = (double)a[i] - ref[i];
            if (std::isnan(a[i])) nan = true;
            num += d * d, den += (double)ref[i] * ref[i];
        }
    return nan ? NAN : std::sqrt(num / (den > 0 ? den : 1));
}

static int run(hk_ssd_dims d, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> U(-1, 1);
    const size_t NT = (size_t)d.B * d.T, W = (size_t)d.H * d.P + 2 * (size_t)d.G * d.N, HP = (size_t)d.H * d.P;
    const int nc = (d.T + d.chunk - 1) / d.chunk;
    const size_t nst = (size_t)d.B * nc * d.H * d.P * d.N;
    std::vector<float> xbc(NT * W), dt(NT * d.H), bias(d.H), alog(d.H), D(d.H), dy(NT * HP);
    for (auto &v : xbc) v = rbf(U(rng));
    for (auto &v : dt) v = rbf(U(rng));
    for (auto &v : dy) v = rbf(U(rng));
    for (auto &v : bias) v = 0.5f * U(rng);
    for (auto &v : alog) v = U(rng);
    for (auto &v : D) v = U(rng);
    std::vector<float> y(NT * HP), states(nst);
    ref_ssd_fwd(nullptr, y.data(), states.data(), xbc.data(), dt.data(), bias.data(), alog.data(), D.data(), d);
    std::vector<float> pb(3 * d.H);
    for (auto &v : pb) v = U(rng);
    std::vector<float> rdx(NT * W), rddt(NT * d.H), rb(pb.begin(), pb.begin() + d.H), ra(pb.begin() + d.H, pb.begin() + 2 * d.H),
        rD(pb.begin() + 2 * d.H, pb.end());
    ref_ssd_bwd(nullptr, rdx.data(), rddt.data(), rb.data(), ra.data(), rD.data(), dy.data(), states.data(), xbc.data(),
                dt.data(), bias.data(), alog.data(), D.data(), d);
    auto tobf = [](const std::vector<float> &v) {
        std::vector<hk_bf16> o(v.size());
        for (size_t i = 0; i < v.size(); i++) o[i] = __float2bfloat16_rn(v[i]);
        return o;
    };
    std::vector<hk_bf16> gx = tobf(xbc), gdt = tobf(dt), gdy = tobf(dy), gdx(NT * W), gddt(NT * d.H);
    memset(gdx.data(), 0xff, gdx.size() * 2);
    memset(gddt.data(), 0xff, gddt.size() * 2);
    std::vector<float> gb(pb.begin(), pb.begin() + d.H), ga(pb.begin() + d.H, pb.begin() + 2 * d.H), gD(pb.begin() + 2 * d.H, pb.end());
    hk_backend hk;
    memset(&hk, 0, sizeof hk);
    hk.act = HK_BF16;
    n_blocks = n_mma = n_cp_late = 0;
    hk_cuda_ssd_fast_bwd(&hk, gdx.data(), gddt.data(), gb.data(), ga.data(), gD.data(), gdy.data(), states.data(),
                         gx.data(), gdt.data(), bias.data(), alog.data(), D.data(), d);
    std::vector<float> fdx(NT * W), fddt(NT * d.H);
    for (size_t i = 0; i < fdx.size(); i++) fdx[i] = __bfloat162float(gdx[i]);
    for (size_t i = 0; i < fddt.size(); i++) fddt[i] = __bfloat162float(gddt[i]);
    const double ex = rel(fdx.data(), rdx.data(), 0, W, 0, HP, NT), eB = rel(fdx.data(), rdx.data(), 0, W, HP, (size_t)d.G * d.N, NT);
    const double eC = rel(fdx.data(), rdx.data(), 0, W, HP + (size_t)d.G * d.N, (size_t)d.G * d.N, NT);
    const double et = rel(fddt.data(), rddt.data(), fddt.size());
    /* parameter grads: compare the increments */
    std::vector<float> ib(d.H), ia(d.H), iD(d.H), jb(d.H), ja(d.H), jD(d.H);
    for (int h = 0; h < d.H; h++) {
        ib[h] = gb[h] - pb[h], ia[h] = ga[h] - pb[d.H + h], iD[h] = gD[h] - pb[2 * d.H + h];
        jb[h] = rb[h] - pb[h], ja[h] = ra[h] - pb[d.H + h], jD[h] = rD[h] - pb[2 * d.H + h];
    }
    const double e1 = rel(ib.data(), jb.data(), d.H), e2 = rel(ia.data(), ja.data(), d.H), e3 = rel(iD.data(), jD.data(), d.H);
    printf("%s B%d T%d H%d P%d G%d N%d Q%d: dx %.2e dB %.2e dC %.2e ddt %.2e ddt_bias %.2e dA_log %.2e dD %.2e  (%ld blocks, %ld warp-mma)\n",
           d.chunk > 256 ? "v1" : "v5", d.B, d.T, d.H, d.P, d.G, d.N, d.chunk, ex, eB, eC, et, e1, e2, e3, n_blocks, n_mma);
    for (int i = 0; i < 1024; i++) n_cp_late += (long)cp_pending[i].size(), cp_pending[i].clear();
    if (n_cp_late) printf("  %ld cp.async copies never waited for\n", n_cp_late);
    const double worst = std::max({ex, eB, eC, et, e1, e2, e3});
    const bool ok = worst <= 1e-2 && !std::isnan(ex + eB + eC + et + e1 + e2 + e3) && !n_cp_late;
    if (!ok) printf("  FAIL\n");
    return ok ? 0 : 1;
}

int main(int argc, char **argv) {
    int fails = 0;
    std::vector<hk_ssd_dims> shapes = {
        {1, 130, 2, 64, 1, 64, 64},  {2, 300, 4, 64, 1, 64, 64},  {2, 300, 4, 64, 2, 128, 64}, {2, 300, 4, 64, 1, 128, 256},
        {2, 520, 4, 64, 2, 64, 128}, {2, 100, 4, 64, 2, 128, 48}, {1, 301, 2, 64, 1, 64, 64},
        {1, 600, 2, 64, 1, 64, 512}, /* chunk > 256: the v1 path */
    };
    int only = argc > 1 ? atoi(argv[1]) : -1;
    for (size_t k = 0; k < shapes.size(); k++)
        if (only < 0 || only == (int)k) fails += run(shapes[k], 1234 + (unsigned)k);
    printf(fails ? "EMU FAILED %d\n" : "EMU OK\n", fails);
    return fails != 0;
}
