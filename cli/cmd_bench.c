/* cli/cmd_bench.c — `hlab bench`: training speed of fixed models, beside the
 * device's matmul rate measured in the same run (hlab_bench_matmul), so the
 * utilisation figure needs no vendor peak. The step timed is the training
 * step of hlab_train_run (hlab_bench_model): forward, backward, clipping,
 * AdamW, on random tokens.
 *
 * Configs: T, M, S, P are ../shared/docs/BENCH.md's reference models (D 768,
 * L 12, vocabulary 50304); H is a ~5M-parameter hybrid sized for a CPU.
 * Shapes: a = 16 x 2048, b = 4 x 8192, c = 8 x 256 (the CPU shape).
 *
 * --profile: after the timed steps of each config and shape, a few more steps
 * run through a profiling wrapper (kernels/profile.c) and a per-op table shows
 * each op's time against its floor, max(FLOPs / matmul rate, bytes / copy
 * bandwidth), both rates measured in the same run. The timed steps run through
 * the wrapper switched off (one extra indirect call per op), so the headline
 * figures are the unprofiled ones.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "train/train.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: hlab bench [--device SPEC] [--config T|M|S|P|H|all] [--shape a|b|c|all]\n"
            "                  [--steps N] [--warmup N] [--profile] [--profile-steps N] [--profile-csv FILE]\n\n"
            "Measures training tokens/s, achieved FLOP/s and the fraction of the device's\n"
            "matmul rate (measured in the same run through the backend's matmul) on random tokens.\n\n"
            "  --device SPEC   cpu | cuda | cuda:N | auto (default auto)\n"
            "  --config X      T pure attention, M pure Mamba-2, S sequential 1:5, P parallel normadd\n"
            "                  (BENCH.md, D 768, L 12), H a ~5M-parameter hybrid; all = T,M,S,P\n"
            "                  (default: all on a GPU, H on the CPU)\n"
            "  --shape X       a 16x2048, b 4x8192, c 8x256; all = a,b (default: all on a GPU, c on the CPU)\n"
            "  --steps N       timed steps, median reported (default 20 on a GPU, 5 on the CPU)\n"
            "  --warmup N      untimed steps first (default 5 on a GPU, 1 on the CPU)\n"
            "  --profile       after the timed steps, run profiled steps and print per config and shape\n"
            "                  a per-op table: calls and ms per step, %% of the profiled step, achieved\n"
            "                  FLOP/s or bytes/s, floor ms = max(FLOPs / matmul rate, bytes / copy\n"
            "                  bandwidth) and time / floor; the copy bandwidth (the backend's convert,\n"
            "                  same dtype) is measured in the same run. Each op is synced before and\n"
            "                  after, so small ops include launch latency.\n"
            "  --profile-steps N  profiled steps (default 3; implies --profile)\n"
            "  --profile-csv FILE  also write the per-op tables as CSV (implies --profile)\n");
}

/* BENCH.md's reference models. Every field BENCH.md names is set here even
 * where it equals today's default, so that a change of defaults can never
 * silently change what the benchmark measures. */
static void bench_config(char name, hlab_model_config *c) {
    hlab_model_config_defaults(c);
    if (name == 'H') { /* CPU hybrid: D 256, L 6, 1:2 -> 2 attention + 4 Mamba-2 layers, ~5M params */
        c->d_model = 256;
        c->n_layers = 6;
        c->vocab_size = 256;
        c->ratio_attn = 1;
        c->ratio_mamba = 2;
        c->placement = HLAB_PLACE_UNIFORM;
        c->head_dim = 64;
        c->mamba_chunk = 64;
        return;
    }
    c->d_model = 768;
    c->n_layers = 12;
    c->vocab_size = 50304;
    c->tied_head = 1;
    c->norm = HLAB_NORM_RMS;
    c->norm_eps = 1e-5f;
    c->d_ff = 2048;
    c->channel_attn = c->channel_mamba = c->channel_parallel = HLAB_CHANNEL_DENSE;
    c->n_heads = 12;
    c->n_kv_heads = 4;
    c->head_dim = 64;
    c->rope = 1;
    c->rope_theta = 10000.0f;
    c->mamba_expand = 2;
    c->mamba_headdim = 64;
    c->mamba_d_state = 128;
    c->mamba_groups = 1;
    c->mamba_conv = 4;
    c->mamba_chunk = 256;
    const char *layout = name == 'T' ? "AAAAAAAAAAAA" : name == 'M' ? "MMMMMMMMMMMM" : name == 'S' ? "MMMMMAMMMMMA" : "PPPPPPPPPPPP";
    snprintf(c->layout, sizeof c->layout, "%s", layout);
    if (name == 'P') {
        c->fusion = HLAB_FUSION_PARALLEL;
        c->fuse_op = HLAB_FUSE_NORMADD;
        c->par_attn_heads = 6;
        c->par_attn_kv_heads = 2;
        c->par_mamba_heads = 12;
    }
}

/* ---- the per-op profile table ------------------------------------------------- */

static int cmp_op_seconds_desc(const void *a, const void *b) {
    double x = ((const hk_profile_op *)a)->seconds, y = ((const hk_profile_op *)b)->seconds;
    return (x < y) - (x > y);
}

/* Seconds the op's FLOPs and bytes need at the measured rates; the larger is its floor. */
static double op_floor_s(const hk_profile_op *o, double mm_rate, double copy_bw, int *flop_bound) {
    double tf = mm_rate > 0 ? o->flops / mm_rate : 0, tb = copy_bw > 0 ? o->bytes / copy_bw : 0;
    *flop_bound = tf > tb;
    return o->host_link ? 0 : (tf > tb ? tf : tb);
}

/* "412T FLOP/s" or "2.95T B/s", whichever the floor is bound by. */
static void achieved_str(char *out, size_t cap, double flops, double bytes, double seconds, int flop_bound) {
    char v[32];
    if (seconds <= 0) {
        snprintf(out, cap, "-");
        return;
    }
    cli_si(v, sizeof v, (flop_bound ? flops : bytes) / seconds);
    snprintf(out, cap, "%s %s", v, flop_bound ? "FLOP/s" : "B/s");
}

typedef struct {
    char cfg;
    const char *layout, *shape;
    const hk_profile_op *ops; /* sorted by seconds, descending */
    int n_ops, steps;
    double step_s;            /* mean wall seconds of a profiled step */
    double timed_step_s;      /* the unprofiled median, for comparison */
} profile_view;

static void print_profile(const profile_view *v, double mm_rate, double copy_bw) {
    double steps = v->steps, step_ms = 1e3 * v->step_s, ops_s = 0, floor_s = 0, flops = 0, calls = 0;
    printf("\nprofile %c %s %s: %d profiled steps, %.2f ms/step (timed steps: %.2f ms median)\n", v->cfg, v->layout,
           v->shape, v->steps, step_ms, 1e3 * v->timed_step_s);
    printf("%-18s %10s %10s %7s %16s %10s %-4s %8s\n", "op", "calls/step", "ms/step", "%step", "achieved", "floor ms",
           "by", "x floor");
    for (int i = 0; i < v->n_ops; i++) {
        const hk_profile_op *o = &v->ops[i];
        int fb;
        double fl = op_floor_s(o, mm_rate, copy_bw, &fb), ms = 1e3 * o->seconds / steps;
        char ach[40], fls[16] = "-", xs[16] = "-";
        achieved_str(ach, sizeof ach, o->flops, o->bytes, o->seconds, fb);
        if (!o->host_link) {
            snprintf(fls, sizeof fls, "%.3f", 1e3 * fl / steps);
            snprintf(xs, sizeof xs, "%.1f", fl > 0 ? o->seconds / fl : 0);
        }
        printf("%-18s %10.1f %10.3f %6.1f%% %16s %10s %-4s %8s\n", o->op, o->calls / steps, ms,
               100.0 * ms / step_ms, ach, fls, o->host_link ? "host" : fb ? "flop" : "mem", xs);
        ops_s += o->seconds;
        floor_s += fl;
        flops += o->flops;
        calls += (double)o->calls;
    }
    double outside_ms = step_ms - 1e3 * ops_s / steps;
    char ach[40];
    achieved_str(ach, sizeof ach, flops, 0, v->step_s * steps, 1);
    printf("%-18s %10s %10.3f %6.1f%%\n", "(outside ops)", "", outside_ms, 100.0 * outside_ms / step_ms);
    printf("%-18s %10.1f %10.3f %6.1f%% %16s %10.3f %-4s %8.1f\n", "total", calls / steps, step_ms, 100.0, ach,
           1e3 * floor_s / steps, "", floor_s > 0 ? v->step_s * steps / floor_s : 0);
}

static void csv_profile(hlab_buf *b, const profile_view *v, double mm_rate, double copy_bw) {
    double steps = v->steps, step_s = v->step_s, ops_s = 0, floor_s = 0, flops = 0, bytes = 0, calls = 0;
    for (int i = 0; i <= v->n_ops + 1; i++) {
        const hk_profile_op *o = i < v->n_ops ? &v->ops[i] : NULL;
        hlab_buf_printf(b, "%c,%s,%s,", v->cfg, v->layout, v->shape);
        if (o) {
            int fb;
            double fl = op_floor_s(o, mm_rate, copy_bw, &fb), s = o->seconds;
            hlab_buf_printf(b, "%s,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,", o->op, o->calls / steps, 1e3 * s / steps,
                            100.0 * s / steps / step_s, o->flops / steps, o->bytes / steps, s > 0 ? o->flops / s : 0,
                            s > 0 ? o->bytes / s : 0);
            if (o->host_link) hlab_buf_printf(b, ",host,");
            else hlab_buf_printf(b, "%.6g,%s,%.6g", 1e3 * fl / steps, fb ? "flop" : "mem", fl > 0 ? s / fl : 0);
            ops_s += s;
            floor_s += fl;
            flops += o->flops;
            bytes += o->bytes;
            calls += (double)o->calls;
        } else if (i == v->n_ops) {
            double out_s = step_s - ops_s / steps;
            hlab_buf_printf(b, "outside_ops,,%.6g,%.6g,,,,,,,", 1e3 * out_s, 100.0 * out_s / step_s);
        } else {
            hlab_buf_printf(b, "total,%.6g,%.6g,100,%.6g,%.6g,%.6g,%.6g,%.6g,,%.6g", calls / steps, 1e3 * step_s,
                            flops / steps, bytes / steps, flops / (step_s * steps), bytes / (step_s * steps),
                            1e3 * floor_s / steps, floor_s > 0 ? step_s * steps / floor_s : 0);
        }
        hlab_buf_printf(b, ",%.6g,%.6g\n", mm_rate, copy_bw);
    }
}

static int parse_count(const char *flag, const char *v, int min, int *out) {
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || *end || n < min || n > 1000000) {
        cli_error("hlab bench: %s expects an integer >= %d, got '%s'", flag, min, v);
        return 0;
    }
    *out = (int)n;
    return 1;
}


int cmd_bench(int argc, char **argv) {
    const char *device = "auto", *configs = NULL, *shapes = NULL, *profile_csv = NULL;
    int steps = -1, warmup = -1, profile = 0, profile_steps = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return HLAB_EXIT_OK;
        }
        if (!strcmp(a, "--profile")) { /* the one option without a value */
            profile = 1;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t klen = eq ? (size_t)(eq - a) : strlen(a);
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[i + 1] : NULL);
        if (!strncmp(a, "--", 2) && !v) {
            cli_error("hlab bench: %s needs a value", a);
            return HLAB_EXIT_USAGE;
        }
        if (!eq) i++;
        if (klen == 8 && !strncmp(a, "--device", klen)) device = v;
        else if (klen == 8 && !strncmp(a, "--config", klen)) configs = v;
        else if (klen == 7 && !strncmp(a, "--shape", klen)) shapes = v;
        else if (klen == 7 && !strncmp(a, "--steps", klen)) {
            if (!parse_count("--steps", v, 1, &steps)) return HLAB_EXIT_USAGE;
        } else if (klen == 8 && !strncmp(a, "--warmup", klen)) {
            if (!parse_count("--warmup", v, 0, &warmup)) return HLAB_EXIT_USAGE;
        } else if (klen == 15 && !strncmp(a, "--profile-steps", klen)) {
            if (!parse_count("--profile-steps", v, 1, &profile_steps)) return HLAB_EXIT_USAGE;
            profile = 1;
        } else if (klen == 13 && !strncmp(a, "--profile-csv", klen)) {
            if (!*v) {
                cli_error("hlab bench: --profile-csv needs a file name");
                return HLAB_EXIT_USAGE;
            }
            profile_csv = v;
            profile = 1;
        } else {
            cli_error("hlab bench: unknown option '%.*s' (try: hlab bench --help)", (int)klen, a);
            return HLAB_EXIT_USAGE;
        }
    }
    hlab_err err = {0};
    hk_backend *hk = hk_open(device, &err);
    if (!hk) {
        cli_error("%s", err.msg);
        return cli_exit_code(err.code ? err.code : HLAB_EDEVICE);
    }
    int gpu = !strncmp(hk->name, "cuda", 4);
    if (!configs) configs = gpu ? "all" : "H";
    if (!shapes) shapes = gpu ? "all" : "c";
    if (!strcmp(configs, "all")) configs = "TMSP";
    if (!strcmp(shapes, "all")) shapes = "ab";
    if (steps < 0) steps = gpu ? 20 : 5;
    if (warmup < 0) warmup = gpu ? 5 : 1;
    for (const char *c = configs; *c; c++)
        if (!strchr("TMSPH", *c)) {
            cli_error("hlab bench: --config expects T, M, S, P, H or all, got '%s'", configs);
            hk_destroy(hk);
            return HLAB_EXIT_USAGE;
        }
    for (const char *s = shapes; *s; s++)
        if (!strchr("abc", *s)) {
            cli_error("hlab bench: --shape expects a, b, c or all, got '%s'", shapes);
            hk_destroy(hk);
            return HLAB_EXIT_USAGE;
        }

    /* The reference rate: one large square product in the activation dtype,
     * measured before and after the models; the faster of the two is the
     * reference, so a machine whose load changes mid-run cannot flatter MFU. */
    int mm_n = gpu ? 8192 : 1024, mm_reps = gpu ? 20 : 5;
    double mm_before = 0, mm_after = 0;
    int rc = hlab_bench_matmul(hk, mm_n, mm_reps, &mm_before, &err);
    if (rc) {
        cli_error("matmul benchmark: %s", err.msg);
        hk_destroy(hk);
        return cli_exit_code(rc);
    }
    /* The floor's bandwidth, measured like the matmul rate: before and after, the better. */
    size_t copy_n = gpu ? (size_t)1 << 28 : (size_t)1 << 23;
    int copy_reps = gpu ? 20 : 5;
    double copy_before = 0, copy_after = 0;
    if (profile && (rc = hlab_bench_copy(hk, copy_n, copy_reps, &copy_before, &err))) {
        cli_error("copy benchmark: %s", err.msg);
        hk_destroy(hk);
        return cli_exit_code(rc);
    }
    char devname[32];
    snprintf(devname, sizeof devname, "%s", hk->name);
    hk_dtype act = hk->act;
    hk_destroy(hk);

    typedef struct {
        char cfg, layout[16], shape[32], error[sizeof err.msg];
        hlab_bench_result r;
        hk_profile_op ops[HK_PROFILE_MAX_OPS];
        int n_ops;
    } bench_row;
    static bench_row rows[3 * 8]; /* ~100 KB: off the stack */
    int n_rows = 0, failures = 0;
    for (const char *c = configs; *c; c++)
        for (const char *s = shapes; *s && n_rows < (int)(sizeof rows / sizeof rows[0]); s++) {
            bench_row *row = &rows[n_rows++];
            memset(row, 0, sizeof *row);
            int B = *s == 'a' ? 16 : *s == 'b' ? 4 : 8, T = *s == 'a' ? 2048 : *s == 'b' ? 8192 : 256;
            hlab_model_config cfg;
            bench_config(*c, &cfg);
            hlab_model_config resolved = cfg;
            if (hlab_model_config_resolve(&resolved, &err)) snprintf(resolved.layout, sizeof resolved.layout, "?");
            row->cfg = *c;
            snprintf(row->layout, sizeof row->layout, "%.12s", resolved.layout);
            snprintf(row->shape, sizeof row->shape, "%dx%d", B, T);
            fprintf(stderr, "hlab bench: %c %s ...\n", *c, row->shape);
            /* A fresh backend per model, so its peak memory is that model's alone. */
            hk_backend *run = hk_open(device, &err);
            if (run && profile) {
                hk_backend *wrapped = hk_profile_wrap(run, &err);
                if (!wrapped) hk_destroy(run);
                run = wrapped;
            }
            rc = run ? hlab_bench_model_profiled(&cfg, run, B, T, warmup, steps, profile ? profile_steps : 0, 1234,
                                                 &row->r, &err)
                     : err.code;
            if (!rc && profile) {
                row->n_ops = hk_profile_read(run, row->ops, HK_PROFILE_MAX_OPS);
                if (row->n_ops > HK_PROFILE_MAX_OPS) row->n_ops = HK_PROFILE_MAX_OPS;
                qsort(row->ops, (size_t)row->n_ops, sizeof row->ops[0], cmp_op_seconds_desc);
            }
            hk_destroy(run);
            if (rc) {
                snprintf(row->error, sizeof row->error, "%s", err.msg);
                failures++;
            }
        }
    hk = hk_open(device, &err);
    if (!hk || hlab_bench_matmul(hk, mm_n, mm_reps, &mm_after, &err)) mm_after = 0;
    if (hk && profile && hlab_bench_copy(hk, copy_n, copy_reps, &copy_after, &err)) copy_after = 0;
    hk_destroy(hk);
    double mm_rate = mm_before > mm_after ? mm_before : mm_after;
    double copy_bw = copy_before > copy_after ? copy_before : copy_after;

    char r0[32], r1[32], r2[32];
    cli_si(r0, sizeof r0, mm_rate);
    cli_si(r1, sizeof r1, mm_before);
    cli_si(r2, sizeof r2, mm_after);
    printf("device %s; matmul_fwd %d^3 (%s): %sFLOP/s (best of %s before and %s after the models)\n", devname, mm_n,
           hk_dtype_name(act), r0, r1, r2);
    printf("train FLOPs/token = 3 x (forward matmul + attention (causal half) + SSD), MODEL.md section 8;\n"
           "MFU = tokens/s x train FLOPs/token / measured matmul rate. Median of %d steps after %d warm-up.\n\n",
           steps, warmup);
    printf("%-3s %-12s %-8s %9s %9s %-34s %10s %9s %7s %10s %9s\n", "cfg", "layout", "shape", "params", "non-emb",
           "FLOPs/token (= 3 x (mm + attn + ssd))", "tokens/s", "FLOP/s", gpu ? "MFU" : "%SGEMM", "peak MiB", "loss");
    int over = 0, csv_rc = HLAB_OK;
    for (int i = 0; i < n_rows; i++) {
        const bench_row *row = &rows[i];
        if (row->error[0]) {
            printf("%-3c %-12.12s %-8s failed: %s\n", row->cfg, row->layout, row->shape, row->error);
            continue;
        }
        const hlab_bench_result *br = &row->r;
        char p[32], pn[32], ft[32], fm[32], fa[32], fs[32], tps[32], fl[32], formula[160];
        cli_si(p, sizeof p, (double)br->counts.params);
        cli_si(pn, sizeof pn, (double)br->counts.params_non_embedding);
        cli_si(ft, sizeof ft, br->counts.train_flops_per_token);
        cli_si(fm, sizeof fm, br->counts.fwd_matmul_flops_per_token);
        cli_si(fa, sizeof fa, br->counts.fwd_attn_flops_per_token);
        cli_si(fs, sizeof fs, br->counts.fwd_ssd_flops_per_token);
        snprintf(formula, sizeof formula, "%s = 3 x (%s + %s + %s)", ft, fm, fa, fs);
        double achieved = br->tokens_per_s * br->counts.train_flops_per_token, frac = achieved / mm_rate;
        over |= frac > 1.0;
        cli_si(tps, sizeof tps, br->tokens_per_s);
        cli_si(fl, sizeof fl, achieved);
        printf("%-3c %-12.12s %-8s %9s %9s %-34s %10s %9s %6.1f%% %10.1f %9.4f\n", row->cfg, row->layout, row->shape,
               p, pn, formula, tps, fl, 100.0 * frac, (double)br->peak_bytes / (1024.0 * 1024.0), br->loss_last);
    }
    if (over)
        printf("\nnote: a figure above 100%% means the machine's speed changed during the run (other load); "
               "rerun on an idle machine.\n");
    if (profile) {
        char cb[32], c0[32], c1[32];
        cli_si(cb, sizeof cb, copy_bw);
        cli_si(c0, sizeof c0, copy_before);
        cli_si(c1, sizeof c1, copy_after);
        printf("\nper-op profile: copy bandwidth (convert %s -> %s, %zu MiB, bytes read + written) %sB/s "
               "(best of %s before and %s after)\n",
               hk_dtype_name(act), hk_dtype_name(act), copy_n * hk_dtype_size(act) >> 20, cb, c0, c1);
        hlab_buf csv;
        hlab_buf_init(&csv);
        hlab_buf_puts(&csv, "config,layout,shape,op,calls_per_step,ms_per_step,pct_of_step,flops_per_step,"
                            "bytes_per_step,achieved_flop_per_s,achieved_bytes_per_s,floor_ms,bound,x_floor,"
                            "matmul_flop_per_s,copy_bytes_per_s\n");
        for (int i = 0; i < n_rows; i++) {
            const bench_row *row = &rows[i];
            if (row->error[0]) continue;
            profile_view v = {.cfg = row->cfg, .layout = row->layout, .shape = row->shape, .ops = row->ops,
                              .n_ops = row->n_ops, .steps = row->r.profile_steps, .step_s = row->r.profile_step_s,
                              .timed_step_s = row->r.step_s_median};
            print_profile(&v, mm_rate, copy_bw);
            csv_profile(&csv, &v, mm_rate, copy_bw);
        }
        printf("\nfloor = max(FLOPs / matmul rate, bytes / copy bandwidth), both measured above; \"by\" names the\n"
               "larger. Bytes: each input read once, each output written once, in its dtype. FLOPs: matrix work\n"
               "only (2 per multiply-add); attention counts the visible (causal, windowed) query-key pairs x 4 dh\n"
               "forward and 2.5x that backward (FlashAttention convention); SSD as kernels/cpu/ssd.c (full chunk\n"
               "score blocks). Every op is synced before and after: small ops include launch latency and the\n"
               "profiled step is slower than the timed one. from_host/to_host cross the host link (no floor).\n"
               "\"(outside ops)\": host work, syncs and ops the profiler does not wrap.\n");
        if (profile_csv) {
            hlab_err werr = {0};
            int wrc = hlab_buf_status(&csv, &werr);
            if (!wrc) wrc = hlab_write_file_atomic(profile_csv, csv.data, csv.len, &werr);
            if (wrc) {
                cli_error("--profile-csv %s: %s", profile_csv, werr.msg);
                csv_rc = wrc;
            } else {
                printf("per-op profile written to %s\n", profile_csv);
            }
        }
        hlab_buf_free(&csv);
    }
    if (failures) return HLAB_EXIT_FAILED;
    return csv_rc ? cli_exit_code(csv_rc) : HLAB_EXIT_OK;
}
