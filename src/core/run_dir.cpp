#include "core/run_dir.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json/serialize.hpp>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "core/error.h"
#include "core/format.h"
#include "core/logging.h"

namespace pft {
namespace fs = std::filesystem;

void restrict_umask() {
  const mode_t mask = ::umask(0);
  ::umask(mask | S_IWOTH);
}

RunDir::RunDir(fs::path root, bool create) : root_(std::move(root)) {
  if (!create) return;
  std::error_code ec;
  fs::create_directories(checkpoints(), ec);
  if (ec)
    throw InputError(fmt::format("run.dir: cannot create '{}': {}; choose a writable directory",
                                 checkpoints().string(), ec.message()));
}

// The flock'ed RUN_DIR/run.lock (Note [run directory lock] in run_dir.h). Emptied and closed
// (which drops the flock) with the last RunDir that shares it.
class RunDir::Lock {
 public:
  explicit Lock(int fd) : fd_(fd) {}
  ~Lock() {
    if (::ftruncate(fd_, 0) != 0) {
      // Left as it is: the next run finds the flock free and takes the lock over with a warning.
    }
    ::close(fd_);
  }
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

 private:
  int fd_;
};

namespace {

// What run.lock says of its holder: "host=H pid=P since=T job=J".
struct LockHolder {
  std::string host, since, job;
  long pid = 0;
  bool empty() const { return host.empty() && pid == 0; }
  std::string describe() const {
    if (empty()) return "a run that has not recorded itself yet";
    return fmt::format("pid {} on host {} since {}{}", pid, host.empty() ? "?" : host,
                       since.empty() ? "?" : since, job.empty() ? "" : ", job " + job);
  }
};

LockHolder parse_holder(const std::string& text) {
  LockHolder h;
  std::istringstream in(text);
  for (std::string word; in >> word;) {
    const size_t eq = word.find('=');
    if (eq == std::string::npos) continue;
    const std::string key = word.substr(0, eq), value = word.substr(eq + 1);
    if (key == "host") h.host = value;
    if (key == "since") h.since = value;
    if (key == "job" && value != "-") h.job = value;
    if (key == "pid") h.pid = std::strtol(value.c_str(), nullptr, 10);
  }
  return h;
}

std::string read_from_start(int fd) {
  std::string text;
  char buf[512];
  off_t at = 0;
  for (ssize_t n; (n = ::pread(fd, buf, sizeof buf, at)) > 0 && text.size() < 4096; at += n)
    text.append(buf, static_cast<size_t>(n));
  return text;
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "?";
  return buf;
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Whether `h`'s process is certainly gone: it ran on this host and its pid no longer exists.
bool holder_gone(const LockHolder& h) {
  return h.pid > 0 && h.host == host_name() && ::kill(static_cast<pid_t>(h.pid), 0) != 0 &&
         errno == ESRCH;
}

}  // namespace

RunLockInfo read_run_lock(const fs::path& run_dir) {
  RunLockInfo info;
  // O_NOFOLLOW: never read through a link planted at the name (as lock() refuses one).
  const int fd = ::open((run_dir / "run.lock").c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return info;
  info.present = true;
  const LockHolder h = parse_holder(read_from_start(fd));
  ::close(fd);
  if (h.empty()) return info;
  info.holder = h.describe();
  info.host = h.host;
  info.pid = h.pid;
  if (h.pid > 0 && h.host == host_name()) {
    // A killed process is a zombie until its parent reaps it: its pid exists, but it has closed
    // its files (the flock is free) and will never write again.
    std::ifstream stat("/proc/" + std::to_string(h.pid) + "/stat");
    std::string line;
    std::getline(stat, line);
    const size_t paren = line.rfind(')');
    const bool zombie = paren != std::string::npos && paren + 2 < line.size() &&
                        (line[paren + 2] == 'Z' || line[paren + 2] == 'X');
    info.process = holder_gone(h) || zombie ? RunLockInfo::Process::kGone
                                            : RunLockInfo::Process::kAlive;
  }
  return info;
}

std::string RunDir::lock(const std::string& job) {
  const fs::path path = lock_file();
  // O_NOFOLLOW: a link named run.lock would have the holder line written over its target.
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0666);
  if (fd < 0 && errno == ELOOP)
    throw InputError(fmt::format("run.dir: the lock file '{}' is a symbolic link; pft never "
                                 "writes through a link in its run directory: remove it",
                                 path.string()));
  if (fd < 0)
    throw InputError(fmt::format("run.dir: cannot open the lock file '{}': {}; choose a writable "
                                 "run.dir",
                                 path.string(), std::strerror(errno)));
  const auto in_use = [&](const LockHolder& h, const std::string& how) {
    ::close(fd);
    return InputError(fmt::format(
        "run.dir {} is in use by another run: {}{}. Wait for that run to end (or stop it), or "
        "give this run another directory (--set run.dir=DIR); a lock left by a run that died is "
        "taken over automatically ({} names the holder)",
        root_.string(), h.describe(), how, path.string()));
  };
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err == EWOULDBLOCK || err == EINTR) {
      // Held. The holder writes its line right after taking the flock: give it a moment.
      LockHolder h = parse_holder(read_from_start(fd));
      for (int i = 0; i < 20 && h.empty(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        h = parse_holder(read_from_start(fd));
      }
      throw in_use(h, "");
    }
    // No flock on this filesystem (ENOLCK, EOPNOTSUPP, ...): the holder's line decides.
    const LockHolder h = parse_holder(read_from_start(fd));
    if (!h.empty() && !holder_gone(h))
      throw in_use(h, fmt::format(" (this filesystem has no flock ({}), so a holder on another "
                                  "host, or alive, is respected; remove the file if you know "
                                  "that run has ended)",
                                  std::strerror(err)));
  }
  // Ours. A line left in the file is the record of a run that ended without releasing it.
  const LockHolder previous = parse_holder(read_from_start(fd));
  std::string warning;
  if (!previous.empty()) {
    warning = fmt::format(
        "run.dir {}: taking over the lock of a run that ended without releasing it ({}; its "
        "lock was no longer held{}); its checkpoints and metrics.jsonl stay as they are",
        root_.string(), previous.describe(),
        holder_gone(previous) ? ", its process is gone" : "");
    log::warn("{}", warning);
  }
  const std::string line = fmt::format("host={} pid={} since={} job={}\n", host_name(),
                                       static_cast<long>(::getpid()), utc_now(),
                                       job.empty() ? "-" : job);
  if (::ftruncate(fd, 0) != 0 ||
      ::pwrite(fd, line.data(), line.size(), 0) != static_cast<ssize_t>(line.size())) {
    const int err = errno;
    ::close(fd);
    throw InputError(fmt::format("run.dir: cannot write the lock file '{}': {}", path.string(),
                                 std::strerror(err)));
  }
  ::fsync(fd);
  lock_ = std::make_shared<Lock>(fd);
  return warning;
}

void RunDir::write_file_atomic(const fs::path& path, const std::string& text) {
  // A name of its own (Note [atomic writes] in run_dir.h): O_EXCL, never an existing file or link.
  thread_local std::mt19937_64 rng{std::random_device{}() ^
                                   (static_cast<uint64_t>(::getpid()) << 32)};
  fs::path tmp;
  int fd = -1;
  for (int attempt = 0; fd < 0 && attempt < 16; ++attempt) {
    tmp = fmt::format("{}.tmp-{}-{:016x}", path.string(), static_cast<long>(::getpid()), rng());
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0)
    throw InputError(fmt::format("cannot write '{}': {}", tmp.string(), std::strerror(errno)));
  const auto fail = [&](const std::string& what, int err) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return InputError(fmt::format("cannot {} '{}': {}", what, tmp.string(), std::strerror(err)));
  };
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw fail("write", errno);
    }
    done += static_cast<size_t>(n);
  }
  ::fsync(fd);
  ::close(fd);
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    ::unlink(tmp.c_str());
    throw InputError(fmt::format("cannot rename '{}' to '{}': {}", tmp.string(), path.string(),
                                 ec.message()));
  }
}

MetricsWriter::MetricsWriter(const fs::path& path) : path_(path) {
  // Appended to, never through a link (O_NOFOLLOW: ELOOP when metrics.jsonl is one).
  // O_RDWR: write() reads the last byte (Note [a line cut by a kill]).
  const int fd = ::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0666);
  if (fd >= 0) {
    file_ = ::fdopen(fd, "a");
    if (file_ == nullptr) ::close(fd);
  }
  if (file_ == nullptr)
    throw InputError(fmt::format("cannot open metrics file '{}': {}", path.string(),
                                 errno == ELOOP ? "it is a symbolic link; pft never writes "
                                                  "through a link in its run directory: remove it"
                                                : std::strerror(errno)));
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
  // Note [a line cut by a kill]: the buffer is empty here (every write is flushed), so the file's
  // size is what the kernel has.
  struct stat st {};
  char last = '\n';
  const bool cut = ::fstat(::fileno(file_), &st) == 0 && st.st_size > 0 &&
                   ::pread(::fileno(file_), &last, 1, st.st_size - 1) == 1 && last != '\n';
  const std::string line = (cut ? "\n" : "") + boost::json::serialize(record) + "\n";
  // One write(2) per line (a FILE* buffer would split a long line into several), so appenders
  // on one host never interleave within a line.
  const int fd = ::fileno(file_);
  for (size_t done = 0; done < line.size();) {
    const ssize_t n = ::write(fd, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      throw RuntimeFailure(fmt::format("cannot append to '{}': {}", path_.string(),
                                       std::strerror(errno)));
    done += static_cast<size_t>(n);
  }
}

}  // namespace pft
