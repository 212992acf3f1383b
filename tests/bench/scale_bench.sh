#!/usr/bin/env bash
# scale_bench.sh: issue 20's memory features on real model sizes, each off and on, side by side
# in one run (not a test). Every configuration is `pft train` on 2 ranks (pft-mpirun -np 2, one
# torch thread each, synthetic tokens, no evaluation, no checkpoint), and reports from its
# metrics.jsonl the peak resident set of the largest rank (the end record's peak_rss_mb), the
# smallest rank's (/usr/bin/time around each rank: under ZeRO-1 rank 0 also writes the final
# checkpoint, streaming the gathered moments through a scratch file) and the training
# throughput (tokens over step time, the first step left out: it allocates).
#
# Cases (BENCH_CASES, default "smollm2_lora smollm2_full"; add llama05b for the 0.5B model):
#   smollm2_lora  SmolLM2-135M-Instruct (model.from_pretrained, the GGUF the setup installs),
#                 LoRA rank 8 on every projection, seq 512, micro-batch 2:
#                 baseline = fp32 base, no checkpointing, fused loss over full logits;
#                 then bf16 base (train.precision bf16), + chunked loss, + checkpointing.
#   smollm2_full  the same model, full fine-tuning, seq 512, micro-batch 2:
#                 baseline = replicated AdamW, no checkpointing, fused loss;
#                 then + ZeRO-1, + checkpointing and chunked loss.
#   llama05b      a generated ~0.5B Llama (random weights: d_model 1024, 32 layers, GQA 16/4,
#                 vocab 49,152, untied), full fine-tuning at seq 1024, micro-batch 1:
#                 baseline = replicated (on 1 rank: its per-rank memory is a replicated
#                 run's, and two would not fit 24 GiB), then ZeRO-1 + checkpointing + chunked
#                 loss on 2 ranks. About 12 GB of memory and minutes a step on 2 cores.
# Prints, per case and feature set,
#   RESULT name=scale_<case>_<features>_peak pft=<MiB> baseline=<MiB of the case's baseline> unit=MiB ratio=...
#   RESULT name=scale_<case>_<features>_throughput pft=<tok/s> baseline=<tok/s> unit=tok/s ratio=...
#
# Environment: PFT_BUILD_DIR (default build/cpu; bin/pft), BENCH_STEPS (default 4),
# BENCH_CASES, BENCH_MPIRUN_ARGS. Results: docs/performance.md, "Memory on real model sizes".
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${PFT_BUILD_DIR:-$root/build/cpu}"
pft="$build/bin/pft"
steps="${BENCH_STEPS:-4}"
cases="${BENCH_CASES:-smollm2_lora smollm2_full}"
[[ -x "$pft" ]] || { echo "scale_bench.sh: $pft not found; build it (cluster/build.sh) or set PFT_BUILD_DIR" >&2; exit 2; }

work="$(mktemp -d "${TMPDIR:-/tmp}/pft-scale-bench-XXXXXX")"
trap 'rm -rf "$work"' EXIT

smollm2_model='model: {from_pretrained: smollm2-135m-instruct}'
llama05b_model='model: {family: llama, vocab_size: 49152, d_model: 1024, n_layers: 32, n_heads: 16,
        n_kv_heads: 4, d_ff: 2816, max_seq_len: 1024, tie_embeddings: false}'

# run NAME MODEL_YAML SEQ MICRO METHOD EXTRA_TRAIN_KEYS DIST_KEYS MODEL_EXTRA_SETS...
run() {
  local name=$1 model=$2 seq=$3 micro=$4 method=$5 train_extra=$6 dist=$7 np=${NP:-2}
  shift 7
  local cfg="$work/$name.yaml"
  cat >"$cfg" <<YAML
run: {dir: $work/run-$name, seed: 1234, threads: 1, log_every: 1}
$model
data: {seq_len: $seq, source: synthetic}
train: {method: $method, steps: $steps, global_batch_size: $((np * micro)), micro_batch_size: $micro,
        lr: 1.0e-4, schedule: constant, warmup_steps: 0, $train_extra}
peft: {lora_rank: 8, lora_alpha: 16,
       lora_targets: [q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]}
dist: {backend: mpi, $dist}
eval: {every_steps: 0, max_batches: 1}
checkpoint: {every_steps: 0, async: false}
YAML
  # shellcheck disable=SC2086
  # Each rank under /usr/bin/time: its own peak resident set (the end record has the largest).
  PFT_OVERSUBSCRIBE=1 "$root/launch/pft-mpirun" -np "$np" ${BENCH_MPIRUN_ARGS:-} \
    /usr/bin/time -f "rank_peak_kib %M" "$pft" train "$cfg" \
    "$@" >"$work/$name.log" 2>&1 || { echo "scale_bench.sh: $name failed:" >&2; tail -30 "$work/$name.log" >&2; exit 3; }
  python3 - "$work/run-$name/metrics.jsonl" "$name" "$work/$name.log" <<'EOF'
import json, re, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
train = [r for r in recs if r["kind"] == "train"][1:]
end = [r for r in recs if r["kind"] == "end"][-1]
tok_s = sum(r["tokens"] for r in train) / sum(r["step_time_s"] for r in train)
loss = [r["loss"] for r in recs if r["kind"] == "train"]
ranks = [int(k) / 1024 for k in re.findall(r"rank_peak_kib (\d+)", open(sys.argv[3]).read())]
assert ranks, f"no rank's peak in {sys.argv[3]}"
print(f"{sys.argv[2]} {end['peak_rss_mb']:.1f} {tok_s:.1f} {loss[0]:.6f} {loss[-1]:.6f} {min(ranks):.1f}")
EOF
}

declare -A peak tput low
report() {  # case baseline_name name...
  local c=$1 b=$2
  shift 2
  for n in "$@"; do
    awk -v n="${n}" -v p="${peak[$n]}" -v b="${peak[$b]}" \
      'BEGIN { printf "RESULT name=scale_%s_peak pft=%.1f baseline=%.1f unit=MiB ratio=%.3f\n", n, p, b, p / b }'
    awk -v n="${n}" -v p="${low[$n]}" -v b="${low[$b]}" \
      'BEGIN { printf "RESULT name=scale_%s_peak_smallest_rank pft=%.1f baseline=%.1f unit=MiB ratio=%.3f\n", n, p, b, p / b }'
    awk -v n="${n}" -v p="${tput[$n]}" -v b="${tput[$b]}" \
      'BEGIN { printf "RESULT name=scale_%s_throughput pft=%.1f baseline=%.1f unit=tok/s ratio=%.3f\n", n, p, b, p / b }'
  done
}
measure() {  # name args-for-run...
  local line
  line=$(run "$@")
  echo "# $line  (name peak_MiB_largest_rank tok/s first_loss last_loss peak_MiB_smallest_rank)"
  read -r _ peak[$1] tput[$1] _ _ low[$1] <<<"$line"
}

plain='precision: fp32, loss_chunk_rows: 0, activation_checkpointing: none'
for c in $cases; do
  case $c in
    smollm2_lora)
      echo "== smollm2_lora: SmolLM2-135M LoRA r8, seq 512, micro 2, 2 ranks x 1 thread, $steps steps"
      measure lora_base "$smollm2_model" 512 2 lora "$plain" "zero: 0"
      measure lora_bf16 "$smollm2_model" 512 2 lora \
        'precision: bf16, loss_chunk_rows: 0, activation_checkpointing: none' "zero: 0" \
        --set model.base_dtype=bf16
      measure lora_bf16_chunk "$smollm2_model" 512 2 lora \
        'precision: bf16, loss_chunk_rows: 256, activation_checkpointing: none' "zero: 0" \
        --set model.base_dtype=bf16
      measure lora_bf16_chunk_ckpt "$smollm2_model" 512 2 lora \
        'precision: bf16, loss_chunk_rows: 256, activation_checkpointing: all' "zero: 0" \
        --set model.base_dtype=bf16
      measure lora_fp32_ckpt "$smollm2_model" 512 2 lora \
        'precision: fp32, loss_chunk_rows: 0, activation_checkpointing: all' "zero: 0"
      report smollm2_lora lora_base lora_bf16 lora_bf16_chunk lora_bf16_chunk_ckpt lora_fp32_ckpt
      ;;
    smollm2_full)
      echo "== smollm2_full: SmolLM2-135M full fine-tuning, seq 512, micro 2, 2 ranks x 1 thread, $steps steps"
      measure full_base "$smollm2_model" 512 2 full "$plain" "zero: 0"
      measure full_zero1 "$smollm2_model" 512 2 full "$plain" "zero: 1"
      measure full_zero1_chunk_ckpt "$smollm2_model" 512 2 full \
        'precision: fp32, loss_chunk_rows: 256, activation_checkpointing: all' "zero: 1"
      measure full_ckpt "$smollm2_model" 512 2 full \
        'precision: fp32, loss_chunk_rows: 0, activation_checkpointing: all' "zero: 0"
      report smollm2_full full_base full_zero1 full_zero1_chunk_ckpt full_ckpt
      ;;
    llama05b)
      echo "== llama05b: generated 0.5B Llama, full fine-tuning, seq 1024, micro 1, 2 ranks x 1 thread, $steps steps"
      # The replicated baseline on 1 rank: every rank of a replicated run holds the same, and
      # two such ranks (about 12 GB each) do not fit a 24 GiB machine beside each other.
      NP=1 measure l05_base "$llama05b_model" 1024 1 full "$plain" "zero: 0"
      measure l05_zero1_chunk_ckpt "$llama05b_model" 1024 1 full \
        'precision: fp32, loss_chunk_rows: 256, activation_checkpointing: all' "zero: 1"
      report llama05b l05_base l05_zero1_chunk_ckpt
      ;;
    *) echo "scale_bench.sh: unknown case $c (smollm2_lora, smollm2_full, llama05b)" >&2; exit 2 ;;
  esac
done
