// The MPI progress engine (see mpi_progress.h; the choice of kThread as the default is explained
// in Note [mpi progress] in mpi_communicator.cpp).
#include "comm/mpi_progress.h"

#include <utility>

#include "core/error.h"
#include "core/format.h"
#include "core/leak_check.h"
#include "core/mpi_check.h"
#include "core/mpi_roll_call.h"

namespace pft {
namespace {

// The text PFT_MPI_CHECK would throw (call, file:line, rank, host, MPI's error string), for
// failures seen on the progress thread, where throwing would go nowhere.
std::string mpi_error_text(int rc, const char* call) {
  try {
    throw_mpi_error(rc, call, __FILE__, __LINE__);
  } catch (const std::exception& e) {
    return e.what();
  }
}

// How a thread waiting for MPI passes the time between MPI_Tests: spin for the first
// kSpinFor (short collectives finish within it, and yielding would hand the core to whatever
// else runs there for a whole time slice), then yield, so that oversubscribed ranks (more ranks
// than cores, as in the tests) and the compute threads get the core.
class Backoff {
 public:
  static constexpr std::chrono::microseconds kSpinFor{200};
  void pause() {
    if (CommClock::now() - start_ > kSpinFor) std::this_thread::yield();
  }

 private:
  CommClock::time_point start_ = CommClock::now();
};

// Ops still unfinished when the engine goes away: MPI may still write into their buffers, and
// an active collective request must not be freed, so they live until the process ends.
void leak(std::vector<std::shared_ptr<MpiOp>> ops) {
  if (ops.empty()) return;
  leaked_on_purpose(new std::vector<std::shared_ptr<MpiOp>>(std::move(ops)));  // NOLINT
}

// MPI_Test on every op of `ops` (any order), removing the finished ones.
void drain_some(std::vector<std::shared_ptr<MpiOp>>& ops) {
  for (auto it = ops.begin(); it != ops.end();) {
    int flag = 0;
    const int rc = MPI_Test(&(*it)->request, &flag, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS || flag) {
      it = ops.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace

MpiProgress::MpiProgress(const CommIdentity& id, FailureLatch& latch, MpiProgressOptions options)
    : id_(id), latch_(latch), options_(options) {
  if (options_.mode == MpiProgressMode::kThread) worker_ = std::thread([this] { worker_loop(); });
}

MpiProgress::~MpiProgress() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
    drain_deadline_ = CommClock::now() + kDrainGrace;
  }
  work_cv_.notify_all();
  if (worker_.joinable()) worker_.join();  // drains its in-flight ops until drain_deadline_

  // kPoll in-flight ops and blocking-lane ops that missed their deadline: drive them for what is
  // left of the grace period (a peer may still issue the matching call), then leak the rest.
  std::vector<std::shared_ptr<MpiOp>> pending(inflight_.begin(), inflight_.end());
  pending.insert(pending.end(), abandoned_.begin(), abandoned_.end());
  inflight_.clear();
  abandoned_.clear();
  int finalized = 0;
  MPI_Finalized(&finalized);
  while (!finalized && !pending.empty() && CommClock::now() < drain_deadline_) {
    drain_some(pending);
    if (!pending.empty()) std::this_thread::yield();
  }
  leak(std::move(pending));
}

bool MpiProgress::post(MpiOp& op) {
  if (op.issued == CommClock::time_point{}) op.issued = CommClock::now();  // kThread: at submit
  const int rc = op.post(&op.request);
  if (rc != MPI_SUCCESS) {
    fail(op, rc, "post");
    return false;
  }
  return true;
}

void MpiProgress::fail(MpiOp& op, int rc, const char* call) {
  op.error = fmt::format("{} failed: {}", op.what, mpi_error_text(rc, call));
  op.state.store(MpiOp::kFailed, std::memory_order_release);
  latch_.trip(op.error);
}

void MpiProgress::throw_failed(const MpiOp& op) {
  latch_.trip(op.error);
  throw RuntimeFailure(op.error);
}

void MpiProgress::throw_deadline(const MpiOp& op, Deadline deadline) {
  const double timeout_s = std::chrono::duration<double>(deadline - op.issued).count();
  const double elapsed_s = seconds_since(op.issued);
  // Who is missing? (core/mpi_roll_call.h; waits up to its grace, once per process.)
  const std::string roll_call = roll_call_after_deadline(timeout_s);
  const std::string message = deadline_message(id_, op.what, elapsed_s, timeout_s, roll_call);
  latch_.trip(message);
  throw RuntimeFailure(message);
}

void MpiProgress::pause() const {
  if (options_.poll_sleep_us > 0) {
    std::this_thread::sleep_for(std::chrono::microseconds(options_.poll_sleep_us));
  } else {
    std::this_thread::yield();
  }
}

bool MpiProgress::complete_in_order(std::deque<std::shared_ptr<MpiOp>>& inflight) {
  bool any = false;
  while (!inflight.empty()) {
    MpiOp& op = *inflight.front();
    int flag = 0;
    const int rc = MPI_Test(&op.request, &flag, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
      fail(op, rc, "MPI_Test");
    } else if (!flag) {
      break;
    } else {
      op.state.store(MpiOp::kDone, std::memory_order_release);
    }
    inflight.pop_front();
    any = true;
  }
  return any;
}

void MpiProgress::run(const std::shared_ptr<MpiOp>& op, Deadline deadline) {
  if (!post(*op)) throw_failed(*op);
  Backoff backoff;
  for (;;) {
    int flag = 0;
    const int rc = MPI_Test(&op->request, &flag, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
      fail(*op, rc, "MPI_Test");
      throw_failed(*op);
    }
    if (flag) {
      op->state.store(MpiOp::kDone, std::memory_order_release);
      return;
    }
    if (CommClock::now() >= deadline) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        abandoned_.push_back(op);
      }
      throw_deadline(*op, deadline);
    }
    // Never sleep: large messages move in fragments that need this thread's MPI_Test to
    // advance (Note [mpi progress]).
    backoff.pause();
  }
}

void MpiProgress::submit(std::shared_ptr<MpiOp> op) {
  if (options_.mode == MpiProgressMode::kThread) {
    op->issued = CommClock::now();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(op));
    }
    work_cv_.notify_one();
    return;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (post(*op)) inflight_.push_back(std::move(op));
}

bool MpiProgress::test(const MpiOp& op) {
  if (options_.mode == MpiProgressMode::kPoll) {
    std::lock_guard<std::mutex> lock(mutex_);
    complete_in_order(inflight_);
  }
  const int state = op.state.load(std::memory_order_acquire);
  if (state == MpiOp::kFailed) throw_failed(op);
  return state == MpiOp::kDone;
}

void MpiProgress::wait(const MpiOp& op, Deadline deadline) {
  if (options_.mode == MpiProgressMode::kPoll) {
    Backoff backoff;
    while (!test(op)) {
      if (CommClock::now() >= deadline) throw_deadline(op, deadline);
      backoff.pause();
    }
    return;
  }
  {
    std::unique_lock<std::mutex> lock(mutex_);
    done_cv_.wait_until(lock, deadline, [&] {
      return op.state.load(std::memory_order_acquire) != MpiOp::kPending;
    });
  }
  if (!test(op)) throw_deadline(op, deadline);
}

void MpiProgress::worker_loop() {
  std::deque<std::shared_ptr<MpiOp>> inflight;  // posted, in submission order
  std::deque<std::shared_ptr<MpiOp>> fresh;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      if (inflight.empty()) work_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_ && queue_.empty() && (inflight.empty() || CommClock::now() >= drain_deadline_))
        break;
      fresh.swap(queue_);
    }
    bool completed = false;
    for (auto& op : fresh) {
      if (post(*op)) {
        inflight.push_back(std::move(op));
      } else {
        completed = true;
      }
    }
    fresh.clear();
    completed = complete_in_order(inflight) || completed;
    if (completed) {
      // Lock so that a waiter between its predicate check and its sleep cannot miss this.
      { std::lock_guard<std::mutex> lock(mutex_); }
      done_cv_.notify_all();
    }
    if (!inflight.empty()) pause();
  }
  leak(std::vector<std::shared_ptr<MpiOp>>(inflight.begin(), inflight.end()));
}

}  // namespace pft
