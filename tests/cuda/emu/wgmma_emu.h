/* tests/cuda/emu/wgmma_emu.h — host emulation of Hopper wgmma (the WG_EMU half of
 * kernels/cuda/sm90a/wgmma.cuh), on the fiber runtime of fiber_rt.h.
 *
 * USAGE (an emulator for an sm_90a kernel file K.cu):
 *     g++ -std=c++17 -O1 -DWG_EMU -I tests/cuda/emu/sm90a_inc -I . -x c++ my_emu.cpp
 *   with my_emu.cpp:
 *     #include "tests/cuda/emu/wgmma_emu.h"      // first: fiber runtime + emu_wgmma_* + emu_smem_addr
 *     #include "kernels/cuda/sm90a/K.cu"          // sm90a_inc shims common.cuh / cuda_ops.h
 *     ... emu_launch(dim3 grid, threads, smem_bytes, [&] { my_kernel(args...); });
 *   - Kernels take shared memory ONLY from one `extern __shared__ ... smem[]` (or smem_raw[],
 *     sm[]) array: non-extern __shared__ variables would be per-thread here.
 *   - Host code that launches with <<<>>> cannot compile; keep it under #ifndef WG_EMU, or pass
 *     the file through the sed line in fiber_rt.h (as wgmma_emu_selftest.cpp does).
 *   - cp.async / named barriers: kernels/cuda/sm90a/sm90a_async.cuh (wg_cp_async16, wg_cp_commit,
 *     wg_cp_wait<n>, wg_bar_sync(id, count), wg_bar_arrive(id, count)) map onto fiber_rt.h here.
 *   - emu_schedule = EMU_SCHED_* before a launch varies the thread interleaving;
 *     emu_smem_base = 16 moves the shared window off 1024-byte alignment (a kernel that aligns
 *     its SW128 tiles itself must still pass).
 *   - Self-test: tests/cuda/emu/wgmma_emu_selftest.sh (the device probe kernel under emulation).
 *
 * What is emulated and checked:
 *   - wgmma.mma_async m64nNk16 bf16 → f32, `ss` and `rs`, every swizzle mode, K- and MN-major
 *     operands (tnsp), decoded from the 64-bit descriptors exactly as the hardware does (start
 *     address >> 4 in bits 0-13, LBO >> 4 in 16-29, SBO >> 4 in 32-45, swizzle in 62-63; the
 *     swizzle XORs 16-byte chunk bits [4:6] (SW128; [4:5] SW64, [4] SW32) of the ABSOLUTE
 *     shared address with bits [7:9] ([7:8], [7]); canonical layouts of CUTLASS's
 *     make_gmma_desc). Reserved bits and the base offset (49-51) must be zero.
 *   - Warpgroup-collective: the 128 threads of a warpgroup (threads 128w..128w+127; a block may
 *     end with a partial group of warps, e.g. a producer warp, that issues no wgmma) must call
 *     every emu_wgmma_* together with identical descriptors / N / transpose / scale-d
 *     (otherwise: abort). A registers (rs) are captured at issue; the shared-memory operands are
 *     read at issue AND again when the group completes (wg_wait): if they differ the kernel
 *     changed an operand while the wgmma was in flight (or issued before the data was there):
 *     abort. Shared bytes landed by cp.async and not yet fenced by their writer with
 *     fence.proxy.async are refused (abort).
 *   - Asynchrony: at issue the accumulator registers are saved and overwritten with a
 *     signalling NaN (0x7fa0dead); the products are computed at the wg_wait that completes their
 *     group (committed groups in order; uncommitted ops stay pending); only then are the
 *     registers written. Reading them in between yields NaN; writing them in between aborts.
 *   - wg_arrive (wgmma.fence) is required before the first wgmma after a wg_wait (and at the
 *     start), a little stricter than PTX (which needs it only when the registers were touched).
 *   - Every wgmma must be waited for before the thread exits (abort otherwise).
 *   Products: exact bf16 products summed in double, added to the fp32 accumulator, rounded once.
 */
#ifndef HLAB_TESTS_EMU_WGMMA_EMU_H
#define HLAB_TESTS_EMU_WGMMA_EMU_H

#include <map>

#include "tests/cuda/emu/fiber_rt.h"

enum { EMU_WG_POISON = 0x7fa0dead };

struct EmuWgOp {
    int n = 0, rs = 0, ta = 0, tb = 0, scale_d = 0, group = -1;
    uint64_t da = 0, db = 0;
    float *d[128];
    std::vector<float> A, B; /* A[64][16], B[n][16] as read at issue */
};

struct EmuWgState {
    std::vector<EmuWgOp> pending;
    int next_group = 0;
    int arrived = 0;
    unsigned gen = 0;
    /* per-thread arguments of the collective being formed */
    int kind[128], n[128], ta[128], tb[128], scale_d[128], waitn[128];
    uint64_t da[128], db[128];
    float *d[128];
    uint32_t a[128][4];
    bool fenced[128];
    std::map<float *, std::vector<float>> shadow; /* accumulators of pending ops: value so far */
};
inline std::vector<EmuWgState> emu_wg(EMU_MAX_THREADS / 128);

inline float emu_bf16_to_float(uint16_t b) { return emu_u2f((uint32_t)b << 16); }

/* Shared-space byte address of element (mn, k) (k < 16) of a wgmma operand described by desc. */
inline uint32_t emu_wg_elem_addr(uint64_t desc, int tnsp, int mn, int k) {
    const uint32_t start = (uint32_t)(desc & 0x3FFF) << 4, lbo = (uint32_t)((desc >> 16) & 0x3FFF) << 4,
                   sbo = (uint32_t)((desc >> 32) & 0x3FFF) << 4;
    const int sw = (int)(desc >> 62);
    if (desc & 0x3FFFC000C000C000ull) emu_fail("wgmma descriptor %#llx: reserved or base-offset bits set", (unsigned long long)desc);
    const uint32_t W = sw == 1 ? 128 : sw == 2 ? 64 : sw == 3 ? 32 : 16; /* bytes per swizzle row */
    uint32_t a;
    if (!tnsp) { /* K-major: rows of the MN index, k contiguous */
        if (sw) a = start + (uint32_t)(mn % 8) * W + (uint32_t)(mn / 8) * sbo + 2u * (uint32_t)k;
        else a = start + (uint32_t)(mn % 8) * 16 + (uint32_t)(mn / 8) * sbo + (uint32_t)(k % 8) * 2 + (uint32_t)(k / 8) * lbo;
    } else { /* MN-major: rows of k, the MN index contiguous */
        if (sw) {
            const uint32_t per = W / 2; /* MN elements per row */
            a = start + 2u * (uint32_t)(mn % per) + (uint32_t)(mn / per) * lbo + (uint32_t)(k % 8) * W + (uint32_t)(k / 8) * sbo;
        } else
            a = start + 2u * (uint32_t)(mn % 8) + (uint32_t)(mn / 8) * sbo + (uint32_t)(k % 8) * 16 + (uint32_t)(k / 8) * lbo;
    }
    if (sw == 1) a ^= ((a >> 7) & 7u) << 4;
    else if (sw == 2) a ^= ((a >> 7) & 3u) << 4;
    else if (sw == 3) a ^= ((a >> 7) & 1u) << 4;
    return a;
}

/* rows × 16 operand from shared memory, [row][k] */
inline void emu_wg_gather(std::vector<float> &out, uint64_t desc, int tnsp, int rows) {
    out.resize((size_t)rows * 16);
    for (int r = 0; r < rows; r++)
        for (int k = 0; k < 16; k++) {
            const uint32_t a = emu_wg_elem_addr(desc, tnsp, r, k);
            if (a & 1) emu_fail("wgmma operand address %u odd", a);
            const unsigned char *p = emu_smem_at(a, 2);
            if (emu_proxy_is_dirty(a))
                emu_fail("wgmma reads shared address %u written by cp.async without a later fence.proxy.async by its "
                         "writer (wg_fence_proxy_async after the wait, then a barrier)",
                         a);
            uint16_t v;
            memcpy(&v, p, 2);
            out[(size_t)r * 16 + k] = emu_bf16_to_float(v);
        }
}

inline bool emu_same_bits(const std::vector<float> &x, const std::vector<float> &y) {
    return x.size() == y.size() && memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
}

/* The last thread of the warpgroup to arrive runs fn (with every thread's arguments in place). */
template <typename F> inline void emu_wg_collective(int kind, F fn) {
    const int t = emu_cur->tid, w = t / 128;
    if ((w + 1) * 128 > emu_nthreads) emu_fail("wgmma by thread %d: its warpgroup is not complete (block of %d threads)", t, emu_nthreads);
    EmuWgState &s = emu_wg[w];
    s.kind[t % 128] = kind;
    const unsigned gen = s.gen;
    emu_progress++;
    if (++s.arrived == 128) {
        for (int i = 1; i < 128; i++)
            if (s.kind[i] != s.kind[0]) emu_fail("warpgroup %d: threads disagree on the wgmma operation (%d vs %d)", w, s.kind[i], s.kind[0]);
        fn(s);
        s.arrived = 0, s.gen++;
    } else
        while (s.gen == gen) emu_yield();
}

inline void emu_wg_issue(EmuWgState &s, int rs) {
    for (int i = 1; i < 128; i++)
        if (s.n[i] != s.n[0] || s.ta[i] != s.ta[0] || s.tb[i] != s.tb[0] || s.scale_d[i] != s.scale_d[0] ||
            s.db[i] != s.db[0] || (!rs && s.da[i] != s.da[0]))
            emu_fail("wgmma: thread %d of the warpgroup passed other descriptors / shape than thread 0", i);
    for (int i = 0; i < 128; i++)
        if (!s.fenced[i]) emu_fail("wgmma issued without wg_arrive (wgmma.fence) since the last wg_wait");
    EmuWgOp op;
    op.n = s.n[0], op.rs = rs, op.ta = s.ta[0], op.tb = s.tb[0], op.scale_d = s.scale_d[0], op.da = s.da[0], op.db = s.db[0];
    if (op.n % 8 || op.n < 8 || op.n > 256) emu_fail("wgmma N = %d", op.n);
    if (rs) {
        op.A.assign(64 * 16, 0.f);
        for (int i = 0; i < 128; i++) {
            const int w = i / 32, l = i % 32, g = l / 4, t4 = l % 4;
            const int rr[4] = {g, g + 8, g, g + 8}, cc[4] = {2 * t4, 2 * t4, 2 * t4 + 8, 2 * t4 + 8};
            for (int r = 0; r < 4; r++) {
                op.A[(16 * w + rr[r]) * 16 + cc[r]] = emu_bf16_to_float((uint16_t)(s.a[i][r] & 0xffff));
                op.A[(16 * w + rr[r]) * 16 + cc[r] + 1] = emu_bf16_to_float((uint16_t)(s.a[i][r] >> 16));
            }
        }
    } else
        emu_wg_gather(op.A, op.da, op.ta, 64);
    emu_wg_gather(op.B, op.db, op.tb, op.n);
    for (int i = 0; i < 128; i++) {
        float *d = s.d[i];
        op.d[i] = d;
        auto it = s.shadow.find(d);
        if (it == s.shadow.end()) { /* first pending op on these registers: save, poison */
            s.shadow[d] = std::vector<float>(d, d + op.n / 2);
            for (int e = 0; e < op.n / 2; e++) d[e] = emu_u2f(EMU_WG_POISON);
        } else if ((int)it->second.size() != op.n / 2)
            emu_fail("wgmma: accumulator in flight with another N");
    }
    s.pending.push_back(std::move(op));
}

inline void emu_wg_execute(EmuWgState &s, EmuWgOp &op) {
    if (!op.rs) {
        std::vector<float> A2;
        emu_wg_gather(A2, op.da, op.ta, 64);
        if (!emu_same_bits(A2, op.A)) emu_fail("wgmma: shared-memory operand A changed between issue and wait");
    }
    std::vector<float> B2;
    emu_wg_gather(B2, op.db, op.tb, op.n);
    if (!emu_same_bits(B2, op.B)) emu_fail("wgmma: shared-memory operand B changed between issue and wait");
    for (int i = 0; i < 128; i++) {
        std::vector<float> &acc = s.shadow[op.d[i]];
        const int w = i / 32, l = i % 32;
        for (int j = 0; j < op.n / 8; j++)
            for (int e = 0; e < 4; e++) {
                const int r = 16 * w + l / 4 + 8 * (e >> 1), c = 8 * j + 2 * (l % 4) + (e & 1);
                double sum = 0;
                for (int k = 0; k < 16; k++) sum += (double)op.A[r * 16 + k] * (double)op.B[c * 16 + k];
                float &dv = acc[4 * j + e];
                dv = (float)((op.scale_d ? (double)dv : 0.0) + sum);
            }
    }
}

inline void emu_wgmma_ss(int n, int ta, int tb, float *d, uint64_t da, uint64_t db, int scale_d) {
    EmuWgState &s = emu_wg[emu_cur->tid / 128];
    const int i = emu_cur->tid % 128;
    s.n[i] = n, s.ta[i] = ta, s.tb[i] = tb, s.d[i] = d, s.da[i] = da, s.db[i] = db, s.scale_d[i] = scale_d;
    emu_wg_collective(1, [](EmuWgState &st) { emu_wg_issue(st, 0); });
}
inline void emu_wgmma_rs(int n, int tb, float *d, const uint32_t *a, uint64_t db, int scale_d) {
    EmuWgState &s = emu_wg[emu_cur->tid / 128];
    const int i = emu_cur->tid % 128;
    s.n[i] = n, s.ta[i] = 0, s.tb[i] = tb, s.d[i] = d, s.da[i] = 0, s.db[i] = db, s.scale_d[i] = scale_d;
    memcpy(s.a[i], a, sizeof s.a[i]);
    emu_wg_collective(2, [](EmuWgState &st) { emu_wg_issue(st, 1); });
}
inline void emu_wgmma_arrive() {
    emu_wg_collective(3, [](EmuWgState &st) {
        for (int i = 0; i < 128; i++) st.fenced[i] = true;
    });
}
inline void emu_wgmma_commit() {
    emu_wg_collective(4, [](EmuWgState &st) {
        bool any = false;
        for (auto &op : st.pending)
            if (op.group < 0) op.group = st.next_group, any = true;
        if (any) st.next_group++;
    });
}
inline void emu_wgmma_wait(int n) {
    EmuWgState &s0 = emu_wg[emu_cur->tid / 128];
    s0.waitn[emu_cur->tid % 128] = n;
    emu_wg_collective(5, [](EmuWgState &st) {
        const int n = st.waitn[0];
        for (int i = 1; i < 128; i++)
            if (st.waitn[i] != n) emu_fail("wgmma.wait_group: threads disagree on the count");
        std::vector<int> groups;
        for (auto &op : st.pending)
            if (op.group >= 0 && (groups.empty() || groups.back() != op.group)) groups.push_back(op.group);
        const int complete = (int)groups.size() - n;
        if (complete > 0) {
            const int last = groups[complete - 1];
            std::vector<EmuWgOp> keep;
            for (auto &op : st.pending) {
                if (op.group >= 0 && op.group <= last) emu_wg_execute(st, op);
                else keep.push_back(std::move(op));
            }
            st.pending.swap(keep);
        }
        /* registers whose chain has nothing pending any more get their values */
        for (auto it = st.shadow.begin(); it != st.shadow.end();) {
            bool busy = false;
            for (auto &op : st.pending)
                for (int i = 0; i < 128 && !busy; i++) busy = op.d[i] == it->first;
            if (busy) {
                ++it;
                continue;
            }
            float *d = it->first;
            for (size_t e = 0; e < it->second.size(); e++) {
                if (emu_f2u(d[e]) != (uint32_t)EMU_WG_POISON)
                    emu_fail("accumulator registers of a wgmma were written while it was in flight (before its wg_wait)");
                d[e] = it->second[e];
            }
            it = st.shadow.erase(it);
        }
        for (int i = 0; i < 128; i++) st.fenced[i] = false;
    });
}
inline void emu_fence_proxy_async() { emu_fence_proxy_async_rt(); }

inline void emu_wg_block_start() {
    for (auto &s : emu_wg) {
        if (!s.pending.empty()) {
            fprintf(stderr, "EMU ERROR: a block ended with %zu wgmma operations never waited for\n", s.pending.size());
            abort();
        }
        s.pending.clear(), s.shadow.clear(), s.next_group = 0, s.arrived = 0;
        for (int i = 0; i < 128; i++) s.fenced[i] = false;
    }
}
inline bool emu_wg_registered = (emu_block_start_hooks.push_back(emu_wg_block_start),
                                  emu_block_end_hooks.push_back(emu_wg_block_start), true);

#endif
