#include "kernels/kernels.h"
typedef float real;
#define CPU_FN(name) ref_##name
void ref_fail(hk_backend *hk, int code, const char *fmt, ...);
