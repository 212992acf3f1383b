// A minimal front end of the in-allocation executor (sweep/mpi_executor.h: run_mpi_trials) for
// its tests and benchmark: trials as lists of overrides on the command line, without a sweep
// file (`pft sweep run` with executor mpi is the user's front end, sweep/executor.h):
//
//   mpirun -np W mpi_sweep_driver SWEEP_DIR RANKS_PER_TRIAL ASHA_MIN_STEPS ASHA_ETA CONFIG
//       "COMMON OVERRIDES" "TRIAL 0 OVERRIDES" "TRIAL 1 OVERRIDES" ...
//
// Overrides are `key=value` words separated by spaces (as `--set`); trial i is `t<i>`; the
// objective is eval.loss (min); ASHA_MIN_STEPS 0 turns ASHA off. World rank 0 prints one line per
// trial: `trial ID STATE STEPS OBJECTIVE`. Exit codes as `pft` (2 bad input, 3 a lost rank).
#include <algorithm>
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "config/config.h"
#include "core/agree.h"
#include "core/error.h"
#include "core/hdf5.h"
#include "core/leak_check.h"
#include "core/logging.h"
#include "core/mpi_env.h"
#include "core/rank_env.h"
#include "core/run_dir.h"
#include "sweep/mpi_executor.h"

namespace {

std::vector<std::string> words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

int run(int argc, char** argv) {
  if (argc < 8) {
    std::fprintf(stderr,
                 "usage: mpi_sweep_driver SWEEP_DIR RANKS_PER_TRIAL ASHA_MIN_STEPS ASHA_ETA CONFIG "
                 "\"COMMON OVERRIDES\" \"TRIAL OVERRIDES\"...\n");
    return 2;
  }
  pft::sweep::MpiSweepSettings settings;
  settings.dir = argv[1];
  settings.ranks_per_trial = std::stoi(argv[2]);
  const int64_t min_steps = std::stoll(argv[3]);
  const double eta = std::stod(argv[4]);
  const std::string path = argv[5];
  const std::vector<std::string> common = words(argv[6]);

  std::vector<pft::sweep::MpiTrial> trials;
  pft::agree_world([&] {
    for (int i = 7; i < argc; ++i) {
      pft::sweep::MpiTrial t;
      t.id = "t" + std::to_string(i - 7);
      t.overrides = words(argv[i]);
      for (const std::string& o : t.overrides) {
        const size_t eq = o.find('=');
        t.params.emplace_back(o.substr(0, eq), eq == std::string::npos ? "" : o.substr(eq + 1));
      }
      std::vector<std::string> all = common;
      all.insert(all.end(), t.overrides.begin(), t.overrides.end());
      t.config = pft::load_config(path, all, /*training=*/true);
      trials.push_back(std::move(t));
    }
  });
  const pft::Config& base = trials.front().config;
  settings.timeout_s = base.dist.timeout_s;
  if (min_steps > 0) {
    pft::sweep::AshaConfig a;
    a.min_steps = min_steps;
    for (const pft::sweep::MpiTrial& t : trials) a.max_steps = std::max(a.max_steps, t.config.train.steps);
    a.eta = eta;
    a.higher_is_better = false;
    settings.asha = a;
  }
  pft::RankEnvOptions options;
  options.threads = base.run.threads;
  options.backend = base.dist.backend;
  options.timeout_s = base.dist.timeout_s;
  pft::RankEnv env;
  pft::agree_world([&] { env = pft::discover_rank_env(options); }, base.dist.timeout_s);
  const auto outcomes = pft::sweep::run_mpi_trials(env, trials, settings);
  for (const auto& o : outcomes)
    std::printf("trial %s %s %lld %.17g\n", o.id.c_str(), o.state.c_str(),
                static_cast<long long>(o.steps), o.objective);
  std::fflush(stdout);
  pft::release_rank_env(env);
  return 0;
}

}  // namespace

PFT_ASAN_KEEP_LIBRARIES_LOADED()  // the ASan build only (core/leak_check.h)

int main(int argc, char** argv) {
  pft::h5::take_over_shutdown();
  pft::restrict_umask();
  auto mpi = std::make_unique<pft::MpiEnvironment>();
  int code = 0;
  try {
    code = run(argc, argv);
  } catch (const pft::Error& e) {
    code = static_cast<int>(e.exit_code());
    if (!e.reported()) std::fprintf(stderr, "%s\n", e.what());
    pft::log::flush();
    pft::end_mpi_job(e.agreed(), code);
  } catch (const std::exception& e) {
    code = static_cast<int>(pft::ExitCode::kRuntime);
    std::fprintf(stderr, "unexpected failure: %s\n", e.what());
    pft::end_mpi_job(/*agreed=*/false, code);
  }
  pft::h5::shutdown();
  return code;
}
