// GGUF files (llama.cpp's model format): header, metadata, tensor infos, and dequantization of
// the tensor types most published files use, to fp32. No torch: the tokenizer reader
// (data/gguf_tokenizer.h) needs only the metadata; model/gguf_import.h turns tensors into weights.
//
// Layout (ggml docs/gguf.md), all little-endian:
//   u32 magic "GGUF" | u32 version (2 or 3; 1 is refused) | u64 tensor_count | u64 kv_count
//   kv_count  x { string key | u32 value type | value }
//   tensor_count x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml type | u64 offset }
//   padding to `general.alignment` (default 32) | tensor data (offsets relative to its start,
//   each a multiple of the alignment)
// where a string is u64 length + bytes (no terminator) and an array value is u32 element type +
// u64 count + elements (arrays of arrays allowed). Dimensions are ggml's: ne[0] varies fastest,
// so a torch shape is ne reversed (TensorInfo::shape()).
//
// Tensor types (GgmlType): every id ggml defines is known by name and size so that a file that
// uses one still opens (its metadata stays readable); dequantize() converts F32, F16, BF16, Q8_0,
// Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K and Q6_K (Note [block layouts] in gguf.cpp) and refuses
// the others naming the tensor and the type. The values are bit-identical to gguf-py's
// gguf.quants.dequantize (the same float operations in the same order), which transformers'
// GGUF loader uses.
//
// Memory: the file is mapped read-only (mmap), never copied; tensors are converted one at a time
// into the caller's buffer, so loading a model needs the fp32 model plus one tensor at most.
//
// Errors: InputError naming the file and what is wrong (bad magic, unsupported version,
// truncation with the byte offset and the key or tensor being read, an unknown value type, a
// tensor outside the file, a misaligned offset, a missing or mistyped key).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace pft::gguf {

inline constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
inline constexpr uint64_t kDefaultAlignment = 32;

enum class ValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

// "uint32", "string", "array", ...; "type N" for an unknown id.
std::string value_type_name(ValueType type);

// ggml tensor type ids (ggml.h enum ggml_type; ids 4, 5, 31-33, 36-38 are retired).
enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9, Q2_K = 10,
  Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15, IQ2_XXS = 16, IQ2_XS = 17,
  IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23, I8 = 24,
  I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30, TQ1_0 = 34, TQ2_0 = 35,
  MXFP4 = 39,
};

// Elements per block and bytes per block of a known type; nullopt for an id ggml does not define.
struct TypeTraits {
  const char* name;
  int64_t block_size;
  int64_t type_size;
  bool dequantizable;  // dequantize() converts it
};
std::optional<TypeTraits> type_traits(GgmlType type);
// "Q4_K", or "type N" for an unknown id.
std::string type_name(GgmlType type);
// "F32, F16, BF16, Q8_0, ..." (for messages and docs).
std::string dequantizable_type_names();

// One metadata value. Integers of every width (and bool) are in `integer`; uint64 values above
// INT64_MAX are kept in `uinteger` too. Floats in `number`. Arrays in `items` (their element
// type in `element_type`).
struct Value {
  ValueType type = ValueType::kUint8;
  int64_t integer = 0;
  uint64_t uinteger = 0;
  double number = 0.0;
  std::string string;
  ValueType element_type = ValueType::kUint8;
  std::vector<Value> items;

  bool is_integer() const;  // every integer width and bool
  bool is_float() const { return type == ValueType::kFloat32 || type == ValueType::kFloat64; }
};

struct TensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // ggml dimensions, ne[0] fastest
  GgmlType type = GgmlType::F32;
  uint64_t offset = 0;      // from the start of the data section
  int64_t numel = 0;
  uint64_t nbytes = 0;      // 0 when the type is unknown

  // The torch shape (ne reversed).
  std::vector<int64_t> shape() const;
};

class File {
 public:
  // Maps and parses `path`. Throws InputError (see the top of this file).
  explicit File(const std::filesystem::path& path);
  ~File();
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  const std::filesystem::path& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  uint64_t file_size() const { return size_; }

  // Metadata in file order, and lookup by key (nullptr when absent).
  const std::vector<std::pair<std::string, Value>>& metadata() const { return metadata_; }
  const Value* find(std::string_view key) const;

  // Typed getters: InputError naming the file and key when the key is missing (no default) or
  // holds another type. Integer getters accept any integer width; float getters any number.
  std::string get_string(std::string_view key) const;
  std::optional<std::string> get_string_opt(std::string_view key) const;
  int64_t get_int(std::string_view key) const;
  std::optional<int64_t> get_int_opt(std::string_view key) const;
  double get_float(std::string_view key) const;
  std::optional<double> get_float_opt(std::string_view key) const;
  std::optional<bool> get_bool_opt(std::string_view key) const;
  // An array whose elements are strings / integers / numbers.
  std::vector<std::string> get_strings(std::string_view key) const;
  std::vector<int64_t> get_ints(std::string_view key) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const;

  // The stored bytes of `t` (a view into the mapping). Throws InputError for an unknown type.
  std::span<const uint8_t> bytes(const TensorInfo& t) const;

  // Writes t.numel fp32 values, in ggml order (== row-major in TensorInfo::shape()), to `out`.
  // Throws InputError naming the file, the tensor and the type when the type is not one
  // dequantize converts.
  void dequantize(const TensorInfo& t, float* out) const;

  // Throws InputError "<file>: <what>" (for importers reporting a problem with this file).
  [[noreturn]] void fail(const std::string& what) const;

 private:
  std::filesystem::path path_;
  const uint8_t* data_ = nullptr;  // the mapping
  uint64_t size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = kDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, Value>> metadata_;
  std::unordered_map<std::string, size_t> key_index_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

// True when `path` names a file whose first four bytes are the GGUF magic.
bool is_gguf_file(const std::filesystem::path& path);

// Converts `n` elements (a multiple of the type's block size) of `type` at `src` to fp32 at
// `dst`. Throws InputError when the type is not dequantizable (naming only the type; File adds
// the tensor).
void dequantize_row(GgmlType type, const uint8_t* src, int64_t n, float* dst);

// IEEE half / bfloat16 bits -> float (exact).
float half_to_float(uint16_t h);
inline float bf16_to_float(uint16_t b) {
  const uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  static_assert(sizeof f == sizeof bits);
  __builtin_memcpy(&f, &bits, sizeof f);
  return f;
}

}  // namespace pft::gguf
