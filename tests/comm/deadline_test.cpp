// Deadlines: rank 0 skips a collective; every other rank, waiting with dist.timeout_s = 1, must
// throw RuntimeFailure naming the operation, its rank and host and the elapsed time within
// about a second, and refuse later calls at once. Rank 0 then issues the matching call and the
// others' destructors drain the abandoned operation, so the job resynchronises and ends cleanly.
// Needs two ranks or more (skipped under -np 1).
#include <gtest/gtest.h>

#include <mpi.h>

#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>

#include "comm/mpi_communicator.h"
#include "comm_cases.h"
#include "config/config.h"
#include "core/error.h"
#include "core/rank_env.h"

namespace pft {
namespace {

const RankEnv& deadline_env() {
  static const RankEnv e = discover_rank_env({});
  return e;
}

class MpiDeadline : public ::testing::TestWithParam<MpiProgressMode> {
 protected:
  void SetUp() override {
    if (deadline_env().world_size < 2) GTEST_SKIP() << "needs two ranks or more";
    DistConfig dist;
    dist.timeout_s = 1.0;
    MpiProgressOptions progress;
    progress.mode = GetParam();
    comm_ = std::make_unique<MpiCommunicator>(deadline_env(), dist, progress);
  }

  // Checks the failure `e`, thrown `elapsed_s` after the call started, on a waiting rank.
  void expect_deadline_message(const RuntimeFailure& e, double elapsed_s, const std::string& op,
                               double min_s) {
    const std::string what = e.what();
    if (comm_->rank() == 1) std::fprintf(stderr, "[rank 1] expected failure: %s\n", what.c_str());
    EXPECT_GE(elapsed_s, min_s) << what;
    EXPECT_LT(elapsed_s, min_s + 2.0) << what;
    EXPECT_NE(what.find(op), std::string::npos) << what;
    EXPECT_NE(what.find("rank " + std::to_string(comm_->rank()) + " of"), std::string::npos)
        << what;
    EXPECT_NE(what.find(deadline_env().host), std::string::npos) << what;
    EXPECT_NE(what.find("elapsed"), std::string::npos) << what;
    EXPECT_EQ(e.exit_code(), ExitCode::kRuntime);
  }

  // A failed communicator refuses every later call at once.
  void expect_refuses_later_calls() {
    EXPECT_TRUE(comm_->failed());
    const auto start = std::chrono::steady_clock::now();
    try {
      comm_->barrier();
      ADD_FAILURE() << "barrier on a failed communicator did not throw";
    } catch (const RuntimeFailure& e) {
      EXPECT_NE(std::string(e.what()).find("unusable"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("barrier"), std::string::npos) << e.what();
    }
    EXPECT_LT(seconds_since(start), 0.5);
  }

  std::unique_ptr<MpiCommunicator> comm_;
};

TEST_P(MpiDeadline, BlockingAllReduceThrowsOnWaitingRanksThenResynchronises) {
  const int rank = comm_->rank();
  const int n = comm_->size();
  at::Tensor x = at::full({1000}, rank + 1, at::kFloat);
  if (rank != 0) {
    const auto start = std::chrono::steady_clock::now();
    try {
      comm_->all_reduce(x, ReduceOp::kSum);
      ADD_FAILURE() << "all_reduce without rank 0 returned";
    } catch (const RuntimeFailure& e) {
      expect_deadline_message(e, seconds_since(start), "all_reduce(sum, 1000 x float32)", 1.0);
    }
    expect_refuses_later_calls();
  }
  MPI_Barrier(MPI_COMM_WORLD);
  // Rank 0 issues the call it skipped; the others' destructors drive their abandoned one.
  if (rank == 0) comm_->all_reduce(x, ReduceOp::kSum);
  comm_.reset();
  comm_cases::expect_values(x, at::full({1000}, n * (n + 1) / 2.0, at::kDouble), "late all_reduce");
  MPI_Barrier(MPI_COMM_WORLD);
}

TEST_P(MpiDeadline, AsyncWaitThrowsAtAnExplicitDeadlineThenResynchronises) {
  const int rank = comm_->rank();
  const int n = comm_->size();
  at::Tensor x = at::full({1 << 16}, rank + 1, at::kFloat);
  if (rank != 0) {
    auto work = comm_->all_reduce_async(x, ReduceOp::kMax);
    EXPECT_FALSE(work->is_completed());
    const auto start = std::chrono::steady_clock::now();
    try {
      work->wait(deadline_after(0.5));
      ADD_FAILURE() << "wait without rank 0 returned";
    } catch (const RuntimeFailure& e) {
      expect_deadline_message(e, seconds_since(start), "all_reduce_async(max, 65536 x float32)",
                              0.5);
    }
    expect_refuses_later_calls();
    work.reset();  // dropped unfinished: the engine keeps the op (and x's memory) alive
  }
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) comm_->all_reduce_async(x, ReduceOp::kMax)->wait();
  comm_.reset();
  comm_cases::expect_values(x, at::full({1 << 16}, n, at::kDouble), "late all_reduce_async");
  MPI_Barrier(MPI_COMM_WORLD);
}

INSTANTIATE_TEST_SUITE_P(Progress, MpiDeadline,
                         ::testing::Values(MpiProgressMode::kThread, MpiProgressMode::kPoll),
                         [](const ::testing::TestParamInfo<MpiProgressMode>& info) {
                           return info.param == MpiProgressMode::kThread ? "Thread" : "Poll";
                         });

}  // namespace
}  // namespace pft
