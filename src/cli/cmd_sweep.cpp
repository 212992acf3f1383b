// pft sweep run SWEEP.yaml [--dir SWEEP_DIR] [--executor local|slurm|mpi]
//                                       run (or resume) a sweep: every trial a `pft train` run
// pft sweep status SWEEP_DIR            the ranked table; refreshes best.yaml, objective.html
// pft sweep trial SWEEP_DIR INDEX       (hidden) one trial, as a Slurm array task runs it
//
// docs/sweeps.md. The sweep process itself is not an MPI job (local and slurm executors): it
// starts trials as child processes, each its own job. The mpi executor is (sweep/executor.h).
#include <unistd.h>

#include <iostream>
#include <optional>

#include "cli/commands.h"
#include "core/error.h"
#include "core/format.h"
#include "core/logging.h"
#include "sweep/executor.h"
#include "sweep/results.h"
#include "sweep/sweep_file.h"

namespace pft::cli {

namespace {

struct SweepArgs {
  std::string file;
  std::string dir;
  std::string executor;
  int64_t index = -1;
};

void init_log() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '?';
  log::init(0, 1, host);
}

}  // namespace

Command add_sweep_command(CLI::App& app) {
  auto* sub = app.add_subcommand("sweep", "Hyperparameter and prompt sweeps: run, status");
  sub->require_subcommand(1);
  auto args = std::make_shared<SweepArgs>();

  auto* run = sub->add_subcommand("run", "Run a sweep (or resume it in its directory)");
  run->add_option("sweep", args->file, "Sweep file (YAML, docs/sweeps.md)")->required();
  run->add_option("--dir", args->dir,
                  "Sweep directory (trials, sweep.jsonl, best.yaml); default sweeps/<file stem>");
  run->add_option("--executor", args->executor, "Override executor.kind of the sweep file")
      ->check(CLI::IsMember({"local", "slurm", "mpi"}));

  auto* status = sub->add_subcommand("status", "Rank a sweep's trials; refresh best.yaml and objective.html");
  status->add_option("dir", args->dir, "Sweep directory")->required();

  auto* trial = sub->add_subcommand("trial", "Run one trial of a sweep (Slurm array tasks)");
  trial->group("");  // internal: sweep.sbatch runs it
  trial->add_option("dir", args->dir, "Sweep directory")->required();
  trial->add_option("index", args->index, "Trial index")->required()->check(CLI::NonNegativeNumber);

  Command c;
  c.app = sub;
  c.run = [run, status, trial, args]() -> int {
    init_log();
    if (status->parsed()) {
      const sweep::SweepDir dir(args->dir);
      const sweep::SweepSpec spec = dir.load_spec();
      std::cout << sweep::refresh_results(spec, sweep::expand(spec), dir) << std::flush;
      return 0;
    }
    if (trial->parsed()) return sweep::run_slurm_trial(args->dir, args->index);
    (void)run;
    sweep::SweepSpec spec = sweep::parse_sweep_file(args->file);
    if (!args->executor.empty()) {
      for (const auto kind : {sweep::ExecutorKind::kLocal, sweep::ExecutorKind::kSlurm,
                              sweep::ExecutorKind::kMpi})
        if (args->executor == sweep::executor_name(kind)) spec.executor.kind = kind;
      if (spec.early_stop.enabled && spec.executor.kind != sweep::ExecutorKind::kMpi)
        throw InputError(fmt::format("--executor {}: {} has early_stop (ASHA), which only the mpi "
                                     "executor runs; remove early_stop from the sweep file to run "
                                     "every trial to the end",
                                     args->executor, args->file));
    }
    const std::string dir =
        !args->dir.empty() ? args->dir
                           : (std::filesystem::path("sweeps") /
                              std::filesystem::path(args->file).stem()).string();
    switch (spec.executor.kind) {
      case sweep::ExecutorKind::kMpi:
        return sweep::run_mpi_sweep(spec, sweep::SweepDir(dir));
      case sweep::ExecutorKind::kSlurm: {
        sweep::SweepRun r = sweep::prepare_sweep(std::move(spec), dir, /*lock=*/true);
        return sweep::submit_slurm_sweep(r);
      }
      case sweep::ExecutorKind::kLocal:
        break;
    }
    sweep::SweepRun r = sweep::prepare_sweep(std::move(spec), dir, /*lock=*/true);
    return sweep::run_local_sweep(r);
  };
  return c;
}

}  // namespace pft::cli
