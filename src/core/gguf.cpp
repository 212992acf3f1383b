// GGUF reading and dequantization (contract: core/gguf.h).
#include "core/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>

#include "core/error.h"
#include "core/format.h"

namespace pft::gguf {

namespace fs = std::filesystem;

// ---- Names and sizes -----------------------------------------------------------------------

std::string value_type_name(ValueType type) {
  switch (type) {
    case ValueType::kUint8: return "uint8";
    case ValueType::kInt8: return "int8";
    case ValueType::kUint16: return "uint16";
    case ValueType::kInt16: return "int16";
    case ValueType::kUint32: return "uint32";
    case ValueType::kInt32: return "int32";
    case ValueType::kFloat32: return "float32";
    case ValueType::kBool: return "bool";
    case ValueType::kString: return "string";
    case ValueType::kArray: return "array";
    case ValueType::kUint64: return "uint64";
    case ValueType::kInt64: return "int64";
    case ValueType::kFloat64: return "float64";
  }
  return fmt::format("type {}", static_cast<uint32_t>(type));
}

std::optional<TypeTraits> type_traits(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return TypeTraits{"F32", 1, 4, true};
    case GgmlType::F16: return TypeTraits{"F16", 1, 2, true};
    case GgmlType::Q4_0: return TypeTraits{"Q4_0", 32, 18, true};
    case GgmlType::Q4_1: return TypeTraits{"Q4_1", 32, 20, true};
    case GgmlType::Q5_0: return TypeTraits{"Q5_0", 32, 22, true};
    case GgmlType::Q5_1: return TypeTraits{"Q5_1", 32, 24, true};
    case GgmlType::Q8_0: return TypeTraits{"Q8_0", 32, 34, true};
    case GgmlType::Q8_1: return TypeTraits{"Q8_1", 32, 40, false};
    case GgmlType::Q2_K: return TypeTraits{"Q2_K", 256, 84, false};
    case GgmlType::Q3_K: return TypeTraits{"Q3_K", 256, 110, false};
    case GgmlType::Q4_K: return TypeTraits{"Q4_K", 256, 144, true};
    case GgmlType::Q5_K: return TypeTraits{"Q5_K", 256, 176, true};
    case GgmlType::Q6_K: return TypeTraits{"Q6_K", 256, 210, true};
    case GgmlType::Q8_K: return TypeTraits{"Q8_K", 256, 292, false};
    case GgmlType::IQ2_XXS: return TypeTraits{"IQ2_XXS", 256, 66, false};
    case GgmlType::IQ2_XS: return TypeTraits{"IQ2_XS", 256, 74, false};
    case GgmlType::IQ3_XXS: return TypeTraits{"IQ3_XXS", 256, 98, false};
    case GgmlType::IQ1_S: return TypeTraits{"IQ1_S", 256, 50, false};
    case GgmlType::IQ4_NL: return TypeTraits{"IQ4_NL", 32, 18, false};
    case GgmlType::IQ3_S: return TypeTraits{"IQ3_S", 256, 110, false};
    case GgmlType::IQ2_S: return TypeTraits{"IQ2_S", 256, 82, false};
    case GgmlType::IQ4_XS: return TypeTraits{"IQ4_XS", 256, 136, false};
    case GgmlType::I8: return TypeTraits{"I8", 1, 1, false};
    case GgmlType::I16: return TypeTraits{"I16", 1, 2, false};
    case GgmlType::I32: return TypeTraits{"I32", 1, 4, false};
    case GgmlType::I64: return TypeTraits{"I64", 1, 8, false};
    case GgmlType::F64: return TypeTraits{"F64", 1, 8, false};
    case GgmlType::IQ1_M: return TypeTraits{"IQ1_M", 256, 56, false};
    case GgmlType::BF16: return TypeTraits{"BF16", 1, 2, true};
    case GgmlType::TQ1_0: return TypeTraits{"TQ1_0", 256, 54, false};
    case GgmlType::TQ2_0: return TypeTraits{"TQ2_0", 256, 66, false};
    case GgmlType::MXFP4: return TypeTraits{"MXFP4", 32, 17, false};
  }
  return std::nullopt;
}

std::string type_name(GgmlType type) {
  const auto t = type_traits(type);
  return t ? std::string(t->name) : fmt::format("type {}", static_cast<uint32_t>(type));
}

std::string dequantizable_type_names() {
  return "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K";
}

bool Value::is_integer() const {
  switch (type) {
    case ValueType::kUint8:
    case ValueType::kInt8:
    case ValueType::kUint16:
    case ValueType::kInt16:
    case ValueType::kUint32:
    case ValueType::kInt32:
    case ValueType::kUint64:
    case ValueType::kInt64:
    case ValueType::kBool:
      return true;
    default:
      return false;
  }
}

std::vector<int64_t> TensorInfo::shape() const { return {ne.rbegin(), ne.rend()}; }

// ---- Parsing -------------------------------------------------------------------------------

namespace {

// Bounds-checked little-endian reads from the mapping; every failure names the file, the offset
// and what was being read.
class Cursor {
 public:
  Cursor(const fs::path& path, const uint8_t* data, uint64_t size)
      : path_(path), data_(data), size_(size) {}

  uint64_t pos() const { return pos_; }
  void seek(uint64_t pos) { pos_ = pos; }

  template <typename T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  std::string read_string(const std::string& what) {
    const uint64_t n = read<uint64_t>(what);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(n));
    pos_ += n;
    return s;
  }

  void need(uint64_t n, const std::string& what) const {
    if (n > size_ || pos_ > size_ - n)
      throw InputError(fmt::format(
          "{}: truncated GGUF file: {} needs {} bytes at offset {}, but the file has {} bytes. "
          "HINT: the download or copy was cut short; fetch the file again",
          path_.string(), what, n, pos_, size_));
  }

 private:
  const fs::path& path_;
  const uint8_t* data_;
  uint64_t size_;
  uint64_t pos_ = 0;
};

Value read_value(Cursor& c, ValueType type, const std::string& what, const fs::path& path,
                 int depth) {
  Value v;
  v.type = type;
  switch (type) {
    case ValueType::kUint8: v.integer = c.read<uint8_t>(what); break;
    case ValueType::kInt8: v.integer = c.read<int8_t>(what); break;
    case ValueType::kUint16: v.integer = c.read<uint16_t>(what); break;
    case ValueType::kInt16: v.integer = c.read<int16_t>(what); break;
    case ValueType::kUint32: v.integer = c.read<uint32_t>(what); break;
    case ValueType::kInt32: v.integer = c.read<int32_t>(what); break;
    case ValueType::kUint64:
      v.uinteger = c.read<uint64_t>(what);
      v.integer = static_cast<int64_t>(v.uinteger);
      break;
    case ValueType::kInt64: v.integer = c.read<int64_t>(what); break;
    case ValueType::kFloat32: v.number = c.read<float>(what); break;
    case ValueType::kFloat64: v.number = c.read<double>(what); break;
    case ValueType::kBool: {
      const uint8_t b = c.read<uint8_t>(what);
      if (b > 1)
        throw InputError(fmt::format("{}: {} is a bool of value {} (must be 0 or 1)",
                                     path.string(), what, b));
      v.integer = b;
      break;
    }
    case ValueType::kString: v.string = c.read_string(what); break;
    case ValueType::kArray: {
      if (depth > 8)
        throw InputError(fmt::format("{}: {} nests arrays more than 8 deep", path.string(), what));
      v.element_type = static_cast<ValueType>(c.read<uint32_t>(what));
      const uint64_t n = c.read<uint64_t>(what);
      // Each element takes at least one byte: a count beyond the file is a corrupt header.
      c.need(n, what);
      v.items.reserve(static_cast<size_t>(n));
      for (uint64_t i = 0; i < n; ++i)
        v.items.push_back(read_value(c, v.element_type, what, path, depth + 1));
      break;
    }
    default:
      throw InputError(fmt::format(
          "{}: {} has value type {}, which GGUF does not define (0..12). HINT: a file from a "
          "newer GGUF version, or a corrupt one",
          path.string(), what, static_cast<uint32_t>(type)));
  }
  return v;
}

}  // namespace

File::File(const fs::path& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw InputError(fmt::format("{}: cannot open: {}", path.string(), std::strerror(errno)));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InputError(fmt::format("{}: not a regular file; expected a .gguf file", path.string()));
  }
  size_ = static_cast<uint64_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      throw InputError(fmt::format("{}: cannot map: {}", path.string(), std::strerror(err)));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  try {
    Cursor c(path_, data_, size_);
    const uint32_t magic = c.read<uint32_t>("the magic");
    if (magic != kMagic)
      throw InputError(fmt::format(
          "{}: not a GGUF file (the first four bytes are not \"GGUF\"). HINT: "
          "model.from_pretrained takes a .gguf file, a Hugging Face model directory or a "
          "known model name",
          path.string()));
    version_ = c.read<uint32_t>("the version");
    if (version_ != 2 && version_ != 3)
      throw InputError(fmt::format(
          "{}: GGUF version {} is not supported (pft reads versions 2 and 3). HINT: convert "
          "it again with a current llama.cpp (convert_hf_to_gguf.py)",
          path.string(), version_));
    const uint64_t n_tensors = c.read<uint64_t>("the tensor count");
    const uint64_t n_kv = c.read<uint64_t>("the metadata count");
    c.need(n_kv, "the metadata");
    for (uint64_t i = 0; i < n_kv; ++i) {
      std::string key = c.read_string(fmt::format("metadata key #{}", i));
      const std::string what = fmt::format("metadata key `{}`", key);
      const auto type = static_cast<ValueType>(c.read<uint32_t>(what));
      Value v = read_value(c, type, what, path_, 0);
      if (!key_index_.emplace(key, metadata_.size()).second)
        throw InputError(fmt::format("{}: metadata key `{}` appears twice", path.string(), key));
      metadata_.emplace_back(std::move(key), std::move(v));
    }
    if (const Value* a = find("general.alignment")) {
      if (!a->is_integer() || a->integer <= 0 || (a->integer & (a->integer - 1)) != 0)
        throw InputError(fmt::format(
            "{}: general.alignment must be a positive power of two, got {}", path.string(),
            a->is_integer() ? fmt::format("{}", a->integer) : value_type_name(a->type)));
      alignment_ = static_cast<uint64_t>(a->integer);
    }
    c.need(n_tensors, "the tensor infos");
    for (uint64_t i = 0; i < n_tensors; ++i) {
      TensorInfo t;
      t.name = c.read_string(fmt::format("the name of tensor #{}", i));
      const std::string what = fmt::format("tensor `{}`", t.name);
      const uint32_t n_dims = c.read<uint32_t>(what);
      if (n_dims > 8)
        throw InputError(fmt::format("{}: {} has {} dimensions (GGUF allows at most 4)",
                                     path.string(), what, n_dims));
      t.numel = 1;
      for (uint32_t d = 0; d < n_dims; ++d) {
        const uint64_t ne = c.read<uint64_t>(what);
        if (ne > (uint64_t{1} << 40) ||
            (ne > 0 && static_cast<uint64_t>(t.numel) > (uint64_t{1} << 50) / ne))
          throw InputError(fmt::format("{}: {} has an impossible dimension {}", path.string(),
                                       what, ne));
        t.ne.push_back(static_cast<int64_t>(ne));
        t.numel *= static_cast<int64_t>(ne);
      }
      t.type = static_cast<GgmlType>(c.read<uint32_t>(what));
      t.offset = c.read<uint64_t>(what);
      if (t.offset % alignment_ != 0)
        throw InputError(fmt::format("{}: {} starts at data offset {}, not a multiple of the "
                                     "alignment {}",
                                     path.string(), what, t.offset, alignment_));
      if (const auto traits = type_traits(t.type)) {
        if (t.ne.empty() || t.ne[0] % traits->block_size != 0)
          throw InputError(fmt::format(
              "{}: {} of type {} has a first dimension {} that is not a multiple of the block "
              "size {}",
              path.string(), what, traits->name, t.ne.empty() ? 0 : t.ne[0],
              traits->block_size));
        t.nbytes = static_cast<uint64_t>(t.numel / traits->block_size * traits->type_size);
      }
      if (!tensor_index_.emplace(t.name, tensors_.size()).second)
        throw InputError(fmt::format("{}: tensor `{}` appears twice", path.string(), t.name));
      tensors_.push_back(std::move(t));
    }
    data_offset_ = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
    for (const TensorInfo& t : tensors_) {
      if (t.nbytes == 0 && t.numel > 0) continue;  // a type ggml does not define: bytes() fails
      // An empty tensor reads nothing, but its offset must still lie in the file (the gguf
      // fuzzer found one placed far past the end); at offset 0 it needs no data section.
      if (t.nbytes == 0 && t.offset == 0) continue;
      if (data_offset_ > size_ || t.offset > size_ - data_offset_ ||
          t.nbytes > size_ - data_offset_ - t.offset)
        throw InputError(fmt::format(
            "{}: truncated GGUF file: tensor `{}` ({}, {} bytes at data offset {}) ends past the "
            "end of the file ({} bytes, data from {}). HINT: the download or copy was cut short",
            path.string(), t.name, type_name(t.type), t.nbytes, t.offset, size_, data_offset_));
    }
  } catch (...) {
    if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
    data_ = nullptr;
    throw;
  }
}

File::~File() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

void File::fail(const std::string& what) const {
  throw InputError(fmt::format("{}: {}", path_.string(), what));
}

const Value* File::find(std::string_view key) const {
  const auto it = key_index_.find(std::string(key));
  return it == key_index_.end() ? nullptr : &metadata_[it->second].second;
}

namespace {

[[noreturn]] void wrong_type(const File& f, std::string_view key, const Value& v,
                             const char* expected) {
  f.fail(fmt::format("metadata key `{}` is a {}, expected {}", key, value_type_name(v.type),
                     expected));
}

[[noreturn]] void missing(const File& f, std::string_view key) {
  f.fail(fmt::format("missing metadata key `{}`. HINT: the file was not written by a "
                     "converter pft knows (llama.cpp's convert_hf_to_gguf.py, gguf-py)",
                     key));
}

}  // namespace

std::optional<std::string> File::get_string_opt(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type != ValueType::kString) wrong_type(*this, key, *v, "a string");
  return v->string;
}

std::string File::get_string(std::string_view key) const {
  auto v = get_string_opt(key);
  if (!v) missing(*this, key);
  return *v;
}

std::optional<int64_t> File::get_int_opt(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_integer() || v->type == ValueType::kBool) wrong_type(*this, key, *v, "an integer");
  if (v->type == ValueType::kUint64 && v->integer < 0)
    fail(fmt::format("metadata key `{}` = {} is out of range", key, v->uinteger));
  return v->integer;
}

int64_t File::get_int(std::string_view key) const {
  auto v = get_int_opt(key);
  if (!v) missing(*this, key);
  return *v;
}

std::optional<double> File::get_float_opt(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_float()) return v->number;
  if (v->is_integer() && v->type != ValueType::kBool) return static_cast<double>(v->integer);
  wrong_type(*this, key, *v, "a number");
}

double File::get_float(std::string_view key) const {
  auto v = get_float_opt(key);
  if (!v) missing(*this, key);
  return *v;
}

std::optional<bool> File::get_bool_opt(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (v->type != ValueType::kBool) wrong_type(*this, key, *v, "a bool");
  return v->integer != 0;
}

std::vector<std::string> File::get_strings(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) missing(*this, key);
  if (v->type != ValueType::kArray || v->element_type != ValueType::kString)
    wrong_type(*this, key, *v, "an array of strings");
  std::vector<std::string> out;
  out.reserve(v->items.size());
  for (const Value& x : v->items) out.push_back(x.string);
  return out;
}

std::vector<int64_t> File::get_ints(std::string_view key) const {
  const Value* v = find(key);
  if (v == nullptr) missing(*this, key);
  const bool integers = v->type == ValueType::kArray && v->element_type != ValueType::kBool &&
                        (v->items.empty() || v->items[0].is_integer());
  if (!integers)
    wrong_type(*this, key, *v, "an array of integers");
  std::vector<int64_t> out;
  out.reserve(v->items.size());
  for (const Value& x : v->items) out.push_back(x.integer);
  return out;
}

const TensorInfo* File::find_tensor(std::string_view name) const {
  const auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const uint8_t> File::bytes(const TensorInfo& t) const {
  if (t.nbytes == 0 && t.numel > 0)
    fail(fmt::format("tensor `{}` has type {}, which ggml does not define; pft reads {}", t.name,
                     type_name(t.type), dequantizable_type_names()));
  return {data_ + data_offset_ + t.offset, static_cast<size_t>(t.nbytes)};
}

void File::dequantize(const TensorInfo& t, float* out) const {
  const auto traits = type_traits(t.type);
  if (!traits || !traits->dequantizable)
    fail(fmt::format(
        "tensor `{}` is stored as {}, which pft cannot dequantize (it reads {}). HINT: "
        "requantize the model to one of those with llama.cpp's llama-quantize, or use its "
        "Hugging Face safetensors",
        t.name, type_name(t.type), dequantizable_type_names()));
  dequantize_row(t.type, bytes(t).data(), t.numel, out);
}

bool is_gguf_file(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0;
}

// ---- Dequantization ------------------------------------------------------------------------

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F;
  uint32_t mant = h & 0x3FF;
  uint32_t bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (mant << 13);  // inf / nan
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;  // +-0
  } else {
    // Subnormal half: normalize into a float.
    exp = 113;
    while ((mant & 0x400) == 0) {
      mant <<= 1;
      --exp;
    }
    bits = sign | (exp << 23) | ((mant & 0x3FF) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

namespace {

// Note [block layouts]
// Quantized types store blocks of `block_size` consecutive elements (along ne[0]); the scale d
// (and min m) are IEEE halves. Legacy 32-element blocks:
//   Q4_0  d | qs[16]                 x[j] = d * ((qs[j] & 15) - 8), x[j+16] = d * ((qs[j] >> 4) - 8)
//   Q4_1  d | m | qs[16]             x[j] = d * (qs[j] & 15) + m,   x[j+16] = d * (qs[j] >> 4) + m
//   Q5_0  d | qh(u32) | qs[16]       the fifth bit of x[j] is bit j of qh, of x[j+16] bit j+16;
//                                    x = d * (q5 - 16)
//   Q5_1  d | m | qh(u32) | qs[16]   x = d * q5 + m
//   Q8_0  d | qs[32] (int8)          x = d * qs
// K-quants, 256-element super-blocks:
//   Q4_K  d | dmin | scales[12] | qs[128]: 8 sub-blocks of 32, each with a 6-bit scale and min
//         packed in scales[12] (below); for sub-block pair (2i, 2i+1) the 32 bytes qs[32i..]
//         give sub-block 2i in their low nibbles and 2i+1 in their high ones;
//         x = (d * sc) * q - (dmin * m)
//   Q5_K  d | dmin | scales[12] | qh[32] | qs[128]: as Q4_K plus a fifth bit: element l of
//         sub-block s has bit s of qh[l]
//   Q6_K  ql[128] | qh[64] | scales[16] (int8) | d: 16 sub-blocks of 16; per half (128
//         elements) ql[64] and qh[32]: element l + 32k (k = 0..3) is the nibble of ql[l + 32 (k&1)]
//         (low for k < 2) with bits 2k..2k+1 of qh[l] above it, minus 32; x = (d * sc) * q
// The float operations and their order are gguf-py's (gguf/quants.py), so values match it
// exactly.

inline uint16_t u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline float f16(const uint8_t* p) { return half_to_float(u16(p)); }

void q4_0(const uint8_t* b, float* y) {
  const float d = f16(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>((qs[j] & 0x0F) - 8);
    y[j + 16] = d * static_cast<float>((qs[j] >> 4) - 8);
  }
}

void q4_1(const uint8_t* b, float* y) {
  const float d = f16(b), m = f16(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(qs[j] & 0x0F) + m;
    y[j + 16] = d * static_cast<float>(qs[j] >> 4) + m;
  }
}

void q5_0(const uint8_t* b, float* y) {
  const float d = f16(b);
  uint32_t qh;
  std::memcpy(&qh, b + 2, 4);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    const int lo = (qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1) << 4);
    const int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
    y[j] = d * static_cast<float>(lo - 16);
    y[j + 16] = d * static_cast<float>(hi - 16);
  }
}

void q5_1(const uint8_t* b, float* y) {
  const float d = f16(b), m = f16(b + 2);
  uint32_t qh;
  std::memcpy(&qh, b + 4, 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 16; ++j) {
    const int lo = (qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1) << 4);
    const int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
    y[j] = d * static_cast<float>(lo) + m;
    y[j + 16] = d * static_cast<float>(hi) + m;
  }
}

void q8_0(const uint8_t* b, float* y) {
  const float d = f16(b);
  const auto* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < 32; ++j) y[j] = d * static_cast<float>(qs[j]);
}

// Scale and min of sub-block j (0..7) from the 12 packed bytes: bytes 0-3 hold the low 6 bits of
// scales 0-3 (their top 2 bits: the high bits of scales 4-7), bytes 4-7 the same for the mins,
// bytes 8-11 the low nibbles of scales 4-7 (low) and mins 4-7 (high).
inline void scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

void q4_k(const uint8_t* b, float* y) {
  const float d = f16(b), dmin = f16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qs = b + 16;
  for (int pair = 0; pair < 4; ++pair) {
    uint8_t sc, m;
    scale_min_k4(2 * pair, scales, &sc, &m);
    const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
    scale_min_k4(2 * pair + 1, scales, &sc, &m);
    const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) {
      y[l] = d1 * static_cast<float>(qs[l] & 0x0F) - m1;
      y[l + 32] = d2 * static_cast<float>(qs[l] >> 4) - m2;
    }
    qs += 32;
    y += 64;
  }
}

void q5_k(const uint8_t* b, float* y) {
  const float d = f16(b), dmin = f16(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + 48;
  for (int pair = 0; pair < 4; ++pair) {
    uint8_t sc, m;
    scale_min_k4(2 * pair, scales, &sc, &m);
    const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
    scale_min_k4(2 * pair + 1, scales, &sc, &m);
    const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) {
      const int lo = (qs[l] & 0x0F) | (((qh[l] >> (2 * pair)) & 1) << 4);
      const int hi = (qs[l] >> 4) | (((qh[l] >> (2 * pair + 1)) & 1) << 4);
      y[l] = d1 * static_cast<float>(lo) - m1;
      y[l + 32] = d2 * static_cast<float>(hi) - m2;
    }
    qs += 32;
    y += 64;
  }
}

void q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const auto* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = f16(b + 208);
  for (int half = 0; half < 2; ++half) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = (d * static_cast<float>(sc[is])) * static_cast<float>(q1);
      y[l + 32] = (d * static_cast<float>(sc[is + 2])) * static_cast<float>(q2);
      y[l + 64] = (d * static_cast<float>(sc[is + 4])) * static_cast<float>(q3);
      y[l + 96] = (d * static_cast<float>(sc[is + 6])) * static_cast<float>(q4);
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

template <int64_t kBlock, int64_t kBytes, void (*kFn)(const uint8_t*, float*)>
void blocks(const uint8_t* src, int64_t n, float* dst) {
  for (int64_t i = 0; i < n / kBlock; ++i) kFn(src + i * kBytes, dst + i * kBlock);
}

}  // namespace

void dequantize_row(GgmlType type, const uint8_t* src, int64_t n, float* dst) {
  if (n <= 0) return;  // an empty tensor: `dst` may be null (found by the gguf fuzzer, UBSan)
  switch (type) {
    case GgmlType::F32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); return;
    case GgmlType::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = f16(src + 2 * i);
      return;
    case GgmlType::BF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(u16(src + 2 * i));
      return;
    case GgmlType::Q4_0: blocks<32, 18, q4_0>(src, n, dst); return;
    case GgmlType::Q4_1: blocks<32, 20, q4_1>(src, n, dst); return;
    case GgmlType::Q5_0: blocks<32, 22, q5_0>(src, n, dst); return;
    case GgmlType::Q5_1: blocks<32, 24, q5_1>(src, n, dst); return;
    case GgmlType::Q8_0: blocks<32, 34, q8_0>(src, n, dst); return;
    case GgmlType::Q4_K: blocks<256, 144, q4_k>(src, n, dst); return;
    case GgmlType::Q5_K: blocks<256, 176, q5_k>(src, n, dst); return;
    case GgmlType::Q6_K: blocks<256, 210, q6_k>(src, n, dst); return;
    default:
      throw InputError(fmt::format("GGUF type {} cannot be dequantized by pft (it reads {})",
                                   type_name(type), dequantizable_type_names()));
  }
}

}  // namespace pft::gguf
