/* train/train.h — how a design point is trained: data, schedule, loop,
 * evaluation, checkpoints. One call trains (or resumes) one point.
 */
#ifndef HLAB_TRAIN_H
#define HLAB_TRAIN_H

#include <stdint.h>

#include "arch/arch.h"
#include "common/hlab.h"
#include "kernels/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- data --------------------------------------------------------------- */
typedef enum { HLAB_TOK_BYTES = 0, HLAB_TOK_SHARDS = 1 } hlab_tokenizer;

typedef struct {
    char train[1024];   /* text file (bytes) or shard file / glob (shards) */
    char val[1024];     /* "" = split val_fraction off the end of train */
    hlab_tokenizer tokenizer;
    float val_fraction; /* 0.05 */
} hlab_data_config;

typedef struct hlab_dataset hlab_dataset;
/* Loads the whole token stream. Bytes: vocabulary 256, deterministic split
 * (the last val_fraction of the file is validation). Shards: llm.c format. */
int hlab_dataset_open(const hlab_data_config *c, hlab_dataset **out, hlab_err *err);
void hlab_dataset_close(hlab_dataset *d);
int hlab_dataset_vocab(const hlab_dataset *d);      /* 256 for bytes, max token + 1 rounded for shards */
int64_t hlab_dataset_tokens(const hlab_dataset *d, int split); /* split 0 train, 1 val */
/* Fills tokens/targets [B*T] with B random contiguous windows of split (0/1). */
int hlab_dataset_batch(const hlab_dataset *d, int split, hlab_rng *rng, int B, int T, int32_t *tokens,
                       int32_t *targets, hlab_err *err);
/* Fixed validation windows: batch index i in [0, n) is always the same windows. */
int hlab_dataset_val_batch(const hlab_dataset *d, int i, int B, int T, int32_t *tokens, int32_t *targets,
                           hlab_err *err);
/* Writes an llm.c token shard (header magic 20240520, version 1). */
int hlab_shard_write(const char *path, const uint16_t *tokens, int64_t n, hlab_err *err);

/* ---- training ------------------------------------------------------------ */
typedef struct {
    int steps;           /* schedule horizon (cosine ends here) */
    int stop_at;         /* 0 = steps; else stop after this step (successive halving rungs) */
    int batch, seq_len;
    int grad_accum;      /* micro-batches per step, 1 */
    float lr;            /* peak */
    float min_lr_frac;   /* 0.1 */
    int warmup;          /* steps */
    float weight_decay;  /* 0.1 */
    float grad_clip;     /* 1.0 (0 = off) */
    float beta1, beta2, eps;
    uint64_t seed;
    int eval_every;      /* steps; 0 = only at the end */
    int eval_batches;    /* validation batches per evaluation */
    int log_every;       /* steps between progress events */
    int ckpt_every;      /* steps between checkpoints (0 = only at the end / on stop) */
    float diverge_factor;/* loss > factor × first loss, or non-finite => diverged (default 3) */
} hlab_train_config;

void hlab_train_config_defaults(hlab_train_config *c);
int hlab_train_config_validate(const hlab_train_config *c, hlab_err *err);
int hlab_train_config_to_json(const hlab_train_config *c, hlab_buf *out, hlab_err *err);
void hlab_data_config_defaults(hlab_data_config *c);

/* One progress event; val_loss is NaN unless this step evaluated. */
typedef struct {
    int step, steps;
    double loss, lr, grad_norm;
    double tokens_per_s, elapsed_s, eta_s;
    double val_loss, val_bpb;
    int64_t peak_bytes;
} hlab_train_event;
/* Return non-zero to stop (the run checkpoints and returns HLAB_EINTERRUPTED). */
typedef int (*hlab_train_callback)(void *user, const hlab_train_event *ev);

typedef struct {
    int steps_done;
    double train_loss, val_loss, val_bpb; /* bpb: bits per byte, byte data only (else NaN) */
    double tokens_per_s, train_flops, wall_s;
    int64_t peak_bytes;
    hlab_counts counts;
} hlab_train_result;

/* Trains cfg on data with backend hk. ckpt_path ("" or NULL = none): resumes
 * from it when it exists and matches, and is written every ckpt_every steps,
 * on interruption and at the end. Returns HLAB_OK, HLAB_EDIVERGED,
 * HLAB_EINTERRUPTED or an error; res is filled as far as the run got. */
int hlab_train_run(const hlab_model_config *cfg, const hlab_train_config *tc, const hlab_data_config *dc,
                   hk_backend *hk, const char *ckpt_path, hlab_train_callback cb, void *user,
                   hlab_train_result *res, hlab_err *err);
/* Asked after every step and before every validation batch (cb runs only on
 * log/eval steps); non-zero stops the run. Keep it cheap: read a flag. */
typedef int (*hlab_train_stop_poll)(void *user);
/* hlab_train_run, plus should_stop (NULL = none; cb and should_stop both get
 * user). A stop writes the checkpoint (when ckpt_path is set) and returns
 * HLAB_EINTERRUPTED when it cut the run short: steps left, or the final
 * evaluation unfinished (resuming then only evaluates). */
int hlab_train_run_polled(const hlab_model_config *cfg, const hlab_train_config *tc, const hlab_data_config *dc,
                          hk_backend *hk, const char *ckpt_path, hlab_train_callback cb,
                          hlab_train_stop_poll should_stop, void *user, hlab_train_result *res, hlab_err *err);

/* ---- a design point: the three sections of a POINT.yaml ------------------------
 * Fields are addressed by dotted keys, exactly as in study files:
 * "model.d_model", "model.ratio" ("1:5"), "model.placement" (uniform | front |
 * middle | back, or a list of layer indices), "model.layout" ("MMMMMA..."),
 * "train.lr", "data.train", ... hlab_point_keys() lists every key. */
typedef struct {
    hlab_model_config model;
    hlab_train_config train;
    hlab_data_config data;
} hlab_point;

void hlab_point_defaults(hlab_point *p);
/* NULL-terminated list of every settable dotted key (for did-you-mean). */
const char *const *hlab_point_keys(void);
/* Sets one field from text (CLI overrides, generated range values). Errors say
 * which key and what was expected: "model.d_model: expected a positive integer, got 'abc'". */
int hlab_point_set_str(hlab_point *p, const char *key, const char *value, hlab_err *err);
/* Sets one field from a YAML node (scalar, or a sequence for index lists);
 * errors carry FILE:LINE:COL of the node. */
int hlab_point_set_yaml(hlab_point *p, const char *key, const hlab_yaml_doc *doc, const hlab_yaml_node *value,
                        hlab_err *err);
/* Applies a mapping section ("model", "train" or "data") key by key; unknown
 * keys fail with position and a did-you-mean. */
int hlab_point_apply_section(hlab_point *p, const char *section, const hlab_yaml_doc *doc,
                             const hlab_yaml_node *map, hlab_err *err);
/* Loads a POINT.yaml: top-level mapping with model, train, data sections.
 * A relative data.train / data.val it sets is resolved against the YAML
 * file's folder (canonical when the file exists); hlab_point_set_str and
 * hlab_point_set_yaml leave paths as given. */
int hlab_point_load(const char *path, hlab_point *p, hlab_err *err);
/* The whole point as JSON {"model":{...},"train":{...},"data":{...}}. */
int hlab_point_to_json(const hlab_point *p, hlab_buf *out, hlab_err *err);

/* ---- checkpoints (safetensors; README documents the tensor names) ------------ */
int hlab_checkpoint_save(const char *path, hlab_model *m, const void *adam_m, const void *adam_v, int step,
                         uint64_t rng_state_hash, hlab_err *err);

/* What a checkpoint records beside its tensors (the "__metadata__" entry).
 * The data RNG of step s is derived from (seed, s), so step + seed restore it. */
typedef struct {
    int step;            /* optimizer steps done */
    uint64_t seed;
    uint64_t run_hash;   /* fingerprint of everything that shapes the trajectory
                            (train config minus stop/log/eval/ckpt cadence, data);
                            a resume must match it */
    double first_loss;   /* divergence reference (NaN before step 1) */
} hlab_checkpoint_meta;
/* Writes weights (master, R), optimizer moments (adam_m/adam_v, R, may be NULL)
 * and meta atomically. Tensor names are in docs/TRAINING.md. */
int hlab_checkpoint_write(const char *path, hlab_model *m, const void *adam_m, const void *adam_v,
                          const hlab_checkpoint_meta *meta, hlab_err *err);
/* Reads path into m (weights; then hlab_model_params_changed) and adam_m/adam_v
 * (NULL skips). Fails with one line when the file is truncated or malformed,
 * or when its model config differs from m's. */
int hlab_checkpoint_read(const char *path, hlab_model *m, void *adam_m, void *adam_v, hlab_checkpoint_meta *meta,
                         hlab_err *err);

/* ---- schedule and fingerprint -------------------------------------------- */
/* Learning rate of 1-based step: linear warm-up to lr over `warmup` steps,
 * then cosine to min_lr_frac·lr at `steps`. */
double hlab_lr_at(const hlab_train_config *c, int step);
/* FNV hash of the fields that shape a run's trajectory (see run_hash). */
uint64_t hlab_train_run_hash(const hlab_model_config *m, const hlab_train_config *tc, const hlab_data_config *dc);

/* ---- benchmarking: the training step of hlab_train_run, timed ---------------- */
typedef struct {
    double step_s_median;      /* seconds per optimizer step (median over timed steps) */
    double tokens_per_s;       /* B·T / step_s_median */
    double loss_first, loss_last;
    int64_t peak_bytes;
    hlab_counts counts;        /* at seq_len T */
    int profile_steps;         /* hlab_bench_model_profiled: profiled steps run after the timed ones */
    double profile_step_s;     /* their mean wall seconds per step (each op synced: slower than step_s_median) */
} hlab_bench_result;
/* Random tokens (seeded), `warmup` untimed then `steps` timed full steps
 * (forward, backward, clip, AdamW), each synchronised. */
int hlab_bench_model(const hlab_model_config *cfg, hk_backend *hk, int B, int T, int warmup, int steps, uint64_t seed,
                     hlab_bench_result *res, hlab_err *err);
/* hlab_bench_model, then, where hk is a profiling wrapper (hk_profile_wrap) and
 * profile_steps > 0, that many more steps with profiling on: the wrapper is
 * switched off for set-up, warm-up and the timed steps (their figures are the
 * unprofiled ones) and its counters are reset just before the profiled steps;
 * afterwards they hold exactly those steps (hk_profile_read) and the wrapper is
 * off. With profile_steps == 0 a wrapper is left as it is. */
int hlab_bench_model_profiled(const hlab_model_config *cfg, hk_backend *hk, int B, int T, int warmup, int steps,
                              int profile_steps, uint64_t seed, hlab_bench_result *res, hlab_err *err);
/* Achieved FLOP/s of hk->matmul_fwd on n×n×n (activation dtype), best of reps. */
int hlab_bench_matmul(hk_backend *hk, int n, int reps, double *flops_per_s, hlab_err *err);
/* Device copy bandwidth: hk->convert between two buffers of n elements of the
 * activation dtype; bytes read + bytes written per second, best of reps. */
int hlab_bench_copy(hk_backend *hk, size_t n, int reps, double *bytes_per_s, hlab_err *err);

#ifdef __cplusplus
}
#endif

#endif
