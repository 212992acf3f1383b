// CUDA tensors through both backends, with the cases of comm_cases.h: the MPI backend (staged
// through pinned host buffers, so ranks may share one GPU) and the NCCL backend (one GPU per
// rank: NCCL refuses two ranks on one device). Compiled everywhere so the CUDA paths build in
// CI; registered with labels mpi;gpu only when PFT_GPU_TESTS is set (tests/comm/CMakeLists.txt),
// and every case skips itself when torch sees no GPU.
#include <gtest/gtest.h>

#include <mpi.h>

#include <ATen/ATen.h>
#include <torch/cuda.h>

#include <chrono>

#include "comm/mpi_communicator.h"
#include "comm_cases.h"
#include "config/config.h"
#include "core/error.h"
#include "core/rank_env.h"
#include "mpi_test_env.h"
#ifdef PFT_HAVE_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "comm/nccl_communicator.h"
#endif

namespace pft {
namespace {

using test::env;

bool have_gpu() { return torch::cuda::is_available(); }

// Every rank of the node has a GPU of its own (NCCL's requirement). Same answer on every rank.
bool gpu_per_rank() {
  const int mine = have_gpu() && static_cast<int>(torch::cuda::device_count()) >= env().local_size;
  int all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return all == 1;
}

#define PFT_REQUIRE_GPU()                                              \
  do {                                                                 \
    if (!have_gpu()) GTEST_SKIP() << "torch sees no CUDA device here"; \
  } while (0)

TEST(MpiCommunicatorCuda, EveryOpOnCudaTensors) {
  PFT_REQUIRE_GPU();
  DistConfig dist;
  MpiCommunicator c(env(), dist);
  const at::Device gpu(env().device);
  ASSERT_TRUE(gpu.is_cuda());
  comm_cases::check_all_reduce(c, gpu);
  comm_cases::check_async_in_order(c, gpu);
  comm_cases::check_broadcast(c, gpu);
  comm_cases::check_all_gather(c, gpu);
  comm_cases::check_all_gather_v(c, gpu);
  comm_cases::check_reduce_scatter(c, gpu);
  comm_cases::check_contract_errors(c, gpu);
}

#ifdef PFT_HAVE_CUDA

#define PFT_REQUIRE_GPU_PER_RANK()                                                   \
  do {                                                                               \
    if (!gpu_per_rank()) GTEST_SKIP() << "NCCL needs one GPU per rank on each node"; \
  } while (0)

TEST(NcclCommunicator, EveryOpOnCudaTensorsAndCpuTensorsOverMpi) {
  PFT_REQUIRE_GPU_PER_RANK();
  DistConfig dist;
  NcclCommunicator c(env(), dist);
  EXPECT_EQ(c.backend_name(), "nccl");
  const at::Device gpu = c.device();
  ASSERT_TRUE(gpu.is_cuda());
  comm_cases::check_all_reduce(c, gpu);
  comm_cases::check_async_in_order(c, gpu);
  comm_cases::check_broadcast(c, gpu);
  comm_cases::check_all_gather(c, gpu);
  comm_cases::check_all_gather_v(c, gpu);
  comm_cases::check_reduce_scatter(c, gpu);
  comm_cases::check_contract_errors(c, gpu);
  comm_cases::check_host_helpers(c);
  comm_cases::check_all_reduce(c, at::kCPU);  // CPU tensors take the MPI path
}

// The collective sees what the compute stream wrote before it, and compute queued after wait()
// sees its result, with a non-default current stream and no host synchronisation in between.
TEST(NcclCommunicator, IsFencedAgainstTheCurrentStream) {
  PFT_REQUIRE_GPU_PER_RANK();
  DistConfig dist;
  NcclCommunicator c(env(), dist);
  const int n = c.size();
  c10::cuda::CUDAStreamGuard on(c10::cuda::getStreamFromPool(false, c.device().index()));
  const auto opts = at::TensorOptions().device(c.device());
  at::Tensor big = at::rand({2048, 2048}, opts);
  for (int i = 0; i < 3; ++i) {
    at::Tensor x = at::zeros({1 << 20}, opts);
    at::mm(big, big);  // keep the compute stream busy
    x.fill_(c.rank() + 1);
    auto work = c.all_reduce_async(x, ReduceOp::kSum);
    work->wait();
    at::Tensor y = x * 2;
    comm_cases::expect_values(y, at::full({1 << 20}, n * (n + 1.0), at::kDouble), "fenced");
  }
}

TEST(NcclCommunicator, DeadlineAbortsAndThrowsOnWaitingRanks) {
  PFT_REQUIRE_GPU_PER_RANK();
  if (env().world_size < 2) GTEST_SKIP() << "needs two ranks or more";
  DistConfig dist;
  dist.timeout_s = 1.0;
  auto c = std::make_unique<NcclCommunicator>(env(), dist);
  at::Tensor x = at::ones({1024}, at::TensorOptions().device(c->device()));
  if (c->rank() != 0) {
    const auto start = std::chrono::steady_clock::now();
    try {
      c->all_reduce(x, ReduceOp::kSum);
      ADD_FAILURE() << "all_reduce without rank 0 returned";
    } catch (const RuntimeFailure& e) {
      const double elapsed = seconds_since(start);
      EXPECT_GE(elapsed, 1.0) << e.what();
      EXPECT_LT(elapsed, 3.0) << e.what();
      EXPECT_NE(std::string(e.what()).find("all_reduce(sum, 1024 x float32"), std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("rank " + std::to_string(c->rank())), std::string::npos);
    }
    EXPECT_TRUE(c->failed());
    EXPECT_THROW(c->barrier(), RuntimeFailure);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  // Rank 0 never issues the call: its peers aborted their NCCL communicators.
  c.reset();
  MPI_Barrier(MPI_COMM_WORLD);
}

#endif  // PFT_HAVE_CUDA

}  // namespace
}  // namespace pft
