#!/usr/bin/env bash
# zero_bench.sh: dist.zero 1 (ZeRO-1) vs 0, side by side (not a test).
#
#   tests/bench/zero_bench.sh
#
# Trains configs/quickstart.yaml (GPT-2 family, d 128, 2 layers, seq 256, global batch 16, the
# bundled tasks, full fine-tuning: 462,592 trainable parameters) for BENCH_STEPS steps, 1 thread
# per rank, checkpoints off, on 2 and 4 ranks with dist.zero 0 and 1. Prints per run the AdamW
# state rank 0 holds (the start-up log line), the final loss, the median step time (steps 6 on)
# and comm_bytes of the last step; then the memory planner's optimizer line for 1, 2, 4 ranks.
#
# Environment: PFT_BUILD_DIR (default build/cpu; needs bin/pft), BENCH_STEPS (default 30).
# Results: docs/performance.md, section "Optimizer state sharding".
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
pft="${PFT_BUILD_DIR:-build/cpu}/bin/pft"
steps="${BENCH_STEPS:-30}"
scratch="$(mktemp -d "${TMPDIR:-/tmp}/pft-zero-bench-XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
for w in 2 4; do
  for z in 0 1; do
    d="$scratch/w$w-z$z"
    PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 launch/pft-mpirun -np "$w" "$pft" \
      train configs/quickstart.yaml --set train.steps="$steps" --set run.threads=1 \
      --set checkpoint.every_steps=0 --set dist.zero="$z" --set run.dir="$d" > "$d.log" 2>&1
    echo "W=$w zero=$z rc=$? $(grep -o 'optimizer: AdamW state.*' "$d.log" | head -1)"
    python3 - "$d/metrics.jsonl" <<'PY'
import json, sys
train = [r for r in map(json.loads, open(sys.argv[1])) if r.get("kind") == "train"]
times = sorted(r["step_time_s"] for r in train[5:])
print("  steps %d, final loss %.9g, median step %.3f s, comm_bytes per step %d"
      % (len(train), train[-1]["loss"], times[len(times) // 2], train[-1]["comm_bytes"]))
PY
  done
done
for w in 1 2 4; do
  echo "planner W=$w: $("$pft" config show configs/quickstart.yaml --memory --world "$w" \
    --set dist.zero=1 2>/dev/null | grep -i optimizer)"
done
