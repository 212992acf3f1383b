#include "core/trace.h"

#include <chrono>
#include <cstdlib>
#include <string>
#include <mutex>

namespace pft::trace {

namespace {

std::atomic<bool> g_enabled{false};
std::mutex g_mutex;
std::vector<Event>& events() {
  static std::vector<Event> e;
  return e;
}
std::vector<Sample>& samples() {
  static std::vector<Sample> s;
  return s;
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

namespace {

// PFT_TEST_TRACE_CLOCK_SKEW_US=RANK:US (core/trace.h now_us): US on that MPI rank, else 0.
int64_t test_clock_skew_us() {
  const char* spec = std::getenv("PFT_TEST_TRACE_CLOCK_SKEW_US");
  const char* rank = std::getenv("OMPI_COMM_WORLD_RANK");
  if (spec == nullptr || rank == nullptr) return 0;
  const std::string s(spec);
  const size_t colon = s.find(':');
  if (colon == std::string::npos || s.substr(0, colon) != rank) return 0;
  return std::strtoll(s.c_str() + colon + 1, nullptr, 10);
}

}  // namespace

int64_t now_us() {
  static const int64_t skew = test_clock_skew_us();
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
             .count() +
         skew;
}

void set_enabled(bool on) { g_enabled.store(on, std::memory_order_relaxed); }
bool enabled() { return g_enabled.load(std::memory_order_relaxed); }

void record(Lane lane, std::string_view name, int64_t begin_us, int64_t end_us, int64_t step,
            int track) {
  if (enabled()) record_unchecked(lane, name, begin_us, end_us, step, track);
}

void record_unchecked(Lane lane, std::string_view name, int64_t begin_us, int64_t end_us,
                      int64_t step, int track) {
  std::lock_guard lock(g_mutex);
  events().push_back(Event{lane, std::string(name), begin_us, end_us, step, track});
}

std::vector<Event> take_events() {
  std::lock_guard lock(g_mutex);
  std::vector<Event> out;
  out.swap(events());
  return out;
}

void sample(std::string_view name, double value) {
  if (!enabled()) return;
  const int64_t t = now_us();
  std::lock_guard lock(g_mutex);
  samples().push_back(Sample{std::string(name), t, value});
}

std::vector<Sample> take_samples() {
  std::lock_guard lock(g_mutex);
  std::vector<Sample> out;
  out.swap(samples());
  return out;
}

}  // namespace pft::trace
