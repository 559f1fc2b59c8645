/* tests/cuda/emu/fiber_rt.h — a CUDA thread-block runtime for host emulations of kernels:
 * every CUDA thread of a block is a ucontext fiber of one OS thread, run until it blocks.
 * Header-only (one translation unit per emulator); used by wgmma_emu.h and the sm_90a
 * emulations (tests/cuda/emu/wgmma_emu_selftest.cpp, attention_sm90a_fwd_emu.cpp).
 *
 *  - Blocks of up to EMU_MAX_THREADS threads (any multiple of 32), blocks run one at a time
 *    in grid order (x fastest), so a kernel that depends on concurrent blocks deadlocks.
 *  - Schedules (emu_schedule): EMU_SCHED_FORWARD (thread 0 first), EMU_SCHED_REVERSE,
 *    EMU_SCHED_WARP (one warp runs until all its threads block, then the next warp),
 *    EMU_SCHED_RANDOM (a fresh permutation every round). A fiber runs until it reaches a
 *    synchronisation point (barrier, warp collective, wgmma collective), so a missing
 *    barrier shows up as a read of stale or poisoned data under some schedule.
 *  - Barriers: __syncthreads = named barrier 0 over the block; emu_bar_sync(id, count) and
 *    emu_bar_arrive(id, count) are PTX bar.sync / bar.arrive (count in threads, a multiple of
 *    32, the same for every arrival of one phase; checked). Deadlocks abort with a message.
 *  - Warp collectives: emu_warp_sync, shuffles (xor / idx, float / uint32).
 *  - Shared memory: one dynamic buffer (kernels declare `extern __shared__ ... name[]`; the
 *    emulator aliases the names smem, smem_raw and sm to it), filled with bf16 NaN (0x7fc1)
 *    before every block; emu_smem_addr(p) is the shared-space byte address of p (base
 *    emu_smem_base, default 0: set it to e.g. 16 to check that a kernel aligns its tiles
 *    itself instead of trusting __align__ on extern shared memory). Addresses at or past the
 *    launch's dynamic size abort.
 *  - cp.async (emu_cp_async(dst_addr, src, src_bytes, size), emu_cp_commit, emu_cp_wait(n)):
 *    the copy lands only at the wait that covers its group (reads before that see old data);
 *    with emu_cp_eager it lands at issue as well (the earliest moment), so that a copy into a
 *    tile that an in-flight wgmma still reads changes its operand (caught by wgmma_emu.h);
 *    landed bytes are marked written through the generic proxy until the writing thread
 *    executes fence.proxy.async (emu_fence_proxy_async): wgmma_emu.h refuses to read them
 *    before that. Plain st.shared stores are not tracked.
 *
 *  - A fiber also gives way (without waiting) at bar.arrive and cp.async.commit_group, for
 *    more interleavings.
 *
 * Launch: emu_launch(grid, threads, smem_bytes, [&] { kernel(args...); });
 * or emu_launcher(grid, block, smem)(kernel, args...) (what `k<<<g, b, s>>>(args)` becomes
 * after `sed 's/\([A-Za-z_][A-Za-z_0-9]*\)<<<\(.*\)>>>(/emu_launcher(\2)(\1, /'`).
 */
#ifndef HLAB_TESTS_EMU_FIBER_RT_H
#define HLAB_TESTS_EMU_FIBER_RT_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#include <algorithm>
#include <functional>
#include <vector>

struct emu_dim3 {
    unsigned x = 1, y = 1, z = 1;
    emu_dim3() {}
    emu_dim3(unsigned a, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

enum { EMU_MAX_THREADS = 1024, EMU_STACK = 256 * 1024, EMU_SMEM_MAX = 232 * 1024, EMU_NBAR = 16 };
enum { EMU_SCHED_FORWARD, EMU_SCHED_REVERSE, EMU_SCHED_WARP, EMU_SCHED_RANDOM, EMU_SCHED_COUNT };

#define emu_fail(...)                                                                    \
    do {                                                                                 \
        fprintf(stderr, "EMU ERROR (block %u,%u,%u thread %d): ", emu_block_idx.x,        \
                emu_block_idx.y, emu_block_idx.z, emu_cur ? emu_cur->tid : -1);           \
        fprintf(stderr, __VA_ARGS__);                                                    \
        fprintf(stderr, "\n");                                                           \
        abort();                                                                         \
    } while (0)

struct EmuFiber {
    ucontext_t ctx;
    int tid = 0, done = 0;
    char *stack = nullptr;
    struct Cp {
        int group;
        uint32_t dst;
        const void *src;
        uint32_t src_bytes, size;
    };
    std::vector<Cp> cps;
    int cp_group = 0;
};

inline EmuFiber emu_fib[EMU_MAX_THREADS];
inline EmuFiber *emu_cur = nullptr;
inline ucontext_t emu_sched_ctx;
inline std::function<void()> *emu_body = nullptr;
inline emu_dim3 emu_block_idx, emu_grid_dim, emu_block_dim;
inline int emu_nthreads = 0;
inline int emu_schedule = EMU_SCHED_FORWARD;
inline bool emu_cp_eager = false; /* cp.async lands at issue too (see the header) */
inline long emu_progress = 0;
inline uint32_t emu_smem_base = 0, emu_smem_bytes = 0;
alignas(1024) inline unsigned char emu_smem_buf[EMU_SMEM_MAX];
/* shared memory written through the generic proxy (cp.async) and not yet fenced by its writer:
 * per 16-byte chunk, writer tid + 1 (0: clean) */
inline std::vector<int16_t> emu_proxy_dirty(EMU_SMEM_MAX / 16 + 64);
inline unsigned long long emu_rng_state = 0x9E3779B97F4A7C15ull;

/* the shared buffer under the names kernels give their extern __shared__ array */
extern unsigned char smem[] __attribute__((alias("emu_smem_buf")));
extern unsigned char smem_raw[] __attribute__((alias("emu_smem_buf")));

inline int emu_tid() { return emu_cur->tid; }
inline void emu_yield() { swapcontext(&emu_cur->ctx, &emu_sched_ctx); }
/* a voluntary switch point (not a wait): counts as progress for the deadlock check */
inline void emu_switch() {
    emu_progress++;
    emu_yield();
}
inline unsigned emu_rand() {
    emu_rng_state ^= emu_rng_state << 13, emu_rng_state ^= emu_rng_state >> 7, emu_rng_state ^= emu_rng_state << 17;
    return (unsigned)(emu_rng_state >> 32);
}

/* ---- shared memory addresses ---------------------------------------------------------------- */
inline unsigned char *emu_smem_ptr() { return emu_smem_buf; }
inline uint32_t emu_smem_addr(const void *p) {
    const unsigned char *q = (const unsigned char *)p, *b = emu_smem_ptr();
    if (q < b || q >= b + emu_smem_bytes) emu_fail("shared address of a pointer outside the dynamic shared memory");
    return (uint32_t)(q - b) + emu_smem_base;
}
/* the host pointer of shared-space byte range [addr, addr + n) (bounds-checked) */
inline unsigned char *emu_smem_at(uint32_t addr, uint32_t n) {
    if (addr < emu_smem_base || addr - emu_smem_base + n > emu_smem_bytes)
        emu_fail("shared address %u (+%u) outside the %u bytes of dynamic shared memory", addr, n, emu_smem_bytes);
    return emu_smem_ptr() + (addr - emu_smem_base);
}

/* ---- barriers -------------------------------------------------------------------------------- */
struct EmuBarrier {
    int arrived = 0, count = 0;
    unsigned gen = 0;
};
inline EmuBarrier emu_bars[EMU_NBAR];
inline int emu_warp_cnt[EMU_MAX_THREADS / 32];
inline unsigned emu_warp_gen[EMU_MAX_THREADS / 32];

inline void emu_bar_arrive_impl(int id, int count, bool wait) {
    if (id < 0 || id >= EMU_NBAR) emu_fail("barrier id %d out of range", id);
    if (count <= 0 || count % 32 || count > emu_nthreads) emu_fail("barrier %d: bad thread count %d", id, count);
    EmuBarrier &b = emu_bars[id];
    if (b.arrived == 0) b.count = count;
    else if (b.count != count) emu_fail("barrier %d: count %d, but this phase started with %d", id, count, b.count);
    const unsigned gen = b.gen;
    emu_progress++;
    if (++b.arrived == b.count) b.arrived = 0, b.gen++;
    else if (wait)
        while (b.gen == gen) emu_yield();
    if (!wait) emu_switch(); /* let the waiters run before this thread goes on (more interleavings) */
}
inline void emu_bar_sync(int id, int count) { emu_bar_arrive_impl(id, count, true); }
inline void emu_bar_arrive(int id, int count) { emu_bar_arrive_impl(id, count, false); }
inline void emu_syncthreads() { emu_bar_sync(0, emu_nthreads); }

inline void emu_warp_sync() {
    const int w = emu_cur->tid >> 5;
    const unsigned gen = emu_warp_gen[w];
    emu_progress++;
    if (++emu_warp_cnt[w] == 32) emu_warp_cnt[w] = 0, emu_warp_gen[w]++;
    else
        while (emu_warp_gen[w] == gen) emu_yield();
}

/* ---- warp collectives ------------------------------------------------------------------------ */
inline uint32_t emu_xchg[EMU_MAX_THREADS];
inline uint32_t emu_shfl_u32(uint32_t v, int src_lane) {
    const int t = emu_cur->tid, w0 = t & ~31;
    emu_xchg[t] = v;
    emu_warp_sync();
    const uint32_t r = emu_xchg[w0 + (src_lane & 31)];
    emu_warp_sync();
    return r;
}
inline uint32_t emu_shfl_xor_u32(uint32_t v, int mask) { return emu_shfl_u32(v, (emu_cur->tid & 31) ^ mask); }
inline float emu_u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
inline uint32_t emu_f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
inline float emu_shfl_xor(float v, int mask) { return emu_u2f(emu_shfl_xor_u32(emu_f2u(v), mask)); }
inline float emu_shfl(float v, int src_lane) { return emu_u2f(emu_shfl_u32(emu_f2u(v), src_lane)); }

/* ---- cp.async ------------------------------------------------------------------------------- */
inline void emu_mark_generic_write(uint32_t addr, uint32_t n) {
    for (uint32_t a = (addr - emu_smem_base) / 16; a <= (addr - emu_smem_base + n - 1) / 16; a++)
        emu_proxy_dirty[a] = (int16_t)(emu_cur->tid + 1);
}
inline void emu_cp_async(uint32_t dst, const void *src, uint32_t src_bytes, uint32_t size) {
    if ((dst % size) || ((uintptr_t)src % size)) emu_fail("cp.async of %u bytes: misaligned address", size);
    if (src_bytes > size) emu_fail("cp.async src-size %u > %u", src_bytes, size);
    unsigned char *d = emu_smem_at(dst, size);
    if (emu_cp_eager) { /* also land now, the earliest moment the hardware may */
        memcpy(d, src, src_bytes);
        memset(d + src_bytes, 0, size - src_bytes);
        emu_mark_generic_write(dst, size);
    }
    emu_cur->cps.push_back({emu_cur->cp_group, dst, src, src_bytes, size});
}
inline void emu_cp_commit() {
    emu_cur->cp_group++;
    emu_switch(); /* copies in flight: let other threads run */
}
inline void emu_cp_wait(int n) { /* land every group but the newest n */
    std::vector<EmuFiber::Cp> keep;
    for (auto &c : emu_cur->cps) {
        if (c.group < emu_cur->cp_group - n) {
            unsigned char *d = emu_smem_at(c.dst, c.size);
            memcpy(d, c.src, c.src_bytes);
            memset(d + c.src_bytes, 0, c.size - c.src_bytes);
            emu_mark_generic_write(c.dst, c.size);
        } else keep.push_back(c);
    }
    emu_cur->cps.swap(keep);
}
inline void emu_fence_proxy_async_rt() { /* this thread's generic-proxy writes become visible to async reads */
    const int16_t me = (int16_t)(emu_cur->tid + 1);
    for (auto &d : emu_proxy_dirty)
        if (d == me) d = 0;
}
inline bool emu_proxy_is_dirty(uint32_t addr) { return emu_proxy_dirty[(addr - emu_smem_base) / 16] != 0; }

/* ---- launch ---------------------------------------------------------------------------------- */
inline std::vector<void (*)()> emu_block_start_hooks, emu_block_end_hooks; /* e.g. wgmma state checks */

inline void emu_fiber_main(int i) {
    (*emu_body)();
    emu_fib[i].done = 1;
    emu_progress++;
}

inline void emu_launch(emu_dim3 grid, int threads, size_t smem_bytes, std::function<void()> kernel) {
    if (threads <= 0 || threads > EMU_MAX_THREADS || threads % 32)
        emu_cur = nullptr, fprintf(stderr, "EMU ERROR: block of %d threads\n", threads), abort();
    if (smem_bytes > EMU_SMEM_MAX) fprintf(stderr, "EMU ERROR: %zu bytes of shared memory\n", smem_bytes), abort();
    emu_grid_dim = grid;
    emu_block_dim = emu_dim3((unsigned)threads);
    emu_nthreads = threads;
    emu_smem_bytes = (uint32_t)smem_bytes;
    emu_body = &kernel;
    std::vector<int> order(threads);
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                emu_block_idx = emu_dim3(x, y, z);
                for (size_t k = 0; k < sizeof emu_smem_buf / 2; k++) memcpy(emu_smem_buf + 2 * k, "\xc1\x7f", 2);
                std::fill(emu_proxy_dirty.begin(), emu_proxy_dirty.end(), 0);
                for (auto &b : emu_bars) b = EmuBarrier();
                memset(emu_warp_cnt, 0, sizeof emu_warp_cnt);
                for (auto h : emu_block_start_hooks) h();
                for (int i = 0; i < threads; i++) {
                    EmuFiber &f = emu_fib[i];
                    f.tid = i, f.done = 0, f.cp_group = 0, f.cps.clear();
                    if (!f.stack) f.stack = (char *)malloc(EMU_STACK);
                    getcontext(&f.ctx);
                    f.ctx.uc_stack.ss_sp = f.stack;
                    f.ctx.uc_stack.ss_size = EMU_STACK;
                    f.ctx.uc_link = &emu_sched_ctx;
                    makecontext(&f.ctx, (void (*)())emu_fiber_main, 1, i);
                }
                auto step = [&](int i) {
                    if (emu_fib[i].done) return;
                    emu_cur = &emu_fib[i];
                    swapcontext(&emu_sched_ctx, &emu_fib[i].ctx);
                    emu_cur = nullptr;
                };
                for (int live = threads; live > 0;) {
                    const long before = emu_progress;
                    for (int i = 0; i < threads; i++) order[i] = i;
                    if (emu_schedule == EMU_SCHED_REVERSE) std::reverse(order.begin(), order.end());
                    if (emu_schedule == EMU_SCHED_RANDOM)
                        for (int i = threads - 1; i > 0; i--) std::swap(order[i], order[emu_rand() % (i + 1)]);
                    if (emu_schedule == EMU_SCHED_WARP) { /* each warp until it blocks */
                        for (int w = 0; w < threads / 32; w++)
                            for (long b2 = -1; b2 != emu_progress;) {
                                b2 = emu_progress;
                                for (int l = 0; l < 32; l++) step(32 * w + l);
                            }
                    } else
                        for (int i : order) step(i);
                    live = 0;
                    for (int i = 0; i < threads; i++) live += !emu_fib[i].done;
                    if (live && emu_progress == before) {
                        fprintf(stderr, "EMU ERROR: deadlock in block (%u,%u,%u):", x, y, z);
                        for (int i = 0; i < threads; i++)
                            if (!emu_fib[i].done) fprintf(stderr, " %d", i);
                        fprintf(stderr, " still waiting\n");
                        abort();
                    }
                }
                for (int i = 0; i < threads; i++)
                    if (!emu_fib[i].cps.empty())
                        fprintf(stderr, "EMU ERROR: thread %d exited with cp.async never waited for\n", i), abort();
                for (auto h : emu_block_end_hooks) h();
                for (int i = 0; i < EMU_NBAR; i++)
                    if (emu_bars[i].arrived)
                        fprintf(stderr, "EMU ERROR: barrier %d left with %d arrivals\n", i, emu_bars[i].arrived), abort();
            }
}

struct emu_launcher {
    emu_dim3 grid, block;
    size_t smem;
    emu_launcher(emu_dim3 g, emu_dim3 b, size_t s = 0, void *stream = nullptr) : grid(g), block(b), smem(s) {
        (void)stream;
    }
    template <typename F, typename... A> void operator()(F f, A... args) {
        emu_launch(grid, (int)(block.x * block.y * block.z), smem, [&] { f(args...); });
    }
};

#endif
