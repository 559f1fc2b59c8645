# tests/search/test_search_studies.sh — the shipped studies (experiments/*.yaml)
# through `hlab search --dry-run`: each validates, expands to the expected
# number of designs and points (constraints applied), the 25M sweeps land every
# point within 2% of 25e6 parameters with two seeds per design, hashes are
# unique, and the result does not depend on the working directory.
set -uo pipefail
: "${HLAB:?HLAB must name the hlab binary}" "${HLAB_SRC:?}"
[ -r "$HLAB_SRC/../shared/data/tinyshakespeare.txt" ] || { echo "SKIP: shared data missing"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# study  designs  excluded-by-constraints  seeds  iso-25M
expect="ratio_sweep 6 0 2 1
placement_sweep 9 3 2 1
fusion_sweep 6 4 2 1
norm_sweep 4 0 2 1
moe_sweep 5 3 2 1
smoke 2 0 2 0"
n_files=$(ls "$HLAB_SRC"/experiments/*.yaml | wc -l)
[ "$n_files" -eq 6 ] || fail "experiments/ has $n_files studies, this test knows 6: add the new one here"

while read -r name designs excluded seeds iso; do
    f=experiments/$name.yaml
    (cd "$HLAB_SRC" && "$HLAB" search "$f" --dry-run) > "$tmp/$name.txt" 2> "$tmp/$name.err" \
        || { fail "$f: dry run exited $?: $(cat "$tmp/$name.err")"; continue; }
    head -c 300 "$HLAB_SRC/$f" | grep -q "^# $name" || fail "$f: the header comment does not start with '# $name'"
    grep -qi "question" "$HLAB_SRC/$f" || [ "$name" = smoke ] || fail "$f: the header does not state its question"
    # header: "study NAME (grid): C combinations, X excluded by constraints, D designs x S seeds = P points"
    read -r c x d s p <<< "$(sed -n '1s/.*: \([0-9]*\) combinations, \([0-9]*\) excluded by constraints, \([0-9]*\) designs x \([0-9]*\) seeds = \([0-9]*\) points/\1 \2 \3 \4 \5/p' "$tmp/$name.txt")"
    [ "$d" = "$designs" ] && [ "$x" = "$excluded" ] && [ "$s" = "$seeds" ] && [ "$p" = $((designs * seeds)) ] \
        && [ "$c" = $((designs + excluded)) ] \
        || fail "$name: got $c combinations, $x excluded, $d designs x $s seeds = $p points; want $((designs + excluded)), $excluded, $designs x $seeds"
    rows=$(awk '$1 ~ /^[0-9]+$/' "$tmp/$name.txt")
    [ "$(echo "$rows" | wc -l)" = "$p" ] || fail "$name: table rows != $p"
    [ "$(echo "$rows" | awk '{print $2}' | sort -u | wc -l)" = "$p" ] || fail "$name: hashes are not unique"
    [ "$(echo "$rows" | awk '{print $1}' | sort | uniq -c | awk -v s="$seeds" '$1 != s' | wc -l)" = 0 ] \
        || fail "$name: some design does not have $seeds seeds"
    if [ "$iso" = 1 ]; then
        bad=$(echo "$rows" | awk '{p = $7; if (p < 0.98 * 25e6 || p > 1.02 * 25e6) print $1 " params " p}')
        [ -z "$bad" ] || fail "$name: points outside 25e6 +- 2%: $bad"
        # the seeds of one design are one config: same size
        [ "$(echo "$rows" | awk '{print $1, $7}' | sort -u | wc -l)" = "$designs" ] || fail "$name: seeds differ in size"
    fi
    # the same from another working directory (data path relative to the study file)
    (cd "$tmp" && "$HLAB" search "$HLAB_SRC/$f" --dry-run) > "$tmp/$name.2" 2>&1 || fail "$name: dry run from $tmp failed"
    cmp -s "$tmp/$name.txt" "$tmp/$name.2" || fail "$name: the dry run depends on the working directory"
    echo "ok   $name: $d designs x $s seeds = $p points ($x excluded by constraints)"
done <<< "$expect"

# placement_sweep: the constraint keeps 1:0 only with uniform placement
grep "ratio=1:0" "$tmp/placement_sweep.txt" | grep -vq "placement=uniform" && fail "placement_sweep: 1:0 with non-uniform placement"
# fusion_sweep: one sequential design, five parallel ones with distinct fusion operators
[ "$(grep -c 'fusion=sequential' "$tmp/fusion_sweep.txt")" = 2 ] || fail "fusion_sweep: want 1 sequential design x 2 seeds"
[ "$(grep 'fusion=parallel' "$tmp/fusion_sweep.txt" | awk '{print $NF}' | sort -u | wc -l)" = 5 ] \
    || fail "fusion_sweep: want 5 fusion operators"
# a dry run trains nothing and writes no database
(cd "$tmp" && "$HLAB" search "$HLAB_SRC/experiments/smoke.yaml" --dry-run > /dev/null)
[ ! -e "$tmp/results.db" ] || fail "--dry-run wrote results.db"
echo "$fails failures"
[ "$fails" = 0 ]
