// Fuzz target: GPT-2 vocabulary files (data/tokenizer_files.h read_gpt2_files: vocab.json /
// encoder.json and merges.txt / vocab.bpe) and the tokenizer built from what they accept.
//
// Input: vocab.json, kPartSeparator, merges.txt (no separator: an empty merges file).
#include <cstddef>
#include <cstdint>

#include "data/tokenizer_files.h"
#include "tokenizer_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pft;
  const fuzz::FuzzDir& dir = fuzz::FuzzDir::get();
  const std::vector<std::string> parts = fuzz::split_input(
      std::string_view(reinterpret_cast<const char*>(data), size), fuzz::kPartSeparator, 2);
  const auto vocab = dir.write("vocab.json", parts[0]);
  const auto merges = dir.write("merges.txt", parts.size() > 1 ? parts[1] : "");
  BpeTokenizerConfig config;
  if (fuzz::expect_pft_error([&] { config = read_gpt2_files(vocab.string(), merges.string()); }))
    fuzz::exercise_tokenizer(std::move(config));
  return 0;
}
