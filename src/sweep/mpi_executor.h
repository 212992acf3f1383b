// The in-allocation executor of `pft sweep` (executor kind `mpi`): one `mpirun -np W` job whose
// ranks split into W / ranks_per_trial groups (core/rank_env.h: split_rank_env); each group
// trains one trial at a time through the same train() as `pft train` (train/trainer.h), with its
// own run dir SWEEP_DIR/trials/<id>/, its controller on the group's rank 0, its checkpoints. A
// sweep controller on world rank 0 hands out the trials and applies ASHA (sweep/asha.h) at the
// evaluations that fall on rungs; a stopped trial ends like a finished one (a final checkpoint)
// and frees its group for the next trial. Every event goes to SWEEP_DIR/sweep.jsonl through the
// sweep's EventLog (sweep/sweep_dir.h: started, rung, stopped, finished, failed; Note [sweep
// protocol] has the messages; docs/sweeps.md the file).
//
// Resume: a rerun of the same command reads sweep.jsonl: trials with an end event (finished,
// stopped, failed) are not run again; ASHA's rung results are restored with their recorded
// verdicts; a trial started but not ended whose metrics.jsonl has its `end` record (the sweep
// was killed between the two) gets its end event from its run dir and is not trained again
// (stopped: its end record says `stopped: external` or its recorded verdict at a rung was stop);
// the other trials started but not ended come first and continue from their newest checkpoint
// (every trial runs with train.resume: auto). A resumed trial that passes a rung again gets the
// recorded verdict (no second `rung` event).
//
// Preemption (Note [sweep preemption]): every rank exits 75; the interrupted trials resume on the
// rerun.
//
// Failures: a trial that fails with an error every rank of its group agreed on (a bad input, a
// diverged run that its trainer refuses) is recorded `failed` with its message (the failing
// rank's, whichever rank of the group) and the sweep goes on. A trial whose training loss was not
// finite (`pft train` skips such steps and goes on; read from its metrics.jsonl) or whose last
// objective is not finite is recorded `failed` with `diverged: ...`, as the local executor does. A rank lost or hung ends the job (RuntimeFailure, not agreed: main aborts the job,
// exit 3); the events written so far and the trials' checkpoints stay, and a rerun resumes.
//
// Note [sweep protocol]
// ~~~~~~~~~~~~~~~~~~~~~
// Messages are JSON objects on a TrialChannel (comm/trial_channel.h): a duplicate of the world
// used only for them, so they never meet a trial's own collectives (those run on the group's
// communicator). World rank 0 serves them on a thread of its own (the sweep controller) while its
// main thread trains in group 0 like any other rank; every wait has dist.timeout_s as deadline.
// The controller receives only its own tags (REQUEST, REPORT, DONE), so that the replies sent to
// world rank 0's main thread (ASSIGN, VERDICT, IDLE, ERROR) reach it.
//   1. A group's rank 0 sends REQUEST {group} to world rank 0 (at the start; later DONE asks).
//   2. The controller takes the next trial (in-progress ones of a resumed sweep first), writes its
//      `started` event and sends ASSIGN {trial: index} to every rank of the group; {trial: -1}
//      when none is left: the group's ranks leave the loop (the controller counts them off).
//   3. The group trains it. After each evaluation, the group's rank 0 (inside its controller's
//      eval hook, control/controller.h; the other ranks wait in the decision's broadcast) sends
//      REPORT {trial, step, objective} and waits for VERDICT {stop}. At a rung the controller
//      asks ASHA and writes a `rung` event first, so a checkpoint taken after the verdict never
//      precedes its record; elsewhere the verdict is continue.
//   4. At the end of the trial the group's rank 0 sends DONE {group, trial, state, steps,
//      message}; the controller writes the end event and answers as to a REQUEST (back to 2):
//      one message, so the end event always precedes the group's next `started`. A trial failed
//      with an agreed error: first every other rank of the group sends ERROR (its error's text,
//      empty when it only heard of it) to the group's rank 0, which puts the first text in DONE.
//   5. A group told there is nothing left waits for IDLE messages: a heartbeat every
//      clamp(dist.timeout_s / 4, 0.5, 5) s while other groups train (so a lost controller is
//      noticed within dist.timeout_s, however long the trials), then {end: true} once every group
//      is idle; every rank then leaves run_mpi_sweep at about the same time (MPI_Finalize waits
//      for all ranks only kFinalizeGraceS, core/mpi_env.h). World rank 0 joins the controller.
// Events are appended (whole lines, sweep/sweep_dir.h EventLog) by the controller thread only.
//
// Note [sweep preemption]
// ~~~~~~~~~~~~~~~~~~~~~~~
// pft-mpirun forwards a preemption signal to every rank (docs/launching.md), so every rank learns
// of it on its own. A training group checkpoints at its next step boundary as `pft train` does;
// its rank 0 sends DONE {state: interrupted} (the controller writes an `interrupted` event, which
// a rerun resumes) and its ranks leave with the agreed Preempted. A rank waiting for an ASSIGN or
// an IDLE message leaves with Preempted at once (nothing to save). The controller, from the
// signal (its own, or an interrupted DONE) on, starts no trial and sends nothing but the verdicts
// a training group still waits for; it ends once every busy group has sent its last DONE, or
// dist.timeout_s after the signal; world rank 0's main thread waits for it, then leaves with
// Preempted. So every rank exits 75 (a rank that did not get the signal still waits out its
// deadline: exit 3).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "core/rank_env.h"
#include "sweep/asha.h"

namespace pft::sweep {

struct MpiTrial {
  std::string id;                      // the run dir's name under SWEEP_DIR/trials/
  std::vector<std::string> overrides;  // its overrides, as `--set key=value` (messages)
  std::vector<std::pair<std::string, std::string>> params;  // its searched keys (sweep.jsonl)
  Config config;  // resolved; run_mpi_sweep sets run.dir and train.resume (auto)
};

struct MpiSweepSettings {
  std::filesystem::path dir;  // SWEEP_DIR
  int ranks_per_trial = 1;    // the world size must be a multiple of it
  std::string objective = "eval.loss";  // eval.[task.]metric: a key of the held-out table
  bool higher_is_better = false;
  std::optional<AshaConfig> asha;  // none: every trial trains to its train.steps
  double timeout_s = kDefaultTimeoutS;  // the deadline of every message (dist.timeout_s)
};

// What world rank 0 learned (empty on the other ranks).
struct MpiTrialOutcome {
  std::string id;
  std::string state;  // finished | stopped | failed (or `not run`)
  int64_t steps = 0;
  double objective = 0.0;  // the last evaluation's (NaN when it had none)
  std::string message;     // failed: the error
};

// Collective over `world` (every rank passes the same trials and settings). Before anything runs,
// throws InputError on every rank when the world size is not a multiple of ranks_per_trial, an id
// is empty or repeated, a trial's batch does not divide over ranks_per_trial ranks, or (ASHA on)
// a trial does not evaluate at every rung below its train.steps (data.source tasks,
// eval.every_steps dividing those rungs); the message names the trial and the key. RuntimeFailure when a rank is lost (see the
// header).
// `pft sweep run` with executor mpi is run_mpi_sweep (sweep/executor.h): it prepares the sweep
// directory on world rank 0, loads every trial's config on every rank, discovers the ranks and
// calls this; then world rank 0 prints the ranked table (sweep/results.h).
std::vector<MpiTrialOutcome> run_mpi_trials(const RankEnv& world, std::vector<MpiTrial> trials,
                                            const MpiSweepSettings& settings);

}  // namespace pft::sweep
