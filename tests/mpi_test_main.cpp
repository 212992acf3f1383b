// main() for GoogleTest binaries that run under mpirun: initialises MPI, runs the same tests in
// the same order on every rank, combines the verdicts (a test failing on any rank fails the
// binary on every rank), and leaves a marker file per rank for tests/mpi_run.sh to count.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "core/leak_check.h"

PFT_ASAN_KEEP_LIBRARIES_LOADED()  // the ASan build only (core/leak_check.h)

int main(int argc, char** argv) {
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  ::testing::InitGoogleTest(&argc, argv);
  if (rank != 0) {
    // Only rank 0 prints the progress; other ranks still print their failures.
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    struct FailurePrinter : ::testing::EmptyTestEventListener {
      int rank;
      explicit FailurePrinter(int r) : rank(r) {}
      void OnTestPartResult(const ::testing::TestPartResult& r) override {
        if (r.failed())
          std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank, r.file_name(),
                       r.line_number(), r.summary());
      }
    };
    listeners.Append(new FailurePrinter(rank));
  }
  const int local = RUN_ALL_TESTS();
  int global = 0;
  MPI_Allreduce(&local, &global, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (const char* dir = std::getenv("PFT_TEST_MARKER_DIR")) {
    std::ofstream(std::string(dir) + "/rank-" + std::to_string(rank)) << global << "\n";
  }
  pft::leak_check_before_mpi_finalize();  // Note [leak check before MPI_Finalize]
  MPI_Finalize();
  return global;
}
