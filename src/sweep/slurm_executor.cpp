// The slurm executor (sweep/executor.h): not built yet.
#include "core/error.h"
#include "sweep/executor.h"

namespace pft::sweep {

int submit_slurm_sweep(SweepRun& run) {
  throw InputError(run.spec.file.string() + ": executor.kind: slurm is not built yet; use local");
}

int run_slurm_trial(const std::filesystem::path& dir, int64_t) {
  throw InputError(dir.string() + ": pft sweep trial (the slurm executor) is not built yet");
}

}  // namespace pft::sweep
