// All ranks fail together: the boundary where a local exception becomes a job-wide status.
//
// agree() is collective over env.world: every rank runs `body`, then the ranks exchange their
// outcome. If any rank threw a pft::Error (or any std::exception, taken as a runtime failure),
// every rank throws: the lowest failing rank rethrows its own error (main prints it), the others
// throw an Error with the same exit code marked reported(), so the job prints one message and
// every rank exits with one code. Use it around start-up steps that can fail on some ranks only
// (config and data loading, checkpoint reads).
#pragma once

#include <functional>
#include <string_view>

#include "core/rank_env.h"

namespace pft {

void agree(const RankEnv& env, const std::function<void()>& body);

// Same, over MPI_COMM_WORLD, for code that runs before a RankEnv exists (config parsing).
void agree_world(const std::function<void()>& body);

}  // namespace pft
