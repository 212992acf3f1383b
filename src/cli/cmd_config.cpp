// pft config show CONFIG [--set k=v ...]   print the resolved config (model.from_pretrained's
//                                          architecture and tokenizer filled in, as in training)
// pft config show CONFIG --memory [--world N]
//                                          print the per-rank memory estimate instead
//                                          (train/memory_plan.h); N defaults to 1
// pft config docs                          print the key reference (docs/config.md's table)
#include <iostream>

#include "cli/commands.h"
#include "cli/session.h"
#include "config/config.h"
#include "config/data_config.h"
#include "core/agree.h"
#include "core/error.h"
#include "model/hf_import.h"
#include "train/memory_plan.h"

namespace pft::cli {

void add_config_args(CLI::App& sub, ConfigArgs& args) {
  sub.add_option("config", args.path, "Config file (YAML)")->required();
  sub.add_option("--set", args.overrides,
                 "Override a key: --set train.lr=3e-4 (repeatable; values are YAML)")
      ->take_last();
  sub.get_option("--set")->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
}

Config load_resolved_config(const ConfigArgs& args, ConfigKeys keys) {
  Config config;
  agree_world([&] {
    config = keys == ConfigKeys::kData ? load_data_config(args.path, args.overrides)
                                       : load_config(args.path, args.overrides);
    apply_pretrained_architecture(config);  // as `pft train` does (Note [pretrained architecture])
  });
  return config;
}

Command add_config_command(CLI::App& app) {
  auto* sub = app.add_subcommand("config", "Inspect configuration: resolved values and key reference");
  sub->require_subcommand(1);

  auto args = std::make_shared<ConfigArgs>();
  auto* show = sub->add_subcommand("show", "Print the resolved config (defaults filled, overrides applied)");
  add_config_args(*show, *args);
  auto memory = std::make_shared<bool>(false);
  auto world = std::make_shared<int>(0);
  auto* memory_flag =
      show->add_flag("--memory", *memory,
                     "Print the per-rank memory estimate (parameters, gradients, optimizer, "
                     "activations, logits, comm buffers) instead of the config");
  show->add_option("--world", *world, "Ranks to plan --memory for (default 1)")
      ->check(CLI::PositiveNumber)
      ->needs(memory_flag);
  auto* docs = sub->add_subcommand("docs", "Print the Markdown reference of every config key");

  Command c;
  c.app = sub;
  c.run = [show, docs, args, memory, world]() -> int {
    if (docs->parsed()) {
      std::cout << config_reference_markdown();
      return 0;
    }
    (void)show;
    Session session;
    const Config config = load_resolved_config(*args);
    if (session.world_rank() != 0) return 0;
    if (*memory) {
      const int w = *world > 0 ? *world : 1;
      std::cout << format_memory_plan(plan_memory(config, w), config, w) << std::flush;
    } else {
      std::cout << to_yaml(config) << std::flush;
    }
    return 0;
  };
  return c;
}

}  // namespace pft::cli
