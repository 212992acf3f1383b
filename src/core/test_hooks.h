// TEST HOOK, for the stall tests only (tests/train/stall_cli_test.cpp): makes one rank hang at a
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
#pragma once

#include <string_view>

namespace pft {

// Reads PFT_TEST_STALL (once per process); stalls forever when it names `point` and `rank`.
void test_stall_point(std::string_view point, int rank);

}  // namespace pft
