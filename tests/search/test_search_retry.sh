# tests/search/test_search_retry.sh — `hlab search --retry-failed` and
# `--retry-diverged` on the smoke study (CPU):
#   1. a point whose checkpoint is truncated fails on resume, and its error
#      (run row and output) says to use --retry-failed; the study goes on;
#   2. a plain re-run leaves it failed and trains nothing;
#   3. --retry-failed trains it again from step 0 (its checkpoint removed, its
#      old runs kept), to the same val_loss as its first, uninterrupted run,
#      and trains nothing else;
#   4. --retry-failed leaves diverged points alone; --retry-diverged retrains
#      them (and only them).
set -uo pipefail
: "${HLAB:?HLAB must name the hlab binary}" "${HLAB_SRC:?}"
[ -r "$HLAB_SRC/../shared/data/tinyshakespeare.txt" ] || { echo "SKIP: shared data missing"; exit 77; }
command -v sqlite3 > /dev/null || { echo "SKIP: sqlite3 (the command) is not installed"; exit 77; }
export OMP_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
DB=$tmp/results.db
q() { sqlite3 "$DB" "$1"; }
STUDY=$HLAB_SRC/experiments/smoke.yaml
search() { "$HLAB" search "$STUDY" --device cpu --db "$DB" --quiet "$@"; }

search > "$tmp/run1.txt" 2>&1 || { cat "$tmp/run1.txt"; echo "FAIL: the smoke study exited $?"; exit 1; }
[ "$(q "select count(*) from points where status = 'done'")" = 4 ] || fail "want 4 done points"
# the victim: the second point (the others must never be trained again)
victim=$(q "select id from points order by id limit 1 offset 1")
hash=$(q "select hash from points where id = $victim")
ckpt=$tmp/runs/smoke/$hash.safetensors
first_val=$(q "select val_loss from results where point_id = $victim")
[ -s "$ckpt" ] || fail "no checkpoint $ckpt"

# 1. as a run killed while writing would leave it: the point is to be resumed,
#    its checkpoint truncated
q "update points set status = 'interrupted' where id = $victim"
truncate -s 1000 "$ckpt"
search > "$tmp/run2.txt" 2>&1
rc=$?
cat "$tmp/run2.txt"
[ $rc = 1 ] || fail "a failed point should make the run exit 1, got $rc"
[ "$(q "select status from points where id = $victim")" = failed ] || fail "the truncated checkpoint did not fail the point"
err=$(q "select error from runs where point_id = $victim and status = 'failed'")
case "$err" in
*"$hash.safetensors"*"--retry-failed"*) ;;
*) fail "the failed run's error should name the checkpoint and --retry-failed: '$err'" ;;
esac
grep -q -- "--retry-failed" "$tmp/run2.txt" || fail "the output does not tell the user about --retry-failed"

# 2. failed is final until asked: a plain re-run trains nothing
search > "$tmp/run3.txt" 2>&1
grep -q "0 trained now" "$tmp/run3.txt" || fail "a plain re-run trained something: $(tail -1 "$tmp/run3.txt")"
[ "$(q "select status from points where id = $victim")" = failed ] || fail "a plain re-run changed the failed point"

# 3. --retry-failed: from scratch, same result as the first run, nothing else trained
search --retry-failed > "$tmp/run4.txt" 2>&1
rc=$?
cat "$tmp/run4.txt"
[ $rc = 0 ] || fail "--retry-failed exited $rc"
grep -q "1 trained now" "$tmp/run4.txt" || fail "--retry-failed should train exactly 1 point: $(tail -1 "$tmp/run4.txt")"
[ "$(q "select count(*) from points where status = 'done'")" = 4 ] || fail "not every point is done after --retry-failed"
[ "$(q "select group_concat(status, ' ') from (select status from runs where point_id = $victim order by id)")" = "done failed done" ] \
    || fail "the victim's runs should be kept as history: $(q "select group_concat(status, ' ') from runs where point_id = $victim")"
[ "$(q "select count(*) from runs where point_id != $victim")" = 3 ] || fail "another point was trained again"
last_run=$(q "select max(id) from runs where point_id = $victim")
# from scratch: the first metrics row of the new run is the first log step (5), not past the old checkpoint
[ "$(q "select min(step) from metrics where run_id = $last_run")" = 5 ] \
    || fail "the retried run did not start from step 0 (first logged step $(q "select min(step) from metrics where run_id = $last_run"))"
new_val=$(q "select val_loss from results where run_id = $last_run")
[ -n "$new_val" ] && [ "$new_val" = "$first_val" ] \
    || fail "retrained from scratch, val_loss $new_val should equal the first run's $first_val"
[ "$(stat -c %s "$ckpt")" -gt 100000 ] || fail "the retried point has no complete checkpoint"

# 4. diverged points: left alone by --retry-failed, retrained by --retry-diverged
mkdir -p "$tmp/a/b" "$tmp/shared" && ln -s "$(cd "$HLAB_SRC/../shared/data" && pwd)" "$tmp/shared/data"
cat > "$tmp/a/b/div.yaml" <<YAML
name: div
data: { train: ../../shared/data/tinyshakespeare.txt }
base:
  model: { d_model: 64, n_layers: 2, head_dim: 32, ratio: "1:1", mamba: { headdim: 32, d_state: 16, chunk: 32 } }
  train: { steps: 12, batch: 2, seq_len: 32, warmup: 1, log_every: 2, eval_batches: 2 }
space:
  train.lr: [3e-3, 1e4]
YAML
div() { "$HLAB" search "$tmp/a/b/div.yaml" --device cpu --db "$DB" --quiet "$@" > "$tmp/div.txt" 2>&1; }
sid="(select id from studies where name = 'div')"
runs_of() { q "select group_concat(n, ' ') from (select count(r.id) as n from points p left join runs r on r.point_id = p.id
               where p.study_id = $sid group by p.id order by p.id)"; }
div
[ "$(q "select group_concat(status, ' ') from (select status from points where study_id = $sid order by id)")" = "done diverged" ] \
    || fail "div study: $(q "select status from points where study_id = $sid" | tr '\n' ' ')"
div --retry-failed
[ "$(runs_of)" = "1 1" ] || fail "--retry-failed retrained a diverged or done point (runs per point: $(runs_of))"
div --retry-diverged
[ "$(runs_of)" = "1 2" ] || fail "--retry-diverged should retrain the diverged point only (runs per point: $(runs_of))"
[ "$(q "select status from points where study_id = $sid order by id desc limit 1")" = diverged ] \
    || fail "lr 1e4 retried should diverge again"
[ "$(q "select count(*) from runs where point_id in (select id from points where study_id = (select id from studies where name = 'smoke'))")" = 6 ] \
    || fail "the div runs touched the smoke study"

[ $fails = 0 ] && echo "retry: ok" || echo "$fails failure(s)"
[ $fails = 0 ]
