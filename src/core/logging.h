// Logging with a `[rank/host]` prefix. Info and debug lines print on rank 0 only (the job speaks
// with one voice); `*_all` variants, warnings and errors print on every rank that calls them.
// Lines go to stderr; results meant for pipes (tables, `config show`) go to stdout.
//
// The implementation (spdlog) lives in logging.cpp; see Note [two fmts] in core/format.h for why
// this header passes plain strings across.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "core/format.h"

namespace pft::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

// Called once by the rank environment. Before it, lines carry `[?/host]` and every rank prints.
void init(int rank, int world_size, const std::string& host);
void set_level(Level level);
// Parses "debug|info|warn|error|off"; throws InputError naming `what` on anything else.
Level parse_level(std::string_view name, std::string_view what);

// Writes one line. `all_ranks` = false drops the line on ranks other than 0.
void write(Level level, bool all_ranks, std::string_view message);
void flush();

template <class... A>
void debug(fmt::format_string<A...> f, A&&... a) {
  write(Level::kDebug, false, fmt::format(f, std::forward<A>(a)...));
}
template <class... A>
void info(fmt::format_string<A...> f, A&&... a) {
  write(Level::kInfo, false, fmt::format(f, std::forward<A>(a)...));
}
template <class... A>
void info_all(fmt::format_string<A...> f, A&&... a) {
  write(Level::kInfo, true, fmt::format(f, std::forward<A>(a)...));
}
template <class... A>
void warn(fmt::format_string<A...> f, A&&... a) {
  write(Level::kWarn, true, fmt::format(f, std::forward<A>(a)...));
}
// Warnings that every rank would print identically (config notes): rank 0 only.
template <class... A>
void warn_once(fmt::format_string<A...> f, A&&... a) {
  write(Level::kWarn, false, fmt::format(f, std::forward<A>(a)...));
}
template <class... A>
void error(fmt::format_string<A...> f, A&&... a) {
  write(Level::kError, true, fmt::format(f, std::forward<A>(a)...));
}

}  // namespace pft::log
