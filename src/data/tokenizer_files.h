// Readers for tokenizer files, each giving a BpeTokenizerConfig (data/bpe_tokenizer.h).
//
//   read_gpt2_files      GPT-2's encoder.json + vocab.bpe (HF: vocab.json + merges.txt):
//                        the JSON token -> id map, and one "left right" merge per line after
//                        an optional "#version" header. <|endoftext|>, when in the vocab, is
//                        the special eos token. Pre-tokenizer: ByteLevel (GPT-2 regex).
//   read_tokenizer_json  a Hugging Face tokenizer.json; what it accepts is listed in
//                        data/tokenizer.h. eos/pad come from a tokenizer_config.json in the
//                        same directory when there is one. model.unk_token must be in
//                        model.vocab when some byte has no symbol (HF fails otherwise).
//
// Every problem throws InputError naming the file and, where there is one, the line (JSON
// syntax errors, merges lines) or the JSON key, and what to do about it.
#pragma once

#include <string>

#include "data/bpe_tokenizer.h"

namespace pft {

BpeTokenizerConfig read_gpt2_files(const std::string& vocab_path, const std::string& merges_path);

BpeTokenizerConfig read_tokenizer_json(const std::string& path);

}  // namespace pft
