#!/usr/bin/env bash
# Builds (if needed) and runs pft's libFuzzer targets (tests/fuzz/README.md).
#
#   tests/fuzz/run.sh SECONDS [TARGET...]   each target (default: all) for SECONDS on its corpus
#   tests/fuzz/run.sh --build-only          only build build/fuzz (the `fuzz` preset)
#   tests/fuzz/run.sh --no-build SECONDS [TARGET...]   run without building (CTest, after the build)
#
# Each target starts from its seed corpus tests/fuzz/corpus/<target>/ (read-only: new inputs go
# to a scratch corpus, removed at the end) with its dictionary tests/fuzz/dict/<target>.dict
# when there is one. Per target it prints one line:
#   fuzz <target>: <executions> execs in <s> s (<rate>/s), cov <edges> ft <features>, corpus <n>, crashes <n>
# and exits 1 if any target crashed (a crash, sanitizer report, foreign exception, timeout or
# memory limit); the reproducer is kept in $PFT_FUZZ_ARTIFACTS (default build/fuzz/artifacts/)
# and the end of the target's log is printed. Rerun one with: build/fuzz/bin/fuzz_<target> FILE
#
# Targets run one at a time. Environment: PFT_FUZZ_ARGS (extra libFuzzer
# flags, e.g. "-max_len=65536"), PFT_FUZZ_KEEP_CORPUS=DIR (keep each target's grown corpus in
# DIR/<target>, to merge new seeds by hand), PFT_BUILD_JOBS (build parallelism).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
all_targets=(config task jsonl natinst tokenizer_json gpt2_vocab gguf safetensors checkpoint token_store)

build=1
case "${1:-}" in
  --build-only) build=2; shift ;;
  --no-build) build=0; shift ;;
esac

if ((build)); then
  command -v clang++-14 >/dev/null || {
    echo "tests/fuzz/run.sh: clang++-14 is missing (cluster/install-deps.sh installs clang-14 and libclang-rt-14-dev)" >&2
    exit 2
  }
  targets=()
  for t in "${all_targets[@]}"; do targets+=("fuzz_$t"); done
  "$root/cluster/build.sh" fuzz --target "${targets[@]}" >/dev/null
  ((build == 2)) && exit 0
fi

if (($# < 1)) || ! [[ "$1" =~ ^[0-9]+$ ]]; then
  echo "usage: tests/fuzz/run.sh [--no-build] SECONDS [TARGET...] | --build-only" >&2
  exit 2
fi
seconds="$1"; shift
targets=("$@")
((${#targets[@]})) || targets=("${all_targets[@]}")
bin="$root/build/fuzz/bin"
artifacts="${PFT_FUZZ_ARTIFACTS:-$root/build/fuzz/artifacts}"
mkdir -p "$artifacts"
scratch="$(mktemp -d /dev/shm/pft-fuzz-run.XXXXXX)"
trap 'rm -rf "$scratch"' EXIT
# ASan/UBSan: fail on the first report; LeakSanitizer on (libFuzzer checks leaks per input).
# An impossible allocation (HDF5 sizing a buffer from a corrupt header) returns NULL as glibc's
# malloc does, so HDF5 reports it as an error as it would in pft; operator new then throws
# std::bad_alloc, which a target reports. Allocations over -malloc_limit_mb are findings.
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$here/lsan.supp:print_suppressions=0}"
command -v llvm-symbolizer-14 >/dev/null &&
  export ASAN_SYMBOLIZER_PATH="${ASAN_SYMBOLIZER_PATH:-$(command -v llvm-symbolizer-14)}"

failed=()
run_one() {
  local t="$1" exe="$bin/fuzz_$1"
  [[ -x "$exe" ]] || { echo "fuzz $t: $exe is missing: run tests/fuzz/run.sh --build-only" >&2; return 2; }
  [[ -d "$here/corpus/$t" ]] || { echo "fuzz $t: no seed corpus tests/fuzz/corpus/$t" >&2; return 2; }
  local work="$scratch/$t" log="$scratch/$t.log"
  mkdir -p "$work/corpus" "$work/tmp"
  # HDF5 sizes an object header's buffer from the header's own size field (up to 4 GB in a
  # version 1 header) before it finds that the file is shorter, and fails cleanly; glibc's malloc
  # hands out such a block without touching it (finding 11 in docs/reliability.md: pft's RSS does
  # not move). ASan maps and poisons it instead (seconds per input), so for the HDF5 targets an
  # allocation over 1 GB returns NULL (as finding 3), which HDF5 reports as an error too.
  local asan="$ASAN_OPTIONS"
  [[ "$t" == checkpoint || "$t" == token_store ]] && asan="$asan:max_allocation_size_mb=1024"
  local args=(-max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -malloc_limit_mb=1024
              -print_final_stats=1 -artifact_prefix="$artifacts/$t-" -close_fd_mask=3)
  [[ -f "$here/dict/$t.dict" ]] && args+=(-dict="$here/dict/$t.dict")
  # shellcheck disable=SC2206
  args+=(${PFT_FUZZ_ARGS:-})
  local rc=0 t0=$SECONDS
  ASAN_OPTIONS="$asan" PFT_FUZZ_TMP="$work/tmp" "$exe" "${args[@]}" "$work/corpus" "$here/corpus/$t" >"$log" 2>&1 || rc=$?
  local execs cov ft corpus secs crashes
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  secs="$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
  ft="$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)"
  corpus="$(find "$work/corpus" -type f | wc -l)"
  crashes=0
  ((rc == 0)) || crashes=1
  # libFuzzer prints "Done N runs in S second(s)" only when it ends without a finding.
  [[ -n "$secs" && "$secs" -gt 0 ]] || secs=$((SECONDS - t0))
  printf 'fuzz %s: %s execs in %s s (%s/s), cov %s ft %s, corpus +%s, crashes %s\n' \
    "$t" "${execs:-0}" "$secs" "$(( ${execs:-0} / (secs > 0 ? secs : 1) ))" "${cov:-?}" "${ft:-?}" \
    "$corpus" "$crashes"
  if [[ -n "${PFT_FUZZ_KEEP_CORPUS:-}" ]]; then
    mkdir -p "$PFT_FUZZ_KEEP_CORPUS/$t" && cp -n "$work/corpus"/* "$PFT_FUZZ_KEEP_CORPUS/$t"/ 2>/dev/null || true
  fi
  if ((rc != 0)); then
    echo "---- fuzz $t failed (exit $rc); end of its log:" >&2
    tail -n 60 "$log" >&2
    failed+=("$t")
  fi
  rm -rf "$work"
}

for t in "${targets[@]}"; do
  run_one "$t" || failed+=("$t")
done
if ((${#failed[@]})); then
  echo "tests/fuzz/run.sh: FAILED: ${failed[*]} (reproducers in $artifacts)" >&2
  exit 1
fi
echo "tests/fuzz/run.sh: ${#targets[@]} target(s), no crash"
