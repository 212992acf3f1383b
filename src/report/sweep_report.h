// `pft report SWEEP_DIR [-o FILE]`: one self-contained HTML page of a sweep (docs/observability.md,
// "The sweep page"): the trials' table (searched parameters, state, steps, objective, the best
// marked, a failed trial's message, a link to each trial's own run report), every trial's
// objective over steps, every trial's training loss over steps, and the objective against each
// numeric searched parameter.
//
// Note [sweep report]
// ~~~~~~~~~~~~~~~~~~~
// The page is built as the run report is (Note [report page], report/report.h: Chart.js and the
// page's script report/sweep_report.js embedded, the data as one escaped JSON blob, what was
// drawn written back into data attributes for the headless-browser test). Its numbers are
// `pft sweep status`'s: states, ranking and objectives come from sweep/results.h
// (collect_status, rank_trials, read_trial_progress), never recomputed here; only the training
// loss, which results.h does not keep, is read from each trial's metrics.jsonl here.
//
// The sweep page is the entry point: it also writes each trial's run report
// (SWEEP_DIR/trials/<id>/report.html, render_report) and links to it with an href relative to the
// page, so the directory can be copied elsewhere as a whole. A trial that cannot be reported
// (no metrics.jsonl yet, or nothing in it parses) is named in the table and the sweep page is
// still written; lines of a trial's metrics.jsonl that do not parse are skipped and named
// (file:line) in its row and on stderr, as the run report skips them.
//
// Like `pft sweep status`, this only reads the sweep (it may run while trials run) except that
// it writes the pages; unlike it, it does not rewrite best.yaml or objective.html.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

namespace pft::report {

enum class ReportDirKind { kRun, kSweep };

// What `pft report DIR` was given: a sweep directory (it has sweep.yaml, written by
// `pft sweep run`) or a run directory (it has metrics.jsonl, written by `pft train`). Throws
// InputError naming DIR and what each kind holds when it is neither.
ReportDirKind report_dir_kind(const std::filesystem::path& dir);

struct SweepReport {
  size_t trials = 0;
  size_t trial_reports = 0;           // trials/<id>/report.html written
  std::vector<std::string> warnings;  // "FILE:LINE: skipped: why", "trial t003: no run report: why"
};

// Writes the sweep page of SWEEP_DIR to `out` (atomically) and every trial's run report.
// Throws InputError when SWEEP_DIR is not a sweep directory (sweep/sweep_dir.h load_spec) or
// `out` cannot be written; a trial's problems are warnings (Note [sweep report]).
SweepReport write_sweep_report(const std::filesystem::path& sweep_dir,
                               const std::filesystem::path& out);

}  // namespace pft::report
