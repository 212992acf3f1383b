// Shared by the HDF5 targets of tests/fuzz/ (checkpoint, token_store).
#pragma once

#include <hdf5.h>

namespace pft::fuzz {

// Note [HDF5 free lists in the fuzzers]: every H5Fopen builds a metadata cache of about 1 MB
// (H5C_create), which HDF5 calloc()s from its free lists. With the default limits (256 KB per
// list) the cache is handed back to malloc on close, and under ASan a block that size is a
// fresh mmap each time: page faults and zeroing took most of each execution (69 executions a
// second). Without limits HDF5 keeps the blocks and reuses them (about 10x faster). The cost:
// ASan sees a use-after-free inside HDF5 only where the freed block was not recycled yet, as
// with HDF5's own smaller blocks already; pft's code is unaffected.
inline int keep_hdf5_free_lists() {
  return H5set_free_list_limits(-1, -1, -1, -1, -1, -1) < 0 ? -1 : 0;
}

}  // namespace pft::fuzz
