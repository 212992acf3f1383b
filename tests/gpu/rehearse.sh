#!/usr/bin/env bash
# rehearse.sh: tests/gpu/device_check.sh's CPU rehearsal, on a root shaped like the GPU image.
#
#   tests/gpu/rehearse.sh [--no-build]      # as root (mount namespace); CTest runs it in CI
#
# The GPU machine is lent rarely and for minutes, so what can go wrong there before the GPU is
# reached (a library missing from the bundle, a path that only exists here, a tool the image
# lacks) must go wrong here first. This script:
#   1. bundles the programs and packages (tests/gpu/prepare.sh);
#   2. copies the checkout's files as the device tool would send them (tracked and untracked,
#      not ignored) plus the bundle into a fresh folder;
#   3. in a private mount namespace (unshare -m), overlays /usr and /etc with whiteouts for every
#      Debian package a bare image lacks (tests/gpu/hidden_root.py: Open MPI, HDF5, yaml-cpp,
#      Boost, spdlog, Slurm, compilers, ...), puts the torch venv at the device's path
#      /opt/torch/.venv and hides its original folder (where the programs' RPATH points), the
#      CUDA toolkit (torch's wheels carry the CUDA libraries), the build tree and the checkout; checks the hiding took (no mpirun, srun, g++ or libmpi);
#   4. runs `DEVICE_CHECK_REHEARSAL=1 tests/gpu/device_check.sh` there from the copy, and checks
#      that it passed and that every step it should have run reported;
#   5. leaves the bundle that passed in .cache/gpu-bundle, ready to carry.
# Exit status: 0 when the rehearsal passed, 1 when it failed, 2 when this machine cannot make the
# namespace (not root, no overlayfs).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${PFT_VENV:-$HOME/.cache/pft/venv-torch2.11.0}"
log() { printf '[gpu-rehearse] %s\n' "$*" >&2; }
if [[ $EUID -ne 0 ]]; then log "needs root (a mount namespace with overlayfs)"; exit 2; fi

stage="$(mktemp -d "${TMPDIR:-/tmp}/pft-rehearse-XXXXXX")"
trap '[[ -n "${PFT_REHEARSE_KEEP:-}" ]] || rm -rf "$stage"' EXIT
"$here/prepare.sh" "$@" "$stage/bundle"
mkdir -p "$stage/repo/.cache" "$stage/out"
(cd "$root" && git ls-files -co --exclude-standard -z | grep -zv '^\.cache/' |
   xargs -0 cp --parents -a -t "$stage/repo" 2>/dev/null) || true
[[ -x "$stage/repo/tests/gpu/device_check.sh" ]] || { log "copying the checkout failed"; exit 1; }
mv "$stage/bundle" "$stage/repo/.cache/gpu-bundle"

export venv stage root here
set +e
unshare -m --propagation private bash -euo pipefail -c '
  m="$stage/mnt"
  mkdir -p "$m"
  mount -t tmpfs -o size=256m pft-rehearse "$m"
  mkdir -p "$m/up" "$m/work-usr" "$m/work-etc"
  python3 "$here/hidden_root.py" "$m/up" >&2
  mkdir -p "$m/up/usr" "$m/up/etc"
  mount -t overlay overlay -o "lowerdir=/usr,upperdir=$m/up/usr,workdir=$m/work-usr" /usr
  mount -t overlay overlay -o "lowerdir=/etc,upperdir=$m/up/etc,workdir=$m/work-etc" /etc
  # The venv at the device image path; its own folder, the build tree and the checkout hidden.
  mount -t tmpfs -o size=1m pft-opt /opt
  mkdir -p /opt/torch/.venv
  mount --bind "$venv" /opt/torch/.venv
  mount -t tmpfs -o size=1m pft-hide "$(dirname "$venv")"
  # The device image has a CUDA toolkit too, but the programs must need only the venv'"'"'s.
  [[ -d /usr/local/cuda ]] && mount -t tmpfs -o size=1m pft-hide /usr/local/cuda
  mount -t tmpfs -o size=1m pft-hide "$root"
  for t in mpirun srun ssh rsh g++ gcc cmake; do
    if command -v "$t" >/dev/null; then echo "[gpu-rehearse] $t is still visible" >&2; exit 1; fi
  done
  if ls /usr/lib/x86_64-linux-gnu/libmpi.so* /usr/lib/x86_64-linux-gnu/libhdf5_serial.so* 2>/dev/null; then
    echo "[gpu-rehearse] libmpi or libhdf5 is still visible" >&2; exit 1
  fi
  echo "[gpu-rehearse] hidden: mpirun, srun, ssh, g++, cmake, libmpi, libhdf5; venv at /opt/torch/.venv" >&2
  cd "$stage/repo"
  DEVICE_CHECK_REHEARSAL=1 PFT_TORCH_VENV=/opt/torch/.venv OUT="$stage/out" \
    DEVICE_CHECK_WORK="$stage/work" tests/gpu/device_check.sh
'
rc=$?
set -e
logf="$stage/out/device_check.log"
if ((rc != 0)); then
  log "the rehearsal failed (exit $rc)"
  exit 1
fi
# Every step must have reported: a check that ran nothing did not pass.
expect=("every program resolves its libraries" "no GPU: CPU rehearsal"
        "model_cuda: 0 passed, 1 skipped" "comm_gpu.np1:" "comm_gpu.np2:" "reducer_gpu.np1:"
        "reducer_gpu.np2:" "parity gpt2 full, CPU vs GPU" "parity llama lora, CPU vs GPU"
        "parity gpt2, CPU vs GPU with activation checkpointing" "parity llama, CPU vs GPU with activation checkpointing"
        "parity gpt2 full, 1 GPU rank vs 2 ranks sharing it (MPI backend, fp32"
        "parity gpt2 full, 1 GPU rank vs 2 ranks sharing it (MPI backend, bf16" "done: status 0 (CPU rehearsal)")
for e in "${expect[@]}"; do
  grep -qF "$e" "$logf" || { log "the rehearsal's log lacks: $e"; exit 1; }
done
[[ -s "$stage/out/logs.tar.gz" ]] || { log "no logs.tar.gz in OUT"; exit 1; }
# The bundle that passed is the one to carry.
rm -rf "$root/.cache/gpu-bundle"
mkdir -p "$root/.cache"
mv "$stage/repo/.cache/gpu-bundle" "$root/.cache/gpu-bundle"
log "passed: the bundle runs on a root without the host's packages; carry $root/.cache/gpu-bundle"
