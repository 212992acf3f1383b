// pft: distributed prompt-based fine-tuning of language models.
//
// main parses the command line, hands off to the chosen subcommand and maps its outcome to the
// exit code contract of core/error.h. Nothing else happens here.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "core/error.h"
#include "core/hdf5.h"
#include "core/leak_check.h"
#include "core/logging.h"
#include "core/mpi_env.h"
#include "core/mpi_roll_call.h"
#include "core/run_dir.h"

PFT_ASAN_KEEP_LIBRARIES_LOADED()  // the ASan build only (core/leak_check.h)

int main(int argc, char** argv) {
  pft::h5::take_over_shutdown();  // before any HDF5 call (core/hdf5.h)
  pft::restrict_umask();          // no world-writable file (core/run_dir.h)
  CLI::App app{"pft: distributed prompt-based fine-tuning of language models", "pft"};
  app.set_version_flag("--version", std::string("pft ") + PFT_VERSION);
  app.require_subcommand(1);
  app.fallthrough(false);

  std::vector<pft::cli::Command> commands;
  commands.push_back(pft::cli::add_config_command(app));
  commands.push_back(pft::cli::add_train_command(app));
  commands.push_back(pft::cli::add_generate_command(app));
  commands.push_back(pft::cli::add_eval_command(app));
  commands.push_back(pft::cli::add_data_command(app));
  commands.push_back(pft::cli::add_ckpt_command(app));
  commands.push_back(pft::cli::add_sweep_command(app));
  commands.push_back(pft::cli::add_status_command(app));
  commands.push_back(pft::cli::add_report_command(app));

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    std::fprintf(stderr, "Run 'pft --help' or 'pft <command> --help' for usage.\n");
    return static_cast<int>(pft::ExitCode::kBadInput);
  }

  int code = 0;
  try {
    for (auto& c : commands) {
      if (c.app->parsed()) {
        code = c.run();
        break;
      }
    }
  } catch (const pft::Error& e) {
    code = static_cast<int>(e.exit_code());
    // After a roll call (a missed deadline), the lowest rank that answered it speaks for all.
    if (!e.reported() && pft::roll_call_reporter()) {
      if (e.exit_code() == pft::ExitCode::kBadInput) {
        std::fprintf(stderr, "%s\n", e.what());  // already shaped "file:line:col: error: ..."
      } else if (e.exit_code() == pft::ExitCode::kPreempted) {
        pft::log::info_all("{}", e.what());  // a request, not a failure (core/signals.h)
      } else {
        pft::log::error("{}", e.what());
      }
    }
    pft::log::flush();
    pft::end_mpi_job(e.agreed(), code);
  } catch (const std::exception& e) {
    code = static_cast<int>(pft::ExitCode::kRuntime);
    pft::log::error("unexpected failure: {}", e.what());
    pft::log::flush();
    pft::end_mpi_job(/*agreed=*/false, code);
  }
  pft::h5::shutdown();
  return code;
}
