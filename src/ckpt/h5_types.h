// HDF5 datatypes of checkpoint dtypes, shared by the writer and the reader.
//
//   float32/float64        IEEE little-endian
//   float16                IEEE half, little-endian (h5py reads it as numpy float16)
//   bfloat16               a 16-bit HDF5 float (sign 15, exponent 7..14 with bias 127,
//                          mantissa 0..6): stored bit for bit; h5py can convert it with
//                          `ds.astype("float32")`, and the dtype attribute says "bfloat16"
//   int8..int64, uint8     little-endian integers; bool as uint8 (0/1)
//   string                 fixed-length UTF-8, null-padded (scalar)
#pragma once

#include <hdf5.h>

#include <cstddef>

#include "ckpt/contents.h"
#include "core/hdf5.h"

namespace pft::ckpt::detail {

// A new datatype handle for `dtype` (for kString: `text_size` bytes).
h5::Handle file_type(DType dtype, size_t text_size = 1);

}  // namespace pft::ckpt::detail
