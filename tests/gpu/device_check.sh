#!/usr/bin/env bash
# device_check.sh: everything pft checks on a GPU, in one call to the lent GPU machine (<= 6 min).
#
#   tests/gpu/prepare.sh                     # here (CPU machine): build + bundle, ~25 MB
#   tests/gpu/rehearse.sh                    # here: the same check on a bare root (optional)
#   run(command="tests/gpu/device_check.sh", carry=[".cache/gpu-bundle"], timeout_s=420)
#
# The device image has torch 2.11 (CUDA 13) at /opt/torch/.venv, nvcc and CMake, but no network
# and none of pft's C/C++ libraries, and device time is scarce (15 minutes a session). So nothing
# is compiled there: tests/gpu/prepare.sh builds pft and the GPU test programs here (the cpu
# preset compiles and links the CUDA and NCCL paths against the same torch wheel) and bundles
# them with the Debian packages of every library they, mpirun and Open MPI's plugins load. This
# script then, each step logged with its elapsed time:
#   0. refuses a bundle built from other sources than this checkout's (MANIFEST's source hash)
#      or against another torch than the venv's;
#   1. unpacks the packages with `dpkg -x` into a private prefix (no root, no dpkg database) and
#      points the bundled programs (LD_LIBRARY_PATH: the prefix, torch's and CUDA's libraries
#      from the venv; python keeps the image's own libraries), Open MPI (OPAL_PREFIX,
#      OPAL_SYSCONFDIR) and launch/pft-mpirun (its bind shim) at it; every program must resolve
#      all its libraries and symbols there, or the check fails naming the missing ones;
#   2. requires a GPU: when torch sees none the check fails (it never passes by skipping);
#   3. runs the GPU tests: Model.CudaMatchesCpu, and the communicator and reducer cases on CUDA
#      tensors under 1 and 2 MPI ranks (MPI backend with staging, NCCL backend). A skipped test
#      fails the check, except the ones listed by name for the rank count (the NCCL deadline case
#      needs 2 ranks; 2 NCCL ranks need 2 GPUs); each program must pass a minimum number;
#   4. training parity: 10 steps in fp32 of tiny GPT-2 (full fine-tuning) and Llama (LoRA, GQA,
#      untied head) models on the CPU and on the GPU; every step's loss must agree within 1e-4
#      relative, and 2 ranks sharing the GPU (MPI backend) must agree with 1 rank the same way
#      (2e-3 with dist.grad_comm_dtype bf16), and the GPU runs with activation checkpointing
#      and 64-row loss chunks must agree with the plain CPU runs (1e-4);
#   5. benchmarks GPT-2 124M (bf16 autocast, seq 1024, synthetic packed data, AdamW, the largest
#      micro-batch of 32/16/8 that fits, one GPU) in pft and in PyTorch (tests/bench/ddp_bench.py:
#      eager, then torch.compile), printing tokens/s, MFU and the ratios. MFU counts
#      6N + 12*L*H*Q*T FLOPs per token (N parameters, L layers, H heads, Q head dim, T sequence
#      length) against 989 TFLOP/s (H100 SXM dense bf16; the H200 has the same peak).
# Lines `RESULT name=... pft=... baseline=... unit=... ratio=...` end the benchmark part. Steps
# that would overrun the budget (DEVICE_CHECK_BUDGET_S, default 360 s) are skipped and say so;
# every command has its own time limit, and a TERM still writes the log and logs.tar.gz.
# Exit status: 0 when every check of steps 1-4 passed (benchmarks are informative), else 1.
#
# Run directories, checkpoints and logs live under DEVICE_CHECK_WORK (default
# ${TMPDIR:-/tmp}/pft-device-check), not in $OUT: the tool brings back at most 8 files. $OUT gets
# device_check.log (this output) and logs.tar.gz (every step's log and metrics, no checkpoints).
#
# DEVICE_CHECK_REHEARSAL=1 runs the same steps on a machine without a GPU (tests/gpu/rehearse.sh
# does, in CI, on a root where the host's copies of the bundled packages are hidden): step 2
# accepts no GPU, step 3 runs the test programs (their CUDA cases skip), step 4 compares CPU
# with CPU, step 5 is skipped. It proves the bundle complete and this script's plumbing sound.
# Knobs: PFT_GPU_BUNDLE (default .cache/gpu-bundle), PFT_TORCH_VENV (default /opt/torch/.venv),
# DEVICE_CHECK_STEPS (default "unpack,gpu,test,parity,bench"), DEVICE_CHECK_BUDGET_S,
# DEVICE_CHECK_WORK, and DEVICE_CHECK_BENCH / DEVICE_CHECK_BENCH_DEVICE (step 5 on a smaller
# model, or on the CPU).
set -uo pipefail
t0=$SECONDS
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bundle="${PFT_GPU_BUNDLE:-$root/.cache/gpu-bundle}"
venv="${PFT_TORCH_VENV:-/opt/torch/.venv}"
rehearsal="${DEVICE_CHECK_REHEARSAL:-0}"
steps="${DEVICE_CHECK_STEPS:-unpack,gpu,test,parity,bench}"
((rehearsal)) && steps="${steps//bench/}"
budget="${DEVICE_CHECK_BUDGET_S:-360}"
export TMPDIR=/tmp  # Open MPI's and PMIx's sockets live there: keep their paths short
work="${DEVICE_CHECK_WORK:-${TMPDIR:-/tmp}/pft-device-check}"
out="${OUT:-$root/build/device-check-out}"
prefix="$work/prefix"
rm -rf "$work"
mkdir -p "$out" "$work"
exec > >(tee "$out/device_check.log") 2>&1
tee_pid=$!

log() { printf '[device_check %4ds] %s\n' $((SECONDS - t0)) "$*"; }
want() { [[ ",$steps," == *",$1,"* ]]; }
left() { echo $((budget - (SECONDS - t0))); }
status=0
fail() { log "FAILED: $*"; status=1; }
finish() {
  (cd "$work" && find . \( -name '*.log' -o -name '*.jsonl' -o -name '*.yaml' -o -name '*.json' \) \
     -not -path './prefix/*' -print0 | tar -czf "$out/logs.tar.gz" --null -T -) 2>/dev/null
  log "done: status $status$( ((rehearsal)) && echo ' (CPU rehearsal)')"
  exec >&- 2>&-
  wait "$tee_pid" 2>/dev/null
  exit "$status"
}
trap 'fail "terminated (a signal: the call'"'"'s timeout_s?)"; finish' TERM INT
# limit SECONDS CMD...: CMD with a time limit (and never past the budget's end plus 30 s).
limit() {
  local t="$1"; shift
  local l=$(($(left) + 30))
  ((l < t)) && t=$l
  ((t < 10)) && t=10
  timeout -k 10 "$t" "$@"
}

cd "$root" || exit 1
log "host $(hostname), $(nproc) cores; $(grep -m1 PRETTY_NAME /etc/os-release 2>/dev/null | cut -d= -f2)"
[[ -f "$bundle/MANIFEST" ]] || {
  fail "no bundle at $bundle: run tests/gpu/prepare.sh here first and carry .cache/gpu-bundle"; finish; }
log "bundle: $(head -1 "$bundle/MANIFEST"), $(du -sh "$bundle" | cut -f1)"
py="$venv/bin/python3"
[[ -x "$py" ]] || { fail "no python at $py (set PFT_TORCH_VENV)"; finish; }
for t in ldd timeout tar; do command -v "$t" >/dev/null || { fail "no $t on this machine"; finish; }; done
# ---- 0. The bundle matches this checkout and this torch ---------------------------------------
want_src="$(sed -n 's/^sources //p' "$bundle/MANIFEST")"
have_src="$(bash "$here/prepare.sh" --source-hash)"
if [[ "$want_src" != "$have_src" ]]; then
  fail "the bundle was built from other sources ($want_src) than this checkout ($have_src): rerun tests/gpu/prepare.sh and carry the new bundle"
  finish
fi
torch_line="$("$py" -c 'import torch; print(torch.__version__.split("+")[0], "cuda", torch.version.cuda, "gpus", torch.cuda.device_count())')"
echo "[torch] $torch_line; $(ldd --version 2>&1 | head -1)"
want_torch="$(sed -n 's/^torch //p' "$bundle/MANIFEST")"
if [[ "${torch_line% gpus *}" != "$want_torch" ]]; then
  fail "the bundle was built against torch $want_torch, this venv has ${torch_line% gpus *}"
  finish
fi
gpus="${torch_line##* }"
[[ "$gpus" =~ ^[0-9]+$ ]] || gpus=0

# ---- 1. Unpack the Debian packages, point everything at them ---------------------------------
u="$prefix/usr"
lib="$u/lib/x86_64-linux-gnu"
if want unpack; then
  mkdir -p "$prefix"
  for d in "$bundle"/debs/*.deb; do
    if command -v dpkg-deb >/dev/null; then
      dpkg-deb -x "$d" "$prefix"
    else  # a .deb is an ar archive holding data.tar.{xz,zst,gz}
      member="$(ar t "$d" | grep '^data.tar')"
      case "$member" in *.xz) z=-J ;; *.zst) z=--zstd ;; *) z=-z ;; esac
      ar p "$d" "$member" | tar -x "$z" -f - -C "$prefix"
    fi || { fail "unpacking $d"; finish; }
  done
  # Links update-alternatives would have made.
  for t in mpirun mpiexec; do ln -sf orterun "$u/bin/$t"; done
  log "unpacked $(ls "$bundle"/debs/*.deb | wc -l) packages into $prefix ($(du -sh "$prefix" | cut -f1))"
fi
# torch's own libraries and the CUDA libraries of its wheels (no host CUDA toolkit needed).
torch_lib="$("$py" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
site="$(dirname "$(dirname "$torch_lib")")"
nvidia_libs="$(find "$site/nvidia" -mindepth 2 -maxdepth 3 -type d -name lib 2>/dev/null | sort | paste -sd:)"
export PATH="$u/bin:$PATH"
# Only the bundled programs (and mpirun, which passes it to the ranks) get the prefix's
# libraries: python, torch.compile and the image's compilers keep the image's own.
pfx_ld="$lib:$lib/openmpi/lib:$torch_lib${nvidia_libs:+:$nvidia_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
P() { LD_LIBRARY_PATH="$pfx_ld" "$@"; }
export OPAL_PREFIX="$u"                                # Open MPI finds its plugins and help here
export OPAL_SYSCONFDIR="$prefix/etc/openmpi"           # and Debian's openmpi-mca-params.conf
export PMIX_MCA_mca_base_component_path="$lib/pmix2/lib/pmix"
export OMPI_MCA_mca_base_component_show_load_errors=0  # plugins for fabrics this box lacks
export PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1
export PFT_BIND_SHIM="$bundle/lib/libpft_bind_iface.so"
# fp32 means fp32 in the parity checks (NGC-style images may turn TF32 on behind torch's back).
export NVIDIA_TF32_OVERRIDE=0
unset TORCH_ALLOW_TF32_CUBLAS_OVERRIDE
bin="$bundle/bin"
if want unpack; then
  missing="$(for p in "$bin"/* "$PFT_BIND_SHIM" "$u/bin/orterun" "$u/bin/orted"; do
               P ldd -r "$p" 2>&1 | grep -E 'not found|undefined symbol' | sed "s|^|$(basename "$p"): |"; done)"
  if [[ -n "$missing" ]]; then
    echo "$missing" | head -20
    fail "libraries or symbols not found (an older glibc? add packages in tests/gpu/prepare.sh)"; finish
  fi
  version="$(P "$bin/pft" --version 2>&1)" || { echo "$version"; fail "pft --version"; finish; }
  log "every program resolves its libraries: $version"
fi

# ---- 2. A GPU, or a rehearsal --------------------------------------------------------------
command -v nvidia-smi >/dev/null &&
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/[gpu] /'
if want gpu && ((gpus == 0)); then
  if ((rehearsal)); then
    log "no GPU: CPU rehearsal (CUDA cases skip, parity compares CPU with CPU, no benchmark)"
  else
    fail "torch sees no GPU (driver, CUDA_VISIBLE_DEVICES?): nothing here would test the GPU path"
    finish
  fi
fi

# ---- 3. GPU tests ---------------------------------------------------------------------------
# run_tests NAME NP MIN_PASSED ALLOWED_SKIPS PROGRAM [gtest args]: one program under NP ranks
# (0: without mpirun). It must exit 0 and pass at least MIN_PASSED tests (rank 0's count); a
# skipped test whose name does not match the regex ALLOWED_SKIPS fails the check (a rehearsal
# has no GPU: there everything may skip, and nothing need pass).
run_tests() {
  local name="$1" np="$2" min="$3" allowed="$4" prog="$5"; shift 5
  local logf="$work/$name.log" rc=0
  if ((np == 0)); then
    PFT_TEST_MARKER_DIR="$work" P limit 150 "$prog" --gtest_color=no "$@" >"$logf" 2>&1 || rc=$?
  else
    P limit 150 "$root/tests/mpi_run.sh" "$np" "$prog" --gtest_color=no "$@" >"$logf" 2>&1 || rc=$?
  fi
  local done='[A-Za-z0-9_/.]+ \([0-9]+ ms\)$' passed skipped bad
  passed="$(grep -cE "^\[       OK \] $done" "$logf")"
  skipped="$(grep -cE "^\[  SKIPPED \] $done" "$logf")"
  bad="$(grep -E "^\[  SKIPPED \] $done" "$logf" | awk '{print $4}' | grep -vE "^($allowed)\$" | sort -u)"
  if ((rc != 0)); then
    grep -E '^\[  FAILED|Failure|error' "$logf" | head -20
    fail "$name: exit $rc (log $name.log)"
  elif ((passed + skipped == 0)); then
    fail "$name: no test ran (log $name.log)"
  elif ((!rehearsal)) && [[ -n "$bad" ]]; then
    fail "$name: skipped on a GPU machine: $(echo $bad) (log $name.log)"
  elif ((!rehearsal && passed < min)); then
    fail "$name: $passed test(s) passed, expected at least $min (log $name.log)"
  else
    log "$name: $passed passed, $skipped skipped"
  fi
}
if want test; then
  nccl2='NcclCommunicator\.[A-Za-z]+|ReducerCuda\.NcclBackend'  # 2 NCCL ranks need 2 GPUs
  ((gpus >= 2)) && nccl2='^$'
  run_tests model_cuda 0 1 '^$' "$bin/model_test" --gtest_filter='Model.CudaMatchesCpu'
  run_tests comm_gpu.np1 1 3 'NcclCommunicator\.DeadlineAbortsAndThrowsOnWaitingRanks' "$bin/comm_gpu_test"
  run_tests reducer_gpu.np1 1 2 '^$' "$bin/reducer_gpu_test"
  run_tests comm_gpu.np2 2 1 "$nccl2" "$bin/comm_gpu_test"
  run_tests reducer_gpu.np2 2 1 "$nccl2" "$bin/reducer_gpu_test"
fi

# ---- 4. Training parity: CPU vs GPU, 1 vs 2 ranks ------------------------------------------
# losses A.jsonl B.jsonl TOL: every train step's loss of B within TOL relative of A's.
losses() {
  "$py" - "$@" <<'EOF'
import json, sys
def read(p):
    return {r["step"]: r["loss"] for r in map(json.loads, open(p)) if r.get("kind") == "train"}
a, b, tol = read(sys.argv[1]), read(sys.argv[2]), float(sys.argv[3])
if not a or a.keys() != b.keys():
    print(f"steps differ: {sorted(a)} vs {sorted(b)}"); sys.exit(1)
worst = max(abs(b[s] - a[s]) / max(abs(a[s]), 1e-12) for s in a)
print(f"{len(a)} steps, loss {a[min(a)]:.5f} -> {a[max(a)]:.5f}, max relative difference {worst:.2e}")
sys.exit(0 if worst <= tol else 1)
EOF
}
parity_cfg() {  # name family method -> $work/$name.yaml
  local model
  case "$2" in
    gpt2) model="{family: gpt2, vocab_size: 258, d_model: 64, n_layers: 2, n_heads: 4, max_seq_len: 64}" ;;
    llama) model="{family: llama, vocab_size: 258, d_model: 64, n_layers: 2, n_heads: 4, n_kv_heads: 2, max_seq_len: 64, tie_embeddings: false}" ;;
  esac
  cat >"$work/$1.yaml" <<EOF
run: {dir: $work/runs/$1, seed: 7, log_every: 5}
model: $model
data: {seq_len: 64, source: synthetic, tokenizer: byte}
train: {method: $3, steps: 10, global_batch_size: 8, micro_batch_size: 4, lr: 1.0e-3,
        schedule: constant, warmup_steps: 0, weight_decay: 0.1, grad_clip: 1.0, precision: fp32}
peft: {lora_rank: 4, lora_targets: [q_proj, v_proj, down_proj]}
dist: {backend: auto}
checkpoint: {every_steps: 0}
EOF
}
train() {  # name cfg where(cpu|gpu) np [--set ...]
  local name="$1" cfg="$2" where="$3" np="$4"; shift 4
  local cmd=(limit 120 "$bin/pft" train "$cfg" --set "run.dir=$work/runs/$name" "$@")
  ((np > 1)) && cmd=(limit 120 "$root/launch/pft-mpirun" -np "$np" "${cmd[@]:2}")
  if [[ "$where" == cpu ]]; then
    CUDA_VISIBLE_DEVICES="" P "${cmd[@]}" >"$work/$name.log" 2>&1
  else
    P "${cmd[@]}" >"$work/$name.log" 2>&1
  fi || { tail -5 "$work/$name.log"; fail "training run $name (log $name.log)"; return 1; }
  local device=cpu
  ((gpus > 0)) && [[ "$where" == gpu ]] && device=cuda
  if ! grep -qE "rank\(s\) on $device" "$work/$name.log"; then
    fail "$name did not run on $device: $(grep -m1 'rank(s) on' "$work/$name.log")"; return 1
  fi
}
if want parity; then
  for case in "gpt2 full" "llama lora"; do
    read -r fam method <<<"$case"
    n="parity-$fam-$method"
    parity_cfg "$n" "$fam" "$method"
    train "$n-cpu" "$work/$n.yaml" cpu 1 && train "$n-gpu" "$work/$n.yaml" gpu 1 || continue
    if r="$(losses "$work/runs/$n-cpu/metrics.jsonl" "$work/runs/$n-gpu/metrics.jsonl" 1e-4)"; then
      log "parity $fam $method, CPU vs GPU: $r"
    else
      fail "parity $fam $method, CPU vs GPU: $r"
    fi
  done
  # Activation checkpointing and a small loss chunk on the GPU against the plain CPU run.
  for fam in gpt2 llama; do
    n="parity-$fam-$([[ $fam == gpt2 ]] && echo full || echo lora)"
    [[ -f "$work/runs/$n-cpu/metrics.jsonl" ]] || continue
    train "$n-gpu-ckpt" "$work/$n.yaml" gpu 1 --set train.activation_checkpointing=all \
      --set train.loss_chunk_rows=64 || continue
    if r="$(losses "$work/runs/$n-cpu/metrics.jsonl" "$work/runs/$n-gpu-ckpt/metrics.jsonl" 1e-4)"; then
      log "parity $fam, CPU vs GPU with activation checkpointing and 64-row loss chunks: $r"
    else
      fail "parity $fam, CPU vs GPU with activation checkpointing and loss chunks: $r"
    fi
  done
  # 2 ranks sharing the GPU (MPI backend: NCCL needs a GPU per rank), fp32 and bf16 gradient
  # communication (dist.grad_comm_dtype; bf16 rounds each rank's gradient: 2e-3).
  n="parity-gpt2-full"
  for v in "fp32 1e-4" "bf16 2e-3"; do
    read -r dt tol <<<"$v"
    train "$n-gpu-np2-$dt" "$work/$n.yaml" gpu 2 --set dist.backend=mpi --set "dist.grad_comm_dtype=$dt" || continue
    if r="$(losses "$work/runs/$n-gpu/metrics.jsonl" "$work/runs/$n-gpu-np2-$dt/metrics.jsonl" "$tol")"; then
      log "parity gpt2 full, 1 GPU rank vs 2 ranks sharing it (MPI backend, $dt gradients): $r"
    else
      fail "parity gpt2 full, 1 vs 2 ranks ($dt gradients): $r"
    fi
  done
fi

# ---- 5. GPT-2 124M: pft vs PyTorch eager vs torch.compile -----------------------------------
if want bench; then
  pft="$bin/pft"
  # DEVICE_CHECK_BENCH="seq layers heads d_model vocab steps warmup micro-batches" shrinks the
  # model to try this part on a CPU machine (with DEVICE_CHECK_BENCH_DEVICE=cpu).
  read -r seq layers heads d vocab nsteps warmup micro_candidates <<<"${DEVICE_CHECK_BENCH:-1024 12 12 768 50257 25 5 32,16,8}"
  bench_device="${DEVICE_CHECK_BENCH_DEVICE:-cuda}"
  cfg="$work/gpt2-124m.yaml"
  write_cfg() {  # micro_batch steps run_dir
    cat >"$cfg" <<EOF
run: {dir: $3, seed: 1234, log_every: 1000}
model: {family: gpt2, vocab_size: $vocab, d_model: $d, n_layers: $layers, n_heads: $heads, max_seq_len: $seq}
data: {seq_len: $seq, source: synthetic, tokenizer: byte}
train: {steps: $2, global_batch_size: $1, micro_batch_size: $1, lr: 6.0e-4, schedule: constant,
        warmup_steps: 0, weight_decay: 0.1, grad_clip: 1.0, precision: bf16}
dist: {backend: auto}
checkpoint: {every_steps: 0}
EOF
  }
  rate() {  # metrics.jsonl -> tok/s over steps after warmup
    "$py" -c '
import json, sys
t = [r for r in map(json.loads, open(sys.argv[1])) if r["kind"] == "train" and r["step"] > int(sys.argv[2])]
print("%.1f" % (sum(r["tokens"] for r in t) / sum(r["step_time_s"] for r in t)))' "$1" "$warmup"
  }
  params="$("$py" -c "
v, d, L, T = $vocab, $d, $layers, $seq
print(v * d + T * d + L * (12 * d * d + 13 * d) + 2 * d)")"  # tied head counted once
  flops_per_token=$((6 * params + 12 * layers * heads * (d / heads) * seq))
  mfu() { "$py" -c "print(f'{$1 * $flops_per_token / 989e12 * 100:.1f}')"; }
  micro=""
  for b in ${micro_candidates//,/ }; do  # the largest micro-batch that fits: 3 steps each
    (($(left) < 150)) && break
    write_cfg "$b" 3 "$work/runs/probe-$b"
    if P limit 90 "$pft" train "$cfg" >"$work/probe-$b.log" 2>&1; then micro=$b; break; fi
    log "micro-batch $b does not fit (or failed): $(grep -m1 -iE 'out of memory|error' "$work/probe-$b.log" | cut -c1-160)"
  done
  if [[ -z "$micro" ]]; then
    log "SKIPPED benchmark: no micro-batch ran ($(left) s left)"
  else
    log "GPT-2 (d $d, $layers layers, vocab $vocab): $params parameters, $flops_per_token FLOPs/token, micro-batch $micro x $seq, bf16, $nsteps steps ($warmup untimed)"
    write_cfg "$micro" "$nsteps" "$work/runs/pft-bench"
    if P limit 120 "$pft" train "$cfg" >"$work/pft-bench.log" 2>&1; then
      p="$(rate "$work/runs/pft-bench/metrics.jsonl")"
      log "pft:            $p tok/s, MFU $(mfu "$p")%"
    else
      tail -5 "$work/pft-bench.log"; log "pft benchmark run failed"
    fi
    base_args=(--vocab "$vocab" --d-model "$d" --layers "$layers" --heads "$heads" --seq "$seq"
               --global-batch "$micro" --micro-batch "$micro" --steps "$nsteps" --warmup "$warmup"
               --device "$bench_device" --dtype bf16 --threads 4)
    e=""; c=""
    if limit 120 "$py" "$root/tests/bench/ddp_bench.py" "${base_args[@]}" >"$work/eager.log" 2>&1; then
      e="$(sed -n 's/^BASELINE tok_per_s=\([0-9.]*\).*/\1/p' "$work/eager.log")"
      log "torch eager:    $e tok/s, MFU $(mfu "$e")%"
    else
      tail -5 "$work/eager.log"; log "torch eager run failed"
    fi
    if (($(left) < 150)); then
      log "SKIPPED torch.compile: $(left) s of the budget left"
    elif timeout "$(($(left) - 20))" "$py" "$root/tests/bench/ddp_bench.py" "${base_args[@]}" --compile \
        >"$work/compile.log" 2>&1; then
      c="$(sed -n 's/^BASELINE tok_per_s=\([0-9.]*\).*/\1/p' "$work/compile.log")"
      log "torch.compile:  $c tok/s, MFU $(mfu "$c")%"
    else
      tail -5 "$work/compile.log"; log "torch.compile run failed or ran out of time"
    fi
    ratio() { "$py" -c "print(f'{$1 / $2:.3f}')"; }
    [[ -n "${p:-}" && -n "$e" ]] && echo "RESULT name=gpt2_124m_bf16_vs_eager pft=$p baseline=$e unit=tok/s ratio=$(ratio "$p" "$e")"
    [[ -n "${p:-}" && -n "$c" ]] && echo "RESULT name=gpt2_124m_bf16_vs_compile pft=$p baseline=$c unit=tok/s ratio=$(ratio "$p" "$c")"
  fi
fi
finish
