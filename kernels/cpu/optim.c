/* kernels/cpu/optim.c — softmax cross-entropy, the squared-norm reduction,
 * AdamW and the step statistics (loss_reduce, grad_clip_scale), CPU backend.
 *
 * Conventions: `real` pointers (A = R on the CPU). Row reductions (max, sum of
 * exps) and sumsq accumulate in double. sumsq sums fixed blocks and reduces
 * the block partials in order, so it does not depend on the thread count.
 * The step statistics are doubles computed exactly as the training loop did on
 * the host before they moved here (same order, same roundings), so CPU training
 * is bit for bit what it was.
 */
#include <stdlib.h>
#include <string.h>
#include <tgmath.h>

#include "kernels/cpu/cpu.h"

#define PAR_MIN 16384
#define SUMSQ_BLOCK 8192

/* ---- cross-entropy ------------------------------------------------------------- */

/* log Σ_v exp(x_v), shifted by the row max; *mx receives the max. */
static double row_logsumexp(const real *x, int V, double *mx) {
    double m = x[0];
    for (int v = 1; v < V; v++)
        if (x[v] > m) m = x[v];
    double s = 0;
    for (int v = 0; v < V; v++) s += exp((double)x[v] - m);
    *mx = m;
    return m + log(s);
}

static int targets_ok(hk_backend *hk, const char *op, const int32_t *targets, int N, int V) {
    if (N <= 0 || V <= 0) {
        CPU_FN(fail)(hk, HLAB_EINVAL, "%s: bad sizes N=%d V=%d (expected both > 0)", op, N, V);
        return 0;
    }
    for (int n = 0; n < N; n++)
        if (targets[n] < 0 || targets[n] >= V) {
            CPU_FN(fail)(hk, HLAB_EINVAL, "%s: target %d at row %d (expected 0 <= target < %d)", op, targets[n], n, V);
            return 0;
        }
    return 1;
}

/* One row's loss, from its log-sum-exp in double. */
static real row_loss(const real *x, double lse, int target) { return (real)(lse - x[target]); }

/* One row's gradient from its log-sum-exp rounded to real. dx may alias x: each
 * element is read before it is written, and the one-hot term comes last. */
static void row_grad(real *dx, const real *x, int V, real lse, real dloss, int target) {
    for (int v = 0; v < V; v++) dx[v] = dloss * exp(x[v] - lse);
    dx[target] -= dloss;
}

/* xent_fwd, xent_bwd and xent_fwd_bwd share the per-row code above, so the fused
 * op gives exactly the bits of the two separate ones. */
void CPU_FN(xent_fwd)(hk_backend *hk, void *losses_, const void *logits_, const int32_t *targets, int N, int V) {
    if (!targets_ok(hk, "xent_fwd", targets, N, V)) return;
    real *losses = losses_;
    const real *logits = logits_;
    #pragma omp parallel for if ((size_t)N * V >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        const real *x = logits + (size_t)n * V;
        double mx;
        losses[n] = row_loss(x, row_logsumexp(x, V, &mx), targets[n]);
    }
}

/* Reads the whole row (max, sum) before writing it, so dlogits may alias logits. */
void CPU_FN(xent_bwd)(hk_backend *hk, void *dlogits_, const void *logits_, const int32_t *targets, float dloss, int N,
                      int V) {
    if (!targets_ok(hk, "xent_bwd", targets, N, V)) return;
    real *dlogits = dlogits_;
    const real *logits = logits_;
    #pragma omp parallel for if ((size_t)N * V >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        const real *x = logits + (size_t)n * V;
        double mx;
        row_grad(dlogits + (size_t)n * V, x, V, (real)row_logsumexp(x, V, &mx), (real)dloss, targets[n]);
    }
}

/* The loss is taken before the gradient overwrites the row (dlogits may alias logits). */
void CPU_FN(xent_fwd_bwd)(hk_backend *hk, void *losses_, void *dlogits_, const void *logits_, const int32_t *targets,
                          float dloss, int N, int V) {
    if (!targets_ok(hk, "xent_fwd_bwd", targets, N, V)) return;
    real *losses = losses_, *dlogits = dlogits_;
    const real *logits = logits_;
    #pragma omp parallel for if ((size_t)N * V >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        const real *x = logits + (size_t)n * V;
        double mx;
        const double lse = row_logsumexp(x, V, &mx);
        losses[n] = row_loss(x, lse, targets[n]);
        row_grad(dlogits + (size_t)n * V, x, V, (real)lse, (real)dloss, targets[n]);
    }
}

/* ---- optimiser -------------------------------------------------------------------- */

double CPU_FN(sumsq)(hk_backend *hk, const void *x_, size_t n) {
    const real *x = x_;
    if (n == 0) return 0;
    const size_t nblocks = (n + SUMSQ_BLOCK - 1) / SUMSQ_BLOCK;
    double *partial = malloc(nblocks * sizeof(double));
    if (!partial) {
        CPU_FN(fail)(hk, HLAB_ENOMEM, "sumsq: out of host memory for %zu partial sums", nblocks);
        return NAN;
    }
    #pragma omp parallel for if (n >= PAR_MIN)
    for (size_t blk = 0; blk < nblocks; blk++) {
        const size_t i1 = (blk + 1) * SUMSQ_BLOCK < n ? (blk + 1) * SUMSQ_BLOCK : n;
        double s = 0;
        for (size_t i = blk * SUMSQ_BLOCK; i < i1; i++) s += (double)x[i] * x[i];
        partial[blk] = s;
    }
    double total = 0;
    for (size_t blk = 0; blk < nblocks; blk++) total += partial[blk];
    free(partial);
    return total;
}

void CPU_FN(adamw)(hk_backend *hk, void *params_, const void *grads_, void *m_, void *v_, void *mirror, size_t n,
                   float lr, float b1, float b2, float eps, float wd, int step, float grad_scale,
                   const void *scale_dev) {
    if (step < 1) {
        CPU_FN(fail)(hk, HLAB_EINVAL, "adamw: step %d (expected >= 1, the step is 1-based)", step);
        return;
    }
    if (scale_dev) {
        const double s = *(const double *)scale_dev;
        if (!isfinite(s)) return; /* a diverged step: leave everything as it was */
        grad_scale = (float)s;
    }
    real *p = params_, *m = m_, *v = v_;
    const real *g = grads_;
    const real c1 = (real)(1.0 / (1.0 - pow((double)b1, step)));
    const real c2 = (real)(1.0 / (1.0 - pow((double)b2, step)));
    const real rb1 = b1, rb2 = b2, rlr = lr, reps = eps, rwd = wd, rgs = grad_scale;
    #pragma omp parallel for if (n >= PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        const real gi = rgs * g[i];
        const real mi = rb1 * m[i] + (1 - rb1) * gi;
        const real vi = rb2 * v[i] + (1 - rb2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= rlr * ((mi * c1) / (sqrt(vi * c2) + reps) + rwd * p[i]);
    }
    /* On the CPU the mirror's dtype A is the master dtype R: a plain copy. */
    if (mirror && mirror != params_) memcpy(mirror, p, n * sizeof(real));
}

/* ---- step statistics ---------------------------------------------------------------- */

void CPU_FN(loss_reduce)(hk_backend *hk, void *stat_, const void *losses_, int N, const void *aux_, int n_aux) {
    if (N <= 0 || n_aux < 0 || (n_aux > 0 && !aux_)) {
        CPU_FN(fail)(hk, HLAB_EINVAL, "loss_reduce: N=%d n_aux=%d aux=%p (expected N > 0, aux for n_aux > 0)", N,
                     n_aux, aux_);
        return;
    }
    const real *losses = losses_, *aux = aux_;
    double *stat = stat_;
    double ce = 0, aux_sum = 0;
    for (int i = 0; i < N; i++) ce += (double)losses[i]; /* sequential: the host's former order */
    for (int j = 0; j < n_aux; j++) aux_sum += (double)aux[j];
    ce /= N;
    stat[0] = ce + aux_sum;
    stat[1] = aux_sum;
}

void CPU_FN(grad_clip_scale)(hk_backend *hk, void *stat_, const void *grads, size_t n, const void *micro_loss_,
                             int n_micro, float clip) {
    if (n_micro < 1) {
        CPU_FN(fail)(hk, HLAB_EINVAL, "grad_clip_scale: %d micro-batches (expected >= 1)", n_micro);
        return;
    }
    const double *micro_loss = micro_loss_;
    double *stat = stat_;
    double loss_sum = 0;
    for (int k = 0; k < n_micro; k++) loss_sum += (float)micro_loss[k];
    const double loss = loss_sum / n_micro;
    const double norm = sqrt(CPU_FN(sumsq)(hk, grads, n)) / n_micro;
    double scale = 1.0 / n_micro;
    if (clip > 0 && norm > clip) scale *= clip / norm;
    stat[0] = loss;
    stat[1] = norm;
    stat[2] = isfinite(loss) && isfinite(norm) ? (double)(float)scale : NAN;
}
