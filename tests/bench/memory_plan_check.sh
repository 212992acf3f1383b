#!/usr/bin/env bash
# The memory planner (`pft config show CONFIG --memory`, src/train/memory_plan.h) against the
# memory `pft train` really uses, for a few configs on 1 rank (issue 20, item 6).
#
# For each config: the planner's total (bytes) against the growth of `pft train`'s anonymous
# memory (3 steps): its peak RssAnon minus the peak RssAnon of `pft config show` on the same config,
# both sampled from /proc/PID/status every 10 ms. `pft config show` loads the same binary with
# libtorch and its operator registry, parses the config and exits, so the difference is what
# training allocates: the planner's parameters, gradients, optimizer state, activations,
# logits, plus what it leaves out (allocator slack, MKL's GEMM buffers, the data pipeline, the
# final checkpoint).
#
# Why anonymous memory and not the whole resident set (VmHWM, /usr/bin/time's "Maximum resident
# set size"): the resident set also counts file-backed pages, the code of libtorch and its
# libraries, which the planner does not model and which the two processes touch at different
# times. `pft config show` touches about 90 MiB of library pages in its exit handlers that
# `pft train` touches during its steps, so its VmHWM peaks at exit (anonymous 179 MiB + file
# 281 MiB) and the difference of the two VmHWMs reads about 85 MiB short of what training
# allocated (docs/performance.md, "Memory planner"). Both VmHWMs are printed too.
#
# Prints
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

# name -> "family vocab d_model layers heads seq micro method extra-train-keys". The GPT-2 configs
# are the ones the planner's slack term was fitted to (memory_plan.h); the Llama ones check it.
declare -A configs=(
  [gpt2_tiny_full]="gpt2 258 128 2 4 256 4 full"
  [gpt2_20m_full]="gpt2 50257 256 6 4 256 4 full"
  [gpt2_20m_lora]="gpt2 50257 256 6 4 256 4 lora"
  [gpt2_20m_full_fused_ckpt]="gpt2 50257 256 6 4 256 4 full loss_chunk_rows: 0, activation_checkpointing: all,"
  [gpt2_20m_full_seq512_micro8]="gpt2 50257 256 6 4 512 8 full"
  [llama_40m_full]="llama 32000 384 8 6 384 4 full"
  [llama_40m_lora_seq768]="llama 32000 384 8 6 768 4 lora"
)
order=(gpt2_tiny_full gpt2_20m_full gpt2_20m_lora gpt2_20m_full_fused_ckpt gpt2_20m_full_seq512_micro8
       llama_40m_full llama_40m_lora_seq768)

# peak_kib COMMAND... -> "<peak RssAnon KiB> <VmHWM KiB>" of the command (sampled every 10 ms with
# bash builtins only, so the sampler stays out of the measured process's way; the command's output
# goes to $work/log).
peak_kib() {
  "$@" >"$work/log" 2>&1 &
  local pid=$! anon=0 hwm=0 key value _
  while kill -0 "$pid" 2>/dev/null; do
    while read -r key value _; do
      case "$key" in
        RssAnon:) ((value > anon)) && anon=$value ;;
        VmHWM:) ((value > hwm)) && hwm=$value ;;
      esac
    done <"/proc/$pid/status" 2>/dev/null || true
    sleep 0.01
  done
  wait "$pid" || { cat "$work/log" >&2; exit 3; }
  echo "$anon $hwm"
}

for name in "${order[@]}"; do
  read -r family vocab d layers heads seq micro method extra <<<"${configs[$name]}"
  cfg="$work/$name.yaml"
  cat >"$cfg" <<YAML
run: {dir: $work/run-$name, seed: 1234, threads: 1, log_every: 1000}
model: {family: $family, vocab_size: $vocab, d_model: $d, n_layers: $layers, n_heads: $heads, max_seq_len: $seq}
data: {seq_len: $seq, source: synthetic, tokenizer: byte}
train: {method: $method, steps: 3, global_batch_size: $micro, micro_batch_size: $micro, lr: 1.0e-3,
        $extra schedule: constant, warmup_steps: 0, precision: fp32}
checkpoint: {async: false}
YAML
  planned=$("$pft" config show "$cfg" --memory | sed -n 's/^  total .*(\([0-9]*\) B)$/\1/p')
  read -r base_anon base_hwm < <(peak_kib "$pft" config show "$cfg")
  read -r train_anon train_hwm < <(peak_kib "$pft" train "$cfg")
  [[ -n "${base_anon:-}" && -n "${train_anon:-}" ]] || { echo "memory_plan_check.sh: $name: no measurement" >&2; exit 3; }
  echo "# $name: planned $planned B; peak RssAnon: pft train $train_anon KiB, pft config show $base_anon KiB; VmHWM: $train_hwm KiB, $base_hwm KiB"
  "$pft" config show "$cfg" --memory | sed 's/^/#   /'
  awk -v n="$name" -v p="$planned" -v t="$train_anon" -v b="$base_anon" 'BEGIN {
    m = (t - b) / 1024; printf "RESULT name=memory_plan_%s pft=%.1f baseline=%.1f unit=MiB ratio=%.3f\n", n, p / 1048576, m, (p / 1048576) / m }'
done
