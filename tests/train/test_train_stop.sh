# tests/train/test_train_stop.sh — Ctrl-C latency of `hlab train`: the stop
# request is polled every step and every validation batch, not only when a
# progress line is due. Each case sends SIGINT to a run whose next progress
# event is far away and expects exit 130 within a few seconds, an
# "interrupted" line, and a checkpoint that a second run resumes from.
#   1. during training steps (log_every and eval_every far beyond the stop),
#   2. during the final evaluation (thousands of validation batches).
set -euo pipefail
: "${HLAB:?HLAB must name the hlab binary}" "${HLAB_DATA:?}" "${HLAB_SRC:?}"
DATA=$HLAB_DATA/tinyshakespeare.txt
[ -r "$DATA" ] || { echo "SKIP: $DATA is missing"; exit 77; }
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2> /dev/null; rm -rf "$tmp"' EXIT
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

tiny=(--device cpu --data.train "$DATA" --model.d_model 32 --model.n_layers 2 --model.head_dim 16
      --model.mamba.headdim 16 --model.mamba.d_state 8 --model.mamba.chunk 16 --train.batch 2
      --train.seq_len 16 --train.warmup 1 --train.eval_every 0 --quiet)
fail() { echo "FAIL: $*" >&2; sed 's/^/    /' "$tmp/err" >&2 || true; exit 1; }

# interrupt NAME ARGS...: starts hlab train ARGS in the background, waits until
# it has trained a while, sends SIGINT and checks how and how fast it ends.
interrupt() {
    local name=$1
    shift
    "$HLAB" train "${tiny[@]}" "$@" > "$tmp/out" 2> "$tmp/err" &
    pid=$!
    sleep 2
    kill -0 "$pid" 2> /dev/null || fail "$name: the run ended before the signal (make it longer)"
    local t0 rc=0
    t0=$(date +%s%N)
    kill -INT "$pid"
    # a run that ignores the request is killed after 10 s
    local tick
    for tick in $(seq 100); do
        kill -0 "$pid" 2> /dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2> /dev/null && kill -KILL "$pid"
    wait "$pid" || rc=$?
    pid=
    local ms=$((($(date +%s%N) - t0) / 1000000))
    [ "$rc" -eq 130 ] || fail "$name: exit $rc after SIGINT (expected 130, within $ms ms)"
    [ "$ms" -lt 5000 ] || fail "$name: took $ms ms to stop after SIGINT (expected < 5 s)"
    grep -q "interrupted at step" "$tmp/err" || fail "$name: no 'interrupted at step' line"
    echo "ok   $name: exit 130 after $ms ms: $(cat "$tmp/err")"
}

# 1. training: the only progress event would come at step 1000000.
ck=$tmp/steps.safetensors
interrupt "stop between steps" --train.steps 1000000 --train.log_every 1000000 --ckpt "$ck"
[ -s "$ck" ] || fail "stop between steps: no checkpoint at $ck"
at=$(sed -n 's/.*interrupted at step \([0-9]*\) of.*/\1/p' "$tmp/err")
[ -n "$at" ] && [ "$at" -ge 1 ] || fail "stop between steps: cannot read the step from the message"
# the resumed run's first progress event (log_every 1) must be step at + 1
"$HLAB" train "${tiny[@]}" --train.steps 1000000 --train.log_every 1 --train.stop_at $((at + 2)) \
    --train.eval_batches 1 --ckpt "$ck" --metrics "$tmp/m.tsv" > "$tmp/out" 2> "$tmp/err" ||
    fail "resume after stop between steps"
first=$(awk -F'\t' 'NR == 2 { print $1 }' "$tmp/m.tsv")
[ "$first" = $((at + 1)) ] || fail "resume after stop between steps: first step $first, expected $((at + 1))"
echo "ok   resume: the checkpoint of step $at resumed"

# 2. the final evaluation: 2 steps, then far more validation batches than 2 s allow.
ck=$tmp/eval.safetensors
interrupt "stop during evaluation" --train.steps 2 --train.eval_batches 100000000 --ckpt "$ck"
grep -q "during evaluation" "$tmp/err" || fail "stop during evaluation: message does not say 'during evaluation'"
[ -s "$ck" ] || fail "stop during evaluation: no checkpoint at $ck"
# resuming finds nothing left to train and only evaluates (briefly, this time)
"$HLAB" train "${tiny[@]}" --train.steps 2 --train.eval_batches 2 --ckpt "$ck" > "$tmp/out" 2> "$tmp/err" ||
    fail "resume after stop during evaluation"
grep -q "done: 2 steps" "$tmp/out" || fail "resume after stop during evaluation: expected 'done: 2 steps'"
echo "ok   resume: the evaluation-time checkpoint resumed"
echo "PASS"
