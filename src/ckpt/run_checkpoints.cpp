// A run's checkpoints directory (contract: ckpt/run_checkpoints.h).
#include "ckpt/run_checkpoints.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>

#include "ckpt/contents.h"
#include "ckpt/format.h"
#include "ckpt/reader.h"
#include "ckpt/writer.h"
#include "core/error.h"
#include "core/format.h"

namespace pft::ckpt {

namespace fs = std::filesystem;

namespace {
constexpr std::string_view kPrefix = "step_";
constexpr std::string_view kSuffix = ".h5";
constexpr const char* kLatest = "latest";

// One spelling per file, so a protected path matches however the caller wrote it.
fs::path canon(const fs::path& p) {
  std::error_code ec;
  fs::path c = fs::weakly_canonical(p, ec);
  return ec ? p.lexically_normal() : c;
}
}  // namespace

std::string checkpoint_file_name(int64_t step) { return fmt::format("step_{:08d}.h5", step); }

std::optional<int64_t> parse_checkpoint_step(const std::string& name) {
  if (name.size() <= kPrefix.size() + kSuffix.size() || name.rfind(kPrefix, 0) != 0 ||
      name.compare(name.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0)
    return std::nullopt;
  const std::string digits =
      name.substr(kPrefix.size(), name.size() - kPrefix.size() - kSuffix.size());
  if (digits.empty() || digits.size() > 18 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  return std::stoll(digits);
}

std::vector<ListedCheckpoint> list_checkpoints(const fs::path& dir) {
  std::vector<ListedCheckpoint> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::optional<int64_t> step = parse_checkpoint_step(e.path().filename().string());
    // symlink_status: a link is never a checkpoint (Note [files of the checkpoints directory]).
    if (step && fs::is_regular_file(e.symlink_status(ec))) out.push_back({e.path(), *step});
  }
  std::sort(out.begin(), out.end(),
            [](const ListedCheckpoint& a, const ListedCheckpoint& b) { return a.step > b.step; });
  return out;
}

std::optional<std::string> read_latest(const fs::path& dir) {
  const fs::path path = dir / kLatest;
  std::error_code ec;
  if (fs::is_symlink(fs::symlink_status(path, ec)))
    throw InputError(fmt::format(
        "{} is a symbolic link (to '{}'); pft writes `latest` as a plain file and never follows a "
        "link out of its checkpoints directory: remove it (the next save writes it again), or "
        "name the checkpoint file itself",
        path.string(), fs::read_symlink(path, ec).string()));
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::string name;
  std::getline(in, name);
  while (!name.empty() && (name.back() == '\r' || name.back() == ' ')) name.pop_back();
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
    return std::nullopt;
  if (fs::is_symlink(fs::symlink_status(dir / name, ec)))
    throw InputError(fmt::format(
        "{} names {}, which is a symbolic link (to '{}'); pft reads only the checkpoint files it "
        "wrote, never a link: remove the link, or name the checkpoint file itself",
        path.string(), name, fs::read_symlink(dir / name, ec).string()));
  return name;
}

void write_latest(const fs::path& dir, const std::string& file_name) {
  const fs::path tmp = dir / fmt::format(".{}.tmp-{}", kLatest, static_cast<long>(::getpid()));
  const std::string text = file_name + "\n";
  ::unlink(tmp.c_str());  // a leftover (or a planted link): never written through
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
  if (fd < 0)
    throw RuntimeFailure(
        fmt::format("checkpoint: cannot write '{}': {}", tmp.string(), std::strerror(errno)));
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
                  ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), (dir / kLatest).c_str()) != 0) {
    const int err2 = ok ? errno : err;
    ::unlink(tmp.c_str());
    throw RuntimeFailure(fmt::format("checkpoint: cannot update '{}': {}", (dir / kLatest).string(),
                                     std::strerror(err2)));
  }
  fsync_directory(dir);
}

std::vector<std::string> remove_stale_temporaries(const fs::path& dir) {
  std::vector<std::string> removed;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return removed;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() > 1 && name[0] == '.' && name.find(".tmp-") != std::string::npos) {
      std::error_code rm;
      if (fs::remove(e.path(), rm)) removed.push_back(name);
    }
  }
  return removed;
}

Pick pick_newest(const fs::path& dir, const std::function<std::string(const fs::path&)>& try_use) {
  Pick pick;
  for (const ListedCheckpoint& c : list_checkpoints(dir)) {
    const std::string reason = try_use(c.path);
    if (reason.empty()) {
      pick.path = c.path;
      pick.step = c.step;
      return pick;
    }
    pick.skipped.push_back(fmt::format("{}: {}", c.path.string(), reason));
  }
  return pick;
}

std::vector<fs::path> apply_retention(const fs::path& dir, const RetentionPolicy& policy,
                                      const std::set<fs::path>& protect) {
  const std::vector<ListedCheckpoint> all = list_checkpoints(dir);
  std::set<fs::path> keep;
  for (const fs::path& p : protect) keep.insert(canon(p));
  if (const auto latest = read_latest(dir)) keep.insert(canon(dir / *latest));

  // Every file's /meta is read (small): the newest keep_last and the best keep_best are counted
  // among the files that open as pft checkpoints; the others are kept and count for neither.
  std::vector<std::pair<double, fs::path>> scored;
  const std::string attr = std::string(kMetricAttrPrefix) + policy.best_metric;
  int64_t newest = 0;
  for (const ListedCheckpoint& c : all) {  // newest first
    try {
      ReadOptions ro;
      ro.file_locking = policy.file_locking;
      ro.select = [](const std::string&) { return false; };
      const Contents meta = read_checkpoint(c.path, ro);
      if (newest++ < policy.keep_last) keep.insert(canon(c.path));
      const Attrs& a = meta.group_attrs(kMeta);
      if (a.count(attr) > 0) scored.emplace_back(attr_double(a, attr, kMeta), c.path);
    } catch (const std::exception&) {
      keep.insert(canon(c.path));  // cannot judge it (not pft's, or damaged): keep it
    }
  }
  std::stable_sort(scored.begin(), scored.end(), [&](const auto& a, const auto& b) {
    return policy.higher_is_better ? a.first > b.first : a.first < b.first;
  });
  for (size_t i = 0; i < scored.size() && static_cast<int64_t>(i) < policy.keep_best; ++i)
    keep.insert(canon(scored[i].second));

  std::vector<fs::path> deleted;
  for (const ListedCheckpoint& c : all) {
    if (keep.count(canon(c.path)) > 0) continue;
    std::error_code ec;
    if (fs::remove(c.path, ec)) deleted.push_back(c.path);
  }
  if (!deleted.empty()) fsync_directory(dir);
  return deleted;
}

}  // namespace pft::ckpt
