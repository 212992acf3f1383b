// pft eval CONFIG [--set k=v ...] [--model M] [--checkpoint FILE|RUN_DIR |
//     --adapter FILE] [--split validation|test] [--max-batches N] [--output FILE.jsonl]
//     [--untrained]   score a model on the config's tasks (single process, mpirun or srun)
//
// Parses the flags into an EvalRequest; train/eval_run.h does the rest (docs/eval.md).
#include "cli/commands.h"
#include "cli/session.h"
#include "train/eval_run.h"

namespace pft::cli {

Command add_eval_command(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "eval",
      "Score a model (pretrained, checkpoint, or base + adapter) on the config's tasks, per "
      "task and template (single process, mpirun or srun)");
  auto config = std::make_shared<ConfigArgs>();
  auto model = std::make_shared<std::string>();
  auto a = std::make_shared<EvalRequest>();
  // CONFIG positional, as `pft train CONFIG`; --config CONFIG reads the same.
  sub->add_option("config,--config", config->path, "Config file (YAML): data.tasks, eval.*")
      ->required();
  sub->add_option("--set", config->overrides,
                  "Override a key: --set eval.max_new_tokens=16 (repeatable; values are YAML)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  sub->add_option("--model", *model,
                  "Pretrained model to score or to put --adapter on: sets model.from_pretrained "
                  "(a Hugging Face directory, or whatever that key accepts)");
  sub->add_option("--checkpoint", a->checkpoint,
                  "pft checkpoint (.h5) of a full or PEFT run, or a run directory (its latest)");
  sub->add_option("--adapter", a->adapter,
                  "Adapter checkpoint (.h5) of a PEFT run, on the config's base model");
  sub->add_option("--split", a->split, "Held-out split: validation or test")
      ->capture_default_str();
  sub->add_option("--max-batches", a->max_batches,
                  "Examples per template <= N x micro_batch_size (default: eval.max_batches)")
      ->check(CLI::NonNegativeNumber);
  sub->add_option("--output", a->output, "Write JSON lines (eval records + eval_summary) here");
  sub->add_flag("--untrained", a->untrained,
                "With no model given: score the random init of run.seed on purpose");
  Command c;
  c.app = sub;
  c.run = [config, model, a]() -> int {
    std::vector<std::string> overrides = config->overrides;
    if (!model->empty()) overrides.push_back("model.from_pretrained=" + *model);
    Session session;
    const Config cfg = session.load_config(config->path, overrides, /*training=*/false);
    const RankEnv& env = session.start(cfg, /*training=*/false);
    return run_eval(cfg, env, *a);
  };
  return c;
}

}  // namespace pft::cli
