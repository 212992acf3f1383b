// Deadlines and failures of collectives: the time type every communicator call uses, who this
// rank is (for messages), the latch that marks a communicator unusable after a failure, and the
// one place the messages of those failures are written.
//
// Torch-free on purpose: the MPI progress engine (comm/mpi_progress.h) and the NCCL checker
// include it without pulling in ATen.
#pragma once

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <string_view>

namespace pft {

using CommClock = std::chrono::steady_clock;
// A point in time by which a collective must have completed (dist.timeout_s after it started).
using Deadline = CommClock::time_point;

// `seconds` from now; non-positive or absurdly large values are clamped to [0, 1 year].
Deadline deadline_after(double seconds);
// Seconds elapsed since `start`.
double seconds_since(CommClock::time_point start);

// Who is speaking, for every message a communicator writes.
struct CommIdentity {
  int rank = 0;
  int size = 1;
  std::string host;
  std::string backend;  // "mpi" or "nccl"
};

// Set once a collective missed its deadline or failed: the ranks no longer agree on which
// collective comes next (or a peer is gone), so the communicator must not be used again; every
// later call throws RuntimeFailure naming the first failure. Thread-safe.
class FailureLatch {
 public:
  // Records the first failure; later calls keep the first reason.
  void trip(const std::string& reason);
  bool tripped() const { return tripped_.load(std::memory_order_acquire); }
  // Throws RuntimeFailure if tripped: "<op> refused on rank r (host): ... earlier failure: ...".
  void check(const CommIdentity& id, std::string_view op) const;

 private:
  std::atomic<bool> tripped_{false};
  mutable std::mutex mutex_;
  std::string reason_;
};

// The message of a missed deadline, e.g.
//   "all_reduce(sum, 1024 x float32) on rank 1 of 4 (host node7, mpi) did not complete within
//    the deadline of 1 s (elapsed 1.00 s). ..." followed by the likely causes, `roll_call` (the
// roll call's sentence naming the lost ranks and hosts, core/mpi_roll_call.h; may be empty)
// and a HINT.
std::string deadline_message(const CommIdentity& id, std::string_view op, double elapsed_s,
                             double timeout_s, std::string_view roll_call = {});

// Throws RuntimeFailure with deadline_message(...).
[[noreturn]] void throw_deadline_missed(const CommIdentity& id, std::string_view op,
                                        double elapsed_s, double timeout_s);

// A caller broke a call's contract (non-contiguous tensor, wrong dtype or shape, bad root):
// a bug in pft, not bad input. Throws RuntimeFailure "<op> on rank r (host): <what>".
[[noreturn]] void throw_contract(const CommIdentity& id, std::string_view op,
                                 std::string_view what);

}  // namespace pft
