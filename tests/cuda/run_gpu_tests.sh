#!/usr/bin/env bash
# tests/cuda/run_gpu_tests.sh — runs every CUDA test (and, when asked, the
# benchmark) on a machine with a GPU and writes a summary under $OUT.
#
#   tests/cuda/run_gpu_tests.sh [BIN_DIR]
#     BIN_DIR   folder holding the test_cuda_* executables (and hlab, for the bench);
#               default: build/tests
#   env OUT        where logs and summary.txt go (default: ./gpu_out)
#   env SANITIZE=1 also runs compute-sanitizer memcheck and racecheck over the tests
#                  (each run limited to SANITIZE_TIMEOUT seconds, default 120)
#   env BENCH=1    also runs the kernel benchmarks (test_cuda_*bench*, which otherwise
#                  skip: HLAB_CUDA_BENCH=1 is set for them) and `hlab bench --device cuda`
#                  when BIN_DIR/hlab exists
#
# Output: OUT/summary.txt (one row per test: status, checks passed/failed,
# seconds), OUT/parity.txt (every PARITY line: mode, op, relative error, tol),
# OUT/<test>.log (full output). Exit status: 0 when every test passed or skipped.
set -u
BIN_DIR=${1:-build/tests}
OUT=${OUT:-./gpu_out}
mkdir -p "$OUT"
summary="$OUT/summary.txt"
parity="$OUT/parity.txt"
: >"$parity"

{
  echo "# hlab CUDA tests, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "# device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
  printf '%-28s %-8s %8s %8s %8s\n' test status passed failed seconds
} >"$summary"

status=0
shopt -s nullglob
tests=("$BIN_DIR"/test_cuda_*)
if [ ${#tests[@]} -eq 0 ]; then
  echo "no test_cuda_* executables in $BIN_DIR" | tee -a "$summary"
  exit 1
fi

run_one() { # name, log, command...
  local name=$1 log=$2
  shift 2
  local t0 t1 rc
  t0=$(date +%s.%N)
  "$@" >"$log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  local st=pass
  [ $rc -eq 77 ] && st=skip
  [ $rc -ne 0 ] && [ $rc -ne 77 ] && st="FAIL($rc)" && status=1
  local pf
  pf=$(grep -Eo '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
  local np=${pf%% passed*} nf
  nf=$(echo "$pf" | sed -E 's/.* ([0-9]+) failed/\1/')
  printf '%-28s %-8s %8s %8s %8.2f\n' "$name" "$st" "${np:--}" "${nf:--}" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" >>"$summary"
}

export HLAB_CUDA_BENCH=${BENCH:-0}
for t in "${tests[@]}"; do
  name=$(basename "$t")
  run_one "$name" "$OUT/$name.log" "$t"
  grep '^PARITY' "$OUT/$name.log" >>"$parity"
  grep -E '^(FAIL|SKIP)' "$OUT/$name.log" | head -20 | sed "s/^/  $name: /" >>"$summary"
done

if [ "${SANITIZE:-0}" = 1 ] && command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck; do
    for t in "${tests[@]}"; do
      name=$(basename "$t")
      case $name in *bench*) continue ;; esac # benchmarks are not run under the sanitizers
      extra=""
      [ $tool = memcheck ] && extra="--leak-check full"
      run_one "$name[$tool]" "$OUT/$name.$tool.log" timeout "${SANITIZE_TIMEOUT:-120}" compute-sanitizer --tool $tool $extra --error-exitcode 9 "$t"
      grep -E 'ERROR SUMMARY|LEAK SUMMARY' "$OUT/$name.$tool.log" | sed "s/^/  $name[$tool]: /" >>"$summary"
    done
  done
fi

if [ "${BENCH:-0}" = 1 ]; then
  [ -x "$BIN_DIR/hlab" ] && run_one "hlab bench" "$OUT/bench.log" "$BIN_DIR/hlab" bench --device cuda
  {
    echo
    echo "# kernel benchmarks"
    for t in "${tests[@]}"; do
      name=$(basename "$t")
      case $name in *bench*) grep -h '^BENCH' "$OUT/$name.log" 2>/dev/null ;; esac
    done
  } >>"$summary"
fi

# Worst relative error per (mode, op) over all shapes.
{
  echo
  echo "# worst parity per op (mode op error tol)"
  awk '/^PARITY/ { mode=$2; err=$(NF-3); tol=$(NF-1); sub(/,$/, "", tol); $1=""; $2=""; $(NF)=""; $(NF-1)=""; $(NF-2)=""; $(NF-3)="";
         op=$0; gsub(/^ +| +$/, "", op); k=mode" "op; if (!(k in w) || err+0 > w[k]+0) { w[k]=err; t[k]=tol } }
       END { for (k in w) printf "%-40s %s %s\n", k, w[k], t[k] }' "$parity" | sort
} >>"$summary"

cat "$summary"
exit $status
