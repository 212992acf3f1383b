// The run directory: where a job writes everything it produces.
//
//   RUN_DIR/config.resolved.yaml   the fully resolved config (defaults filled, overrides applied)
//   RUN_DIR/metrics.jsonl          one JSON object per line, each with a "kind" field
//   RUN_DIR/plan.jsonl             the plan log: what every step trained on (control/plan_log.h)
//   RUN_DIR/checkpoints/           checkpoint files and `latest`
//   RUN_DIR/run.lock               who is running in this directory (Note [run directory lock])
//
// Only rank 0 writes here; other ranks may read. Nothing is written through a symbolic link: a
// link at run.lock or metrics.jsonl is refused (InputError naming it), and a temporary is created
// fresh, never through what is at its name (Note [atomic writes] below; Note [files of the
// checkpoints directory], ckpt/run_checkpoints.h).
//
// Note [run directory lock]
// ~~~~~~~~~~~~~~~~~~~~~~~~~
// Two runs in one run.dir would replace each other's checkpoints and interleave their
// metrics.jsonl. So the training job's rank 0 takes RUN_DIR/run.lock before it writes anything
// there and holds it for the whole run: an exclusive flock(2) on the file, which holds one line
// naming the holder (host, pid, start time in UTC, job id). The kernel drops the flock when the
// process ends however it ends (kill -9 included), so a lock file whose flock nobody holds is the
// stale lock of a dead run: it is taken over with a warning naming that run. A second run finds
// the flock held and stops (InputError: exit 2 on every rank) naming the holder. Where the
// filesystem refuses flock (some network filesystems), the holder line decides: a holder on this
// host whose pid is gone is stale, any other holder is respected. A run that ends empties the
// file, so the next one starts without a warning. Readers (`pft eval`, `pft ckpt`) never take
// the lock and are never blocked by it.
//
// Note [atomic writes]
// ~~~~~~~~~~~~~~~~~~~~
// write_file_atomic's temporary is PATH.tmp-<pid>-<64 random bits>, created with O_EXCL |
// O_NOFOLLOW (never an existing file, never through a link), so two writers of one file (`pft
// sweep status` refreshing best.yaml while the sweep ends; two Slurm array tasks on different
// hosts) each rename a whole file of their own. A shared name (PATH.tmp) let one writer rename the
// other's half-written temporary and the other fail. A writer killed between create and rename
// leaves its temporary behind (never read; safe to delete).
//
// Note [a line cut by a kill]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~
// A writer killed in mid-line (kill -9, a node lost) leaves a last line without its newline. A
// reader skips a line that does not parse; but the next append would join that line and be lost
// with it. So MetricsWriter::write starts its line with a newline when the file does not end with
// one: the cut line stays alone (and is skipped), the new one is whole.
#pragma once

#include <boost/json/object.hpp>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

namespace pft {

// Adds "others may not write" to the process umask (umask |= 002), keeping the rest of it:
// everything pft creates (run directories, checkpoints, metrics, the lock, token stores) gets
// 0666/0777 less the umask, so a restrictive umask (077) gives 0600/0700 and even umask 000 gives
// no world-writable file or directory. Called once at the start of main, before any thread.
void restrict_umask();

class RunDir {
 public:
  // Creates the directory tree when `create` (rank 0). Throws InputError naming the path when it
  // cannot be created or written.
  RunDir(std::filesystem::path root, bool create);

  const std::filesystem::path& root() const { return root_; }
  std::filesystem::path resolved_config() const { return root_ / "config.resolved.yaml"; }
  std::filesystem::path metrics() const { return root_ / "metrics.jsonl"; }
  std::filesystem::path checkpoints() const { return root_ / "checkpoints"; }
  std::filesystem::path lock_file() const { return root_ / "run.lock"; }

  // Takes the run directory for this process until this RunDir and its copies are gone (Note
  // [run directory lock]); `job` is the scheduler's job id, or empty. Rank 0 of a training job,
  // before it writes anything here. Throws InputError naming the holder when another live run
  // holds it; logs a warning when it takes over a dead run's lock. Returns that warning's text
  // (empty when the lock was free).
  std::string lock(const std::string& job);

  // Writes `text` to `path` atomically (temporary file, fsync, rename): a reader sees the old
  // file or the new one, never part of one. Any number of processes or threads may write the
  // same path at once (Note [atomic writes]); the last rename wins. Throws InputError naming the
  // file when it cannot.
  static void write_file_atomic(const std::filesystem::path& path, const std::string& text);

 private:
  class Lock;
  std::filesystem::path root_;
  std::shared_ptr<Lock> lock_;  // shared by copies; released with the last one
};

// What RUN_DIR/run.lock says, for readers that never take the lock (`pft status`): nothing is
// locked or written. The holder line is empty when the last run ended and emptied it.
struct RunLockInfo {
  bool present = false;  // run.lock exists
  std::string holder;    // "pid P on host H since T[, job J]"; empty when released
  std::string host;
  long pid = 0;
  // Only a holder on this host can be judged: its pid exists (kAlive) or not (kGone).
  enum class Process { kUnknown, kAlive, kGone } process = Process::kUnknown;
};
RunLockInfo read_run_lock(const std::filesystem::path& run_dir);

// Appends JSON lines to metrics.jsonl. Each line is flushed as written, so a killed job keeps
// every line it wrote; a line cut by a killed writer is ended first (Note [a line cut by a
// kill]). A disabled writer (ranks other than 0) ignores writes. Not thread-safe.
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
