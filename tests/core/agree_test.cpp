// agree(): a failure on one rank becomes the same exit code on all ranks, reported once.
#include <gtest/gtest.h>
#include <mpi.h>

#include "core/agree.h"
#include "core/error.h"

namespace pft {
namespace {

TEST(Agree, NoFailureIsSilent) {
  EXPECT_NO_THROW(agree_world([] {}));
}

TEST(Agree, FailureOnLastRankReachesEveryRank) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  try {
    agree_world([&] {
      if (rank == size - 1) throw InputError("bad input on the last rank");
    });
    FAIL() << "every rank must throw";
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_code(), ExitCode::kBadInput);
    EXPECT_TRUE(e.agreed());
    // Exactly one rank (the failing one) reports the message.
    EXPECT_EQ(e.reported(), rank != size - 1);
    if (rank == size - 1) {
      EXPECT_STREQ(e.what(), "bad input on the last rank");
    }
  }
}

TEST(Agree, HighestCodeWinsAndLowestFailingRankReports) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  try {
    agree_world([&] {
      if (rank == 0) throw RuntimeFailure("runtime on 0");
      if (rank == 1) throw InputError("input on 1");
    });
    FAIL();
  } catch (const Error& e) {
    if (rank == 0) {
      EXPECT_FALSE(e.reported());
      EXPECT_EQ(e.exit_code(), ExitCode::kRuntime);
    } else {
      EXPECT_TRUE(e.reported());
    }
  }
}

TEST(Agree, StdExceptionBecomesRuntimeFailure) {
  try {
    agree_world([] { throw std::out_of_range("oops"); });
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.exit_code(), ExitCode::kRuntime);
  }
}

}  // namespace
}  // namespace pft
