// agree(): a failure on one rank becomes the same exit code on all ranks, reported once.
#include <gtest/gtest.h>
#include <mpi.h>

#include <chrono>
#include <string>
#include <thread>

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

// The exchange has a deadline: rank 0 is still inside its body (1.5 s) when the others' deadline
// (0.5 s) passes; they throw RuntimeFailure, not agreed (main will abort the job), naming the step
// and the deadline. Rank 0 itself, arriving late, finds every outcome there and goes on.
TEST(Agree, StalledRankMakesTheOthersFailAtTheDeadline) {
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (size < 2) GTEST_SKIP() << "a deadline needs a peer to wait for (runs at np 2 and 4)";
  const auto start = std::chrono::steady_clock::now();
  if (rank == 0) {
    EXPECT_NO_THROW(agree_world(
        [] { std::this_thread::sleep_for(std::chrono::milliseconds(1500)); }, 0.5));
  } else {
    try {
      agree_world([] {}, 0.5);
      ADD_FAILURE() << "rank " << rank << " must miss the deadline";
    } catch (const RuntimeFailure& e) {
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      EXPECT_GE(elapsed, 0.5);
      EXPECT_LT(elapsed, 1.4);  // before rank 0 came: the deadline ended the wait
      EXPECT_FALSE(e.agreed());
      EXPECT_FALSE(e.reported());
      const std::string what = e.what();
      EXPECT_NE(what.find("agree_world"), std::string::npos) << what;
      EXPECT_NE(what.find("did not complete within the deadline of 0.5 s"), std::string::npos)
          << what;
    }
  }
  // Rank 0's late contribution completes the exchange the others abandoned; the world is in step
  // again for the next test.
  MPI_Barrier(MPI_COMM_WORLD);
}

}  // namespace
}  // namespace pft
