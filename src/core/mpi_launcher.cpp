// Launcher variables (contract: core/mpi_launcher.h).
#include "core/mpi_launcher.h"

#include <cstdlib>

namespace pft {

std::string detect_launcher() {
  if (std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr) return "mpirun";
  if (std::getenv("SLURM_STEP_ID") != nullptr || std::getenv("SLURM_PROCID") != nullptr)
    return "srun";
  if (std::getenv("PMIX_RANK") != nullptr) return "pmix";
  return "single";
}

int launcher_rank() {
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID"}) {
    if (const char* v = std::getenv(var)) return std::atoi(v);
  }
  return 0;
}

}  // namespace pft
