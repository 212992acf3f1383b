#!/usr/bin/env bash
# Configures and builds pft with a CMake preset (default: cpu) against the cached torch venv.
#   cluster/build.sh [preset] [extra cmake --build args...]
# Prints the build directory on its last line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
preset="${1:-cpu}"; shift || true
export PFT_VENV="${PFT_VENV:-$HOME/.cache/pft/venv-torch2.11.0}"
PFT_TORCH_PREFIX="$("$PFT_VENV/bin/python3" -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null)"
export PFT_TORCH_PREFIX
cd "$root"
# ccache (CMakeLists.txt): paths relative to the checkout's parent, and no working directory in
# the hash, so two clones side by side (a user's and CI's) hit the same cache entries.
export CCACHE_BASEDIR="${CCACHE_BASEDIR:-$(dirname "$root")}"
export CCACHE_NOHASHDIR="${CCACHE_NOHASHDIR:-1}"
# The torch targets use precompiled headers, which ccache caches only with these.
export CCACHE_SLOPPINESS="${CCACHE_SLOPPINESS:-pch_defines,time_macros,include_file_mtime,include_file_ctime}"
if [[ ! -f "build/$preset/build.ninja" ]]; then
  cmake --preset "$preset" >/dev/null
fi
jobs="${PFT_BUILD_JOBS:-$(nproc)}"
cmake --build --preset "$preset" -j "$jobs" "$@"
echo "$root/build/$preset"
