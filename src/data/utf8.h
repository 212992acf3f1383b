// UTF-8 decoding for the tokenizers: one character at a time, never throwing.
//
// decode_char(s, i, n) reads the character starting at byte i of s[0, n) (i < n). A well-formed
// sequence (Unicode table 3-7: shortest form, no surrogates, at most U+10FFFF) gives its code
// point and length 1..4; any other byte gives kInvalidCodePoint, length 1, class kOther -- the
// class U+FFFD would have (Note [invalid UTF-8] in data/pretokenizer.h).
#pragma once

#include <cstddef>
#include <cstdint>

#include "data/unicode_classes.h"

namespace pft::utf8 {

inline constexpr uint32_t kInvalidCodePoint = 0xFFFFFFFFu;

struct Char {
  uint32_t cp;
  uint32_t len;
  unicode::CharClass cls;
};

namespace detail {
// Classes of the ASCII range, so the common case never touches the two-stage table.
struct AsciiClasses {
  unicode::CharClass cls[128];
  constexpr AsciiClasses() : cls() {
    for (uint32_t c = 0; c < 128; ++c) cls[c] = unicode::char_class(c);
  }
};
inline constexpr AsciiClasses kAscii{};

inline bool is_continuation(unsigned char b) { return (b & 0xC0) == 0x80; }
}  // namespace detail

inline Char decode_char(const unsigned char* s, size_t i, size_t n) {
  const unsigned char b0 = s[i];
  if (b0 < 0x80) return {b0, 1, detail::kAscii.cls[b0]};
  const size_t left = n - i;
  uint32_t cp = 0;
  uint32_t len = 0;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    if (left >= 2 && detail::is_continuation(s[i + 1])) {
      cp = ((b0 & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu);
      len = 2;
    }
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    if (left >= 3) {
      const unsigned char b1 = s[i + 1];
      const unsigned char lo = b0 == 0xE0 ? 0xA0 : 0x80;  // no overlongs
      const unsigned char hi = b0 == 0xED ? 0x9F : 0xBF;  // no surrogates
      if (b1 >= lo && b1 <= hi && detail::is_continuation(s[i + 2])) {
        cp = ((b0 & 0x0Fu) << 12) | ((b1 & 0x3Fu) << 6) | (s[i + 2] & 0x3Fu);
        len = 3;
      }
    }
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    if (left >= 4) {
      const unsigned char b1 = s[i + 1];
      const unsigned char lo = b0 == 0xF0 ? 0x90 : 0x80;  // no overlongs
      const unsigned char hi = b0 == 0xF4 ? 0x8F : 0xBF;  // nothing above U+10FFFF
      if (b1 >= lo && b1 <= hi && detail::is_continuation(s[i + 2]) &&
          detail::is_continuation(s[i + 3])) {
        cp = ((b0 & 0x07u) << 18) | ((b1 & 0x3Fu) << 12) | ((s[i + 2] & 0x3Fu) << 6) |
             (s[i + 3] & 0x3Fu);
        len = 4;
      }
    }
  }
  if (len == 0) return {kInvalidCodePoint, 1, unicode::CharClass::kOther};
  return {cp, len, unicode::char_class(cp)};
}

}  // namespace pft::utf8
