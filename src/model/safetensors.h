// safetensors files: a memory-mapped reader (one file, or a sharded set with its index) and a
// writer.
//
// Format (https://github.com/huggingface/safetensors): 8 bytes little-endian u64 N, then N bytes
// of UTF-8 JSON, then the data. The JSON maps each tensor name to
//   {"dtype": "F32"|"F16"|"BF16"|..., "shape": [..], "data_offsets": [begin, end]}
// with offsets relative to the first data byte, plus an optional "__metadata__" {str: str}.
// Tensors are row-major, little-endian, not strided.
//
// Reading maps the file once (MAP_PRIVATE, so an accidental write through a tensor never reaches
// the file) and checks the whole header before any tensor is handed out: the header length
// against the file size, the JSON, every entry's dtype, shape and offsets (inside the data, size
// = numel * element size). tensor() then returns a zero-copy view over the mapping whenever the
// data is aligned for its dtype (the safetensors writers pad the header so it is), else a copy;
// a view keeps the mapping alive after the SafetensorsFile is gone.
//
// A sharded checkpoint is a directory holding model.safetensors.index.json, whose "weight_map"
// names the file of each tensor (model-0000x-of-0000y.safetensors); SafetensorsCheckpoint opens
// the index and every file it names and checks each listed tensor is in its file.
//
// Errors: a malformed file (too short, truncated or oversized header, bad JSON, a bad entry, data
// past the end of the file) throws InputError naming the file and the byte offset or the tensor;
// asking for a tensor the file lacks throws InputError naming it. I/O failures while writing
// throw RuntimeFailure. Thread-safety: a constructed reader is immutable; its const members may
// be called from several threads at once.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace pft {

// One entry of a safetensors header.
struct SafetensorsEntry {
  std::string name;
  std::string dtype;           // as written: "F32", "BF16", ...
  at::ScalarType scalar_type;  // torch dtype; Undefined for dtypes torch cannot hold
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range relative to the start of the data section
};

namespace detail {
struct FileMapping;
}

// One .safetensors file.
class SafetensorsFile {
 public:
  // Maps and checks the file. Throws InputError (see the top of this file).
  explicit SafetensorsFile(const std::filesystem::path& path);
  ~SafetensorsFile();
  SafetensorsFile(SafetensorsFile&&) noexcept;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept;

  const std::filesystem::path& path() const { return path_; }
  // Entries in file (data offset) order.
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  // nullptr when the file has no tensor `name`.
  const SafetensorsEntry* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Offset of the first data byte in the file (8 + header length).
  uint64_t data_offset() const { return data_offset_; }

  // The tensor `name` as stored (CPU, its own dtype and shape): a view over the mapping when
  // aligned, else a copy. Throws InputError when absent or of a dtype torch cannot hold.
  at::Tensor tensor(const std::string& name) const;

 private:
  std::filesystem::path path_;
  std::shared_ptr<detail::FileMapping> mapping_;
  uint64_t data_offset_ = 0;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> index_;  // name -> position in entries_
  std::map<std::string, std::string> metadata_;
};

// A model's weights: one model.safetensors, or shards listed by model.safetensors.index.json.
class SafetensorsCheckpoint {
 public:
  // `path`: a directory (index preferred, else model.safetensors) or one .safetensors file.
  // Throws InputError naming the directory when it holds neither (and saying what it found,
  // e.g. a pytorch_model.bin), or a shard / index problem naming the file and tensor.
  explicit SafetensorsCheckpoint(const std::filesystem::path& path);

  // Every tensor name, sorted.
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return where_.count(name) > 0; }
  // nullptr when absent.
  const SafetensorsEntry* find(const std::string& name) const;
  // The file holding `name` (for messages). Throws InputError when absent.
  const std::filesystem::path& file_of(const std::string& name) const;
  // As SafetensorsFile::tensor.
  at::Tensor tensor(const std::string& name) const;
  // The files, in index order (one for an unsharded model).
  const std::vector<SafetensorsFile>& files() const { return files_; }
  // Sum of the tensors' stored bytes.
  uint64_t total_bytes() const;

 private:
  std::vector<SafetensorsFile> files_;
  std::map<std::string, size_t> where_;  // tensor name -> index into files_
};

// "F32" for at::kFloat, ...; throws InputError for a dtype safetensors has no name for.
std::string safetensors_dtype_name(at::ScalarType type);

// Writes `tensors` (in the given order; each moved to the CPU and made contiguous one at a time)
// to `path` atomically: a temporary file beside it, fsync, rename. Names must be unique and not
// "__metadata__". The header is padded with spaces so the data starts 8-byte aligned.
// Throws InputError for a bad name or dtype, RuntimeFailure when the file cannot be written.
void write_safetensors(const std::filesystem::path& path,
                       const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace pft
