// The MPI backend on CPU tensors, under both progress modes (Note [mpi progress]): every op and
// dtype against hand-computed values (comm_cases.h), async all-reduces in flight completing in
// issue order, uneven all_gather_v, the host helpers, contract errors; and the factory.
#include <gtest/gtest.h>

#include <unistd.h>

#include "comm/mpi_communicator.h"
#include "comm_cases.h"
#include "config/config.h"
#include "core/rank_env.h"
#include "mpi_test_env.h"

namespace pft {
namespace {

using test::env;

class MpiComm : public ::testing::TestWithParam<MpiProgressMode> {
 protected:
  std::unique_ptr<MpiCommunicator> make() { return test::make_mpi_communicator(GetParam()); }
  const at::Device cpu_{at::kCPU};
};

TEST_P(MpiComm, AllReduceEveryOpAndDtype) {
  auto c = make();
  EXPECT_EQ(c->progress_mode(), GetParam());
  comm_cases::check_all_reduce(*c, cpu_);
}

TEST_P(MpiComm, AsyncAllReducesInFlightCompleteInOrder) {
  auto c = make();
  comm_cases::check_async_in_order(*c, cpu_);
}

TEST_P(MpiComm, BroadcastFromEveryRoot) {
  auto c = make();
  comm_cases::check_broadcast(*c, cpu_);
}

TEST_P(MpiComm, AllGather) {
  auto c = make();
  comm_cases::check_all_gather(*c, cpu_);
}

TEST_P(MpiComm, AllGatherVWithUnevenAndZeroSizes) {
  auto c = make();
  comm_cases::check_all_gather_v(*c, cpu_);
}

TEST_P(MpiComm, ReduceScatter) {
  auto c = make();
  comm_cases::check_reduce_scatter(*c, cpu_);
}

TEST_P(MpiComm, HostHelpers) {
  auto c = make();
  comm_cases::check_host_helpers(*c);
}

TEST_P(MpiComm, ContractErrorsThrowAndLeaveItUsable) {
  auto c = make();
  comm_cases::check_contract_errors(*c, cpu_);
}

// A Work dropped without wait() must not free memory MPI still writes: the engine keeps the op
// alive until it completes. Then blocking and async calls interleave on their two lanes.
TEST_P(MpiComm, DroppedWorkAndInterleavedLanes) {
  auto c = make();
  for (int i = 0; i < 3; ++i) {
    c->all_reduce_async(at::ones({1 << 18}), ReduceOp::kSum).reset();
  }
  at::Tensor a = at::ones({1000});
  auto work = c->all_reduce_async(a, ReduceOp::kSum);
  EXPECT_EQ(c->all_reduce_scalar(int64_t{1}, ReduceOp::kSum), c->size());
  at::Tensor b = at::ones({10});
  c->all_reduce(b, ReduceOp::kMax);
  work->wait();
  comm_cases::expect_values(a, at::full({1000}, c->size(), at::kDouble), "async lane");
  comm_cases::expect_values(b, at::ones({10}, at::kDouble), "blocking lane");
}

INSTANTIATE_TEST_SUITE_P(Progress, MpiComm,
                         ::testing::Values(MpiProgressMode::kThread, MpiProgressMode::kPoll),
                         [](const ::testing::TestParamInfo<MpiProgressMode>& info) {
                           return info.param == MpiProgressMode::kThread ? "Thread" : "Poll";
                         });

TEST(MpiCommunicator, ProgressThreadWithSleepingPolls) {
  DistConfig dist;
  MpiProgressOptions progress;
  progress.poll_sleep_us = 50;
  MpiCommunicator c(env(), dist, progress);
  comm_cases::check_async_in_order(c, at::kCPU);
}

TEST(Communicator, FactoryMakesTheResolvedBackendWithItsIdentity) {
  RankEnv mpi_env = env();
  mpi_env.backend = "mpi";
  DistConfig dist;
  dist.timeout_s = 42;
  std::unique_ptr<Communicator> c = make_communicator(mpi_env, dist);
  EXPECT_EQ(c->backend_name(), "mpi");
  EXPECT_EQ(c->rank(), env().world_rank);
  EXPECT_EQ(c->size(), env().world_size);
  EXPECT_EQ(c->host(), env().host);
  EXPECT_EQ(c->device(), c10::Device(env().device));
  EXPECT_DOUBLE_EQ(c->timeout_s(), 42);
  EXPECT_FALSE(c->failed());
  EXPECT_EQ(c->all_reduce_scalar(int64_t{1}, ReduceOp::kSum), env().world_size);

  RankEnv bogus = env();
  bogus.backend = "gloo";
  EXPECT_THROW(make_communicator(bogus, dist), RuntimeFailure);
}

TEST(Communicator, ReduceOpNames) {
  EXPECT_EQ(to_string(ReduceOp::kSum), "sum");
  EXPECT_EQ(to_string(ReduceOp::kAvg), "avg");
  EXPECT_EQ(to_string(ReduceOp::kMax), "max");
  EXPECT_EQ(to_string(ReduceOp::kMin), "min");
  EXPECT_EQ(describe_tensor(at::zeros({4, 8}, at::kBFloat16)), "32 x bfloat16");
}

}  // namespace
}  // namespace pft
