// Fuzz target: GGUF files (core/gguf.h gguf::File: header, metadata, tensor infos,
// dequantization) and the tokenizer metadata (data/gguf_tokenizer.h read_gguf_tokenizer), with
// the tokenizer built from what it accepts.
//
// Input: the bytes of a .gguf file.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "core/gguf.h"
#include "data/gguf_tokenizer.h"
#include "tokenizer_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pft;
  const fuzz::FuzzDir& dir = fuzz::FuzzDir::get();
  const auto path = dir.write("model.gguf", std::string_view(reinterpret_cast<const char*>(data), size));
  fuzz::expect_pft_error([&] {
    const gguf::File file(path);
    // Every tensor the reader accepted lies inside the file; dequantize the small ones.
    std::vector<float> out;
    for (const gguf::TensorInfo& t : file.tensors()) {
      if (t.numel > (1 << 16)) continue;
      fuzz::expect_pft_error([&] {
        const auto bytes = file.bytes(t);
        uint64_t end = 0;
        if ((!bytes.empty() || t.offset != 0) &&
            (__builtin_add_overflow(file.data_offset(), t.offset, &end) ||
             __builtin_add_overflow(end, uint64_t{bytes.size()}, &end) || end > file.file_size()))
          std::abort();
        out.resize(static_cast<size_t>(t.numel));
        file.dequantize(t, out.data());
      });
    }
    for (const auto& [key, value] : file.metadata()) (void)file.find(key);
    if (!gguf_has_tokenizer(file)) return;
    GgufTokenizerInfo info;
    BpeTokenizerConfig config = read_gguf_tokenizer(file, &info);
    fuzz::exercise_tokenizer(std::move(config));
  });
  return 0;
}
