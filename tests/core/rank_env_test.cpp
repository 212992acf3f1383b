// Rank environment under mpirun -np 1, 2, 4: ranks, local ranks, nodes, threads, device.
// On one host unless PFT_EXPECT_RANK_HOSTS lists each rank's host (comma-separated, by world
// rank): tests/netns/rank_layout_test.sh runs this binary over two hosts with it set.
#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/rank_env.h"

namespace pft {
namespace {

// The hosts this run expects, by world rank; empty: every rank on this host.
std::vector<std::string> expected_rank_hosts() {
  std::vector<std::string> hosts;
  const char* list = std::getenv("PFT_EXPECT_RANK_HOSTS");
  if (list == nullptr) return hosts;
  std::stringstream in(list);
  for (std::string h; std::getline(in, h, ',');) hosts.push_back(h);
  return hosts;
}

TEST(RankEnv, MatchesMpiWorld) {
  RankEnv env = discover_rank_env({});
  int rank = -1, size = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  EXPECT_EQ(env.world_rank, rank);
  EXPECT_EQ(env.world_size, size);
  if (expected_rank_hosts().empty()) {
    // One host: every rank is local, one node.
    EXPECT_EQ(env.local_size, size);
    EXPECT_EQ(env.local_rank, rank);
    EXPECT_EQ(env.num_nodes, 1);
    EXPECT_EQ(env.node_rank, 0);
  }
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  EXPECT_EQ(env.host, host);
  EXPECT_EQ(env.thread_level, MPI_THREAD_MULTIPLE);
  // tests/mpi_run.sh runs this under mpirun; tests/cluster/srun_run.sh under srun and says so.
  const char* expected_launcher = std::getenv("PFT_EXPECT_LAUNCHER");
  EXPECT_EQ(env.launcher, expected_launcher != nullptr ? expected_launcher : "mpirun");
  release_rank_env(env);
}

// Local rank and size, node index and count agree with where the ranks are (rank_hosts, which
// the test checks against each rank's own hostname and, when given, the expected hosts).
TEST(RankEnv, PlacesFollowTheHosts) {
  RankEnv env = discover_rank_env({});
  ASSERT_EQ(env.rank_hosts.size(), static_cast<size_t>(env.world_size));
  ASSERT_EQ(env.rank_threads.size(), static_cast<size_t>(env.world_size));
  EXPECT_EQ(env.rank_hosts[env.world_rank], env.host);
  EXPECT_EQ(env.rank_threads[env.world_rank], env.threads);
  const std::vector<std::string> expected = expected_rank_hosts();
  if (!expected.empty()) {
    EXPECT_EQ(env.rank_hosts, expected);
  }
  // Hosts numbered in the order of their lowest rank.
  std::vector<std::string> order;
  int local_rank = 0, local_size = 0;
  for (int r = 0; r < env.world_size; ++r) {
    const std::string& h = env.rank_hosts[r];
    if (std::find(order.begin(), order.end(), h) == order.end()) order.push_back(h);
    if (h == env.host) {
      local_size += 1;
      if (r < env.world_rank) local_rank += 1;
    }
  }
  EXPECT_EQ(env.local_rank, local_rank);
  EXPECT_EQ(env.local_size, local_size);
  EXPECT_EQ(env.num_nodes, static_cast<int>(order.size()));
  EXPECT_EQ(env.node_rank,
            static_cast<int>(std::find(order.begin(), order.end(), env.host) - order.begin()));
  // Threads default to this host's share: the same on every rank of a host.
  EXPECT_EQ(env.threads, default_threads(env.local_size));
  release_rank_env(env);
}

TEST(RankEnv, DescribesTheLayout) {
  EXPECT_EQ(describe_layout({"node1", "node1", "node2", "node2"}, {1, 1, 1, 1}),
            "layout: 4 ranks on 2 hosts: node1 -> ranks 0-1, node2 -> ranks 2-3; 1 thread each");
  EXPECT_EQ(describe_layout({"vm"}, {2}), "layout: 1 rank on 1 host: vm -> rank 0; 2 threads each");
  // Round-robin placement, and threads that differ between and within hosts.
  EXPECT_EQ(describe_layout({"a", "b", "a", "b", "a"}, {2, 1, 2, 1, 4}),
            "layout: 5 ranks on 2 hosts: a -> ranks 0,2,4, b -> ranks 1,3; threads per rank: a 2-4, "
            "b 1");
  // Many hosts: the first few, then a count.
  std::vector<std::string> hosts;
  for (int r = 0; r < 80; ++r) hosts.push_back("n" + std::to_string(r / 8));
  EXPECT_EQ(describe_layout(hosts, std::vector<int>(80, 1), 3),
            "layout: 80 ranks on 10 hosts: n0 -> ranks 0-7, n1 -> ranks 8-15, n2 -> ranks 16-23, "
            "... 7 more hosts; 1 thread each");
  EXPECT_THROW(describe_layout({"a"}, {1, 1}), std::invalid_argument);
  EXPECT_THROW(describe_layout({}, {}), std::invalid_argument);
}

TEST(RankEnv, LocalRanksAreDistinctAcrossTheNode) {
  RankEnv env = discover_rank_env({});
  std::vector<int> locals(env.world_size);
  MPI_Allgather(&env.local_rank, 1, MPI_INT, locals.data(), 1, MPI_INT, MPI_COMM_WORLD);
  // Distinct among the ranks of each host.
  std::set<std::pair<std::string, int>> places;
  for (int r = 0; r < env.world_size; ++r) places.emplace(env.rank_hosts[r], locals[r]);
  EXPECT_EQ(places.size(), locals.size());
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
