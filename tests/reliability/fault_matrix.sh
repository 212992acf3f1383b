#!/usr/bin/env bash
# fault_matrix.sh: the fault matrix (issue 18, docs/reliability.md "Fault matrix"). Repeated
# trials of a tiny 2-rank training job (3 bundled tasks, the tiny GPT-2, 40 steps, an async
# checkpoint every 4 steps), each hit by one fault at a random point; after each, the job is run
# again with `train.resume: auto` and must end at the parameter hash of an uninterrupted run of
# the same config (the `done:` line's `parameters xxh3-64:...`).
#
#   tests/reliability/fault_matrix.sh [--pft BIN] [--trials N] [--scenarios NAME,NAME..|all]
#                                     [--seed S] [--first-trial K] [--work DIR] [--keep]
#
# Scenarios (one row each):
#   kill_rank       kill -9 of a random rank (0 or 1) at a random step: exit 3 naming the rank
#   kill_in_save    kill -9 of a random rank while a checkpoint file is half written (the test
#                   hook PFT_TEST_DELAY=ckpt_write:0.6 holds every save there; the kill follows the
#                   `.step_N.h5.tmp-*` file of a random save): exit 3
#   stop_short      SIGSTOP of a random rank for 0.2-2 s, then SIGCONT: the job goes on, exit 0
#   stop_long       SIGSTOP of a random rank, held: exit 3 within dist.timeout_s + 30 s, the roll
#                   call naming the stopped rank (or, for a stop after the rank's `done:` line,
#                   the other rank's finalize watchdog message); no process left behind
#   term_launcher   SIGTERM to launch/pft-mpirun at a random step: exit 75, a `preempted` record
#                   in metrics.jsonl and a checkpoint at or after that step
#   disk_full_ckpt  run.dir on a 24 MB tmpfs filled at a random step (0-1 MB left, and kept full
#                   while the job runs): exit 3 with a "no space left" message; then the filler is
#                   removed and the run resumed
#   disk_full_cache data.cache_dir on a tmpfs with a random amount of space smaller than the
#                   stores need: exit 3 with "no space left", no temporary file left, every store
#                   finished before intact; then space is freed and the run resumed
#   flip_ckpt       the job is killed (kill -9 of the whole job) at a random step, then 1-8 random
#                   bytes of the newest checkpoint are flipped: `pft ckpt verify` refuses it and
#                   auto-resume falls back to the one before (a flip that changes nothing HDF5
#                   reads, by h5dump, may be accepted)
#   flip_store      1-8 random bytes of a random token store of the cache are flipped before a
#                   run: the store is found corrupt and rebuilt (a warning naming it), and the run
#                   ends at the reference hash
#
# Per trial it prints the random points (each trial seeds bash's RNG from --seed, the scenario
# and the trial number, so `--scenarios X --seed S --first-trial K --trials 1` replays trial K;
# the kill lands at the same step, not at the same instant), then one row per scenario:
#   trials      trials run
#   recovered   trials where the faulted job ended as specified above (exit code, message, no
#               process left behind) AND the resumed run exited 0 at the reference hash
#   lost        trials that lost data: the resumed run failed or ended at another hash, or it
#               resumed from an older step than the newest checkpoint that was valid just before
#               the fault (`checkpoints/latest` then; in flip_ckpt the newest one not flipped), or
#               a token store finished before the fault is damaged or rebuilt
#   detect_s    median seconds from the fault to the job's exit or its first error line (the
#               warning naming the damaged file for flip_*, counted from the start of the run
#               that reads it); "-" where nothing is to detect (stop_short)
# and `RESULT name=fault_matrix.<scenario> pft=<recovered> baseline=<trials> unit=trials
# ratio=<recovered/trials> lost=<n> detect_median_s=<s>` lines. Exit 0 when every trial
# recovered and none lost data, 1 otherwise, 2 on bad usage.
#
# disk_full_* mount tmpfs file systems in a private mount namespace (the script re-runs itself
# under `unshare --mount`): they need root, as tests/reliability/disk_full_test.sh does. Run the
# long matrix niced on a shared machine: `nice -n 10 tests/reliability/fault_matrix.sh --trials 20`.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
pft="$root/build/cpu/bin/pft"
trials=20
scenarios=all
seed=1
first=1
work=""
keep=0
all_scenarios=(kill_rank kill_in_save stop_short stop_long term_launcher disk_full_ckpt
               disk_full_cache flip_ckpt flip_store)
usage() { sed -n '/^#   tests/,/^# Scenarios/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --pft) pft="$2"; shift 2 ;;
    --trials) trials="$2"; shift 2 ;;
    --scenarios) scenarios="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    --first-trial) first="$2"; shift 2 ;;
    --work) work="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "fault_matrix.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for n in "$trials" "$seed" "$first"; do
  [[ "$n" =~ ^[0-9]+$ ]] || { echo "fault_matrix.sh: '$n' is not a number (--trials, --seed, --first-trial)" >&2; exit 2; }
done
[[ "$scenarios" == all ]] && scenarios="$(IFS=,; echo "${all_scenarios[*]}")"
IFS=, read -r -a chosen <<< "$scenarios"
for s in "${chosen[@]}"; do
  [[ " ${all_scenarios[*]} " == *" $s "* ]] ||
    { echo "fault_matrix.sh: unknown scenario '$s'; choose from: ${all_scenarios[*]}" >&2; exit 2; }
done
[[ -x "$pft" ]] || { echo "fault_matrix.sh: no pft binary at $pft (build it, or pass --pft)" >&2; exit 2; }
pft="$(cd "$(dirname "$pft")" && pwd)/$(basename "$pft")"

# The disk scenarios mount tmpfs file systems: do it in a private mount namespace, so nothing
# is left mounted on the machine whatever happens.
if [[ "$scenarios" == *disk_full* && -z "${PFT_FM_PRIVATE_NS:-}" ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    echo "fault_matrix.sh: the disk_full_* scenarios mount a tmpfs and need root; leave them out (--scenarios)" >&2
    exit 2
  fi
  export PFT_FM_PRIVATE_NS=1
  exec unshare --mount --propagation private bash "${BASH_SOURCE[0]}" --pft "$pft" --trials "$trials" \
    --scenarios "$scenarios" --seed "$seed" --first-trial "$first" ${work:+--work "$work"} \
    $([[ $keep == 1 ]] && echo --keep)
fi

if [[ -z "$work" ]]; then
  work="$(mktemp -d "${TMPDIR:-/tmp}/pft-faults-XXXXXX")"
else
  mkdir -p "$work" && work="$(cd "$work" && pwd)"
fi
cleanup() {
  local p
  for p in $(pgrep -f -- "$work/" | grep -vx "$$"); do kill -CONT "$p" 2> /dev/null; kill -KILL "$p" 2> /dev/null; done
  for m in $(awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r); do umount -l "$m"; done
  [[ $keep == 1 ]] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 OMP_NUM_THREADS=1
launcher="$root/launch/pft-mpirun"
steps=40
every=4
timeout_s=6
job_limit_s=180  # a job still alive after this is a hang: killed, and the trial fails

cat > "$work/tiny.yaml" <<EOF
# The fault matrix's job (tests/reliability/fault_matrix.sh).
run:
  dir: $work/unused
  seed: 7
  log_every: 1
  threads: 1
model: {family: gpt2, vocab_size: 258, d_model: 64, n_layers: 2, n_heads: 4, max_seq_len: 64}
data:
  seq_len: 64
  source: tasks
  tokenizer: byte
  tasks: [$root/datasets/tasks/add.yaml, $root/datasets/tasks/reverse.yaml, $root/datasets/tasks/uppercase.yaml]
  cache_dir: $work/cache
train: {method: full, steps: $steps, global_batch_size: 8, micro_batch_size: 2, lr: 1.0e-3, schedule: cosine, warmup_steps: 4}
dist: {timeout_s: $timeout_s}
eval: {every_steps: 0, max_batches: 1}
checkpoint: {every_steps: $every, keep_last: 3, async: true}
EOF

now() { echo "$EPOCHREALTIME"; }
fsub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }

# ---- jobs ------------------------------------------------------------------------------------
# start_job LOG RUN_DIR [--set k=v ...]: the 2-rank job in the background, in its own session
# (so that a hang can be killed as a group); sets JOB (the launcher's pid) and JOB_T0.
start_job() {
  local log="$1" dir="$2"
  shift 2
  JOB_T0="$(now)"
  setsid "$launcher" -np 2 "$pft" train "$work/tiny.yaml" --set "run.dir=$dir" "$@" \
    < /dev/null > "$log" 2>&1 &
  JOB=$!
}
# A pft log line that reports a failure (pft's `error` lines, the launcher's and mpirun's own).
error_re='\] error |^pft-mpirun: |exited on signal|preempt|no space left'
# wait_job LOG [PATTERN]: waits for JOB (at most job_limit_s); sets RC (124: hung, killed), T_END
# and T_SEEN (when PATTERN, default error_re, first appeared in LOG; empty if never).
wait_job() {
  local log="$1" pat="${2:-$error_re}" t0
  t0="$(now)"
  T_SEEN=""
  while kill -0 "$JOB" 2> /dev/null; do
    if [[ -z "$T_SEEN" ]] && grep -qE -- "$pat" "$log" 2> /dev/null; then T_SEEN="$(now)"; fi
    if (( $(awk -v a="$(now)" -v b="$t0" -v l="$job_limit_s" 'BEGIN { print (a - b > l) }') )); then
      echo "  job still running after ${job_limit_s} s: killing it" >> "$log"
      kill -KILL -- "-$JOB" 2> /dev/null
      kill_leftovers "$log"
      wait "$JOB" 2> /dev/null
      RC=124
      T_END="$(now)"
      return
    fi
    sleep 0.05
  done
  T_END="$(now)"
  wait "$JOB"
  RC=$?
  if [[ -z "$T_SEEN" ]] && grep -qE -- "$pat" "$log" 2> /dev/null; then T_SEEN="$T_END"; fi
}
# Processes of this trial still alive (found by the trial's directory on their command line).
leftovers() { pgrep -f -- "$trial_dir" | grep -vx "$$" || true; }
kill_leftovers() {
  local p
  for p in $(leftovers); do kill -CONT "$p" 2> /dev/null; kill -KILL "$p" 2> /dev/null; done
}
# rank_pid R: the pid of rank R of the running job.
rank_pid() {
  local p
  for p in $(pgrep -f -- "run.dir=$dir"); do
    [[ "$(readlink "/proc/$p/exe" 2> /dev/null)" == "$pft" ]] || continue
    if tr '\0' '\n' < "/proc/$p/environ" 2> /dev/null | grep -x "OMPI_COMM_WORLD_RANK=$1" > /dev/null; then
      echo "$p"
      return
    fi
  done
}
# wait_rank_pid R: polls until rank R of the running job exists; sets PID (empty if the job ended).
# Looked up before the fault step is awaited, so that the signal lands at that step.
wait_rank_pid() {
  PID=""
  while kill -0 "$JOB" 2> /dev/null; do
    PID="$(rank_pid "$1")"
    [[ -n "$PID" ]] && return 0
    sleep 0.05
  done
  return 1
}
# Highest training step in RUN_DIR/metrics.jsonl so far.
last_step() {
  grep -o '"kind":"train","step":[0-9]*' "$1/metrics.jsonl" 2> /dev/null | tail -n 1 | sed 's/.*://' || true
}
# wait_step DIR K: until the job has trained step K (or has ended). 0 when reached.
wait_step() {
  while kill -0 "$JOB" 2> /dev/null; do
    local s
    s="$(last_step "$1")"
    [[ -n "$s" && "$s" -ge "$2" ]] && return 0
    sleep 0.02
  done
  return 1
}
# The step of the checkpoint `latest` names (0 when none).
latest_step() {
  local f
  f="$(cat "$1/checkpoints/latest" 2> /dev/null || true)"
  [[ "$f" =~ step_0*([0-9]+)\.h5 ]] && echo "${BASH_REMATCH[1]}" || echo 0
}
# The step auto-resume started from in LOG (0: from scratch; empty: no resume line).
resumed_from() {
  if grep -q "resume: auto: no valid checkpoint" "$1"; then echo 0; return; fi
  sed -n 's/.*resume: from .* at step \([0-9]*\) .*/\1/p' "$1" | head -n 1
}
param_hash() { sed -n 's/.*done: .*parameters \(xxh3-64:[0-9a-f]*\).*/\1/p' "$1" | tail -n 1; }

# flip_bytes FILE N: XORs N random bytes at random offsets with random non-zero values; FLIPS
# lists them (offset^mask). Not in a subshell: bash reseeds $RANDOM there, and a replay would
# flip other bytes.
flip_bytes() {
  local f="$1" n="$2" size i off mask old
  FLIPS=""
  size="$(stat -c %s "$f")"
  for ((i = 0; i < n; i++)); do
    off=$(( (RANDOM * 32768 + RANDOM) % size ))
    mask=$(( RANDOM % 255 + 1 ))
    old="$(od -An -tu1 -j "$off" -N1 "$f" | tr -d ' ')"
    printf "$(printf '\\%03o' $(( old ^ mask )))" | dd of="$f" bs=1 seek="$off" conv=notrunc status=none
    FLIPS+="$off^$mask "
  done
}
# same_hdf5 A B: 0 when h5dump reads the same objects, attributes and data from both files.
same_hdf5() {
  cmp -s <(h5dump "$1" 2> /dev/null | tail -n +2) <(h5dump "$2" 2> /dev/null | tail -n +2)
}

# ---- a trial's verdict -----------------------------------------------------------------------
# Each scenario sets: OK (the faulted job behaved as specified), LOST, DETECT (seconds or "-"),
# NOTE (what it saw), MIN_STEP (the lowest acceptable resume step) and calls recover.
fail() { OK=0; NOTE+=" FAIL: $*;"; }
# recover [extra --set]: the resumed run; checks exit 0, the reference hash, the resume step.
# T_SEEN: when RECOVER_PAT first appeared in its log.
recover() {
  start_job "$trial_dir/resume.log" "$dir" --set train.resume=auto "$@"
  wait_job "$trial_dir/resume.log" "$RECOVER_PAT"
  local from hash
  from="$(resumed_from "$trial_dir/resume.log")"
  hash="$(param_hash "$trial_dir/resume.log")"
  NOTE+=" resumed from step ${from:-?}: exit $RC;"
  if [[ "$RC" -ne 0 ]]; then fail "resumed run exit $RC"; LOST=1; return; fi
  if [[ "$hash" != "$ref_hash" ]]; then fail "resumed run ended at $hash, not $ref_hash"; LOST=1; fi
  if [[ -z "$from" || "$from" -lt "$MIN_STEP" ]]; then
    fail "resumed from step ${from:-?}, but step $MIN_STEP was valid before the fault"
    LOST=1
  fi
}
# fault_ended EXPECTED_RC T_FAULT: checks the faulted job's exit code and sets DETECT.
fault_ended() {
  local t="${T_SEEN:-$T_END}"
  DETECT="$(fsub "$t" "$2")"
  NOTE+=" faulted job: exit $RC after $(fsub "$T_END" "$2") s;"
  [[ "$RC" -eq "$1" ]] || fail "faulted job exit $RC, want $1"
  [[ -z "$(leftovers)" ]] || { fail "processes left behind: $(leftovers | tr '\n' ' ')"; kill_leftovers; }
}

# ---- scenarios -------------------------------------------------------------------------------
s_kill_rank() {
  local r=$((RANDOM % 2)) k=$((2 + RANDOM % (steps - 4))) t
  NOTE="rank=$r step=$k;"
  start_job "$trial_dir/fault.log" "$dir"
  wait_rank_pid "$r"
  wait_step "$dir" "$k" || fail "job ended before step $k"
  MIN_STEP="$(latest_step "$dir")"
  t="$(now)"
  kill -KILL "$PID"
  wait_job "$trial_dir/fault.log"
  fault_ended 3 "$t"
  grep -qE "rank $r .*(signal 9|Killed)|ranks? $r\b" "$trial_dir/fault.log" || fail "no line names rank $r"
  recover
}

s_kill_in_save() {
  local r=$((RANDOM % 2)) save=$((1 + RANDOM % (steps / every - 1))) delay=$((RANDOM % 300)) t name
  name="$(printf 'step_%08d.h5' $((save * every)))"
  NOTE="rank=$r save=$name after_ms=$delay;"
  PFT_TEST_DELAY=ckpt_write:0.6 start_job "$trial_dir/fault.log" "$dir"
  wait_rank_pid "$r"
  while kill -0 "$JOB" 2> /dev/null && ! compgen -G "$dir/checkpoints/.$name.tmp-*" > /dev/null; do sleep 0.01; done
  MIN_STEP="$(latest_step "$dir")"
  sleep "$(awk -v d="$delay" 'BEGIN { print d / 1000 }')"
  compgen -G "$dir/checkpoints/.$name.tmp-*" > /dev/null || fail "the save of $name was not in flight"
  t="$(now)"
  kill -KILL "$PID"
  wait_job "$trial_dir/fault.log"
  fault_ended 3 "$t"
  recover
}

s_stop_short() {
  local r=$((RANDOM % 2)) k=$((2 + RANDOM % (steps - 4))) ms=$((200 + RANDOM % 1801)) p hash
  NOTE="rank=$r step=$k stop_ms=$ms;"
  start_job "$trial_dir/fault.log" "$dir"
  wait_rank_pid "$r"
  p="$PID"
  wait_step "$dir" "$k" || fail "job ended before step $k"
  kill -STOP "$p"
  sleep "$(awk -v d="$ms" 'BEGIN { print d / 1000 }')"
  kill -CONT "$p"
  wait_job "$trial_dir/fault.log"
  DETECT="-"
  [[ "$RC" -eq 0 ]] || { fail "job exit $RC after a stop shorter than dist.timeout_s"; LOST=1; }
  hash="$(param_hash "$trial_dir/fault.log")"
  [[ "$hash" == "$ref_hash" ]] || { fail "ended at ${hash:-no hash}, not $ref_hash"; LOST=1; }
  NOTE+=" exit $RC;"
}

s_stop_long() {
  local r=$((RANDOM % 2)) k=$((2 + RANDOM % (steps - 4))) p t
  NOTE="rank=$r step=$k;"
  start_job "$trial_dir/fault.log" "$dir"
  wait_rank_pid "$r"
  p="$PID"
  wait_step "$dir" "$k" || fail "job ended before step $k"
  MIN_STEP="$(latest_step "$dir")"
  t="$(now)"
  kill -STOP "$p"
  wait_job "$trial_dir/fault.log"
  # Open MPI kills the stopped rank with the job (SIGKILL works on a stopped process): give the
  # kernel a moment to reap it.
  for _ in $(seq 100); do kill -0 "$p" 2> /dev/null || break; sleep 0.1; done
  kill -0 "$p" 2> /dev/null && { fail "the stopped rank $r (pid $p) outlived the job by 10 s"; kill -KILL "$p"; kill -CONT "$p"; }
  fault_ended 3 "$t"
  (( $(awk -v a="$T_END" -v b="$t" -v l="$timeout_s" 'BEGIN { print (a - b > l + 30) }') )) &&
    fail "the job ended $(fsub "$T_END" "$t") s after the stop, later than dist.timeout_s + 30 s"
  # A stop that lands after the rank's last collective (its `done:` line) is met by the other
  # rank's finalize watchdog instead (core/mpi_env.h finalize_mpi_job), not by a roll call.
  grep -qE "Roll call: rank $r on [^ ]+ did not answer" "$trial_dir/fault.log" ||
    grep -qE "MPI_Finalize \(the end of the job; .* has not completed on rank $((1 - r)) of 2" "$trial_dir/fault.log" ||
    fail "no roll call naming rank $r (nor a finalize watchdog message of rank $((1 - r)))"
  recover
}

s_term_launcher() {
  local k=$((2 + RANDOM % (steps - 4))) t pre
  NOTE="step=$k;"
  start_job "$trial_dir/fault.log" "$dir"
  wait_step "$dir" "$k" || fail "job ended before step $k"
  MIN_STEP="$k"
  t="$(now)"
  kill -TERM "$JOB"
  wait_job "$trial_dir/fault.log"
  fault_ended 75 "$t"
  grep -q '"kind":"preempted"' "$dir/metrics.jsonl" || fail "no 'preempted' record in metrics.jsonl"
  pre="$(latest_step "$dir")"
  [[ "$pre" -ge "$k" ]] || fail "newest checkpoint is step $pre, before the signal at step >= $k"
  recover
}

s_disk_full_ckpt() {
  local k=$((2 + RANDOM % (steps - 6))) left=$((RANDOM % 1024)) small="$trial_dir/small" t
  NOTE="step=$k left_kb=$left;"
  mkdir -p "$small" && mount -t tmpfs -o size=24m tmpfs "$small" || { fail "cannot mount a tmpfs"; return; }
  dir="$small/run"
  start_job "$trial_dir/fault.log" "$dir"
  wait_step "$dir" "$k" || fail "job ended before step $k"
  MIN_STEP="$(latest_step "$dir")"
  t="$(now)"
  # Another writer takes every free byte but `left` kB, and keeps taking what the run frees
  # (retention deletes old checkpoints): the disk stays full until the job has ended.
  (
    i=0
    while :; do
      a=$(( $(stat -f -c '%a * %S' "$small") - left * 1024 ))
      (( a > 4096 )) && fallocate -l "$a" "$small/filler.$((i++))" 2> /dev/null
      sleep 0.02
    done
  ) &
  local filler=$!
  wait_job "$trial_dir/fault.log"
  kill "$filler"
  wait "$filler" 2> /dev/null
  fault_ended 3 "$t"
  grep -qi "no space left" "$trial_dir/fault.log" || fail "no 'no space left' message"
  rm -f "$small"/filler.*
  recover
}

s_disk_full_cache() {
  local small="$trial_dir/small" need left t stores s
  need=$(du -cb "$work"/pristine/*.h5 | tail -n 1 | cut -f1)
  left=$(( (RANDOM * 32768 + RANDOM) % need ))
  NOTE="free_bytes=$left of $need needed;"
  mkdir -p "$small" && mount -t tmpfs -o size=16m tmpfs "$small" || { fail "cannot mount a tmpfs"; return; }
  mkdir -p "$small/cache"
  local avail=$(( $(stat -f -c '%a * %S' "$small") ))
  fallocate -l $(( avail - left )) "$small/filler" || { fail "fallocate"; return; }
  MIN_STEP=0
  t="$(now)"
  start_job "$trial_dir/fault.log" "$dir" --set "data.cache_dir=$small/cache"
  wait_job "$trial_dir/fault.log"
  fault_ended 3 "$t"
  grep -qi "no space left" "$trial_dir/fault.log" || fail "no 'no space left' message"
  [[ -z "$(find "$small" -name '*.tmp*')" ]] || fail "temporary files left: $(find "$small" -name '*.tmp*')"
  stores=("$small"/cache/*.h5)
  [[ -e "${stores[0]}" ]] || stores=()
  NOTE+=" stores finished before: ${#stores[@]};"
  rm -f "$small/filler"
  recover --set "data.cache_dir=$small/cache"
  for s in "${stores[@]}"; do
    grep -q "cached store $s" "$trial_dir/resume.log" || { fail "store $s, finished before the fault, was rebuilt"; LOST=1; }
  done
}

s_flip_ckpt() {
  local k=$((2 * every + RANDOM % (steps - 2 * every - 2))) n=$((1 + RANDOM % 8)) newest prev t
  NOTE="step=$k bytes=$n;"
  start_job "$trial_dir/fault.log" "$dir"
  wait_step "$dir" "$k" || fail "job ended before step $k"
  kill -KILL -- "-$JOB"
  kill_leftovers
  wait "$JOB" 2> /dev/null
  # The newest checkpoint FILE, not the one `latest` names: a kill between a save's rename and
  # its update of `latest` leaves a newer complete file, which auto-resume would take instead of
  # reading the flipped one.
  newest=0
  prev=0
  for f in "$dir"/checkpoints/step_*.h5; do
    [[ "$f" =~ step_0*([0-9]+)\.h5$ ]] || continue
    s="${BASH_REMATCH[1]}"
    if [[ "$s" -gt "$newest" ]]; then
      prev="$newest"; newest="$s"
    elif [[ "$s" -gt "$prev" ]]; then
      prev="$s"
    fi
  done
  local file="$dir/checkpoints/$(printf 'step_%08d.h5' "$newest")"
  [[ "$newest" -gt 0 && -f "$file" ]] || { fail "no checkpoint to flip"; return; }
  cp "$file" "$trial_dir/original.h5"
  flip_bytes "$file" "$n"
  NOTE+=" flipped step $newest at $FLIPS;"
  local harmless=0
  if "$pft" ckpt verify "$file" > "$trial_dir/verify.log" 2>&1; then
    if same_hdf5 "$file" "$trial_dir/original.h5"; then
      harmless=1
      NOTE+=" verify accepts it (the flips change nothing h5dump reads);"
    else
      fail "pft ckpt verify accepts a checkpoint whose contents changed"
    fi
  fi
  MIN_STEP=$([[ $harmless == 1 ]] && echo "$newest" || echo "$prev")
  RECOVER_PAT="skipping invalid checkpoint .*$(basename "$file")"
  recover
  if [[ $harmless == 0 ]]; then
    if [[ -n "$T_SEEN" ]]; then
      DETECT="$(fsub "$T_SEEN" "$JOB_T0")"
    else
      fail "auto-resume did not name the corrupt $(basename "$file")"
    fi
  fi
}

s_flip_store() {
  local n=$((1 + RANDOM % 8)) stores victim t cache="$trial_dir/cache"
  mkdir -p "$cache" && cp "$work"/pristine/*.h5 "$cache/"
  stores=("$cache"/*.h5)
  victim="${stores[$((RANDOM % ${#stores[@]}))]}"
  flip_bytes "$victim" "$n"
  NOTE="store=$(basename "$victim") bytes=$n at $FLIPS;"
  MIN_STEP=0
  local pat="rebuilding the token store of task .*$(basename "$victim" | sed 's/-.*//')"
  start_job "$trial_dir/resume.log" "$dir" --set train.resume=auto --set "data.cache_dir=$cache"
  wait_job "$trial_dir/resume.log" "$pat"
  local hash from
  hash="$(param_hash "$trial_dir/resume.log")"
  NOTE+=" run: exit $RC;"
  [[ "$RC" -eq 0 ]] || { fail "run exit $RC"; LOST=1; }
  [[ "$hash" == "$ref_hash" ]] || { fail "ended at ${hash:-no hash}, not $ref_hash"; LOST=1; }
  if [[ -n "$T_SEEN" ]]; then
    DETECT="$(fsub "$T_SEEN" "$JOB_T0")"
    NOTE+=" rebuilt;"
  else
    local orig="$work/pristine/$(basename "$victim")"
    if same_hdf5 "$victim" "$orig"; then
      NOTE+=" not rebuilt: the flips change nothing h5dump reads;"
    else
      fail "the corrupt store was used without a warning"
    fi
  fi
}

# ---- the reference and the trials -----------------------------------------------------------
trial_dir="$work/reference"
mkdir -p "$trial_dir"
dir="$trial_dir/run"
echo "fault matrix: $pft, 2 ranks, $steps steps, a checkpoint every $every steps (async), dist.timeout_s $timeout_s; seed $seed; work $work"
start_job "$trial_dir/run.log" "$dir"
wait_job "$trial_dir/run.log" 'a^b'
ref_hash="$(param_hash "$trial_dir/run.log")"
if [[ "$RC" -ne 0 || -z "$ref_hash" ]]; then
  echo "fault_matrix.sh: the uninterrupted reference run failed (exit $RC):" >&2
  tail -n 20 "$trial_dir/run.log" >&2
  exit 1
fi
echo "reference: $ref_hash ($(fsub "$T_END" "$JOB_T0") s)"
mkdir -p "$work/pristine" && cp "$work"/cache/*.h5 "$work/pristine/"
rm -rf "$trial_dir"

declare -A n_trials n_ok n_lost detects
failed=0
for si in "${!all_scenarios[@]}"; do
  scen="${all_scenarios[$si]}"
  [[ ",$scenarios," == *",$scen,"* ]] || continue
  n_trials[$scen]=0; n_ok[$scen]=0; n_lost[$scen]=0; detects[$scen]=""
  for ((trial = first; trial < first + trials; trial++)); do
    trial_dir="$work/$scen-$trial"
    rm -rf "$trial_dir"; mkdir -p "$trial_dir"
    dir="$trial_dir/run"
    # bash's generator gives similar first numbers for nearby seeds: seed it with a hash.
    RANDOM="$(cksum <<< "fault_matrix $seed $scen $trial" | cut -d' ' -f1)"
    OK=1; LOST=0; DETECT="-"; NOTE=""; MIN_STEP=0; RECOVER_PAT='a^b' 
    "s_$scen"
    kill_leftovers
    n_trials[$scen]=$(( n_trials[$scen] + 1 ))
    (( OK && ! LOST )) && n_ok[$scen]=$(( n_ok[$scen] + 1 ))
    n_lost[$scen]=$(( n_lost[$scen] + LOST ))
    [[ "$DETECT" != "-" ]] && detects[$scen]+="$DETECT "
    verdict=$([[ $OK == 1 && $LOST == 0 ]] && echo recovered || echo FAILED)
    echo "[$scen $trial] $NOTE detect ${DETECT} s -> $verdict$([[ $LOST == 1 ]] && echo ', DATA LOST')"
    if [[ $verdict == FAILED ]]; then
      failed=1
      for l in "$trial_dir"/*.log; do echo "  --- $(basename "$l") (last lines)"; tail -n 8 "$l" | sed 's/^/  /'; done
      echo "  replay: $0 --scenarios $scen --seed $seed --first-trial $trial --trials 1"
    fi
    for m in $(awk -v w="$trial_dir/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r); do umount -l "$m"; done
    [[ $keep == 1 ]] || rm -rf "$trial_dir"
  done
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) printf "%.2f", a[(NR + 1) / 2]; else printf "%.2f", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
echo
printf '%-16s %7s %10s %5s %9s\n' scenario trials recovered lost detect_s
for scen in "${all_scenarios[@]}"; do
  [[ -n "${n_trials[$scen]:-}" ]] || continue
  printf '%-16s %7d %10d %5d %9s\n' "$scen" "${n_trials[$scen]}" "${n_ok[$scen]}" "${n_lost[$scen]}" \
    "$(median <<< "${detects[$scen]}")"
done
for scen in "${all_scenarios[@]}"; do
  [[ -n "${n_trials[$scen]:-}" ]] || continue
  echo "RESULT name=fault_matrix.$scen pft=${n_ok[$scen]} baseline=${n_trials[$scen]} unit=trials" \
       "ratio=$(awk -v a="${n_ok[$scen]}" -v b="${n_trials[$scen]}" 'BEGIN { printf "%.2f", a / b }')" \
       "lost=${n_lost[$scen]} detect_median_s=$(median <<< "${detects[$scen]}")"
done
exit $failed
