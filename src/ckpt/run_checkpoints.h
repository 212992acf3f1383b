// The checkpoints directory of a run, RUN_DIR/checkpoints/:
//
//   step_00000100.h5          complete checkpoints (the step is the number of optimizer steps
//                             taken; 8+ digits so names sort by step)
//   .step_00000100.h5.tmp-PID a save in progress, or one a crash interrupted (never read)
//   latest                    one line: the file name of the newest complete checkpoint, replaced
//                             atomically after each save (a hint: resume scans the directory)
//
// Listing, the `latest` pointer, picking a checkpoint to resume from, and retention (keep the
// last N and the best K by a metric). Rank 0 only; not collective; not thread-safe per directory
// (the saver, ckpt/saver.h, serialises its own calls).
//
// Note [files of the checkpoints directory]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// pft reads, and retention deletes, only what it writes itself: regular files named step_N.h5
// directly in this directory. A symbolic link is never a checkpoint, whatever its name: it is not
// listed, so resume never reads through it and retention never deletes it nor what it points to
// (retention unlinks names; a hard link's other names keep the data). A regular file with a
// checkpoint's name that does not open as a pft checkpoint is kept (retention never deletes what
// it cannot judge); a valid pft checkpoint someone copied in counts as one of the run's. A
// `latest` that is a link, or that names a link, is refused (InputError) instead of followed. The
// directory itself may be a link the operator made (checkpoints on another disk): everything
// above holds inside it. Temporary files are created fresh (a leftover or a planted link at that
// name is removed first, never written through). See docs/reliability.md, "Secrets and files".
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace pft::ckpt {

std::string checkpoint_file_name(int64_t step);
// The step of a complete checkpoint's file name ("step_00000100.h5" -> 100); nullopt otherwise.
std::optional<int64_t> parse_checkpoint_step(const std::string& file_name);

struct ListedCheckpoint {
  std::filesystem::path path;
  int64_t step = 0;
};

// Complete checkpoint files (by name; not opened; regular files only, never a symbolic link),
// newest step first. Empty when `dir` is absent.
std::vector<ListedCheckpoint> list_checkpoints(const std::filesystem::path& dir);

// The name `latest` holds (trimmed), or nullopt when it is absent or empty. A name with a path
// separator is ignored (a pointer never leaves the directory). Throws InputError naming the file
// when `latest` is a symbolic link or names one (Note [files of the checkpoints directory]).
std::optional<std::string> read_latest(const std::filesystem::path& dir);
// Replaces `latest` atomically (temporary file, fsync, rename, fsync of the directory); a link
// named `latest` is replaced, not followed. Throws RuntimeFailure naming the file.
void write_latest(const std::filesystem::path& dir, const std::string& file_name);

// Removes `.step_*.tmp-*` files left by interrupted saves; returns their names. Call before the
// first save of a run (never while a save is in flight).
std::vector<std::string> remove_stale_temporaries(const std::filesystem::path& dir);

// Picks the newest checkpoint that `try_use` accepts: candidates newest step first; `try_use`
// returns "" to accept, else the reason it refused (the candidate is then skipped and named in
// `skipped` as "FILE: reason").
struct Pick {
  std::optional<std::filesystem::path> path;
  int64_t step = 0;
  std::vector<std::string> skipped;
};
Pick pick_newest(const std::filesystem::path& dir,
                 const std::function<std::string(const std::filesystem::path&)>& try_use);

struct RetentionPolicy {
  int64_t keep_last = 3;  // the newest N
  int64_t keep_best = 0;  // plus the best K by `best_metric`
  std::string best_metric = "loss";
  bool higher_is_better = false;
  bool file_locking = false;
};

// Deletes complete checkpoints that are neither among the newest keep_last, nor the best
// keep_best by /meta's `metric.<best_metric>` attribute (files without it never count as best),
// nor in `protect` (e.g. the file the run resumed from), nor the one `latest` names. Returns the
// deleted files. Files that cannot be read are kept (retention never deletes what it cannot
// judge) and count for neither keep_last nor keep_best; what list_checkpoints does not list
// (links: Note [files of the checkpoints directory]) is never touched.
std::vector<std::filesystem::path> apply_retention(const std::filesystem::path& dir,
                                                   const RetentionPolicy& policy,
                                                   const std::set<std::filesystem::path>& protect);

}  // namespace pft::ckpt
