// Scratch files of streamed checkpoint data (contract: ckpt/spill_file.h).
#include "ckpt/spill_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "core/format.h"

namespace pft::ckpt {

namespace fs = std::filesystem;

std::shared_ptr<SpillFile> SpillFile::create(const fs::path& dir, const std::string& name,
                                             uint64_t punch_batch_bytes) {
  const fs::path path = dir / fmt::format(".{}.tmp-{}", name, static_cast<long>(::getpid()));
  ::unlink(path.c_str());  // a leftover of this pid's name (or a planted link): never written through
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    throw RuntimeFailure(fmt::format("cannot create the scratch file '{}': {}", path.string(),
                                     std::strerror(errno)));
  ::unlink(path.c_str());
  return std::shared_ptr<SpillFile>(new SpillFile(fd, path, punch_batch_bytes));
}

uint64_t SpillFile::allocated_bytes() const {
  struct stat st {};
  if (::fstat(fd_, &st) != 0)
    throw RuntimeFailure(fmt::format("cannot stat the scratch file '{}': {}", path_.string(),
                                     std::strerror(errno)));
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

SpillFile::~SpillFile() { ::close(fd_); }

void SpillFile::write(uint64_t offset, std::span<const std::byte> bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::pwrite(fd_, bytes.data(), bytes.size(), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      throw RuntimeFailure(fmt::format("writing the scratch file '{}' failed: {}", path_.string(),
                                       n < 0 ? std::strerror(errno) : "no progress"));
    bytes = bytes.subspan(static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
}

void SpillFile::read(uint64_t offset, std::span<std::byte> out) const {
  const uint64_t first = offset, end = offset + out.size();
  if (out.empty()) return;
  std::lock_guard lock(mutex_);
  // The read ranges, merged: the first one ending after `first` must start at or after `end`.
  auto next = read_.upper_bound(first);
  if (next != read_.begin() && std::prev(next)->second > first) next = std::prev(next);
  if (next != read_.end() && next->first < end)
    throw RuntimeFailure(fmt::format(
        "reading bytes [{}, {}) of the scratch file '{}' a second time (bytes [{}, {}) were read "
        "already and may be punched out): each save streams its scratch file once; this is a bug",
        first, end, path_.string(), next->first, next->second));
  while (!out.empty()) {
    const ssize_t n = ::pread(fd_, out.data(), out.size(), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      throw RuntimeFailure(fmt::format("reading the scratch file '{}' failed: {}", path_.string(),
                                       n < 0 ? std::strerror(errno) : "it ends early"));
    out = out.subspan(static_cast<size_t>(n));
    offset += static_cast<uint64_t>(n);
  }
  // Record [first, end), merged with the ranges it touches.
  uint64_t lo = first, hi = end;
  auto it = read_.lower_bound(first);
  if (it != read_.begin() && std::prev(it)->second == first) {
    it = std::prev(it);
    lo = it->first;
    it = read_.erase(it);
  }
  if (it != read_.end() && it->first == end) {
    hi = it->second;
    read_.erase(it);
  }
  read_[lo] = hi;
  unpunched_ += end - first;
  bool punch = unpunched_ >= punch_batch_bytes_;
  struct statvfs fs_stat {};
  if (!punch && ::fstatvfs(fd_, &fs_stat) == 0)
    punch = static_cast<uint64_t>(fs_stat.f_bavail) * fs_stat.f_frsize < 2 * kPunchBatchBytes;
  if (punch) punch_read_ranges();
}

void SpillFile::punch_read_ranges() const {
  // Whole pages inside each merged range (a page straddling a range's edge may still be read);
  // punching a page twice is harmless. Best effort: a file system without holes keeps the space
  // until the close.
  constexpr uint64_t kPage = 4096;
  for (const auto& [first, end] : read_) {
    const uint64_t lo = (first + kPage - 1) / kPage * kPage, hi = end / kPage * kPage;
    if (hi > lo)
      (void)::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(lo),
                        static_cast<off_t>(hi - lo));
  }
  unpunched_ = 0;
}

}  // namespace pft::ckpt
