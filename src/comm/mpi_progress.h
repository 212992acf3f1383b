// The MPI progress engine: posts nonblocking MPI collectives (MPI_I*), drives them to completion
// with MPI_Test, and turns a missed deadline into a RuntimeFailure instead of a hang.
//
// Two lanes, each on its own MPI communicator chosen by the caller (Note [mpi progress] in
// mpi_communicator.cpp says why):
//   - the blocking lane, run(): the calling thread posts the op and polls it until done;
//   - the async lane, submit()/test()/wait(): ops complete in submission order. In kThread mode
//     a dedicated progress thread posts and polls them, so they advance while the caller
//     computes; in kPoll mode the caller posts them at once and they advance only inside MPI
//     calls (test(), wait(), or any blocking-lane call).
// An op whose deadline passes is never freed under MPI's feet (MPI forbids freeing an active
// collective request): it is kept and drained by the destructor for up to kDrainGrace, then
// leaked. A missed deadline or an MPI error trips the communicator's FailureLatch. Before a
// missed deadline is thrown, the roll call (core/mpi_roll_call.h) finds the ranks that are gone
// and the message names them and their hosts.
//
// Torch-free: tensors reach it only as type-erased `buffers` kept alive with the op.
#pragma once

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "comm/comm_failure.h"

namespace pft {

// One MPI nonblocking operation, from posting to completion.
struct MpiOp {
  enum State : int { kPending = 0, kDone = 1, kFailed = 2 };

  std::string what;                       // for messages: "all_reduce(sum, 1024 x float32)"
  std::function<int(MPI_Request*)> post;  // issues the MPI_I* call, returns its MPI error code
  std::shared_ptr<void> buffers;          // keeps the memory MPI reads and writes alive

  // Written by the engine.
  MPI_Request request = MPI_REQUEST_NULL;
  CommClock::time_point issued{};
  std::atomic<int> state{kPending};
  std::string error;  // set before state becomes kFailed
};

enum class MpiProgressMode { kThread, kPoll };

struct MpiProgressOptions {
  MpiProgressMode mode = MpiProgressMode::kThread;
  // Progress thread only: pause between MPI_Test rounds while ops are in flight; 0 = yield.
  int poll_sleep_us = 0;
};

class MpiProgress {
 public:
  // How long the destructor keeps driving unfinished ops before leaking them.
  static constexpr std::chrono::milliseconds kDrainGrace{2000};

  // `id` and `latch` must outlive the engine.
  MpiProgress(const CommIdentity& id, FailureLatch& latch, MpiProgressOptions options);
  ~MpiProgress();
  MpiProgress(const MpiProgress&) = delete;
  MpiProgress& operator=(const MpiProgress&) = delete;

  MpiProgressMode mode() const { return options_.mode; }

  // Blocking lane: posts `op` on this thread and polls it until done. Throws RuntimeFailure when
  // the deadline passes (naming op->what, rank, host, elapsed) or MPI reports an error.
  void run(const std::shared_ptr<MpiOp>& op, Deadline deadline);

  // Async lane: queues `op` (kThread) or posts it now (kPoll). Ops complete in submission order.
  void submit(std::shared_ptr<MpiOp> op);
  // True once `op` (and so every op submitted before it) completed; throws if it failed.
  // Non-blocking; in kPoll mode it makes progress.
  bool test(const MpiOp& op);
  // Blocks until test(op) is true; throws RuntimeFailure at the deadline or on an MPI error.
  void wait(const MpiOp& op, Deadline deadline);

 private:
  void worker_loop();
  // Posts `op` on this thread; false (op marked failed) when MPI refused it.
  bool post(MpiOp& op);
  // MPI_Test on the oldest ops of `inflight`, popping those done; true if any completed.
  bool complete_in_order(std::deque<std::shared_ptr<MpiOp>>& inflight);
  void fail(MpiOp& op, int rc, const char* call);
  [[noreturn]] void throw_failed(const MpiOp& op);
  [[noreturn]] void throw_deadline(const MpiOp& op, Deadline deadline);
  void pause() const;

  const CommIdentity& id_;
  FailureLatch& latch_;
  MpiProgressOptions options_;

  std::mutex mutex_;
  std::condition_variable work_cv_;                // the progress thread waits for submissions
  std::condition_variable done_cv_;                // waiters wait for completions
  std::deque<std::shared_ptr<MpiOp>> queue_;       // kThread: submitted, not yet posted
  std::deque<std::shared_ptr<MpiOp>> inflight_;    // kPoll: posted, not yet complete, in order
  std::vector<std::shared_ptr<MpiOp>> abandoned_;  // blocking-lane ops past their deadline
  bool stop_ = false;
  Deadline drain_deadline_{};
  std::thread worker_;
};

}  // namespace pft
