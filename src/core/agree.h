// All ranks fail together: the boundary where a local exception becomes a job-wide status.
//
// agree() is collective over env's world: every rank runs `body`, then the ranks exchange their
// outcome. If any rank threw a pft::Error (or any std::exception, taken as a runtime failure),
// every rank throws: the lowest failing rank rethrows its own error (main prints it), the others
// throw an Error with the same exit code marked reported(), so the job prints one message and
// every rank exits with one code. Use it around start-up steps that can fail on some ranks only
// (config and data loading, checkpoint reads), and around work one rank does while the others
// wait for it (rank 0's checkpoint write, a store build).
//
// Before the first training step every agree() is also a safe point for a preemption signal
// (Note [preemption before the first step], core/signals.h): a rank that holds one contributes
// exit 75, so every rank throws the same agreed Preempted.
//
// The exchange has a deadline, like every collective (docs/launching.md): env.timeout_s
// (dist.timeout_s) counted from the moment this rank finished its body. A rank still inside its
// body by then (stalled, or slower than the deadline allows) makes the waiting ranks throw
// RuntimeFailure naming `what`, their rank and host, the deadline and (from a roll call,
// core/mpi_roll_call.h) the ranks that no longer answer; that failure is NOT
// agreed (the stalled rank never learns of it), so main aborts the job (core/mpi_env.h:
// end_mpi_job) instead of hanging. dist.timeout_s must therefore exceed the longest work one
// rank does alone inside agree().
#pragma once

#include <functional>
#include <string_view>

#include "core/rank_env.h"

namespace pft {

// `what` names the step in the deadline message ("checkpoint save at step 40").
void agree(const RankEnv& env, std::string_view what, const std::function<void()>& body);
void agree(const RankEnv& env, const std::function<void()>& body);

// Same, over the whole job, for code that runs before a RankEnv exists (config parsing), with
// deadline `timeout_s` (the default of dist.timeout_s where no config is loaded yet).
void agree_world(const std::function<void()>& body, double timeout_s = kDefaultTimeoutS);

}  // namespace pft
