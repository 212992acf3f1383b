#!/usr/bin/env bash
# rank_layout_test.sh: ranks placed over two hosts of the namespace cluster find their place:
# tests/core/rank_env_test (the argument) runs under `launch/pft-mpirun --hostfile` from node1
# with PFT_EXPECT_RANK_HOSTS naming each rank's host, and checks world/local rank and size, node
# index and count, threads and rank_hosts against it (2 hosts x 2 ranks, then an uneven 1 + 2).
# Also: PFT_MPIRUN_IFACE reaches every rank as btl_tcp_if_include and oob_tcp_if_include, and a
# malformed value stops pft-mpirun with exit 2 before anything starts.
set -euo pipefail
cluster="${PFT_CLUSTER_SCRIPT:?run under ctest (tests/netns/CMakeLists.txt)}"
test_bin="${1:?usage: rank_layout_test.sh RANK_ENV_TEST_BINARY}"
fail() { echo "FAIL: $*" >&2; exit 1; }
on() { "$cluster" exec "$@"; }
net="$(cat "$PFT_CLUSTER_DIR/net")"
mpirun="$PWD/launch/pft-mpirun"

# The marker files of tests/mpi_test_main.cpp, in a directory every host sees (not the hosts'
# own scratch): mpirun may exit 0 without running a rank, the markers say they all ran.
markers="$(mktemp -d /tmp/pft-layout-test-XXXXXX)"
trap 'rm -rf "$markers"' EXIT

# run_ranks NAME EXPECTED_HOSTS MPIRUN_ARGS...: rank_env_test over the hosts, every rank passes.
run_ranks() {
  local name="$1" hosts="$2" np
  shift 2
  np="$(tr ',' '\n' <<< "$hosts" | wc -l)"
  rm -f "$markers"/rank-*
  echo "== $name: ranks on $hosts"
  on node1 env PFT_EXPECT_RANK_HOSTS="$hosts" PFT_TEST_MARKER_DIR="$markers" \
    "$mpirun" -x PFT_EXPECT_RANK_HOSTS -x PFT_TEST_MARKER_DIR "$@" -np "$np" "$test_bin" ||
    fail "$name: rank_env_test failed over the hosts"
  local ran
  ran="$(grep -lx 0 "$markers"/rank-* 2> /dev/null | wc -l)"
  [[ "$ran" == "$np" ]] || fail "$name: $ran of $np ranks finished with every test passing"
}

run_ranks "2 hosts x 2 ranks" node1,node1,node2,node2 --hostfile "$PFT_CLUSTER_DIR/hostfile"
# Uneven: one rank on node1, two on node2; rank 1 is node2's local rank 0 and node index 1.
run_ranks "1 + 2 ranks" node1,node2,node2 --host node1:1,node2:2

# The interface option: what mpirun hands every rank.
out="$(on node1 env PFT_MPIRUN_IFACE="$net.0/24" "$mpirun" --hostfile "$PFT_CLUSTER_DIR/hostfile" \
        -np 4 sh -c 'echo "$(hostname) btl=$OMPI_MCA_btl_tcp_if_include oob=$OMPI_MCA_oob_tcp_if_include"')"
echo "$out"
[[ "$(grep -cx "node[12] btl=$net.0/24 oob=$net.0/24" <<< "$out")" == 4 ]] ||
  fail "PFT_MPIRUN_IFACE=$net.0/24 did not reach all 4 ranks as btl/oob_tcp_if_include"
set +e
err="$(PFT_MPIRUN_IFACE="eth0;rm" "$mpirun" -np 1 true 2>&1)"
rc=$?
set -e
[[ $rc == 2 && "$err" == *"PFT_MPIRUN_IFACE"*"neither an interface name"* ]] ||
  fail "a malformed PFT_MPIRUN_IFACE: exit $rc, '$err' (want exit 2 naming the variable)"
echo "PASS"
