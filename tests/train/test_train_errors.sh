# tests/train/test_train_errors.sh — bad input to `hlab train` and `hlab bench`:
# each case must exit with the documented code and print exactly one line,
# "hlab: error: ...", that names the problem (and no sanitizer report).
set -euo pipefail
: "${HLAB:?HLAB must name the hlab binary}" "${HLAB_DATA:?}" "${HLAB_SRC:?}"
DATA=$HLAB_DATA/tinyshakespeare.txt
[ -r "$DATA" ] || { echo "SKIP: $DATA is missing"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

# A tiny, fast point so that cases which get as far as training stay quick.
tiny=(--device cpu --data.train "$DATA" --model.d_model 32 --model.n_layers 2 --model.head_dim 16
      --model.mamba.headdim 16 --model.mamba.d_state 8 --model.mamba.chunk 16 --train.steps 2 --train.batch 2
      --train.seq_len 16 --train.warmup 1 --train.eval_batches 1 --quiet)

# expect NAME CODE PATTERN -- hlab args...
expect() {
    local name=$1 code=$2 pattern=$3
    shift 4
    local rc=0
    "$HLAB" "$@" > "$tmp/out" 2> "$tmp/err" || rc=$?
    local lines
    lines=$(wc -l < "$tmp/err")
    if [ "$rc" -ne "$code" ] || [ "$lines" -ne 1 ] || ! grep -q -- "$pattern" "$tmp/err" ||
        ! grep -q '^hlab: error: ' "$tmp/err"; then
        echo "FAIL $name: exit $rc (expected $code), $lines stderr lines, wanted '$pattern':"
        sed 's/^/    /' "$tmp/err" | head -20
        failures=$((failures + 1))
    else
        echo "ok   $name: exit $rc: $(cat "$tmp/err")"
    fi
}

expect "missing data file" 2 "nope.txt: cannot open" -- train "${tiny[@]}" --data.train "$tmp/nope.txt"
expect "missing point file" 2 "missing.yaml" -- train "$tmp/missing.yaml" "${tiny[@]}"
expect "d_model not divisible by head_dim" 2 "model.d_model 40 is not divisible by model.head_dim 16" -- \
    train "${tiny[@]}" --model.d_model 40 --model.mamba.headdim 8
expect "more attention layers than layers" 2 "model.placement lists 3 attention layer indices" -- \
    train "${tiny[@]}" --model.placement "0,1,2"
expect "top-k > experts" 2 "model.moe.top_k 3 > model.moe.experts 2" -- \
    train "${tiny[@]}" --model.ffn moe --model.moe.experts 2 --model.moe.top_k 3
expect "unknown key" 2 "did you mean 'model.d_model'" -- train "${tiny[@]}" --model.d_modle 64
expect "bad value" 2 "train.steps: expected a positive integer, got 'many'" -- train "${tiny[@]}" --train.steps many
expect "unknown option" 2 "unknown option '--devise'" -- train "${tiny[@]}" --devise cpu

printf 'model:\n  d_model: 64\n   n_layers: 2\n' > "$tmp/bad.yaml"
expect "malformed YAML" 2 "bad.yaml:3:" -- train "$tmp/bad.yaml" "${tiny[@]}"
printf 'model:\n  d_model: 64\n  n_layer: 2\n' > "$tmp/typo.yaml"
expect "YAML unknown key" 2 "typo.yaml:3:3: unknown key 'model.n_layer' (did you mean 'model.n_layers'?)" -- \
    train "$tmp/typo.yaml" "${tiny[@]}"

# a token shard whose header has the wrong magic number (1234)
{ printf '\322\004\000\000\001\000\000\000\004\000\000\000'; head -c 1012 /dev/zero; printf 'abcdefgh'; } > "$tmp/bad.bin"
expect "corrupt shard header" 2 "bad.bin: not a token shard (magic 1234, expected 20240520)" -- \
    train "${tiny[@]}" --data.tokenizer shards --data.train "$tmp/bad.bin"

# a checkpoint cut short
"$HLAB" train "${tiny[@]}" --ckpt "$tmp/ck.safetensors" > /dev/null
size=$(wc -c < "$tmp/ck.safetensors")
head -c $((size - 64)) "$tmp/ck.safetensors" > "$tmp/cut.safetensors"
expect "truncated checkpoint" 2 "cut.safetensors: truncated checkpoint" -- \
    train "${tiny[@]}" --train.steps 4 --ckpt "$tmp/cut.safetensors"
head -c 4 "$tmp/ck.safetensors" > "$tmp/stub.safetensors"
expect "4-byte checkpoint" 2 "stub.safetensors: truncated checkpoint" -- \
    train "${tiny[@]}" --train.steps 4 --ckpt "$tmp/stub.safetensors"
expect "checkpoint of another model" 2 "checkpoint holds a different model" -- \
    train "${tiny[@]}" --model.d_model 48 --ckpt "$tmp/ck.safetensors"
expect "checkpoint of another run" 2 "belongs to a different run" -- \
    train "${tiny[@]}" --train.lr 0.01 --ckpt "$tmp/ck.safetensors"

expect "bench: bad config" 2 "--config expects T, M, S, P, H or all" -- bench --device cpu --config X
expect "bench: bad steps" 2 "--steps expects an integer" -- bench --device cpu --steps 0

[ "$failures" -eq 0 ] || { echo "$failures case(s) failed"; exit 1; }
echo "PASS"
