// The roll call: after a collective missed its deadline, which ranks are still there?
//
// A deadline miss alone cannot say who is missing: the rank that waits sees only that the
// collective did not complete. A host that crashed, whose link was cut or whose ranks hung looks
// the same. So right after its deadline passes, every rank that missed it takes a roll call
// (Note [roll call]): it sends one small message to every other rank on a communicator of its
// own (pft's duplicate of the world, made at start-up, used for nothing else) and waits a short
// grace for theirs. Ranks that do not answer are the lost ones; the message names them by host
// (RankEnv::rank_hosts), e.g.
//   "Roll call: ranks 2, 3 on node2 did not answer within 1.5 s (host down or cut off, or those
//    ranks are hung); ranks 0, 1 on node1 answered."
//
// Note [roll call]
// ~~~~~~~~~~~~~~~~
// Every collective involves every rank, so when one rank is lost every survivor ends up blocked
// in the same collective (or the next one) and misses its deadline within about a step of the
// others: all survivors take the roll call at nearly the same time and hear each other. The
// grace, clamp(dist.timeout_s / 4, 1 s, 5 s), covers that skew. A rank that is alive but busy
// elsewhere (a stalled rank, or one still inside a long local job) does not answer and is named:
// the message says "lost or hung". Sends to a dead peer may never complete; their requests and
// buffers are abandoned (leaked on purpose: the process is about to end). One roll call per
// process: later calls return the first answer.
#pragma once

#include <mpi.h>

#include <string>
#include <vector>

namespace pft {

// Makes the roll call possible: `comm` (a communicator over the whole job, used for nothing
// else; not freed while registered) and every rank's host, indexed by rank. Called by
// discover_rank_env; unregister_roll_call() before freeing `comm`.
void register_roll_call(MPI_Comm comm, std::vector<std::string> rank_hosts);
void unregister_roll_call();

// After this rank missed a deadline of dist.timeout_s = `timeout_s`: the roll call (waits up to
// its grace) and one sentence naming the ranks that did not answer, grouped by host. Empty when
// no roll call is registered or the job has one rank. Never throws; not collective in the MPI
// sense (a rank that never calls it is reported as not answering).
std::string roll_call_after_deadline(double timeout_s);

// The grace of the roll call for a given dist.timeout_s: clamp(timeout_s / 4, 1, 5) seconds.
double roll_call_grace_s(double timeout_s);

// False when this rank took a roll call and a lower rank answered it: that rank, which heard the
// same roll call, prints the job's one message (main stays quiet on the others, so a lost host
// gives one message per surviving group of ranks, not one per rank). True otherwise.
bool roll_call_reporter();

}  // namespace pft
