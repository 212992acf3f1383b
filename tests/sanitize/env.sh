# Runtime options of the ASan/UBSan build (preset asan, build/asan), sourced by
# tests/sanitize/run.sh; source it yourself before running a test of build/asan by hand:
#   source tests/sanitize/env.sh && ctest --test-dir build/asan -R Config --output-on-failure
# Only pft and its tests are instrumented; libtorch, Open MPI, HDF5, yaml-cpp, Boost and gtest are
# the distribution's or the wheel's builds (ASan still replaces their malloc/free, so a heap error
# of theirs on memory pft handed them is caught too). Suppressions, each with its reason, go in
# lsan.supp / ubsan.supp beside this file (lsan.supp: Open MPI's libraries; UBSan needs none).
#
# PFT_SANITIZE_LOG_DIR (optional): every ASan/LSan report goes to a file <dir>/report.<pid>
# instead of stderr, so that a report in a child process (the pft binary a CLI test runs, a rank
# under mpirun) fails the run even when the test never shows that child's output; run.sh sets it
# and fails when a file appears there. GCC 12's UBSan runtime ignores log_path when ASan is
# linked too (measured): its reports go to stderr, and the process exits 86 (exitcode below).
# (Both variables set it, in case the runtime reads UBSan's common flags.)
_pft_san_log() {  # :log_path=<dir>/report when a log dir is set
  if [[ -n "${PFT_SANITIZE_LOG_DIR:-}" ]]; then printf ':log_path=%s/report' "$PFT_SANITIZE_LOG_DIR"; fi
}

# ASan (LeakSanitizer included: at exit, or just before MPI_Finalize in a process that ran MPI,
# src/core/leak_check.h):
# - exitcode=86: a report ends the process with a code no pft path uses (0, 1, 2, 3, 75), so a
#   CLI test that expects one of pft's codes fails on it;
# - check_initialization_order, strict_init_order: a static initializer that reads another
#   translation unit's global before it is built is reported;
# - detect_stack_use_after_return: pointers to a returned function's locals are caught (GCC
#   leaves it off by default: it costs a fake stack per frame, cheap at -O1);
# - strict_string_checks: the str* interceptors check the whole string, not only what they read;
# - intercept_tls_get_addr=0: GCC 12's runtime misreads glibc 2.36's dynamic TLS vector, and
#   LeakSanitizer then scans a bogus range ("DTLS 24 at 0x000000059e80-0x00040005af82") and dies
#   ("Tracer caught signal 11"; every rank of rank_env_test.np4 but the stalled one). Without
#   the interception only dynamic TLS goes unscanned: that of dlopen()ed libraries (Open MPI's
#   components); pft is linked into each executable and its thread_locals are static TLS.
export ASAN_OPTIONS="exitcode=86:check_initialization_order=1:strict_init_order=1:detect_stack_use_after_return=1:strict_string_checks=1:intercept_tls_get_addr=0$(_pft_san_log)"
# LeakSanitizer: Open MPI's own leaks are suppressed by library (lsan.supp, each with its reason;
# src/core/leak_check.h: the check before MPI_Finalize, libraries kept loaded).
export LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lsan.supp:print_suppressions=0"
# UBSan: every report is fatal (the build also has -fno-sanitize-recover=undefined), with a stack.
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=86$(_pft_san_log)"
unset -f _pft_san_log
