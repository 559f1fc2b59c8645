/* cli/cmd_train.c — `hlab train POINT.yaml [--KEY VALUE ...]`: trains one
 * design point and prints progress and a summary. All logic lives in
 * train/ (hlab_point_*, hlab_train_run); this file parses argv and prints.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "train/train.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: hlab train [POINT.yaml] [--KEY VALUE ...] [options]\n\n"
            "Trains one design point. POINT.yaml holds model, train and data sections;\n"
            "any dotted key overrides a field: --model.d_model 128 --train.steps=300.\n"
            "docs/TRAINING.md lists every key.\n\n"
            "options:\n"
            "  --device SPEC    cpu | cpu-f64 | cuda | cuda:N | auto (default: auto)\n"
            "  --ckpt FILE      checkpoint: resumed from when present and matching, written\n"
            "                   every train.ckpt_every steps, at the end and on Ctrl-C\n"
            "  --metrics FILE   write every progress event as tab-separated values\n"
            "  --quiet          print only the summary\n"
            "  --help           this text\n\n"
            "exit codes: 0 done, 1 diverged, 2 bad input, 3 environment, 130 interrupted (resumable)\n");
}



typedef struct {
    int quiet;
    FILE *metrics;
} progress;

static int on_event(void *user, const hlab_train_event *ev) {
    progress *p = user;
    if (p->metrics)
        fprintf(p->metrics, "%d\t%.9g\t%.9g\t%.9g\t%.9g\t%.9g\t%.1f\n", ev->step, ev->loss, ev->lr, ev->grad_norm,
                ev->val_loss, ev->val_bpb, ev->tokens_per_s);
    if (p->metrics) fflush(p->metrics); /* readable while the run goes on */
    if (!p->quiet) {
        char tps[32], eta[32];
        cli_si(tps, sizeof tps, ev->tokens_per_s);
        cli_duration(eta, sizeof eta, ev->eta_s);
        printf("step %5d/%d  loss %.4f  lr %.2e  gnorm %.3f  %s tok/s  ETA %s", ev->step, ev->steps, ev->loss, ev->lr,
               ev->grad_norm, tps, eta);
        if (!isnan(ev->val_loss)) {
            printf("  val %.4f", ev->val_loss);
            if (!isnan(ev->val_bpb)) printf(" (%.3f bpb)", ev->val_bpb);
        }
        printf("\n");
        fflush(stdout);
    }
    return cli_stop_requested();
}

/* Polled every step: Ctrl-C stops within one step, not at the next log line. */
static int stop_poll(void *user) {
    (void)user;
    return cli_stop_requested();
}

static void summary(const hlab_train_result *r, const char *device) {
    char a[32], b[32], c[32], d[32];
    printf("done: %d steps in %.1f s on %s\n", r->steps_done, r->wall_s, device);
    printf("  val loss      %.4f", r->val_loss);
    if (!isnan(r->val_bpb)) printf("  (%.4f bits per byte)", r->val_bpb);
    printf("\n");
    if (!isnan(r->train_loss)) printf("  train loss    %.4f\n", r->train_loss);
    cli_si(a, sizeof a, (double)r->counts.params);
    cli_si(b, sizeof b, (double)r->counts.params_non_embedding);
    printf("  params        %s total, %s non-embedding (%lld, %lld)\n", a, b, (long long)r->counts.params,
           (long long)r->counts.params_non_embedding);
    cli_si(a, sizeof a, r->counts.train_flops_per_token);
    cli_si(b, sizeof b, r->counts.fwd_matmul_flops_per_token);
    cli_si(c, sizeof c, r->counts.fwd_attn_flops_per_token);
    cli_si(d, sizeof d, r->counts.fwd_ssd_flops_per_token);
    printf("  FLOPs/token   %s train = 3 x (matmul %s + attention %s + SSD %s)\n", a, b, c, d);
    cli_si(a, sizeof a, r->tokens_per_s);
    cli_si(b, sizeof b, r->train_flops);
    if (r->tokens_per_s > 0) printf("  throughput    %s tokens/s (%s training FLOPs in all)\n", a, b);
    else printf("  throughput    (nothing left to train: the checkpoint had reached the last step)\n");
    printf("  peak memory   %.1f MiB\n", (double)r->peak_bytes / (1024.0 * 1024.0));
}

int cmd_train(int argc, char **argv) {
    hlab_point point;
    hlab_point_defaults(&point);
    const char *yaml = NULL, *device = "auto", *ckpt = NULL, *metrics_path = NULL;
    int quiet = 0;
    hlab_err err = {0};

    /* Pass 1: options and the YAML path; pass 2 applies overrides after the YAML. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return HLAB_EXIT_OK;
        }
        if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            quiet = 1;
            continue;
        }
        if (strncmp(a, "--", 2)) {
            if (yaml) {
                cli_error("hlab train: more than one POINT.yaml ('%s' and '%s')", yaml, a);
                return HLAB_EXIT_USAGE;
            }
            yaml = a;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t klen = eq ? (size_t)(eq - a) : strlen(a);
        const char *value = eq ? eq + 1 : (i + 1 < argc ? argv[i + 1] : NULL);
        if (!value) {
            cli_error("hlab train: %s needs a value", a);
            return HLAB_EXIT_USAGE;
        }
        if (!eq) i++;
        if (klen == 8 && !strncmp(a, "--device", klen)) device = value;
        else if (klen == 6 && !strncmp(a, "--ckpt", klen)) ckpt = value;
        else if (klen == 9 && !strncmp(a, "--metrics", klen)) metrics_path = value;
        else if (!memchr(a, '.', klen)) {
            cli_error("hlab train: unknown option '%.*s' (try: hlab train --help)", (int)klen, a);
            return HLAB_EXIT_USAGE;
        }
    }
    if (yaml && hlab_point_load(yaml, &point, &err)) {
        cli_error("%s", err.msg);
        return cli_exit_code(err.code);
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2)) continue;
        const char *eq = strchr(a, '=');
        size_t klen = eq ? (size_t)(eq - a) : strlen(a);
        int takes_value = strcmp(a, "--quiet") != 0;
        const char *value = eq ? eq + 1 : (takes_value && i + 1 < argc ? argv[i + 1] : NULL);
        if (takes_value && !eq) i++;
        if (!memchr(a, '.', klen)) continue; /* --device, --ckpt, ... handled above */
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)klen - 2, a + 2);
        if (hlab_point_set_str(&point, key, value, &err)) {
            cli_error("%s", err.msg);
            return HLAB_EXIT_USAGE;
        }
    }
    if (!point.data.train[0]) {
        cli_error("hlab train: no training data: set data.train in POINT.yaml or pass --data.train FILE");
        return HLAB_EXIT_USAGE;
    }

    if (hlab_train_config_validate(&point.train, &err)) {
        cli_error("%s", err.msg);
        return cli_exit_code(err.code);
    }
    hk_backend *hk = hk_open(device, &err);
    if (!hk) {
        cli_error("%s", err.msg);
        return cli_exit_code(err.code ? err.code : HLAB_EDEVICE);
    }
    progress prog = {quiet, NULL};
    if (metrics_path) {
        prog.metrics = fopen(metrics_path, "w");
        if (!prog.metrics) {
            cli_error("%s: cannot create the metrics file", metrics_path);
            hk_destroy(hk);
            return HLAB_EXIT_USAGE;
        }
        fprintf(prog.metrics, "step\tloss\tlr\tgrad_norm\tval_loss\tval_bpb\ttokens_per_s\n");
    }
    if (quiet) hlab_log_set_level(HLAB_LOG_WARN);
    if (!quiet)
        printf("training %s on %s: %d steps of %d x %d tokens%s%s\n", yaml ? yaml : "(flags only)", hk->name,
               point.train.steps, point.train.batch * point.train.grad_accum, point.train.seq_len,
               ckpt ? ", checkpoint " : "", ckpt ? ckpt : "");
    cli_install_stop_handler();
    hlab_train_result res;
    int rc = hlab_train_run_polled(&point.model, &point.train, &point.data, hk, ckpt, on_event, stop_poll, &prog, &res,
                                   &err);
    if (prog.metrics) fclose(prog.metrics);
    if (rc == HLAB_OK) summary(&res, hk->name);
    else cli_error("%s", err.msg);
    hk_destroy(hk);
    return cli_exit_code(rc);
}
