#!/usr/bin/env bash
# The memory planner's tables for Llama-3-8B and 70B shapes (configs/plan/*.yaml: seq 4096,
# micro-batch 1) on 8 ranks, full fine-tuning and LoRA, activation checkpointing and loss
# chunking each off and on: Markdown rows for docs/performance.md, "Memory planner". Estimates
# from the config alone (nothing is allocated).
#
#   tests/bench/memory_plan_tables.sh          (PFT_BUILD_DIR, default build/cpu; target pft)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
pft="${PFT_BUILD_DIR:-$root/build/cpu}/bin/pft"
[[ -x "$pft" ]] || { echo "memory_plan_tables.sh: $pft not found; build it (cluster/build.sh cpu --target pft)" >&2; exit 2; }
gib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1073741824 }'; }
echo "| model | method | checkpointing | loss_chunk_rows | parameters | gradients | optimizer | activations | logits | total (GiB) | fits 80 GB |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for model in 8b 70b; do
  for method in full lora; do
    for ckpt in none all; do
      for chunk in 0 256; do
        out=$("$pft" config show "$root/configs/plan/llama3-$model.yaml" --memory --world 8 \
          --set train.method=$method --set train.activation_checkpointing=$ckpt \
          --set train.loss_chunk_rows=$chunk)
        val() { sed -n "s/^  $1 .*(\([0-9]*\) B)\$/\1/p" <<<"$out"; }
        total=$(val total)
        fits=$(awk -v b="$total" 'BEGIN { print (b <= 80e9 ? "yes" : "no") }')
        echo "| Llama-3-${model^^} | $method | $ckpt | $chunk | $(gib "$(val parameters)") | $(gib "$(val gradients)") | $(gib "$(val optimizer)") | $(gib "$(val activations)") | $(gib "$(val logits)") | **$(gib "$total")** | $fits |"
      done
    done
  done
done
