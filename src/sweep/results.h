// What a sweep's trials achieved, read from their run directories and sweep.jsonl: each trial's
// objective over steps (from its metrics.jsonl), its state, the ranking, the status table
// (`pft sweep status`), best.yaml and objective.html.
//
// The objective of a trial is `objective.metric` at its last evaluation, computed from the
// metrics.jsonl `eval` records of that step the way the controller computes its metric table
// (train/evaluate.h metric_table): eval.<task>.<metric> is the task's `"template": "all"`
// record's field; eval.<metric> is the mean of that field over the tasks that have it (tasks
// with target tokens). A resumed trial writes some steps twice: the last record of a step wins.
//
// Pure readers: nothing here starts or stops a trial; safe to call while trials run (a line
// being written is skipped until it is whole).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "sweep/sweep_dir.h"
#include "sweep/sweep_file.h"

namespace pft::sweep {

struct TrialProgress {
  std::vector<std::pair<int64_t, double>> curve;  // (step, objective) per evaluation, by step
  std::optional<double> objective;                // at the last evaluation
  int64_t objective_step = -1;                    // its step
  int64_t steps = 0;                              // the last training step recorded
  bool ended = false;                             // an `end` record: `pft train` finished
  std::string stopped;  // that record's `stopped` reason ("external": a sweep's ASHA verdict)
  // Set when a training step's loss was not finite (NaN / inf): "training loss NaN at step 5".
  std::optional<std::string> divergence;
};

// Reads RUN_DIR/metrics.jsonl of a trial (missing = no progress yet).
TrialProgress read_trial_progress(const std::filesystem::path& metrics_jsonl,
                                  const Objective& objective);

// Whether a run directory's run.lock names a live holder (core/run_dir.h: a run that ends empties
// the file; one killed leaves its line): a holder on this host whose pid is gone (or a zombie) is
// not; one on another host is believed.
bool run_lock_held(const std::filesystem::path& run_dir);

enum class TrialState { kPending, kRunning, kInterrupted, kFinished, kStopped, kFailed };
const char* state_name(TrialState s);  // pending, running, interrupted, finished, stopped, failed

struct TrialStatus {
  Trial trial;
  TrialState state = TrialState::kPending;
  TrialProgress progress;
  std::string message;  // failed: why
};

// Every trial's state: its last sweep.jsonl event (finished, stopped, failed); a trial started
// but not ended is running while the process that started it (the `started` event's host and
// pid) or its run directory's lock holder (core/run_dir.h) is alive, interrupted otherwise (the
// sweep was killed: a rerun resumes it); pending when never started.
std::vector<TrialStatus> collect_status(const SweepSpec& spec, const std::vector<Trial>& trials,
                                        const SweepDir& dir);

// Indices of `rows`, best first: finished and stopped trials by objective (objective.mode), then
// running / interrupted ones by their objective so far, then pending, then failed; ties by id.
std::vector<size_t> rank_trials(const std::vector<TrialStatus>& rows, const Objective& objective);

// The table `pft sweep status` prints: rank, trial, one column per searched key, objective,
// steps trained, state (and a failed trial's message below the table).
std::string format_status_table(const SweepSpec& spec, const std::vector<TrialStatus>& rows,
                                const std::vector<size_t>& order);

// Copies the best finished (or stopped) trial's config.resolved.yaml to SWEEP_DIR/best.yaml
// (atomically) and returns its index in `rows`; nullopt (and no file) when no trial has an
// objective yet.
std::optional<size_t> write_best(const SweepDir& dir, const std::vector<TrialStatus>& rows,
                                 const std::vector<size_t>& order);

// Writes SWEEP_DIR/objective.html: one line per trial of its objective over steps, inline SVG,
// no scripts and nothing fetched; failed trials dashed, a stopped trial's line ends in a cross.
void write_objective_plot(const SweepDir& dir, const SweepSpec& spec,
                          const std::vector<TrialStatus>& rows, const std::vector<size_t>& order);

// collect_status + rank + best.yaml + objective.html + the table: what `pft sweep status`
// does and `pft sweep run` does at its end. Returns the table.
std::string refresh_results(const SweepSpec& spec, const std::vector<Trial>& trials,
                            const SweepDir& dir);

}  // namespace pft::sweep
