#!/usr/bin/env bash
# listeners_test.sh PFT: a 2-rank job started through launch/pft-mpirun with an interface option
# listens only on that interface (docs/launching.md, "Listening sockets"). While each job runs,
# `ss -ltnup` is sampled every 0.2 s for the job's processes (pft-mpirun's mpirun and everything
# under it); no TCP or UDP listener of theirs may be on a wildcard address (0.0.0.0, [::], *).
#   loopback:  PFT_MPIRUN_LOOPBACK=1, a short `pft train`: mpirun listens on 127.0.0.1 / [::1]
#              only, and the ranks listen on nothing (shared memory only, no TCP transport);
#   iface:     PFT_MPIRUN_IFACE=lo (TCP transport on): the ranks' TCP listeners are on lo too;
#   control:   the same with PFT_BIND_SHIM=none: mpirun listens on a wildcard address, as Open MPI
#              4.1.4 does whatever its settings (so the sampling does see wildcard listeners);
#   no shim:   PFT_BIND_SHIM naming a missing file is exit 2 with a message naming the variable.
set -uo pipefail
pft="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
mpirun="$root/launch/pft-mpirun"
work="$(mktemp -d "${TMPDIR:-/tmp}/pft-listeners-XXXXXX")"
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
export PFT_OVERSUBSCRIBE=1

# pid and every descendant of it.
tree() {
  echo "$1"
  local c
  for c in $(pgrep -P "$1"); do tree "$c"; done
}

# run NAME CMD...: runs CMD in the background, samples the listeners of its process tree until it
# ends; leaves $work/NAME.listeners (ss lines) and $work/NAME.log, returns CMD's exit code.
run() {
  local name="$1"; shift
  "$@" > "$work/$name.log" 2>&1 &
  local job=$! samples=0
  : > "$work/$name.listeners"
  while kill -0 "$job" 2> /dev/null; do
    local pids
    pids="$(tree "$job" | paste -sd '|')"
    ss -ltnupH 2> /dev/null | grep -E "pid=($pids)," >> "$work/$name.listeners"
    samples=$((samples + 1))
    sleep 0.2
  done
  wait "$job"
  local rc=$?
  sort -u -o "$work/$name.listeners" "$work/$name.listeners"
  echo "== $name: exit $rc, $samples samples, listeners seen:"
  sed 's/^/   /' "$work/$name.listeners"
  return $rc
}
# count NAME PROCESS [ADDRESS-REGEX]: listeners of PROCESS (ss's name; "" for any) in NAME's samples.
count() {
  awk -v p="$2" -v re="${3:-.}" '(p == "" || index($0, "\"" p "\"")) && $5 ~ re' \
    "$work/$1.listeners" | wc -l
}
wildcard='^(0\.0\.0\.0|\[::\]|\*):'
train() {
  echo "$pft" train "$root/tests/cluster/tiny.yaml" --set "run.dir=$work/run-$1" \
    --set "data.cache_dir=$work/cache" --set train.steps=20 --set run.threads=1 \
    --set eval.every_steps=10 --set checkpoint.every_steps=10
}

# ---- PFT_MPIRUN_LOOPBACK=1 --------------------------------------------------------------------
run loopback env PFT_MPIRUN_LOOPBACK=1 "$mpirun" -np 2 $(train loopback) ||
  { tail -n 20 "$work/loopback.log"; fail "loopback: the job failed"; }
[[ $(count loopback mpirun) -ge 1 ]] || fail "loopback: no listener of mpirun was seen (sampling broken?)"
[[ $(count loopback mpirun "$wildcard") -eq 0 ]] || fail "loopback: mpirun listens on a wildcard address"
[[ $(count loopback mpirun '^(127\.0\.0\.1|\[::1\]):') -eq $(count loopback mpirun) ]] ||
  fail "loopback: mpirun listens outside lo"
[[ $(count loopback pft) -eq 0 ]] || fail "loopback: the ranks listen on TCP (want shared memory only)"
grep -q "done: 20 steps" "$work/loopback.log" || fail "loopback: the job did not train to the end"

# ---- PFT_MPIRUN_IFACE=lo, TCP transport on ------------------------------------------------------
run iface env PFT_MPIRUN_IFACE=lo "$mpirun" -np 2 $(train iface) ||
  { tail -n 20 "$work/iface.log"; fail "iface: the job failed"; }
[[ $(count iface pft) -ge 2 ]] || fail "iface: the ranks' TCP listeners were not seen"
[[ $(count iface mpirun) -ge 1 ]] || fail "iface: no listener of mpirun was seen"
n_all=$(wc -l < "$work/iface.listeners")
[[ $(count iface "" '^(127\.0\.0\.1|\[::1\]):') -eq $n_all ]] ||
  fail "iface: a listener of the job is not on lo"

# ---- control: no shim, Open MPI's own binds ----------------------------------------------------
run control env PFT_MPIRUN_LOOPBACK=1 PFT_BIND_SHIM=none "$mpirun" -np 2 sleep 3 ||
  fail "control: the job failed"
[[ $(count control mpirun "$wildcard") -ge 1 ]] ||
  fail "control: without the shim mpirun was not seen on a wildcard address (Open MPI changed? then the shim may be unneeded)"

# ---- a missing shim ----------------------------------------------------------------------------
err="$(PFT_MPIRUN_LOOPBACK=1 PFT_BIND_SHIM="$work/nowhere.so" "$mpirun" -np 1 true 2>&1)"
rc=$?
[[ $rc -eq 2 && "$err" == *"PFT_BIND_SHIM=$work/nowhere.so"*"PFT_BIND_SHIM=none"* ]] ||
  fail "a missing shim: exit $rc, '$err' (want exit 2 naming PFT_BIND_SHIM)"

# Every sample, every case: no wildcard listener of a job process but the control's.
bad="$(cat "$work/loopback.listeners" "$work/iface.listeners" | awk -v re="$wildcard" '$5 ~ re')"
[[ -z "$bad" ]] || fail "wildcard listeners of the job: $bad"
echo PASS
