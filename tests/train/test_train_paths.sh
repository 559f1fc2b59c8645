# tests/train/test_train_paths.sh — where relative data paths start:
#   - data.train / data.val written in a POINT.yaml: at that YAML's folder,
#     whatever the working directory (the shipped experiments/points/ files too);
#   - --data.train on the command line: at the working directory;
#   - a file that cannot be opened: the error names the path as resolved.
set -euo pipefail
: "${HLAB:?HLAB must name the hlab binary}" "${HLAB_DATA:?}" "${HLAB_SRC:?}"
DATA=$HLAB_DATA/tinyshakespeare.txt
[ -r "$DATA" ] || { echo "SKIP: $DATA is missing"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

tiny=(--device cpu --model.d_model 32 --model.n_layers 2 --model.head_dim 16 --model.mamba.headdim 16
      --model.mamba.d_state 8 --model.mamba.chunk 16 --train.steps 1 --train.batch 2 --train.seq_len 16
      --train.warmup 1 --train.eval_batches 1 --quiet)
fail() { echo "FAIL: $*" >&2; sed 's/^/    /' "$tmp/err" >&2 || true; exit 1; }

# A point folder holding its data (a copy's head: enough for a split), and a
# working directory elsewhere that has a different file of the same name.
mkdir -p "$tmp/point/data" "$tmp/elsewhere/data"
head -c 200000 "$DATA" > "$tmp/point/data/text.txt"
head -c 100000 "$DATA" | tail -c 50000 > "$tmp/point/data/val.txt"
printf 'tiny' > "$tmp/elsewhere/data/text.txt" # far too short: using it fails
printf 'data:\n  train: data/text.txt\n  val: data/val.txt\n' > "$tmp/point/p.yaml"

(cd "$tmp/elsewhere" && "$HLAB" train ../point/p.yaml "${tiny[@]}" > "$tmp/out" 2> "$tmp/err") ||
    fail "a relative data.train in the YAML did not resolve against the YAML's folder"
echo "ok   YAML paths start at the YAML's folder"

(cd "$tmp/elsewhere" && "$HLAB" train "$tmp/point/p.yaml" "${tiny[@]}" --data.train "$tmp/point/data/text.txt" \
    > "$tmp/out" 2> "$tmp/err") || fail "an absolute --data.train override"
rc=0
(cd "$tmp/point" && "$HLAB" train p.yaml "${tiny[@]}" --data.train data/missing.txt > "$tmp/out" 2> "$tmp/err") ||
    rc=$?
[ "$rc" -eq 2 ] && grep -q "^hlab: error: data/missing.txt: cannot open" "$tmp/err" ||
    fail "a relative --data.train override should stay relative to the working directory (exit $rc)"
echo "ok   --data.train overrides start at the working directory: $(cat "$tmp/err")"

printf 'data:\n  train: nowhere/missing.txt\n' > "$tmp/point/missing.yaml"
rc=0
(cd "$tmp/elsewhere" && "$HLAB" train ../point/missing.yaml "${tiny[@]}" > "$tmp/out" 2> "$tmp/err") || rc=$?
[ "$rc" -eq 2 ] && grep -q "\.\./point/nowhere/missing.txt: cannot open" "$tmp/err" ||
    fail "a missing data file should be named as resolved, ../point/nowhere/missing.txt (exit $rc)"
echo "ok   a missing file is named as resolved: $(cat "$tmp/err")"

# the shipped points train from any working directory
for yaml in "$HLAB_SRC"/experiments/points/*.yaml; do
    train_line=$(grep -E '^\s+train:' "$yaml" || true)
    case $train_line in *shared/data/tinyshakespeare.txt*) ;; *) continue ;; esac
    # the shipped points name ../../../shared/data (the lab's layout); skip where it is not there
    [ -r "$(dirname "$yaml")/../../../shared/data/tinyshakespeare.txt" ] || continue
    (cd "$tmp" && "$HLAB" train "$yaml" "${tiny[@]}" > "$tmp/out" 2> "$tmp/err") || fail "$yaml from $tmp"
    echo "ok   $(basename "$yaml") trains from $tmp"
done
echo "PASS"
