#include "cli/session.h"

#include "core/agree.h"
#include "core/logging.h"

namespace pft::cli {

Session::Session() : mpi_(std::make_unique<MpiEnvironment>()), world_rank_(mpi_world_rank()) {}

Session::~Session() {
  if (env_) release_rank_env(*env_);
}

Config Session::load_config(const std::string& path, const std::vector<std::string>& overrides,
                            bool training) {
  Config config;
  agree_world([&] { config = pft::load_config(path, overrides, training); });
  return config;
}

const RankEnv& Session::start(const Config& config, bool training) {
  RankEnvOptions options;
  options.threads = config.run.threads;
  options.backend = config.dist.backend;
  options.timeout_s = config.dist.timeout_s;
  auto env = std::make_unique<RankEnv>();
  agree_world([&] {
    log::set_level(log::parse_level(config.run.log_level, "run.log_level"));
    *env = discover_rank_env(options);
    if (training) validate_for_world(config, env->world_size);
  }, config.dist.timeout_s);
  env_ = std::move(env);
  return *env_;
}

}  // namespace pft::cli
