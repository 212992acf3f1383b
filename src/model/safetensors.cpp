// safetensors reading (mmap, checked header, zero-copy views, sharded index) and writing.
#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <boost/json.hpp>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <string_view>

#include "core/error.h"
#include "core/format.h"

namespace pft {

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; pft reads it in place");

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

// The safetensors reference implementation refuses headers above 100 MB; so do we (a larger
// length almost always means the file is not safetensors at all).
constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;

struct DtypeInfo {
  const char* name;
  at::ScalarType type;
  size_t bytes;
};

constexpr DtypeInfo kDtypes[] = {
    {"BOOL", at::kBool, 1},
    {"U8", at::kByte, 1},
    {"I8", at::kChar, 1},
    {"I16", at::kShort, 2},
    {"U16", at::kUInt16, 2},
    {"I32", at::kInt, 4},
    {"U32", at::kUInt32, 4},
    {"I64", at::kLong, 8},
    {"U64", at::kUInt64, 8},
    {"F16", at::kHalf, 2},
    {"BF16", at::kBFloat16, 2},
    {"F32", at::kFloat, 4},
    {"F64", at::kDouble, 8},
    {"F8_E4M3", at::kFloat8_e4m3fn, 1},
    {"F8_E5M2", at::kFloat8_e5m2, 1},
};

const DtypeInfo* dtype_by_name(std::string_view name) {
  for (const auto& d : kDtypes)
    if (name == d.name) return &d;
  return nullptr;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += fmt::format("{}{}", i ? ", " : "", shape[i]);
  return s + "]";
}

[[noreturn]] void bad_file(const fs::path& path, const std::string& what) {
  throw InputError(fmt::format("{}: not a valid safetensors file: {}", path.string(), what));
}

}  // namespace

namespace detail {

// A read-only (copy-on-write) mapping of a whole file.
struct FileMapping {
  FileMapping(const fs::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      throw InputError(fmt::format("{}: cannot open: {}", path.string(), std::strerror(errno)));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
      const int err = errno;
      ::close(fd);
      throw InputError(fmt::format("{}: cannot stat: {}", path.string(), std::strerror(err)));
    }
    size = static_cast<uint64_t>(st.st_size);
    if (size > 0) {
      // MAP_PRIVATE + PROT_WRITE: views are writable tensors, a write copies the page instead of
      // reaching the file (or faulting).
      void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        const int err = errno;
        ::close(fd);
        throw InputError(fmt::format("{}: cannot map: {}", path.string(), std::strerror(err)));
      }
      data = static_cast<uint8_t*>(p);
    }
    ::close(fd);
  }
  ~FileMapping() {
    if (data != nullptr) ::munmap(data, size);
  }
  FileMapping(const FileMapping&) = delete;
  FileMapping& operator=(const FileMapping&) = delete;

  uint8_t* data = nullptr;
  uint64_t size = 0;
};

}  // namespace detail

// ---- SafetensorsFile -----------------------------------------------------------------------

SafetensorsFile::SafetensorsFile(const fs::path& path) : path_(path) {
  if (fs::is_directory(path))
    throw InputError(
        fmt::format("{}: is a directory, expected a .safetensors file", path.string()));
  mapping_ = std::make_shared<detail::FileMapping>(path);
  const uint64_t size = mapping_->size;
  const uint8_t* base = mapping_->data;
  const std::string_view head(reinterpret_cast<const char*>(base),
                              static_cast<size_t>(std::min<uint64_t>(size, 64)));
  if (head.starts_with("version https://git-lfs"))
    bad_file(path,
             "it is a Git LFS pointer, not the weights; HINT: run `git lfs pull` in the "
             "model directory");
  if (size < 8)
    bad_file(path, fmt::format("truncated header: the file has {} bytes, fewer than the 8-byte "
                               "header length at offset 0",
                               size));
  uint64_t header_len = 0;
  std::memcpy(&header_len, base, 8);
  if (header_len > kMaxHeaderBytes)
    bad_file(path, fmt::format("header length {} (the u64 at offset 0) is above the {} byte limit; "
                               "the file is corrupt or not safetensors",
                               header_len, kMaxHeaderBytes));
  if (header_len > size - 8)
    bad_file(path, fmt::format("truncated header: the u64 at offset 0 says {} header bytes from "
                               "offset 8, but the file ends at offset {}",
                               header_len, size));
  data_offset_ = 8 + header_len;
  const uint64_t data_size = size - data_offset_;

  // The header JSON; an error names the byte offset in the file where parsing stopped.
  json::parser parser;
  boost::system::error_code ec;
  const char* text = reinterpret_cast<const char*>(base + 8);
  const size_t consumed = parser.write(text, static_cast<size_t>(header_len), ec);
  if (ec)
    bad_file(path, fmt::format("header JSON error at offset {}: {}", 8 + consumed, ec.message()));
  const json::value header = parser.release();
  if (!header.is_object()) bad_file(path, "header at offset 8 is not a JSON object");

  for (const auto& kv : header.as_object()) {
    const std::string name(kv.key());
    if (name == "__metadata__") {
      if (!kv.value().is_object()) bad_file(path, "__metadata__ is not an object");
      for (const auto& m : kv.value().as_object()) {
        if (!m.value().is_string())
          bad_file(path, fmt::format("__metadata__ `{}` is not a string", std::string(m.key())));
        metadata_[std::string(m.key())] = std::string(m.value().as_string());
      }
      continue;
    }
    const auto bad_entry = [&](const std::string& what) {
      bad_file(path, fmt::format("tensor `{}`: {}", name, what));
    };
    if (!kv.value().is_object()) bad_entry("header entry is not an object");
    const json::object& e = kv.value().as_object();
    SafetensorsEntry entry;
    entry.name = name;
    const json::value* dtype = e.if_contains("dtype");
    if (dtype == nullptr || !dtype->is_string()) bad_entry("no string \"dtype\"");
    entry.dtype = std::string(dtype->as_string());
    const DtypeInfo* info = dtype_by_name(entry.dtype);
    if (info == nullptr) bad_entry(fmt::format("unknown dtype `{}`", entry.dtype));
    entry.scalar_type = info->type;

    const json::value* shape = e.if_contains("shape");
    if (shape == nullptr || !shape->is_array()) bad_entry("no \"shape\" list");
    uint64_t numel = 1;
    for (const json::value& d : shape->as_array()) {
      if (!d.is_int64() && !d.is_uint64()) bad_entry("shape holds a non-integer");
      if (d.is_int64() && d.as_int64() < 0) bad_entry("shape holds a negative size");
      const uint64_t n = d.to_number<uint64_t>();
      if (n > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, n, &numel))
        bad_entry("shape is too large");
      entry.shape.push_back(static_cast<int64_t>(n));
    }
    const json::value* offsets = e.if_contains("data_offsets");
    if (offsets == nullptr || !offsets->is_array() || offsets->as_array().size() != 2)
      bad_entry("no \"data_offsets\" [begin, end]");
    for (const json::value& o : offsets->as_array())
      if (!o.is_uint64() && !(o.is_int64() && o.as_int64() >= 0))
        bad_entry("data_offsets hold a non-integer or a negative value");
    entry.begin = offsets->as_array()[0].to_number<uint64_t>();
    entry.end = offsets->as_array()[1].to_number<uint64_t>();
    uint64_t expected = 0;
    if (__builtin_mul_overflow(numel, info->bytes, &expected)) bad_entry("shape is too large");
    if (entry.end < entry.begin)
      bad_entry(fmt::format("data_offsets [{}, {}] end before they begin", entry.begin, entry.end));
    if (entry.end - entry.begin != expected)
      bad_entry(fmt::format("data_offsets [{}, {}] hold {} bytes, but {} {} needs {}", entry.begin,
                            entry.end, entry.end - entry.begin, entry.dtype, shape_str(entry.shape),
                            expected));
    if (entry.end > data_size)
      bad_entry(fmt::format("data ends at file offset {} but the file has {} bytes (truncated?)",
                            data_offset_ + entry.end, size));
    entries_.push_back(std::move(entry));
  }
  std::sort(entries_.begin(), entries_.end(),
            [](const auto& a, const auto& b) { return a.begin < b.begin; });
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (i > 0 && entries_[i].begin < entries_[i - 1].end)
      bad_file(path, fmt::format("tensors `{}` and `{}` overlap", entries_[i - 1].name,
                                 entries_[i].name));
    index_[entries_[i].name] = i;
  }
}

SafetensorsFile::~SafetensorsFile() = default;
SafetensorsFile::SafetensorsFile(SafetensorsFile&&) noexcept = default;
SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&&) noexcept = default;

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

at::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const SafetensorsEntry* e = find(name);
  if (e == nullptr) throw InputError(fmt::format("{}: no tensor `{}`", path_.string(), name));
  const auto options = at::TensorOptions().dtype(e->scalar_type).device(at::kCPU);
  if (e->end == e->begin) return at::empty(e->shape, options);
  uint8_t* ptr = mapping_->data + data_offset_ + e->begin;
  const size_t elem = at::elementSize(e->scalar_type);
  if (reinterpret_cast<uintptr_t>(ptr) % elem != 0) {
    // Misaligned for its dtype (a writer that did not pad): copy rather than hand kernels an
    // unaligned pointer.
    at::Tensor out = at::empty(e->shape, options);
    std::memcpy(out.data_ptr(), ptr, e->end - e->begin);
    return out;
  }
  std::shared_ptr<detail::FileMapping> keep = mapping_;
  return at::from_blob(
      ptr, e->shape, [keep](void*) mutable { keep.reset(); }, options);
}

// ---- SafetensorsCheckpoint -----------------------------------------------------------------

namespace {

constexpr const char* kIndexFile = "model.safetensors.index.json";
constexpr const char* kSingleFile = "model.safetensors";

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(fmt::format("{}: cannot read", path.string()));
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// What a directory without safetensors holds instead, for the message.
std::string what_else(const fs::path& dir) {
  for (const char* f : {"pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt",
                        "tf_model.h5", "flax_model.msgpack"})
    if (fs::exists(dir / f))
      return fmt::format(
          "; it has {}, which pft does not read (pickled weights). HINT: convert "
          "it with transformers: AutoModelForCausalLM.from_pretrained(dir)"
          ".save_pretrained(dir, safe_serialization=True)",
          f);
  return "";
}

}  // namespace

SafetensorsCheckpoint::SafetensorsCheckpoint(const fs::path& path) {
  if (!fs::exists(path))
    throw InputError(fmt::format("{}: no such file or directory", path.string()));
  if (!fs::is_directory(path)) {
    files_.emplace_back(path);
    for (const auto& e : files_[0].entries()) where_[e.name] = 0;
    return;
  }
  const fs::path index = path / kIndexFile;
  if (fs::exists(index)) {
    const std::string text = read_text(index);
    json::parser parser;
    boost::system::error_code ec;
    const size_t consumed = parser.write(text.data(), text.size(), ec);
    if (ec)
      throw InputError(
          fmt::format("{}: JSON error at offset {}: {}", index.string(), consumed, ec.message()));
    const json::value root = parser.release();
    const json::value* map =
        root.is_object() ? root.as_object().if_contains("weight_map") : nullptr;
    if (map == nullptr || !map->is_object())
      throw InputError(fmt::format("{}: no \"weight_map\" object", index.string()));
    std::map<std::string, size_t> file_index;
    for (const auto& kv : map->as_object()) {
      const std::string name(kv.key());
      if (!kv.value().is_string())
        throw InputError(
            fmt::format("{}: weight_map entry `{}` is not a file name", index.string(), name));
      const std::string file(kv.value().as_string());
      if (file.empty() || file.find('/') != std::string::npos || file == "..")
        throw InputError(
            fmt::format("{}: weight_map entry `{}` names `{}`, not a file beside "
                        "the index",
                        index.string(), name, file));
      auto it = file_index.find(file);
      if (it == file_index.end()) {
        const fs::path shard = path / file;
        if (!fs::exists(shard))
          throw InputError(fmt::format("{}: tensor `{}` is in shard {}, which does not exist",
                                       index.string(), name, shard.string()));
        files_.emplace_back(shard);
        it = file_index.emplace(file, files_.size() - 1).first;
      }
      if (files_[it->second].find(name) == nullptr)
        throw InputError(
            fmt::format("{}: tensor `{}` is listed in shard {}, which has no such "
                        "tensor",
                        index.string(), name, files_[it->second].path().string()));
      where_[name] = it->second;
    }
    if (files_.empty()) throw InputError(fmt::format("{}: empty weight_map", index.string()));
    return;
  }
  const fs::path single = path / kSingleFile;
  if (!fs::exists(single))
    throw InputError(
        fmt::format("{}: no {} or {}{}", path.string(), kSingleFile, kIndexFile, what_else(path)));
  files_.emplace_back(single);
  for (const auto& e : files_[0].entries()) where_[e.name] = 0;
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  out.reserve(where_.size());
  for (const auto& kv : where_) out.push_back(kv.first);
  return out;
}

const SafetensorsEntry* SafetensorsCheckpoint::find(const std::string& name) const {
  const auto it = where_.find(name);
  return it == where_.end() ? nullptr : files_[it->second].find(name);
}

const fs::path& SafetensorsCheckpoint::file_of(const std::string& name) const {
  const auto it = where_.find(name);
  if (it == where_.end()) throw InputError(fmt::format("no tensor `{}` in the checkpoint", name));
  return files_[it->second].path();
}

at::Tensor SafetensorsCheckpoint::tensor(const std::string& name) const {
  const auto it = where_.find(name);
  if (it == where_.end())
    throw InputError(fmt::format(
        "{}: no tensor `{}`",
        files_.size() == 1 ? files_[0].path().string() : files_[0].path().parent_path().string(),
        name));
  return files_[it->second].tensor(name);
}

uint64_t SafetensorsCheckpoint::total_bytes() const {
  uint64_t total = 0;
  for (const auto& kv : where_) {
    const SafetensorsEntry* e = files_[kv.second].find(kv.first);
    total += e->end - e->begin;
  }
  return total;
}

// ---- Writing -------------------------------------------------------------------------------

std::string safetensors_dtype_name(at::ScalarType type) {
  for (const auto& d : kDtypes)
    if (d.type == type) return d.name;
  throw InputError(fmt::format("safetensors cannot store dtype {}", c10::toString(type)));
}

void write_safetensors(const fs::path& path,
                       const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json::object header;
  if (!metadata.empty()) {
    json::object meta;
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (name.empty() || name == "__metadata__" || !seen.insert(name).second)
      throw InputError(fmt::format("{}: bad or duplicate tensor name `{}`", path.string(), name));
    json::object e;
    e["dtype"] = safetensors_dtype_name(t.scalar_type());
    json::array shape;
    for (int64_t d : t.sizes()) shape.emplace_back(d);
    e["shape"] = std::move(shape);
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * t.element_size();
    e["data_offsets"] = json::array{offset, offset + bytes};
    offset += bytes;
    header[name] = std::move(e);
  }
  std::string text = json::serialize(header);
  text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-byte aligned (8 + N)
  const uint64_t header_len = text.size();

  const fs::path tmp = path.string() + fmt::format(".tmp{}", ::getpid());
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr)
    throw RuntimeFailure(fmt::format("{}: cannot create: {}", tmp.string(), std::strerror(errno)));
  bool ok = std::fwrite(&header_len, 8, 1, f) == 1 &&
            std::fwrite(text.data(), 1, text.size(), f) == text.size();
  for (size_t i = 0; ok && i < tensors.size(); ++i) {
    const at::Tensor t = tensors[i].second.detach().to(at::kCPU).contiguous();
    const size_t bytes = static_cast<size_t>(t.numel()) * t.element_size();
    ok = bytes == 0 || std::fwrite(t.data_ptr(), 1, bytes, f) == bytes;
  }
  ok = ok && std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0;
  const int err = errno;
  ok = std::fclose(f) == 0 && ok;
  if (!ok) {
    fs::remove(tmp);
    throw RuntimeFailure(fmt::format("{}: write failed: {}", tmp.string(), std::strerror(err)));
  }
  std::error_code rename_error;
  fs::rename(tmp, path, rename_error);
  if (rename_error) {
    fs::remove(tmp);
    throw RuntimeFailure(
        fmt::format("{}: cannot rename into place: {}", path.string(), rename_error.message()));
  }
}

}  // namespace pft
