// A writer for the safetensors format (Hugging Face), with no dependency beyond Boost.JSON.
//
// File layout: an 8-byte little-endian unsigned N, then N bytes of UTF-8 JSON, then the tensor
// data. The JSON maps each tensor name to {"dtype": "F32"|"BF16"|..., "shape": [..],
// "data_offsets": [begin, end]} (byte offsets into the data area, which the tensors tile in
// order without gaps), plus an optional "__metadata__" object of string -> string. The header is
// padded with spaces to a multiple of 8 bytes so the data area is aligned. Data is row-major,
// little-endian.
//
// Used by `pft ckpt export` (ckpt/export.h); the model floor's safetensors reader (model/) reads
// what this writes. Not collective; any thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "ckpt/contents.h"

namespace pft::ckpt {

struct SafetensorsTensor {
  std::string name;
  DType dtype = DType::kFloat32;  // not kString
  std::vector<int64_t> shape;
  std::span<const std::byte> bytes;  // numel * dtype_size
};

// "F32", "F64", "F16", "BF16", "I8", "I16", "I32", "I64", "U8", "BOOL".
const char* safetensors_dtype(DType dtype);

// Writes `tensors` (in the given order; names unique) to `path` (via a temporary file and a
// rename). Throws InputError for a duplicate name or a string tensor, RuntimeFailure on I/O
// errors naming the file.
void write_safetensors(const std::filesystem::path& path,
                       const std::vector<SafetensorsTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace pft::ckpt
