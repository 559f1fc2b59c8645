#!/usr/bin/env bash
# tests/cuda/test_cuda_train_curve.sh — issue 4's end-to-end check: a 300-step
# training run of experiments/points/tiny_hybrid.yaml on tiny Shakespeare on the
# GPU (bf16 activations, fp32 master weights) tracks the CPU backend's loss
# curve. Same seed, same data order, same init (init is drawn on the host), so
# the two curves differ only by bf16 rounding: we compare the smoothed training
# loss (mean over windows of 25 steps) and the final validation loss.
# Skips (exit 77) where no GPU is usable.
set -euo pipefail
: "${HLAB:?HLAB must name the hlab binary}" "${HLAB_DATA:?}" "${HLAB_SRC:?}"
DATA=$HLAB_DATA/tinyshakespeare.txt
POINT=$HLAB_SRC/experiments/points/tiny_hybrid.yaml
[ -r "$DATA" ] || { echo "SKIP: $DATA is missing"; exit 77; }
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "SKIP: no CUDA device"
  exit 77
fi
# The CPU half: a few threads, waiting passively (a 16-core GPU host spinning
# 16 OpenMP threads on these small ops is slower than 4).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
STEPS=${HLAB_CURVE_STEPS:-300}
common=(--data.train "$DATA" --train.steps "$STEPS" --train.log_every 1 --train.eval_every "$STEPS" --quiet)
"$HLAB" train "$POINT" "${common[@]}" --device cuda --metrics "$tmp/gpu.tsv" > "$tmp/gpu.out" ||
  { rc=$?; cat "$tmp/gpu.out"; [ $rc -eq 3 ] && { echo "SKIP: CUDA backend unavailable"; exit 77; }; exit 1; }
"$HLAB" train "$POINT" "${common[@]}" --device cpu --metrics "$tmp/cpu.tsv" > "$tmp/cpu.out"

# Windowed means of the training loss; the largest gap between the curves, and
# the final validation losses. bf16 rounding moves single steps by a few 1e-3;
# a wrong kernel moves the curve by tenths.
awk -F'\t' -v W=25 '
  FNR == 1 { next }
  FILENAME ~ /gpu/ { g[int(($1 - 1) / W)] += $2; gn[int(($1 - 1) / W)]++; if ($5 != "nan") gv = $5 }
  FILENAME ~ /cpu/ { c[int(($1 - 1) / W)] += $2; cn[int(($1 - 1) / W)]++; if ($5 != "nan") cv = $5 }
  END {
    worst = 0
    for (k = 0; k in g; k++) {
      if (!(k in c)) break
      d = g[k] / gn[k] - c[k] / cn[k]; if (d < 0) d = -d
      printf "steps %4d-%4d  gpu %.4f  cpu %.4f  |diff| %.4f\n", k * W + 1, (k + 1) * W, g[k] / gn[k], c[k] / cn[k], d
      if (d > worst) worst = d
    }
    dv = gv - cv; if (dv < 0) dv = -dv
    printf "final val loss: gpu %.4f  cpu %.4f  |diff| %.4f; worst windowed train-loss gap %.4f\n", gv, cv, dv, worst
    ok = (worst < 0.05 && dv < 0.05 && gv == gv && cv == cv)
    printf "%d passed, %d failed\n", ok, !ok
    exit !ok
  }' "$tmp/gpu.tsv" "$tmp/cpu.tsv"
