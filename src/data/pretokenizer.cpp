// Hand-written scanners for the pre-tokenization regexes (see data/pretokenizer.h).
//
// Note [regex semantics]: Oniguruma finds, at the current position, the first alternative
// that matches (leftmost-first, not longest), each quantifier greedy with backtracking. Every
// character is in exactly one of the classes letter / number / White_Space / other, and each
// pattern has an alternative for every class, so matches tile the text with no gaps and the
// scanner only has to decide where the match starting at `p` ends. Each branch below is
// commented with the alternative it implements.
#include "data/pretokenizer.h"

#include "data/utf8.h"

namespace pft {
namespace {

using unicode::CharClass;
using utf8::Char;
using utf8::decode_char;

// The patterns exactly as the files spell them (JSON-unescaped).
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// End of the run of `cls` characters starting at q.
inline size_t run_end(const unsigned char* s, size_t q, size_t n, CharClass cls) {
  while (q < n) {
    // ASCII letters are the bulk of most text: test them without the general decoder.
    const unsigned char b = s[q];
    if (b < 0x80) {
      if (utf8::detail::kAscii.cls[b] != cls) break;
      ++q;
      continue;
    }
    const Char c = decode_char(s, q, n);
    if (c.cls != cls) break;
    q += c.len;
  }
  return q;
}

inline unsigned char ascii_lower(unsigned char b) {
  return (b >= 'A' && b <= 'Z') ? static_cast<unsigned char>(b | 0x20) : b;
}

// Length of the contraction 's|'t|'re|'ve|'m|'ll|'d starting at p (s[p] == '\''), 0 if none.
// `ignore_case` is Oniguruma's (?i:...): ASCII case folding, plus U+017F LATIN SMALL LETTER
// LONG S, which folds to 's' (the only non-ASCII character folding to one of these letters).
inline size_t contraction_len(const unsigned char* s, size_t p, size_t n, bool ignore_case) {
  if (p + 1 >= n) return 0;
  auto at = [&](size_t i) -> unsigned char { return ignore_case ? ascii_lower(s[i]) : s[i]; };
  const unsigned char c1 = at(p + 1);
  if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return 2;
  if (ignore_case && s[p + 1] == 0xC5 && p + 2 < n && s[p + 2] == 0xBF) return 3;  // 'ſ
  if (p + 2 >= n) return 0;
  const unsigned char c2 = at(p + 2);
  if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return 3;
  return 0;
}

// The whitespace alternatives shared by both patterns, at p where s[p] is White_Space:
// \s+(?!\S) takes the whole run when it reaches the end of the text, else all of it but the
// last character (backtracking until the next character is whitespace); a single whitespace
// character before a non-space fails that and \s+ takes it alone.
// With `newline_rule` (Llama-3's \s*[\r\n]+, tried first): when the run holds a CR or LF, the
// match ends after the last of them (\s* backtracks from the end of the run to it).
inline size_t whitespace_end(const unsigned char* s, size_t p, size_t n, bool newline_rule) {
  size_t q = p;
  size_t last_start = p;  // start of the run's last character
  size_t after_newline = 0;
  while (q < n) {
    const unsigned char b = s[q];
    if (b < 0x80) {
      if (utf8::detail::kAscii.cls[b] != CharClass::kSpace) break;
      if (b == '\n' || b == '\r') after_newline = q + 1;
      last_start = q;
      ++q;
      continue;
    }
    const Char c = decode_char(s, q, n);
    if (c.cls != CharClass::kSpace) break;
    last_start = q;
    q += c.len;
  }
  if (newline_rule && after_newline != 0) return after_newline;
  if (q == n) return n;
  return last_start > p ? last_start : q;
}

void split_gpt2(const unsigned char* s, size_t n, std::vector<uint32_t>& ends) {
  size_t p = 0;
  while (p < n) {
    size_t end;
    const Char c0 = decode_char(s, p, n);
    if (s[p] == '\'' && contraction_len(s, p, n, /*ignore_case=*/false) != 0) {
      end = p + contraction_len(s, p, n, false);  // 's|'t|'re|'ve|'m|'ll|'d
    } else if (c0.cls != CharClass::kSpace) {
      end = run_end(s, p + c0.len, n, c0.cls);  // \p{L}+ | \p{N}+ | [^\s\p{L}\p{N}]+
    } else if (s[p] == ' ' && p + 1 < n && decode_char(s, p + 1, n).cls != CharClass::kSpace) {
      // " ?\p{L}+ | ?\p{N}+ | ?[^\s\p{L}\p{N}]+" with the optional space.
      const Char c1 = decode_char(s, p + 1, n);
      end = run_end(s, p + 1 + c1.len, n, c1.cls);
    } else {
      end = whitespace_end(s, p, n, /*newline_rule=*/false);  // \s+(?!\S)|\s+
    }
    ends.push_back(static_cast<uint32_t>(end));
    p = end;
  }
}

void split_llama3(const unsigned char* s, size_t n, size_t max_digits,
                  std::vector<uint32_t>& ends) {
  size_t p = 0;
  while (p < n) {
    size_t end;
    const Char c0 = decode_char(s, p, n);
    size_t contraction = s[p] == '\'' ? contraction_len(s, p, n, /*ignore_case=*/true) : 0;
    if (contraction != 0) {
      end = p + contraction;  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
    } else if (c0.cls == CharClass::kLetter) {
      end = run_end(s, p + c0.len, n, CharClass::kLetter);  // \p{L}+ (no prefix character)
    } else if (c0.cls != CharClass::kNumber && s[p] != '\r' && s[p] != '\n' && p + c0.len < n &&
               decode_char(s, p + c0.len, n).cls == CharClass::kLetter) {
      end = run_end(s, p + c0.len, n, CharClass::kLetter);  // [^\r\n\p{L}\p{N}]\p{L}+
    } else if (c0.cls == CharClass::kNumber) {
      end = p + c0.len;  // \p{N}{1,max_digits}
      for (size_t k = 1; k < max_digits && end < n; ++k) {
        const Char c = decode_char(s, end, n);
        if (c.cls != CharClass::kNumber) break;
        end += c.len;
      }
    } else if (c0.cls == CharClass::kOther ||
               (s[p] == ' ' && p + 1 < n && decode_char(s, p + 1, n).cls == CharClass::kOther)) {
      // " ?[^\s\p{L}\p{N}]+[\r\n]*"
      const size_t first = c0.cls == CharClass::kOther ? p : p + 1;
      end = run_end(s, first, n, CharClass::kOther);
      while (end < n && (s[end] == '\r' || s[end] == '\n')) ++end;
    } else {
      end = whitespace_end(s, p, n, /*newline_rule=*/true);  // \s*[\r\n]+|\s+(?!\S)|\s+
    }
    ends.push_back(static_cast<uint32_t>(end));
    p = end;
  }
}

void split_digits(const unsigned char* s, size_t n, bool isolated, std::vector<uint32_t>& ends) {
  size_t p = 0;
  while (p < n) {
    const Char c0 = decode_char(s, p, n);
    size_t end;
    if (c0.cls == CharClass::kNumber) {
      end = isolated ? p + c0.len : run_end(s, p + c0.len, n, CharClass::kNumber);
    } else {
      end = p + c0.len;
      while (end < n) {
        const Char c = decode_char(s, end, n);
        if (c.cls == CharClass::kNumber) break;
        end += c.len;
      }
    }
    ends.push_back(static_cast<uint32_t>(end));
    p = end;
  }
}

}  // namespace

bool split_rule_for_pattern(std::string_view pattern, SplitRule* rule) {
  if (pattern == kGpt2Pattern) {
    *rule = SplitRule::kGpt2;
  } else if (pattern == kLlama3Pattern) {
    *rule = SplitRule::kLlama3;
  } else if (pattern == kQwen2Pattern) {
    *rule = SplitRule::kQwen2;
  } else {
    return false;
  }
  return true;
}

std::string_view split_rule_pattern(SplitRule rule) {
  switch (rule) {
    case SplitRule::kGpt2:
      return kGpt2Pattern;
    case SplitRule::kLlama3:
      return kLlama3Pattern;
    case SplitRule::kQwen2:
      return kQwen2Pattern;
    default:
      return {};
  }
}

void split_pieces(SplitRule rule, std::string_view text, std::vector<uint32_t>& ends) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  switch (rule) {
    case SplitRule::kGpt2:
      split_gpt2(s, n, ends);
      break;
    case SplitRule::kLlama3:
      split_llama3(s, n, 3, ends);
      break;
    case SplitRule::kQwen2:
      split_llama3(s, n, 1, ends);
      break;
    case SplitRule::kDigitsIsolated:
      split_digits(s, n, /*isolated=*/true, ends);
      break;
    case SplitRule::kDigitsContiguous:
      split_digits(s, n, /*isolated=*/false, ends);
      break;
  }
}

void PreTokenizer::run(std::string_view text, PreTokenizerScratch& scratch,
                       std::vector<std::string_view>& out) const {
  out.clear();
  scratch.prefixed.clear();
  if (text.empty()) return;
  out.push_back(text);
  for (const PreTokenizerStep& step : steps_) {
    auto& next = scratch.next_pieces;
    next.clear();
    for (std::string_view piece : out) {
      if (step.kind == PreTokenizerStep::Kind::kPrefixSpace) {
        if (piece.empty() || piece.front() == ' ') {
          next.push_back(piece);
        } else {
          std::string& prefixed = scratch.prefixed.emplace_back();
          prefixed.reserve(piece.size() + 1);
          prefixed.push_back(' ');
          prefixed.append(piece);
          next.push_back(prefixed);
        }
        continue;
      }
      scratch.ends.clear();
      split_pieces(step.rule, piece, scratch.ends);
      uint32_t begin = 0;
      for (uint32_t end : scratch.ends) {
        next.push_back(piece.substr(begin, end - begin));
        begin = end;
      }
    }
    out.swap(next);
  }
}

bool PreTokenizer::is_single_split(SplitRule* rule) const {
  if (steps_.size() != 1 || steps_[0].kind != PreTokenizerStep::Kind::kSplit) return false;
  *rule = steps_[0].rule;
  return true;
}

}  // namespace pft
