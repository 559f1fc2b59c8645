/* kernels/cpu/moe.c — STUB: replaced by the real implementation. */
#include "kernels/cpu/cpu.h"

size_t CPU_FN(moe_cache_bytes)(hk_backend *hk, hk_moe_dims d) {
    (void)d;
    CPU_FN(fail)(hk, HLAB_EUNSUPPORTED, "cpu op moe_cache_bytes is not implemented yet");
    return 0;
}

void CPU_FN(moe_fwd)(hk_backend *hk, void *out, void *aux, void *cache, const void *inp, const void *w_router, const void *w13, const void *w2, const void *ws13, const void *ws2, hk_moe_dims d) {
    (void)out;
    (void)aux;
    (void)cache;
    (void)inp;
    (void)w_router;
    (void)w13;
    (void)w2;
    (void)ws13;
    (void)ws2;
    (void)d;
    CPU_FN(fail)(hk, HLAB_EUNSUPPORTED, "cpu op moe_fwd is not implemented yet");
}

void CPU_FN(moe_bwd)(hk_backend *hk, void *dinp, void *dw_router, void *dw13, void *dw2, void *dws13, void *dws2, const void *dout, float daux, const void *cache, const void *inp, const void *w_router, const void *w13, const void *w2, const void *ws13, const void *ws2, hk_moe_dims d) {
    (void)dinp;
    (void)dw_router;
    (void)dw13;
    (void)dw2;
    (void)dws13;
    (void)dws2;
    (void)dout;
    (void)daux;
    (void)cache;
    (void)inp;
    (void)w_router;
    (void)w13;
    (void)w2;
    (void)ws13;
    (void)ws2;
    (void)d;
    CPU_FN(fail)(hk, HLAB_EUNSUPPORTED, "cpu op moe_bwd is not implemented yet");
}
