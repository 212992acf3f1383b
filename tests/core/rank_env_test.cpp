// Rank environment under mpirun -np 1, 2, 4: ranks, local ranks, nodes, threads, device.
#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <ATen/Parallel.h>

#include <cstdlib>
#include <set>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/rank_env.h"

namespace pft {
namespace {

TEST(RankEnv, MatchesMpiWorld) {
  RankEnv env = discover_rank_env({});
  int rank = -1, size = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  EXPECT_EQ(env.world_rank, rank);
  EXPECT_EQ(env.world_size, size);
  // One host here: every rank is local, one node.
  EXPECT_EQ(env.local_size, size);
  EXPECT_EQ(env.local_rank, rank);
  EXPECT_EQ(env.num_nodes, 1);
  EXPECT_EQ(env.node_rank, 0);
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  EXPECT_EQ(env.host, host);
  EXPECT_EQ(env.thread_level, MPI_THREAD_MULTIPLE);
  // tests/mpi_run.sh runs this under mpirun; tests/cluster/srun_run.sh under srun and says so.
  const char* expected_launcher = std::getenv("PFT_EXPECT_LAUNCHER");
  EXPECT_EQ(env.launcher, expected_launcher != nullptr ? expected_launcher : "mpirun");
  release_rank_env(env);
}

TEST(RankEnv, LocalRanksAreDistinctAcrossTheNode) {
  RankEnv env = discover_rank_env({});
  std::vector<int> locals(env.world_size);
  MPI_Allgather(&env.local_rank, 1, MPI_INT, locals.data(), 1, MPI_INT, MPI_COMM_WORLD);
  EXPECT_EQ(std::set<int>(locals.begin(), locals.end()).size(), locals.size());
  release_rank_env(env);
}

TEST(RankEnv, ThreadsDefaultToCoresPerLocalRankAndAreApplied) {
  RankEnv env = discover_rank_env({});
  EXPECT_EQ(env.threads, default_threads(env.local_size));
  EXPECT_EQ(at::get_num_threads(), env.threads);
  const int hw = static_cast<int>(std::thread::hardware_concurrency());
  EXPECT_GE(env.threads, 1);
  EXPECT_LE(env.threads * env.local_size, std::max(hw, env.local_size));
  release_rank_env(env);

  RankEnvOptions two;
  two.threads = 2;
  env = discover_rank_env(two);
  EXPECT_EQ(env.threads, 2);
  EXPECT_EQ(at::get_num_threads(), 2);
  release_rank_env(env);
}

TEST(RankEnv, CpuDeviceAndBackendWithoutGpus) {
  RankEnvOptions cpu_only;
  cpu_only.allow_cuda = false;
  RankEnv env = discover_rank_env(cpu_only);
  EXPECT_EQ(env.device, "cpu");
  EXPECT_EQ(env.backend, "mpi");
  EXPECT_FALSE(env.is_cuda());
  release_rank_env(env);

  RankEnvOptions nccl;
  nccl.allow_cuda = false;
  nccl.backend = "nccl";
  EXPECT_THROW(discover_rank_env(nccl), InputError);
}

}  // namespace
}  // namespace pft
