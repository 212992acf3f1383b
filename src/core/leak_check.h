// The leak check of the ASan build (preset asan, tests/sanitize/), done before MPI_Finalize.
//
// Note [leak check before MPI_Finalize]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// LeakSanitizer checks at exit by default. In a process that ran MPI, most of what that check
// finds is Open MPI's: MPI_Finalize tears down its state and leaves hundreds of blocks unfreed
// (operator tables, PMIx values, hwloc bitmaps, its progress thread's events), and it
// dlclose()s the components that allocated many of them, so their stacks read "<unknown
// module>" and no suppression can name them. So a process that initialised MPI runs
// LeakSanitizer's one check just before MPI_Finalize instead (__lsan_do_leak_check: a report
// ends the process with ASan's exitcode, and the check at exit is then skipped). There Open
// MPI's blocks are still reachable from its globals, the few it lost in MPI_Init carry their
// library's name (suppressed in tests/sanitize/lsan.supp), and whatever pft lost is reported
// with its stack. What pft still holds at that point (the session, the model) is reachable,
// not a leak; what it frees later in static destructors is not checked. The check makes no MPI
// call: it stops only this process, and a report ends this rank, which mpirun then reports.
//
// Note [libraries stay loaded under ASan]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Open MPI also dlclose()s, during MPI_Init, the components it opened and did not select, and
// what those allocated and never freed reads "<unknown module>" even before MPI_Finalize. So the
// ASan build's executables that run MPI (pft, the MPI test main, the sweep test driver, the
// all-reduce benchmark) define dlclose as a no-op (PFT_ASAN_KEEP_LIBRARIES_LOADED in their main's
// file; CMakeLists.txt exports the symbol under PFT_SANITIZE, --export-dynamic-symbol=dlclose,
// so Open MPI's calls reach it): what Open MPI 5's mca_base_component_disable_dlclose does,
// which 4.1 lacks. Every leak then names its library. Nothing is unloaded before exit in any pft
// process anyway.
#pragma once

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

namespace pft {

// The ASan build: LeakSanitizer's check now, once per process (Note [leak check before
// MPI_Finalize]). Other builds: nothing.
inline void leak_check_before_mpi_finalize() {
#if defined(__SANITIZE_ADDRESS__)
  __lsan_do_leak_check();
#endif
}

// The ASan build: `p`, a block left allocated on purpose (a buffer MPI may still write into), is
// not reported as a leak. Other builds: nothing.
inline void leaked_on_purpose([[maybe_unused]] const void* p) {
#if defined(__SANITIZE_ADDRESS__)
  __lsan_ignore_object(p);
#endif
}

}  // namespace pft

// In the file of an MPI executable's main (Note [libraries stay loaded under ASan]).
#if defined(__SANITIZE_ADDRESS__)
#define PFT_ASAN_KEEP_LIBRARIES_LOADED() \
  extern "C" int dlclose(void*) noexcept { return 0; }
#else
#define PFT_ASAN_KEEP_LIBRARIES_LOADED()
#endif
