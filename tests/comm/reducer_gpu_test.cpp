// The gradient reducer on CUDA tensors (cases of reducer_cases.h), through the MPI backend
// (pinned staging; ranks may share a GPU) and the NCCL backend (one GPU per rank). On CUDA the
// hooks run on autograd's device thread, not the caller's. Compiled everywhere so the code builds
// in CI; registered with labels mpi;gpu only when PFT_GPU_TESTS is set (tests/comm/
// CMakeLists.txt), and every case skips itself when torch sees no GPU.
#include <gtest/gtest.h>

#include <mpi.h>

#include <torch/cuda.h>

#include "comm/mpi_communicator.h"
#include "config/config.h"
#include "core/rank_env.h"
#include "mpi_test_env.h"
#include "reducer_cases.h"
#ifdef PFT_HAVE_CUDA
#include "comm/nccl_communicator.h"
#endif

namespace pft {
namespace {

using namespace reducer_cases;

using test::env;

bool have_gpu() { return torch::cuda::is_available(); }

// Same answer on every rank.
bool gpu_per_rank() {
  const int mine = have_gpu() && static_cast<int>(torch::cuda::device_count()) >= env().local_size;
  int all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return all == 1;
}

void run_all_cases(Communicator& c, at::Device gpu) {
  const auto unused_somewhere = [last = c.size() - 1](int r, size_t i) {
    if (i == 5) return r == 0;
    if (i == 1) return false;
    if (i == 7) return r == last;
    return true;
  };
  check_bucket_layout(c, gpu, caps(150, 1000));
  check_sum(c, gpu, ReducerOptions{});
  check_sum(c, gpu, caps(150, 1000));
  check_sum(c, gpu, caps(150, 1000), unused_somewhere);
  check_accumulation(c, gpu);
  check_broadcast(c, gpu);
  check_desync_detector(c, gpu);
}

TEST(ReducerCuda, MpiBackend) {
  if (!have_gpu()) GTEST_SKIP() << "torch sees no CUDA device here";
  DistConfig dist;
  dist.timeout_s = 120;
  MpiCommunicator c(env(), dist);
  const at::Device gpu(env().device);
  ASSERT_TRUE(gpu.is_cuda());
  run_all_cases(c, gpu);
}

#ifdef PFT_HAVE_CUDA
TEST(ReducerCuda, NcclBackend) {
  if (!gpu_per_rank()) GTEST_SKIP() << "NCCL needs one GPU per rank on each node";
  DistConfig dist;
  dist.timeout_s = 120;
  NcclCommunicator c(env(), dist);
  run_all_cases(c, c.device());
}
#endif

}  // namespace
}  // namespace pft
