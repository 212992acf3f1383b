// Saving checkpoints of a run, synchronously or in the background, with retention.
//
// One save = write the file (ckpt/writer.h, Note [atomic save]), point `latest` at it, apply
// retention (ckpt/run_checkpoints.h). Asynchronous mode: the caller snapshots the state to host
// memory at a step boundary (a Contents owning its bytes, or streaming them from a scratch file
// it keeps alive: the ZeRO-1 moments, Note [streamed ZeRO-1 save] in train/checkpoint_state.h)
// and hands it over; a background thread does the save while training goes on. That thread is
// the only one in which the saver enters HDF5. At most one save is in flight: handing over the
// next one first waits for it. The stall of a save is the time the training thread spent on it:
// its snapshot, the wait for the previous save and, in synchronous mode, the whole save.
//
// A failed save (full disk, I/O error) leaves the previous checkpoints and `latest` as they were;
// failed() turns true as soon as a background save has failed (the trainer stops every rank at
// the next step boundary: train/checkpointer.h), and the failure is rethrown (RuntimeFailure
// naming the file, the step and the cause) by the next wait() or save().
//
// Rank 0 only. The methods are called from one thread (the training thread).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ckpt/contents.h"
#include "ckpt/run_checkpoints.h"
#include "ckpt/writer.h"

namespace pft::ckpt {

struct SaverOptions {
  std::filesystem::path dir;  // RUN_DIR/checkpoints (created when missing)
  bool async = true;          // checkpoint.async
  WriteOptions write;
  RetentionPolicy retention;
};

struct SaveReport {
  int64_t step = 0;
  std::filesystem::path path;
  WriteStats stats;
  double stall_s = 0.0;  // training-thread time: snapshot + wait (+ the save when synchronous)
  bool async = false;
  std::vector<std::filesystem::path> deleted;  // removed by retention
};

class CheckpointSaver {
 public:
  explicit CheckpointSaver(SaverOptions options);
  // Waits for a save in flight; its failure is logged, not thrown.
  ~CheckpointSaver();
  CheckpointSaver(const CheckpointSaver&) = delete;
  CheckpointSaver& operator=(const CheckpointSaver&) = delete;

  // Retention never deletes `path` (the checkpoint the run resumed from).
  void protect(const std::filesystem::path& path);

  // Saves `contents` as checkpoint `step`. Asynchronous: `contents` must own its bytes; returns
  // once the previous save finished and this one started. Synchronous: returns when done.
  // `snapshot_s`: time the caller spent building `contents`, added to the stall. Throws the
  // previous save's failure, or (synchronous) this one's.
  void save(int64_t step, Contents contents, double snapshot_s);

  // Reports of saves finished since the last call; never blocks, never throws (a failure waits
  // for the next save() or wait()).
  std::vector<SaveReport> poll();
  // Waits for the save in flight; returns the reports like poll(), or throws a failed save's
  // error.
  std::vector<SaveReport> wait();
  bool in_flight() const { return worker_.joinable(); }
  // True once a save has failed whose error wait() or save() has not thrown yet; never blocks.
  bool failed() const;

  const SaverOptions& options() const { return options_; }

 private:
  // `traced`: whether run.trace was on for the step that asked for the save (the background
  // write may run after tracing stopped, and must still appear: core/trace.h record_unchecked).
  SaveReport run_save(int64_t step, const Contents& contents, bool traced);
  void join();

  SaverOptions options_;
  std::set<std::filesystem::path> protect_;
  std::thread worker_;
  mutable std::mutex mu_;
  std::vector<SaveReport> finished_;  // guarded by mu_
  std::optional<std::string> error_;  // guarded by mu_
  bool cleaned_ = false;
};

}  // namespace pft::ckpt
