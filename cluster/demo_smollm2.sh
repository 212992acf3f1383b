#!/usr/bin/env bash
# The pretrained demo (README, "Fine-tune a pretrained model"): SmolLM2-135M-Instruct, installed
# from PyPI by the setup (cluster/models.txt), measured zero-shot with `pft eval`, fine-tuned with
# LoRA on 2 CPU ranks (configs/smollm2_lora.yaml: four natural-language tasks), and measured again
# on the same validation split, per task and per template (held-out templates marked `*`).
# Extra arguments go to `pft train` (e.g. --set train.steps=20). A previous demo run directory is
# moved aside, not deleted.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
"$here/install-deps.sh"
"$here/build.sh" cpu --target pft >/dev/null
cd "$root"
ranks="${PFT_DEMO_RANKS:-2}"
config=configs/smollm2_lora.yaml
run=runs/smollm2_lora   # the training run (run.dir of the config)
out=runs/smollm2_eval   # the two evaluations' JSON lines
pft=("$root/launch/pft-mpirun" -np "$ranks" --bind-to none "$root/build/cpu/bin/pft")
stamp="$(date +%Y%m%d-%H%M%S)"
for d in "$run" "$out"; do
  if [[ -e "$d" ]]; then
    echo "[demo] moving the previous $d to $d.$stamp"
    mv "$d" "$d.$stamp"
  fi
done
mkdir -p "$out"
start=$SECONDS
echo "[demo] 1/3 zero-shot: the pretrained model before fine-tuning"
"${pft[@]}" eval "$config" --set run.threads=1 --output "$out/before.jsonl"
echo "[demo] 2/3 LoRA fine-tuning"
"${pft[@]}" train "$config" --set run.threads=1 "$@"
echo "[demo] 3/3 the fine-tuned model (base + LoRA adapter), same split"
"${pft[@]}" eval "$config" --set run.threads=1 --checkpoint "$run" \
  --output "$out/after.jsonl"
echo "[demo] done in $((SECONDS - start)) s; JSON lines: $out/before.jsonl, $out/after.jsonl"
