#include "core/error.h"

namespace pft {

void throw_internal(const char* file, int line, const std::string& what) {
  throw RuntimeFailure(std::string("internal error at ") + file + ":" + std::to_string(line) +
                       ": " + what + " (this is a bug in pft; please report it)");
}

}  // namespace pft
