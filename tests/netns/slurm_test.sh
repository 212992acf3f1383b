#!/usr/bin/env bash
# slurm_test.sh CASE: launch/slurm/train.sbatch running real training on the 2-node namespace
# cluster (cluster/netns-cluster.sh, brought up by the `cluster.up` fixture), every sbatch and
# scontrol a client on node1.
#
#   defaults  the template as shipped: `sbatch --wait train.sbatch CONFIG ARGS`, no shape flag, so
#             2 nodes x 8 ranks x 8 CPUs x 8 GPUs as its #SBATCH lines ask, PFT_BIN found as the
#             CPU build of the submit dir (build/cpu/bin/pft, there being no CUDA build), the log
#             in %x-%j.out and the run in runs/<job name>-<job id>; it trains to the end. From a
#             dir without a build the job exits 2 with a message saying what to do.
#   requeue   three 2 x 2 jobs of the same config at once: R trains uninterrupted; A is requeued
#             with `scontrol requeue` (Slurm sends SIGTERM) and B gets `scancel --signal=USR1`
#             (what `--signal=USR1@120` sends), both during training. A and B checkpoint at a step
#             boundary, exit 75, are requeued (by Slurm / by the template), resume by themselves
#             and end with R's per-step losses and parameter hash. A runs in the default run dir
#             (the same across its requeue); B names its own with `--set run.dir` in the args,
#             which wins over PFT_RUN_DIR. Prints the measured times of the requeue flow.
#   cap       PFT_MAX_REQUEUES: C (cap 1) gets SIGUSR1 in its first run and in its second: the
#             second exit 75 is not requeued ("giving up") and the job exits 75. D (cap 0) is
#             requeued by Slurm (`scontrol requeue`, which the template cannot refuse): its next
#             run refuses to train and exits 75.
set -uo pipefail
case_name="$1"
cluster="${PFT_CLUSTER_SCRIPT:?run under ctest (tests/netns/CMakeLists.txt)}"
pft_bin="$(realpath "${PFT_BIN:?run under ctest}")"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
template="$root/launch/slurm/train.sbatch"
config="$root/tests/cluster/tiny.yaml"
# Not under the hosts' TMPDIR (each host has its own): /tmp is the cluster's shared file system.
tmp="$(mktemp -d /tmp/pft-netns-slurm-XXXXXX)"
# What the template reads from the environment, unless a case sets it.
unset PFT_BIN PFT_CONFIG PFT_COMMAND PFT_RUN_DIR PFT_RUNS_ROOT PFT_MAX_REQUEUES

job_ids=()   # to cancel on exit
waiters=()   # background `sbatch --wait` clients (their pids)
cleanup() {
  for id in "${job_ids[@]}"; do "$cluster" exec node1 scancel "$id" 2> /dev/null; done
  for pid in "${waiters[@]}"; do kill "$pid" 2> /dev/null; done
  wait 2> /dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
  echo "slurm_test.sh $case_name: FAILED: $*" >&2
  for f in "$tmp"/*.out; do
    [[ -f "$f" ]] && { echo "---- $f (pft's resolved config left out) ----" >&2; grep -v '^[0-9:]* \[ *0/node1\] info   ' "$f" >&2; }
  done
  exit 1
}
on_node1() { "$cluster" exec node1 "$@"; }
now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# submit NAME DIR [ENV=VALUE...] -- [SBATCH FLAGS...] -- [TEMPLATE ARGS...]: `sbatch --wait` in
# the background from DIR with output $tmp/NAME.out; its job id in $tmp/NAME.id, its exit code
# (the job's) in $tmp/NAME.rc once the job is over. Sets job_id.
submit() {
  local name="$1" dir="$2" envs=() flags=()
  shift 2
  while [[ "$1" != -- ]]; do envs+=("$1"); shift; done
  shift
  while [[ "$1" != -- ]]; do flags+=("$1"); shift; done
  shift
  (cd "$dir" && env "${envs[@]}" "$cluster" exec node1 sbatch --wait --parsable \
     "--job-name=$name" "--output=$tmp/$name.out" "${flags[@]}" "$template" "$@" \
     > "$tmp/$name.id"; echo $? > "$tmp/$name.rc") &
  waiters+=($!)
  wait_until 30 test -s "$tmp/$name.id" || fail "$name: sbatch did not submit"
  job_id="$(cut -d';' -f1 < "$tmp/$name.id")"
  job_ids+=("$job_id")
}

# wait_until SECONDS COMMAND...: poll every 0.2 s.
wait_until() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}
finished() { [[ -s "$tmp/$1.rc" ]]; }
job_rc() { cat "$tmp/$1.rc"; }
# The last step in RUN_DIR/metrics.jsonl (0 before the first).
last_step() {
  grep -o '"kind":"train","step":[0-9]*' "$1/metrics.jsonl" 2> /dev/null | tail -n 1 |
    sed 's/.*://' | grep . || echo 0
}
step_at_least() { (($(last_step "$1") >= $2)); }
count_lines() { grep -c -- "$2" "$tmp/$1.out" 2> /dev/null; }
log_has() { (($(count_lines "$1" "$2") >= 1)); }
expect_lines() {  # expect_lines NAME PATTERN COUNT
  local n
  n=$(count_lines "$1" "$2")
  [[ "${n:-0}" -eq "$3" ]] || fail "$1: expected $3 line(s) matching '$2' in its log, found ${n:-0}"
}
# resumed_past DIR: the run resumed and took a step after the checkpoint it resumed from.
resumed_past() {
  local from
  from="$(grep -o '"kind":"resume","step":[0-9]*' "$1/metrics.jsonl" 2> /dev/null | tail -n 1 | sed 's/.*://')"
  [[ -n "$from" ]] && (($(last_step "$1") > from))
}

# The config every 2 x 2 job trains: the tiny model, long enough to be interrupted mid-run
# (~10 ms a step on an idle machine: seconds), only the final checkpoint besides the one a
# signal asks for, so a resume can only come from the preemption checkpoint.
steps=300
train_args=("$config" --set "train.steps=$steps" --set train.global_batch_size=8
            --set run.log_every=50 --set eval.every_steps=0 --set checkpoint.every_steps=0)
shape=(--nodes=2 --ntasks-per-node=2 --gpus-per-node=0 --cpus-per-task=1 --time=10 "--chdir=$tmp")
bin_env=("PFT_BIN=$pft_bin")
signal_at=10  # interrupt once this step is in metrics.jsonl

# compare NAME RUN_DIR SIGNAL: NAME was preempted once by SIGNAL, resumed from that checkpoint
# and ended with R's per-step losses (the last record of each step) and parameter hash.
compare() {
  python3 - "$tmp/ref/metrics.jsonl" "$2/metrics.jsonl" "$3" "$steps" << 'EOF' || fail "$1: differs from the uninterrupted run"
import json, sys
def read(path):
    records = [json.loads(line) for line in open(path)]
    losses = {r["step"]: r["loss"] for r in records if r["kind"] == "train"}
    ends = [r for r in records if r["kind"] == "end"]
    return records, losses, ends
_, ref_losses, ref_ends = read(sys.argv[1])
records, losses, ends = read(sys.argv[2])
signal, steps = sys.argv[3], int(sys.argv[4])
preempted = [r for r in records if r["kind"] == "preempted"]
resumed = [r for r in records if r["kind"] == "resume"]
ok = True
def check(cond, what):
    global ok
    if not cond:
        print("  " + what); ok = False
check(len(preempted) == 1 and preempted[0]["signal"] == signal,
      f"want one preempted record by {signal}, have {preempted}")
check(len(resumed) == 1 and preempted and resumed[0]["step"] == preempted[0]["step"],
      f"want one resume from the preemption checkpoint, have {resumed}")
check(preempted and 0 < preempted[0]["step"] < steps, "the signal did not come during training")
check(sorted(ref_losses) == list(range(1, steps + 1)), "the reference did not take every step")
diff = [s for s in ref_losses if losses.get(s) != ref_losses[s]]
check(not diff, f"losses differ at {len(diff)} step(s), first {diff[:1]}: "
      f"{[losses.get(s) for s in diff[:1]]} vs {[ref_losses[s] for s in diff[:1]]}")
check(len(ends) == 1 and len(ref_ends) == 1 and ends[0]["param_hash"] == ref_ends[0]["param_hash"],
      f"parameter hash {[e['param_hash'] for e in ends]} vs {[e['param_hash'] for e in ref_ends]}")
if ok:
    print(f"  preempted by {signal} at step {preempted[0]['step']}, resumed, {steps} steps: "
          f"losses and parameters {ends[0]['param_hash']} equal the uninterrupted run's")
sys.exit(0 if ok else 1)
EOF
}

run_defaults() {
  # A submit dir like a checkout with only a CPU build.
  mkdir -p "$tmp/checkout/build/cpu/bin" "$tmp/empty"
  ln -s "$pft_bin" "$tmp/checkout/build/cpu/bin/pft"
  local t0 rc id out
  t0="$(now)"
  id="$(cd "$tmp/checkout" && "$cluster" exec node1 sbatch --wait --parsable "$template" "$config" \
          --set train.steps=3 --set train.global_batch_size=16 --set train.micro_batch_size=1)"
  rc=$?
  job_ids+=("$id")
  out="$tmp/checkout/train.sbatch-$id.out"
  cp "$out" "$tmp/defaults.out" 2> /dev/null
  [[ $rc -eq 0 ]] || fail "the job of the template's defaults exited $rc"
  [[ -f "$out" ]] || fail "no log train.sbatch-$id.out in the submit dir"
  expect_lines defaults "2 nodes x 8 ranks, 8 threads/rank, config $config, run dir runs/train.sbatch-$id, build/cpu/bin/pft\$" 1
  expect_lines defaults "16 rank(s) on cpu, 8 thread(s) each" 1
  expect_lines defaults '\] info done: 3 steps' 1
  expect_lines defaults '^\[train.sbatch\] pft exited 0$' 1
  grep -q '"kind":"end","step":3,' "$tmp/checkout/runs/train.sbatch-$id/metrics.jsonl" ||
    fail "no end record of step 3 in runs/train.sbatch-$id/metrics.jsonl"
  echo "defaults: 2 nodes x 8 ranks x 8 threads trained 3 steps in job $id ($(elapsed "$t0" "$(now)") s with start-up)"

  # No build in the submit dir, no PFT_BIN: exit 2 and what to do.
  id="$(cd "$tmp/empty" && "$cluster" exec node1 sbatch --wait --parsable "$template" "$config")"
  rc=$?
  job_ids+=("$id")
  cp "$tmp/empty/train.sbatch-$id.out" "$tmp/nobin.out" 2> /dev/null
  [[ $rc -eq 2 ]] || fail "without a pft binary the job exited $rc, want 2"
  expect_lines nobin 'error: no pft binary: neither build/cuda/bin/pft nor build/cpu/bin/pft' 1
  expect_lines nobin 'set PFT_BIN=/path/to/pft' 1
  echo "defaults: without a build the job exits 2: $(grep error: "$tmp/nobin.out")"
}

run_requeue() {
  grep -qx '#SBATCH --signal=USR1@120' "$template" || fail "the template does not ask for USR1@120"
  local dir_a dir_b t0 t_a t_b
  submit ref "$tmp" "${bin_env[@]}" "PFT_RUN_DIR=$tmp/ref" -- "${shape[@]}" -- "${train_args[@]}"
  submit requeue "$tmp" "${bin_env[@]}" -- "${shape[@]}" -- "${train_args[@]}"
  local id_a="$job_id"
  dir_a="$tmp/runs/requeue-$id_a"
  submit usr1 "$tmp" "${bin_env[@]}" "PFT_RUN_DIR=$tmp/not-used" -- "${shape[@]}" -- \
    "${train_args[@]}" --set "run.dir=$tmp/usr1"
  local id_b="$job_id"
  dir_b="$tmp/usr1"

  wait_until 120 step_at_least "$dir_a" "$signal_at" || fail "requeue: no step $signal_at in $dir_a"
  t_a="$(now)"
  on_node1 scontrol requeue "$id_a" || fail "scontrol requeue $id_a failed"
  wait_until 120 step_at_least "$dir_b" "$signal_at" || fail "usr1: no step $signal_at in $dir_b"
  t_b="$(now)"
  on_node1 scancel --signal=USR1 "$id_b" || fail "scancel --signal=USR1 $id_b failed"

  # The flow of A, timed by polling its log and metrics.
  local t_exit t_restart t_resumed t_done
  wait_until 30 log_has requeue '^\[train.sbatch\] pft exited 75$' || fail "requeue: no exit 75"
  t_exit="$(now)"
  wait_until 60 log_has requeue 'restart 1:' || fail "requeue: not restarted"
  t_restart="$(now)"
  wait_until 60 resumed_past "$dir_a" || fail "requeue: no step after the resume"
  t_resumed="$(now)"
  wait_until 180 finished requeue || fail "requeue: not finished"
  t_done="$(now)"
  echo "scontrol requeue -> ranks exit 75: $(elapsed "$t_a" "$t_exit") s; -> running again" \
    "(restart 1): $(elapsed "$t_a" "$t_restart") s; -> first step after the resume:" \
    "$(elapsed "$t_a" "$t_resumed") s; -> done: $(elapsed "$t_a" "$t_done") s"
  wait_until 180 finished usr1 || fail "usr1: not finished"
  echo "scancel --signal=USR1 -> done: $(elapsed "$t_b" "$(now)") s"
  wait_until 180 finished ref || fail "ref: not finished"

  [[ "$(job_rc ref)" == 0 ]] || fail "ref: exited $(job_rc ref)"
  expect_lines ref 'restart 1:' 0
  [[ "$(job_rc requeue)" == 0 ]] || fail "requeue: exited $(job_rc requeue) after its requeue"
  expect_lines requeue "run dir runs/requeue-$id_a, " 2
  expect_lines requeue 'SIGTERM: checkpoint of step [0-9]* written; exiting 75' 1
  expect_lines requeue '^\[train.sbatch\] pft exited 75$' 1
  expect_lines requeue '^\[train.sbatch\] SIGTERM: Slurm is ending this job' 1
  expect_lines requeue '^\[train.sbatch\] requeued job' 0
  expect_lines requeue 'restart 1:' 1
  expect_lines requeue '^\[train.sbatch\] pft exited 0$' 1
  compare requeue "$dir_a" SIGTERM

  [[ "$(job_rc usr1)" == 0 ]] || fail "usr1: exited $(job_rc usr1) after its requeue"
  expect_lines usr1 "run dir $dir_b, " 2
  [[ ! -e "$tmp/not-used" ]] || fail "usr1: PFT_RUN_DIR was used although the args name run.dir"
  expect_lines usr1 'SIGUSR1: checkpoint of step [0-9]* written; exiting 75' 1
  expect_lines usr1 '^\[train.sbatch\] pft exited 75$' 1
  expect_lines usr1 "^\[train.sbatch\] requeued job $id_b\$" 1
  expect_lines usr1 'restart 1:' 1
  expect_lines usr1 '^\[train.sbatch\] pft exited 0$' 1
  compare usr1 "$dir_b" SIGUSR1
}

run_cap() {
  submit cap1 "$tmp" "${bin_env[@]}" PFT_MAX_REQUEUES=1 -- "${shape[@]}" -- "${train_args[@]}"
  local id_c="$job_id" dir_c="$tmp/runs/cap1-$job_id"
  submit cap0 "$tmp" "${bin_env[@]}" PFT_MAX_REQUEUES=0 -- "${shape[@]}" -- "${train_args[@]}"
  local id_d="$job_id" dir_d="$tmp/runs/cap0-$job_id"

  wait_until 120 step_at_least "$dir_d" "$signal_at" || fail "cap0: no step $signal_at"
  on_node1 scontrol requeue "$id_d" || fail "scontrol requeue $id_d failed"
  wait_until 120 step_at_least "$dir_c" "$signal_at" || fail "cap1: no step $signal_at"
  on_node1 scancel --signal=USR1 "$id_c" || fail "scancel --signal=USR1 $id_c failed"
  # Its second run: signalled again once it trains past the checkpoint.
  wait_until 120 resumed_past "$dir_c" || fail "cap1: no step after the resume"
  on_node1 scancel --signal=USR1 "$id_c" || fail "second scancel --signal=USR1 $id_c failed"
  wait_until 120 finished cap1 || fail "cap1: not finished"
  wait_until 120 finished cap0 || fail "cap0: not finished"

  [[ "$(job_rc cap1)" == 75 ]] || fail "cap1: exited $(job_rc cap1), want 75"
  expect_lines cap1 'SIGUSR1: checkpoint of step [0-9]* written; exiting 75' 2
  expect_lines cap1 "^\[train.sbatch\] requeued job $id_c\$" 1
  expect_lines cap1 'restart 1:' 1
  expect_lines cap1 'restart 2:' 0
  expect_lines cap1 "^\[train.sbatch\] exit 75 but already requeued 1 times (PFT_MAX_REQUEUES=1): giving up, exit 75" 1
  echo "cap1: $(grep 'giving up' "$tmp/cap1.out")"

  [[ "$(job_rc cap0)" == 75 ]] || fail "cap0: exited $(job_rc cap0), want 75"
  expect_lines cap0 'SIGTERM: checkpoint of step [0-9]* written; exiting 75' 1
  expect_lines cap0 'restart 1:' 1
  expect_lines cap0 "requeued 1 times, more than PFT_MAX_REQUEUES=0: not training again; exit 75" 1
  expect_lines cap0 'resume: from' 0
  echo "cap0: $(grep 'not training again' "$tmp/cap0.out")"
}

case "$case_name" in
  defaults) run_defaults ;;
  requeue) run_requeue ;;
  cap) run_cap ;;
  *) echo "usage: $0 defaults|requeue|cap" >&2; exit 2 ;;
esac
echo "slurm_test.sh $case_name: OK"
job_ids=()
