#!/usr/bin/env bash
# fetch-gpu-debs.sh: downloads the Debian 12 packages pft needs on top of the GPU device image
# into .cache/gpu-debs/ (git-ignored), for tests/gpu/device_check.sh.
#
#   cluster/fetch-gpu-debs.sh [out_dir]        # on a Debian 12 (bookworm) machine with network
#
# The device machine has torch 2.11 (CUDA) at /opt/torch/.venv, nvcc, CMake and a C++ compiler,
# but no network and none of pft's C/C++ libraries. device_check.sh unpacks these .debs with
# `dpkg -x` (no root, no dpkg database) into a private prefix and points CMake, pkg-config, the
# linker and Open MPI there. The run tool carries the folder to the device:
#   run(command="tests/gpu/device_check.sh", carry=[".cache/gpu-debs"])
#
# What is fetched (`apt-get download`, no dependency resolution by apt, so the list is explicit):
#   - build: headers, CMake/pkg-config files and .so links of Open MPI, serial HDF5 (+ h5cc),
#     yaml-cpp, Boost.JSON (+ headers), spdlog/fmt, CLI11, xxHash, GoogleTest; pkgconf, ninja;
#   - run: the shared libraries those pull in at run time, found by `ldd` on pft, the test binaries,
#     mpirun and Open MPI's plugins on the machine that built them (HDF5's libcurl and its TLS and
#     Kerberos libraries, Open MPI's hwloc/libevent/PMIx/UCX/libfabric/verbs), minus the base
#     system every Debian image has (libc6, libstdc++6, libgcc-s1, zlib1g, libzstd1, ...).
# Total about 30 MB. Packages already present in out_dir are kept; the script prints the total.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
out="${1:-$root/.cache/gpu-debs}"

build_pkgs=(
  libopenmpi-dev openmpi-bin openmpi-common
  libhdf5-dev hdf5-helpers libaec-dev zlib1g-dev libssl-dev libcurl4-openssl-dev
  libyaml-cpp-dev
  libboost1.81-dev libboost-json1.81-dev libboost-container1.81-dev
  libspdlog-dev libfmt-dev libcli11-dev libxxhash-dev
  libgtest-dev googletest
  pkgconf pkgconf-bin libpkgconf3 ninja-build
)
run_pkgs=(
  libopenmpi3 libhwloc15 libevent-core-2.1-7 libevent-pthreads-2.1-7 libpmix2 libmunge2
  libfabric1 libucx0 libibverbs1 ibverbs-providers librdmacm1 libnl-3-200 libnl-route-3-200
  libpsm2-2 libpsm-infinipath1 libnuma1
  libhdf5-103-1 libsz2 libaec0 libcurl4
  libssl3 libbrotli1 libnghttp2-14 libpsl5 librtmp1 libssh2-1 libldap-2.5-0 libsasl2-2
  libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libkeyutils1 libcom-err2
  libgnutls30 libhogweed6 libnettle8 libgmp10 libidn2-0 libunistring2 libp11-kit0 libtasn1-6
  libffi8
  libyaml-cpp0.7 libboost-json1.81.0 libboost-container1.81.0 libspdlog1.10 libfmt9 libxxhash0
)

if [[ ! -r /etc/os-release ]] || ! grep -q '^VERSION_CODENAME=bookworm' /etc/os-release; then
  echo "fetch-gpu-debs.sh: run this on Debian 12 (bookworm): the device image's packages must match" >&2
  exit 2
fi
mkdir -p "$out"
cd "$out"
missing=()
for p in "${build_pkgs[@]}" "${run_pkgs[@]}"; do
  compgen -G "${p}_*.deb" >/dev/null || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "fetch-gpu-debs.sh: downloading ${#missing[@]} package(s) into $out" >&2
  apt-get download "${missing[@]}" >/dev/null
fi
n=$(find . -maxdepth 1 -name '*.deb' | wc -l)
echo "fetch-gpu-debs.sh: $n .deb files, $(du -sh . | cut -f1) in $out"
