# tests/search/test_search_errors.sh — the malformed-study corpus: every file
# of tests/search/bad/ must be refused by `hlab search --dry-run` with exit
# code 2 and the message on its first line ("# expect: FILE:LINE:COL: ..."),
# position included. Also checks bad usage of the command itself.
set -uo pipefail
: "${HLAB:?HLAB must name the hlab binary}" "${HLAB_SRC:?}"
[ -r "$HLAB_SRC/../shared/data/tinyshakespeare.txt" ] || { echo "SKIP: shared data missing"; exit 77; }
cd "$HLAB_SRC/tests/search/bad" || exit 1
fails=0 n=0
for f in *.yaml; do
    n=$((n + 1))
    want=$(sed -n '1s/^# expect: //p' "$f")
    [ -n "$want" ] || { echo "FAIL $f: no '# expect:' line"; fails=$((fails + 1)); continue; }
    got=$("$HLAB" search "$f" --dry-run 2>&1 >/dev/null)
    rc=$?
    if [ "$rc" != 2 ]; then
        echo "FAIL $f: exit code $rc, expected 2 ($got)"; fails=$((fails + 1))
    elif [[ "$got" != *"hlab: error: $want"* ]]; then
        echo "FAIL $f"; echo "  expected: $want"; echo "  got:      $got"; fails=$((fails + 1))
    else
        echo "ok   $f"
    fi
done
[ "$n" -ge 20 ] || { echo "FAIL: only $n malformed studies (want >= 20)"; fails=$((fails + 1)); }

# usage errors of the command
check_usage() {
    local want=$1; shift
    local got rc
    got=$("$HLAB" search "$@" 2>&1 >/dev/null); rc=$?
    if [ "$rc" != 2 ] || [[ "$got" != *"$want"* ]]; then
        echo "FAIL: hlab search $*: rc $rc, '$got' (expected '$want')"; fails=$((fails + 1))
    else echo "ok   hlab search $*"; fi
}
check_usage "expected a STUDY.yaml"
check_usage "unknown option '--bogus'" --bogus x.yaml
check_usage "no/such.yaml" no/such.yaml --dry-run
check_usage "--workers expects a positive integer" x.yaml --workers zero
"$HLAB" search --help | grep -q "usage: hlab search" || { echo "FAIL: --help"; fails=$((fails + 1)); }

echo "$n malformed studies, $fails failures"
[ "$fails" = 0 ]
