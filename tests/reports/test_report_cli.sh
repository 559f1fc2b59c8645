# tests/reports/test_report_cli.sh — `hlab report`, `hlab list`, `hlab show` on
# a synthetic results.db (written through db/db.h by `test_reports --make-db`):
# exit codes, the files written, the CSV parsed by Python's csv module, the SVGs
# well-formed (xmllint) and, where Chromium is installed, rendered headless.
# Optional tools missing only skip their part, with a message.
set -u
HLAB=${HLAB:?HLAB must name the hlab binary}
MAKE_DB="$(dirname "$HLAB")/tests/test_reports"
if [ ! -x "$MAKE_DB" ]; then
    echo "SKIP: $MAKE_DB (the synthetic-db helper) is not built"
    exit 77
fi
TMP=$(mktemp -d /tmp/hlab_test_report_cli.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
expect_rc() { # expected command...
    local want=$1; shift
    "$@" > "$TMP/out.txt" 2> "$TMP/err.txt"
    local rc=$?
    [ "$rc" -eq "$want" ] || fail "'$*' exited $rc, expected $want: $(head -c 300 "$TMP/err.txt")"
}

# Read commands never create a database; a missing one is a usage error (2).
for cmd in report list "show 1"; do
    expect_rc 2 "$HLAB" $cmd --db "$TMP/missing.db"
    grep -q "does not exist" "$TMP/err.txt" || fail "hlab $cmd: unclear message for a missing db: $(cat "$TMP/err.txt")"
done
[ ! -e "$TMP/missing.db" ] || fail "a read command created missing.db"
for cmd in report list show; do expect_rc 0 "$HLAB" $cmd --help; done
expect_rc 2 "$HLAB" report --bogus
expect_rc 2 "$HLAB" report --x nonsense --db "$TMP/missing.db"
expect_rc 2 "$HLAB" show

"$MAKE_DB" --make-db "$TMP/results.db" || { echo "FAIL: could not make the synthetic db"; exit 1; }
DB="$TMP/results.db"

expect_rc 0 "$HLAB" list --db "$DB"
grep -q "synthetic sweep" "$TMP/out.txt" || fail "hlab list does not show the study"
expect_rc 0 "$HLAB" list --db "$DB" --study "synthetic sweep"
[ "$(grep -c ' done ' "$TMP/out.txt")" -eq 20 ] || fail "hlab list --study: expected 20 done points"
grep -q "22 point(s)" "$TMP/out.txt" || fail "hlab list --study: expected 22 points"
expect_rc 2 "$HLAB" list --db "$DB" --study nope
expect_rc 0 "$HLAB" show 4 --db "$DB"
grep -q "out of memory building the model" "$TMP/out.txt" || fail "hlab show 4: the failed run's error is missing"
HASH=$(awk '$1 == 8 {print substr($2, 1, 8)}' <("$HLAB" list --db "$DB" --study "synthetic sweep"))
expect_rc 0 "$HLAB" show "$HASH" --db "$DB"
grep -q "diverged" "$TMP/out.txt" || fail "hlab show $HASH (point 8) should show the diverged run"
grep -q '"layout": "MMMMMA"' "$TMP/out.txt" || fail "hlab show: config not printed"
expect_rc 2 "$HLAB" show 9999 --db "$DB"

OUT="$TMP/reports"
expect_rc 0 "$HLAB" report --db "$DB" --out "$OUT"
grep -q "## model.ratio" "$TMP/out.txt" || fail "hlab report --table did not print the ablation table"
for f in pareto.csv pareto.svg ablation.csv ablation.md curves.svg; do
    [ -s "$OUT/synthetic_sweep_$f" ] || fail "missing $OUT/synthetic_sweep_$f"
done
expect_rc 0 "$HLAB" report --pareto --db "$DB" --study "synthetic sweep" --x tokens_per_s --y val_bpb \
    --objectives val_bpb:min,tokens_per_s:max --out "$TMP/r2"
[ -s "$TMP/r2/synthetic_sweep_pareto.svg" ] && [ ! -e "$TMP/r2/synthetic_sweep_curves.svg" ] ||
    fail "--pareto alone should write only the Pareto files"

if command -v python3 > /dev/null; then
    python3 - "$OUT/synthetic_sweep_pareto.csv" "$OUT/synthetic_sweep_ablation.csv" <<'EOF' || fail "CSV check"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
assert len(rows) == 11, f"{len(rows)} designs"
for r in rows:
    assert r["on_frontier"] in ("0", "1"), r
    float(r["val_loss_mean"]); float(r["train_flops_mean"])
assert any('"odd" <&>' in r["model.placement"] for r in rows), "quoted field lost"
assert sum(r["on_frontier"] == "1" for r in rows) >= 1
abl = list(csv.DictReader(open(sys.argv[2], newline="")))
assert {r["axis"] for r in abl} == {"model.ratio", "model.placement"}, abl[0]
print("CSV ok:", len(rows), "designs,", len(abl), "ablation rows")
EOF
else
    echo "python3 not found: CSV parse check skipped (test_reports parses it in C)"
fi

if command -v xmllint > /dev/null; then
    for f in "$OUT"/*.svg "$TMP"/r2/*.svg; do xmllint --noout "$f" || fail "$f is not well-formed XML"; done
else
    echo "xmllint not found: SVG well-formedness check skipped"
fi

CHROME=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -n "$CHROME" ]; then
    for f in "$OUT"/synthetic_sweep_pareto.svg "$OUT"/synthetic_sweep_curves.svg; do
        png="$TMP/$(basename "$f" .svg).png"
        timeout 60 "$CHROME" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1040,660 \
            --screenshot="$png" "file://$f" > /dev/null 2>&1
        [ -s "$png" ] && [ "$(stat -c %s "$png")" -gt 10000 ] || fail "Chromium did not render $f"
    done
else
    echo "chromium not found: headless render check skipped"
fi

if [ "$fails" -ne 0 ]; then
    echo "$fails check(s) failed"
    exit 1
fi
echo "all report CLI checks passed"
