// Fuzz target: the prepared token store reader (data/token_store.h TokenStore::open and
// StoreSplit reads): attributes, the per-split datasets, document offsets, chunked reads.
//
// Input: the bytes of a store file, written to store.h5 in /dev/shm and opened read-only
// without an expected hash (as `pft data` tools open one).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "data/token_store.h"
#include "fuzz_util.h"
#include "hdf5_fuzz.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) { return pft::fuzz::keep_hdf5_free_lists(); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pft;
  const fuzz::FuzzDir& dir = fuzz::FuzzDir::get();
  const auto path = dir.write("store.h5", std::string_view(reinterpret_cast<const char*>(data), size));
  fuzz::expect_pft_error([&] {
    std::unique_ptr<TokenStore> store = TokenStore::open(path, std::nullopt, StoreReadOptions{2});
    std::vector<int32_t> tokens;
    std::vector<uint8_t> mask;
    for (int s = 0; s < kNumSplits; ++s) {
      if (!store->has_split(static_cast<Split>(s))) continue;
      StoreSplit& split = store->split(static_cast<Split>(s));
      const int64_t docs = split.num_examples() * split.num_templates();
      for (int32_t slot = 0; slot < split.num_templates(); ++slot) (void)split.template_id(slot);
      // The documents at both ends and a few between (a store may hold many).
      for (int64_t d = 0; d < docs; d += (d < 8 || docs - d <= 8) ? 1 : docs / 16 + 1) {
        fuzz::expect_pft_error([&] {
          split.read(d, tokens, mask);
          if (tokens.size() != mask.size() || static_cast<int64_t>(tokens.size()) != split.length(d))
            std::abort();
        });
      }
    }
  });
  return 0;
}
