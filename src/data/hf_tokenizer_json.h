// A tokenizer pft reads as a Hugging Face tokenizer.json that `tokenizers` / transformers'
// AutoTokenizer load and that encode exactly as pft does (`pft ckpt export --format hf`
// writes it when the run's tokenizer has no tokenizer.json of its own to copy: pft's `byte`
// tokenizer, or the tokenizer embedded in a GGUF file).
//
//   model          BPE: vocab (holes and repeated spellings left out; the first id keeps a
//                  spelling), merges as ["left", "right"] pairs in rank order, unk_token /
//                  fuse_unk / byte_fallback / ignore_merges as the config has them -- what
//                  transformers' GGUF converter builds (for `llama` files the unknown token with
//                  fuse_unk and byte_fallback, for the others none)
//   pre_tokenizer  the steps as HF spells them: Split (Isolated) with the GPT-2 / Llama-3 / Qwen2
//                  regex, Digits, and ByteLevel last (use_regex true when the last split is
//                  GPT-2's, add_prefix_space when the config prepends a space)
//   decoder        ByteLevel
//   added_tokens   every added token with its flags (special, normalized, lstrip, rstrip)
//   post_processor TemplateProcessing putting `prompt_prefix` (a GGUF's BOS when add_bos_token)
//                  before every text, as transformers' llama converter does; null when empty
//
// pft's byte tokenizer is written as the BPE of the 256 byte symbols (id = byte value) with no
// merges and no regex split, <|endoftext|> (256) and <|pad|> (257) as special added tokens: HF
// then encodes every text to its UTF-8 bytes, as pft does.
// Pure functions; throw InputError for a pre-tokenizer pipeline HF cannot spell.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/bpe_tokenizer.h"

namespace pft {

// tokenizer.json text for `config`.
std::string hf_tokenizer_json(const BpeTokenizerConfig& config,
                              const std::vector<int32_t>& prompt_prefix = {});

// pft's `byte` tokenizer as a BpeTokenizerConfig (for hf_tokenizer_json).
BpeTokenizerConfig byte_tokenizer_as_bpe();

}  // namespace pft
