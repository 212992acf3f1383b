#!/usr/bin/env bash
# device_check.sh: everything pft checks on a GPU, in one call to the lent GPU machine (<= 8 min).
#
#   run(command="tests/gpu/device_check.sh", carry=[".cache/gpu-debs"], timeout_s=480)
#
# The device image has torch 2.11 (CUDA 13) at /opt/torch/.venv, nvcc, CMake and a C++ compiler,
# but no network and none of pft's C/C++ libraries. First, on a Debian 12 machine with network,
#   cluster/fetch-gpu-debs.sh            # -> .cache/gpu-debs/*.deb (git-ignored, ~35 MB)
# and carry that folder. Steps (each logged with its elapsed time; the log is also written to
# $OUT/device_check.log):
#   1. unpack the .debs with `dpkg -x` into a private prefix (no root, no dpkg database) and
#      point PATH, LD_LIBRARY_PATH (runtime and link time), pkg-config, Open MPI (OPAL_PREFIX) and
#      HDF5's h5cc at it;
#   2. configure the `cuda` preset against /opt/torch/.venv's torch (reference tests off, GPU tests
#      on) and build pft plus every test binary labelled gpu;
#   3. run the gpu-labelled tests (ctest -L gpu);
#   4. benchmark GPT-2 124M (bf16 autocast, seq 1024, synthetic packed data, AdamW, the largest
#      micro-batch of 32/16/8 that fits, one GPU) in pft and in PyTorch (tests/bench/ddp_bench.py:
#      eager, then torch.compile), printing tokens/s, MFU and the ratios. MFU counts
#      6N + 12*L*H*Q*T FLOPs per token (N parameters, L layers, H heads, Q head dim, T sequence
#      length) against 989 TFLOP/s (H100 SXM dense bf16; the H200 has the same peak).
# Lines `RESULT name=... pft=... baseline=... unit=tok/s ratio=...` end the benchmark part. Steps
# that would overrun the budget (DEVICE_CHECK_BUDGET_S, default 470 s) are skipped and say so.
# Exit status: 0 when the build and the gpu tests passed (benchmarks are informative), else 1.
#
# Knobs: PFT_GPU_DEBS (default .cache/gpu-debs), PFT_TORCH_VENV (default /opt/torch/.venv),
# DEVICE_CHECK_STEPS (default "unpack,configure,build,test,bench"; e.g. "unpack,configure" to
# try the packaging on a CPU machine), DEVICE_CHECK_BUILD_DIR (default build/cuda),
# DEVICE_CHECK_BUDGET_S, and DEVICE_CHECK_BENCH / DEVICE_CHECK_BENCH_DEVICE (a smaller model on
# the CPU, to try the benchmark part without a GPU; see step 4).
set -uo pipefail
t0=$SECONDS
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
debs="${PFT_GPU_DEBS:-$root/.cache/gpu-debs}"
venv="${PFT_TORCH_VENV:-/opt/torch/.venv}"
steps="${DEVICE_CHECK_STEPS:-unpack,configure,build,test,bench}"
budget="${DEVICE_CHECK_BUDGET_S:-470}"
build="${DEVICE_CHECK_BUILD_DIR:-$root/build/cuda}"
out="${OUT:-$root/build/device-check-out}"
prefix="${TMPDIR:-/tmp}/pft-gpu-prefix"
mkdir -p "$out"
exec > >(tee -a "$out/device_check.log") 2>&1

log() { printf '[device_check %4ds] %s\n' $((SECONDS - t0)) "$*"; }
want() { [[ ",$steps," == *",$1,"* ]]; }
left() { echo $((budget - (SECONDS - t0))); }
status=0
fail() { log "FAILED: $*"; status=1; }

cd "$root" || exit 1
log "host $(hostname), $(nproc) cores; $(grep -m1 PRETTY_NAME /etc/os-release 2>/dev/null | cut -d= -f2)"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/[gpu] /'
py="$venv/bin/python3"
[[ -x "$py" ]] || { log "no python at $py (set PFT_TORCH_VENV)"; exit 1; }
"$py" -c 'import torch; print("[torch]", torch.__version__, "cuda", torch.version.cuda, "gpus", torch.cuda.device_count())'

# ---- 1. Unpack the Debian packages ---------------------------------------------------------
if want unpack; then
  compgen -G "$debs/*.deb" >/dev/null || { log "no .deb files in $debs: run cluster/fetch-gpu-debs.sh and carry .cache/gpu-debs"; exit 1; }
  rm -rf "$prefix" && mkdir -p "$prefix"
  for d in "$debs"/*.deb; do
    if command -v dpkg >/dev/null; then
      dpkg -x "$d" "$prefix"
    else  # a .deb is an ar archive holding data.tar.{xz,zst,gz}
      member="$(ar t "$d" | grep '^data.tar')"
      case "$member" in
        *.xz) z=-J ;;
        *.zst) z=--zstd ;;
        *) z=-z ;;
      esac
      ar p "$d" "$member" | tar -x "$z" -f - -C "$prefix"
    fi
  done
  u="$prefix/usr"
  # Links update-alternatives would have made.
  for t in mpirun mpiexec mpicc mpicxx; do ln -sf "$t.openmpi" "$u/bin/$t"; done
  # Scripts and .pc files that name /usr literally.
  sed -i "s|^prefix=\"/usr\"|prefix=\"$u\"|" "$u/bin/h5cc"
  find "$u" -name '*.pc' -exec sed -i "s|^prefix=/usr\$|prefix=$u|" {} +
  log "unpacked $(find "$debs" -name '*.deb' | wc -l) packages into $prefix ($(du -sh "$prefix" | cut -f1))"
fi
u="$prefix/usr"
lib="$u/lib/x86_64-linux-gnu"
export PATH="$u/bin:$PATH"
export LD_LIBRARY_PATH="$lib:$lib/openmpi/lib:$lib/hdf5/serial${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PKG_CONFIG_LIBDIR="$lib/pkgconfig:$u/share/pkgconfig"
export OPAL_PREFIX="$u"                                # Open MPI finds its plugins and help here
export PMIX_MCA_mca_base_component_path="$lib/pmix2/lib/pmix"
export OMPI_MCA_mca_base_component_show_load_errors=0  # plugins for fabrics this box lacks
export PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1

# ---- 2. Configure and build -----------------------------------------------------------------
cxx="$(command -v g++-12 || command -v g++)"
cc="$(command -v gcc-12 || command -v gcc)"
if want configure; then
  torch_prefix="$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
  export PFT_VENV="$venv"
  export PFT_TORCH_PREFIX="$u;$torch_prefix"
  log "configure: cuda preset, $($cxx --version | head -1), $(cmake --version | head -1)"
  generator=()
  command -v ninja >/dev/null || generator=(-G "Unix Makefiles")
  if ! cmake --preset cuda -B "$build" "${generator[@]}" -DCMAKE_CXX_COMPILER="$cxx" \
      -DCMAKE_C_COMPILER="$cc" -DPFT_GPU_TESTS=ON -DPFT_REFERENCE_TESTS=OFF \
      >"$out/configure.log" 2>&1; then
    tail -30 "$out/configure.log"
    fail "configure (log: configure.log)"
    exit 1
  fi
  grep -E "pft: CUDA|NCCL" "$out/configure.log" | sed 's/^/  /'
  # Every dependency must come from the prefix or torch's venv, not from the host.
  grep -E '^(MPI_C_HEADER_DIR|HDF5_C_LIBRARY_hdf5|yaml-cpp_DIR|spdlog_DIR|Boost_DIR|GTest_DIR|CLI11_DIR|Torch_DIR):' \
    "$build/CMakeCache.txt" | sed 's/^/  /'
fi
if want build; then
  # pft and every test binary a gpu-labelled test runs (the last argument under the build dir).
  mapfile -t targets < <(echo pft; ctest --test-dir "$build" -L gpu --show-only=json-v1 2>/dev/null |
    "$py" -c '
import json, os, sys
seen = set()
for t in json.load(sys.stdin).get("tests", []):
    for a in t.get("command", []):
        if "/tests/" in a and os.path.basename(a) not in seen and not a.endswith(".sh"):
            seen.add(os.path.basename(a)); print(os.path.basename(a))')
  log "build: ${targets[*]} with $(nproc) jobs"
  if ! cmake --build "$build" -j "$(nproc)" --target "${targets[@]}" >"$out/build.log" 2>&1; then
    grep -E "error|Error" "$out/build.log" | head -30
    fail "build (log: build.log)"
    exit 1
  fi
  log "build done"
fi

# ---- 3. GPU tests ---------------------------------------------------------------------------
if want test; then
  if (($(left) < 60)); then
    log "SKIPPED gpu tests: $(left) s of the budget left"
  elif ctest --test-dir "$build" -L gpu --output-on-failure --timeout 150 >"$out/ctest.log" 2>&1; then
    log "gpu tests: $(grep -E 'tests passed' "$out/ctest.log")"
  else
    grep -E "Failed|Passed|\*\*\*|Failure|tests passed" "$out/ctest.log" | head -40
    fail "gpu tests (log: ctest.log)"
  fi
fi

# ---- 4. GPT-2 124M: pft vs PyTorch eager vs torch.compile -----------------------------------
if want bench; then
  pft="$build/bin/pft"
  # DEVICE_CHECK_BENCH="seq layers heads d_model vocab steps warmup micro-batches" shrinks the
  # model to try this part on a CPU machine (with DEVICE_CHECK_BENCH_DEVICE=cpu).
  read -r seq layers heads d vocab nsteps warmup micro_candidates <<<"${DEVICE_CHECK_BENCH:-1024 12 12 768 50257 25 5 32,16,8}"
  bench_device="${DEVICE_CHECK_BENCH_DEVICE:-cuda}"
  cfg="$out/gpt2-124m.yaml"
  write_cfg() {  # micro_batch steps run_dir
    cat >"$cfg" <<EOF
run: {dir: $3, seed: 1234, log_every: 1000}
model: {family: gpt2, vocab_size: $vocab, d_model: $d, n_layers: $layers, n_heads: $heads, max_seq_len: $seq}
data: {seq_len: $seq, source: synthetic, tokenizer: byte}
train: {steps: $2, global_batch_size: $1, micro_batch_size: $1, lr: 6.0e-4, schedule: constant,
        warmup_steps: 0, weight_decay: 0.1, grad_clip: 1.0, precision: bf16}
dist: {backend: auto}
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
  if [[ ! -x "$pft" ]]; then
    fail "no $pft to benchmark"
  else
    for b in ${micro_candidates//,/ }; do  # the largest micro-batch that fits: 3 steps each
      (($(left) < 150)) && break
      write_cfg "$b" 3 "$out/probe-$b"
      if "$pft" train "$cfg" >"$out/probe-$b.log" 2>&1; then micro=$b; break; fi
      log "micro-batch $b does not fit (or failed): $(grep -m1 -iE 'out of memory|error' "$out/probe-$b.log" | cut -c1-160)"
    done
  fi
  if [[ -z "$micro" ]]; then
    log "SKIPPED benchmark: no micro-batch ran ($(left) s left)"
  else
    log "GPT-2 (d $d, $layers layers, vocab $vocab): $params parameters, $flops_per_token FLOPs/token, micro-batch $micro x $seq, bf16, $nsteps steps ($warmup untimed)"
    write_cfg "$micro" "$nsteps" "$out/pft-bench"
    rm -rf "$out/pft-bench"
    if "$pft" train "$cfg" >"$out/pft-bench.log" 2>&1; then
      p="$(rate "$out/pft-bench/metrics.jsonl")"
      log "pft:            $p tok/s, MFU $(mfu "$p")%"
    else
      tail -5 "$out/pft-bench.log"; fail "pft benchmark run"
    fi
    base_args=(--vocab "$vocab" --d-model "$d" --layers "$layers" --heads "$heads" --seq "$seq"
               --global-batch "$micro" --micro-batch "$micro" --steps "$nsteps" --warmup "$warmup"
               --device "$bench_device" --dtype bf16 --threads 4)
    e=""; c=""
    if "$py" "$root/tests/bench/ddp_bench.py" "${base_args[@]}" >"$out/eager.log" 2>&1; then
      e="$(sed -n 's/^BASELINE tok_per_s=\([0-9.]*\).*/\1/p' "$out/eager.log")"
      log "torch eager:    $e tok/s, MFU $(mfu "$e")%"
    else
      tail -5 "$out/eager.log"; log "torch eager run failed"
    fi
    if (($(left) < 150)); then
      log "SKIPPED torch.compile: $(left) s of the budget left"
    elif timeout "$(($(left) - 20))" "$py" "$root/tests/bench/ddp_bench.py" "${base_args[@]}" --compile \
        >"$out/compile.log" 2>&1; then
      c="$(sed -n 's/^BASELINE tok_per_s=\([0-9.]*\).*/\1/p' "$out/compile.log")"
      log "torch.compile:  $c tok/s, MFU $(mfu "$c")%"
    else
      tail -5 "$out/compile.log"; log "torch.compile run failed or ran out of time"
    fi
    ratio() { "$py" -c "print(f'{$1 / $2:.3f}')"; }
    [[ -n "${p:-}" && -n "$e" ]] && echo "RESULT name=gpt2_124m_bf16_vs_eager pft=$p baseline=$e unit=tok/s ratio=$(ratio "$p" "$e")"
    [[ -n "${p:-}" && -n "$c" ]] && echo "RESULT name=gpt2_124m_bf16_vs_compile pft=$p baseline=$c unit=tok/s ratio=$(ratio "$p" "$c")"
  fi
fi
log "done: status $status"
exit "$status"
