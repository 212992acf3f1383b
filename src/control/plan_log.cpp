// The plan log (contract and Note [plan log]: control/plan_log.h).
#include "control/plan_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <utility>

#include "core/error.h"
#include "core/format.h"
#include "core/logging.h"

namespace pft {

namespace fs = std::filesystem;
namespace json = boost::json;

PlanLog to_columns(const std::deque<PlanRecord>& records, int64_t first_step, int64_t slots) {
  PlanLog log;
  log.first_step = records.empty() ? first_step : records.front().step;
  log.slots = slots;
  for (const PlanRecord& r : records) {
    PFT_ASSERT(static_cast<int64_t>(r.slot_task.size()) == slots &&
                   r.doc_example.size() == r.slot_task.size() &&
                   r.doc_template.size() == r.slot_task.size(),
               fmt::format("plan log: step {} has {} slot(s), the window {}", r.step,
                           r.slot_task.size(), slots));
    log.step.push_back(r.step);
    log.phase.push_back(r.phase);
    log.world_size.push_back(r.world_size);
    log.slot_task.insert(log.slot_task.end(), r.slot_task.begin(), r.slot_task.end());
    for (size_t j = 0; j < r.slot_task.size(); ++j) {
      PFT_ASSERT(r.doc_example[j].size() == r.doc_template[j].size(), "plan log: slot lengths");
      log.slot_docs.push_back(static_cast<int32_t>(r.doc_example[j].size()));
      log.doc_example.insert(log.doc_example.end(), r.doc_example[j].begin(),
                             r.doc_example[j].end());
      log.doc_template.insert(log.doc_template.end(), r.doc_template[j].begin(),
                              r.doc_template[j].end());
    }
  }
  return log;
}

std::vector<PlanRecord> to_records(const PlanLog& log) {
  const size_t steps = log.step.size();
  if (log.slots < 0 || log.phase.size() != steps || log.world_size.size() != steps ||
      log.slot_task.size() != steps * static_cast<size_t>(log.slots) ||
      log.slot_docs.size() != log.slot_task.size() ||
      log.doc_template.size() != log.doc_example.size())
    throw std::invalid_argument("its datasets have inconsistent lengths");
  std::vector<PlanRecord> out(steps);
  const auto slots = static_cast<size_t>(log.slots);
  size_t doc = 0;
  for (size_t i = 0; i < steps; ++i) {
    PlanRecord& r = out[i];
    r.step = log.step[i];
    r.phase = log.phase[i];
    r.world_size = log.world_size[i];
    r.slot_task.assign(log.slot_task.begin() + static_cast<ptrdiff_t>(i * slots),
                       log.slot_task.begin() + static_cast<ptrdiff_t>((i + 1) * slots));
    for (size_t j = 0; j < slots; ++j) {
      const int32_t n = log.slot_docs[i * slots + j];
      if (n < 0 || doc + static_cast<size_t>(n) > log.doc_example.size())
        throw std::invalid_argument("its slot_documents count more documents than it holds");
      const auto b = static_cast<ptrdiff_t>(doc), e = static_cast<ptrdiff_t>(doc + n);
      r.doc_example.emplace_back(log.doc_example.begin() + b, log.doc_example.begin() + e);
      r.doc_template.emplace_back(log.doc_template.begin() + b, log.doc_template.begin() + e);
      doc += static_cast<size_t>(n);
    }
  }
  if (doc != log.doc_example.size())
    throw std::invalid_argument("its slot_documents count fewer documents than it holds");
  return out;
}

std::string plan_line(const PlanRecord& r) {
  fmt::memory_buffer b;
  const auto nested = [&](const std::vector<std::vector<int32_t>>& v) {
    b.push_back('[');
    for (size_t j = 0; j < v.size(); ++j)
      fmt::format_to(std::back_inserter(b), "{}[{}]", j ? "," : "", fmt::join(v[j], ","));
    b.push_back(']');
  };
  fmt::format_to(std::back_inserter(b),
                 "{{\"step\":{},\"phase\":{},\"world_size\":{},\"slot_task\":[{}],"
                 "\"doc_example\":",
                 r.step, r.phase, r.world_size, fmt::join(r.slot_task, ","));
  nested(r.doc_example);
  fmt::format_to(std::back_inserter(b), ",\"doc_template\":");
  nested(r.doc_template);
  b.push_back('}');
  return fmt::to_string(b);
}

namespace {

int32_t int32_of(const json::value& v, const char* what) {
  const auto x = v.to_number<int64_t>();  // throws on a non-integer
  if (x < INT32_MIN || x > INT32_MAX)
    throw std::invalid_argument(fmt::format("{} {} is out of range", what, x));
  return static_cast<int32_t>(x);
}

std::vector<int32_t> ints_of(const json::value& v, const char* what) {
  std::vector<int32_t> out;
  for (const json::value& x : v.as_array()) out.push_back(int32_of(x, what));
  return out;
}

std::vector<std::vector<int32_t>> nested_of(const json::value& v, const char* what) {
  std::vector<std::vector<int32_t>> out;
  for (const json::value& x : v.as_array()) out.push_back(ints_of(x, what));
  return out;
}

// The step of a complete plan.jsonl line (it ends with '\n' and starts `{"step":N,`), or nullopt.
// The cheap check start() scans a whole file with.
std::optional<int64_t> line_step(std::string_view line) {
  constexpr std::string_view kPrefix = "{\"step\":";
  if (!line.ends_with("}\n") || !line.starts_with(kPrefix)) return std::nullopt;
  int64_t step = -1;
  const char* begin = line.data() + kPrefix.size();
  const auto r = std::from_chars(begin, line.data() + line.size(), step);
  if (r.ec != std::errc() || r.ptr == begin || *r.ptr != ',' || step < 0) return std::nullopt;
  return step;
}

std::string errno_text() { return std::strerror(errno); }

// getline(3) over a FILE*, freeing its buffer.
class LineReader {
 public:
  explicit LineReader(std::FILE* f) : f_(f) {}
  ~LineReader() { std::free(buf_); }
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;
  std::optional<std::string_view> next() {
    const ssize_t n = ::getline(&buf_, &cap_, f_);
    if (n <= 0) return std::nullopt;
    return std::string_view(buf_, static_cast<size_t>(n));
  }

 private:
  std::FILE* f_;
  char* buf_ = nullptr;
  size_t cap_ = 0;
};

}  // namespace

PlanRecord parse_plan_line(std::string_view line) {
  json::error_code ec;
  const json::value v = json::parse(line, ec);
  if (ec) throw std::invalid_argument("not JSON (" + ec.message() + ")");
  if (!v.is_object()) throw std::invalid_argument("not a JSON object");
  const json::object& o = v.as_object();
  PlanRecord r;
  try {
    r.step = o.at("step").to_number<int64_t>();
    r.phase = int32_of(o.at("phase"), "phase");
    r.world_size = int32_of(o.at("world_size"), "world_size");
    r.slot_task = ints_of(o.at("slot_task"), "slot_task");
    r.doc_example = nested_of(o.at("doc_example"), "doc_example");
    r.doc_template = nested_of(o.at("doc_template"), "doc_template");
  } catch (const std::invalid_argument&) {
    throw;
  } catch (const std::exception& e) {  // a missing key or a value of another type
    throw std::invalid_argument(
        fmt::format("not a plan record: it needs the integers step, phase, world_size and the "
                    "arrays slot_task, doc_example, doc_template ({})",
                    e.what()));
  }
  if (r.step < 0) throw std::invalid_argument(fmt::format("step {} is negative", r.step));
  if (r.doc_example.size() != r.slot_task.size() || r.doc_template.size() != r.slot_task.size())
    throw std::invalid_argument("doc_example and doc_template need one list per slot_task entry");
  for (size_t j = 0; j < r.slot_task.size(); ++j)
    if (r.doc_example[j].size() != r.doc_template[j].size())
      throw std::invalid_argument(
          fmt::format("slot {}: doc_example and doc_template differ in length", j));
  return r;
}

std::vector<PlanRecord> read_plan_file(const fs::path& path) {
  std::FILE* f = std::fopen(path.c_str(), "re");
  if (f == nullptr)
    throw InputError(fmt::format("cannot read plan log '{}': {}", path.string(), errno_text()));
  std::vector<PlanRecord> out;
  LineReader lines(f);
  int64_t n = 0;
  try {
    while (const std::optional<std::string_view> line = lines.next()) {
      ++n;
      out.push_back(parse_plan_line(*line));
    }
  } catch (const std::invalid_argument& e) {
    std::fclose(f);
    throw InputError(fmt::format("{}:{}: {}", path.string(), n, e.what()));
  }
  std::fclose(f);
  return out;
}

PlanRecorder::PlanRecorder(fs::path path, int64_t slots, size_t window_cap)
    : path_(std::move(path)), slots_(slots), cap_(window_cap < 1 ? 1 : window_cap) {}

PlanRecorder::~PlanRecorder() {
  if (file_ != nullptr) std::fclose(file_);
}

void PlanRecorder::start(int64_t first_step, const PlanLog* resumed) {
  PFT_ASSERT(file_ == nullptr, "plan log: start() called twice");
  // The checkpoint's window, down to the steps before the run's first (a log never holds more).
  std::vector<PlanRecord> window;
  int64_t from = first_step;  // lines of steps >= this are dropped
  if (resumed != nullptr) {
    try {
      window = to_records(*resumed);
    } catch (const std::invalid_argument& e) {
      throw InputError(fmt::format("the checkpoint's plan log (/controller/plan): {}", e.what()));
    }
    std::erase_if(window, [&](const PlanRecord& r) { return r.step >= first_step; });
    from = std::min(first_step, window.empty() ? resumed->first_step : window.front().step);
  }

  // Where the lines of steps before `from` end: every complete line of increasing steps.
  int64_t keep = 0, last = -1, dropped = 0, line_no = 0, bad_line = 0;
  bool existed = false;
  if (std::FILE* in = std::fopen(path_.c_str(), "re")) {
    existed = true;
    LineReader lines(in);
    bool cut = false;
    while (const std::optional<std::string_view> line = lines.next()) {
      ++line_no;
      const std::optional<int64_t> step = line_step(*line);
      if (!cut) {
        if (!step || *step <= last) {
          cut = true;
          if (line->ends_with('\n')) bad_line = line_no;  // a torn last line is expected
        } else if (*step >= from) {
          cut = true;
        } else {
          keep += static_cast<int64_t>(line->size());
          last = *step;
          continue;
        }
      }
      // Counted: lines of steps after the checkpoint (trained again) and a torn last line. Lines
      // of the window are replaced by the checkpoint's (the same lines); a bad line has its
      // warning.
      if (step ? *step >= first_step : !line->ends_with('\n')) ++dropped;
    }
    std::fclose(in);
  } else if (errno != ENOENT) {
    throw RuntimeFailure(
        fmt::format("cannot read plan log '{}': {}", path_.string(), errno_text()));
  }

  file_ = std::fopen(path_.c_str(), "ae");
  if (file_ == nullptr)
    throw RuntimeFailure(
        fmt::format("cannot open plan log '{}': {}", path_.string(), errno_text()));
  if (::ftruncate(::fileno(file_), static_cast<off_t>(keep)) != 0)
    throw RuntimeFailure(
        fmt::format("cannot truncate plan log '{}': {}", path_.string(), errno_text()));
  if (!existed) {  // the new name must survive a crash as the lines do
    const int dir = ::open(path_.parent_path().empty() ? "." : path_.parent_path().c_str(),
                           O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
      ::fsync(dir);
      ::close(dir);
    }
  }

  if (bad_line > 0)
    log::warn("plan log {}: line {} is not a plan record of a step after {}; it and the lines "
              "after it are dropped",
              path_.string(), bad_line, last);
  if (dropped > 0 && resumed == nullptr)
    log::info("plan log {}: this run starts at step {} (train.resume: none); the {} line(s) of an "
              "earlier run are dropped",
              path_.string(), first_step, dropped);
  else if (dropped > 0)
    log::info("plan log {}: {} line(s) after step {} are dropped (written after the checkpoint; "
              "this run trains those steps again)",
              path_.string(), dropped, first_step - 1);
  const int64_t window_first = window.empty() ? first_step : window.front().step;
  if (resumed != nullptr && last + 1 < window_first)
    log::warn("plan log {}: steps {}..{} are not in it (lines removed, or the checkpoint comes "
              "from another run directory, whose plan.jsonl holds them); it continues from step {}",
              path_.string(), last + 1, window_first - 1, window_first);
  for (const PlanRecord& r : window) append_line(r);
  written_to_ = first_step;
  sync();
}

void PlanRecorder::append_line(const PlanRecord& r) {
  const std::string line = plan_line(r) + "\n";
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0)
    throw RuntimeFailure(fmt::format("cannot append to plan log '{}': {}", path_.string(),
                                     errno_text()));
}

void PlanRecorder::sync() {
  if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0)
    throw RuntimeFailure(
        fmt::format("cannot write plan log '{}' to disk: {}", path_.string(), errno_text()));
}

void PlanRecorder::write_before(int64_t step) {
  size_t i = window_.size();
  while (i > 0 && window_[i - 1].step >= written_to_) --i;
  for (; i < window_.size() && window_[i].step < step; ++i) {
    append_line(window_[i]);
    written_to_ = window_[i].step + 1;
  }
}

void PlanRecorder::record(PlanRecord r) {
  PFT_ASSERT(file_ != nullptr, "plan log: record() before start()");
  write_before(r.step);
  window_.push_back(std::move(r));
  // What leaves the window is in the file: write_before wrote every step before this one.
  while (window_.size() > cap_) window_.pop_front();
}

PlanLog PlanRecorder::save(int64_t steps_done) {
  PFT_ASSERT(file_ != nullptr, "plan log: save() before start()");
  write_before(steps_done);
  sync();
  PlanLog out = to_columns(window_, steps_done, slots_);
  window_.clear();
  return out;
}

}  // namespace pft
