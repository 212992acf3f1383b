// Fuzz target: safetensors files (model/safetensors.h): the header (length, JSON, dtypes,
// shapes, offsets, __metadata__) and, for what it accepts, every tensor's bytes; with an index,
// a sharded checkpoint (SafetensorsCheckpoint over model.safetensors.index.json).
//
// Input: the bytes of model.safetensors, then optionally kPartSeparator and the text of a
// model.safetensors.index.json written beside it.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "fuzz_util.h"
#include "model/safetensors.h"

namespace {

// Reads every byte of every tensor the file accepted (a view over the mapping or a copy).
uint64_t touch_all(const pft::SafetensorsFile& f) {
  uint64_t sum = 0;
  for (const pft::SafetensorsEntry& e : f.entries()) {
    if (e.end < e.begin || e.end - e.begin > f.data_offset() + (uint64_t{1} << 32)) std::abort();
    pft::fuzz::expect_pft_error([&] {
      const at::Tensor t = f.tensor(e.name);
      const auto bytes = static_cast<uint64_t>(t.numel()) * t.element_size();
      if (bytes != e.end - e.begin) std::abort();
      const auto* p = static_cast<const uint8_t*>(t.data_ptr());
      for (uint64_t i = 0; i < bytes; ++i) sum += p[i];
    });
  }
  return sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pft;
  const fuzz::FuzzDir& dir = fuzz::FuzzDir::get();
  const std::vector<std::string> parts = fuzz::split_input(
      std::string_view(reinterpret_cast<const char*>(data), size), fuzz::kPartSeparator, 2);
  const auto path = dir.write("model.safetensors", parts[0]);
  volatile uint64_t sink = 0;
  fuzz::expect_pft_error([&] {
    const SafetensorsFile f(path);
    for (const auto& [k, v] : f.metadata()) sink = sink + k.size() + v.size();
    sink = sink + touch_all(f);
  });
  if (parts.size() > 1) {
    dir.write("model.safetensors.index.json", parts[1]);
    fuzz::expect_pft_error([&] {
      const SafetensorsCheckpoint ckpt(dir.path());
      for (const std::string& name : ckpt.names()) {
        if (ckpt.find(name) == nullptr) std::abort();
        (void)ckpt.file_of(name);
      }
      sink = sink + ckpt.total_bytes();
    });
    dir.remove("model.safetensors.index.json");
  }
  return 0;
}
