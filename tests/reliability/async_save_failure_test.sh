#!/usr/bin/env bash
# async_save_failure_test.sh PFT: a background (checkpoint.async) save that fails -- the disk
# holding run.dir/checkpoints is full -- stops the job at the next step boundary, not at the next
# save or the end: 2 ranks, a checkpoint every 4 steps on a small tmpfs (mounted in a private
# mount namespace, as disk_full_test.sh), filled once the save of step 4 is done; the save of
# step 8 fails. Checked:
# exit 3 on every rank; no train record after step 9; a message naming the file, the step and
# "no space left"; the checkpoint of step 4 still valid and still `latest`; no temporary file; and
# with space again, train.resume: auto ends at the parameter hash of an uninterrupted run.
# Each step takes 0.5 s more (PFT_TEST_DELAY=step:0.5, core/test_hooks.h): the filling comes
# long before step 8, and the failing write ends long before the boundary of step 9. The
# uninterrupted run runs alongside.
set -uo pipefail
pft="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/pft-async-fail-XXXXXX")"
trap 'rm -rf "$work"' EXIT
export PFT_TEST_PFT="$pft" PFT_TEST_WORK="$work" PFT_TEST_ROOT="$root"
export PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 OMP_NUM_THREADS=1
exec unshare --mount --propagation private bash -c '
  set -uo pipefail
  work="$PFT_TEST_WORK"
  fail() { echo "FAIL: $*" >&2; tail -n 30 "$work/$1.log" >&2; exit 1; }
  train() {  # NAME RUN_DIR [ARGS...]
    local name="$1" dir="$2"
    shift 2
    "$PFT_TEST_ROOT/launch/pft-mpirun" -np 2 -x PFT_TEST_DELAY "$PFT_TEST_PFT" train \
      "$PFT_TEST_ROOT/configs/quickstart.yaml" --set model.d_model=64 --set model.n_heads=4 \
      --set data.seq_len=64 --set train.steps=12 --set train.warmup_steps=2 \
      --set train.global_batch_size=8 --set train.micro_batch_size=2 --set run.threads=1 \
      --set run.log_every=1 --set checkpoint.every_steps=4 --set checkpoint.keep_last=5 \
      --set checkpoint.async=true --set eval.max_batches=1 --set "data.cache_dir=$work/cache" \
      --set "run.dir=$dir" "$@" > "$work/$name.log" 2>&1 < /dev/null
  }
  last() { jq -r --arg k "$2" "select(.kind == \$k) | .${3:-step}" "$1/metrics.jsonl" | tail -n 1; }

  # The uninterrupted run, meanwhile.
  PFT_TEST_DELAY= train ref "$work/ref" &
  ref_pid=$!

  # A small tmpfs on the checkpoints directory; once the save of step 4 is done, it is filled.
  mkdir -p "$work/run/checkpoints"
  mount -t tmpfs -o size=16m tmpfs "$work/run/checkpoints" ||
    { echo "FAIL: cannot mount a tmpfs (needs root)"; exit 1; }
  PFT_TEST_DELAY=step:0.5 train full "$work/run" &
  full_pid=$!
  for _ in $(seq 2400); do
    [[ "$(cat "$work/run/checkpoints/latest" 2> /dev/null)" == step_00000004.h5 ]] && break
    kill -0 "$full_pid" 2> /dev/null || break
    sleep 0.05
  done
  [[ "$(cat "$work/run/checkpoints/latest" 2> /dev/null)" == step_00000004.h5 ]] ||
    fail full "no checkpoint of step 4"
  fallocate -l $(( $(stat -f -c "%a * %S" "$work/run/checkpoints") )) \
    "$work/run/checkpoints/filler" || { echo "FAIL: cannot fill the tmpfs"; exit 1; }
  wait "$full_pid"; rc=$?
  echo "async save on a full disk: exit $rc"
  [[ $rc -eq 3 ]] || fail full "exit $rc, want 3"
  steps="$(last "$work/run" train)"
  echo "last step trained: $steps (the failing save: step 8)"
  [[ "$steps" -le 9 ]] || fail full "trained on to step $steps after the save of step 8 failed"
  grep -q "step_00000008.h5" "$work/full.log" || fail full "the message does not name the file"
  grep -qi "no space left" "$work/full.log" || fail full "the message does not name the cause"
  grep -q "save of step 8" "$work/full.log" || fail full "the message does not name the step"
  grep -m 1 "save of step 8" "$work/full.log"
  [[ "$(cat "$work/run/checkpoints/latest")" == step_00000004.h5 ]] ||
    fail full "latest is $(cat "$work/run/checkpoints/latest"), want step_00000004.h5"
  "$PFT_TEST_PFT" ckpt verify "$work/run/checkpoints/step_00000004.h5" > "$work/verify.log" 2>&1 ||
    fail verify "the previous checkpoint is damaged"
  left="$(find "$work/run" -name "*.tmp*")"
  [[ -z "$left" ]] || fail full "temporary files left: $left"

  rm "$work/run/checkpoints/filler"
  wait "$ref_pid" || fail ref "the uninterrupted run failed"
  ref_hash="$(last "$work/ref" end param_hash)"
  train resume "$work/run" --set train.resume=auto || fail resume "the resumed run failed"
  grep -q "resume: from .*step_00000004.h5 at step 4" "$work/resume.log" ||
    fail resume "did not resume from the checkpoint of step 4"
  hash="$(last "$work/run" end param_hash)"
  echo "parameters: uninterrupted $ref_hash, resumed $hash"
  [[ -n "$hash" && "$hash" == "$ref_hash" ]] || fail resume "parameter hash $hash, want $ref_hash"
  echo PASS
'
