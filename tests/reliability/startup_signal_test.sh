#!/usr/bin/env bash
# startup_signal_test.sh PFT: a preemption signal before the first training step is honoured, not
# fatal (before the fix: killed by the default action, exit 138, and a stale *.h5.tmp-* left in
# the token cache that no later run removed). 2 ranks through launch/pft-mpirun:
#   1. SIGTERM to pft-mpirun while rank 0 builds the token stores (each block of 64 examples
#      made 0.5 s slower: PFT_TEST_DELAY=store_block:0.5, core/test_hooks.h) -> every rank exits
#      75 within seconds, the store being written is removed (no *.tmp-* in the cache);
#   2. a stale temporary store file of a dead writer, planted in the cache, is removed by the
#      next run, and one that a live process holds locked (a concurrent writer) is left alone;
#   3. SIGUSR1 to ONE rank during the step-0 evaluation (PFT_TEST_DELAY=eval:3) -> the evaluation
#      ends, then both ranks exit 75 together; no step is trained.
set -uo pipefail
pft="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/pft-startup-signal-XXXXXX")"
holder=""
trap '[[ -n "$holder" ]] && kill -- -"$holder" 2> /dev/null; rm -rf "$work"' EXIT
set -m
export PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 OMP_NUM_THREADS=1
fail() { echo "FAIL: $*" >&2; [[ -n "${log:-}" ]] && tail -n 30 "$log" >&2; exit 1; }
cache="$work/cache"

start() {  # NAME DELAY: starts a 2-rank run in the background ($launcher, $log, $dir)
  dir="$work/run-$1"
  log="$work/$1.log"
  PFT_TEST_DELAY="$2" "$root/launch/pft-mpirun" -np 2 -x PFT_TEST_DELAY "$pft" train \
    "$root/configs/quickstart.yaml" --set model.d_model=64 --set model.n_heads=4 \
    --set data.seq_len=64 --set train.steps=4 --set train.global_batch_size=8 \
    --set train.warmup_steps=1 --set train.micro_batch_size=2 --set run.threads=1 \
    --set eval.max_batches=1 --set "data.cache_dir=$cache" --set "run.dir=$dir" \
    > "$log" 2>&1 < /dev/null &
  launcher=$!
}
wait_for() {  # TEXT: until the log has it
  for _ in $(seq 1200); do
    grep -q "$1" "$log" 2> /dev/null && return 0
    kill -0 "$launcher" 2> /dev/null || fail "the run ended before '$1'"
    sleep 0.1
  done
  fail "no '$1' in 120 s"
}
finish() {  # WANT_RC: waits for the run; checks its exit code and the message
  local t0=$SECONDS rc
  wait "$launcher"; rc=$?
  echo "  exit $rc, $((SECONDS - t0)) s after the signal"
  [[ $rc -eq $1 ]] || fail "exit $rc, want $1"
  grep -q "before the first step (noticed at: .*): nothing to checkpoint; exiting 75" "$log" ||
    fail "no message about the preemption before the first step"
  ! grep -q '"kind":"train"' "$dir/metrics.jsonl" 2> /dev/null || fail "a step was trained"
}

echo "1. SIGTERM to pft-mpirun during the token store preparation"
start prepare store_block:0.5
wait_for "waits 0.5 s in store_block"
ls "$cache"/*.h5.tmp-* > /dev/null 2>&1 || fail "no temporary store file while building"
kill -TERM "$launcher"
finish 75
left="$(find "$cache" -name '*.tmp-*')"
[[ -z "$left" ]] || fail "temporary files left: $left"

echo "2. stale temporary files in the cache; 3. SIGUSR1 to rank 1 during the step-0 evaluation"
stale="$cache/add-00000000000000000000000000000000.h5.tmp-999999-0"
live="$cache/add-00000000000000000000000000000000.h5.tmp-999998-0"
echo junk > "$stale"
echo junk > "$live"
flock -x "$live" sleep 300 < /dev/null > /dev/null 2>&1 &  # its own process group (set -m)
holder=$!
disown "$holder"  # no job-control notice when it is killed
for _ in $(seq 100); do flock -n "$live" true || break; sleep 0.1; done  # until it holds it
flock -n "$live" true && fail "the stand-in writer does not hold its lock"
start eval eval:3
wait_for "waits 3 s in eval"
[[ ! -e "$stale" ]] || fail "the stale temporary file of a dead writer is still there"
grep -q "removed '$(basename "$stale")'" "$log" || fail "the removal was not logged"
[[ -e "$live" ]] || fail "the temporary file of a live writer was removed"
rank=""
for p in $(pgrep -f -- "run.dir=$dir"); do
  [[ "$(readlink "/proc/$p/exe")" == "$(readlink -f "$pft")" ]] && rank="$p"
done
[[ -n "$rank" ]] || fail "no rank process found"
kill -USR1 "$rank"
finish 75
grep -q "held-out at step 0" "$log" || fail "the step-0 evaluation did not finish first"
echo PASS
