#!/usr/bin/env bash
# tests/sanitize/run.sh [ci|all] [extra ctest args...]: builds pft and its unit tests with
# AddressSanitizer + UndefinedBehaviorSanitizer (preset asan, build/asan: GCC 12, -O1) and runs
#   ci  (default) the tests labelled `sanitize` (tests/sanitize/CMakeLists.txt: the set CI runs;
#       cluster/test.sh runs this after the cpu suite), building only what they need;
#   all every test of the asan build labelled unit, mpi or sanitize (not reference, slurm,
#       cluster: those are the cpu build's; not slow: the > 2 GiB store test runs under an
#       address-space limit, which ASan's shadow memory cannot live under).
# The runtime options are tests/sanitize/env.sh. Every ASan/LSan report, also one in a child
# process (the pft binary a CLI test runs, an MPI rank) whose output a test does not show, is
# written to a log folder; the run fails when the folder is not empty at the end, and prints the
# reports (UBSan's go to stderr; any report exits 86). Prints the build and test times last.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
mode="${1:-ci}"; shift || true
case "$mode" in
  ci)  build_args=(--target sanitize_set); select=(-L sanitize) ;;
  all) build_args=(); select=(-L 'unit|mpi|sanitize' -LE 'reference|slurm|cluster|slow') ;;
  *) echo "tests/sanitize/run.sh: unknown mode '$mode'; use ci (the CI set) or all" >&2; exit 2 ;;
esac

log_dir="$(mktemp -d "${TMPDIR:-/tmp}/pft-sanitize-XXXXXX")"
trap 'rm -rf "$log_dir"' EXIT
# The build runs the test binaries too (gtest test discovery): with the same options.
source "$here/env.sh"

start=$SECONDS
if ! "$root/cluster/build.sh" asan "${build_args[@]}" >"$log_dir/build.log" 2>&1; then
  tail -n 60 "$log_dir/build.log" >&2
  echo "tests/sanitize/run.sh: the asan build failed (above)" >&2
  exit 1
fi
rm -f "$log_dir/build.log"
build_s=$((SECONDS - start))

export PFT_SANITIZE_LOG_DIR="$log_dir"
source "$here/env.sh"
# One torch thread per test process unless a test sets its own (as cluster/test.sh).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# Commands the CLI tests run are slower under ASan: a longer limit for each (tests/run_command.h).
export PFT_TEST_COMMAND_TIMEOUT_S="${PFT_TEST_COMMAND_TIMEOUT_S:-900}"
start=$SECONDS
rc=0
ctest --test-dir "$root/build/asan" -j "${PFT_TEST_JOBS:-$(nproc)}" --output-on-failure \
      --no-tests=error "${select[@]}" "$@" || rc=$?
test_s=$((SECONDS - start))

reports=$(find "$log_dir" -type f | sort)
if [[ -n "$reports" ]]; then
  for f in $reports; do
    echo "==== sanitizer report $(basename "$f")" >&2
    cat "$f" >&2
  done
  echo "tests/sanitize/run.sh: $(wc -l <<<"$reports") sanitizer report(s) (above)" >&2
  rc=1
fi
echo "tests/sanitize/run.sh $mode: build ${build_s} s, tests ${test_s} s, exit $rc"
exit "$rc"
