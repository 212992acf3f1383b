// Fuzz target: the HDF5 checkpoint reader (ckpt/reader.h: read_checkpoint_meta, read_checkpoint,
// verify_checkpoint), i.e. the hostile-file checks, the format/manifest checks and the contents
// decoding (ckpt/contents.h, ckpt/format.h).
//
// Input: the bytes of a checkpoint file, written to ckpt.h5 in /dev/shm and opened by the
// reader as pft opens a checkpoint.
#include <cstddef>
#include <cstdint>

#include "ckpt/reader.h"
#include "fuzz_util.h"
#include "hdf5_fuzz.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) { return pft::fuzz::keep_hdf5_free_lists(); }

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pft;
  const fuzz::FuzzDir& dir = fuzz::FuzzDir::get();
  const auto path = dir.write("ckpt.h5", std::string_view(reinterpret_cast<const char*>(data), size));
  bool meta_ok = fuzz::expect_pft_error([&] { (void)ckpt::read_checkpoint_meta(path); });
  bool full_ok = fuzz::expect_pft_error([&] {
    const ckpt::Contents c = ckpt::read_checkpoint(path);
    for (const ckpt::Dataset& d : c.datasets())
      if (d.loaded && d.dtype != ckpt::DType::kString &&
          d.bytes.size() != static_cast<size_t>(d.numel()) * ckpt::dtype_size(d.dtype))
        std::abort();
  });
  const ckpt::Verification v = ckpt::verify_checkpoint(path);
  // verify_checkpoint checks what read_checkpoint checks: they agree on every file.
  if (v.ok != full_ok || (v.ok && !meta_ok)) {
    std::fprintf(stderr, "verify_checkpoint: ok=%d (%s), read_checkpoint ok=%d, meta ok=%d\n",
                 v.ok, v.reason.c_str(), full_ok, meta_ok);
    std::abort();
  }
  if (!v.ok && v.reason.empty()) std::abort();
  return 0;
}
