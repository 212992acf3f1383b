// A scratch file for bytes written once, in any order, and read back once, in pieces: the ZeRO-1
// moments rank 0 gathers for a checkpoint (Note [streamed ZeRO-1 save],
// train/checkpoint_state.h), which the checkpoint writer then streams into the HDF5 file
// (ckpt/contents.h, streamed datasets). Plain pwrite/pread on a file descriptor, no HDF5: the
// training thread writes one while the saver's background thread may be inside HDF5 writing the
// previous checkpoint, and the writer's thread reads it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "ckpt/contents.h"

namespace pft::ckpt {

class SpillFile final : public ByteSource {
 public:
  // Creates DIR/.NAME.tmp-<pid> and unlinks it at once: the descriptor keeps the data, the space
  // comes back when the last owner closes it, and a crash leaves nothing behind (for the instant
  // before the unlink the name is one remove_stale_temporaries removes). Throws RuntimeFailure
  // naming the file and the cause.
  // `punch_batch_bytes`: see read() (tests pass a small one).
  static std::shared_ptr<SpillFile> create(const std::filesystem::path& dir,
                                           const std::string& name,
                                           uint64_t punch_batch_bytes = kPunchBatchBytes);
  ~SpillFile() override;
  SpillFile(const SpillFile&) = delete;
  SpillFile& operator=(const SpillFile&) = delete;

  // Writes all of `bytes` at `offset` (one thread at a time). Throws RuntimeFailure naming the
  // file and the cause (strerror: "No space left on device").
  void write(uint64_t offset, std::span<const std::byte> bytes);
  // Reads [offset, offset + out.size()) (any thread, one at a time or several: serialized). Each
  // byte can be read once: its page may be a punched hole afterwards, which reads back as zeros,
  // so a read that overlaps a range already read throws RuntimeFailure (a retried or second
  // write of the same Contents would otherwise checksum and store zeros as the moments). The disk
  // space of whole pages read goes back to the file system (punched holes; best effort, so the
  // scratch file shrinks as the checkpoint file grows) in batches of kPunchBatchBytes read, or at
  // every read while the file system has less than 2 * kPunchBatchBytes free (512 MiB): a hole punched per
  // 4 MiB piece forces writeback of the file on XFS and ext4. The rest comes back at the close.
  // Throws RuntimeFailure as write().
  void read(uint64_t offset, std::span<std::byte> out) const override;

  static constexpr uint64_t kPunchBatchBytes = uint64_t{256} << 20;

  const std::filesystem::path& path() const { return path_; }  // for messages: it is unlinked
  // The disk space the file takes now (st_blocks): what punching gives back shows here.
  uint64_t allocated_bytes() const;

 private:
  SpillFile(int fd, std::filesystem::path path, uint64_t punch_batch_bytes)
      : fd_(fd), path_(std::move(path)), punch_batch_bytes_(punch_batch_bytes) {}

  void punch_read_ranges() const;  // with mutex_ held

  int fd_;
  std::filesystem::path path_;
  uint64_t punch_batch_bytes_;
  mutable std::mutex mutex_;
  mutable std::map<uint64_t, uint64_t> read_;  // ranges read, start -> end, merged when adjacent
  mutable uint64_t unpunched_ = 0;             // bytes read since the last punch
};

}  // namespace pft::ckpt
