#!/usr/bin/env bash
# The memory planner (`pft config show CONFIG --memory`, src/train/memory_plan.h) against the
# memory `pft train` really uses, for a few configs on 1 rank (issue 20, item 6).
#
# For each config: the planner's total (bytes) against the measured peak resident set of
# `pft train` (3 steps, /usr/bin/time -v "Maximum resident set size") minus the peak resident set
# of `pft config show` on the same config, measured the same way: that process loads the same
# binary with libtorch and its operator registry, parses the config and exits, so the difference
# is what training allocates (the planner's parameters, gradients, optimizer state, activations,
# logits) plus what the planner leaves out (allocator slack, code pages touched only by training,
# the data pipeline, the final checkpoint). Prints
#   RESULT name=memory_plan_<config> pft=<planned MiB> baseline=<measured MiB> unit=MiB ratio=<planned/measured>
# (target: ratio within 0.85-1.15).
#
#   tests/bench/memory_plan_check.sh            (PFT_BUILD_DIR, default build/cpu; target pft)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${PFT_BUILD_DIR:-$root/build/cpu}"
pft="$build/bin/pft"
[[ -x "$pft" ]] || { echo "memory_plan_check.sh: $pft not found; build it (cluster/build.sh cpu --target pft)" >&2; exit 2; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# name -> "vocab d_model layers heads seq micro method extra-train-keys"
declare -A configs=(
  [gpt2_tiny_full]="258 128 2 4 256 4 full"
  [gpt2_20m_full]="50257 256 6 4 256 4 full"
  [gpt2_20m_lora]="50257 256 6 4 256 4 lora"
  [gpt2_20m_full_fused_ckpt]="50257 256 6 4 256 4 full loss_chunk_rows: 0, activation_checkpointing: all,"
  [gpt2_20m_full_seq512_micro8]="50257 256 6 4 512 8 full"
)
order=(gpt2_tiny_full gpt2_20m_full gpt2_20m_lora gpt2_20m_full_fused_ckpt gpt2_20m_full_seq512_micro8)

max_rss_kib() {  # command... -> the peak resident set in KiB (the command's output in $work/log)
  /usr/bin/time -v "$@" >"$work/log" 2>&1 || { cat "$work/log" >&2; exit 3; }
  sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): \([0-9]*\)$/\1/p' "$work/log"
}

for name in "${order[@]}"; do
  read -r vocab d layers heads seq micro method extra <<<"${configs[$name]}"
  cfg="$work/$name.yaml"
  cat >"$cfg" <<YAML
run: {dir: $work/run-$name, seed: 1234, threads: 1, log_every: 1000}
model: {family: gpt2, vocab_size: $vocab, d_model: $d, n_layers: $layers, n_heads: $heads, max_seq_len: $seq}
data: {seq_len: $seq, source: synthetic, tokenizer: byte}
train: {method: $method, steps: 3, global_batch_size: $micro, micro_batch_size: $micro, lr: 1.0e-3,
        $extra schedule: constant, warmup_steps: 0, precision: fp32}
checkpoint: {async: false}
YAML
  planned=$("$pft" config show "$cfg" --memory | sed -n 's/^  total .*(\([0-9]*\) B)$/\1/p')
  base=$(max_rss_kib "$pft" config show "$cfg")
  train=$(max_rss_kib "$pft" train "$cfg")
  echo "# $name: planned $planned B; pft train peak RSS $train KiB, pft config show $base KiB"
  "$pft" config show "$cfg" --memory | sed 's/^/#   /'
  awk -v n="$name" -v p="$planned" -v t="$train" -v b="$base" 'BEGIN {
    m = (t - b) / 1024; printf "RESULT name=memory_plan_%s pft=%.1f baseline=%.1f unit=MiB ratio=%.3f\n", n, p / 1048576, m, (p / 1048576) / m }'
done
