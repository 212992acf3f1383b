#include "train/tensorboard.h"

#include <fcntl.h>
#include <unistd.h>

#include <boost/crc.hpp>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "core/error.h"
#include "core/format.h"
#include "core/logging.h"
#include "train/tensorboard_event.pb.h"  // generated from train/tensorboard_event.proto

namespace pft {

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

std::optional<double> number_of(const json::value& v) {
  if (v.is_double()) return v.get_double();
  if (v.is_int64()) return static_cast<double>(v.get_int64());
  if (v.is_uint64()) return static_cast<double>(v.get_uint64());
  return std::nullopt;  // null (non-finite), boolean, string, array, object
}

// prefix/<field> for every numeric field but step and time (and `skip`).
void add_fields(const json::object& record, const std::string& prefix,
                std::vector<TensorBoardScalar>& out,
                std::initializer_list<std::string_view> skip = {}) {
  for (const auto& kv : record) {
    const std::string_view key = kv.key();
    if (key == "step" || key == "time" || key == "kind") continue;
    bool skipped = false;
    for (std::string_view s : skip) skipped = skipped || s == key;
    if (skipped) continue;
    if (const auto x = number_of(kv.value())) out.push_back({prefix + "/" + std::string(key), *x});
  }
}

std::string string_field(const json::object& record, std::string_view key) {
  const json::value* v = record.if_contains(key);
  return v != nullptr && v->is_string() ? std::string(v->get_string()) : std::string();
}

}  // namespace

std::optional<TensorBoardPoint> tensorboard_scalars(const json::object& record,
                                                    const std::vector<std::string>& task_names) {
  const std::string kind = string_field(record, "kind");
  const json::value* step = record.if_contains("step");
  if (step == nullptr || !step->is_int64()) return std::nullopt;  // start: no step
  TensorBoardPoint p;
  p.step = step->get_int64();
  if (kind == "train") {
    add_fields(record, "train", p.scalars);
    // The per-task arrays, in data.tasks order (the synthetic tasks' names otherwise).
    for (const auto& [field, tag] :
         {std::pair{"task_loss", "loss"}, std::pair{"task_tokens", "target_tokens"}}) {
      const json::value* a = record.if_contains(field);
      if (a == nullptr || !a->is_array()) continue;
      const json::array& values = a->get_array();
      for (size_t k = 0; k < values.size() && k < task_names.size(); ++k)
        if (const auto x = number_of(values[k]))
          p.scalars.push_back({fmt::format("train/{}/{}", tag, task_names[k]), *x});
    }
  } else if (kind == "eval") {
    const std::string task = string_field(record, "task");
    const json::value* tmpl = record.if_contains("template");
    const bool all = tmpl != nullptr && tmpl->is_string();  // "all"; else the template's index
    add_fields(record,
               all ? "eval/" + task : "eval/" + task + "/" + string_field(record, "template_name"),
               p.scalars, {"template"});
  } else if (kind == "mixture") {
    const json::value* w = record.if_contains("weights");
    if (w != nullptr && w->is_object()) add_fields(w->get_object(), "mixture", p.scalars);
  } else if (kind == "phase") {
    if (const json::value* i = record.if_contains("index"))
      if (const auto x = number_of(*i)) p.scalars.push_back({"schedule/phase", *x});
  } else if (kind == "checkpoint" || kind == "end") {
    add_fields(record, kind, p.scalars);
  } else {
    return std::nullopt;  // resume, stopped, preempted, eval_summary
  }
  return p;
}

uint32_t tfrecord_masked_crc32c(std::string_view bytes) {
  // CRC-32C (Castagnoli): polynomial 0x1EDC6F41, init and final xor 0xFFFFFFFF, reflected in
  // and out; crc32c("123456789") = 0xE3069283 (tests/train/tensorboard_test.cpp checks it).
  boost::crc_optimal<32, 0x1EDC6F41, 0xFFFFFFFF, 0xFFFFFFFF, true, true> crc;
  crc.process_bytes(bytes.data(), bytes.size());
  const uint32_t c = crc.checksum();
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

template <class T>
void put_le(std::string& out, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

std::string host_name() {
  std::array<char, 256> buf{};
  if (::gethostname(buf.data(), buf.size() - 1) != 0) return "localhost";
  std::string h(buf.data());
  for (char& c : h)
    if (c == '/') c = '_';
  return h.empty() ? "localhost" : h;
}

}  // namespace

EventFileWriter::EventFileWriter(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    throw InputError(
        fmt::format("run.tensorboard: cannot create '{}': {}", dir.string(), ec.message()));
  // Note [TensorBoard and resume]: a new file per process, named by its start time (TensorBoard
  // reads a directory's event files in name order); the pid tells apart two starts in a second.
  const auto seconds = static_cast<int64_t>(now_s());
  path_ = dir / fmt::format("events.out.tfevents.{:010d}.{}.{}", seconds, host_name(), ::getpid());
  const int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
  if (fd >= 0) {
    file_ = ::fdopen(fd, "wb");
    if (file_ == nullptr) ::close(fd);
  }
  if (file_ == nullptr)
    throw InputError(fmt::format("run.tensorboard: cannot create the event file '{}': {}",
                                 path_.string(), std::strerror(errno)));
  tensorboard::Event e;
  e.set_wall_time(now_s());
  e.set_file_version("brain.Event:2");
  write_record(e.SerializeAsString());
  flush();
}

EventFileWriter::~EventFileWriter() {
  if (file_ == nullptr) return;
  if (std::fflush(file_) != 0)
    log::error("cannot write the TensorBoard event file '{}': {}", path_.string(),
               std::strerror(errno));
  std::fclose(file_);
}

void EventFileWriter::write_record(const std::string& data) {
  std::string header;
  put_le<uint64_t>(header, data.size());
  std::string footer;
  put_le<uint32_t>(header, tfrecord_masked_crc32c(std::string_view(header.data(), 8)));
  put_le<uint32_t>(footer, tfrecord_masked_crc32c(data));
  if (std::fwrite(header.data(), 1, header.size(), file_) != header.size() ||
      std::fwrite(data.data(), 1, data.size(), file_) != data.size() ||
      std::fwrite(footer.data(), 1, footer.size(), file_) != footer.size())
    throw RuntimeFailure(fmt::format("cannot write the TensorBoard event file '{}': {}",
                                     path_.string(), std::strerror(errno)));
}

void EventFileWriter::add_scalars(int64_t step, double wall_time,
                                  const std::vector<TensorBoardScalar>& scalars) {
  tensorboard::Event e;
  e.set_wall_time(wall_time);
  e.set_step(step);
  tensorboard::Summary* summary = e.mutable_summary();
  for (const TensorBoardScalar& s : scalars) {
    tensorboard::Summary::Value* v = summary->add_value();
    v->set_tag(s.tag);
    v->set_simple_value(static_cast<float>(s.value));
  }
  write_record(e.SerializeAsString());
}

void EventFileWriter::add_session_start(int64_t step, double wall_time) {
  tensorboard::Event e;
  e.set_wall_time(wall_time);
  e.set_step(step);
  e.mutable_session_log()->set_status(tensorboard::SessionLog::START);
  write_record(e.SerializeAsString());
}

void EventFileWriter::flush() {
  if (std::fflush(file_) != 0)
    throw RuntimeFailure(fmt::format("cannot write the TensorBoard event file '{}': {}",
                                     path_.string(), std::strerror(errno)));
}

namespace {

// Whether `dir` holds event files of an earlier process (before this one creates its own).
bool has_event_files(const fs::path& dir) {
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->path().filename().string().starts_with("events.out.tfevents.")) return true;
  return false;
}

}  // namespace

TensorBoardWriter::TensorBoardWriter(const fs::path& dir, std::vector<std::string> task_names)
    : continues_(has_event_files(dir)), file_(dir), task_names_(std::move(task_names)) {}

void TensorBoardWriter::add(const json::object& record) {
  const json::value* t = record.if_contains("time");
  const double wall_time = t != nullptr && t->is_double() ? t->get_double() : now_s();
  const std::string kind = string_field(record, "kind");
  if (kind == "resume") {
    // Note [TensorBoard and resume]: the first step this process writes is the checkpoint's + 1.
    if (const json::value* step = record.if_contains("step"); step && step->is_int64()) {
      resumed_at_ = step->get_int64();
      file_.add_session_start(*resumed_at_ + 1, wall_time);
    }
    return;
  }
  const std::optional<TensorBoardPoint> p = tensorboard_scalars(record, task_names_);
  // The schedule's state at the checkpoint, restated by the resumed run: an earlier file of this
  // directory has it at that step already (Note [TensorBoard and resume]).
  if (p && continues_ && resumed_at_ && p->step <= *resumed_at_ &&
      (kind == "phase" || kind == "mixture"))
    return;
  if (p && !p->scalars.empty()) file_.add_scalars(p->step, wall_time, p->scalars);
}

}  // namespace pft
