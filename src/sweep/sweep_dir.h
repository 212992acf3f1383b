// The sweep directory: where a sweep keeps its trials, its event log and its results.
//
//   SWEEP_DIR/sweep.yaml       a copy of the sweep file, its first line "# pft sweep <hash> <file>"
//                              (Note [sweep identity])
//   SWEEP_DIR/base.yaml        the inline base config, when the sweep file has one
//   SWEEP_DIR/sweep.jsonl      one JSON object per trial event (EventLog below)
//   SWEEP_DIR/trials/<id>/     each trial's run directory (config.resolved.yaml, metrics.jsonl,
//                              checkpoints/) and sweep.log, the output of its `pft train`
//   SWEEP_DIR/best.yaml        the winning trial's config.resolved.yaml (sweep/results.h)
//   SWEEP_DIR/objective.html   every trial's objective over steps, inline SVG (sweep/results.h)
//   SWEEP_DIR/report.html      `pft report SWEEP_DIR`'s page (report/sweep_report.h)
//   SWEEP_DIR/sweep.sbatch     the Slurm job array script (slurm executor)
//   SWEEP_DIR/run.lock         the running `pft sweep run` (core/run_dir.h's lock)
//
// Note [sweep identity]
// ~~~~~~~~~~~~~~~~~~~~~
// A rerun of `pft sweep run` in an existing SWEEP_DIR continues that sweep: it skips the trials
// sweep.jsonl says ended and resumes the others. That is only right when the rerun means the
// same trials, so the directory records a hash (xxh3-128) of the sweep file's text and of every
// trial's resolved config (config/config.h to_yaml: the base config and its overrides, defaults
// filled in), and a rerun whose hash differs -- the sweep file or the base config changed -- is
// refused (InputError) before anything runs.
//
// Writers: the sweep process (local, mpi executors) or each Slurm array task (`pft sweep trial`)
// appends events, each line with one flushed O_APPEND write (core/run_dir.h MetricsWriter). On
// a local filesystem, writers of one host do not interleave within a line. NFS has no atomic
// O_APPEND (each client computes the end of the file itself): Slurm array tasks on different
// hosts that append at the same moment can overwrite or split each other's line; the line is
// then lost (readers skip it), and a trial whose end event was lost shows as interrupted until a
// rerun of the sweep reaches it. A writer killed mid-line leaves a cut last line, which readers
// skip and the next append starts after (Note [a line cut by a kill], core/run_dir.h).
#pragma once

#include <boost/json/object.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/run_dir.h"
#include "sweep/sweep_file.h"

namespace pft::sweep {

class SweepDir {
 public:
  // No I/O; `root` is made absolute (trial run dirs and the hash must not depend on the working
  // directory of a rerun).
  explicit SweepDir(std::filesystem::path root);

  const std::filesystem::path& root() const { return root_; }
  std::filesystem::path sweep_copy() const { return root_ / "sweep.yaml"; }
  std::filesystem::path events() const { return root_ / "sweep.jsonl"; }
  std::filesystem::path best() const { return root_ / "best.yaml"; }
  std::filesystem::path plot() const { return root_ / "objective.html"; }
  std::filesystem::path sbatch() const { return root_ / "sweep.sbatch"; }
  std::filesystem::path trial(const std::string& id) const { return trial_dir(root_, id); }
  std::filesystem::path trial_log(const std::string& id) const { return trial(id) / "sweep.log"; }

  // Creates the directory (and trials/). Throws InputError naming it when it cannot.
  void create() const;

  // Takes SWEEP_DIR/run.lock for this process (Note [run directory lock], core/run_dir.h) until
  // this SweepDir is gone. Throws InputError naming the holder when another `pft sweep run`
  // holds it.
  void lock(const std::string& job);

  // Note [sweep identity]. The first run writes sweep.yaml; a rerun checks it. Throws InputError
  // when the directory holds another sweep. `hash` from sweep_hash().
  void record_or_check_identity(const SweepSpec& spec, const std::string& hash) const;

  // The sweep this directory runs: the sweep file as copied into sweep.yaml, parsed with the
  // original path (relative paths resolve as they did). Throws InputError when there is no
  // sweep.yaml (not a sweep directory) or it does not parse.
  SweepSpec load_spec() const;
  // The hash recorded in sweep.yaml ("" when absent).
  std::string recorded_hash() const;

 private:
  std::filesystem::path root_;
  std::optional<RunDir> lock_;
};

// xxh3-128 hex of the sweep text and every trial's resolved config (Note [sweep identity]).
std::string sweep_hash(const SweepSpec& spec, const std::vector<Config>& trial_configs);

// ---- sweep.jsonl -----------------------------------------------------------------------------
//
// One object per line; every line has "kind", "trial" and "time" (seconds since the epoch).
// Kinds:
//   started      a trial's `pft train` was started (fields: params, attempt, command, and the
//                host and pid of the process that started it and waits for it)
//   rung         (mpi executor) a trial reached an ASHA rung (step, objective, decision)
//   stopped      a trial was stopped early (ASHA)                        (step, objective)
//   finished     a trial ended normally                       (step, objective, seconds)
//   failed       a trial failed: bad input (exit 2), runtime failure (exit 3), diverged (a
//                non-finite training loss), or killed       (message, exit_code, step)
//   interrupted  a trial's `pft train` was preempted (exit 75); a rerun resumes it
//   submitted    (slurm executor) the job array was submitted (no "trial"; job, trials)
// finished, failed and stopped are final: a rerun does not run that trial again.
struct TrialEvent {
  std::string kind;
  std::string trial;                                        // trial id
  std::vector<std::pair<std::string, std::string>> params;  // the trial's searched keys
  std::optional<int64_t> step;        // steps trained when the event happened
  std::optional<double> objective;    // the objective's value then (the last evaluation's);
                                      // written as null when not finite (JSON has no NaN)
  std::string message;                // failed: why; empty otherwise
  std::optional<int> exit_code;       // failed / interrupted: `pft train`'s exit status
  boost::json::object extra;          // any other fields (rung, decision, seconds, ...)
  double time = 0.0;                  // read back only
};

bool is_final(const std::string& kind);  // finished, failed, stopped

// Appends events to SWEEP_DIR/sweep.jsonl (each line flushed as written).
class EventLog {
 public:
  explicit EventLog(const std::filesystem::path& path) : writer_(path) {}
  void write(const TrialEvent& e);

 private:
  MetricsWriter writer_;
};

// Every event of `path`, in file order; a missing file is empty; unparsable lines are skipped.
std::vector<TrialEvent> read_events(const std::filesystem::path& path);
// Per trial id, its last event.
std::map<std::string, TrialEvent> last_events(const std::vector<TrialEvent>& events);

// Parses one JSON line as pft writes it: Boost.JSON writes a non-finite double as NaN /
// Infinity, which JSON lacks, so those are read as null. nullopt when it does not parse.
std::optional<boost::json::object> parse_json_line(const std::string& line);

}  // namespace pft::sweep
