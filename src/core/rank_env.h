// The rank environment: who am I in the job, on which host and device, with how many threads.
//
// Discovered once at start-up by every rank, under `mpirun`, `srun --mpi=pmix` or as a plain
// single process (MPI singleton). Local rank and size come from MPI itself (a split of the world
// by shared memory, core/mpi_env.h), so no launcher-specific variables are needed. Passed down by
// const reference. Rank 0 logs the job's layout once (`layout: 4 ranks on 2 hosts: node1 -> ranks
// 0-1, node2 -> ranks 2-3; 1 thread each`, describe_layout).
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace pft {

struct MpiComms;  // core/mpi_env.h

// The deadline of agree() where no config sets one (dist.timeout_s's default).
inline constexpr double kDefaultTimeoutS = 300.0;

struct RankEnvOptions {
  int threads = 0;                 // torch intra-op threads per rank; 0 = node cores / local ranks
  std::string backend = "auto";    // dist.backend: auto | mpi | nccl (decides CPU vs CUDA)
  bool allow_cuda = true;          // false forces the CPU device
  double timeout_s = kDefaultTimeoutS;  // dist.timeout_s: the deadline of agree(env, ...)
};

struct RankEnv {
  int world_rank = 0;
  int world_size = 1;
  int local_rank = 0;   // rank among the processes on this node
  int local_size = 1;
  int node_rank = 0;    // index of this node, 0..num_nodes-1 (by lowest world rank on the node)
  int num_nodes = 1;
  std::string host;
  std::string launcher;  // "mpirun", "srun", "single"
  int thread_level = 0;  // MPI thread level provided
  int threads = 1;       // torch intra-op threads set for this rank
  std::string device = "cpu";  // "cpu" or "cuda:<n>"
  std::string backend = "mpi";  // resolved communicator backend: "mpi" or "nccl"
  double timeout_s = kDefaultTimeoutS;  // dist.timeout_s: the deadline of agree(env, ...)
  std::shared_ptr<MpiComms> mpi;  // pft's communicators (core/mpi_env.h: world_comm(env))
  // Every rank's host name and torch threads, indexed by world rank (the same on all ranks):
  // the start-up layout line and messages that name another rank's host.
  std::vector<std::string> rank_hosts;
  std::vector<int> rank_threads;

  bool is_root() const { return world_rank == 0; }
  bool is_cuda() const { return device.rfind("cuda", 0) == 0; }
};

// Collective over the whole job. Sets torch's thread count, initialises the logger prefix; rank 0
// logs the layout line (describe_layout).
// Throws InputError when `backend` is unknown or asks for nccl where no GPU is present.
RankEnv discover_rank_env(const RankEnvOptions& options);

// A group of `parent`'s ranks as a job of its own: collective over parent's world; the ranks
// passing the same `color` form one group, numbered within it in parent's order (world_rank,
// world_size, local and node ranks are the group's; host, device, threads, launcher and timeout
// are parent's). Everything that takes a RankEnv (train(), agree(), the communicator) then runs on
// the group alone: this is how an in-allocation sweep (sweep/mpi_executor.h) trains one trial per
// group. While the group's env is held, the roll call (core/mpi_roll_call.h) is the group's;
// release_rank_env gives the parent's back. Logging keeps parent's ranks (world rank 0 speaks).
RankEnv split_rank_env(const RankEnv& parent, int color);

// Frees the communicators held by `env` (collective). Safe to call twice.
void release_rank_env(RankEnv& env);

// The job's layout in one line, from every rank's host and threads (indexed by world rank):
// hosts in the order of their lowest rank, each with its ranks as ranges
// (`layout: 4 ranks on 2 hosts: node1 -> ranks 0-1, node2 -> ranks 2-3; 1 thread each`). Beyond
// `max_hosts` hosts the rest is counted (`..., 30 more hosts`). Threads that differ are given per
// host (`threads per rank: node1 2, node2 1-4`). Throws std::invalid_argument when the two
// vectors differ in length or are empty.
std::string describe_layout(const std::vector<std::string>& rank_hosts,
                            const std::vector<int>& rank_threads, int max_hosts = 8);

// Default torch threads for one of `local_size` ranks on a node: the node's cores / local_size,
// capped by the size of the affinity mask a launcher bound the process to.
int default_threads(int local_size);

}  // namespace pft
