#!/usr/bin/env bash
# trace_bench.sh: what run.trace costs (issue 21, item 1: target < 2% of tok/s), side by side in
# one run: the quickstart config on 2 ranks x 1 thread, BENCH_STEPS steps (no evaluation, no
# checkpoint), alternately without and with run.trace (off, on, off, on, ... BENCH_ROUNDS
# rounds each), throughput = tokens over the median step time of each run's steps after the
# first 5 (metrics.jsonl). Prints per round, then
#   RESULT name=trace_overhead pft=<tok/s traced> baseline=<tok/s untraced> unit=tok/s ratio=...
# (medians over the rounds) and the spans per step of the traced runs.
# Environment: PFT_BUILD_DIR (default build/cpu), BENCH_STEPS (default 60), BENCH_ROUNDS (3).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
pft="${PFT_BUILD_DIR:-$root/build/cpu}/bin/pft"
steps="${BENCH_STEPS:-60}"
rounds="${BENCH_ROUNDS:-3}"
[[ -x "$pft" ]] || { echo "trace_bench.sh: $pft not found; build it (cluster/build.sh)" >&2; exit 2; }
work="$(mktemp -d "${TMPDIR:-/tmp}/pft-trace-bench-XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$root"

run() {  # NAME TRACE -> "<tok/s> <spans per step or 0>"
  local dir="$work/$1"
  PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 "$root/launch/pft-mpirun" -np 2 "$pft" train \
    configs/quickstart.yaml --set "train.steps=$steps" --set run.threads=1 --set run.log_every=1000 \
    --set eval.every_steps=0 --set checkpoint.every_steps=0 --set "run.trace=$2" \
    --set "run.dir=$dir" >"$work/$1.log" 2>&1 || { tail -20 "$work/$1.log" >&2; exit 3; }
  python3 - "$dir" "$steps" <<'PY'
import json, os, statistics, sys
d, steps = sys.argv[1], int(sys.argv[2])
recs = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl")) if l.strip()]
train = [r for r in recs if r["kind"] == "train" and r["step"] > 5]
tok_s = train[0]["tokens"] / statistics.median(r["step_time_s"] for r in train)
spans = 0
p = os.path.join(d, "trace.json")
if os.path.exists(p):
    spans = sum(1 for e in json.load(open(p))["traceEvents"] if e["ph"] == "X") / steps
print(f"{tok_s:.1f} {spans:.1f}")
PY
}

off=() on=()
for ((i = 1; i <= rounds; ++i)); do
  read -r a _ < <(run "off$i" false)
  read -r b spans < <(run "on$i" true)
  off+=("$a") on+=("$b")
  echo "# round $i: untraced $a tok/s, traced $b tok/s ($spans spans per step, both ranks)"
done
python3 - "${off[*]}" "${on[*]}" <<'PY'
import statistics, sys
off = [float(x) for x in sys.argv[1].split()]
on = [float(x) for x in sys.argv[2].split()]
a, b = statistics.median(off), statistics.median(on)
print(f"RESULT name=trace_overhead pft={b:.1f} baseline={a:.1f} unit=tok/s ratio={b / a:.3f}")
PY
