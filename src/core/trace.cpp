#include "core/trace.h"

#include <chrono>
#include <mutex>

namespace pft::trace {

namespace {

std::atomic<bool> g_enabled{false};
std::mutex g_mutex;
std::vector<Event>& events() {
  static std::vector<Event> e;
  return e;
}

}  // namespace

std::string_view lane_name(Lane lane) {
  switch (lane) {
    case Lane::kStep: return "step";
    case Lane::kData: return "data wait";
    case Lane::kForward: return "forward";
    case Lane::kBackward: return "backward";
    case Lane::kComm: return "gradient all-reduce";
    case Lane::kOptimizer: return "optimizer";
    case Lane::kControl: return "controller";
    case Lane::kEval: return "evaluation";
    case Lane::kCheckpoint: return "checkpoint snapshot";
    case Lane::kCheckpointWrite: return "checkpoint write";
  }
  return "?";
}

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void set_enabled(bool on) { g_enabled.store(on, std::memory_order_relaxed); }
bool enabled() { return g_enabled.load(std::memory_order_relaxed); }

void record(Lane lane, std::string_view name, int64_t begin_us, int64_t end_us, int64_t step) {
  if (!enabled()) return;
  std::lock_guard lock(g_mutex);
  events().push_back(Event{lane, std::string(name), begin_us, end_us, step});
}

std::vector<Event> take_events() {
  std::lock_guard lock(g_mutex);
  std::vector<Event> out;
  out.swap(events());
  return out;
}

}  // namespace pft::trace
