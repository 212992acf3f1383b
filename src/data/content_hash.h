// Content hashes: XXH3-128 over a stream of typed pieces, for cache keys (the prepared token
// store, data/token_store.h) and fingerprints.
//
// A Hasher is fed pieces in a fixed order; each piece is framed (a one-byte tag and, for
// variable-length pieces, its length), so ("ab", "c") and ("a", "bc") hash differently. The
// result is the same on every platform (XXH3 is specified byte for byte; integers are fed
// little-endian).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace pft {

struct ContentHash {
  uint64_t high = 0, low = 0;

  std::string hex() const;  // 32 lowercase hex digits, high word first
  // Parses hex(); returns false on anything else.
  static bool from_hex(std::string_view text, ContentHash* out);
  bool operator==(const ContentHash&) const = default;
};

class Hasher {
 public:
  Hasher();
  ~Hasher();
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;

  Hasher& text(std::string_view s);  // length-framed bytes
  Hasher& integer(int64_t v);
  Hasher& real(double v);  // its IEEE-754 bits
  // The file's size and bytes (read in blocks; any size). Throws InputError naming the path
  // when it cannot be read.
  Hasher& file(const std::filesystem::path& path);

  ContentHash finish() const;  // may be called again after more pieces

 private:
  void raw(const void* data, size_t size);
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace pft
