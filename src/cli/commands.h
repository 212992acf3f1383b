// The `pft` subcommands. Each file cmd_<name>.cpp registers one subcommand on the CLI11 app and
// returns the action main runs when that subcommand was chosen. Actions return an exit code or
// throw pft::Error (see core/error.h for the codes).
#pragma once

#include <CLI/App.hpp>

#include <functional>
#include <string>
#include <vector>

#include "config/config.h"

namespace pft::cli {

struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

// A config file plus `--set key.path=value` overrides, shared by the commands that take one.
struct ConfigArgs {
  std::string path;
  std::vector<std::string> overrides;
};
void add_config_args(CLI::App& sub, ConfigArgs& args);

// Which cross-key checks a command's config must pass: every one (kAll), or only those of the
// data.* keys (kData: `pft data show` and `validate` read nothing else).
enum class ConfigKeys { kAll, kData };

// The config of `args`, loaded by every rank together (one message and exit 2 on all of them for
// a bad config, core/agree.h) and resolved as `pft train` resolves it: model.from_pretrained's
// config.json fills model.* and, when unset, data.tokenizer (model/hf_import.h). Collective over
// MPI_COMM_WORLD; construct a Session first.
Config load_resolved_config(const ConfigArgs& args, ConfigKeys keys = ConfigKeys::kAll);

Command add_config_command(CLI::App& app);
Command add_train_command(CLI::App& app);
// `pft generate` (cli/cmd_generate.cpp).
Command add_generate_command(CLI::App& app);
Command add_data_command(CLI::App& app);
// `pft data prepare` (cli/cmd_data_prepare.cpp), a subcommand of `data`.
Command add_data_prepare(CLI::App& data);
// `pft ckpt ls|inspect|verify|diff|export` (cli/cmd_ckpt.cpp).
Command add_ckpt_command(CLI::App& app);
// `pft eval` (cli/cmd_eval.cpp).
Command add_eval_command(CLI::App& app);
// `pft sweep run|status` (cli/cmd_sweep.cpp, docs/sweeps.md).
Command add_sweep_command(CLI::App& app);
// `pft status RUN_DIR` (cli/cmd_status.cpp, docs/observability.md).
Command add_status_command(CLI::App& app);
// `pft report RUN_DIR` (cli/cmd_report.cpp, docs/observability.md).
Command add_report_command(CLI::App& app);

}  // namespace pft::cli
