#!/usr/bin/env bash
# prepare.sh: builds, here on a CPU machine, everything tests/gpu/device_check.sh runs on the GPU
# machine, into one folder the device tool carries: .cache/gpu-bundle (git-ignored).
#
#   tests/gpu/prepare.sh [--no-build] [bundle_dir]
#   tests/gpu/prepare.sh --source-hash      # prints the hash MANIFEST records (device_check.sh
#                                           # refuses a bundle whose sources differ from its tree)
#   run(command="tests/gpu/device_check.sh", carry=[".cache/gpu-bundle"], timeout_s=540)
#
# Why binaries and not sources: the device image has torch 2.11 (CUDA 13) at /opt/torch/.venv,
# nvcc and CMake, but none of pft's C/C++ libraries and no network, and every second there counts
# against a 15-minute budget. The cpu preset already compiles and links the CUDA and NCCL paths
# (against the same torch 2.11 + CUDA 13 wheel the device has), so the binaries built here run
# there; building on the device would spend minutes of that budget on the compiler.
#
# The bundle (about 25 MB; the checkout travels too, and both must stay under the tool's 64 MiB):
#   bin/    pft and the GPU test programs (comm_gpu_test, reducer_gpu_test, model_test), with
#           their debug sections stripped;
#   lib/    libpft_bind_iface.so (launch/pft-mpirun preloads it into mpirun);
#   debs/   the Debian 12 packages of every shared library those programs, mpirun, orted and
#           Open MPI's and PMIx's plugins load, found with ldd and `dpkg -S`, at the versions
#           installed here (apt-get download pkg=version; cached in ~/.cache/pft/gpu-debs so a
#           fresh clone or CI downloads them once), minus the C/C++ runtime every image has
#           (libc6, libstdc++6, libgcc-s1); plus openmpi-bin/-common, libopenmpi3 and libpmix2
#           whole (mpirun, plugins, help texts);
#   MANIFEST  the commit, a hash of the sources (src/, tests/, launch/, CMake files), the torch
#           and CUDA versions built against, the programs and the packages.
# device_check.sh unpacks debs/ with `dpkg -x` into a private prefix and runs from it; its CPU
# rehearsal (tests/gpu/rehearse.sh, in CI) proves the bundle complete on a root where the host's
# copies of those packages are hidden.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# The sources the programs are built from, hashed the same way here and on the device (no git
# there): a stale bundle must not pass for this checkout's.
source_hash() {
  (cd "$root" && find src tests launch CMakeLists.txt CMakePresets.json -type f \
     ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z |
     xargs -0 sha256sum | sha256sum | cut -c1-16)
}
if [[ "${1:-}" == --source-hash ]]; then source_hash; exit 0; fi
build_it=1
if [[ "${1:-}" == --no-build ]]; then build_it=0; shift; fi
bundle="${1:-$root/.cache/gpu-bundle}"
build="${PFT_BUILD_DIR:-$root/build/cpu}"
cache="${PFT_GPU_DEB_CACHE:-$HOME/.cache/pft/gpu-debs}"
log() { printf '[gpu-prepare] %s\n' "$*" >&2; }

# Programs (target name -> path under the build dir).
declare -A programs=(
  [pft]=bin/pft
  [comm_gpu_test]=tests/comm/comm_gpu_test
  [reducer_gpu_test]=tests/comm/reducer_gpu_test
  [model_test]=tests/model/model_test
)
if ((build_it)); then
  log "building ${!programs[*]} pft_bind_iface (cpu preset)"
  "$root/cluster/build.sh" cpu --target "${!programs[@]}" pft_bind_iface >/dev/null
fi
rm -rf "$bundle"
mkdir -p "$bundle/bin" "$bundle/lib" "$bundle/debs" "$cache"
for t in "${!programs[@]}"; do
  src="$build/${programs[$t]}"
  [[ -x "$src" ]] || { log "no $src: build it (drop --no-build)"; exit 1; }
  objcopy --strip-debug "$src" "$bundle/bin/$t"
done
cp "$build/lib/libpft_bind_iface.so" "$bundle/lib/"

# Every ELF whose shared libraries must come along: the programs, Open MPI's launcher and
# daemon, and the plugins Open MPI and PMIx open at run time.
lib=/usr/lib/x86_64-linux-gnu
elves=("$bundle"/bin/* "$bundle"/lib/*.so "$(readlink -f "$(command -v mpirun)")" /usr/bin/orted
       "$lib"/openmpi/lib/openmpi3/*.so "$lib"/pmix2/lib/pmix/*.so)
mapfile -t libs < <(for e in "${elves[@]}"; do ldd "$e" 2>/dev/null; done |
  awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u)
# The owning package of each (dpkg records merged-/usr paths under /lib or /usr/lib).
owner() {
  local p="$1" r
  r="$(readlink -f "$p")"
  for q in "$p" "$r" "${p#/usr}" "${r#/usr}" "/usr${p#/usr}" "/usr${r#/usr}"; do
    dpkg-query -S "$q" 2>/dev/null | head -1 | cut -d: -f1 && return 0
  done
  return 1
}
declare -A pkgs=([openmpi-bin]=1 [openmpi-common]=1 [libopenmpi3]=1 [libpmix2]=1)
unowned=()
for l in "${libs[@]}"; do
  # torch and CUDA are on the device. Judge the link's target too: an image may link the
  # toolkit's runtime into /usr/local/lib (libcudart.so.13 -> /usr/local/cuda-13.0/lib/...).
  case "$(readlink -f "$l")" in
    "$HOME"/.cache/pft/*|/usr/local/cuda*|*/site-packages/*) continue ;;
  esac
  p="$(owner "$l")" || { unowned+=("$l"); continue; }
  pkgs[$p]=1
done
if ((${#unowned[@]})); then
  log "libraries no Debian package owns (cannot be carried): ${unowned[*]}"
  exit 1
fi
for p in libc6 libstdc++6 libgcc-s1; do unset "pkgs[$p]"; done  # the runtime every image has

# Download (once, into the cache) the installed version of each, or the mirror's version where
# the mirror no longer has the installed one (a security update since: same library ABI).
mapfile -t names < <(printf '%s\n' "${!pkgs[@]}" | sort)
cached() {  # package -> its .deb in the cache (the installed version first)
  local v; v="$(dpkg-query -W -f='${Version}' "$1")"
  compgen -G "$cache/${1}_${v//:/%3a}_*.deb" | head -1 && return 0
  compgen -G "$cache/${1}_*.deb" | head -1
}
fetched=0
for p in "${names[@]}"; do
  [[ -n "$(cached "$p")" ]] && continue
  v="$(dpkg-query -W -f='${Version}' "$p")"
  if ((fetched == 0)) && [[ -z "${updated:-}" ]]; then  # package lists may be missing or stale
    apt-get update -qq >/dev/null 2>&1 || true
    updated=1
  fi
  if ! (cd "$cache" && { apt-get download "$p=$v" || apt-get download "$p"; }) >/dev/null 2>&1 ||
     [[ -z "$(cached "$p")" ]]; then
    log "cannot download $p: this needs Debian's package mirror once (then the cache $cache)"
    exit 1
  fi
  fetched=$((fetched + 1))
done
((fetched)) && log "downloaded $fetched package(s) into $cache"
for p in "${names[@]}"; do cp "$(cached "$p")" "$bundle/debs/"; done

{
  echo "commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(
    git -C "$root" diff --quiet HEAD -- 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "sources $(source_hash)"
  venv="${PFT_VENV:-$HOME/.cache/pft/venv-torch2.11.0}"
  echo "torch $("$venv/bin/python3" -c 'import torch; print(torch.__version__.split("+")[0], "cuda", torch.version.cuda)')"
  echo "programs ${!programs[*]}"
  echo "packages ${names[*]}"
} >"$bundle/MANIFEST"
size=$(du -sb "$bundle" | cut -f1)
tree=$(cd "$root" && git ls-files -co --exclude-standard -z | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
log "bundle $bundle: ${#names[@]} packages, $((size / 1048576)) MiB; with the checkout $(((size + tree) / 1048576)) MiB of the 64 MiB the device tool carries"
if ((size + tree > 60 * 1048576)); then
  log "too large to carry (keep under 60 MiB with the checkout)"
  exit 1
fi
