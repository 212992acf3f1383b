#!/usr/bin/env bash
# peft_bench.sh: the methods table of docs/performance.md (not a test).
#
#   tests/bench/peft_bench.sh [steps] [small|medium]     (default 60 small)
#
# small:  the quickstart GPT-2 (d 128, 2 layers, 0.46M parameters);
# medium: d 512, 8 layers, 8 heads (25M parameters), where the optimizer state of full fine-tuning
#         shows in memory.
# 1. pretrains a base of that size, full fine-tuning for 80 steps on
#    five bundled tasks (not `reverse`), 2 ranks; exports it (`pft ckpt export --format hf`);
# 2. from that base, trains each method -- full (the baseline), prompt_tuning, prefix_tuning, lora,
#    prompt_tuning+lora -- for `steps` steps on two tasks (reverse, which the base never saw, and
#    add) under launch/pft-mpirun -np 2, 1 thread per rank, the same batches (16 x 128 tokens);
# 3. prints one markdown row per method: trainable parameters, adapter checkpoint size, tokens/s
#    (median step after the first 5), peak RSS per rank (max over ranks), the held-out loss of
#    both tasks (mean) at step 0 and at the end, and tokens/s and memory relative to full.
# Environment: PFT_BUILD_DIR (default build/cpu).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
steps="${1:-60}"
size="${2:-small}"
case "$size" in
  small) model=() ;;
  medium) model=(--set model.d_model=512 --set model.n_layers=8 --set model.n_heads=8) ;;
  *) echo "peft_bench.sh: size must be small or medium" >&2; exit 2 ;;
esac
build="${PFT_BUILD_DIR:-$root/build/cpu}"
pft="$build/bin/pft"
[[ -x "$pft" ]] || { echo "peft_bench.sh: $pft not found; build it (cluster/build.sh)" >&2; exit 2; }
work="$(mktemp -d "${TMPDIR:-/tmp}/pft-peft-bench-XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$root"
export PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0
tasks() { local out=""; for t in "$@"; do out="${out:+$out,}$root/datasets/tasks/$t.yaml"; done; echo "[$out]"; }
common=("${model[@]}" --set data.seq_len=128 --set run.threads=1 --set run.log_every=20 --set train.warmup_steps=2
        --set eval.every_steps=0 --set checkpoint.async=false)

echo "pretraining the base (80 steps, full fine-tuning) ..." >&2
launch/pft-mpirun -np 2 "$pft" train configs/quickstart.yaml "${common[@]}" --set run.dir="$work/base" \
  --set data.tasks="$(tasks add sort_digits max_digit uppercase sentiment)" --set train.steps=80 \
  --set train.lr=2e-3 > "$work/base.log" 2>&1 || { cat "$work/base.log"; exit 1; }
"$pft" ckpt export "$work/base/checkpoints/step_00000080.h5" --format hf --out "$work/base_hf" > /dev/null

printf '| method | trainable parameters | checkpoint | tokens/s | peak RSS / rank | held-out loss (step 0 -> %s) | tokens/s vs full | memory vs full |\n' "$steps"
printf '|---|---|---|---|---|---|---|---|\n'
full_tps=""; full_rss=""
for method in full prompt_tuning prefix_tuning lora prompt_tuning+lora; do
  lr=1e-2; [[ $method == full ]] && lr=1e-3
  dir="$work/$method"
  launch/pft-mpirun -np 2 "$pft" train configs/quickstart.yaml "${common[@]}" --set run.dir="$dir" \
    --set data.tasks="$(tasks reverse add)" --set train.steps="$steps" --set train.lr=$lr \
    --set train.weight_decay=0 --set train.method="$method" --set model.from_pretrained="$work/base_hf" \
    --set peft.prompt_tokens=8 --set peft.prefix_tokens=8 > "$dir.log" 2>&1 || { cat "$dir.log"; exit 1; }
  ckpt="$(ls "$dir"/checkpoints/*.h5 | tail -1)"
  python3 - "$dir/metrics.jsonl" "$ckpt" "$method" "$steps" "${full_tps:-0}" "${full_rss:-0}" > "$work/row" <<'PY'
import json, os, statistics, sys
path, ckpt, method, steps, full_tps, full_rss = sys.argv[1:]
recs = [json.loads(l) for l in open(path) if l.strip()]
start = next(r for r in recs if r["kind"] == "start")
end = next(r for r in recs if r["kind"] == "end")
tps = statistics.median(r["tokens_per_s"] for r in recs if r["kind"] == "train" and r["step"] > 5)
ev = lambda s: statistics.mean(r["loss"] for r in recs if r["kind"] == "eval" and r["template"] == "all" and r["step"] == s)
rss = end["peak_rss_mb"]
size = os.path.getsize(ckpt)
ratio = lambda a, b: f"{a / b:.2f}" if float(b) > 0 else "1.00"
print(f"| {method} | {start['parameters']:,} | {size / 1e6:.2f} MB | {tps:,.0f} | {rss:.0f} MB | "
      f"{ev(0):.3f} -> {ev(int(steps)):.3f} | {ratio(tps, float(full_tps) or tps)} | {ratio(rss, float(full_rss) or rss)} |")
PY
  cat "$work/row"
  if [[ $method == full ]]; then
    read -r full_tps full_rss < <(python3 -c "import json;r=[json.loads(l) for l in open('$dir/metrics.jsonl') if l.strip()];import statistics;print(statistics.median(x['tokens_per_s'] for x in r if x['kind']=='train' and x['step']>5), next(x for x in r if x['kind']=='end')['peak_rss_mb'])")
  fi
done
