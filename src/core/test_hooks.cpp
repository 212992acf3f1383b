// The stall test hook (contract: core/test_hooks.h).
#include "core/test_hooks.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

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

}  // namespace

void test_stall_point(std::string_view point, int rank) {
  static const StallSpec spec = parse_stall_spec();
  if (spec.rank != rank || spec.point != point) return;
  std::fprintf(stderr, "test hook PFT_TEST_STALL: rank %d stalls in %s\n", rank,
               spec.point.c_str());
  std::fflush(stderr);
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}

}  // namespace pft
