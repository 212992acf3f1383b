// The run directory: where a job writes everything it produces.
//
//   RUN_DIR/config.resolved.yaml   the fully resolved config (defaults filled, overrides applied)
//   RUN_DIR/metrics.jsonl          one JSON object per line, each with a "kind" field
//   RUN_DIR/checkpoints/           checkpoint files and `latest`
//
// Only rank 0 writes here; other ranks may read.
#pragma once

#include <boost/json/object.hpp>

#include <cstdio>
#include <filesystem>
#include <string>

namespace pft {

class RunDir {
 public:
  // Creates the directory tree when `create` (rank 0). Throws InputError naming the path when it
  // cannot be created or written.
  RunDir(std::filesystem::path root, bool create);

  const std::filesystem::path& root() const { return root_; }
  std::filesystem::path resolved_config() const { return root_ / "config.resolved.yaml"; }
  std::filesystem::path metrics() const { return root_ / "metrics.jsonl"; }
  std::filesystem::path checkpoints() const { return root_ / "checkpoints"; }

  // Writes `text` to `path` atomically (temporary file, fsync, rename).
  static void write_file_atomic(const std::filesystem::path& path, const std::string& text);

 private:
  std::filesystem::path root_;
};

// Appends JSON lines to metrics.jsonl. Each line is flushed as written, so a killed job keeps
// every line it wrote. A disabled writer (ranks other than 0) ignores writes. Not thread-safe.
class MetricsWriter {
 public:
  MetricsWriter() = default;  // disabled
  explicit MetricsWriter(const std::filesystem::path& path);
  ~MetricsWriter();
  MetricsWriter(const MetricsWriter&) = delete;
  MetricsWriter& operator=(const MetricsWriter&) = delete;
  MetricsWriter(MetricsWriter&& other) noexcept;
  MetricsWriter& operator=(MetricsWriter&& other) noexcept;

  bool enabled() const { return file_ != nullptr; }
  // `record` must hold a string "kind". Adds "time" (seconds since the epoch) when absent.
  void write(boost::json::object record);

 private:
  std::FILE* file_ = nullptr;
  std::filesystem::path path_;
};

}  // namespace pft
