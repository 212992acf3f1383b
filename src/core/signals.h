// Preemption signals. A cluster asks a job to stop with SIGTERM (scancel, a node drain, the end
// of the time limit) or with the signal the job chose in advance (`sbatch --signal=USR1@120`,
// launch/slurm/train.sbatch); launch/pft-mpirun turns a SIGTERM or SIGINT of its own into a
// SIGUSR1 for every rank. pft answers them the same way: every rank agrees (a signal that
// reached only one rank stops them all), a checkpoint is written when there is something to
// save, and every rank exits 75 (ExitCode::kPreempted), which the sbatch template turns into a
// requeue that resumes by itself (train.resume: auto).
//
// `pft train` installs the handlers first thing, before MPI_Init (install_preemption_handlers),
// so a signal never kills a rank by its default action (exit 138/143, a stale temporary file).
// Measured with Open MPI 4.1.4: MPI_Init_thread leaves SIGTERM and SIGUSR1 handlers as they are
// (opal installs its own only for SIGSEGV, SIGBUS, SIGFPE, SIGABRT), and mpirun starts each rank
// in a process group of its own, so a terminal's Ctrl-C reaches mpirun, not the ranks.
//
// Where the signal is honoured (Note [preemption before the first step]):
//   - from step 1 on, at the next step boundary: the trainer's controller all-reduces the
//     signal with the step's statistics (control/controller.h), checkpoints, exits 75;
//   - before the first step (data preparation, model loading, resume, the step-0 evaluation):
//     at the next start-up safe point, see preemption_check(). Nothing was trained, so nothing
//     is written: the job exits 75 at once and the requeued run starts (or resumes) as this one
//     would have.
//
// The handler only records the signal (async-signal-safe); nothing else runs in it. A second
// signal changes nothing; SIGKILL cannot be caught and is what the bitwise-resume tests cover.
//
// Note [preemption before the first step]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// Every agree() (core/agree.h) of the start-up is a safe point: a rank that holds a signal
// contributes exit code 75 to the exchange, so every rank throws the same agreed Preempted and
// exits 75 together, without an extra collective and without a hang. Long work inside an agree()
// body (building the token stores, copying pretrained weights) calls preemption_check() between
// units of work, so the exit comes within seconds; the throw unwinds through the writers, which
// remove their temporary files. The step-0 evaluation runs to its end (it has no such checks);
// the trainer's last safe point follows it, just before step 1. From then on
// (preemption_at_step_boundaries()) preemption_check() does nothing and the step boundary
// decides.
#pragma once

#include <string>
#include <string_view>

namespace pft {

// Installs the handlers for SIGTERM and SIGUSR1 (idempotent) and arms the start-up safe points.
// `pft train` calls it before MPI is initialised.
void install_preemption_handlers();

// The first preemption signal this process received (SIGTERM or SIGUSR1), or 0.
int preemption_signal();

// A start-up safe point (Note [preemption before the first step]): when the handlers are
// installed, training has not reached its step loop, and a signal was received, throws Preempted
// (exit 75) saying it came `during` what and that nothing needed a checkpoint. Otherwise does
// nothing. Cheap (one load): call it between units of long work.
void preemption_check(std::string_view during);

// The trainer, just before step 1: from now on the step boundary handles the signal.
void preemption_at_step_boundaries();

// "SIGTERM", "SIGUSR1", or "signal N".
std::string signal_name(int signal);

// Tests: forget a recorded signal.
void reset_preemption_signal();

}  // namespace pft
