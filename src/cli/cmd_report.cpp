// pft report RUN_DIR [-o FILE] [--trace-steps A:B]
//   one self-contained HTML page of the run's metrics.jsonl and, when the run was traced, a
//   timeline of a few steps of its trace.json (default RUN_DIR/report.html; docs/observability.md)
// pft report SWEEP_DIR [-o FILE]
//   the sweep's page, and each trial's run report (default SWEEP_DIR/report.html; Note [sweep
//   report])
//
// A single-process reader, like `pft ckpt`: no MPI, never the run's lock, so it may run while
// the job is still writing (the page shows what metrics.jsonl held then). Lines that do not parse
// are skipped with a warning naming the line (Note [a line cut by a kill], core/run_dir.h);
// exit 2 when there is no metrics.jsonl or nothing in it parses.
#include <cstdint>
#include <iostream>
#include <string>
#include <utility>

#include "cli/commands.h"
#include "core/error.h"
#include "core/format.h"
#include "core/run_dir.h"
#include "report/report.h"
#include "report/sweep_report.h"

namespace pft::cli {

namespace {

// "A:B" (0 <= A <= B) for --trace-steps.
std::pair<int64_t, int64_t> parse_step_range(const std::string& text) {
  const size_t colon = text.find(':');
  int64_t a = -1, b = -1;
  size_t used_a = 0, used_b = 0;
  try {
    if (colon != std::string::npos) {
      a = std::stoll(text.substr(0, colon), &used_a);
      b = std::stoll(text.substr(colon + 1), &used_b);
    }
  } catch (const std::exception&) {
    a = -1;
  }
  if (colon == std::string::npos || used_a != colon || used_b != text.size() - colon - 1 || a < 0 ||
      b < a)
    throw InputError(fmt::format("--trace-steps {}: expected A:B, two step numbers with A <= B "
                                 "(e.g. --trace-steps 100:102)", text));
  return {a, b};
}

}  // namespace

Command add_report_command(CLI::App& app) {
  auto* sub = app.add_subcommand(
      "report", "Write an offline HTML page of a run's metrics (loss, evaluations, mixture, throughput)");
  struct Args {
    std::string run_dir, out, trace_steps;
  };
  auto args = std::make_shared<Args>();
  sub->add_option("run_dir", args->run_dir,
                  "Run directory (run.dir of a `pft train` run) or sweep directory (`pft sweep run`)")
      ->required();
  sub->add_option("-o,--output", args->out, "The HTML file to write (default DIR/report.html)");
  sub->add_option("--trace-steps", args->trace_steps,
                  "A:B, the steps of a run's trace.json its timeline shows (default: the last "
                  "three traced before the final step)");

  Command c;
  c.app = sub;
  c.run = [args]() -> int {
    const std::filesystem::path run_dir(args->run_dir);
    if (report::report_dir_kind(run_dir) == report::ReportDirKind::kSweep) {
      if (!args->trace_steps.empty())
        throw InputError(fmt::format("--trace-steps: {} is a sweep directory; give it with a "
                                     "trial's run directory ({}/trials/<trial>)",
                                     run_dir.string(), run_dir.string()));
      const std::filesystem::path out =
          args->out.empty() ? run_dir / "report.html" : std::filesystem::path(args->out);
      const report::SweepReport r = report::write_sweep_report(run_dir, out);
      for (const std::string& w : r.warnings) std::cerr << "pft report: warning: " << w << "\n";
      std::cout << fmt::format("wrote {} ({} trials; {} trial reports in {}/trials)\n", out.string(),
                               r.trials, r.trial_reports, run_dir.string());
      return 0;
    }
    report::RenderOptions options;
    if (!args->trace_steps.empty()) options.trace_steps = parse_step_range(args->trace_steps);
    const report::Report r = report::render_report(run_dir, options);
    for (const std::string& n : r.notes) std::cerr << "pft report: warning: " << n << "\n";
    for (const report::SkippedLine& s : r.skipped)
      std::cerr << fmt::format("pft report: warning: {}:{}: skipped: {}\n",
                               (run_dir / "metrics.jsonl").string(), s.line, s.reason);
    const std::filesystem::path out =
        args->out.empty() ? run_dir / "report.html" : std::filesystem::path(args->out);
    RunDir::write_file_atomic(out, r.html);  // InputError naming the file when it cannot
    std::cout << fmt::format("wrote {} ({} records of {}; {:.0f} KB)\n", out.string(), r.records,
                             (run_dir / "metrics.jsonl").string(), r.html.size() / 1024.0);
    return 0;
  };
  return c;
}

}  // namespace pft::cli
