// Fuzz target: Hugging Face tokenizer.json files (data/tokenizer_files.h read_tokenizer_json)
// and the tokenizer built from what they accept.
//
// Input: tokenizer.json, then optionally kPartSeparator and a tokenizer_config.json placed
// beside it (eos/pad tokens).
#include <cstddef>
#include <cstdint>

#include "data/tokenizer_files.h"
#include "tokenizer_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pft;
  const fuzz::FuzzDir& dir = fuzz::FuzzDir::get();
  const std::vector<std::string> parts = fuzz::split_input(
      std::string_view(reinterpret_cast<const char*>(data), size), fuzz::kPartSeparator, 2);
  const auto path = dir.write("tokenizer.json", parts[0]);
  if (parts.size() > 1)
    dir.write("tokenizer_config.json", parts[1]);
  else
    dir.remove("tokenizer_config.json");
  BpeTokenizerConfig config;
  if (fuzz::expect_pft_error([&] { config = read_tokenizer_json(path.string()); }))
    fuzz::exercise_tokenizer(std::move(config));
  return 0;
}
