// The synthetic contents of the large-store test: written by token_store_big_test.cpp, checked
// by token_store_probe.cpp. Cheap to generate and to check, different in every document.
#pragma once

#include <cstdint>

namespace pft::testing_store {

inline int64_t pattern_length(int64_t doc) { return 4096 + (doc * 7919) % 8192; }
inline int32_t pattern_token(int64_t doc, int64_t j) {
  return static_cast<int32_t>((doc * 1000003 + j * 7) % 50257);
}
inline uint8_t pattern_mask(int64_t j) { return j % 3 == 0 ? 1 : 0; }

}  // namespace pft::testing_store
