/* kernels/cpu/mamba.c — STUB: replaced by the real implementation. */
#include "kernels/cpu/cpu.h"

void CPU_FN(conv1d_silu_fwd)(hk_backend *hk, void *out, const void *inp, const void *w, const void *b, int B, int T, int Cc, int K) {
    (void)out;
    (void)inp;
    (void)w;
    (void)b;
    (void)B;
    (void)T;
    (void)Cc;
    (void)K;
    CPU_FN(fail)(hk, HLAB_EUNSUPPORTED, "cpu op conv1d_silu_fwd is not implemented yet");
}

void CPU_FN(conv1d_silu_bwd)(hk_backend *hk, void *dinp, void *dw, void *db, const void *dout, const void *inp, const void *w, const void *b, int B, int T, int Cc, int K) {
    (void)dinp;
    (void)dw;
    (void)db;
    (void)dout;
    (void)inp;
    (void)w;
    (void)b;
    (void)B;
    (void)T;
    (void)Cc;
    (void)K;
    CPU_FN(fail)(hk, HLAB_EUNSUPPORTED, "cpu op conv1d_silu_bwd is not implemented yet");
}

void CPU_FN(ssd_fwd)(hk_backend *hk, void *y, void *states, const void *xbc, const void *dt, const void *dt_bias, const void *A_log, const void *Dskip, hk_ssd_dims d) {
    (void)y;
    (void)states;
    (void)xbc;
    (void)dt;
    (void)dt_bias;
    (void)A_log;
    (void)Dskip;
    (void)d;
    CPU_FN(fail)(hk, HLAB_EUNSUPPORTED, "cpu op ssd_fwd is not implemented yet");
}

void CPU_FN(ssd_bwd)(hk_backend *hk, void *dxbc, void *ddt, void *ddt_bias, void *dA_log, void *dDskip, const void *dy, const void *states, const void *xbc, const void *dt, const void *dt_bias, const void *A_log, const void *Dskip, hk_ssd_dims d) {
    (void)dxbc;
    (void)ddt;
    (void)ddt_bias;
    (void)dA_log;
    (void)dDskip;
    (void)dy;
    (void)states;
    (void)xbc;
    (void)dt;
    (void)dt_bias;
    (void)A_log;
    (void)Dskip;
    (void)d;
    CPU_FN(fail)(hk, HLAB_EUNSUPPORTED, "cpu op ssd_bwd is not implemented yet");
}

void CPU_FN(ssd_sequential_fwd)(hk_backend *hk, void *y, void *states, const void *xbc, const void *dt,
                                const void *dt_bias, const void *A_log, const void *Dskip, hk_ssd_dims d) {
    (void)y;
    (void)states;
    (void)xbc;
    (void)dt;
    (void)dt_bias;
    (void)A_log;
    (void)Dskip;
    (void)d;
    CPU_FN(fail)(hk, HLAB_EUNSUPPORTED, "cpu op ssd_sequential_fwd is not implemented yet");
}

void CPU_FN(ssd_sequential_bwd)(hk_backend *hk, void *dxbc, void *ddt, void *ddt_bias, void *dA_log,
                                void *dDskip, const void *dy, const void *states, const void *xbc, const void *dt,
                                const void *dt_bias, const void *A_log, const void *Dskip, hk_ssd_dims d) {
    (void)dxbc;
    (void)ddt;
    (void)ddt_bias;
    (void)dA_log;
    (void)dDskip;
    (void)dy;
    (void)states;
    (void)xbc;
    (void)dt;
    (void)dt_bias;
    (void)A_log;
    (void)Dskip;
    (void)d;
    CPU_FN(fail)(hk, HLAB_EUNSUPPORTED, "cpu op ssd_sequential_bwd is not implemented yet");
}

void CPU_FN(gated_rmsnorm_fwd)(hk_backend *hk, void *out, void *rstd, const void *y, const void *z, const void *w, int N, int Di, int G, float eps) {
    (void)out;
    (void)rstd;
    (void)y;
    (void)z;
    (void)w;
    (void)N;
    (void)Di;
    (void)G;
    (void)eps;
    CPU_FN(fail)(hk, HLAB_EUNSUPPORTED, "cpu op gated_rmsnorm_fwd is not implemented yet");
}

void CPU_FN(gated_rmsnorm_bwd)(hk_backend *hk, void *dy, void *dz, void *dw, const void *dout, const void *y, const void *z, const void *w, const void *rstd, int N, int Di, int G) {
    (void)dy;
    (void)dz;
    (void)dw;
    (void)dout;
    (void)y;
    (void)z;
    (void)w;
    (void)rstd;
    (void)N;
    (void)Di;
    (void)G;
    CPU_FN(fail)(hk, HLAB_EUNSUPPORTED, "cpu op gated_rmsnorm_bwd is not implemented yet");
}
