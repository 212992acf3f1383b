// pft train CONFIG [--set k=v ...]   train a model (single process, mpirun or srun)
#include "cli/commands.h"
#include "cli/session.h"
#include "core/signals.h"
#include "train/trainer.h"

namespace pft::cli {

Command add_train_command(CLI::App& app) {
  auto* sub = app.add_subcommand("train", "Train a model from a config (single process, mpirun or srun)");
  auto args = std::make_shared<ConfigArgs>();
  add_config_args(*sub, *args);
  Command c;
  c.app = sub;
  c.run = [args]() -> int {
    // First, before MPI_Init: a preemption signal never kills a rank (core/signals.h).
    install_preemption_handlers();
    Session session;
    const Config config = session.load_config(args->path, args->overrides);
    const RankEnv& env = session.start(config);
    train(config, env);
    return 0;
  };
  return c;
}

}  // namespace pft::cli
