// TEST HOOKS. Nothing in a normal run sets them.
//
// PFT_TEST_STALL, for the stall tests (tests/train/watchdog_cli_test.cpp): makes one rank hang at a
// named point, the way a stuck filesystem or a descheduled process would, so a test can check
// that the job still ends within dist.timeout_s. Nothing in a normal run sets it.
//
//   PFT_TEST_STALL=<point>:rank<r>     e.g. PFT_TEST_STALL=ckpt_save:rank1
//
// At test_stall_point(<point>, r), world rank r writes one line to stderr
// ("test hook PFT_TEST_STALL: rank r stalls in <point>") and then sleeps forever; the other ranks'
// next collective misses its deadline and main aborts the job, which kills the sleeper too.
// Points: ckpt_save (train/checkpointing: every rank, inside a checkpoint save), store_prepare
// (train/task_source: every rank, inside the data store preparation at start-up). Unset, empty,
// or another point/rank: nothing happens. A malformed value throws InputError naming the
// variable.
//
// PFT_TEST_DELAY, for the signal tests (tests/reliability/*signal*_test.sh) and the fault matrix:
// makes every rank that reaches a named point slow, the way a large model's save or a big
// dataset's preparation is:
//
//   PFT_TEST_DELAY=<point>:<seconds>[,<point>:<seconds>...]   e.g. ckpt_save:4,step:0.3
//
// At test_delay_point(<point>, r) the rank writes one line to stderr ("test hook PFT_TEST_DELAY:
// rank r waits <seconds> s in <point>"; a test waits for it to know the phase has begun) and
// sleeps that long. Points: step (train/trainer: every rank, after each step's computation),
// ckpt_save (train/checkpointer: every rank, inside each save, before rank 0 writes),
// store_block (data/store_prepare: the builder, before each block of 64 examples it writes; a
// preemption signal is checked right after it; the line says rank 0 whichever rank builds),
// eval (train/held_out_eval: every rank, at the start of each held-out evaluation), ckpt_write
// (ckpt/writer: the thread writing a checkpoint, when half of its datasets are in the temporary
// file; the fault matrix, tests/reliability/fault_matrix.sh, kills a rank in that window), finalize
// (core/mpi_env: every rank, at the end of the job just before MPI_Finalize, after the command's
// outputs are written; tests/reliability/finalize_stop_test.sh stops a rank there), finalized
// (core/mpi_env: every rank, right after its MPI_Finalize returned; the same test). A malformed
// value throws InputError naming the variable.
#pragma once

#include <string_view>

namespace pft {

// Reads PFT_TEST_STALL (once per process); stalls forever when it names `point` and `rank`.
void test_stall_point(std::string_view point, int rank);

// Reads PFT_TEST_DELAY (once per process); sleeps its seconds when it names `point`.
void test_delay_point(std::string_view point, int rank);

}  // namespace pft
