// The byte-level BPE tokenizer behind every non-"byte" spec (contract: data/tokenizer.h).
//
// Encoding a text, as Hugging Face's Tokenizer::encode does it without post-processing:
//   1. added tokens are cut out of the text (Note [added tokens]);
//   2. each remaining segment is pre-tokenized into pieces (data/pretokenizer.h);
//   3. each piece is byte-pair encoded (data/bpe.h).
// The file readers (data/tokenizer_files.h) fill a BpeTokenizerConfig; this class trusts it
// except where noted.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "data/bpe.h"
#include "data/pretokenizer.h"
#include "data/tokenizer.h"

namespace pft {

// An entry of tokenizer.json's "added_tokens" (single_word is refused by the reader).
struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool normalized = false;  // matched after normalization (a second pass; no normalizer here)
  bool lstrip = false;      // the match takes the whitespace before it
  bool rstrip = false;      // the match takes the whitespace after it
};

struct BpeTokenizerConfig {
  std::string source;              // what it was read from, for describe() and errors
  std::vector<std::string> vocab;  // id -> token text as the file writes it; "" for holes
  std::vector<MergeRule> merges;   // in rank order, resolved to ids
  bool ignore_merges = false;
  std::vector<PreTokenizerStep> pre_tokenizer;
  std::vector<AddedToken> added_tokens;
  int32_t eos_id = -1;
  std::optional<int32_t> pad_id;
  // Hugging Face's BPE `unk_token`: a byte the vocab has no symbol for encodes to it; without one
  // such a byte is dropped (as HF does). Real vocabularies miss some bytes (SmolLM2: 21 of 256).
  // Must be an id of `vocab` (HF looks it up in the model's vocab). Note [missing bytes] in
  // data/bpe.h has the exact rules, with these two:
  std::optional<int32_t> unk_id;
  bool fuse_unk = false;       // HF's BPE fuse_unk: adjacent unknown bytes give one unk_id
  bool byte_fallback = false;  // HF's BPE byte_fallback: "<0xXY>" tokens before the unknown token
};

class BpeTokenizer final : public Tokenizer {
 public:
  // A vocab may lack symbols for some of the 256 bytes (Note [missing bytes] in data/bpe.h).
  // Throws InputError (naming config.source) when unk_id is not an id of the vocab.
  explicit BpeTokenizer(BpeTokenizerConfig config);
  ~BpeTokenizer() override;

  void encode_append(std::string_view text, bool with_specials,
                     std::vector<int32_t>& out) const override;
  std::string decode(std::span<const int32_t> ids) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  int32_t eos_id() const override { return eos_id_; }
  std::optional<int32_t> pad_id() const override { return pad_id_; }
  std::optional<int32_t> token_to_id(std::string_view token) const override;
  std::string id_to_token(int32_t id) const override;
  std::string describe() const override;

 private:
  class AddedTokenSet;

  // Pre-tokenizes and encodes a segment holding no added token.
  void encode_segment(std::string_view text, std::vector<int32_t>& out) const;
  // Pass `pass` (0: tokens with normalized=false, 1: the others) over `text`.
  void encode_added(std::string_view text, int pass, bool with_specials,
                    std::vector<int32_t>& out) const;

  std::string source_;
  PreTokenizer pre_tokenizer_;
  std::unique_ptr<BytePairEncoder> encoder_;
  std::unique_ptr<AddedTokenSet> added_[2];
  bool has_nonspecial_added_ = false;
  int32_t vocab_size_ = 0;
  int32_t eos_id_ = -1;
  std::optional<int32_t> pad_id_;
  int missing_bytes_ = 0;  // bytes the vocab has no symbol for
  std::optional<int32_t> unk_id_;
  std::vector<std::string> token_text_;    // id -> token string (id_to_token)
  std::vector<std::string> decode_bytes_;  // id -> bytes it decodes to
  std::unordered_map<std::string, int32_t> id_of_text_;
};

}  // namespace pft
