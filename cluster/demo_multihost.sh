#!/usr/bin/env bash
# demo_multihost.sh: pft across two hosts, in one command. Builds pft if needed, brings up a
# 2-host cluster of network namespaces on this machine (cluster/netns-cluster.sh: hosts node1 and
# node2, each with its own hostname, address and scratch, joined by a bridge), trains
# configs/quickstart.yaml with mpirun from node1 over both hosts (MPI over TCP on the cluster's
# subnet only), and takes the cluster down again, also when the run fails or on Ctrl-C.
#
#   cluster/demo_multihost.sh                          # as root: 2 hosts x 1 rank, 200 steps
#   cluster/demo_multihost.sh --set train.steps=50     # extra arguments go to `pft train`
#   PFT_DEMO_RANKS_PER_HOST=2 cluster/demo_multihost.sh
#
# rank 0 prints the layout (`layout: 2 ranks on 2 hosts: node1 -> rank 0, node2 -> rank 1; ...`),
# the progress, the held-out tables and the `done:` line with the parameter hash. The run
# directory is runs/demo-multihost (replaced on every run). Environment: PFT_DEMO_RANKS_PER_HOST
# (default 1), PFT_CLUSTER_NAME / PFT_CLUSTER_NET (the demo's cluster, default pftdemo /
# 10.238.0). docs/launching.md, "Multiple hosts", says what each step does.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
per_host="${PFT_DEMO_RANKS_PER_HOST:-1}"
[[ "$per_host" =~ ^[1-9][0-9]*$ ]] ||
  { echo "demo_multihost.sh: PFT_DEMO_RANKS_PER_HOST='$per_host': want a whole number >= 1" >&2; exit 2; }
export PFT_CLUSTER_NAME="${PFT_CLUSTER_NAME:-pftdemo}"
export PFT_CLUSTER_NET="${PFT_CLUSTER_NET:-10.238.0}"
cluster="$here/netns-cluster.sh"
[[ $(id -u) -eq 0 ]] ||
  { echo "demo_multihost.sh: needs root (the hosts are network, UTS and mount namespaces)" >&2; exit 2; }

# Only the pft binary (a no-op when it is up to date).
echo "demo_multihost.sh: building pft (build/cpu) if needed ..." >&2
if ! "$here/build.sh" cpu --target pft > /tmp/pft-demo-multihost-build.log 2>&1; then
  tail -n 30 /tmp/pft-demo-multihost-build.log >&2
  echo "demo_multihost.sh: the build failed (log: /tmp/pft-demo-multihost-build.log); run cluster/install-deps.sh first on a fresh machine" >&2
  exit 1
fi

trap '"$cluster" down > /dev/null 2>&1 || true' EXIT
trap 'echo "demo_multihost.sh: interrupted; taking the cluster down" >&2; exit 130' INT TERM
"$cluster" up 2 --no-slurm

cd "$root"
rm -rf runs/demo-multihost
echo "demo_multihost.sh: training configs/quickstart.yaml on node1 and node2 ($per_host rank(s) each)" >&2
# From node1, as a user on a login node would; the launch agent starts Open MPI's daemon on node2.
PFT_MPIRUN_IFACE="$PFT_CLUSTER_NET.0/24" "$cluster" exec node1 \
  launch/pft-mpirun --host "node1:$per_host,node2:$per_host" -np $((2 * per_host)) \
  "$root/build/cpu/bin/pft" train configs/quickstart.yaml \
  --set run.dir=runs/demo-multihost --set run.threads=1 "$@"
echo "demo_multihost.sh: done; the run is in runs/demo-multihost (metrics.jsonl, checkpoints/)" >&2
