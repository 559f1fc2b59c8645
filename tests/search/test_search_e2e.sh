# tests/search/test_search_e2e.sh — experiments/smoke.yaml end to end through
# `hlab search` on the CPU, then `hlab report`:
#   1. every point trains, rows land in results.db (points, runs, results,
#      metrics with the loss going down) and a checkpoint per point;
#   2. running again trains nothing; an edited study (one more seed) trains
#      only the new points;
#   3. a diverging point is recorded 'diverged', a failing one 'failed' with
#      its message, and the study goes on (exit code 1);
#   4. Ctrl-C stops with exit code 130 and the next run resumes the point;
#      successive halving trains rungs of 10, 20, 40 steps, keeps the best
#      half by val_loss and continues survivors from their checkpoints;
#      --restart starts a study over; two workers give the same results;
#   5. hlab report --pareto writes its CSV and SVG from this database.
set -uo pipefail
: "${HLAB:?HLAB must name the hlab binary}" "${HLAB_SRC:?}"
DATA_DIR=$(cd "$HLAB_SRC/../shared/data" 2>/dev/null && pwd) || { echo "SKIP: shared data missing"; exit 77; }
command -v sqlite3 > /dev/null || { echo "SKIP: sqlite3 (the command) is not installed"; exit 77; }
# tiny models gain nothing from threads, and OpenMP spinning on a loaded CI
# machine slows them tenfold
export OMP_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
q() { sqlite3 "$DB" "$1"; }
DB=$tmp/results.db
t0=$(date +%s)

# 1. the smoke study from the repo root, as CI runs it
(cd "$HLAB_SRC" && "$HLAB" search experiments/smoke.yaml --device cpu --db "$DB" --quiet) > "$tmp/run1.txt" 2>&1
rc=$?
cat "$tmp/run1.txt"
[ $rc = 0 ] || fail "smoke exited $rc"
[ "$(q "select count(*) from studies where name = 'smoke'")" = 1 ] || fail "no study row"
[ "$(q "select count(*) from points")" = 4 ] || fail "want 4 points"
[ "$(q "select count(*) from points where status = 'done'")" = 4 ] || fail "not every point is done"
[ "$(q "select count(*) from runs")" = 4 ] || fail "want 4 runs"
[ "$(q "select count(*) from results")" = 4 ] || fail "want 4 results"
[ "$(q "select count(*) from results where val_loss > 0 and val_loss < 10")" = 4 ] || fail "implausible val_loss"
[ "$(ls "$tmp/runs/smoke/"*.safetensors 2>/dev/null | wc -l)" = 4 ] || fail "want 4 checkpoints in runs/smoke/"
# the loss goes down in every run: mean of the last two logged losses < the first
down=$(q "select count(*) from runs r where
          (select avg(loss) from (select loss from metrics where run_id = r.id and loss is not null order by step desc limit 2))
        < (select loss from metrics where run_id = r.id and loss is not null order by step limit 1) - 0.5")
[ "$down" = 4 ] || fail "the loss did not go down in every run ($down of 4)"
[ "$(q "select count(distinct json_extract(config_json, '$.model.n_layers')) from points")" -ge 1 ] \
    || fail "config_json is not queryable JSON"

# 2. again: nothing to train; then one more seed: only the two new points train
(cd "$HLAB_SRC" && "$HLAB" search experiments/smoke.yaml --device cpu --db "$DB" --quiet) > "$tmp/run2.txt" 2>&1 \
    || fail "second run exited $?"
grep -q "0 trained now" "$tmp/run2.txt" || fail "the second run trained something: $(tail -1 "$tmp/run2.txt")"
[ "$(q "select count(*) from runs")" = 4 ] || fail "the second run added runs"
mkdir -p "$tmp/a/b" "$tmp/shared" && ln -s "$DATA_DIR" "$tmp/shared/data"
sed 's/^seeds: \[0, 1\]/seeds: [0, 1, 2]/' "$HLAB_SRC/experiments/smoke.yaml" > "$tmp/a/b/smoke.yaml"
grep -q "seeds: \[0, 1, 2\]" "$tmp/a/b/smoke.yaml" || fail "could not edit the study"
"$HLAB" search "$tmp/a/b/smoke.yaml" --device cpu --db "$DB" --quiet > "$tmp/run3.txt" 2>&1 || fail "edited run exited $?"
grep -q "(2 new this time)" "$tmp/run3.txt" && grep -q "2 trained now" "$tmp/run3.txt" \
    || fail "the edited study did not train exactly the 2 new points: $(tail -1 "$tmp/run3.txt")"
[ "$(q "select count(*) from points where status = 'done'")" = 6 ] || fail "want 6 done points"

# 3. faults: lr 1e4 diverges, a missing validation file fails; the study goes on
cat > "$tmp/a/b/faults.yaml" <<YAML
name: faults
data: { train: ../../shared/data/tinyshakespeare.txt }
base:
  model: { d_model: 64, n_layers: 2, head_dim: 32, ratio: "1:1", mamba: { headdim: 32, d_state: 16, chunk: 32 } }
  train: { steps: 12, batch: 2, seq_len: 32, warmup: 1, log_every: 2, eval_batches: 2 }
space:
  train.lr: [3e-3, 1e4]
  data.val: ["", /nonexistent/val.txt]
constraints: ["train.lr < 1 or data.val == ''"]
YAML
"$HLAB" search "$tmp/a/b/faults.yaml" --device cpu --db "$DB" --quiet > "$tmp/run4.txt" 2>&1
rc=$?
[ $rc = 1 ] || fail "a study with diverged/failed points exits $rc, want 1"
sid="(select id from studies where name = 'faults')"
[ "$(q "select status from points where study_id = $sid order by id" | tr '\n' ' ')" = "done failed diverged " ] \
    || fail "fault statuses: $(q "select label, status from points where study_id = $sid" | tr '\n' ' ')"
q "select error from runs join points on points.id = runs.point_id where points.study_id = $sid and points.status = 'failed'" \
    | grep -q "nonexistent" || fail "the failed run's error does not name the missing file"
q "select error from runs join points on points.id = runs.point_id where points.study_id = $sid and points.status = 'diverged'" \
    | grep -q "diverged" || fail "the diverged run has no message"

# 4. Ctrl-C: stop during the first point of a fresh study, then resume it
sed 's/^name: smoke/name: smoke_int/; s/    steps: 30/    steps: 80/' "$tmp/a/b/smoke.yaml" > "$tmp/a/b/int.yaml"
"$HLAB" search "$tmp/a/b/int.yaml" --device cpu --db "$DB" > "$tmp/run5.txt" 2>&1 &
pid=$!
for _ in $(seq 1 600); do grep -q "step " "$tmp/run5.txt" && break; sleep 0.1; done
kill -INT $pid
wait $pid
rc=$?
[ $rc = 130 ] || fail "Ctrl-C exit code $rc, want 130"
sid="(select id from studies where name = 'smoke_int')"
[ "$(q "select count(*) from runs join points on points.id = runs.point_id where study_id = $sid and runs.status = 'interrupted'")" = 1 ] \
    || fail "want one interrupted run after Ctrl-C"
stopped=$(q "select steps_done from runs join points on points.id = runs.point_id where study_id = $sid")
sed -i 's/^seeds: \[0, 1, 2\]/seeds: [0]/; s/^  model.ratio: \["0:1", "1:1"\]/  model.ratio: ["0:1"]/' "$tmp/a/b/int.yaml"
"$HLAB" search "$tmp/a/b/int.yaml" --device cpu --db "$DB" --quiet > "$tmp/run6.txt" 2>&1 || fail "resume exited $?"
first_step=$(q "select min(step) from metrics m join runs r on r.id = m.run_id join points p on p.id = r.point_id
                where p.study_id = $sid and r.id = (select max(r2.id) from runs r2 join points p2 on p2.id = r2.point_id where p2.study_id = $sid)")
[ -n "$stopped" ] && [ "$stopped" -gt 0 ] && [ "$first_step" -gt "$stopped" ] \
    || fail "the resumed run did not continue from its checkpoint (stopped at '$stopped', resumed at '$first_step')"

# --restart forgets the study's runs and checkpoints: the point trains from step 1
"$HLAB" search "$tmp/a/b/int.yaml" --device cpu --db "$DB" --quiet --restart > "$tmp/run6b.txt" 2>&1 || fail "--restart exited $?"
[ "$(q "select count(*) from runs join points on points.id = runs.point_id where study_id = $sid")" = 1 ] \
    || fail "--restart kept old runs"
[ "$(q "select min(step) from metrics join runs on runs.id = metrics.run_id join points on points.id = runs.point_id where study_id = $sid")" -le 5 ] \
    || fail "--restart resumed from an old checkpoint"

# 4b. successive halving: 4 learning rates, eta 2, rungs of 10, 20, 40 steps
cat > "$tmp/a/b/halving.yaml" <<YAML
name: halving
data: { train: ../../shared/data/tinyshakespeare.txt }
base:
  model: { d_model: 64, n_layers: 2, head_dim: 32, ratio: "1:1", mamba: { headdim: 32, d_state: 16, chunk: 32 } }
  train: { steps: 40, batch: 4, seq_len: 64, warmup: 2, log_every: 5, eval_batches: 4 }
space:
  train.lr: [1e-4, 3e-3, 1e-2, 3e-4]
strategy: { kind: halving, eta: 2, min_steps: 10, max_steps: 40 }
YAML
"$HLAB" search "$tmp/a/b/halving.yaml" --device cpu --db "$DB" --quiet > "$tmp/run7.txt" 2>&1 || fail "halving exited $?"
sid="(select id from studies where name = 'halving')"
hv() { q "select $1 from points p join runs r on r.point_id = p.id join results x on x.run_id = r.id where p.study_id = $sid $2"; }
[ "$(hv "x.steps_done" "order by r.id" | tr '\n' ' ')" = "10 10 10 10 20 20 40 " ] \
    || fail "halving rungs: results at steps $(hv "x.steps_done" "order by r.id" | tr '\n' ' '), want 10 x4, 20 x2, 40 x1"
# survivors are the best of the previous rung, by val_loss
best2=$(hv "p.id" "and x.steps_done = 10 order by x.val_loss limit 2" | sort | tr '\n' ' ')
got2=$(hv "p.id" "and x.steps_done = 20" | sort | tr '\n' ' ')
[ "$best2" = "$got2" ] || fail "rung 1 trained points $got2, the best of rung 0 are $best2"
best1=$(hv "p.id" "and x.steps_done = 20 order by x.val_loss limit 1")
[ "$best1" = "$(hv "p.id" "and x.steps_done = 40")" ] || fail "the last rung did not train the best of rung 1"
# survivors continue from their checkpoints: no run of a survivor logs step <= the previous rung
[ "$(q "select count(*) from runs r join points p on p.id = r.point_id where p.study_id = $sid and r.steps_done > 10
        and (select min(step) from metrics where run_id = r.id) <= 10")" = 0 ] || fail "a survivor restarted from scratch"
"$HLAB" search "$tmp/a/b/halving.yaml" --device cpu --db "$DB" --quiet > "$tmp/run8.txt" 2>&1 || fail "halving re-run exited $?"
grep -q "0 trained now" "$tmp/run8.txt" || fail "re-running a finished halving study trained again"

# 4c. two workers train the same points to the same results (each point is deterministic)
mkdir -p "$tmp/w2"
(cd "$HLAB_SRC" && "$HLAB" search experiments/smoke.yaml --device cpu --db "$tmp/w2/results.db" --workers 2 --quiet) \
    > "$tmp/run9.txt" 2>&1 || fail "--workers 2 exited $?"
vals() { sqlite3 "$1" "select p.hash, printf('%.9g', x.val_loss) from points p join runs r on r.point_id = p.id
                       join results x on x.run_id = r.id join studies s on s.id = p.study_id where s.name = 'smoke' and p.seed < 2 order by p.hash"; }
[ "$(vals "$tmp/w2/results.db")" = "$(vals "$DB")" ] && [ -n "$(vals "$DB")" ] \
    || fail "--workers 2 gave other results than one worker"

# 5. the report of the smoke study
if "$HLAB" report --pareto --db "$DB" --study smoke --out "$tmp/report" > "$tmp/report.txt" 2>&1; then
    ls "$tmp/report"/*.csv > /dev/null 2>&1 || fail "hlab report --pareto wrote no CSV"
    ls "$tmp/report"/*.svg > /dev/null 2>&1 || fail "hlab report --pareto wrote no SVG"
    [ "$(cat "$tmp/report"/*.csv | wc -l)" -ge 3 ] || fail "the CSV has fewer rows than designs"
else
    fail "hlab report --pareto on the smoke db: $(cat "$tmp/report.txt")"
fi
echo "$fails failures ($(( $(date +%s) - t0 )) s)"
[ "$fails" = 0 ]
