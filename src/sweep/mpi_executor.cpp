// The in-allocation executor (sweep/executor.h run_mpi_sweep): not built yet. Its author replaces
// this file (sub-communicators of ranks_per_trial, a sweep controller on world rank 0, ASHA).
#include "core/error.h"
#include "sweep/executor.h"

namespace pft::sweep {

int run_mpi_sweep(const SweepSpec& spec, const SweepDir& /*dir*/) {
  throw InputError(spec.file.string() +
                   ": executor.kind: mpi (the in-allocation executor with ASHA) is not built yet; "
                   "use executor.kind: local or slurm (or --executor local)");
}

}  // namespace pft::sweep
