#!/usr/bin/env bash
# launcher_signal_test.sh PFT: SIGTERM and SIGINT to launch/pft-mpirun (what `kill`, many
# schedulers and process managers send to the launcher) are a preemption: the 2 ranks finish
# their step, write a checkpoint and exit 75, and pft-mpirun exits 75. Each save is made slower
# (PFT_TEST_DELAY=ckpt_save:3, core/test_hooks.h) than the one second Open MPI gives ranks
# between the SIGTERM and the SIGKILL of its own job teardown, and each step 0.3 s longer
# (step:0.3) so the signal lands mid-run: before the fix, mpirun killed the ranks in the middle
# of the save (exit 1, a .tmp file, no "preempted" line). Checked: exit 75, a "preempted" record,
# a valid checkpoint (pft ckpt verify) of the preempted step named by `latest`, no temporary
# file; then train.resume: auto continues from it, and SIGINT (stdin not a terminal) preempts
# that run the same way. Last, a second SIGTERM and the end of PFT_PREEMPT_GRACE_S each end a job
# that does not stop: exit 3, with a message.
set -uo pipefail
pft="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/pft-launcher-signal-XXXXXX")"
trap 'rm -rf "$work"' EXIT
set -m  # background jobs in their own process group, SIGINT not ignored (as from a shell)
export PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 OMP_NUM_THREADS=1
fail() { echo "FAIL: $*" >&2; [[ -n "${log:-}" ]] && tail -n 30 "$log" >&2; exit 1; }

steps=12
train_args() {  # RUN_DIR: a tiny model, 12 steps, no periodic checkpoint
  echo train "$root/configs/quickstart.yaml" --set model.d_model=64 --set model.n_heads=4 \
    --set data.seq_len=64 --set train.steps=$steps --set train.warmup_steps=2 \
    --set train.global_batch_size=8 --set train.micro_batch_size=2 --set run.threads=1 \
    --set run.log_every=1 --set checkpoint.every_steps=0 --set eval.max_batches=1 \
    --set "data.cache_dir=$work/cache" --set "run.dir=$1"
}
train_records() { cat "$1/metrics.jsonl" 2> /dev/null | grep -c '"kind":"train"'; }
record_step() {  # RUN_DIR KIND: the step of the last record of that kind
  jq -r --arg k "$2" 'select(.kind == $k) | .step' "$1/metrics.jsonl" 2> /dev/null | tail -n 1
}

# SIG to pft-mpirun once the run has trained 2 more steps; exit 75 and a checkpoint. ARGS: extra
# train arguments.
preempt_case() {
  local sig="$1" dir="$work/run"
  shift
  log="$work/$sig.log"
  local before
  before="$(train_records "$dir")"
  PFT_TEST_DELAY=ckpt_save:3,step:0.3 "$root/launch/pft-mpirun" -np 2 -x PFT_TEST_DELAY \
    "$pft" $(train_args "$dir") "$@" > "$log" 2>&1 < /dev/null &
  local launcher=$!
  for _ in $(seq 1200); do
    (( $(train_records "$dir") >= before + 2 )) && break
    kill -0 "$launcher" 2> /dev/null || fail "the run ended before 2 steps"
    sleep 0.1
  done
  (( $(train_records "$dir") >= before + 2 )) || fail "the run did not train 2 steps in 120 s"
  kill -"$sig" "$launcher"
  wait "$launcher"; local rc=$?
  echo "SIG$sig to pft-mpirun: exit $rc"
  [[ $rc -eq 75 ]] || fail "SIG$sig to pft-mpirun: exit $rc, want 75"
  grep -q "pft-mpirun: SIG$sig: the ranks checkpoint at the next step boundary" "$log" ||
    fail "pft-mpirun did not say what it does with SIG$sig"
  at="$(record_step "$dir" preempted)"
  [[ -n "$at" ]] || fail "no preempted record"
  (( at > ${prev_at:-0} && at < steps )) || fail "preempted at step $at"
  local ckpt
  ckpt="$(printf '%s/checkpoints/step_%08d.h5' "$dir" "$at")"
  "$pft" ckpt verify "$ckpt" > "$work/verify.log" 2>&1 || { log="$work/verify.log"; fail "checkpoint $ckpt is not valid"; }
  [[ "$(cat "$dir/checkpoints/latest")" == "$(basename "$ckpt")" ]] || fail "latest does not name $ckpt"
  local left
  left="$(find "$dir" -name '*.tmp*')"
  [[ -z "$left" ]] || fail "temporary files left: $left"
  echo "SIG$sig: checkpoint of step $at written and valid"
  prev_at="$at"
}

preempt_case TERM
first_at="$at"
# The preempted run continues from its checkpoint (train.resume: auto), and SIGINT (stdin is not
# a terminal) preempts it in turn.
preempt_case INT --set train.resume=auto
grep -q "resume: from .*/checkpoints/step_$(printf '%08d' "$first_at").h5 at step $first_at" "$log" ||
  fail "the rerun did not resume from the checkpoint of the first preemption"

# A job that does not stop (a rank that ignores the request: a stand-in process, not pft) is
# ended the hard way by a second SIGTERM, or when PFT_PREEMPT_GRACE_S runs out: exit 3, said so.
stubborn() {  # NAME GRACE SECOND_SIGNAL(0/1) MESSAGE
  log="$work/$1.log"
  PFT_PREEMPT_GRACE_S="$2" "$root/launch/pft-mpirun" -np 1 \
    bash -c 'trap "" TERM USR1; echo started; sleep 60' > "$log" 2>&1 < /dev/null &
  local launcher=$! rc
  for _ in $(seq 300); do grep -q started "$log" && break; sleep 0.1; done
  kill -TERM "$launcher"
  if (( $3 )); then sleep 1; kill -TERM "$launcher"; fi
  wait "$launcher"; rc=$?
  echo "$1: exit $rc"
  [[ $rc -eq 3 ]] || fail "$1: exit $rc, want 3"
  grep -q "$4" "$log" || fail "$1: no '$4' message"
}
stubborn second-signal 120 1 "pft-mpirun: ended by a second SIGTERM, without a checkpoint"
stubborn grace 2 0 "did not checkpoint and stop within PFT_PREEMPT_GRACE_S=2 s"
echo PASS
