#!/usr/bin/env bash
# multihost_bench.sh: communication across hosts, measured on a 2-host cluster of network
# namespaces (cluster/netns-cluster.sh) that it brings up and takes down itself (not a test).
#
#   tests/bench/multihost_bench.sh            # as root; needs build/cpu/bin/{pft,allreduce_bench}
#
# 1. allreduce_bench --bandwidth-only across 2 hosts x 1 rank (MPI over TCP between the hosts,
#    PFT_MPIRUN_IFACE = the cluster subnet): pft's gradient all-reduce (async on the progress
#    thread, several in flight) against raw MPI_Allreduce of the same bytes, busbw at the largest
#    size:  RESULT name=allreduce_2hosts pft=<GB/s> baseline=<GB/s> unit=GB/s ratio=...
# 2. Training throughput of the same config (the quickstart tasks and model, BENCH_STEPS steps,
#    1 thread per rank, no evaluation or checkpoint) on 2 hosts x 1 rank against 1 host x 2 ranks
#    (shared memory between the ranks): tok/s of the steps after the first 5 (rank 0's
#    metrics.jsonl), the two alternating for BENCH_ROUNDS rounds, the best of each:
#    RESULT name=train_2hosts pft=<tok/s, 2 hosts> baseline=<tok/s, 1 host> unit=tok/s ratio=...
# On one machine the two "hosts" share its cores and its memory bandwidth: what differs is the
# transport (TCP through veth and a bridge against shared memory), not the compute.
#
# Environment: PFT_BUILD_DIR (default build/cpu), BENCH_ROUNDS (default 2), BENCH_STEPS (default
# 40), BENCH_MAX_MIB (all-reduce sizes up to, default 64), PFT_CLUSTER_NAME / PFT_CLUSTER_NET (the
# bench's own cluster, default pftbench / 10.239.0: never one that is already up).
# Results: docs/performance.md, "Across hosts (issue 17)".
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${PFT_BUILD_DIR:-$root/build/cpu}"
rounds="${BENCH_ROUNDS:-2}"
steps="${BENCH_STEPS:-40}"
max_mib="${BENCH_MAX_MIB:-64}"
export PFT_CLUSTER_NAME="${PFT_CLUSTER_NAME:-pftbench}"
export PFT_CLUSTER_NET="${PFT_CLUSTER_NET:-10.239.0}"
cluster="$root/cluster/netns-cluster.sh"
for b in pft allreduce_bench; do
  [[ -x "$build/bin/$b" ]] ||
    { echo "multihost_bench.sh: $build/bin/$b not found; build it (cluster/build.sh cpu --target pft allreduce_bench) or set PFT_BUILD_DIR" >&2; exit 2; }
done
state="$("$cluster" hostfile)"
state="$(dirname "$state")"
if [[ -e "$state/nodes" ]]; then
  echo "multihost_bench.sh: a cluster named $PFT_CLUSTER_NAME is already up ($state); pick another PFT_CLUSTER_NAME and PFT_CLUSTER_NET" >&2
  exit 2
fi

work="$(mktemp -d /tmp/pft-multihost-bench-XXXXXX)"
finish() {
  "$cluster" down > /dev/null 2>&1 || true
  rm -rf "$work"
}
trap finish EXIT
trap 'exit 130' INT TERM
"$cluster" up 2 --no-slurm
on() { "$cluster" exec "$@"; }
mpirun=("$root/launch/pft-mpirun")
export PFT_MPIRUN_IFACE="$PFT_CLUSTER_NET.0/24"

# ---- 1. all-reduce bandwidth across the hosts ------------------------------------------------
echo "== all-reduce, 2 hosts x 1 rank, TCP on $PFT_MPIRUN_IFACE"
on node1 "${mpirun[@]}" --host node1:1,node2:1 -np 2 "$build/bin/allreduce_bench" "$max_mib" \
  --bandwidth-only --name allreduce_2hosts | tee "$work/allreduce.txt"
grep -q '^RESULT name=allreduce_2hosts ' "$work/allreduce.txt" ||
  { echo "multihost_bench.sh: allreduce_bench printed no RESULT line" >&2; exit 1; }

# ---- 2. training throughput: 2 hosts x 1 rank against 1 host x 2 ranks ----------------------
rate() {  # tok/s of the steps after the 5th in a metrics.jsonl
  python3 - "$1" <<'EOF'
import json, sys
train = [r for r in map(json.loads, open(sys.argv[1])) if r["kind"] == "train" and r["step"] > 5]
print(f'{sum(r["tokens"] for r in train) / sum(r["step_time_s"] for r in train):.1f}')
EOF
}
train() {  # train NAME MPIRUN_ARGS...: one run, its tok/s on stdout
  local name="$1"
  shift
  on node1 "${mpirun[@]}" "$@" -np 2 "$build/bin/pft" train "$root/configs/quickstart.yaml" \
    --set "run.dir=$work/$name" --set "data.cache_dir=$work/cache" --set "train.steps=$steps" \
    --set train.warmup_steps=2 --set run.threads=1 --set run.log_every=10 \
    --set eval.every_steps=0 --set eval.max_batches=1 --set checkpoint.every_steps=0 > "$work/$name.log" 2>&1 ||
    { tail -n 30 "$work/$name.log" >&2; echo "multihost_bench.sh: run $name failed" >&2; exit 1; }
  grep -m1 -o 'layout: .*' "$work/$name.log" >&2
  rate "$work/$name/metrics.jsonl"
}
best_hosts=0
best_host=0
for ((r = 1; r <= rounds; ++r)); do
  rm -rf "$work"/hosts2-* "$work"/host1-*
  a="$(train "hosts2-$r" --host node1:1,node2:1)"
  b="$(train "host1-$r" --host node1:2)"
  echo "round $r: 2 hosts x 1 rank $a tok/s, 1 host x 2 ranks $b tok/s"
  best_hosts="$(python3 -c "print(max($best_hosts, $a))")"
  best_host="$(python3 -c "print(max($best_host, $b))")"
done
grep '^RESULT' "$work/allreduce.txt"
python3 -c "print(f'RESULT name=train_2hosts pft=$best_hosts baseline=$best_host unit=tok/s ratio={$best_hosts / $best_host:.3f}')"
