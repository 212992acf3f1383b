// Preemption signals. A cluster asks a job to stop with SIGTERM (scancel, a node drain, the end
// of the time limit) or with the signal the job chose in advance (`sbatch --signal=USR1@120`,
// launch/slurm/train.sbatch). pft answers both the same way: the trainer notices at the next
// step boundary, every rank agrees (one small all-reduce per step: a signal that reached only
// one rank stops them all), a checkpoint is written and waited for, and every rank exits 75
// (ExitCode::kPreempted), which the sbatch template turns into a requeue that resumes by itself
// (train.resume: auto).
//
// The handler only records the signal (async-signal-safe); nothing else runs in it. A second
// signal before the step boundary changes nothing; SIGKILL cannot be caught and is what the
// bitwise-resume tests cover.
#pragma once

#include <string>

namespace pft {

// Installs the handlers for SIGTERM and SIGUSR1 (idempotent). Call once the process is set up
// (after MPI is initialised: it may install handlers of its own).
void install_preemption_handlers();

// The first preemption signal this process received (SIGTERM or SIGUSR1), or 0.
int preemption_signal();

// "SIGTERM", "SIGUSR1", or "signal N".
std::string signal_name(int signal);

// Tests: forget a recorded signal.
void reset_preemption_signal();

}  // namespace pft
