// A writer for the GGUF format (ggml / llama.cpp, version 3), with no dependency beyond the
// standard library. The format (ggml's docs/gguf.md), all integers little-endian:
//
//   header       "GGUF" magic (u32 0x46554747), version u32 = 3, tensor_count u64,
//                metadata_kv_count u64
//   metadata     metadata_kv_count entries of
//                  key (string) , value type (u32 GgufValueType), value
//                a string is u64 length + UTF-8 bytes (no terminator); an array is element
//                type u32 + count u64 + the elements
//   tensor infos per tensor: name (string), n_dims u32, dims u64[n_dims] in ggml order (ne[0]
//                first: the innermost, contiguous dimension -- the reverse of a row-major shape),
//                ggml type u32, offset u64 into the data area (a multiple of the alignment)
//   padding      zeros up to a multiple of general.alignment (32 unless the metadata sets it)
//   data         each tensor's bytes at its offset, padded with zeros to the alignment
//
// Tensor bytes are already encoded by the caller (ggml type F32, F16 or Q8_0: model/gguf_export.h
// quantizes); the writer checks their size against the type's block layout.
//
// Used by `pft ckpt export --format gguf` (model/gguf_export.h). Not collective; any thread.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <variant>
#include <vector>

#include "core/gguf.h"

namespace pft {

// GGUF metadata value types (gguf_type), as numbered in the file.
using GgufValueType = gguf::ValueType;  // the reader's (core/gguf.h): one set of format constants

// ggml tensor types (core/gguf.h); this writer produces F32, F16 and Q8_0.
using gguf::GgmlType;

// Q8_0: blocks of kQ8_0BlockSize values along ne[0], each an fp16 scale d then 32 int8 q;
// value = d * q.
constexpr int64_t kQ8_0BlockSize = 32;
constexpr int64_t kQ8_0BlockBytes = 2 + kQ8_0BlockSize;

constexpr uint32_t kGgufVersion = 3;
constexpr uint64_t kGgufAlignment = gguf::kDefaultAlignment;  // general.alignment's default

// "F32" | "F16" | "Q8_0".
const char* ggml_type_name(GgmlType type);

// Bytes of a tensor of `type` with `numel` elements whose innermost dimension is `ne0`. Throws
// InputError naming `tensor` when ne0 is not a multiple of the type's block size.
uint64_t ggml_type_bytes(GgmlType type, int64_t numel, int64_t ne0, const std::string& tensor);

struct GgufValue {
  using Data = std::variant<uint32_t, int32_t, float, bool, std::string, std::vector<std::string>,
                            std::vector<int32_t>>;
  Data data;
};

class GgufWriter {
 public:
  // Metadata, in insertion order (keys unique: InputError otherwise).
  void add_u32(const std::string& key, uint32_t v);
  void add_i32(const std::string& key, int32_t v);
  void add_f32(const std::string& key, float v);
  void add_bool(const std::string& key, bool v);
  void add_string(const std::string& key, std::string v);
  void add_strings(const std::string& key, std::vector<std::string> v);  // array of string
  void add_i32s(const std::string& key, std::vector<int32_t> v);         // array of int32

  // A tensor of row-major `shape` (written reversed, as ggml's ne), `type`, and its encoded
  // bytes. Throws InputError for a duplicate name or a byte count that does not match.
  void add_tensor(const std::string& name, const std::vector<int64_t>& shape, GgmlType type,
                  std::vector<std::byte> bytes);

  size_t tensor_count() const { return tensors_.size(); }

  // Writes the file (temporary file + rename). RuntimeFailure naming the file on I/O errors.
  void write(const std::filesystem::path& path) const;

 private:
  struct Tensor {
    std::string name;
    std::vector<int64_t> shape;
    GgmlType type;
    std::vector<std::byte> bytes;
  };
  void add(const std::string& key, GgufValue::Data v);
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<Tensor> tensors_;
};

}  // namespace pft
