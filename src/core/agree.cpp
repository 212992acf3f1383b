// All ranks fail together (contract: core/agree.h). The exchange itself is
// core/mpi_env.h's max_over_ranks (a deadline-bounded all-reduce).
#include "core/agree.h"

#include <exception>
#include <string>

#include "core/error.h"
#include "core/mpi_env.h"
#include "core/signals.h"

namespace pft {
namespace {

void agree_on(const RankEnv* env, int rank, double timeout_s, std::string_view what,
              const std::function<void()>& body) {
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
  // A start-up safe point (Note [preemption before the first step], core/signals.h).
  if (code == 0) {
    try {
      preemption_check(what);
    } catch (const Preempted& e) {
      failure = std::current_exception();
      code = static_cast<int>(e.exit_code());
    }
  }
  // Highest code wins (75 preempted > 3 runtime > 2 input); the lowest failing rank reports.
  int outcome[2] = {code, code != 0 ? -rank : -(1 << 30)};
  max_over_ranks(env, outcome, timeout_s, what);
  if (outcome[0] == 0) return;
  const int reporter = -outcome[1];
  if (rank == reporter) {
    try {
      std::rethrow_exception(failure);
    } catch (Error& e) {
      e.set_agreed(true);
      throw;
    }
  }
  Error quiet(static_cast<ExitCode>(outcome[0]),
              "failed on rank " + std::to_string(reporter) + " (reported there)");
  quiet.set_reported(true);
  quiet.set_agreed(true);
  throw quiet;
}

}  // namespace

void agree(const RankEnv& env, std::string_view what, const std::function<void()>& body) {
  agree_on(&env, env.world_rank, env.timeout_s, what, body);
}

void agree(const RankEnv& env, const std::function<void()>& body) {
  agree(env, "agree (every rank's outcome of a start-up step)", body);
}

void agree_world(const std::function<void()>& body, double timeout_s) {
  agree_on(nullptr, mpi_world_rank(), timeout_s,
           "agree_world (every rank's outcome of a start-up step)", body);
}

}  // namespace pft
