#!/usr/bin/env bash
# failures_test.sh MODE: node failures on the 2-host namespace cluster (cluster/netns-cluster.sh,
# brought up by the `cluster.up` fixture), 2 ranks per host, launch/pft-mpirun from node1,
# tests/netns/failures.yaml (dist.timeout_s 6, a checkpoint every 10 steps, train.resume auto).
#
#   reference  the uninterrupted run on 4 ranks (2 hosts): the losses and data the resumed runs
#              must reproduce. Also prepares the data store (a fixture of the others).
#   crash      every process of node2 killed (`crash node2`) mid-step;
#   link       node2's link cut (`link node2 down`) mid-step: no RST, only deadlines notice;
#   stall      rank 2 (on node2) stalls inside a checkpoint save (PFT_TEST_STALL=ckpt_save:rank2);
#   stall_store  rank 2 stalls inside the data store preparation at start-up
#              (PFT_TEST_STALL=store_prepare:rank2);
# For each failure: the job ends with exit 3 within dist.timeout_s + 10 s of the
# failure, with a message naming the lost (or hung) host and ranks, and no pft, orted or mpirun
# is left on any host (for link: once the link is back up; what is left before is printed). For
# crash and link: `train.resume: auto` on node1 alone (world size 4 -> 2) continues from the last
# complete checkpoint; every later step trains on exactly the rows of the reference run (the
# sampler's promise, docs/data-pipeline.md: a step's rows do not depend on the world size), so
# per-step token counts per task are equal, and losses equal to 1e-4 (the all-reduce sums 2
# partial gradients instead of 4: not bitwise).
# Prints `FIGURE ...` lines with the measured times (docs/launching.md, "Node failures").
set -euo pipefail
mode="${1:?usage: failures_test.sh reference|crash|link|stall|stall_store}"
cluster="${PFT_CLUSTER_SCRIPT:?run under ctest (tests/netns/CMakeLists.txt)}"
pft="${PFT_BIN:?}"
work="$PFT_CLUSTER_DIR/failures"
config="$PWD/tests/netns/failures.yaml"
timeout_s=6
fail() { echo "FAIL ($mode): $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# The pft, orted and mpirun processes on host $1 ("pid comm" lines).
job_procs() {
  ip netns pids "$PFT_CLUSTER_NAME-$1" 2> /dev/null | xargs -r ps -o pid=,comm= -p 2> /dev/null |
    awk '$2 == "pft" || $2 == "orted" || $2 == "mpirun" || $2 == "pft-mpirun"' || true
}
# Waits up to $2 s until host $1 has no job process; prints the seconds it took, or fails.
wait_no_procs() {
  local t0 left
  t0="$(now)"
  while left="$(job_procs "$1")" && [[ -n "$left" ]]; do
    if (($(since "$t0" | cut -d. -f1) >= $2)); then
      echo "left on $1:" >&2
      echo "$left" >&2
      return 1
    fi
    sleep 0.2
  done
  since "$t0"
}

# run DIR LOG NP [launcher args...] -- [pft args...]: pft train on node1 through pft-mpirun.
run() {
  local dir="$1" log="$2" np="$3"
  shift 3
  local largs=()
  while [[ $# -gt 0 && "$1" != -- ]]; do largs+=("$1"); shift; done
  shift || true
  "$cluster" exec node1 "$PWD/launch/pft-mpirun" -np "$np" "${largs[@]}" \
    "$pft" train "$config" --set run.dir="$dir" --set run.threads=1 \
    --set data.cache_dir="$work/cache" "$@" > "$log" 2>&1
}
hostfile=(--hostfile "$PFT_CLUSTER_DIR/hostfile")

# Last train line of each step: "step target_tokens task_tokens loss".
steps_of() {
  python3 - "$1" <<'EOF'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("kind") == "train":
        rows[r["step"]] = r
for s in sorted(rows):
    r = rows[s]
    print(s, r["target_tokens"], ",".join(map(str, r["task_tokens"])), repr(r["loss"]))
EOF
}
last_step() {
  [[ -f "$1/metrics.jsonl" ]] || { echo 0; return; }
  grep -o '"kind":"train","step":[0-9]*' "$1/metrics.jsonl" | tail -1 | grep -o '[0-9]*$' || echo 0
}

# ---- reference ----------------------------------------------------------------------------
if [[ "$mode" == reference ]]; then
  rm -rf "$work"
  mkdir -p "$work"
  # The data store first, on one process: rank 0 building it inside a 6 s deadline could be slow.
  "$pft" data prepare "$config" --set data.cache_dir="$work/cache" > "$work/prepare.log" 2>&1 ||
    { cat "$work/prepare.log"; fail "pft data prepare"; }
  run "$work/reference" "$work/reference.log" 4 "${hostfile[@]}" -- ||
    { tail -30 "$work/reference.log"; fail "the reference run failed"; }
  grep -q '"world_size":4' "$work/reference/metrics.jsonl" || fail "the reference did not run on 4 ranks"
  steps_of "$work/reference/metrics.jsonl" > "$work/reference.steps"
  echo "reference: $(wc -l < "$work/reference.steps") steps"
  echo PASS
  exit 0
fi

[[ -s "$work/reference.steps" ]] || fail "no reference (the cluster.failure_reference test runs first)"

# Whatever happens, node2 is given back as the other cluster tests expect it: its link up and,
# after a crash (which kills its slurmd too), its slurmd restarted and the node idle again.
restore_node2() {
  "$cluster" link node2 up > /dev/null 2>&1 || true
  local conf="$PFT_CLUSTER_DIR/slurm/etc/slurm.conf" i
  [[ "$mode" == crash && -f "$conf" ]] || return 0
  "$cluster" exec node2 slurmd -f "$conf" -N node2 || { echo "could not restart slurmd on node2" >&2; return 0; }
  for ((i = 0; i < 150; ++i)); do
    [[ "$("$cluster" exec node1 sinfo -h -n node2 -o %T 2> /dev/null)" =~ ^(idle|mixed|allocated)$ ]] && return 0
    sleep 0.2
  done
  echo "node2 is not idle in Slurm 30 s after its slurmd restarted" >&2
}
trap restore_node2 EXIT
dir="$work/$mode"
log="$work/$mode.log"
rm -rf "$dir" "$log"
extra=()
point=""
[[ "$mode" == stall ]] && point=ckpt_save
[[ "$mode" == stall_store ]] && point=store_prepare
[[ -n "$point" ]] && extra=(-x "PFT_TEST_STALL=$point:rank2")

t_start="$(now)"
run "$dir" "$log" 4 "${hostfile[@]}" "${extra[@]}" -- &
job=$!

# The failure: after the checkpoint of step 10 and a few steps more (stall: the hook fires by
# itself at the first save, step 10).
t0=""
while kill -0 "$job" 2> /dev/null; do
  case "$mode" in
    stall | stall_store)
      if grep -q "test hook PFT_TEST_STALL: rank 2 stalls in $point" "$log" 2> /dev/null; then
        t0="$(now)"
        break
      fi
      ;;
    *)
      if (($(last_step "$dir") >= 13)) && [[ -f "$dir/checkpoints/step_00000010.h5" ]]; then
        t0="$(now)"
        if [[ "$mode" == crash ]]; then "$cluster" crash node2; else "$cluster" link node2 down; fi
        break
      fi
      ;;
  esac
  (($(since "$t_start" | cut -d. -f1) < 120)) || { kill "$job"; fail "the run did not reach step 13 in 120 s"; }
  sleep 0.05
done
[[ -n "$t0" ]] || { cat "$log"; "$cluster" link node2 up || true; fail "the job ended before the failure"; }
at_step="$(last_step "$dir")"

# The end of the job (a hang fails the test instead of blocking it).
code=0
while kill -0 "$job" 2> /dev/null && (($(since "$t0" | cut -d. -f1) < 90)); do sleep 0.1; done
if kill -0 "$job" 2> /dev/null; then
  "$cluster" link node2 up || true
  kill "$job" 2> /dev/null || true
  tail -40 "$log"
  fail "the job still runs 90 s after the failure: it hangs"
fi
wait "$job" || code=$?
took="$(since "$t0")"
echo "---- job output (without the config) ----"
grep -v '\] info   ' "$log" | tail -60
echo "-----------------------------------------"
echo "FIGURE $mode: failure at step $at_step, job ended $took s after it, exit $code (dist.timeout_s $timeout_s)"

# Orphans: node1 at once; node2 (for link: before and after the link is back).
n1="$(wait_no_procs node1 10)" || fail "processes left on node1 10 s after the job ended"
if [[ "$mode" == link ]]; then
  if n2="$(wait_no_procs node2 5)"; then
    echo "FIGURE link: node2 clean ${n2} s after the job ended, before the link is back"
  else
    echo "FIGURE link: node2 still has the processes above with the link down; restoring the link"
  fi
  "$cluster" link node2 up
  t_up="$(now)"
  n2="$(wait_no_procs node2 20)" || fail "processes left on node2 20 s after the link came back"
  echo "FIGURE link: node2 clean $(since "$t_up") s after the link came back"
else
  n2="$(wait_no_procs node2 15)" || fail "processes left on node2 15 s after the job ended"
fi
echo "no orphans: node1 clean after ${n1} s, node2 after ${n2} s"

[[ "$code" == 3 ]] || fail "exit $code, want 3"
awk -v t="$took" -v lim="$((timeout_s + 10))" 'BEGIN { exit !(t < lim) }' ||
  fail "the job ended $took s after the failure, want < dist.timeout_s + 10 = $((timeout_s + 10)) s"

# The message: the lost (or hung) host and ranks, and the operation in flight.
case "$mode" in
  crash)
    # The processes' sockets are reset at once: Open MPI notices first and ends the job within
    # about 2 s, before any deadline. When its messages name node2 (its daemon's connection
    # reset: "Remote daemon: ... on node node2", or a rank's: "Peer host: node2"), pft-mpirun
    # names the host and its ranks; when its launch agent for node2 died first, Open MPI says
    # only "unable to reliably start one or more daemons", and so does pft-mpirun, generically.
    if grep -qE "^ *(Peer host: *node2|Remote daemon: .* on node node2)" "$log"; then
      grep -E "pft-mpirun: Open MPI lost host node2 \(ranks 2, 3\)" "$log" ||
        fail "Open MPI named node2 but pft-mpirun did not name it with its ranks 2, 3"
    else
      echo "FIGURE crash: Open MPI's messages name no host (its agent for node2 died first)"
      grep -E "pft-mpirun: mpirun exited [0-9]+: Open MPI ended the job itself" "$log" ||
        fail "no pft-mpirun message about Open MPI's verdict"
    fi
    ;;
  link)
    # Nothing is reset: only pft's deadline notices; the roll call names the lost ranks.
    grep -E "did not complete within the deadline of $timeout_s s.*Roll call: ranks 2, 3 on node2 did not answer" "$log" ||
      fail "no message naming the operation in flight and the lost ranks 2, 3 on node2"
    [[ "$(grep -c "Roll call: ranks 2, 3 on node2" "$log")" == 1 ]] ||
      fail "not one message: every rank of node1 printed its own"
    ;;
  stall)
    grep -E "Roll call: rank 2 on node2 did not answer" "$log" ||
      fail "no message naming the hung rank 2 on node2"
    grep -E "checkpoint save at step 10 .* did not complete within the deadline of $timeout_s s" "$log" ||
      fail "no message naming the checkpoint save"
    echo PASS
    exit 0
    ;;
  stall_store)
    grep -E "data store preparation \(world rank 0 builds the stores\) on rank 0 of 4 .* did not complete within the deadline of $timeout_s s.*Roll call: rank 2 on node2 did not answer" "$log" ||
      fail "no message naming the store preparation and the hung rank 2 on node2"
    echo PASS
    exit 0
    ;;
esac

# ---- resume on node1 alone: world size 4 -> 2 ------------------------------------------------
ls "$dir/checkpoints"
t_resume="$(now)"
run "$dir" "$work/$mode.resume.log" 2 --host node1:2 -- ||
  { tail -30 "$work/$mode.resume.log"; fail "the resumed run failed"; }
from="$(grep -o 'resume: from .* at step [0-9]*' "$work/$mode.resume.log" | grep -o 'step [0-9]*$' || true)"
[[ -n "$from" ]] || fail "the second run did not resume from a checkpoint"
echo "FIGURE $mode: resumed on 2 ranks from the checkpoint of $from, finished in $(since "$t_resume") s"
steps_of "$dir/metrics.jsonl" > "$work/$mode.steps"
grep -q '"world_size":2' "$dir/metrics.jsonl" || fail "the resumed run did not run on 2 ranks"
python3 - "$work/reference.steps" "$work/$mode.steps" "$dir/metrics.jsonl" <<'EOF' || fail "the resumed run differs from the reference"
import json, sys
ref = {int(l.split()[0]): l.split() for l in open(sys.argv[1])}
got = {int(l.split()[0]): l.split() for l in open(sys.argv[2])}
# The steps the resumed run trained: the train lines after its start line (world_size 2).
lines = [json.loads(l) for l in open(sys.argv[3])]
start = max(i for i, r in enumerate(lines) if r.get("kind") == "start" and r.get("world_size") == 2)
resumed = sorted({r["step"] for r in lines[start:] if r.get("kind") == "train"})
assert resumed, "the resumed run trained no step"
assert resumed[-1] == max(ref), f"the resumed run ends at step {resumed[-1]}, the reference at {max(ref)}"
assert resumed[0] in (11, 21, 31, 41), f"resumed at step {resumed[0]}: not right after a checkpoint"
bad = 0
for s in resumed:
    r, g = ref[s], got[s]
    same_rows = r[1:3] == g[1:3]
    dl = abs(float(r[3]) - float(g[3])) / abs(float(r[3]))
    if not same_rows or dl > 1e-4:
        bad += 1
        if bad <= 5:
            print(f"step {s}: reference tokens {r[1]} per task {r[2]} loss {r[3]}; "
                  f"resumed {g[1]} per task {g[2]} loss {g[3]} (rel {dl:.1e})")
print(f"resumed steps {resumed[0]}..{resumed[-1]}: {len(resumed) - bad} of {len(resumed)} equal "
      "to the reference (same tokens per task, loss within 1e-4)")
sys.exit(1 if bad else 0)
EOF
echo PASS
