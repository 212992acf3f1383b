// Tokenizers: text <-> token ids, with exact parity to Hugging Face `tokenizers`.
//
// load_tokenizer(spec) builds one from a spec string:
//   "byte"                 ids 0..255 are the bytes; <|endoftext|> = 256 (eos), <|pad|> = 257;
//                          vocab 258.
//   a directory            GPT-2's encoder.json + vocab.bpe, or the same files under their
//                          Hugging Face names vocab.json + merges.txt (or a tokenizer.json in
//                          it, preferred when present). <|endoftext|> is the eos and special.
//   a tokenizer.json path  a Hugging Face file (what `tokenizers` accepts for byte-level BPE):
//                          model BPE over a byte-level vocab, which may lack some of the 256
//                          byte symbols (model.unk_token, fuse_unk and byte_fallback then
//                          apply as in HF: Note [missing bytes] in data/bpe.h);
//                          model.ignore_merges honoured; pre_tokenizer ByteLevel, or a Sequence
//                          of Split (regex: the GPT-2, Llama-3 or Qwen2 pattern, see
//                          data/pretokenizer.h) / Digits steps ending in ByteLevel; normalizer
//                          null or steps that change nothing (an empty Sequence, ...); decoder
//                          null, ByteLevel, or a Sequence of it with steps that change nothing
//                          for this vocab (ByteFallback, Fuse, Replace, as transformers writes
//                          them for SmolLM2: Note [no-op normalizers and decoders] in
//                          data/tokenizer_files.cpp); added_tokens (lstrip/rstrip honoured).
//                          post_processor, truncation and padding are ignored (pft adds no
//                          template tokens, and packs sequences itself).
//                          Anything else is refused with an InputError naming the file and the
//                          unsupported key.
//   a GGUF file            its tokenizer.ggml.* metadata (byte-level BPE "gpt2" models; see
//                          data/gguf_tokenizer.h), recognised by the file's magic.
//
// Encoding equals HF's `Tokenizer.encode(text, add_special_tokens=False).ids`:
//   - encode_with_specials(text) matches every added token in the text first (special or not;
//     leftmost, then longest, as HF does), and encodes the text between them;
//   - encode(text) matches only the non-special added tokens, so "<|endoftext|>" in a
//     document is just text (HF with encode_special_tokens=True). Use it for untrusted data.
//   No BOS/EOS or other template tokens are ever added (HF's post_processor is ignored):
//   callers add eos_id() themselves.
// Invalid UTF-8 is accepted: every byte that is not part of a well-formed sequence is one
// character of class "other" (as U+FFFD would be) that keeps its own byte; see
// Note [invalid UTF-8] in data/pretokenizer.h. HF cannot take such input at all.
//
// Decoding concatenates the tokens' bytes: vocab tokens through GPT-2's byte mapping (a token
// with a character outside the mapping gives its UTF-8 text, as HF's ByteLevel decoder does),
// added tokens their literal content, special tokens included. The result is raw bytes, not
// repaired: decode(encode(x)) == x for every byte string x, and decode(encode_with_specials(x))
// == x too -- except with ByteLevel add_prefix_space (the added spaces decode too), added
// tokens with lstrip/rstrip (the whitespace they swallow does not) and vocabularies missing
// byte symbols (those bytes come back as the unknown token's text, or not at all). With invalid
// UTF-8 replaced by U+FFFD, decode equals HF's decode(ids, skip_special_tokens=False) whenever
// the file's decoder is byte-level (HF's decode skips special tokens by default; HF without a
// ByteLevel decoder returns the mapped token strings), except for an added token made only of
// characters of GPT-2's mapping, not all printable ASCII ("Ġx", "é"): pft gives its content,
// HF the bytes they map to.
//
// Thread-safety: after construction every member is const and may be called from many threads
// at once (the BPE piece cache is per thread).
// Errors: load_tokenizer throws pft::InputError naming the file (and line, where one exists)
// for a missing, unreadable or malformed file; decode/id_to_token throw InputError for an id
// outside [0, vocab_size()) (an id inside it that no token has decodes to nothing).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pft {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Appends the ids of `text` to `out`; `with_specials` as encode_with_specials. The
  // primitive behind encode/encode_with_specials, for loops that reuse one buffer.
  virtual void encode_append(std::string_view text, bool with_specials,
                             std::vector<int32_t>& out) const = 0;

  std::vector<int32_t> encode(std::string_view text) const {
    std::vector<int32_t> ids;
    encode_append(text, /*with_specials=*/false, ids);
    return ids;
  }
  std::vector<int32_t> encode_with_specials(std::string_view text) const {
    std::vector<int32_t> ids;
    encode_append(text, /*with_specials=*/true, ids);
    return ids;
  }

  virtual std::string decode(std::span<const int32_t> ids) const = 0;

  // One more than the largest id (the embedding table size the model needs).
  virtual int32_t vocab_size() const = 0;
  // The end-of-text token; -1 when the tokenizer has none (tokenizer.json files: the
  // eos_token of a tokenizer_config.json beside it, else the first of <|endoftext|>,
  // <|end_of_text|>, </s>, <|im_end|>, <eos> that exists).
  virtual int32_t eos_id() const = 0;
  // The padding token, if the tokenizer has one (<|pad|>, <pad>, [PAD]).
  virtual std::optional<int32_t> pad_id() const = 0;

  // Token strings are as vocab files write them: byte-level tokens in GPT-2's mapped form
  // ("Ġworld" for " world"; for the byte tokenizer too), added tokens as their content.
  virtual std::optional<int32_t> token_to_id(std::string_view token) const = 0;
  virtual std::string id_to_token(int32_t id) const = 0;

  // One line for logs: kind and source, e.g. "byte-level BPE (50257 ids) from <path>".
  virtual std::string describe() const = 0;
};

// See the top of this file for the spec forms. Throws InputError.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& spec);

}  // namespace pft
