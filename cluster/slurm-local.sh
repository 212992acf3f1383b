#!/usr/bin/env bash
# slurm-local.sh: a real one-node Slurm cluster on this machine (munged + slurmctld + slurmd on
# 127.0.0.1), for the `slurm` tests and for trying the Slurm launch path without a cluster.
#
#   cluster/slurm-local.sh start            # idempotent; returns once the node is idle
#   eval "$(cluster/slurm-local.sh env)"    # export SLURM_CONF=... for sinfo/srun/sbatch
#   srun --mpi=pmix -n 2 build/cpu/bin/pft config show configs/quickstart.yaml
#   cluster/slurm-local.sh status           # exit 0 when all three daemons run
#   cluster/slurm-local.sh stop             # cancels jobs, stops the daemons it started
#
# Everything lives under the state dir (PFT_SLURM_DIR, default /tmp/pft-slurm): slurm.conf,
# the munge key and socket, spool and state directories, pid files and logs (log/). Nothing
# under /etc is written and no system service is needed, so it works in a fresh container as
# root. The munge key is a copy of /etc/munge/munge.key when that exists, else a new one.
#
# Settings (environment): PFT_SLURM_DIR; PFT_SLURM_PORT (slurmctld's port, default 16817;
# slurmd uses the next one: away from the standard 6817/6818 so a system Slurm can coexist);
# PFT_SLURM_WAIT_S (how long start waits for the node, default 60).
#
# Cluster: one node named `hostname -s` (NodeAddr=127.0.0.1) with the CPUs and memory slurmd
# detects; one partition `debug` (default, no time limit, OverSubscribe=FORCE:4 so that the
# tests' jobs may share the CPUs of a small machine); proctrack/linuxproc and task/none (no
# cgroups needed, so no cgroup.conf: they work in containers); no accounting; MpiDefault=pmix
# (Debian's Open MPI speaks PMIx only); requeued jobs wait 6 s instead of Slurm's default 121 s
# (cred_expire=5, the smallest Slurm accepts). Documented in docs/launching.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${PFT_SLURM_DIR:-/tmp/pft-slurm}"
ctld_port="${PFT_SLURM_PORT:-16817}"
slurmd_port=$((ctld_port + 1))
wait_s="${PFT_SLURM_WAIT_S:-60}"
node="$(hostname -s)"
conf="$dir/etc/slurm.conf"
munge_socket="$dir/munge/munge.socket"
user="$(id -un)"

log() { printf '[slurm-local] %s\n' "$*" >&2; }
starting=0
# A failed start takes down whatever it started, so nothing is left half running.
die() {
  printf '[slurm-local] error: %s\n' "$*" >&2
  if ((starting)); then
    stop_daemons slurmd slurmctld munged || true
    log "stopped the daemons again"
  fi
  exit 1
}

# pid_of NAME: the pid from NAME's pid file when that process is alive and really is NAME
# (a stale file, or a pid reused by another program, counts as not running).
pid_of() {
  local name="$1" file="$dir/run/$1.pid" pid comm
  [[ -r "$file" ]] || return 1
  pid="$(tr -dc '0-9' < "$file")"
  [[ -n "$pid" ]] || return 1
  comm="$(cat "/proc/$pid/comm" 2>/dev/null)" || return 1
  [[ "$comm" == "$name" ]] && alive "$pid" || return 1
  echo "$pid"
}

running() { pid_of "$1" > /dev/null; }

# alive PID: the process exists and is not a zombie (an exited daemon not yet reaped).
alive() {
  local state
  state="$(awk '{print $3}' "/proc/$1/stat" 2> /dev/null)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

show_logs() {
  local f
  for f in "$dir"/log/munged.log "$dir"/log/slurmctld.log "$dir"/log/slurmd.log; do
    [[ -f "$f" ]] || continue
    printf '\n---- last lines of %s ----\n' "$f" >&2
    tail -n 20 "$f" >&2
  done
}

# The node's hardware as slurmd sees it, so slurmd's registration matches the config (a
# mismatch drains the node). Memory gets 5% headroom: less configured than present is fine.
node_hardware() {
  local line cpus mem
  line="$(slurmd -C 2>/dev/null | head -n 1 || true)"
  if [[ "$line" == NodeName=* ]]; then
    mem="$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<< "$line")"
    line="$(sed -e 's/^NodeName=[^ ]* //' -e 's/ *RealMemory=[0-9]*//' <<< "$line")"
  else
    cpus="$(getconf _NPROCESSORS_ONLN)"
    mem="$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)"
    line="CPUs=$cpus"
  fi
  echo "$line RealMemory=$((mem * 95 / 100))"
}

write_config() {
  mkdir -p "$dir/etc" "$dir/run" "$dir/log" "$dir/spool/slurmctld" "$dir/spool/slurmd"
  local hw
  hw="$(node_hardware)"
  cat > "$conf.tmp" <<EOF
# Written by cluster/slurm-local.sh: a one-node test cluster on 127.0.0.1. Regenerated on start.
ClusterName=pftlocal
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
# Our own munged (its socket under the state dir); cred_expire also delays requeued jobs.
AuthInfo=socket=$munge_socket,cred_expire=5
StateSaveLocation=$dir/spool/slurmctld
SlurmdSpoolDir=$dir/spool/slurmd
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
Include $here/slurm-common.conf
SlurmdTimeout=300
NodeName=$node NodeAddr=127.0.0.1 NodeHostname=$node $hw State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
  mv "$conf.tmp" "$conf"
}

start_munged() {
  running munged && return 0
  local key="$dir/munge/munge.key"
  mkdir -p "$dir/munge"
  chmod 0755 "$dir/munge"  # munged wants its socket's directory searchable by everyone
  if [[ ! -s "$key" ]]; then
    if [[ -r /etc/munge/munge.key ]]; then
      cp /etc/munge/munge.key "$key"
    elif command -v mungekey > /dev/null; then
      mungekey --create --keyfile="$key"
    else
      dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
    fi
  fi
  chmod 0600 "$key"
  rm -f "$munge_socket" "$munge_socket.lock"
  # --force: munged refuses to run as root, and dislikes a socket under world-writable /tmp.
  munged --force --key-file="$key" --socket="$munge_socket" --pid-file="$dir/run/munged.pid" \
    --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed" \
    || { show_logs; die "munged did not start"; }
  local i
  for ((i = 0; i < 50; ++i)); do
    munge -S "$munge_socket" -n 2> /dev/null | unmunge -S "$munge_socket" > /dev/null 2>&1 && return 0
    sleep 0.1
  done
  show_logs
  die "munged runs but no credential round trip works on $munge_socket"
}

start_slurm_daemons() {
  if ! running slurmctld; then
    # -i: start even when saved state (from an earlier run) cannot be read.
    slurmctld -i -f "$conf" || { show_logs; die "slurmctld did not start"; }
  fi
  if ! running slurmd; then
    slurmd -f "$conf" -N "$node" || { show_logs; die "slurmd did not start"; }
  fi
}

node_state() { sinfo -h -n "$node" -o '%T' 2> /dev/null | head -n 1 || true; }

wait_for_node() {
  local deadline=$((SECONDS + wait_s)) state=""
  while ((SECONDS < deadline)); do
    state="$(node_state)"
    case "$state" in
      idle | mixed | allocated | completing) return 0 ;;
      drain* | inval*)
        show_logs
        die "node $node is $state: $(scontrol show node "$node" | sed -n 's/^ *Reason=//p')"
        ;;
    esac
    running slurmctld || { show_logs; die "slurmctld exited during start-up"; }
    running slurmd || { show_logs; die "slurmd exited during start-up"; }
    sleep 0.2
  done
  show_logs
  die "node $node not idle after ${wait_s}s (state: '${state:-no answer from slurmctld}')"
}

cmd_start() {
  command -v slurmctld > /dev/null || die "slurmctld not found; run cluster/install-deps.sh"
  export SLURM_CONF="$conf"
  starting=1
  if running munged && running slurmctld && running slurmd; then
    wait_for_node
    log "already running (SLURM_CONF=$conf)"
    return 0
  fi
  # The config is only rewritten while slurmctld is down, so a running one never sees it change.
  running slurmctld || write_config
  start_munged
  start_slurm_daemons
  wait_for_node
  log "up: node $node, partition debug; export SLURM_CONF=$conf"
}

# stop_daemons NAME...: SIGTERM to all at once (each takes 1-2 s to shut down), SIGKILL to any
# still alive after 10 s; fails if one survives even that.
stop_daemons() {
  local name pid i still
  local -A pids=()
  for name in "$@"; do
    if pid="$(pid_of "$name")"; then
      pids[$name]=$pid
      kill -TERM "$pid" 2> /dev/null || true
    fi
  done
  for ((i = 0; i < 100; ++i)); do
    still=0
    for pid in "${pids[@]}"; do if alive "$pid"; then still=1; fi; done
    ((still)) || break
    sleep 0.1
  done
  local failed=0
  for name in "${!pids[@]}"; do
    pid=${pids[$name]}
    if alive "$pid"; then
      kill -KILL "$pid" 2> /dev/null || true
      sleep 0.2
      if alive "$pid"; then
        log "$name (pid $pid) is still alive"
        failed=1
      fi
    fi
  done
  for name in "$@"; do pid_of "$name" > /dev/null || rm -f "$dir/run/$name.pid"; done
  return $failed
}

cmd_stop() {
  export SLURM_CONF="$conf"
  local i
  # Cancel every job first, so no slurmstepd or job process outlives the daemons.
  if running slurmctld && running slurmd; then
    scancel --quiet --full "--user=$user" 2> /dev/null || true
    for ((i = 0; i < 100; ++i)); do
      [[ -z "$(squeue -h -t running,completing -o '%i' 2> /dev/null)" ]] && break
      sleep 0.1
    done
  fi
  stop_daemons slurmd slurmctld munged || die "some daemons did not stop (see above)"
  log "stopped"
}

cmd_status() {
  export SLURM_CONF="$conf"
  local name pid ok=0
  for name in munged slurmctld slurmd; do
    if pid="$(pid_of "$name")"; then
      echo "$name: running (pid $pid)"
    else
      echo "$name: not running"
      ok=1
    fi
  done
  echo "SLURM_CONF=$conf"
  if running slurmctld; then sinfo 2> /dev/null || true; fi
  return $ok
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) echo "export SLURM_CONF=$conf" ;;
  *)
    echo "usage: $0 start|stop|status|env   (state dir: \$PFT_SLURM_DIR, default /tmp/pft-slurm)" >&2
    exit 2
    ;;
esac
