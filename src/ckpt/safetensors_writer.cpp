// safetensors writer (contract: ckpt/safetensors_writer.h).
#include "ckpt/safetensors_writer.h"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>

#include "core/error.h"
#include "core/format.h"

namespace pft::ckpt {

namespace fs = std::filesystem;

const char* safetensors_dtype(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "F32";
    case DType::kFloat64:
      return "F64";
    case DType::kFloat16:
      return "F16";
    case DType::kBFloat16:
      return "BF16";
    case DType::kInt8:
      return "I8";
    case DType::kInt16:
      return "I16";
    case DType::kInt32:
      return "I32";
    case DType::kInt64:
      return "I64";
    case DType::kUInt8:
      return "U8";
    case DType::kBool:
      return "BOOL";
    case DType::kString:
      break;
  }
  return nullptr;
}

void write_safetensors(const fs::path& path, const std::vector<SafetensorsTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  boost::json::object header;
  if (!metadata.empty()) {
    boost::json::object meta;
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  std::set<std::string> names;
  uint64_t offset = 0;
  for (const SafetensorsTensor& t : tensors) {
    const char* dt = safetensors_dtype(t.dtype);
    if (dt == nullptr)
      throw InputError(
          fmt::format("safetensors: tensor {} has dtype {}, which safetensors cannot "
                      "hold",
                      t.name, dtype_name(t.dtype)));
    if (!names.insert(t.name).second || t.name == "__metadata__")
      throw InputError(fmt::format("safetensors: duplicate or reserved tensor name {}", t.name));
    int64_t numel = 1;
    boost::json::array shape;
    for (int64_t s : t.shape) {
      shape.emplace_back(s);
      numel *= s;
    }
    PFT_ASSERT(static_cast<uint64_t>(numel) * dtype_size(t.dtype) == t.bytes.size(),
               "safetensors: byte count of " + t.name);
    boost::json::object e;
    e["dtype"] = dt;
    e["shape"] = std::move(shape);
    e["data_offsets"] = boost::json::array{offset, offset + t.bytes.size()};
    header[t.name] = std::move(e);
    offset += t.bytes.size();
  }
  std::string json = boost::json::serialize(header);
  json.append((8 - json.size() % 8) % 8, ' ');
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>((json.size() >> (8 * i)) & 0xff);

  const fs::path tmp = path.string() + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr)
    throw RuntimeFailure(
        fmt::format("safetensors: cannot create '{}': {}", tmp.string(), std::strerror(errno)));
  bool ok =
      std::fwrite(len, 1, 8, f) == 8 && std::fwrite(json.data(), 1, json.size(), f) == json.size();
  for (const SafetensorsTensor& t : tensors)
    ok = ok &&
         (t.bytes.empty() || std::fwrite(t.bytes.data(), 1, t.bytes.size(), f) == t.bytes.size());
  ok = std::fclose(f) == 0 && ok;
  if (!ok) {
    const int err = errno;
    std::remove(tmp.c_str());
    throw RuntimeFailure(
        fmt::format("safetensors: writing '{}' failed: {}", path.string(), std::strerror(err)));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec)
    throw RuntimeFailure(fmt::format("safetensors: cannot rename '{}' to '{}': {}", tmp.string(),
                                     path.string(), ec.message()));
}

}  // namespace pft::ckpt
