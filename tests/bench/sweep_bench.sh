#!/usr/bin/env bash
# sweep_bench.sh: time to the best objective of an in-allocation ASHA sweep against running the
# same grid sequentially (docs/performance.md, "Sweeps"; not a test).
#
#   tests/bench/sweep_bench.sh [steps]      (default 24)
#
# The grid: six learning rates (1e-4 .. 1e-2 and a diverging 10) of the tiny GPT-2 of the sweep
# tests (d 64, 2 layers) on the bundled tasks, `steps` steps of 8 x 64 tokens, held-out loss
# every steps/6 steps; objective eval.loss (min).
#   baseline: the grid one trial after another, each `pft-mpirun -np 2 pft train` (the `local`
#             executor's way), every trial to the end; time to the best = from the start until the
#             trial with the best final objective has ended.
#   pft:      one `pft-mpirun -np 4` in-allocation sweep (tests/sweep/mpi_sweep_driver), 2 ranks
#             per trial, ASHA with min_steps = steps/6 and eta = 3 (rungs steps/6, steps/2); time
#             to the best = from the start until its best trial's end event (sweep.jsonl).
# The baseline runs 2 ranks at a time, the sweep 4 (on a 2-core machine both are CPU-bound: the
# sweep's gain there comes from ASHA's stops more than from the extra ranks). Prints each trial's
# outcome, both best objectives (ASHA may stop the trial that would have been best: the figure to
# watch), the whole grid's and the whole sweep's time, and
#   RESULT name=sweep_asha pft=<s> baseline=<s> unit=s ratio=<pft/baseline> best_pft=.. best_baseline=..
#          stopped=<k/n> total_pft=<s> total_baseline=<s>
# Environment: PFT_BUILD_DIR (default build/cpu).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
steps="${1:-24}"
build="${PFT_BUILD_DIR:-$root/build/cpu}"
pft="$build/bin/pft"
driver="$build/tests/sweep/mpi_sweep_driver"
for b in "$pft" "$driver"; do
  [[ -x "$b" ]] || { echo "sweep_bench.sh: $b not found; build it (cluster/build.sh cpu --target pft mpi_sweep_driver)" >&2; exit 2; }
done
work="$(mktemp -d "${TMPDIR:-/tmp}/pft-sweep-bench-XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$root"
export PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0
rung=$((steps / 6))
common="model.d_model=64 model.n_layers=2 model.n_heads=4 data.seq_len=64 train.steps=$steps \
train.warmup_steps=2 train.global_batch_size=8 train.micro_batch_size=2 run.threads=1 \
run.log_every=100 eval.every_steps=$rung eval.max_batches=1 checkpoint.every_steps=0"
lrs=(1e-4 3e-4 1e-3 3e-3 1e-2 10)

# The objective of a run: the mean over tasks of its last held-out loss (eval.loss).
objective() {
  python3 - "$1" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ev = [r for r in recs if r["kind"] == "eval" and r["template"] == "all"]
last = max(r["step"] for r in ev)
xs = [r["loss"] for r in ev if r["step"] == last]
print(sum(xs) / len(xs))
PY
}

echo "baseline: the grid sequentially (${#lrs[@]} trials x $steps steps, 2 ranks each) ..." >&2
start=$(date +%s.%N)
: > "$work/grid.txt"
for i in "${!lrs[@]}"; do
  args=()
  for w in $common; do args+=(--set "$w"); done
  launch/pft-mpirun -np 2 "$pft" train configs/quickstart.yaml "${args[@]}" --set train.lr="${lrs[$i]}" \
    --set run.dir="$work/grid/t$i" > "$work/grid_t$i.log" 2>&1 || { cat "$work/grid_t$i.log"; exit 1; }
  echo "t$i $(objective "$work/grid/t$i/metrics.jsonl") $(python3 -c "print($(date +%s.%N) - $start)")" >> "$work/grid.txt"
done
read -r base_best base_time base_total < <(python3 - "$work/grid.txt" <<'PY'
import math, sys
rows = [l.split() for l in open(sys.argv[1])]
total = max(float(s) for _, _, s in rows)
rows = [(t, float(o), float(s)) for t, o, s in rows if math.isfinite(float(o))]
t, o, s = min(rows, key=lambda r: r[1])
print(o, s, total)
PY
)

echo "pft: in-allocation ASHA (-np 4, 2 ranks per trial, rungs $rung, $((rung * 3))) ..." >&2
trials=()
for lr in "${lrs[@]}"; do trials+=("train.lr=$lr"); done
start=$(python3 -c "import time; print(time.time())")
launch/pft-mpirun -np 4 "$driver" "$work/asha" 2 "$rung" 3 configs/quickstart.yaml "$common" "${trials[@]}" \
  > "$work/asha.log" 2>&1 || { cat "$work/asha.log"; exit 1; }
asha_total=$(python3 -c "import time; print(time.time() - $start)")
grep '^trial ' "$work/asha.log" >&2 || true
read -r asha_best asha_time asha_stopped < <(python3 - "$work/asha/sweep.jsonl" "$start" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ends = [e for e in ev if e["kind"] in ("finished", "stopped") and e["objective"] is not None]
best = min((e for e in ends if e["kind"] == "finished"), key=lambda e: e["objective"])
stopped = sum(1 for e in ev if e["kind"] == "stopped")
print(best["objective"], best["time"] - float(sys.argv[2]), stopped)
PY
)
echo "grid (sequential): best eval.loss $base_best after $(printf '%.1f' "$base_time") s (whole grid $(printf '%.1f' "$base_total") s)" >&2
echo "ASHA (in-allocation): best eval.loss $asha_best after $(printf '%.1f' "$asha_time") s (whole sweep $(printf '%.1f' "$asha_total") s); $asha_stopped of ${#lrs[@]} trials stopped at a rung" >&2
python3 -c "print(f'RESULT name=sweep_asha pft={$asha_time:.1f} baseline={$base_time:.1f} unit=s ratio={$asha_time / $base_time:.3f} best_pft={$asha_best:.4f} best_baseline={$base_best:.4f} stopped=$asha_stopped/${#lrs[@]} total_pft={$asha_total:.1f} total_baseline={$base_total:.1f}')"
