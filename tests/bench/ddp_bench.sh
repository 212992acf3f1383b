#!/usr/bin/env bash
# ddp_bench.sh: data-parallel training throughput, pft vs PyTorch DDP, side by side (not a test).
#
#   tests/bench/ddp_bench.sh [tiny|small|all]          (default: all)
#
# The same model (GPT-2 family), data (pft's synthetic stream, packed documents), global batch,
# sequence length, optimizer (AdamW, clip 1.0) and step count, trained by
#   pft:      launch/pft-mpirun -np 2 pft train <generated config> --set run.threads=1
#   baseline: torchrun --nproc_per_node 2 tests/bench/ddp_bench.py (DDP over gloo, SDPA,
#             fused AdamW, 1 torch thread per rank), torch 2.11 from the same venv.
# Both time the steps after the first `warmup` ones on rank 0 (pft: metrics.jsonl step_time_s;
# baseline: per-step perf_counter). The two alternate for BENCH_ROUNDS rounds (default 2) and the
# best round of each counts, which damps the noise of a shared machine. Configs (CPU, 2 ranks x 1
# thread):
#   tiny:  d 128, 2 layers, 4 heads, seq 128, vocab 512, global batch 2 (1 row per rank: the
#          framework-overhead regime), 60 steps
#   small: d 256, 4 layers, 4 heads, seq 256, vocab 50257 (GPT-2), global batch 8 (4 per rank), 12 steps
# Last line per config:
#   RESULT name=ddp_<cfg> pft=<tok/s> baseline=<tok/s> unit=tok/s ratio=<pft/baseline>
#
# Environment: PFT_BUILD_DIR (default build/cpu; needs bin/pft), PFT_VENV (default
# ~/.cache/pft/venv-torch2.11.0), BENCH_ROUNDS, BENCH_STEPS (override the step count),
# BENCH_MPIRUN_ARGS (extra mpirun flags for pft, e.g. "--bind-to none").
# Results: docs/performance.md, section "Data parallel".
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
which_bench="${1:-all}"
build="${PFT_BUILD_DIR:-$root/build/cpu}"
pft="$build/bin/pft"
venv="${PFT_VENV:-$HOME/.cache/pft/venv-torch2.11.0}"
py="$venv/bin/python3"
rounds="${BENCH_ROUNDS:-2}"
np=2
[[ -x "$pft" ]] || { echo "ddp_bench.sh: $pft not found; build it (cluster/build.sh) or set PFT_BUILD_DIR" >&2; exit 2; }
[[ -x "$py" ]] || { echo "ddp_bench.sh: $py not found; run cluster/install-deps.sh or set PFT_VENV" >&2; exit 2; }

work="$(mktemp -d "${TMPDIR:-/tmp}/pft-ddp-bench-XXXXXX")"
trap 'rm -rf "$work"' EXIT

# name vocab d_model layers heads seq global micro steps warmup
declare -A configs=(
  [tiny]="512 128 2 4 128 2 1 60 10"
  [small]="50257 256 4 4 256 8 4 12 3"
)

# tok/s of the steps after `warmup` in a metrics.jsonl.
pft_rate() {
  "$py" - "$1" "$2" <<'EOF'
import json, sys
path, warmup = sys.argv[1], int(sys.argv[2])
lines = [json.loads(l) for l in open(path)]
train = [l for l in lines if l["kind"] == "train" and l["step"] > warmup]
comm = sum(l["comm_time_s"] for l in train) / max(1, len(train))
step = sorted(l["step_time_s"] for l in train)[len(train) // 2]
print(f'{sum(l["tokens"] for l in train) / sum(l["step_time_s"] for l in train):.1f} '
      f'{step:.4f} {comm:.4f}')
EOF
}

run_pft() {  # cfg -> prints "tok/s median_step_s mean_comm_s"
  local cfg="$1" vocab d layers heads seq global micro steps warmup
  read -r vocab d layers heads seq global micro steps warmup <<<"${configs[$cfg]}"
  steps="${BENCH_STEPS:-$steps}"
  local dir="$work/pft-$cfg"
  rm -rf "$dir"
  cat >"$work/$cfg.yaml" <<EOF
run: {dir: $dir, seed: 1234, threads: 1, log_every: 1000}
model: {family: gpt2, vocab_size: $vocab, d_model: $d, n_layers: $layers, n_heads: $heads, max_seq_len: $seq}
data: {seq_len: $seq, source: synthetic, tokenizer: byte}
train: {steps: $steps, global_batch_size: $global, micro_batch_size: $micro, lr: 1.0e-3,
        schedule: constant, warmup_steps: 0, weight_decay: 0.1, grad_clip: 1.0, precision: fp32}
dist: {backend: mpi}
EOF
  # Each rank in a session of its own (setsid), as torchrun starts its workers: with Linux
  # autogroup scheduling (sched_autogroup_enabled=1 here) a session is what gets a fair share of a
  # busy machine, so ranks that share the launcher's session would get less CPU than the
  # baseline's. See docs/performance.md, "Data parallel".
  # shellcheck disable=SC2086
  "$root/launch/pft-mpirun" -np "$np" ${BENCH_MPIRUN_ARGS:-} setsid -w "$pft" train "$work/$cfg.yaml" \
    >"$work/pft-$cfg.log" 2>&1 || { cat "$work/pft-$cfg.log" >&2; exit 3; }
  pft_rate "$dir/metrics.jsonl" "$warmup"
}

run_baseline() {  # cfg -> prints "tok/s median_step_s"
  local cfg="$1" vocab d layers heads seq global micro steps warmup
  read -r vocab d layers heads seq global micro steps warmup <<<"${configs[$cfg]}"
  steps="${BENCH_STEPS:-$steps}"
  OMP_NUM_THREADS=1 "$py" -m torch.distributed.run --standalone --nproc_per_node "$np" \
    "$here/ddp_bench.py" --vocab "$vocab" --d-model "$d" --layers "$layers" --heads "$heads" \
    --seq "$seq" --global-batch "$global" --micro-batch "$micro" --steps "$steps" \
    --warmup "$warmup" --threads 1 >"$work/base-$cfg.log" 2>&1 || { cat "$work/base-$cfg.log" >&2; exit 3; }
  grep '^baseline:' "$work/base-$cfg.log" >&2
  sed -n 's/^BASELINE tok_per_s=\([0-9.]*\) steps=[0-9]* step_s_median=\([0-9.]*\)$/\1 \2/p' \
    "$work/base-$cfg.log"
}

best() { printf '%s\n' "$@" | sort -g | tail -1; }

bench() {
  local cfg="$1" p b pft_all=() base_all=()
  echo "== ddp_$cfg: ${configs[$cfg]} (vocab d layers heads seq global micro steps warmup), $np ranks x 1 thread"
  for ((r = 1; r <= rounds; ++r)); do
    read -r p pstep pcomm <<<"$(run_pft "$cfg")"
    read -r b bstep <<<"$(run_baseline "$cfg")"
    printf '  round %d: pft %10.1f tok/s (median step %.4f s, comm wait %.4f s) | baseline %10.1f tok/s (median step %.4f s)\n' \
      "$r" "$p" "$pstep" "$pcomm" "$b" "$bstep"
    pft_all+=("$p")
    base_all+=("$b")
  done
  p="$(best "${pft_all[@]}")"
  b="$(best "${base_all[@]}")"
  echo "  best: pft $p tok/s, baseline $b tok/s"
  echo "RESULT name=ddp_$cfg pft=$p baseline=$b unit=tok/s ratio=$("$py" -c "print(f'{$p / $b:.3f}')")"
}

case "$which_bench" in
  tiny | small) bench "$which_bench" ;;
  all) bench tiny; bench small ;;
  *) echo "usage: $0 [tiny|small|all]" >&2; exit 2 ;;
esac
