#!/usr/bin/env bash
# grad_comm_bench.sh: dist.grad_comm_dtype bf16 vs fp32, side by side (not a test).
#
#   tests/bench/grad_comm_bench.sh
#
# Trains configs/quickstart.yaml (GPT-2 family, d 128, 2 layers, seq 256, global batch 16, the
# bundled tasks, full fine-tuning, 200 steps) on 2 ranks twice, identical but for
# dist.grad_comm_dtype: fp32 (the baseline) and bf16 (pft=). Evaluation and checkpoints off.
# From the two metrics.jsonl files:
#   RESULT name=grad_comm_final_loss pft=<bf16 loss at the last step> baseline=<fp32> unit=loss ratio=<pft/baseline>
#   RESULT name=grad_comm_max_loss_diff pft=<max over steps |loss_bf16 - loss_fp32|> baseline=<max over steps |loss_fp32 - loss_fp32 of a second fp32 run|> unit=loss ratio=<pft/baseline>
#   RESULT name=grad_comm_bytes_per_step pft=<bf16 comm_bytes> baseline=<fp32 comm_bytes> unit=bytes ratio=<pft/baseline>
# comm_bytes is what rank 0's communicator counted (Communicator::bytes_sent), per step. The
# second fp32 run measures how far two identical runs drift (0 when pft is deterministic), so
# the bf16 difference has a reference.
#
# Environment: PFT_BUILD_DIR (default build/cpu; needs bin/pft), BENCH_STEPS (default 200),
# BENCH_MPIRUN_ARGS (extra mpirun flags). Results: docs/performance.md, section "Gradient
# communication in bf16".
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${PFT_BUILD_DIR:-$root/build/cpu}"
pft="$build/bin/pft"
steps="${BENCH_STEPS:-200}"
[[ -x "$pft" ]] || { echo "grad_comm_bench.sh: $pft not found; build it (cluster/build.sh) or set PFT_BUILD_DIR" >&2; exit 2; }

work="$(mktemp -d "${TMPDIR:-/tmp}/pft-grad-comm-bench-XXXXXX")"
trap 'rm -rf "$work"' EXIT

run_pft() {  # name dtype
  local dir="$work/$1"
  # shellcheck disable=SC2086
  PFT_OVERSUBSCRIBE=1 "$root/launch/pft-mpirun" -np 2 ${BENCH_MPIRUN_ARGS:-} "$pft" train \
    "$root/configs/quickstart.yaml" --set run.dir="$dir" --set train.steps="$steps" \
    --set run.threads=1 --set eval.every_steps=0 --set eval.max_batches=1 \
    --set checkpoint.every_steps=0 --set dist.backend=mpi --set dist.grad_comm_dtype="$2" \
    >"$work/$1.log" 2>&1 || { cat "$work/$1.log" >&2; exit 3; }
}

echo "== grad_comm: quickstart model, 2 ranks x 1 thread, $steps steps: fp32, bf16, fp32 again"
run_pft fp32 fp32
run_pft bf16 bf16
run_pft fp32b fp32

python3 - "$work" <<'EOF'
import json, sys
work = sys.argv[1]
def train(name):
    recs = [json.loads(l) for l in open(f"{work}/{name}/metrics.jsonl") if l.strip()]
    return [r for r in recs if r["kind"] == "train"]
a, b, a2 = train("fp32"), train("bf16"), train("fp32b")
assert len(a) == len(b) == len(a2) and a, "runs of different lengths"
diff = max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b))
worst = max(range(len(a)), key=lambda i: abs(a[i]["loss"] - b[i]["loss"]))
noise = max(abs(x["loss"] - y["loss"]) for x, y in zip(a, a2))
bytes32 = sorted(r["comm_bytes"] for r in a)[len(a) // 2]
bytes16 = sorted(r["comm_bytes"] for r in b)[len(b) // 2]
t32 = sum(r["step_time_s"] for r in a[10:]) / max(1, len(a) - 10)
t16 = sum(r["step_time_s"] for r in b[10:]) / max(1, len(b) - 10)
print(f"  fp32: loss {a[0]['loss']:.4f} -> {a[-1]['loss']:.6f}, {bytes32} bytes/step, mean step {t32 * 1e3:.1f} ms")
print(f"  bf16: loss {b[0]['loss']:.4f} -> {b[-1]['loss']:.6f}, {bytes16} bytes/step, mean step {t16 * 1e3:.1f} ms")
print(f"  max |loss difference| {diff:.3g} at step {a[worst]['step']}; two fp32 runs: {noise:.3g}")
def ratio(x, y):
    return f"{x / y:.4f}" if y else ("1.0000" if x == 0 else "n/a")  # n/a: fp32 reruns agree bitwise
print(f"RESULT name=grad_comm_final_loss pft={b[-1]['loss']:.6f} baseline={a[-1]['loss']:.6f} unit=loss ratio={ratio(b[-1]['loss'], a[-1]['loss'])}")
print(f"RESULT name=grad_comm_max_loss_diff pft={diff:.6g} baseline={noise:.6g} unit=loss ratio={ratio(diff, noise)}")
print(f"RESULT name=grad_comm_bytes_per_step pft={bytes16} baseline={bytes32} unit=bytes ratio={ratio(bytes16, bytes32)}")
EOF
