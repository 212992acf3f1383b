#!/usr/bin/env bash
# sbatch_test.sh CASE PFT_BIN: launch/slurm/train.sbatch on the local Slurm cluster
# (cluster/slurm-local.sh), shrunk to one node, two CPU ranks, no GPUs, by sbatch flags only.
#
#   batch    `sbatch --wait` runs `pft config show` (PFT_COMMAND) of PFT_CONFIG on every rank;
#            the job log shows the resolved config once (rank 0) with the template's overrides,
#            the run dir the job's own: $PFT_RUNS_ROOT/<job name>-<job id>
#   badinput pft's exit 2 (bad input) ends the job with 2 and is not requeued; the config is
#            the first argument, which wins over PFT_CONFIG
#   (Real training, requeued by SIGTERM and SIGUSR1, on two nodes: tests/netns/slurm_test.sh.)
#   requeue  a step whose ranks exit 75 the first time is requeued by the template and exits 0
#            on the second run (tests/cluster/exit75_once.sh)
#   signal   SIGUSR1 sent the way `--signal=USR1@120` sends it (to the job steps, not the batch
#            shell: `scancel --signal=USR1` without --batch/--full) reaches every rank, whose
#            exit 75 requeues the job (tests/cluster/usr1_once.sh); and the template asks for
#            exactly that signal, 120 s ahead, without "B:"
set -uo pipefail
case_name="$1"
pft_bin="$(realpath "$2")"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
template="$root/launch/slurm/train.sbatch"
[[ -n "${SLURM_CONF:-}" ]] || eval "$("$root/cluster/slurm-local.sh" env)"
export SLURM_CONF

tmp="$(mktemp -d "${TMPDIR:-/tmp}/pft-sbatch-XXXXXX")"
job_name="pft-ctest-$case_name-$$"
job_id=""
cleanup() {
  [[ -n "$job_id" ]] && scancel "$job_id" 2> /dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "sbatch_test.sh $case_name: FAILED: $*" >&2
  for f in "$tmp"/*.out; do
    [[ -f "$f" ]] && { echo "---- $f ----" >&2; cat "$f" >&2; }
  done
  [[ -n "$job_id" ]] && scontrol show job "$job_id" >&2
  exit 1
}

# The CPU shape of the job: flags on the command line override the template's #SBATCH lines.
shape=(--nodes=1 --ntasks-per-node=2 --gpus-per-node=0 --cpus-per-task=1 --time=5
       "--job-name=$job_name" "--output=$tmp/%x-%j.out" "--chdir=$root")
export PFT_BIN="$pft_bin" PFT_RUNS_ROOT="$tmp/runs" PFT_TEST_MARKER_DIR="$tmp/markers"
export OMPI_MCA_btl_vader_single_copy_mechanism="${OMPI_MCA_btl_vader_single_copy_mechanism:-none}"
mkdir -p "$tmp/markers"

log_file() { find "$tmp" -maxdepth 1 -name "*.out" | head -n 1; }
expect_log() {  # expect_log PATTERN COUNT: the job log has COUNT lines matching PATTERN
  local n
  n=$(grep -c -- "$1" "$(log_file)" 2> /dev/null)
  [[ "$n" -eq "$2" ]] || fail "expected $2 line(s) matching '$1' in the job log, found ${n:-0}"
}
job_field() { scontrol show job -o "$job_id" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
count() { find "$tmp/markers" -name "$1" | wc -l; }

run_batch() {
  PFT_COMMAND="config show" PFT_CONFIG="$here/tiny.yaml" \
    sbatch --wait --parsable "${shape[@]}" "$template" --set train.steps=3 > "$tmp/sbatch.id"
  local rc=$?
  job_id="$(cut -d';' -f1 < "$tmp/sbatch.id")"
  [[ $rc -eq 0 ]] || fail "sbatch --wait exited $rc"
  [[ -n "$(log_file)" ]] || fail "no job log in $tmp"
  expect_log '^\[train.sbatch\] pft exited 0$' 1
  # Only rank 0 prints the config: one `run:` block from two ranks.
  expect_log '^run:$' 1
  expect_log "^  dir: $tmp/runs/$job_name-$job_id\$" 1
  expect_log '^  threads: 1$' 1
  expect_log '^  resume: auto$' 1
  expect_log '^  steps: 3$' 1
  expect_log '1 nodes x 2 ranks, 1 threads/rank' 1
}

run_badinput() {
  PFT_COMMAND="config show" PFT_CONFIG="$tmp/no-such-config.yaml" \
    sbatch --wait --parsable "${shape[@]}" "$template" "$here/tiny.yaml" --set train.lr=abc \
    > "$tmp/sbatch.id"
  local rc=$?
  job_id="$(cut -d';' -f1 < "$tmp/sbatch.id")"
  [[ $rc -eq 2 ]] || fail "sbatch --wait exited $rc, expected 2"
  expect_log "error: train.lr: expected a number" 1
  expect_log '^\[train.sbatch\] pft exited 2$' 1
  expect_log 'requeue' 0
  [[ "$(job_field Restarts)" == 0 ]] || fail "Restarts=$(job_field Restarts), expected 0"
}

run_requeue() {
  PFT_BIN="$here/exit75_once.sh" \
    sbatch --wait --parsable "${shape[@]}" "$template" > "$tmp/sbatch.id"
  local rc=$?
  job_id="$(cut -d';' -f1 < "$tmp/sbatch.id")"
  [[ $rc -eq 0 ]] || fail "sbatch --wait exited $rc"
  [[ $(count 'ran-once-*') -eq 2 && $(count 'done-*') -eq 2 ]] \
    || fail "not every rank ran twice: $(ls "$tmp/markers" | tr '\n' ' ')"
  expect_log '^\[train.sbatch\] pft exited 75$' 1
  expect_log "^\[train.sbatch\] requeued job $job_id\$" 1
  expect_log '^\[train.sbatch\] pft exited 0$' 1
  expect_log 'restart 1:' 1
  [[ "$(job_field Restarts)" == 1 ]] || fail "Restarts=$(job_field Restarts), expected 1"
  [[ "$(job_field JobState)" == COMPLETED ]] || fail "JobState=$(job_field JobState)"
}

# wait_until SECONDS COMMAND...: poll every 0.2 s.
wait_until() {
  local deadline=$((SECONDS + $1)); shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}
both_started() { [[ $(count 'started-*') -eq 2 ]]; }
finished() {
  case "$(job_field JobState)" in
    COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY) return 0 ;;
    *) return 1 ;;
  esac
}

run_signal() {
  grep -qx '#SBATCH --signal=USR1@120' "$template" \
    || fail "the template does not ask for '#SBATCH --signal=USR1@120'"
  grep -q '^#SBATCH --signal=B:' "$template" \
    && fail "the template signals the batch shell (B:), not the ranks"
  job_id="$(PFT_BIN="$here/usr1_once.sh" sbatch --parsable "${shape[@]}" "$template" | cut -d';' -f1)"
  [[ -n "$job_id" ]] || fail "sbatch did not submit"
  wait_until 30 both_started || fail "the ranks never started"
  scancel --signal=USR1 "$job_id" || fail "scancel --signal=USR1 failed"
  wait_until 60 finished || fail "job not finished 60 s after the signal"
  [[ "$(job_field JobState)" == COMPLETED ]] || fail "JobState=$(job_field JobState)"
  [[ $(count 'got-usr1-*') -eq 2 && $(count 'done-*') -eq 2 ]] \
    || fail "not every rank got SIGUSR1 and ran again: $(ls "$tmp/markers" | tr '\n' ' ')"
  expect_log '^\[train.sbatch\] pft exited 75$' 1
  expect_log "^\[train.sbatch\] requeued job $job_id\$" 1
  expect_log '^\[train.sbatch\] pft exited 0$' 1
  [[ "$(job_field Restarts)" == 1 ]] || fail "Restarts=$(job_field Restarts), expected 1"
}

case "$case_name" in
  batch) run_batch ;;
  badinput) run_badinput ;;
  requeue) run_requeue ;;
  signal) run_signal ;;
  *) echo "usage: $0 batch|badinput|requeue|signal PFT_BIN" >&2; exit 2 ;;
esac
echo "sbatch_test.sh $case_name: OK (job $job_id)"
job_id=""  # finished: nothing to cancel
