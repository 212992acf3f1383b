// What the communicator tests share: the rank environment (discovered on first use, which is
// collective: every rank runs the same tests in order) and an MPI communicator in a given
// progress mode with a 120 s deadline.
#pragma once

#include <memory>

#include "comm/mpi_communicator.h"
#include "config/config.h"
#include "core/rank_env.h"

namespace pft::test {

inline const RankEnv& env() {
  static const RankEnv e = discover_rank_env({});
  return e;
}

inline std::unique_ptr<MpiCommunicator> make_mpi_communicator(MpiProgressMode mode) {
  DistConfig dist;
  dist.timeout_s = 120;
  MpiProgressOptions progress;
  progress.mode = mode;
  return std::make_unique<MpiCommunicator>(env(), dist, progress);
}

}  // namespace pft::test
