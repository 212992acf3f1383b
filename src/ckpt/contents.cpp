// In-memory checkpoint contents (contract: ckpt/contents.h).
#include "ckpt/contents.h"

#include <cstring>

#include "core/error.h"
#include "core/format.h"

namespace pft::ckpt {

namespace {

struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::kFloat32, "float32", 4}, {DType::kFloat64, "float64", 8},
    {DType::kFloat16, "float16", 2}, {DType::kBFloat16, "bfloat16", 2},
    {DType::kInt8, "int8", 1},       {DType::kInt16, "int16", 2},
    {DType::kInt32, "int32", 4},     {DType::kInt64, "int64", 8},
    {DType::kUInt8, "uint8", 1},     {DType::kBool, "bool", 1},
    {DType::kString, "string", 1},
};

}  // namespace

const char* dtype_name(DType d) {
  for (const DTypeInfo& i : kDTypes)
    if (i.dtype == d) return i.name;
  return "?";
}

std::optional<DType> parse_dtype(const std::string& name) {
  for (const DTypeInfo& i : kDTypes)
    if (name == i.name) return i.dtype;
  return std::nullopt;
}

size_t dtype_size(DType d) {
  for (const DTypeInfo& i : kDTypes)
    if (i.dtype == d) return i.size;
  return 1;
}

std::string attr_to_string(const AttrValue& v) {
  if (const auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&v)) return fmt::format("{}", *d);
  return std::get<std::string>(v);
}

int64_t Dataset::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string Dataset::text() const {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

const Attrs& Contents::group_attrs(const std::string& path) const {
  const auto it = groups_.find(path);
  if (it == groups_.end())
    throw InputError(fmt::format("checkpoint {}: group {} is missing", source, path));
  return it->second;
}

Dataset& Contents::add(std::string path, DType dtype, std::vector<int64_t> shape,
                       std::span<const std::byte> bytes, std::shared_ptr<const void> keep) {
  PFT_ASSERT(!path.empty() && path[0] == '/', "checkpoint dataset paths are absolute: " + path);
  PFT_ASSERT(index_.count(path) == 0, "duplicate checkpoint dataset " + path);
  Dataset d;
  d.path = std::move(path);
  d.dtype = dtype;
  d.shape = std::move(shape);
  d.bytes = bytes;
  d.keep = std::move(keep);
  if (dtype != DType::kString)
    PFT_ASSERT(static_cast<uint64_t>(d.numel()) * dtype_size(dtype) == bytes.size(),
               fmt::format("dataset {}: {} bytes for {} elements of {}", d.path, bytes.size(),
                           d.numel(), dtype_name(dtype)));
  // Parent groups exist in the file even when they carry no attributes.
  for (size_t slash = d.path.find('/', 1); slash != std::string::npos;
       slash = d.path.find('/', slash + 1))
    groups_[d.path.substr(0, slash)];
  index_[d.path] = datasets_.size();
  datasets_.push_back(std::move(d));
  return datasets_.back();
}

Dataset& Contents::add_copy(std::string path, DType dtype, std::vector<int64_t> shape,
                            std::span<const std::byte> bytes) {
  auto storage = std::make_shared<std::vector<std::byte>>(bytes.begin(), bytes.end());
  const std::span<const std::byte> view(storage->data(), storage->size());
  return add(std::move(path), dtype, std::move(shape), view, std::move(storage));
}

Dataset& Contents::add_text(std::string path, const std::string& text) {
  return add_copy(std::move(path), DType::kString, {},
                  std::as_bytes(std::span<const char>(text.data(), text.size())));
}

Dataset& Contents::add_streamed(std::string path, DType dtype, std::vector<int64_t> shape,
                                std::shared_ptr<const ByteSource> source, uint64_t offset) {
  PFT_ASSERT(dtype != DType::kString && source != nullptr, "streamed datasets hold tensor data");
  Dataset& d = add(std::move(path), DType::kString, {}, {});  // no bytes to check against
  d.dtype = dtype;
  d.shape = std::move(shape);
  d.source = std::move(source);
  d.source_offset = offset;
  d.source_bytes = static_cast<uint64_t>(d.numel()) * dtype_size(dtype);
  return d;
}

Dataset& Contents::add_unloaded(std::string path, DType dtype, std::vector<int64_t> shape) {
  Dataset& d = add(std::move(path), DType::kString, {}, {});
  d.dtype = dtype;
  d.shape = std::move(shape);
  d.loaded = false;
  return d;
}

const Dataset* Contents::find(const std::string& path) const {
  const auto it = index_.find(path);
  return it == index_.end() ? nullptr : &datasets_[it->second];
}

const Dataset& Contents::at(const std::string& path) const {
  const Dataset* d = find(path);
  if (d == nullptr)
    throw InputError(fmt::format("checkpoint {}: dataset {} is missing", source, path));
  return *d;
}

std::vector<const Dataset*> Contents::under(const std::string& prefix) const {
  std::vector<const Dataset*> out;
  const std::string p = prefix + "/";
  for (const Dataset& d : datasets_)
    if (d.path.compare(0, p.size(), p) == 0 && d.path.find('/', p.size()) == std::string::npos)
      out.push_back(&d);
  return out;
}

uint64_t Contents::total_bytes() const {
  uint64_t n = 0;
  for (const Dataset& d : datasets_) n += d.size();
  return n;
}

namespace {

const AttrValue& find_attr(const Attrs& attrs, const std::string& name, const std::string& where) {
  const auto it = attrs.find(name);
  if (it == attrs.end())
    throw InputError(fmt::format("checkpoint: attribute {}@{} is missing", where, name));
  return it->second;
}

}  // namespace

int64_t attr_int(const Attrs& attrs, const std::string& name, const std::string& where) {
  const AttrValue& v = find_attr(attrs, name, where);
  if (const auto* i = std::get_if<int64_t>(&v)) return *i;
  throw InputError(fmt::format("checkpoint: attribute {}@{} is not an integer", where, name));
}

double attr_double(const Attrs& attrs, const std::string& name, const std::string& where) {
  const AttrValue& v = find_attr(attrs, name, where);
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  throw InputError(fmt::format("checkpoint: attribute {}@{} is not a number", where, name));
}

std::string attr_string(const Attrs& attrs, const std::string& name, const std::string& where) {
  const AttrValue& v = find_attr(attrs, name, where);
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  throw InputError(fmt::format("checkpoint: attribute {}@{} is not a string", where, name));
}

}  // namespace pft::ckpt
