// What every command that runs as a (possibly multi-rank) job needs first: MPI, the config
// loaded and agreed on by all ranks, then the rank environment. Order matters: the config is
// validated before any heavy initialisation, and a bad config makes every rank exit 2 with one
// message (core/agree.h).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/mpi_env.h"
#include "core/rank_env.h"

namespace pft::cli {

class Session {
 public:
  Session();
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  int world_rank() const { return world_rank_; }

  // Collective: every rank parses; all fail together on a bad config. `training`: as
  // pft::load_config's (false: the keys only training needs may be absent).
  Config load_config(const std::string& path, const std::vector<std::string>& overrides,
                     bool training = true);

  // Collective: discovers ranks, devices and threads from the loaded config. `training`: also
  // check that the batch divides over the ranks (`pft eval` needs no batch to divide).
  const RankEnv& start(const Config& config, bool training = true);

 private:
  std::unique_ptr<MpiEnvironment> mpi_;
  int world_rank_ = 0;
  std::unique_ptr<RankEnv> env_;
};

}  // namespace pft::cli
