# tests/train/test_bench_profile.sh — `hlab bench --profile` on the CPU: the
# per-op table is printed (ops sorted by time, an "(outside ops)" and a total
# row, the footnote on syncs), the CSV has one header and a constant column
# count, and bad profile options exit 2 with one error line.
set -euo pipefail
: "${HLAB:?HLAB must name the hlab binary}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() {
    echo "FAIL $*"
    failures=$((failures + 1))
}

"$HLAB" bench --device cpu --config H --shape c --steps 1 --warmup 0 --profile-steps 1 \
    --profile-csv "$tmp/p.csv" > "$tmp/out" 2> "$tmp/err" || fail "bench --profile exited $?: $(cat "$tmp/err")"
cat "$tmp/out"
grep -q '^per-op profile: copy bandwidth' "$tmp/out" || fail "no copy bandwidth line"
grep -q '^profile H MMAMMA 8x256: 1 profiled steps' "$tmp/out" || fail "no profile header"
for op in matmul_fwd matmul_bwd attention_fwd attention_bwd ssd_fwd ssd_bwd adamw '(outside ops)' total; do
    grep -q "^$op " "$tmp/out" || fail "no row for $op"
done
grep -q 'Every op is synced before and after' "$tmp/out" || fail "no footnote on syncs"
# Rows between the column header and "(outside ops)" are sorted by ms/step (column 3), descending.
awk '/^op  /{on=1; next} /^\(outside ops\)/{on=0} on{print $3}' "$tmp/out" > "$tmp/ms"
sort -g -r "$tmp/ms" | cmp -s - "$tmp/ms" || fail "ops are not sorted by time"
[ "$(head -1 "$tmp/p.csv" | cut -d, -f1-4)" = "config,layout,shape,op" ] || fail "CSV header"
cols=$(awk -F, '{print NF}' "$tmp/p.csv" | sort -u)
[ "$cols" = "16" ] || fail "CSV column counts: $cols"
grep -q '^H,MMAMMA,8x256,matmul_fwd,' "$tmp/p.csv" || fail "CSV matmul_fwd row"
grep -q '^H,MMAMMA,8x256,total,' "$tmp/p.csv" || fail "CSV total row"

for bad in "--profile-steps 0" "--profile-csv="; do
    rc=0
    # shellcheck disable=SC2086
    "$HLAB" bench --device cpu $bad > /dev/null 2> "$tmp/err" || rc=$?
    [ "$rc" -eq 2 ] && [ "$(wc -l < "$tmp/err")" -eq 1 ] || fail "'$bad': exit $rc, $(cat "$tmp/err")"
done

[ "$failures" -eq 0 ] && echo "bench --profile: all checks passed"
exit "$failures"
