// What the launcher (mpirun, srun, a PMIx starter) tells a process through its environment,
// read without any MPI call: code below MPI (core/hdf5) and rank discovery (core/rank_env) share
// this one list of launcher variables.
#pragma once

#include <string>

namespace pft {

// "mpirun" (Open MPI's mpirun), "srun" (Slurm), "pmix" (another PMIx starter) or "single" (no
// launcher: an MPI singleton).
std::string detect_launcher();

// This process's rank as the launcher exports it; 0 without a launcher.
int launcher_rank();

}  // namespace pft
