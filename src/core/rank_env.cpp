#include "core/rank_env.h"

#include <sched.h>
#include <unistd.h>

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <cstdlib>
#include <exception>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/format.h"
#include "core/logging.h"
#include "core/mpi_check.h"

namespace pft {

void throw_mpi_error(int code, const char* call, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(code, text, &len);
  int rank = -1;
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  throw RuntimeFailure(fmt::format("MPI call {} failed at {}:{} on rank {} ({}): {}", call, file,
                                   line, rank, host, std::string(text, len)));
}

MpiEnvironment::MpiEnvironment() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) {
    MPI_Query_thread(&provided_);
    return;
  }
  PFT_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided_));
  owns_ = true;
  // Errors come back as return codes (checked by PFT_MPI_CHECK) instead of aborting the job.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
}

MpiEnvironment::~MpiEnvironment() {
  if (!owns_) return;
  // Unwinding from a failure: MPI_Finalize waits for every rank, and a peer that died or stalled
  // never comes, so the job would hang here before the error is even printed. main() reports it,
  // then finalizes (the ranks agreed on the failure) or aborts the job (they did not).
  if (std::uncaught_exceptions() > 0) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

int default_threads(int local_size) {
  const int hw = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int fair_share = std::max(1, hw / std::max(1, local_size));
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    // A launcher may bind a rank to a core (mask = 1) or to a whole socket shared with other
    // ranks (mask = the socket's cores): never use more than the mask, nor more than a fair share.
    const int n = CPU_COUNT(&set);
    if (n > 0) return std::min(n, fair_share);
  }
  return fair_share;
}

namespace {

std::string detect_launcher() {
  if (std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr) return "mpirun";
  if (std::getenv("SLURM_STEP_ID") != nullptr || std::getenv("SLURM_PROCID") != nullptr)
    return "srun";
  if (std::getenv("PMIX_RANK") != nullptr) return "pmix";
  return "single";
}

}  // namespace

RankEnv discover_rank_env(const RankEnvOptions& options) {
  RankEnv env;
  MPI_Query_thread(&env.thread_level);
  PFT_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &env.world));
  MPI_Comm_set_errhandler(env.world, MPI_ERRORS_RETURN);
  PFT_MPI_CHECK(MPI_Comm_rank(env.world, &env.world_rank));
  PFT_MPI_CHECK(MPI_Comm_size(env.world, &env.world_size));
  PFT_MPI_CHECK(MPI_Comm_split_type(env.world, MPI_COMM_TYPE_SHARED, env.world_rank,
                                    MPI_INFO_NULL, &env.node));
  PFT_MPI_CHECK(MPI_Comm_rank(env.node, &env.local_rank));
  PFT_MPI_CHECK(MPI_Comm_size(env.node, &env.local_size));

  // Node index: the local leaders, ordered by world rank, number the nodes.
  const int leader = env.local_rank == 0 ? 1 : 0;
  std::vector<int> leaders(env.world_size, 0);
  PFT_MPI_CHECK(MPI_Allgather(&leader, 1, MPI_INT, leaders.data(), 1, MPI_INT, env.world));
  int node_leader_world_rank = env.world_rank;
  PFT_MPI_CHECK(MPI_Bcast(&node_leader_world_rank, 1, MPI_INT, 0, env.node));
  env.num_nodes = 0;
  for (int r = 0; r < env.world_size; ++r) {
    if (leaders[r] == 0) continue;
    if (r == node_leader_world_rank) env.node_rank = env.num_nodes;
    ++env.num_nodes;
  }

  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  env.host = host;
  env.launcher = detect_launcher();
  log::init(env.world_rank, env.world_size, env.host);

  // Device and backend. `auto` takes the GPU when this process can see one.
  const std::string& b = options.backend;
  if (b != "auto" && b != "mpi" && b != "nccl")
    throw InputError(fmt::format("dist.backend: unknown backend '{}'; use auto, mpi or nccl", b));
  const int gpus = options.allow_cuda ? static_cast<int>(torch::cuda::device_count()) : 0;
  if (b == "nccl" && gpus == 0)
    throw InputError(
        "dist.backend: nccl needs CUDA GPUs and none is visible to this process; use "
        "dist.backend: mpi (or auto) on CPU machines");
  if (gpus > 0 && (b == "auto" || b == "nccl" || b == "mpi")) {
    env.device = fmt::format("cuda:{}", env.local_rank % gpus);
    env.backend = b == "mpi" ? "mpi" : "nccl";
  } else {
    env.device = "cpu";
    env.backend = "mpi";
  }

  env.threads = options.threads > 0 ? options.threads : default_threads(env.local_size);
  at::set_num_threads(env.threads);
  try {
    at::set_num_interop_threads(1);  // pft runs no inter-op parallel work; throws if already set
  } catch (const std::exception&) {
  }
  return env;
}

void release_rank_env(RankEnv& env) {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (env.node != MPI_COMM_NULL) MPI_Comm_free(&env.node);
  if (env.world != MPI_COMM_NULL) MPI_Comm_free(&env.world);
}

}  // namespace pft
