// spdlog behind the small pft::log interface. This file must not see torch's include directory
// (Note [two fmts] in core/format.h).
#include "core/logging.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <memory>
#include <mutex>

#include "core/error.h"

namespace pft::log {
namespace {

struct State {
  std::shared_ptr<spdlog::logger> logger;
  std::atomic<int> rank{-1};
  std::atomic<int> level{static_cast<int>(Level::kInfo)};
};

State& state() {
  static State s;
  static std::once_flag once;
  std::call_once(once, [] {
    // stderr, unbuffered by line; one mutex-protected sink so the comm thread can log too.
    s.logger = std::make_shared<spdlog::logger>(
        "pft", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    s.logger->set_pattern("%H:%M:%S [?] %^%l%$ %v");
    s.logger->set_level(spdlog::level::trace);
    s.logger->flush_on(spdlog::level::trace);
  });
  return s;
}

spdlog::level::level_enum to_spd(Level l) {
  switch (l) {
    case Level::kDebug: return spdlog::level::debug;
    case Level::kInfo: return spdlog::level::info;
    case Level::kWarn: return spdlog::level::warn;
    case Level::kError: return spdlog::level::err;
    case Level::kOff: return spdlog::level::off;
  }
  return spdlog::level::info;
}

}  // namespace

void init(int rank, int world_size, const std::string& host) {
  State& s = state();
  s.rank = rank;
  // Rank numbers padded to the width of the largest, so columns line up in merged output.
  const int width = static_cast<int>(std::to_string(std::max(world_size - 1, 0)).size());
  const std::string tag = fmt::format("[{:>{}}/{}]", rank, width, host);
  s.logger->set_pattern("%H:%M:%S " + tag + " %^%l%$ %v");
}

void set_level(Level level) { state().level = static_cast<int>(level); }

Level parse_level(std::string_view name, std::string_view what) {
  if (name == "debug") return Level::kDebug;
  if (name == "info") return Level::kInfo;
  if (name == "warn" || name == "warning") return Level::kWarn;
  if (name == "error") return Level::kError;
  if (name == "off") return Level::kOff;
  throw InputError(fmt::format("{}: unknown log level '{}'; use debug, info, warn, error or off",
                               what, name));
}

void write(Level level, bool all_ranks, std::string_view message) {
  State& s = state();
  if (static_cast<int>(level) < s.level.load()) return;
  if (!all_ranks && s.rank.load() > 0) return;
  s.logger->log(to_spd(level), "{}", message);
}

void flush() { state().logger->flush(); }

}  // namespace pft::log
