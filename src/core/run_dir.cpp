#include "core/run_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <boost/json/serialize.hpp>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>

#include "core/error.h"
#include "core/format.h"

namespace pft {
namespace fs = std::filesystem;

RunDir::RunDir(fs::path root, bool create) : root_(std::move(root)) {
  if (!create) return;
  std::error_code ec;
  fs::create_directories(checkpoints(), ec);
  if (ec)
    throw InputError(fmt::format("run.dir: cannot create '{}': {}; choose a writable directory",
                                 checkpoints().string(), ec.message()));
}

void RunDir::write_file_atomic(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    throw InputError(fmt::format("cannot write '{}': {}", tmp.string(), std::strerror(errno)));
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      throw InputError(fmt::format("cannot write '{}': {}", tmp.string(), std::strerror(err)));
    }
    done += static_cast<size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec)
    throw InputError(fmt::format("cannot rename '{}' to '{}': {}", tmp.string(), path.string(),
                                 ec.message()));
}

MetricsWriter::MetricsWriter(const fs::path& path) : path_(path) {
  file_ = std::fopen(path.c_str(), "a");
  if (file_ == nullptr)
    throw InputError(fmt::format("cannot open metrics file '{}': {}", path.string(),
                                 std::strerror(errno)));
}

MetricsWriter::~MetricsWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

MetricsWriter::MetricsWriter(MetricsWriter&& other) noexcept
    : file_(other.file_), path_(std::move(other.path_)) {
  other.file_ = nullptr;
}

MetricsWriter& MetricsWriter::operator=(MetricsWriter&& other) noexcept {
  if (this != &other) {
    if (file_ != nullptr) std::fclose(file_);
    file_ = other.file_;
    path_ = std::move(other.path_);
    other.file_ = nullptr;
  }
  return *this;
}

void MetricsWriter::write(boost::json::object record) {
  if (file_ == nullptr) return;
  PFT_ASSERT(record.contains("kind") && record.at("kind").is_string(),
             "metrics record without a string \"kind\"");
  if (!record.contains("time")) {
    const double now = std::chrono::duration<double>(
                           std::chrono::system_clock::now().time_since_epoch()).count();
    record["time"] = now;
  }
  const std::string line = boost::json::serialize(record) + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0)
    throw RuntimeFailure(fmt::format("cannot append to '{}': {}", path_.string(),
                                     std::strerror(errno)));
}

}  // namespace pft
