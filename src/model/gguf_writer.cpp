// GGUF v3 writer (contract: model/gguf_writer.h).
#include "model/gguf_writer.h"

#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "core/format.h"

namespace pft {

namespace fs = std::filesystem;

const char* ggml_type_name(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return "F32";
    case GgmlType::F16: return "F16";
    case GgmlType::Q8_0: return "Q8_0";
    default: return "?";
  }
}

uint64_t ggml_type_bytes(GgmlType type, int64_t numel, int64_t ne0, const std::string& tensor) {
  switch (type) {
    case GgmlType::F32: return static_cast<uint64_t>(numel) * 4;
    case GgmlType::F16: return static_cast<uint64_t>(numel) * 2;
    case GgmlType::Q8_0:
      if (ne0 % kQ8_0BlockSize != 0)
        throw InputError(fmt::format("gguf: tensor {}: Q8_0 needs rows of a multiple of {} values, "
                                     "not {}",
                                     tensor, kQ8_0BlockSize, ne0));
      return static_cast<uint64_t>(numel / kQ8_0BlockSize * kQ8_0BlockBytes);
    default:
      return 0;
  }
}

void GgufWriter::add(const std::string& key, GgufValue::Data v) {
  for (const auto& [k, _] : metadata_)
    if (k == key) throw InputError(fmt::format("gguf: duplicate metadata key {}", key));
  metadata_.emplace_back(key, GgufValue{std::move(v)});
}

void GgufWriter::add_u32(const std::string& key, uint32_t v) { add(key, v); }
void GgufWriter::add_i32(const std::string& key, int32_t v) { add(key, v); }
void GgufWriter::add_f32(const std::string& key, float v) { add(key, v); }
void GgufWriter::add_bool(const std::string& key, bool v) { add(key, v); }
void GgufWriter::add_string(const std::string& key, std::string v) { add(key, std::move(v)); }
void GgufWriter::add_strings(const std::string& key, std::vector<std::string> v) {
  add(key, std::move(v));
}
void GgufWriter::add_i32s(const std::string& key, std::vector<int32_t> v) { add(key, std::move(v)); }

void GgufWriter::add_tensor(const std::string& name, const std::vector<int64_t>& shape,
                            GgmlType type, std::vector<std::byte> bytes) {
  for (const Tensor& t : tensors_)
    if (t.name == name) throw InputError(fmt::format("gguf: duplicate tensor {}", name));
  if (shape.empty()) throw InputError(fmt::format("gguf: tensor {} has no dimensions", name));
  int64_t numel = 1;
  for (int64_t s : shape) numel *= s;
  const uint64_t want = ggml_type_bytes(type, numel, shape.back(), name);
  if (bytes.size() != want)
    throw InputError(fmt::format("gguf: tensor {} ({}) has {} bytes, its shape needs {}", name,
                                 ggml_type_name(type), bytes.size(), want));
  tensors_.push_back(Tensor{name, shape, type, std::move(bytes)});
}

namespace {

// Little-endian serialization into a byte buffer (x86 and ARM hosts are little-endian; the
// static_assert below keeps it honest).
static_assert(std::endian::native == std::endian::little, "gguf writer assumes a little-endian host");

struct Buffer {
  std::string bytes;
  template <class T>
  void put(T v) {
    char raw[sizeof(T)];
    std::memcpy(raw, &v, sizeof(T));
    bytes.append(raw, sizeof(T));
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    bytes.append(s);
  }
  void pad_to(uint64_t alignment) { bytes.append((alignment - bytes.size() % alignment) % alignment, '\0'); }
};

void put_value(Buffer& b, const GgufValue::Data& v) {
  struct Visitor {
    Buffer& b;
    void operator()(uint32_t x) { b.put(GgufValueType::kUint32); b.put(x); }
    void operator()(int32_t x) { b.put(GgufValueType::kInt32); b.put(x); }
    void operator()(float x) { b.put(GgufValueType::kFloat32); b.put(x); }
    void operator()(bool x) { b.put(GgufValueType::kBool); b.put<uint8_t>(x ? 1 : 0); }
    void operator()(const std::string& x) { b.put(GgufValueType::kString); b.put_string(x); }
    void operator()(const std::vector<std::string>& xs) {
      b.put(GgufValueType::kArray);
      b.put(GgufValueType::kString);
      b.put<uint64_t>(xs.size());
      for (const auto& x : xs) b.put_string(x);
    }
    void operator()(const std::vector<int32_t>& xs) {
      b.put(GgufValueType::kArray);
      b.put(GgufValueType::kInt32);
      b.put<uint64_t>(xs.size());
      for (int32_t x : xs) b.put(x);
    }
  };
  std::visit(Visitor{b}, v);
}

}  // namespace

void GgufWriter::write(const fs::path& path) const {
  Buffer head;
  head.put<uint32_t>(0x46554747u);  // "GGUF"
  head.put<uint32_t>(kGgufVersion);
  head.put<uint64_t>(tensors_.size());
  head.put<uint64_t>(metadata_.size());
  for (const auto& [key, value] : metadata_) {
    head.put_string(key);
    put_value(head, value.data);
  }
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    head.put_string(t.name);
    head.put<uint32_t>(static_cast<uint32_t>(t.shape.size()));
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) head.put<uint64_t>(*it);
    head.put<uint32_t>(static_cast<uint32_t>(t.type));
    head.put<uint64_t>(offset);
    offset += (t.bytes.size() + kGgufAlignment - 1) / kGgufAlignment * kGgufAlignment;
  }
  head.pad_to(kGgufAlignment);

  const fs::path tmp = path.string() + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr)
    throw RuntimeFailure(
        fmt::format("gguf: cannot create '{}': {}", tmp.string(), std::strerror(errno)));
  bool ok = std::fwrite(head.bytes.data(), 1, head.bytes.size(), f) == head.bytes.size();
  static const char kZeros[kGgufAlignment] = {};
  for (const Tensor& t : tensors_) {
    ok = ok && std::fwrite(t.bytes.data(), 1, t.bytes.size(), f) == t.bytes.size();
    const size_t pad = (kGgufAlignment - t.bytes.size() % kGgufAlignment) % kGgufAlignment;
    ok = ok && std::fwrite(kZeros, 1, pad, f) == pad;
  }
  ok = std::fclose(f) == 0 && ok;
  if (!ok) {
    const int err = errno;
    std::remove(tmp.c_str());
    throw RuntimeFailure(
        fmt::format("gguf: writing '{}' failed: {}", path.string(), std::strerror(err)));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec)
    throw RuntimeFailure(fmt::format("gguf: cannot rename '{}' to '{}': {}", tmp.string(),
                                     path.string(), ec.message()));
}

}  // namespace pft
