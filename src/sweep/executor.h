// Running a sweep's trials (docs/sweeps.md, "Executors").
//
//   local  trials as `pft train` child processes of this pft binary, `executor.parallel` at a
//          time; a trial with ranks_per_trial > 1 runs under launch/pft-mpirun -np r. A trial
//          that crashes or fails is recorded and the sweep goes on.
//   slurm  one `sbatch --array` job (SWEEP_DIR/sweep.sbatch), one array task per trial not yet
//          ended; each runs `pft sweep trial SWEEP_DIR <index>` -- run_one_trial() below, the
//          same code path as local -- with `srun --mpi=pmix -n r` for multi-rank trials.
//   mpi    (in-allocation, ASHA) run_mpi_sweep(), built by sweep/mpi_executor.cpp.
//
// Every executor writes the same sweep.jsonl events (sweep/sweep_dir.h) and the same trial run
// directories, so `pft sweep status` (sweep/results.h) reads any of them.
//
// Resume (Note [sweep resume]): a trial whose last event is final (finished, failed, stopped) is
// never run again; one whose run directory already holds an `end` record is recorded finished
// without running; every other trial runs with `--set train.resume=auto`, so one interrupted
// (the sweep killed with -9, a node lost) continues from its newest checkpoint.
//
// Note [trials die with the sweep]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A trial's process gets SIGTERM when the sweep process dies, however it dies (Linux
// PR_SET_PDEATHSIG): `pft train` then checkpoints and exits 75, and pft-mpirun forwards it as a
// preemption to its ranks (docs/launching.md). So a killed sweep leaves no trial running on its
// own; a rerun started while such a trial is still writing its checkpoint waits (up to
// kLockWaitSeconds) until the trial's run.lock is released, and then resumes it. A lock still
// held then (a trial started by hand in that directory, a hung process) leaves the trial not
// started, without an end event, and the sweep reports it: the next rerun runs it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "sweep/sweep_dir.h"
#include "sweep/sweep_file.h"

namespace pft::sweep {

inline constexpr int kLockWaitSeconds = 120;

// A sweep ready to run: every trial's config validated, the directory created (and locked when
// asked), its identity recorded or checked (Note [sweep identity], sweep/sweep_dir.h).
struct SweepRun {
  SweepSpec spec;
  std::vector<Trial> trials;
  std::vector<Config> configs;  // per trial, as load_trial_configs loaded it
  SweepDir dir;
  std::filesystem::path pft;    // the pft binary the trials run (this one)
};

// Validates (load_trial_configs), creates `dir`, takes its lock when `lock`, and records or
// checks the sweep's identity. Throws InputError (a bad trial, another sweep in `dir`, the lock
// held). Not collective: one process (the mpi executor calls it on world rank 0).
SweepRun prepare_sweep(SweepSpec spec, const std::filesystem::path& dir, bool lock);

// The running pft binary (/proc/self/exe).
std::filesystem::path self_exe();

// `pft sweep run` with executor local: runs every trial not yet ended, prints one line per event
// and at the end the status table; writes best.yaml and objective.html. Returns 0 when at least
// one trial finished, 3 when none did (every trial failed).
int run_local_sweep(SweepRun& run);

// `pft sweep run` with executor slurm: writes SWEEP_DIR/sweep.sbatch for the trials not yet
// ended and submits it (`sbatch --parsable` plus executor.sbatch_args); records a `submitted`
// event and prints the job id. Returns 0 once submitted (0 too when nothing is left to run);
// throws RuntimeFailure when sbatch fails, with its output.
int submit_slurm_sweep(SweepRun& run);

// `pft sweep trial SWEEP_DIR INDEX` (a Slurm array task): trial INDEX of the sweep in `dir`
// (validated and identity-checked, no sweep lock), unless it already ended; then best.yaml and
// objective.html refreshed. Returns 0 once the trial's outcome is recorded, failed or not.
int run_slurm_trial(const std::filesystem::path& dir, int64_t index);

// The in-allocation executor (mpirun -np W pft sweep run ...; sub-communicators of
// ranks_per_trial, ASHA at evaluation rungs). Gets the parsed spec and the sweep directory, not
// yet prepared: it calls prepare_sweep on world rank 0 itself. Returns the exit code.
int run_mpi_sweep(const SweepSpec& spec, const SweepDir& dir);

// ---- Building blocks shared by the executors ------------------------------------------------

// The command line of a trial: `launcher` (empty for one rank), the pft binary, `train`, the
// config file, every override (trial_overrides) and train.resume=auto.
std::vector<std::string> trial_command(const SweepRun& run, const Trial& trial,
                                       const std::vector<std::string>& launcher);

// Launchers of multi-rank trials: local -> {pft-mpirun, -np, r} (executor.launcher, else
// $PFT_MPIRUN, else launch/pft-mpirun beside the build, else pft-mpirun on PATH); inside a
// Slurm allocation -> {srun, --mpi=pmix, -n, r, --kill-on-bad-exit=1}. Empty for one rank.
std::vector<std::string> local_launcher(const ExecutorSpec& executor);
std::vector<std::string> slurm_launcher(const ExecutorSpec& executor);

// Starts trial `index` as a child process (output appended to its sweep.log, Note [trials die
// with the sweep]) after writing its `started` event. Returns the child's pid; nullopt, having
// written nothing, when the trial's run.lock is still held after `lock_wait_seconds` (its
// `pft train` would refuse to start: the caller leaves the trial for a rerun).
std::optional<pid_t> start_trial(const SweepRun& run, size_t index,
                                 const std::vector<std::string>& launcher, EventLog& log,
                                 int lock_wait_seconds = kLockWaitSeconds);

// The event for a trial whose process ended with waitpid status `wait_status` after `seconds`:
// finished (exit 0, an `end` record, a finite objective), interrupted (exit 75), or failed with
// a message: the last error line of its sweep.log (exit 2, 3, ...), "diverged: ..." (a
// non-finite training loss or objective), or the signal that killed it.
TrialEvent trial_outcome(const SweepRun& run, const Trial& trial, int wait_status, double seconds);

// The last line of a trial's sweep.log that reports an error (else its last line), trimmed.
std::string last_error_line(const std::filesystem::path& log);

}  // namespace pft::sweep
