# tests/db/test_db_readonly_cli.sh — the read commands (hlab list, show,
# report) on a results.db that the user cannot write: the smoke study is
# trained, then its folder is made unwritable (as root, where permissions do
# not stop writes, the commands run as uid 65534 through setpriv). They must
# succeed, print the study, and leave the database byte for byte as it was.
set -uo pipefail
: "${HLAB:?HLAB must name the hlab binary}" "${HLAB_SRC:?}"
[ -r "$HLAB_SRC/../shared/data/tinyshakespeare.txt" ] || { echo "SKIP: shared data missing"; exit 77; }
export OMP_NUM_THREADS=1
tmp=$(mktemp -d)
chmod 755 "$tmp"
trap 'chmod -R u+w "$tmp"; rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
mkdir -p "$tmp/lab" "$tmp/out"
DB=$tmp/lab/results.db
"$HLAB" search "$HLAB_SRC/experiments/smoke.yaml" --device cpu --db "$DB" --quiet > "$tmp/search.txt" 2>&1 \
    || { cat "$tmp/search.txt"; echo "FAIL: the smoke study exited $?"; exit 1; }
[ ! -e "$DB-shm" ] && [ ! -e "$DB-wal" ] || fail "WAL files left after a clean close"

if [ "$(id -u)" = 0 ]; then
    command -v setpriv > /dev/null || { echo "SKIP: running as root without setpriv"; exit 77; }
    chmod 777 "$tmp/out"
    as_reader() { setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; }
else
    chmod a-w "$tmp/lab"
    as_reader() { "$@"; }
fi
as_reader test -w "$tmp/lab" && { echo "SKIP: cannot make the database folder unwritable here"; exit 77; }
sum_before=$(sha256sum < "$DB")

as_reader "$HLAB" list --db "$DB" > "$tmp/list.txt" 2>&1 || fail "hlab list exited $?: $(cat "$tmp/list.txt")"
grep -q "smoke" "$tmp/list.txt" || fail "hlab list does not show the study: $(cat "$tmp/list.txt")"
as_reader "$HLAB" show --db "$DB" 1 > "$tmp/show.txt" 2>&1 || fail "hlab show exited $?: $(cat "$tmp/show.txt")"
grep -q "point 1 of study smoke" "$tmp/show.txt" || fail "hlab show does not show point 1: $(head -3 "$tmp/show.txt")"
(cd "$tmp/out" && as_reader "$HLAB" report --db "$DB" --out "$tmp/out/reports" > "$tmp/report.txt" 2>&1) \
    || fail "hlab report exited $?: $(cat "$tmp/report.txt")"
[ -s "$tmp/out/reports/smoke_pareto.csv" ] || fail "hlab report wrote no smoke_pareto.csv"

[ "$(sha256sum < "$DB")" = "$sum_before" ] || fail "a read command changed the database"
[ ! -e "$DB-shm" ] && [ ! -e "$DB-wal" ] || fail "a read command created WAL files"

[ $fails = 0 ] && echo "read-only commands: ok" || echo "$fails failure(s)"
[ $fails = 0 ]
