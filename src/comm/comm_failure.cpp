// Deadlines and failure messages of collectives (see comm_failure.h).
#include "comm/comm_failure.h"

#include <algorithm>

#include "core/error.h"
#include "core/format.h"

namespace pft {

Deadline deadline_after(double seconds) {
  constexpr double kMaxSeconds = 365.0 * 24 * 3600;
  const double s = std::clamp(seconds, 0.0, kMaxSeconds);
  return CommClock::now() +
         std::chrono::duration_cast<CommClock::duration>(std::chrono::duration<double>(s));
}

double seconds_since(CommClock::time_point start) {
  return std::chrono::duration<double>(CommClock::now() - start).count();
}

void FailureLatch::trip(const std::string& reason) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (tripped_.load(std::memory_order_relaxed)) return;
  reason_ = reason;
  tripped_.store(true, std::memory_order_release);
}

void FailureLatch::check(const CommIdentity& id, std::string_view op) const {
  if (!tripped()) return;
  std::string reason;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    reason = reason_;
  }
  throw RuntimeFailure(fmt::format(
      "{} refused on rank {} ({}): this {} communicator is unusable after an earlier failure: {}",
      op, id.rank, id.host, id.backend, reason));
}

std::string deadline_message(const CommIdentity& id, std::string_view op, double elapsed_s,
                             double timeout_s, std::string_view roll_call) {
  return fmt::format(
      "{} on rank {} of {} (host {}, {}) did not complete within the deadline of {:.3g} s "
      "(elapsed {:.2f} s). A peer rank did not issue the matching call (every rank must issue the "
      "same collectives in the same order), is stuck in slow work, or died. {}{}HINT: look for a "
      "rank that failed or fell behind first; raise dist.timeout_s if a step legitimately takes "
      "longer",
      op, id.rank, id.size, id.host, id.backend, timeout_s, elapsed_s, roll_call,
      roll_call.empty() ? "" : " ");
}

void throw_deadline_missed(const CommIdentity& id, std::string_view op, double elapsed_s,
                           double timeout_s) {
  throw RuntimeFailure(deadline_message(id, op, elapsed_s, timeout_s));
}

void throw_contract(const CommIdentity& id, std::string_view op, std::string_view what) {
  throw RuntimeFailure(fmt::format("{} on rank {} ({}): {} (this is a bug in the caller)", op,
                                   id.rank, id.host, what));
}

}  // namespace pft
