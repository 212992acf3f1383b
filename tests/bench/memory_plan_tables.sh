#!/usr/bin/env bash
# The memory planner's tables for Llama-3-8B and 70B shapes (configs/plan/*.yaml: seq 4096,
# micro-batch 1) on 8 ranks: for full fine-tuning and LoRA, everything off, then each of issue
# 20's features on alone (chunked loss, activation checkpointing, ZeRO-1 for full, a bf16 frozen
# base for LoRA), then all of them: Markdown rows for docs/performance.md, "Memory planner".
# Estimates from the config alone (nothing is allocated).
#
#   tests/bench/memory_plan_tables.sh          (PFT_BUILD_DIR, default build/cpu; target pft)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
pft="${PFT_BUILD_DIR:-$root/build/cpu}/bin/pft"
[[ -x "$pft" ]] || { echo "memory_plan_tables.sh: $pft not found; build it (cluster/build.sh cpu --target pft)" >&2; exit 2; }
gib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1073741824 }'; }
off=(train.activation_checkpointing=none train.loss_chunk_rows=0 dist.zero=0
     model.base_dtype=fp32 train.precision=fp32)
declare -A feature=(
  [chunk]="train.loss_chunk_rows=256"
  [ckpt]="train.activation_checkpointing=all"
  [zero1]="dist.zero=1"
  [bf16]="model.base_dtype=bf16 train.precision=bf16"
)
declare -A label=([off]="none" [chunk]="chunked loss (256 rows)" [ckpt]="checkpointing all"
                  [zero1]="ZeRO-1" [bf16]="bf16 base" [all]="all of them")
echo "| model | method | features on | parameters | gradients | optimizer | activations | logits | comm | slack | total (GiB) | fits 80 GB |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for model in 8b 70b; do
  for method in full lora; do
    if [[ $method == full ]]; then own=zero1; else own=bf16; fi
    for row in off chunk ckpt $own all; do
      sets=("${off[@]}")
      case $row in
        off) ;;
        all) read -ra more <<<"${feature[chunk]} ${feature[ckpt]} ${feature[$own]}"; sets+=("${more[@]}") ;;
        *) read -ra more <<<"${feature[$row]}"; sets+=("${more[@]}") ;;
      esac
      args=()
      for s in "${sets[@]}"; do args+=(--set "$s"); done
      out=$("$pft" config show "$root/configs/plan/llama3-$model.yaml" --memory --world 8 \
        --set train.method=$method "${args[@]}")
      val() { sed -n "s/^  $1 .*(\([0-9]*\) B)\$/\1/p" <<<"$out"; }
      total=$(val total)
      fits=$(awk -v b="$total" 'BEGIN { print (b <= 80e9 ? "yes" : "no") }')
      echo "| Llama-3-${model^^} | $method | ${label[$row]} | $(gib "$(val parameters)") | $(gib "$(val gradients)") | $(gib "$(val optimizer)") | $(gib "$(val activations)") | $(gib "$(val logits)") | $(gib "$(val comm)") | $(gib "$(val slack)") | **$(gib "$total")** | $fits |"
    done
  done
done
