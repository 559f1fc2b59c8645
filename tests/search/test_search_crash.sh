# tests/search/test_search_crash.sh — crash safety of `hlab search`: the smoke
# study is killed with SIGKILL at pseudo-random moments several times and run
# again until it completes. Then
#   - every point has exactly one result, from its last run (nothing finished
#     was trained again), and every earlier run is 'interrupted';
#   - every checkpointed resume continued from the step the last run reached
#     at a checkpoint (no point restarted from scratch after making progress);
#   - each point's final validation loss equals that of an uninterrupted
#     reference run (resuming from a checkpoint is exact).
# HLAB_CRASH_KILLS sets the number of kills (default 6); HLAB_CRASH_SEED the
# seed of the kill moments (default fixed, so a failure reproduces).
set -uo pipefail
: "${HLAB:?HLAB must name the hlab binary}" "${HLAB_SRC:?}"
[ -r "$HLAB_SRC/../shared/data/tinyshakespeare.txt" ] || { echo "SKIP: shared data missing"; exit 77; }
command -v sqlite3 > /dev/null || { echo "SKIP: sqlite3 (the command) is not installed"; exit 77; }
export OMP_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
STUDY=$HLAB_SRC/experiments/smoke.yaml
KILLS=${HLAB_CRASH_KILLS:-6}
RANDOM=${HLAB_CRASH_SEED:-4242}

# the reference: uninterrupted (its own folder: checkpoints live next to the db)
mkdir -p "$tmp/ref" "$tmp/crash"
t0=$(date +%s.%N)
"$HLAB" search "$STUDY" --device cpu --db "$tmp/ref/results.db" --quiet > "$tmp/ref.txt" 2>&1 || { cat "$tmp/ref.txt"; exit 1; }
full=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')   # one full run, for the kill moments
echo "one uninterrupted run takes ${full} s"

DB=$tmp/crash/results.db
for k in $(seq 1 "$KILLS"); do
    "$HLAB" search "$STUDY" --device cpu --db "$DB" --quiet > "$tmp/kill$k.txt" 2>&1 &
    pid=$!
    # a moment between 5% and 40% of a full run (startup, training, checkpoint
    # writes and db transactions all get hit over several kills)
    pct=$((5 + RANDOM % 36))   # drawn here: $RANDOM inside $(...) would not advance
    delay=$(awk -v f="$full" -v p="$pct" 'BEGIN {printf "%.3f", f * p / 100}')
    sleep "$delay"
    kill -9 $pid 2> /dev/null
    wait $pid 2> /dev/null
    done_now=$(sqlite3 "$DB" "select count(*) from points where status = 'done'" 2>/dev/null || echo "?")
    echo "kill $k after ${delay} s: $done_now points done"
done
for attempt in 1 2 3; do
    "$HLAB" search "$STUDY" --device cpu --db "$DB" --quiet > "$tmp/final.txt" 2>&1 && break
done
tail -1 "$tmp/final.txt"
q() { sqlite3 "$DB" "$1"; }
[ "$(q "select count(*) from points where status = 'done'")" = 4 ] || fail "not every point is done"
# exactly one result per point, from the point's last run
[ "$(q "select count(*) from results")" = 4 ] || fail "want 4 results, have $(q "select count(*) from results")"
bad=$(q "select p.id from points p where (select count(*) from results x join runs r on r.id = x.run_id where r.point_id = p.id) != 1")
[ -z "$bad" ] || fail "points without exactly one result: $bad"
bad=$(q "select p.id from points p where (select r.id from results x join runs r on r.id = x.run_id where r.point_id = p.id)
         != (select max(id) from runs where point_id = p.id)")
[ -z "$bad" ] || fail "points trained again after their result: $bad"
bad=$(q "select id || ':' || status from runs r where status != 'done' and status != 'interrupted'")
[ -z "$bad" ] || fail "runs in unexpected states: $bad"
# resumes continue: a run's first logged step is after the last checkpoint that
# the earlier runs surely wrote. smoke.yaml checkpoints every 10 steps, after
# logging the step, so a run that logged step s (its steps_done) wrote the
# checkpoint of every multiple of 10 below s: (s - 1) / 10 * 10.
bad=$(q "select r.id from runs r where exists (select 1 from runs e where e.point_id = r.point_id and e.id < r.id)
         and (select min(step) from metrics where run_id = r.id) <= (((select max(steps_done) from runs e
              where e.point_id = r.point_id and e.id < r.id) - 1) / 10) * 10")
[ -z "$bad" ] || fail "runs that did not resume from the last checkpoint: $bad"
# exact resume: the final val_loss of every point equals the reference
sqlite3 "$tmp/ref/results.db" "select p.hash, printf('%.9g', x.val_loss) from points p join runs r on r.point_id = p.id join results x on x.run_id = r.id order by p.hash" > "$tmp/ref.vals"
q "select p.hash, printf('%.9g', x.val_loss) from points p join runs r on r.point_id = p.id join results x on x.run_id = r.id order by p.hash" > "$tmp/crash.vals"
cmp -s "$tmp/ref.vals" "$tmp/crash.vals" || { fail "val_loss differs from the uninterrupted run"; diff "$tmp/ref.vals" "$tmp/crash.vals"; }
echo "runs per point: $(q "select count(*) from runs group by point_id" | tr '\n' ' ')"
echo "$fails failures"
[ "$fails" = 0 ]
