// Rank discovery (contract: core/rank_env.h); the MPI calls are in core/mpi_env.cpp.
#include "core/rank_env.h"

#include <sched.h>
#include <unistd.h>

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/format.h"
#include "core/logging.h"
#include "core/mpi_check.h"
#include "core/mpi_env.h"
#include "core/mpi_launcher.h"
#include "core/mpi_roll_call.h"

namespace pft {

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

// "0-1,4,6-7": ascending ranks as ranges.
std::string rank_ranges(const std::vector<int>& ranks) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < ranks.size();) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    parts.push_back(j == i ? fmt::format("{}", ranks[i]) : fmt::format("{}-{}", ranks[i], ranks[j]));
    i = j + 1;
  }
  return fmt::format("{}", fmt::join(parts, ","));
}

// For launch/pft-mpirun (docs/launching.md, "Node failures"): every rank's host, one "rank host"
// line each, in $PFT_VERDICT_FILE.layout, so that the launcher can name the ranks of a host that
// Open MPI lost before pft could. Rank 0 only; quietly nothing where the path is unreachable.
void write_launcher_layout(const std::vector<std::string>& rank_hosts) {
  const char* verdict = std::getenv("PFT_VERDICT_FILE");
  if (verdict == nullptr || *verdict == '\0') return;
  const std::string path = std::string(verdict) + ".layout";
  std::FILE* f = std::fopen((path + ".tmp").c_str(), "w");
  if (f == nullptr) return;
  for (size_t r = 0; r < rank_hosts.size(); ++r)
    std::fprintf(f, "%zu %s\n", r, rank_hosts[r].c_str());
  if (std::fclose(f) == 0) std::rename((path + ".tmp").c_str(), path.c_str());
}

// The ranks' numbering and communicators of `mpi` into `env`.
void set_topology(RankEnv& env, const MpiTopology& mpi) {
  env.world_rank = mpi.world_rank;
  env.world_size = mpi.world_size;
  env.local_rank = mpi.local_rank;
  env.local_size = mpi.local_size;
  env.node_rank = mpi.node_rank;
  env.num_nodes = mpi.num_nodes;
  env.mpi = mpi.comms;
}

}  // namespace

std::string describe_layout(const std::vector<std::string>& rank_hosts,
                            const std::vector<int>& rank_threads, int max_hosts) {
  if (rank_hosts.empty() || rank_hosts.size() != rank_threads.size())
    throw std::invalid_argument(fmt::format("describe_layout: {} hosts for {} thread counts",
                                            rank_hosts.size(), rank_threads.size()));
  struct Host {
    std::string name;
    std::vector<int> ranks;
    int min_threads, max_threads;
  };
  std::vector<Host> hosts;  // in the order of their lowest rank (the node index's order)
  for (size_t r = 0; r < rank_hosts.size(); ++r) {
    const int t = rank_threads[r];
    auto it = std::find_if(hosts.begin(), hosts.end(),
                           [&](const Host& h) { return h.name == rank_hosts[r]; });
    if (it == hosts.end()) {
      hosts.push_back({rank_hosts[r], {}, t, t});
      it = hosts.end() - 1;
    }
    it->ranks.push_back(static_cast<int>(r));
    it->min_threads = std::min(it->min_threads, t);
    it->max_threads = std::max(it->max_threads, t);
  }
  const size_t shown = std::min(hosts.size(), static_cast<size_t>(std::max(1, max_hosts)));
  std::vector<std::string> parts;
  for (size_t i = 0; i < shown; ++i)
    parts.push_back(fmt::format("{} -> rank{} {}", hosts[i].name,
                                hosts[i].ranks.size() > 1 ? "s" : "", rank_ranges(hosts[i].ranks)));
  if (shown < hosts.size()) parts.push_back(fmt::format("... {} more hosts", hosts.size() - shown));
  const auto [lo, hi] = std::minmax_element(rank_threads.begin(), rank_threads.end());
  std::string threads;
  if (*lo == *hi) {
    threads = fmt::format("{} thread{} each", *lo, *lo == 1 ? "" : "s");
  } else {
    std::vector<std::string> per_host;
    for (size_t i = 0; i < shown; ++i)
      per_host.push_back(hosts[i].min_threads == hosts[i].max_threads
                             ? fmt::format("{} {}", hosts[i].name, hosts[i].min_threads)
                             : fmt::format("{} {}-{}", hosts[i].name, hosts[i].min_threads,
                                           hosts[i].max_threads));
    if (shown < hosts.size()) per_host.emplace_back("...");
    threads = fmt::format("threads per rank: {}", fmt::join(per_host, ", "));
  }
  const size_t n = rank_hosts.size();
  return fmt::format("layout: {} rank{} on {} host{}: {}; {}", n, n == 1 ? "" : "s", hosts.size(),
                     hosts.size() == 1 ? "" : "s", fmt::join(parts, ", "), threads);
}

RankEnv discover_rank_env(const RankEnvOptions& options) {
  RankEnv env;
  const MpiTopology mpi = discover_mpi_topology();
  set_topology(env, mpi);
  env.thread_level = mpi.thread_level;
  env.timeout_s = options.timeout_s;

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

  // Every rank's host and threads (fixed-size records: one MPI_Allgather, no size exchange).
  struct Entry {
    char host[64];
    int threads;
  };
  Entry mine{};
  std::snprintf(mine.host, sizeof(mine.host), "%s", env.host.c_str());
  mine.threads = env.threads;
  std::vector<Entry> all(static_cast<size_t>(env.world_size));
  PFT_MPI_CHECK(MPI_Allgather(&mine, sizeof(Entry), MPI_BYTE, all.data(), sizeof(Entry), MPI_BYTE,
                          env.mpi->world));
  for (const Entry& e : all) {
    env.rank_hosts.emplace_back(e.host);
    env.rank_threads.push_back(e.threads);
  }
  log::info("{}", describe_layout(env.rank_hosts, env.rank_threads));
  register_roll_call(env.mpi->roll_call, env.rank_hosts);
  if (env.world_rank == 0) write_launcher_layout(env.rank_hosts);
  return env;
}

RankEnv split_rank_env(const RankEnv& parent, int color) {
  PFT_ASSERT(parent.mpi != nullptr, "split_rank_env: the parent RankEnv was not discovered");
  const MpiTopology mpi = split_mpi_topology(*parent.mpi, color);
  RankEnv env = parent;
  set_topology(env, mpi);
  env.mpi->parent_roll_call = parent.mpi->roll_call;
  env.mpi->parent_hosts = parent.rank_hosts;
  // The group's hosts and threads, in the group's rank order (the parent's order).
  std::vector<int> colors(static_cast<size_t>(parent.world_size), 0);
  PFT_MPI_CHECK(MPI_Allgather(&color, 1, MPI_INT, colors.data(), 1, MPI_INT, parent.mpi->world));
  env.rank_hosts.clear();
  env.rank_threads.clear();
  for (size_t r = 0; r < colors.size(); ++r) {
    if (colors[r] != color) continue;
    env.rank_hosts.push_back(parent.rank_hosts[r]);
    env.rank_threads.push_back(parent.rank_threads[r]);
  }
  register_roll_call(env.mpi->roll_call, env.rank_hosts);
  return env;
}

void release_rank_env(RankEnv& env) {
  if (env.mpi) free_mpi_comms(*env.mpi);
}

}  // namespace pft
