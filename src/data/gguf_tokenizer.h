// The tokenizer of a GGUF file (its `tokenizer.ggml.*` metadata) as a BpeTokenizerConfig.
//
// Accepted: tokenizer.ggml.model "gpt2" (byte-level BPE) with
//   tokens       the vocab (id -> token text, GPT-2 byte mapping as in vocab.json)
//   merges       "left right" per rank
//   token_type   optional: 3 (control) tokens become special added tokens, 4 (user-defined)
//                non-special added tokens, both matched literally (normalized false); 1 (normal),
//                2 (unknown), 5 (unused) stay plain vocab entries. 6 (byte) is refused (that is
//                a sentencepiece vocab)
//   pre          the pre-tokenizer, by llama.cpp's name (Note [GGUF pre-tokenizers])
//   eos_token_id, padding_token_id, bos_token_id and add_bos_token
//   (GgufTokenizerInfo::prompt_prefix_ids), unknown_token_id: a byte missing from the vocab
//   encodes as transformers' GGUF tokenizer encodes it -- for general.architecture `llama` the
//   unknown token (fuse_unk, byte_fallback, as its llama converter builds the BPE), for the
//   others nothing (its gpt2 / qwen2 converters have no unknown token)
// and tokenizer.chat_template kept as text. "llama" (sentencepiece) and other models are refused
// naming the key and the value.
//
// Note [GGUF pre-tokenizers]
// llama.cpp records which regex split the text in `tokenizer.ggml.pre`. pft maps the names whose
// regex it has (data/pretokenizer.h):
//   default, gpt-2, gpt2, smollm      the GPT-2 regex (ByteLevel)
//   llama-bpe, llama3, smaug-bpe      the Llama-3 regex
//   qwen2                             the Qwen2 regex
// and refuses the others naming them. "smollm": transformers' GGUF loader (the reference of the
// parity tests) splits with ByteLevel's GPT-2 regex, which pft follows; llama.cpp additionally
// cuts every \p{N} character apart first. SmolLM2's merges contain no digit, so the two differ
// only on runs of non-ASCII number characters (e.g. "²³"), where pft agrees with transformers.
//
// Errors: InputError naming the file and the key (missing, mistyped, unsupported value).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/gguf.h"
#include "data/bpe_tokenizer.h"

namespace pft {

// What generation needs besides the tokenizer itself.
struct GgufTokenizerInfo {
  std::optional<int32_t> bos_id;
  std::vector<int32_t> prompt_prefix_ids;  // [bos] when add_bos_token is true, else empty
  std::string chat_template;               // tokenizer.chat_template ("" when absent)
  std::string pre;                         // tokenizer.ggml.pre ("default" when absent)
};

// True when the file has a tokenizer (tokenizer.ggml.model present).
bool gguf_has_tokenizer(const gguf::File& file);

BpeTokenizerConfig read_gguf_tokenizer(const gguf::File& file, GgufTokenizerInfo* info = nullptr);

// The same, opening `path` (a .gguf file).
BpeTokenizerConfig read_gguf_tokenizer(const std::string& path, GgufTokenizerInfo* info = nullptr);

}  // namespace pft
