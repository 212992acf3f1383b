// The stall and delay test hooks (contract: core/test_hooks.h).
#include "core/test_hooks.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>
#include <algorithm>

#include "core/error.h"

namespace pft {
namespace {

struct StallSpec {
  std::string point;
  int rank = -1;
};

StallSpec parse_stall_spec() {
  StallSpec spec;
  const char* v = std::getenv("PFT_TEST_STALL");
  if (v == nullptr || *v == '\0') return spec;
  const std::string text(v);
  const size_t colon = text.find(':');
  const std::string rank = colon == std::string::npos ? "" : text.substr(colon + 1);
  if (colon == 0 || rank.size() < 5 || rank.rfind("rank", 0) != 0 ||
      rank.find_first_not_of("0123456789", 4) != std::string::npos)
    throw InputError("PFT_TEST_STALL='" + text +
                     "': expected <point>:rank<r> (e.g. ckpt_save:rank1); it is a test hook "
                     "(core/test_hooks.h): unset it for normal runs");
  spec.point = text.substr(0, colon);
  spec.rank = std::stoi(rank.substr(4));
  return spec;
}

struct DelaySpec {
  std::string point;
  double seconds = 0.0;
};

std::vector<DelaySpec> parse_delay_specs() {
  std::vector<DelaySpec> specs;
  const char* v = std::getenv("PFT_TEST_DELAY");
  if (v == nullptr || *v == '\0') return specs;
  const std::string text(v);
  size_t begin = 0;
  while (begin <= text.size()) {
    const size_t comma = std::min(text.find(',', begin), text.size());
    const std::string item = text.substr(begin, comma - begin);
    const size_t colon = item.find(':');
    char* end = nullptr;
    const double seconds =
        colon == std::string::npos ? -1.0 : std::strtod(item.c_str() + colon + 1, &end);
    if (colon == 0 || colon == std::string::npos || end == nullptr || *end != '\0' ||
        !(seconds >= 0.0) || seconds > 3600.0)
      throw InputError("PFT_TEST_DELAY='" + text +
                       "': expected <point>:<seconds>[,<point>:<seconds>...] (e.g. "
                       "ckpt_save:4,step:0.2); it is a test hook (core/test_hooks.h): unset it "
                       "for normal runs");
    specs.push_back(DelaySpec{item.substr(0, colon), seconds});
    begin = comma + 1;
  }
  return specs;
}

}  // namespace

void test_delay_point(std::string_view point, int rank) {
  static const std::vector<DelaySpec> specs = parse_delay_specs();
  for (const DelaySpec& spec : specs) {
    if (spec.point != point) continue;
    std::fprintf(stderr, "test hook PFT_TEST_DELAY: rank %d waits %g s in %s\n", rank,
                 spec.seconds, spec.point.c_str());
    std::fflush(stderr);
    std::this_thread::sleep_for(std::chrono::duration<double>(spec.seconds));
  }
}

void test_stall_point(std::string_view point, int rank) {
  static const StallSpec spec = parse_stall_spec();
  if (spec.rank != rank || spec.point != point) return;
  std::fprintf(stderr, "test hook PFT_TEST_STALL: rank %d stalls in %s\n", rank,
               spec.point.c_str());
  std::fflush(stderr);
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}

}  // namespace pft
