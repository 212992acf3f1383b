// The in-allocation sweep's messages (sweep/mpi_executor.h, Note [sweep protocol]): small tagged
// byte strings between the ranks of the job and the sweep controller on world rank 0, on a
// duplicate of the job's world used for nothing else, so they never match a message of a
// trial's own training (which runs on a group's communicator).
//
// Point to point only, never collective after construction: the controller serves requests on a
// thread of its own while world rank 0 trains in group 0 (MPI_THREAD_MULTIPLE, requested by
// core/mpi_env.h). Every wait is bounded by a deadline (send, receive) or is a poll (try_receive),
// so a lost peer ends the sweep with a RuntimeFailure naming the message, never a hang.
#pragma once

#include <mpi.h>

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "core/rank_env.h"

namespace pft {

class TrialChannel {
 public:
  // Collective over env's world: duplicates it.
  explicit TrialChannel(const RankEnv& env);
  // Frees the duplicate (not collective in practice: Open MPI frees a communicator locally).
  ~TrialChannel();
  TrialChannel(const TrialChannel&) = delete;
  TrialChannel& operator=(const TrialChannel&) = delete;

  struct Message {
    int source = -1;
    int tag = -1;
    std::string bytes;
  };

  // Sends `bytes` to `dest` with `tag`; returns once the send completed (the receiver may not
  // have it yet). Throws RuntimeFailure naming `what` after `timeout_s`.
  void send(int dest, int tag, std::string_view bytes, double timeout_s, std::string_view what);
  // The next message from `source` with `tag`. Throws RuntimeFailure naming `what` (and the rank
  // awaited) when none came within `timeout_s`. `between`, when given, runs between polls and may
  // throw to stop waiting (a preemption signal).
  Message receive(int source, int tag, double timeout_s, std::string_view what,
                  const std::function<void()>& between = {});
  // A message from any rank with `tag`, if one is waiting; never blocks. (A specific tag: world
  // rank 0's controller thread must not take the replies meant for its own main thread.)
  std::optional<Message> try_receive(int tag);

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
};

}  // namespace pft
