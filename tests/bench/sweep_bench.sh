#!/usr/bin/env bash
# sweep_bench.sh: time to the best objective of an in-allocation ASHA sweep against running the
# same grid sequentially (docs/performance.md, "Sweeps"; not a test).
#
#   tests/bench/sweep_bench.sh [steps]      (default 24)
#
# One sweep file, run twice with `pft sweep run`: six learning rates (1e-4 .. 1e-2 and a diverging
# 10) of a tiny GPT-2 (d 64, 2 layers) on the seven bundled tasks (configs/quickstart.yaml),
# `steps` steps of 8 x 64 tokens, held-out loss every steps/6 steps; objective eval.loss (min).
#   baseline: executor local, parallel 1, 2 ranks per trial (each trial a `pft-mpirun -np 2 pft
#             train`, one after another, every trial to the end);
#   pft:      executor mpi under one `pft-mpirun -np 4`, 2 ranks per trial (two trials at once),
#             early_stop ASHA with min_steps = steps/6 and eta = 3 (rungs steps/6, steps/2).
# Time to the best = from the start of the command until the `finished` event (sweep.jsonl) of
# the trial with the best objective. The baseline runs 2 ranks at a time, the sweep 4 (on a
# 2-core machine both are CPU-bound: the sweep's gain there comes from ASHA's stops more than
# from the extra ranks). Prints each sweep's table, both best objectives (ASHA may stop the trial
# that would have been best: the figure to watch), the whole runs' times, and
#   RESULT name=sweep_asha pft=<s> baseline=<s> unit=s ratio=<pft/baseline> best_pft=.. best_baseline=..
#          stopped=<k/n> total_pft=<s> total_baseline=<s>
# Environment: PFT_BUILD_DIR (default build/cpu).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
steps="${1:-24}"
build="${PFT_BUILD_DIR:-$root/build/cpu}"
pft="$build/bin/pft"
[[ -x "$pft" ]] || { echo "sweep_bench.sh: $pft not found; build it (cluster/build.sh cpu --target pft)" >&2; exit 2; }
work="$(mktemp -d "${TMPDIR:-/tmp}/pft-sweep-bench-XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$root"
export PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0
rung=$((steps / 6))
sweep_file() {  # $1: the executor and early-stopping lines
  cat <<YAML
base: $root/configs/quickstart.yaml
parameters:
  train.lr: [1.0e-4, 3.0e-4, 1.0e-3, 3.0e-3, 1.0e-2, 10]
  model.d_model: [64]
  data.seq_len: [64]
  train.steps: [$steps]
  train.warmup_steps: [2]
  train.global_batch_size: [8]
  train.micro_batch_size: [2]
  run.threads: [1]
  run.log_every: [100]
  eval.every_steps: [$rung]
  eval.max_batches: [1]
  checkpoint.every_steps: [0]
objective: {metric: eval.loss}
$1
YAML
}
sweep_file "executor: {kind: local, parallel: 1, ranks_per_trial: 2}" > "$work/grid.yaml"
sweep_file "executor: {kind: mpi, ranks_per_trial: 2}
early_stop: {rule: asha, eta: 3, min_steps: $rung}" > "$work/asha.yaml"

# "best total stopped": the best finished objective, the time from `start` to its end event, the
# whole run, and the trials stopped at a rung.
summary() {
  python3 - "$1" "$2" "$3" <<'PY'
import json, math, sys
events = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
start, end = float(sys.argv[2]), float(sys.argv[3])
done = [e for e in events if e["kind"] == "finished" and e.get("objective") is not None]
best = min(done, key=lambda e: e["objective"])
print(best["objective"], best["time"] - start, end - start, sum(e["kind"] == "stopped" for e in events))
PY
}
now() { python3 -c "import time; print(time.time())"; }

echo "baseline: the grid sequentially (6 trials x $steps steps, 2 ranks each, executor local) ..." >&2
start=$(now)
"$pft" sweep run "$work/grid.yaml" --dir "$work/grid" > "$work/grid.log" 2>&1 || { cat "$work/grid.log"; exit 1; }
read -r base_best base_time base_total _ < <(summary "$work/grid/sweep.jsonl" "$start" "$(now)")
echo "pft: in-allocation ASHA (pft-mpirun -np 4, executor mpi, 2 ranks per trial, rungs $rung, $((rung * 3))) ..." >&2
start=$(now)
launch/pft-mpirun -np 4 "$pft" sweep run "$work/asha.yaml" --dir "$work/asha" > "$work/asha.log" 2>&1 \
  || { cat "$work/asha.log"; exit 1; }
read -r asha_best asha_time asha_total asha_stopped < <(summary "$work/asha/sweep.jsonl" "$start" "$(now)")
grep -A8 '^rank' "$work/asha.log" >&2 || true
echo "grid (sequential): best eval.loss $base_best after $(printf '%.1f' "$base_time") s (whole grid $(printf '%.1f' "$base_total") s)" >&2
echo "ASHA (in-allocation): best eval.loss $asha_best after $(printf '%.1f' "$asha_time") s (whole sweep $(printf '%.1f' "$asha_total") s); $asha_stopped of 6 trials stopped at a rung" >&2
python3 -c "print(f'RESULT name=sweep_asha pft={$asha_time:.1f} baseline={$base_time:.1f} unit=s ratio={$asha_time / $base_time:.3f} best_pft={$asha_best:.4f} best_baseline={$base_best:.4f} stopped=$asha_stopped/6 total_pft={$asha_total:.1f} total_baseline={$base_total:.1f}')"
