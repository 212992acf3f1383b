// What a checkpoint file holds, in memory and without torch: groups with attributes, and
// datasets (tensors of a dtype and shape, or UTF-8 text) with attributes and their bytes.
//
// The writer (ckpt/writer.h) turns a Contents into one HDF5 file, the reader (ckpt/reader.h) turns
// a file back into one. What the groups mean (/meta, /model, /optimizer, ...) is the format of
// docs/checkpoint-format.md, with its names in ckpt/format.h; this header only knows bytes.
//
// Bytes of a dataset are little-endian, row-major, exactly as stored. A dataset either owns them
// (`keep` holds the storage: snapshots for asynchronous saves, loads), borrows them from memory
// that must stay unchanged until the write returns (synchronous saves from live buffers), or is
// streamed: the writer reads its bytes piece by piece from a ByteSource while it writes them, so
// they need never be in memory at once (the ZeRO-1 moments spilled to a scratch file:
// Note [streamed ZeRO-1 save], train/checkpoint_state.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

namespace pft::ckpt {

// Element types. kString is a scalar dataset of UTF-8 text (shape {}).
enum class DType : uint8_t {
  kFloat32,
  kFloat64,
  kFloat16,
  kBFloat16,
  kInt8,
  kInt16,
  kInt32,
  kInt64,
  kUInt8,
  kBool,
  kString,
};

// "float32", "float64", "float16", "bfloat16", "int8", ..., "uint8", "bool", "string" (torch's
// names). parse_dtype returns nullopt for anything else.
const char* dtype_name(DType d);
std::optional<DType> parse_dtype(const std::string& name);
// Bytes per element (1 for kString: its "elements" are bytes).
size_t dtype_size(DType d);

// Where a streamed dataset's bytes are read from while it is written (any thread: the writer's).
// The writer reads each byte once; a source may rely on that (a SpillFile gives the disk space of
// what was read back), so a Contents with streamed datasets is written once.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Copies bytes [offset, offset + out.size()) into `out`; throws RuntimeFailure naming the
  // source when it cannot.
  virtual void read(uint64_t offset, std::span<std::byte> out) const = 0;
};

using AttrValue = std::variant<int64_t, double, std::string>;
using Attrs = std::map<std::string, AttrValue>;

// "12", "0.5", "text": for listings and messages.
std::string attr_to_string(const AttrValue& v);

struct Dataset {
  std::string path;  // absolute, "/model/transformer.wte.weight"
  DType dtype = DType::kFloat32;
  std::vector<int64_t> shape;        // {} = scalar
  std::span<const std::byte> bytes;  // numel * dtype_size bytes (text: its length)
  std::shared_ptr<const void> keep;  // owns `bytes` when set
  Attrs attrs;                       // extra attributes (the writer adds dtype and checksum)
  bool loaded = true;                // false: listed by a selective read, bytes not read
  // Streamed (bytes empty): bytes [source_offset, source_offset + source_bytes) of `source`.
  std::shared_ptr<const ByteSource> source;
  uint64_t source_offset = 0;
  uint64_t source_bytes = 0;

  bool streamed() const { return source != nullptr; }
  // Bytes of the data, streamed or not (numel * dtype_size; text: its length).
  uint64_t size() const { return streamed() ? source_bytes : bytes.size(); }
  int64_t numel() const;
  std::string text() const;  // kString: the text
};

class Contents {
 public:
  // Attributes of group `path` ("/meta"); creates the group (and its parents, when written).
  Attrs& group(const std::string& path) { return groups_[path]; }
  const std::map<std::string, Attrs>& groups() const { return groups_; }
  bool has_group(const std::string& path) const { return groups_.count(path) > 0; }
  // Throws InputError naming the group when absent.
  const Attrs& group_attrs(const std::string& path) const;

  // Adds a dataset borrowing `bytes` (valid until written) or owning them through `keep`.
  Dataset& add(std::string path, DType dtype, std::vector<int64_t> shape,
               std::span<const std::byte> bytes, std::shared_ptr<const void> keep = {});
  // Adds a dataset that owns a copy of `bytes`.
  Dataset& add_copy(std::string path, DType dtype, std::vector<int64_t> shape,
                    std::span<const std::byte> bytes);
  Dataset& add_text(std::string path, const std::string& text);
  // Adds a streamed dataset (not text): its numel * dtype_size bytes are read from `source` at
  // `offset` when written. The source must stay readable until the write returns (the dataset
  // keeps it alive).
  Dataset& add_streamed(std::string path, DType dtype, std::vector<int64_t> shape,
                        std::shared_ptr<const ByteSource> source, uint64_t offset);
  // Lists a dataset whose bytes were not read (loaded = false, bytes empty).
  Dataset& add_unloaded(std::string path, DType dtype, std::vector<int64_t> shape);
  template <class T>
  Dataset& add_vector(std::string path, DType dtype, const std::vector<T>& v) {
    return add_copy(std::move(path), dtype, {static_cast<int64_t>(v.size())},
                    std::as_bytes(std::span<const T>(v)));
  }

  const std::vector<Dataset>& datasets() const { return datasets_; }
  std::vector<Dataset>& datasets() { return datasets_; }
  const Dataset* find(const std::string& path) const;
  // Throws InputError naming the dataset when absent.
  const Dataset& at(const std::string& path) const;
  // Datasets directly under group `prefix` ("/model"), in insertion order.
  std::vector<const Dataset*> under(const std::string& prefix) const;

  // Sum of the datasets' byte sizes (streamed ones included).
  uint64_t total_bytes() const;

  // The file this came from (set by the reader; messages).
  std::string source;
  // The file's root `format_version` (set by the reader; 0 for contents not read from a file).
  int64_t format_version = 0;

 private:
  std::map<std::string, Attrs> groups_;
  std::vector<Dataset> datasets_;
  std::map<std::string, size_t> index_;
};

// Typed access to an attribute; throws InputError naming `where` and the attribute when absent or
// of another type (ints convert to double).
int64_t attr_int(const Attrs& attrs, const std::string& name, const std::string& where);
double attr_double(const Attrs& attrs, const std::string& name, const std::string& where);
std::string attr_string(const Attrs& attrs, const std::string& name, const std::string& where);

}  // namespace pft::ckpt
