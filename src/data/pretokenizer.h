// Pre-tokenization: splitting text into the pieces that byte-level BPE encodes one by one.
//
// Hugging Face `tokenizers` splits with Oniguruma regexes; pft hand-writes a scanner for each
// pattern it knows, over UTF-8 code points classed by the generated table in
// data/unicode_classes.h (Unicode 16.0, as tokenizers 0.22.1). Known patterns:
//   kGpt2    's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//            (GPT-2; the ByteLevel pre-tokenizer's use_regex=true)
//   kLlama3  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//            ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+          (Llama-3, SmolLM3, ...)
//   kQwen2   the same with \p{N} in place of \p{N}{1,3}                 (Qwen2 / Qwen2.5)
// plus HF's `Digits` pre-tokenizer (every number character alone, or runs of them).
// Each scanner reproduces the regex's leftmost-first alternation and backtracking exactly; the
// parity test (tests/reference/tokenizer_parity.py) checks this against `tokenizers`.
//
// Invalid UTF-8 (Note [invalid UTF-8]): a byte that does not start a well-formed UTF-8
// sequence (Unicode 16, table 3-7: no overlongs, no surrogates, nothing above U+10FFFF) is one
// character of its own, of class "other" -- exactly as if it were U+FFFD, the replacement
// character -- but it keeps its own byte, so byte-level BPE encodes it and decode() gives it
// back. Hugging Face cannot take such input at all (Rust &str / Python str are valid Unicode);
// on valid UTF-8 the two agree exactly.
//
// Pieces are byte ranges; scanners never split inside a well-formed UTF-8 sequence.
// Thread-safety: everything here is const and reentrant.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

namespace pft {

enum class SplitRule : uint8_t {
  kGpt2,             // the GPT-2 regex above
  kLlama3,           // the Llama-3 regex above (numbers in runs of up to 3)
  kQwen2,            // the Llama-3 regex with single-character numbers
  kDigitsIsolated,   // HF Digits(individual_digits=true): each \p{N} character alone
  kDigitsContiguous  // HF Digits(individual_digits=false): runs of \p{N} apart from the rest
};

// Which rule, if any, a Split pre-tokenizer's regex is; false for a pattern pft cannot scan.
bool split_rule_for_pattern(std::string_view pattern, SplitRule* rule);

// The regex of kGpt2 / kLlama3 / kQwen2 as tokenizer.json spells it (JSON-unescaped); empty for
// the Digits rules (they are not regexes).
std::string_view split_rule_pattern(SplitRule rule);

// Appends to `ends` the end offset (bytes, relative to text.data()) of each piece `rule` cuts
// `text` into, in order; the last end is text.size(). Nothing is appended for empty text.
void split_pieces(SplitRule rule, std::string_view text, std::vector<uint32_t>& ends);

// One step of a pre-tokenizer pipeline (HF `Sequence`): split every piece, or prepend a space
// to every piece that does not start with one (ByteLevel's add_prefix_space, which HF applies
// to each piece the earlier steps produced).
struct PreTokenizerStep {
  enum class Kind : uint8_t { kSplit, kPrefixSpace };
  Kind kind = Kind::kSplit;
  SplitRule rule = SplitRule::kGpt2;
};

// Scratch memory for PreTokenizer::run, reused across calls by one thread.
struct PreTokenizerScratch {
  std::vector<uint32_t> ends;
  std::vector<std::string_view> pieces, next_pieces;
  std::deque<std::string> prefixed;  // pieces with a prepended space (stable addresses)
};

class PreTokenizer {
 public:
  explicit PreTokenizer(std::vector<PreTokenizerStep> steps) : steps_(std::move(steps)) {}

  // Replaces `out` with the pieces of `text` after every step, in order. The views point into
  // `text` or into `scratch.prefixed`; both must outlive their use.
  void run(std::string_view text, PreTokenizerScratch& scratch,
           std::vector<std::string_view>& out) const;

  // True when the pipeline is one split and nothing else (the fast path callers may take with
  // split_pieces directly).
  bool is_single_split(SplitRule* rule) const;

  const std::vector<PreTokenizerStep>& steps() const { return steps_; }

 private:
  std::vector<PreTokenizerStep> steps_;
};

}  // namespace pft
