#!/usr/bin/env bash
# hosts_test.sh: the namespace cluster (cluster/netns-cluster.sh, brought up by the `cluster.up`
# fixture) behaves like separate hosts: each has its own hostname, address, /dev/shm and scratch
# dir, reaches the others by name, runs Slurm, and an MPI job started on node1 puts two ranks on
# each host. Nothing of it is visible in the machine's own network namespace.
set -euo pipefail
cluster="${PFT_CLUSTER_SCRIPT:?run under ctest (tests/netns/CMakeLists.txt)}"
fail() { echo "FAIL: $*" >&2; exit 1; }
on() { "$cluster" exec "$@"; }

"$cluster" status || fail "status says the cluster is not up"

h1="$(on node1 hostname)"; h2="$(on node2 hostname)"
[[ "$h1" == node1 && "$h2" == node2 ]] || fail "hostnames are '$h1' and '$h2', want node1 and node2"

# Private /dev/shm and scratch: a file made on node1 is not on node2.
on node1 sh -c 'echo x > /dev/shm/pft-hosts-test; echo x > "$TMPDIR/pft-hosts-test"'
on node2 sh -c '! test -e /dev/shm/pft-hosts-test && ! test -e "$TMPDIR/pft-hosts-test"' ||
  fail "node2 sees node1's /dev/shm or scratch"
on node1 sh -c 'rm -f /dev/shm/pft-hosts-test "$TMPDIR/pft-hosts-test"'

# Addresses only inside the namespaces.
net="$(cat "$PFT_CLUSTER_DIR/net")"
if ip -o addr show | grep -F " $net."; then fail "the machine's own namespace has a cluster address"; fi
# (grep without -q reads all of ip's output: with pipefail, an early exit of grep -q can fail the
# pipeline by SIGPIPE to ip, which made this check flaky under load)
on node2 ip -o addr show dev eth0 | grep -F " $net.2/24" > /dev/null || fail "node2's eth0 has no $net.2"

# An MPI job from node1 over both hosts: two ranks per host, each sees its own hostname.
out="$(on node1 "$PWD/launch/pft-mpirun" --hostfile "$PFT_CLUSTER_DIR/hostfile" -np 4 \
        sh -c 'echo "rank $OMPI_COMM_WORLD_RANK local $OMPI_COMM_WORLD_LOCAL_RANK on $(hostname)"')"
echo "$out"
for want in "rank 0 local 0 on node1" "rank 1 local 1 on node1" "rank 2 local 0 on node2" \
            "rank 3 local 1 on node2"; do
  grep -qx "$want" <<< "$out" || fail "mpirun over the hostfile: no line '$want'"
done

# Slurm: both nodes idle, a two-node step runs one task on each.
on node1 sinfo -N -h -o '%N %T'
out="$(on node1 srun -N 2 --ntasks-per-node 1 hostname | sort | tr '\n' ' ')"
[[ "$out" == "node1 node2 " ]] || fail "srun -N 2 ran on '$out', want node1 node2"
echo "PASS"
