// Shared by the tokenizer file targets: a config a reader accepted must build a tokenizer (or be
// refused with an InputError), and that tokenizer must encode and decode a fixed set of texts
// within its vocabulary.
#pragma once

#include <cstdlib>
#include <string>
#include <vector>

#include "data/bpe_tokenizer.h"
#include "fuzz_util.h"

namespace pft::fuzz {

inline void exercise_tokenizer(BpeTokenizerConfig config) {
  expect_pft_error([&] {
    const BpeTokenizer tok(std::move(config));
    static const std::string kTexts[] = {
        "Hello world! 123 4567 don't", "  leading\tand\ntrailing  ", "<|endoftext|>x<|pad|>",
        std::string("\xff\xfe invalid \xc3 utf-8 \0 nul", sizeof "\xff\xfe invalid \xc3 utf-8 \0 nul" - 1), "\xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80"};
    for (const std::string& text : kTexts) {
      for (const bool specials : {false, true}) {
        std::vector<int32_t> ids;
        tok.encode_append(text, specials, ids);
        for (const int32_t id : ids)
          if (id < 0 || id >= tok.vocab_size()) std::abort();
        (void)tok.decode(ids);
      }
    }
    if (tok.eos_id() >= tok.vocab_size()) std::abort();
    for (int32_t id = 0; id < tok.vocab_size() && id < 512; ++id) (void)tok.id_to_token(id);
    (void)tok.describe();
  });
}

}  // namespace pft::fuzz
