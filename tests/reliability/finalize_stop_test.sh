#!/usr/bin/env bash
# finalize_stop_test.sh PFT: a rank stopped (SIGSTOP, held) at the very end of a job, after its
# `done:` line, while the ranks enter MPI_Finalize, no longer hangs the job (before the fix:
# MPI_Finalize had no deadline, so the other rank, mpirun and launch/pft-mpirun waited forever;
# fault matrix scenario stop_long, docs/reliability.md). 2 ranks through launch/pft-mpirun, 4 steps
# with a checkpoint every 2; every rank waits 4 s just before MPI_Finalize
# (PFT_TEST_DELAY=finalize:4, core/test_hooks.h), and rank 0 (the one that writes the run's
# outputs) is stopped in that window. Then the same with rank 0 stopped right after its own
# MPI_Finalize returned (PFT_TEST_DELAY=finalized:4): rank 1 ends normally, but mpirun waits for
# rank 0's exit. Checks:
#   - the job ends with exit 3 within 60 s of the stop, with the message naming the phase: rank
#     1's finalize watchdog (it fires kFinalizeGraceS = 10 s into MPI_Finalize, core/mpi_env.h)
#     names MPI_Finalize and the peer that stopped answering; after a finalize, pft-mpirun says
#     the job had finalized and stops mpirun (PFT_MPIRUN_FINALIZE_GRACE_S, 10 s);
#   - no process is left behind (the stopped rank is killed with the job);
#   - the run's outputs are complete: metrics.jsonl ends with its `end` record, plan.jsonl holds
#     every step once, the final checkpoint verifies (`pft ckpt verify`) and `latest` names it.
set -uo pipefail
pft="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/pft-finalize-stop-XXXXXX")"
stopped=""
launcher=""
cleanup() {
  [[ -n "$stopped" ]] && { kill -KILL "$stopped"; kill -CONT "$stopped"; } 2> /dev/null
  [[ -n "$launcher" ]] && kill -KILL -- -"$launcher" 2> /dev/null
  rm -rf "$work"
}
trap cleanup EXIT
set -m  # the launcher in its own process group: the cleanup can end all of it
export PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 OMP_NUM_THREADS=1
log=/dev/null
fail() { echo "FAIL: $*" >&2; tail -n 30 "$log" >&2; exit 1; }

steps=4
case_n=0
run_case() {  # POINT MESSAGE_REGEX: rank 0 stopped at PFT_TEST_DELAY point POINT
  local point="$1" want="$2" rc took
  case_n=$((case_n + 1))
  log="$work/job$case_n.log"
  dir="$work/run$case_n"
  echo "$case_n. rank 0 stopped at '$point'"
  PFT_TEST_DELAY=$point:4 "$root/launch/pft-mpirun" -np 2 -x PFT_TEST_DELAY "$pft" train \
    "$root/configs/quickstart.yaml" --set model.d_model=64 --set model.n_heads=4 \
    --set data.seq_len=64 --set train.steps=$steps --set train.global_batch_size=8 \
    --set train.warmup_steps=1 --set train.micro_batch_size=2 --set run.threads=1 \
    --set eval.max_batches=1 --set checkpoint.every_steps=2 --set "data.cache_dir=$work/cache" \
    --set "run.dir=$dir" > "$log" 2>&1 < /dev/null &
  launcher=$!
  for _ in $(seq 1200); do
    grep -q "rank 0 waits 4 s in $point\$" "$log" 2> /dev/null && break
    kill -0 "$launcher" 2> /dev/null || fail "the job ended before rank 0 reached '$point'"
    sleep 0.1
  done
  grep -q "rank 0 waits 4 s in $point\$" "$log" || fail "rank 0 did not reach '$point' in 120 s"
  grep -q "done: $steps steps" "$log" || fail "no 'done:' line before MPI_Finalize"
  for p in $(pgrep -f -- "run.dir=$dir"); do
    [[ "$(readlink "/proc/$p/exe")" == "$(readlink -f "$pft")" ]] || continue
    tr '\0' '\n' < "/proc/$p/environ" 2> /dev/null | grep -x "OMPI_COMM_WORLD_RANK=0" > /dev/null && stopped="$p"
  done
  [[ -n "$stopped" ]] || fail "no process of rank 0 found"
  kill -STOP "$stopped"
  local t0=$SECONDS
  # Bounded here, not by ctest's timeout: before the fix the job never ends.
  for _ in $(seq 600); do kill -0 "$launcher" 2> /dev/null || break; sleep 0.1; done
  kill -0 "$launcher" 2> /dev/null && fail "the job still runs 60 s after rank 0 was stopped (hang)"
  wait "$launcher"
  rc=$?
  launcher=""
  took=$((SECONDS - t0))
  echo "  the job ended with exit $rc, $took s after the stop"
  [[ $rc -eq 3 ]] || fail "exit $rc, want 3"
  grep -qE "$want" "$log" || fail "no message matching: $want"
  for _ in $(seq 100); do kill -0 "$stopped" 2> /dev/null || break; sleep 0.1; done
  kill -0 "$stopped" 2> /dev/null && fail "the stopped rank 0 (pid $stopped) outlived the job by 10 s"
  stopped=""
  local left
  left="$(pgrep -f -- "run.dir=$dir")"
  [[ -z "$left" ]] || fail "processes left behind: $left"

  # The outputs were complete before MPI_Finalize.
  tail -n 1 "$dir/metrics.jsonl" | grep -q '"kind":"end"' || fail "metrics.jsonl does not end with its end record"
  [[ "$(wc -l < "$dir/plan.jsonl")" == "$steps" ]] || fail "plan.jsonl has $(wc -l < "$dir/plan.jsonl") lines, want $steps"
  for s in $(seq 0 $((steps - 1))); do  # steps are numbered from 0 there
    [[ "$(grep -c "^{\"step\":$s," "$dir/plan.jsonl")" == 1 ]] || fail "plan.jsonl does not hold step $s once"
  done
  local latest
  latest="$(cat "$dir/checkpoints/latest")"
  [[ "$latest" == "step_$(printf '%08d' $steps).h5" ]] ||
    fail "checkpoints/latest names '$latest', not step $steps"
  "$pft" ckpt verify "$dir/checkpoints/$latest" > "$work/verify.log" 2>&1 ||
    { cat "$work/verify.log" >&2; fail "the final checkpoint does not verify"; }
  echo "  PASS: exit 3 $took s after the stop, with the message; outputs complete"
}

run_case finalize "MPI_Finalize \(the end of the job; this rank had finished its command.*\) has not completed on rank 1 of 2 .* within 10 s: a peer rank stopped answering"
run_case finalized "pft-mpirun: the job had finalized \(rank [01] on [^ ]+ passed MPI_Finalize.*a rank had not exited 10 s later.*the run's outputs are complete; exit 3"
