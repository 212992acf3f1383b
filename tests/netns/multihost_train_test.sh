#!/usr/bin/env bash
# multihost_train_test.sh: training across hosts is bitwise the training on one host. The same
# small multi-task run (the quickstart tasks and model, 20 steps, 1 thread per rank, CPU fp32,
# held-out evaluation and a checkpoint at steps 10 and 20) on 2 hosts x 2 ranks and on 1 host x 4
# ranks gives the same metrics.jsonl (every step's loss, gradient norm and per-task losses, every
# evaluation) and the same final parameter hash. Along the way, for the 2-host run:
#   - rank 0 logs the layout: `layout: 4 ranks on 2 hosts: node1 -> ranks 0-1, node2 -> ranks 2-3`;
#   - with PFT_MPIRUN_IFACE set to the cluster's subnet, MPI's TCP transport picks the cluster
#     interface only (btl_base_verbose), and every TCP connection the job's processes hold, read
#     from both hosts while it trains, is either between cluster addresses or on one host's
#     loopback (a rank and its own host's daemon): nothing between hosts goes anywhere else;
#   - no TCP or UDP listener of the job's processes (mpirun, orted, the ranks), sampled the same
#     way, is on a wildcard address: each is on the host's cluster address or on lo
#     (docs/launching.md, "Listening sockets").
set -euo pipefail
cluster="${PFT_CLUSTER_SCRIPT:?run under ctest (tests/netns/CMakeLists.txt)}"
pft="${PFT_BIN:?}"
fail() { echo "FAIL: $*" >&2; exit 1; }
on() { "$cluster" exec "$@"; }
net="$(cat "$PFT_CLUSTER_DIR/net")"
mpirun="$PWD/launch/pft-mpirun"

work="$(mktemp -d /tmp/pft-multihost-test-XXXXXX)"
sampler=""
cleanup() {
  [[ -n "$sampler" ]] && kill "$sampler" 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Each run builds its own token store (data.cache_dir), so the store is checked too.
run_args() {
  echo train configs/quickstart.yaml --set "run.dir=$work/$1" --set "data.cache_dir=$work/$1-cache" \
    --set train.steps=20 --set train.warmup_steps=2 --set run.threads=1 --set run.log_every=5 \
    --set eval.every_steps=10 --set eval.max_batches=1 --set checkpoint.every_steps=10
}

# ---- 2 hosts x 2 ranks, TCP between hosts on the cluster subnet only ------------------------
# Both hosts' TCP connections, sampled while the job runs (ss: local, peer, process).
(
  while :; do
    for n in node1 node2; do
      on "$n" ss -tnpH state established 2> /dev/null | sed "s/^/$n /" >> "$work/sockets" || true
      on "$n" ss -ltnupH 2> /dev/null | sed "s/^/$n /" >> "$work/listeners" || true
    done
    sleep 0.5
  done
) &
sampler=$!
echo "== 2 hosts x 2 ranks"
on node1 env PFT_MPIRUN_IFACE="$net.0/24" "$mpirun" --hostfile "$PFT_CLUSTER_DIR/hostfile" -np 4 \
  --mca btl_base_verbose 30 "$pft" $(run_args hosts2) > "$work/hosts2.log" 2>&1 ||
  { tail -n 40 "$work/hosts2.log"; fail "the 2-host run failed"; }
kill "$sampler" 2> /dev/null || true
wait "$sampler" 2> /dev/null || true
sampler=""

want="layout: 4 ranks on 2 hosts: node1 -> ranks 0-1, node2 -> ranks 2-3; 1 thread each"
grep -F "$want" "$work/hosts2.log" || fail "the 2-host run did not log '$want'"
# btl tcp of each of the 4 ranks matched its host's cluster address on eth0, and nothing else.
matches="$(grep -E 'btl: tcp: Found match' "$work/hosts2.log" || true)"
echo "$matches"
[[ "$(grep -cE "\[node1:[0-9]+\] btl: tcp: Found match: $net\.1 \(eth0\)" <<< "$matches")" == 2 &&
   "$(grep -cE "\[node2:[0-9]+\] btl: tcp: Found match: $net\.2 \(eth0\)" <<< "$matches")" == 2 &&
   "$(wc -l <<< "$matches")" == 4 ]] ||
  fail "MPI's TCP transport did not use exactly the cluster interface on each of the 4 ranks"
python3 - "$work/sockets" "$net" <<'EOF'
import ipaddress, re, sys
path, net = sys.argv[1], ipaddress.ip_network(sys.argv[2] + ".0/24")
loop = ipaddress.ip_network("127.0.0.0/8")
job = ("pft", "orted", "mpirun")
seen_cross, bad = 0, []
for line in open(path):
    f = line.split()
    m = re.search(r'users:\(\("([^"]+)"', line)
    if len(f) < 6 or not m or m.group(1) not in job:
        continue
    host, local, peer = f[0], f[3], f[4]
    addr = lambda s: ipaddress.ip_address(s.rsplit(":", 1)[0].strip("[]").split("%")[0].replace("::ffff:", ""))
    a, b = addr(local), addr(peer)
    if a in loop and b in loop:
        continue                    # a rank and its own host's daemon
    if a in net and b in net:
        seen_cross += m.group(1) == "pft" and a != b
        continue
    bad.append(line.strip())
print(f"sockets: {seen_cross} samples of rank-to-rank connections between the hosts on {net}")
if bad:
    sys.exit("FAIL: connections outside the cluster subnet and loopback:\n" + "\n".join(bad[:10]))
if seen_cross == 0:
    sys.exit("FAIL: no rank-to-rank TCP connection between the hosts was seen while the job ran")
EOF

# Listeners: host netid state recv-q send-q local peer process.
awk '$8 ~ /"(pft|orted|mpirun)"/ { print $1, $6, $8 }' "$work/listeners" | sort -u > "$work/job-listeners"
cat "$work/job-listeners"
bad="$(grep -E ' (0\.0\.0\.0|\[::\]|\*):' "$work/job-listeners" || true)"
[[ -z "$bad" ]] || fail "job processes listen on a wildcard address: $bad"
grep -qE "^node2 $net\.2:[0-9]+ .*\"orted\"" "$work/job-listeners" &&
  grep -qE "^node2 $net\.2:[0-9]+ .*\"pft\"" "$work/job-listeners" ||
  fail "node2's daemon and ranks were not seen listening on the cluster address"

# ---- 1 host x 4 ranks -------------------------------------------------------------------------
echo "== 1 host x 4 ranks"
on node1 env PFT_OVERSUBSCRIBE=1 "$mpirun" --host node1:4 -np 4 "$pft" $(run_args host1) \
  > "$work/host1.log" 2>&1 || { tail -n 40 "$work/host1.log"; fail "the 1-host run failed"; }
want="layout: 4 ranks on 1 host: node1 -> ranks 0-3; 1 thread each"
grep -F "$want" "$work/host1.log" || fail "the 1-host run did not log '$want'"

# ---- the same run, bit for bit ----------------------------------------------------------------
python3 - "$work/hosts2/metrics.jsonl" "$work/host1/metrics.jsonl" <<'EOF'
import json, sys
def records(path):
    train, evals, ckpts, end = [], [], [], None
    for line in open(path):
        r = json.loads(line)
        if r["kind"] == "train":
            train.append({k: r[k] for k in ("step", "loss", "grad_norm", "tokens", "target_tokens",
                                            "task_loss", "task_tokens", "world_size")})
        elif r["kind"] == "eval":
            evals.append({k: r.get(k) for k in ("step", "task", "template", "loss", "exact_match",
                                                "tokens", "documents")})
        elif r["kind"] == "checkpoint":
            ckpts.append(r["step"])
        elif r["kind"] == "end":
            end = r
    return train, evals, ckpts, end
a, b = records(sys.argv[1]), records(sys.argv[2])
(ta, ea, ca, enda), (tb, eb, cb, endb) = a, b
if [t["step"] for t in ta] != list(range(1, 21)):
    sys.exit(f"FAIL: the 2-host run logged steps {[t['step'] for t in ta]}, want 1..20")
if sorted({e["step"] for e in ea}) != [0, 10, 20] or ca != [10, 20]:
    sys.exit(f"FAIL: evaluations at {sorted({e['step'] for e in ea})}, checkpoints at {ca}: "
             "want evaluations at 0, 10, 20 and checkpoints at 10, 20")
for x, y in zip(ta, tb):
    if x != y:
        sys.exit(f"FAIL: step {x['step']} differs:\n  2 hosts: {x}\n  1 host:  {y}")
if len(ta) != len(tb):
    sys.exit(f"FAIL: {len(ta)} steps on 2 hosts, {len(tb)} on 1 host")
if ea != eb:
    diff = next((x, y) for x, y in zip(ea, eb) if x != y) if len(ea) == len(eb) else (len(ea), len(eb))
    sys.exit(f"FAIL: the evaluations differ: {diff}")
if cb != ca:
    sys.exit(f"FAIL: checkpoints at {ca} on 2 hosts, {cb} on 1 host")
if enda is None or endb is None or enda["param_hash"] != endb["param_hash"]:
    sys.exit(f"FAIL: final parameter hash {enda and enda['param_hash']} on 2 hosts, "
             f"{endb and endb['param_hash']} on 1 host")
print(f"same {len(ta)} step losses (last {ta[-1]['loss']!r}), {len(ea)} evaluation records, "
      f"checkpoints {ca}, parameter hash {enda['param_hash']} on 2 hosts x 2 ranks and 1 host x 4")
EOF
echo "PASS"
