// Formatting for messages and logs: fmt, used header-only.
//
// Note [two fmts]: torch's wheel ships fmt 12 headers in its include dir, Debian ships fmt 9.
// Targets that see torch's include dir format with fmt 12, the others with fmt 9; FMT_HEADER_ONLY
// (set for every pft target) means neither needs a library, and fmt's versioned inline namespaces
// keep the two apart at link time. spdlog (compiled against Debian's fmt) is only ever included
// by core/logging.cpp, which never sees torch's headers. So: never put a non-template inline
// function that formats into a header; pass std::string across module boundaries.
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>
