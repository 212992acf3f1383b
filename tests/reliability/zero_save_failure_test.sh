#!/usr/bin/env bash
# zero_save_failure_test.sh PFT: a ZeRO-1 (dist.zero: 1) checkpoint save that fails on rank 0
# stops every rank with one clear message and never hangs (Note [streamed ZeRO-1 save],
# train/checkpoint_state.h): 2 ranks, GPT-2 462,592 parameters (moments 3.7 MB, checkpoint
# 5.6 MB), the checkpoints directory a small tmpfs (private mount namespace, as
# async_save_failure_test.sh), dist.timeout_s 60:
#   spill_sync, spill_async: 1 and 2 MiB: rank 0's scratch file of the gathered moments fills
#     the disk in the middle of the all-gather (checkpoint.async false: it holds rank 1's half,
#     1.85 MB, rank 0 reads its own from memory; true: all 3.7 MB);
#   write_sync: 5 MiB: the moments fit, the checkpoint file beside them does not: the HDF5 write
#     fails (its Contents streams the moments from the scratch file).
#   write_async: 5 MiB, checkpoint.async true: the same write fails on the saver's background
#     thread (all 3.7 MB of moments spilled, so it fails in /model, before the streamed
#     datasets: with holes punched at every read on so small a file system, a write that got
#     past /model would not run out of space), reported at the next save or the end.
# And one that must succeed: fits_sync, 6,300 KiB: the checkpoint (5.6 MB) and the moments
# (3.7 MB) do not fit side by side, but the writer punches what it has read out of the scratch
# file, so the save needs little more than the checkpoint's own size.
# Checked for each: exit 3; done in well under the deadline and no "a rank is stalled or died"
# (the other rank did not wait for rank 0 to time out); the message names the step, the file and
# "no space left" (and for the spill, that it was the moments); no checkpoint and no temporary
# file left; then, for the first, with space again the same command trains to the end.
set -uo pipefail
pft="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/pft-zero-fail-XXXXXX")"
trap 'rm -rf "$work"' EXIT
export PFT_TEST_PFT="$pft" PFT_TEST_WORK="$work" PFT_TEST_ROOT="$root"
export PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 OMP_NUM_THREADS=1
exec unshare --mount --propagation private bash -c '
  set -uo pipefail
  work="$PFT_TEST_WORK"
  fail() { echo "FAIL: $*" >&2; tail -n 30 "$work/$1.log" >&2; exit 1; }
  train() {  # NAME ASYNC [ARGS...]
    local name="$1" async="$2"
    shift 2
    "$PFT_TEST_ROOT/launch/pft-mpirun" -np 2 "$PFT_TEST_PFT" train \
      "$PFT_TEST_ROOT/configs/quickstart.yaml" --set data.seq_len=64 --set train.steps=4 \
      --set train.warmup_steps=1 --set train.global_batch_size=4 --set train.micro_batch_size=2 \
      --set run.threads=1 --set checkpoint.every_steps=2 --set "checkpoint.async=$async" \
      --set eval.every_steps=0 --set eval.max_batches=1 --set dist.zero=1 \
      --set dist.timeout_s=60 --set "data.cache_dir=$work/cache" --set "run.dir=$work/$name" "$@" \
      > "$work/$name.log" 2>&1 < /dev/null
  }
  for case in spill_sync:false:1m spill_async:true:2m write_sync:false:5m write_async:true:5m; do
    IFS=: read -r name async size <<< "$case"
    mkdir -p "$work/$name/checkpoints"
    mount -t tmpfs -o "size=$size" tmpfs "$work/$name/checkpoints" ||
      { echo "FAIL: cannot mount a tmpfs (needs root)"; exit 1; }
    start=$SECONDS
    train "$name" "$async"; rc=$?
    took=$((SECONDS - start))
    echo "$name (checkpoint.async $async, $size tmpfs): exit $rc after $took s"
    [[ $rc -eq 3 ]] || fail "$name" "exit $rc, want 3"
    [[ $took -lt 45 ]] || fail "$name" "took $took s: a rank waited for the deadline"
    grep -q "a rank is stalled or died" "$work/$name.log" && fail "$name" "a rank timed out"
    grep -qi "no space left" "$work/$name.log" || fail "$name" "the message does not name the cause"
    grep -q "step_00000002.h5" "$work/$name.log" || fail "$name" "the message does not name the file"
    grep -q "save of step 2\|writing .*step_00000002.h5. failed" "$work/$name.log" ||
      fail "$name" "the message does not name the step"
    if [[ $name == spill_* ]]; then
      grep -q "spilling the optimizer moments gathered from the dist.zero: 1 shards" \
        "$work/$name.log" || fail "$name" "the message does not say the moments failed"
      grep -q "HINT: free space" "$work/$name.log" || fail "$name" "no hint"
      grep -Eq "writes [1-9][0-9]* bytes of optimizer moments \([0-9.]+ MiB\)" "$work/$name.log" ||
        fail "$name" "the hint does not give the bytes of the scratch file"
    fi
    grep -m 1 -i "no space left" "$work/$name.log"
    left="$(ls -A "$work/$name/checkpoints")"
    [[ -z "$left" ]] || fail "$name" "files left in checkpoints/: $left"
    [[ "$(jq -r "select(.kind == \"train\") | .step" "$work/$name/metrics.jsonl" | tail -n 1)" == 2 ]] ||
      fail "$name" "trained past the failed save of step 2"
  done
  mkdir -p "$work/fits_sync/checkpoints"
  mount -t tmpfs -o size=6300k tmpfs "$work/fits_sync/checkpoints" || exit 1
  train fits_sync false --set train.steps=2 ||
    fail fits_sync "a save that fits with the scratch file punched failed"
  "$PFT_TEST_PFT" ckpt verify "$work/fits_sync/checkpoints/step_00000002.h5" > /dev/null ||
    fail fits_sync "its checkpoint does not verify"
  echo "fits_sync (6300k tmpfs): the checkpoint of step 2 written and verified"
  # With space again, the run trains to the end (no stale state from the failed save).
  umount "$work/spill_sync/checkpoints"
  train spill_sync false || fail spill_sync "the rerun with space failed"
  "$PFT_TEST_PFT" ckpt verify "$work/spill_sync/checkpoints/step_00000004.h5" > /dev/null ||
    fail spill_sync "the rerun'"'"'s checkpoint does not verify"
  echo PASS
'
