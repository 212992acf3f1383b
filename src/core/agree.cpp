#include "core/agree.h"

#include <exception>
#include <string>

#include "core/error.h"
#include "core/mpi_check.h"

namespace pft {
namespace {

void agree_on(MPI_Comm comm, const std::function<void()>& body) {
  std::exception_ptr failure;
  int code = 0;
  try {
    body();
  } catch (const Error& e) {
    failure = std::current_exception();
    code = static_cast<int>(e.exit_code());
  } catch (const std::exception& e) {
    failure = std::make_exception_ptr(RuntimeFailure(e.what()));
    code = static_cast<int>(ExitCode::kRuntime);
  }
  int rank = 0;
  PFT_MPI_CHECK(MPI_Comm_rank(comm, &rank));
  // Highest code wins (75 preempted > 3 runtime > 2 input); the lowest failing rank reports.
  int in[2] = {code, code != 0 ? -rank : -(1 << 30)};
  int out[2] = {0, 0};
  PFT_MPI_CHECK(MPI_Allreduce(in, out, 2, MPI_INT, MPI_MAX, comm));
  if (out[0] == 0) return;
  const int reporter = -out[1];
  if (rank == reporter) {
    try {
      std::rethrow_exception(failure);
    } catch (Error& e) {
      e.set_agreed(true);
      throw;
    }
  }
  Error quiet(static_cast<ExitCode>(out[0]),
              "failed on rank " + std::to_string(reporter) + " (reported there)");
  quiet.set_reported(true);
  quiet.set_agreed(true);
  throw quiet;
}

}  // namespace

void agree(const RankEnv& env, const std::function<void()>& body) { agree_on(env.world, body); }

void agree_world(const std::function<void()>& body) { agree_on(MPI_COMM_WORLD, body); }

}  // namespace pft
