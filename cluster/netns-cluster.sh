#!/usr/bin/env bash
# netns-cluster.sh: a cluster of N hosts on this one machine, for multi-host MPI and multi-node
# Slurm tests and demos. Each host is a network namespace with its own hostname (UTS namespace),
# its own mount namespace (a private /dev/shm, and an /etc/hosts that names every host) and its
# own scratch dir (TMPDIR), joined by veth pairs to a bridge that lives in a namespace of its own.
# Every address is inside namespaces this script creates: nothing is added to the machine's own
# network. Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN), iproute2 and util-linux.
#
#   cluster/netns-cluster.sh up 2            # node1, node2 (idempotent); Slurm too unless --no-slurm
#   cluster/netns-cluster.sh exec node1 launch/pft-mpirun --hostfile /tmp/pft-cluster/hostfile \
#       -np 4 build/cpu/bin/pft train configs/quickstart.yaml
#   cluster/netns-cluster.sh exec node1 sbatch -N 2 --ntasks-per-node 2 launch/slurm/train.sbatch CFG
#   cluster/netns-cluster.sh status          # exit 0 when every host (and Slurm) is up
#   cluster/netns-cluster.sh crash node2     # kill -9 every process of node2 (a node crash)
#   cluster/netns-cluster.sh link node2 down # cut node2's link (and `up` to restore it)
#   cluster/netns-cluster.sh down            # stop everything: no namespace, link or process left
#
# What a host has (docs/launching.md, "A cluster on one machine"):
#   - namespaces pftc-nodeK (network: lo + eth0 with 10.231.0.K/24; `ip netns exec` works too;
#     the bridge br0 is in pftc-switch),
#     and a holder process (`sleep infinity`) that keeps the host's UTS and mount namespaces;
#   - hostname nodeK: without its own hostname Open MPI's shared-memory segments of two "hosts"
#     collide (they are named after the host) and the ranks crash;
#   - a scratch dir of its own, $PFT_CLUSTER_DIR/nodeK/tmp, seen at the same path on every host
#     ($PFT_CLUSTER_DIR/scratch, like /tmp on a real node): TMPDIR (Open MPI's session directory)
#     and Slurm's PMIx directories; and a tmpfs /dev/shm;
#   - Open MPI's launch agent: `netns-cluster.sh agent HOST CMD` (set as plm_rsh_agent by `exec`)
#     enters HOST's namespaces and runs CMD, as ssh would: no sshd needed;
#   - with Slurm: munged (one, its socket in the state dir), slurmctld on node1 and a slurmd on
#     every host; NodeName=node[1-N] in a generated slurm.conf; clients run through `exec`.
# The machine's filesystem is shared by all hosts, like a cluster's shared file system.
#
# Settings (environment): PFT_CLUSTER_NAME (default pftc: the namespaces' prefix; two clusters
# with different names and nets may run side by side); PFT_CLUSTER_DIR (state dir, default
# /tmp/pft-cluster, or /tmp/pft-cluster-NAME);
# PFT_CLUSTER_NET (first three octets, default 10.231.0); PFT_CLUSTER_SLOTS (MPI slots per host
# in the hostfile, default 2); PFT_CLUSTER_CPUS and PFT_CLUSTER_GPUS (what each Slurm node
# declares, default 64 and 8: the shape the batch template asks for; the GPUs are a count for the
# scheduler only, there are no devices); PFT_CLUSTER_WAIT_S (start-up wait, default 60).
set -euo pipefail

self="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
name="${PFT_CLUSTER_NAME:-pftc}"
[[ "$name" =~ ^[a-z][a-z0-9]{0,7}$ ]] || { echo "PFT_CLUSTER_NAME: 1-8 lowercase letters and digits" >&2; exit 2; }
if [[ "$name" == pftc ]]; then dir="${PFT_CLUSTER_DIR:-/tmp/pft-cluster}"; else dir="${PFT_CLUSTER_DIR:-/tmp/pft-cluster-$name}"; fi
net="${PFT_CLUSTER_NET:-10.231.0}"
# A running cluster keeps the net it was made with.
[[ -z "${PFT_CLUSTER_NET:-}" && -r "$dir/net" ]] && net="$(cat "$dir/net")"
slots="${PFT_CLUSTER_SLOTS:-2}"
node_cpus="${PFT_CLUSTER_CPUS:-64}"
node_gpus="${PFT_CLUSTER_GPUS:-8}"
wait_s="${PFT_CLUSTER_WAIT_S:-60}"
prefix="$name"
switch_ns="$prefix-switch"
conf="$dir/slurm/etc/slurm.conf"
munge_socket="$dir/slurm/munge/munge.socket"

log() { printf '[netns-cluster] %s\n' "$*" >&2; }
die() { printf '[netns-cluster] error: %s\n' "$*" >&2; exit 1; }

ns_of() { echo "$prefix-$1"; }
valid_node() { [[ "$1" =~ ^node[0-9]+$ ]] || die "no such host '$1' (hosts are node1..nodeN)"; }
nodes() { [[ -r "$dir/nodes" ]] && cat "$dir/nodes" || true; }
ns_exists() { [[ -e "/run/netns/$1" ]]; }

alive() {
  local state
  state="$(awk '{print $3}' "/proc/$1/stat" 2> /dev/null)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

# holder_pid NODE: the pid of the process that holds NODE's UTS and mount namespaces.
holder_pid() {
  local pid
  pid="$(tr -dc "0-9" 2> /dev/null < "$dir/$1/holder.pid")" || return 1
  [[ -n "$pid" ]] && alive "$pid" || return 1
  echo "$pid"
}

# A clear message when this machine cannot make namespaces, before anything is changed.
check_capabilities() {
  local missing=()
  command -v ip > /dev/null || missing+=("ip (iproute2)")
  command -v unshare > /dev/null || missing+=("unshare (util-linux)")
  command -v nsenter > /dev/null || missing+=("nsenter (util-linux)")
  ((${#missing[@]} == 0)) || die "missing tools: ${missing[*]}; run cluster/install-deps.sh"
  [[ $(id -u) -eq 0 ]] || die "needs root (network, UTS and mount namespaces need CAP_SYS_ADMIN and CAP_NET_ADMIN)"
  local probe="$prefix-probe$$" err
  if ! err="$(ip netns add "$probe" 2>&1)"; then
    die "cannot create a network namespace ($err): run as root in a container or VM that allows it (docker: --privileged or --cap-add SYS_ADMIN,NET_ADMIN)"
  fi
  if ! err="$(ip -n "$probe" link add "$prefix-pv0" type veth peer name "$prefix-pv1" 2>&1 &&
              ip -n "$probe" link add "$prefix-pbr" type bridge 2>&1)"; then
    ip netns del "$probe" 2> /dev/null || true
    die "cannot create veth pairs or bridges ($err): the kernel needs the veth and bridge modules"
  fi
  if ! err="$(ip netns exec "$probe" unshare --uts --mount --propagation private true 2>&1)"; then
    ip netns del "$probe" 2> /dev/null || true
    die "cannot create UTS or mount namespaces ($err): needs CAP_SYS_ADMIN"
  fi
  ip netns del "$probe"
}

write_hosts() {
  local n="$1" k
  {
    echo "# Written by cluster/netns-cluster.sh: the hosts of the test cluster."
    echo "127.0.0.1 localhost"
    echo "::1 localhost ip6-localhost ip6-loopback"
    for ((k = 1; k <= n; ++k)); do echo "$net.$k node$k"; done
  } > "$dir/etc/hosts"
  : > "$dir/hostfile"
  for ((k = 1; k <= n; ++k)); do echo "node$k slots=$slots" >> "$dir/hostfile"; done
}

# make_host K: namespace, link to the switch, address, hostname, /dev/shm, /etc/hosts.
make_host() {
  local k="$1" node="node$1" ns
  ns="$(ns_of "$node")"
  mkdir -p "$dir/$node/tmp" "$dir/scratch"
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  # Both ends made in place: no link ever exists in the machine's own namespace.
  ip link add name eth0 netns "$ns" type veth peer name "v$k" netns "$switch_ns"
  ip -n "$switch_ns" link set "v$k" master br0 up
  ip -n "$ns" addr add "$net.$k/24" dev eth0
  ip -n "$ns" link set eth0 up
  rm -f "$dir/$node/holder.pid"
  # The holder: new UTS and mount namespaces inside the network namespace, set up, then asleep.
  # (nsenter, not `ip netns exec`, which would remount /sys and hide /sys/fs/cgroup from slurmd.)
  setsid nsenter --net="/run/netns/$ns" unshare --uts --mount --propagation private --fork -- /bin/sh -c '
      set -e
      hostname "$1"
      mount -t tmpfs -o mode=1777,size=4g tmpfs /dev/shm
      mount --bind "$2" /etc/hosts
      mount --bind "$4" "$5"
      echo $$ > "$3.tmp" && mv "$3.tmp" "$3"
      exec sleep infinity' holder "$node" "$dir/etc/hosts" "$dir/$node/holder.pid" "$dir/$node/tmp" "$dir/scratch" \
    < /dev/null > "$dir/log/$node.holder.log" 2>&1 &
  disown
  local i
  for ((i = 0; i < 100; ++i)); do
    holder_pid "$node" > /dev/null && return 0
    sleep 0.05
  done
  cat "$dir/log/$node.holder.log" >&2 || true
  die "$node: the namespace holder did not start"
}

# in_node NODE CMD...: run CMD in NODE's namespaces, in the current directory, with the host's
# environment (scratch dir, launch agent, Slurm client config).
in_node() {
  local node="$1" pid
  shift
  valid_node "$node"
  pid="$(holder_pid "$node")" || die "$node is not up (cluster/netns-cluster.sh status)"
  local env=(TMPDIR="$dir/scratch" PFT_CLUSTER_DIR="$dir" PFT_CLUSTER_NAME="$name" PFT_CLUSTER_NODE="$node"
             OMPI_MCA_plm_rsh_agent="$self agent")
  [[ -f "$conf" ]] && env+=(SLURM_CONF="$conf")
  exec nsenter -t "$pid" --net --uts --mount --wd="$PWD" -- env "${env[@]}" "$@"
}

# reachable NODE: a TCP connection from node1 to NODE's port 9 is refused (an answer) rather
# than timing out (no ping needed).
reachable() {
  local err
  err="$( (in_node node1 timeout 3 bash -c "exec 3<>/dev/tcp/$1/9") 2>&1)" && return 0
  [[ "$err" == *refused* ]]
}

# ---- Slurm --------------------------------------------------------------------------------
write_slurm_config() {
  local n="$1" k
  mkdir -p "$dir/slurm/etc" "$dir/slurm/run" "$dir/slurm/log" "$dir/slurm/spool/slurmctld"
  for ((k = 1; k <= n; ++k)); do mkdir -p "$dir/slurm/spool/slurmd-node$k"; done
  local gres=""
  if ((node_gpus > 0)); then
    gres="Gres=gpu:$node_gpus"
    # Slurm counts a GPU only with a device file: character devices that are /dev/null (1,3).
    mkdir -p "$dir/slurm/dev"
    for ((k = 0; k < node_gpus; ++k)); do
      [[ -c "$dir/slurm/dev/gpu$k" ]] || mknod "$dir/slurm/dev/gpu$k" c 1 3 ||
        die "cannot create device files for Slurm's GPU count (mknod); set PFT_CLUSTER_GPUS=0"
    done
    printf 'AutoDetect=off\nName=gpu File=%s/slurm/dev/gpu[0-%d]\n' "$dir" $((node_gpus - 1)) \
      > "$dir/slurm/etc/gres.conf"
  fi
  cat > "$conf.tmp" <<EOF
# Written by cluster/netns-cluster.sh: the test cluster's Slurm, node[1-$n] on $net.0/24.
ClusterName=pftnetns
SlurmctldHost=node1($net.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$munge_socket,cred_expire=5
StateSaveLocation=$dir/slurm/spool/slurmctld
SlurmdSpoolDir=$dir/slurm/spool/slurmd-%n
SlurmctldPidFile=$dir/slurm/run/slurmctld.pid
SlurmdPidFile=$dir/slurm/run/slurmd-%n.pid
SlurmctldLogFile=$dir/slurm/log/slurmctld.log
SlurmdLogFile=$dir/slurm/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
Include ${self%/*}/slurm-common.conf
# Each node declares the shape of a GPU node (the batch template's defaults) whatever the
# machine has: the scheduler's view only.
SlurmdParameters=config_overrides
GresTypes=gpu
SlurmdTimeout=30
EOF
  for ((k = 1; k <= n; ++k)); do
    echo "NodeName=node$k NodeAddr=$net.$k CPUs=$node_cpus RealMemory=4096 $gres State=UNKNOWN" >> "$conf.tmp"
  done
  echo "PartitionName=debug Nodes=node[1-$n] Default=YES MaxTime=INFINITE State=UP" >> "$conf.tmp"
  mv "$conf.tmp" "$conf"
  # PMIx's per-step client directories in the host's own scratch, not the shared /tmp.
  echo "PMIxCliTmpDirBase=$dir/scratch" > "$dir/slurm/etc/mpi.conf"
}

munged_pid() {
  local pid
  pid="$(tr -dc "0-9" 2> /dev/null < "$dir/slurm/run/munged.pid")" || return 1
  [[ -n "$pid" && "$(cat "/proc/$pid/comm" 2> /dev/null)" == munged ]] && alive "$pid" || return 1
  echo "$pid"
}

start_munged() {
  munged_pid > /dev/null && return 0
  local key="$dir/slurm/munge/munge.key" i
  mkdir -p "$dir/slurm/munge"
  chmod 0755 "$dir/slurm/munge"
  [[ -s "$key" ]] || dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
  chmod 0600 "$key"
  rm -f "$munge_socket" "$munge_socket.lock"
  # A unix socket in the file system: reachable from every host's network namespace.
  munged --force --key-file="$key" --socket="$munge_socket" --pid-file="$dir/slurm/run/munged.pid" \
    --log-file="$dir/slurm/log/munged.log" --seed-file="$dir/slurm/munge/munged.seed" \
    || die "munged did not start (see $dir/slurm/log/munged.log)"
  for ((i = 0; i < 50; ++i)); do
    munge -S "$munge_socket" -n 2> /dev/null | unmunge -S "$munge_socket" > /dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "munged runs but no credential round trip works on $munge_socket"
}

show_slurm_logs() {
  local f
  for f in "$dir"/slurm/log/*.log; do
    [[ -f "$f" ]] || continue
    printf '\n---- last lines of %s ----\n' "$f" >&2
    tail -n 15 "$f" >&2
  done
}

start_slurm() {
  local n="$1" k
  command -v slurmctld > /dev/null || die "slurmctld not found; run cluster/install-deps.sh"
  write_slurm_config "$n"
  start_munged
  (in_node node1 slurmctld -i -f "$conf") || { show_slurm_logs; die "slurmctld did not start"; }
  for ((k = 1; k <= n; ++k)); do
    (in_node "node$k" slurmd -f "$conf" -N "node$k") || { show_slurm_logs; die "slurmd on node$k did not start"; }
  done
  local deadline=$((SECONDS + wait_s)) idle states
  while ((SECONDS < deadline)); do
    states="$( (in_node node1 sinfo -h -N -o '%N %T') 2> /dev/null || true)"
    idle="$(grep -cE ' (idle|mixed|allocated)$' <<< "$states" || true)"
    ((idle == n)) && return 0
    if grep -qE ' (drain|inval)' <<< "$states"; then
      show_slurm_logs
      die "a node did not come up: $(tr '\n' ' ' <<< "$states")"
    fi
    sleep 0.3
  done
  show_slurm_logs
  die "Slurm nodes not idle after ${wait_s}s: $(tr '\n' ' ' <<< "${states:-no answer}")"
}

# ---- commands -----------------------------------------------------------------------------
cmd_status() {
  local n ok=0 node pid ns procs
  n="$(nodes)"
  if [[ -z "$n" ]]; then
    echo "no cluster (state dir $dir)"
    return 1
  fi
  echo "cluster of $n hosts, state dir $dir, hostfile $dir/hostfile"
  for ((k = 1; k <= n; ++k)); do
    node="node$k"
    ns="$(ns_of "$node")"
    if ns_exists "$ns" && pid="$(holder_pid "$node")"; then
      procs="$(ip netns pids "$ns" 2> /dev/null | wc -l)"
      echo "$node: up, $net.$k, hostname $(nsenter -t "$pid" --uts hostname), $((procs - 1)) processes"
    else
      echo "$node: DOWN"
      ok=1
    fi
  done
  if [[ -f "$conf" ]]; then
    echo "SLURM_CONF=$conf"
    (in_node node1 sinfo -N -o '%N %T %c %G') 2> /dev/null || { echo "slurmctld: no answer"; ok=1; }
  fi
  return $ok
}

cmd_down() {
  local n k ns pids i left
  n="$(nodes)"
  if [[ -f "$conf" ]] && [[ -n "$n" ]]; then
    # Cancel jobs first, so that no job step outlives its slurmd.
    (in_node node1 scancel --quiet --full --user=root) > /dev/null 2>&1 || true
  fi
  # Every process of every host, the Slurm daemons and holders included.
  for ((i = 0; i < 3; ++i)); do
    left=0
    for ns in $(ip netns list 2> /dev/null | awk '{print $1}' | grep "^$prefix-" || true); do
      pids="$(ip netns pids "$ns" 2> /dev/null || true)"
      if [[ -n "$pids" ]]; then
        kill -KILL $pids 2> /dev/null || true
        left=1
      fi
    done
    ((left)) || break
    sleep 0.2
  done
  if pid="$(munged_pid)"; then kill -TERM "$pid" 2> /dev/null || true; fi
  for ns in $(ip netns list 2> /dev/null | awk '{print $1}' | grep "^$prefix-" || true); do
    ip netns del "$ns" 2> /dev/null || log "could not delete namespace $ns"
  done
  rm -f "$dir/nodes" "$dir/net" "$dir"/node*/holder.pid "$dir"/slurm/run/*.pid "$conf"
  rm -rf "$dir"/node*/tmp "$dir"/slurm/spool "$dir"/slurm/dev
  log "down"
}

cmd_up() {
  local n="${1:-}" slurm=1
  [[ "$n" =~ ^[1-9][0-9]*$ ]] && ((n <= 200)) || die "usage: $0 up N [--no-slurm] (N hosts, 1..200)"
  [[ "${2:-}" == --no-slurm ]] && slurm=0
  if [[ "$(nodes)" == "$n" ]] && cmd_status > /dev/null 2>&1 &&
     { ((slurm == 0)) || [[ -f "$conf" ]]; }; then
    log "already up: $n hosts"
    return 0
  fi
  [[ -n "$(nodes)" ]] && cmd_down
  check_capabilities
  trap 'log "start failed: taking the cluster down again"; cmd_down' EXIT
  mkdir -p "$dir/etc" "$dir/log"
  echo "$n" > "$dir/nodes"
  echo "$net" > "$dir/net"
  write_hosts "$n"
  ip netns add "$switch_ns"
  ip -n "$switch_ns" link add br0 type bridge
  ip -n "$switch_ns" link set br0 up
  local k
  for ((k = 1; k <= n; ++k)); do make_host "$k"; done
  # Every host reaches every other before anything runs on them.
  for ((k = 1; k <= n; ++k)); do
    reachable "node$k" || die "node1 cannot reach node$k"
  done
  if ((slurm)); then start_slurm "$n"; fi
  trap - EXIT
  log "up: $n hosts node1..node$n ($net.1-$n), hostfile $dir/hostfile$( ((slurm)) && echo ", Slurm SLURM_CONF=$conf")"
}

# The launch agent Open MPI calls like ssh: agent [ssh options] HOST CMD...
cmd_agent() {
  while [[ "${1:-}" == -* ]]; do shift; done
  local node="${1:-}"
  shift || true
  node="${node%%.*}"
  valid_node "$node"
  local pid
  pid="$(holder_pid "$node")" || die "$node is not up"
  exec nsenter -t "$pid" --net --uts --mount --wd="$PWD" -- \
    env TMPDIR="$dir/scratch" PFT_CLUSTER_DIR="$dir" PFT_CLUSTER_NAME="$name" PFT_CLUSTER_NODE="$node" \
    /bin/sh -c "$*"
}

cmd_crash() {
  local node="$1" ns pids
  valid_node "$node"
  ns="$(ns_of "$node")"
  ns_exists "$ns" || die "$node is not up"
  local holder
  holder="$(holder_pid "$node" || true)"
  pids="$(ip netns pids "$ns" | grep -vx "${holder:-none}" || true)"
  [[ -n "$pids" ]] && kill -KILL $pids 2> /dev/null || true
  log "$node: killed $(wc -w <<< "$pids") processes"
}

cmd_link() {
  local node="$1" state="$2"
  valid_node "$node"
  [[ "$state" == up || "$state" == down ]] || die "usage: $0 link NODE up|down"
  ip -n "$(ns_of "$node")" link set eth0 "$state"
  log "$node: link $state"
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  exec) shift; [[ $# -ge 2 ]] || die "usage: $0 exec NODE CMD..."; in_node "$@" ;;
  agent) shift; cmd_agent "$@" ;;
  crash) [[ $# -eq 2 ]] || die "usage: $0 crash NODE"; cmd_crash "$2" ;;
  link) [[ $# -eq 3 ]] || die "usage: $0 link NODE up|down"; cmd_link "$2" "$3" ;;
  hostfile) echo "$dir/hostfile" ;;
  *)
    sed -n '2,/^set -euo/p' "$self" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
