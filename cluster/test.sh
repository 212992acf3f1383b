#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds (cpu preset), runs every CTest test
# (unit, mpi, slurm and reference-parity labels), then the ASan/UBSan set (tests/sanitize/run.sh
# ci: build/asan, label sanitize; PFT_SANITIZE=0 leaves it out). Extra arguments go to ctest (and
# leave the sanitizer run out), e.g.
#   cluster/test.sh -L mpi          # only the multi-rank tests
#   cluster/test.sh -R config       # tests whose name matches
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
"$here/install-deps.sh"
"$here/build.sh" cpu >/dev/null
cd "$root"
# The sanitizer build (tests/sanitize/run.sh) uses every core. Read the core count before
# OMP_NUM_THREADS is set: GNU nproc honours OMP_NUM_THREADS, so `nproc` below it prints 1.
export PFT_BUILD_JOBS="${PFT_BUILD_JOBS:-$(nproc)}"
# One torch thread per test process unless a test sets its own.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# Tests run one per core (PFT_TEST_JOBS to choose). Tests that need the whole machine say so
# (PROCESSORS, RESOURCE_LOCK in their CMakeLists.txt). On 2 cores the whole suite took 1306 s at
# -j2 against 1642 s one at a time.
jobs="${PFT_TEST_JOBS:-$PFT_BUILD_JOBS}"
if [[ $# -gt 0 || "${PFT_SANITIZE:-1}" == 0 ]]; then
  exec ctest --preset cpu -j "$jobs" "$@"
fi
rc=0
ctest --preset cpu -j "$jobs" || rc=$?
"$root/tests/sanitize/run.sh" ci || rc=$((rc == 0 ? 1 : rc))
exit "$rc"
