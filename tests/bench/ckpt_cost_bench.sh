#!/usr/bin/env bash
# ckpt_cost_bench.sh: what activation checkpointing costs in throughput (issue 20, item 7's
# "tok/s cost of checkpointing <= 35%"), measured so that a shared machine's load does not decide
# it. Each configuration is `pft train` on 1 rank with 1 torch thread (no MPI peer to wait for,
# so the process computes whenever it runs), SmolLM2-135M-Instruct (the GGUF the setup installs),
# seq 512, micro-batch 2, synthetic tokens, run twice: for S0 and for S0 + BENCH_STEPS steps.
# The difference of the two runs' CPU time (user + sys, /usr/bin/time) is the CPU time of
# BENCH_STEPS training steps, with loading and start-up cancelled out; tokens over it are
# "tok per CPU-second", which other processes on the machine slow down far less than wall time
# (they take turns on the cores, not a share of the work). The wall-time tok/s of the same steps
# (metrics.jsonl, first step left out) is printed beside it, to compare on a quiet machine.
#
# Cases: full fine-tuning and LoRA r8 (every projection), checkpointing `none` (the baseline)
# against `all` and `{every_k: 2}`; fp32, fused loss.
# Prints per case and mode
#   RESULT name=ckpt_cost_<method>_<mode>_cpu pft=<tok/CPU-s> baseline=<tok/CPU-s of none> unit=tok/cpu_s ratio=...
#   RESULT name=ckpt_cost_<method>_<mode>_wall pft=<tok/s> baseline=<tok/s of none> unit=tok/s ratio=...
# Environment: PFT_BUILD_DIR (default build/cpu), BENCH_STEPS (default 4), BENCH_METHODS
# (default "full lora"). About 6 minutes on dev-cpu.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
pft="${PFT_BUILD_DIR:-$root/build/cpu}/bin/pft"
steps="${BENCH_STEPS:-4}"
methods="${BENCH_METHODS:-full lora}"
s0=2
[[ -x "$pft" ]] || { echo "ckpt_cost_bench.sh: $pft not found; build it (cluster/build.sh)" >&2; exit 2; }
work="$(mktemp -d "${TMPDIR:-/tmp}/pft-ckpt-cost-XXXXXX")"
trap 'rm -rf "$work"' EXIT

# run NAME METHOD MODE STEPS -> "<cpu seconds> <wall tok/s of the steps after the first>"
run() {
  local name=$1 method=$2 mode=$3 n=$4 cfg="$work/$1.yaml"
  cat >"$cfg" <<YAML
run: {dir: $work/run-$name, seed: 1234, threads: 1, log_every: 1}
model: {from_pretrained: smollm2-135m-instruct}
data: {seq_len: 512, source: synthetic}
train: {method: $method, steps: $n, global_batch_size: 2, micro_batch_size: 2, lr: 1.0e-4,
        schedule: constant, warmup_steps: 0, precision: fp32, loss_chunk_rows: 0,
        activation_checkpointing: $mode}
peft: {lora_rank: 8, lora_alpha: 16,
       lora_targets: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]}
eval: {every_steps: 0, max_batches: 1}
checkpoint: {every_steps: 0, async: false}
YAML
  /usr/bin/time -f "cpu_s %U %S" "$pft" train "$cfg" >"$work/$name.log" 2>&1 ||
    { echo "ckpt_cost_bench.sh: $name failed:" >&2; tail -30 "$work/$name.log" >&2; exit 3; }
  python3 - "$work/run-$name/metrics.jsonl" "$work/$name.log" <<'PY'
import json, re, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
train = [r for r in recs if r["kind"] == "train"][1:]
tok_s = sum(r["tokens"] for r in train) / sum(r["step_time_s"] for r in train)
u, s = map(float, re.findall(r"cpu_s ([0-9.]+) ([0-9.]+)", open(sys.argv[2]).read())[-1])
print(f"{u + s:.2f} {tok_s:.1f}")
PY
}

tokens=$((steps * 2 * 512))
for method in $methods; do
  declare -A cpu=() wall=()
  for mode in none all "{every_k: 2}"; do
    key=${mode//[^a-z0-9]/}
    read -r c0 _ < <(run "${method}_${key}_short" "$method" "$mode" "$s0")
    read -r c1 w1 < <(run "${method}_${key}_long" "$method" "$mode" "$((s0 + steps))")
    cpu[$key]=$(awk -v t="$tokens" -v a="$c0" -v b="$c1" 'BEGIN { printf "%.1f", t / (b - a) }')
    wall[$key]=$w1
    echo "# $method checkpointing $mode: CPU ${c0} s ($s0 steps), ${c1} s ($((s0 + steps)) steps): ${cpu[$key]} tok/CPU-s; wall ${w1} tok/s"
  done
  for key in all everyk2; do
    awk -v n="${method}_$key" -v p="${cpu[$key]}" -v b="${cpu[none]}" \
      'BEGIN { printf "RESULT name=ckpt_cost_%s_cpu pft=%.1f baseline=%.1f unit=tok/cpu_s ratio=%.3f\n", n, p, b, p / b }'
    awk -v n="${method}_$key" -v p="${wall[$key]}" -v b="${wall[none]}" \
      'BEGIN { printf "RESULT name=ckpt_cost_%s_wall pft=%.1f baseline=%.1f unit=tok/s ratio=%.3f\n", n, p, b, p / b }'
  done
done
