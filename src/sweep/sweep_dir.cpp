#include "sweep/sweep_dir.h"

#include <fmt/format.h>
#include <xxhash.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <cmath>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace pft::sweep {

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

constexpr const char* kCopyHeader = "# pft sweep ";

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

SweepDir::SweepDir(fs::path root) : root_(fs::absolute(root).lexically_normal()) {}

void SweepDir::create() const {
  std::error_code ec;
  fs::create_directories(root_ / "trials", ec);
  if (ec)
    throw InputError(fmt::format("cannot create the sweep directory '{}': {}; choose a writable "
                                 "--dir",
                                 root_.string(), ec.message()));
}

void SweepDir::lock(const std::string& job) {
  RunDir dir(root_, /*create=*/false);
  try {
    dir.lock(job);
  } catch (const InputError& e) {
    throw InputError(fmt::format("sweep directory {} is in use by another `pft sweep run` ({}). "
                                 "Wait for it to end, or give this sweep another --dir",
                                 root_.string(), e.what()));
  }
  lock_ = std::move(dir);
}

std::string sweep_hash(const SweepSpec& spec, const std::vector<Config>& configs) {
  XXH3_state_t* state = XXH3_createState();
  XXH3_128bits_reset(state);
  const auto feed = [&](const std::string& s) {
    const uint64_t n = s.size();
    XXH3_128bits_update(state, &n, sizeof n);
    XXH3_128bits_update(state, s.data(), s.size());
  };
  feed(spec.text);
  for (const Config& c : configs) feed(to_yaml(c));
  const XXH128_hash_t h = XXH3_128bits_digest(state);
  XXH3_freeState(state);
  return fmt::format("xxh3-128:{:016x}{:016x}", h.high64, h.low64);
}

std::string SweepDir::recorded_hash() const {
  std::ifstream in(sweep_copy());
  std::string line;
  if (!std::getline(in, line) || !line.starts_with(kCopyHeader)) return "";
  std::istringstream words(line.substr(std::string(kCopyHeader).size()));
  std::string hash;
  words >> hash;
  return hash;
}

void SweepDir::record_or_check_identity(const SweepSpec& spec, const std::string& hash) const {
  std::error_code ec;
  if (fs::exists(sweep_copy(), ec)) {
    const std::string recorded = recorded_hash();
    if (recorded == hash) return;
    throw InputError(fmt::format(
        "sweep directory {} holds another sweep: its sweep.yaml has hash {}, {} with its base "
        "config and trials gives {} (the sweep file, its base config or a file it composes "
        "changed since that sweep started). Rerun with the files it started from (a copy is "
        "{}), or give this sweep another --dir",
        root_.string(), recorded.empty() ? "(none)" : recorded, spec.file.string(), hash,
        sweep_copy().string()));
  }
  RunDir::write_file_atomic(sweep_copy(), fmt::format("{}{} {}\n{}", kCopyHeader, hash,
                                                      fs::absolute(spec.file).string(), spec.text));
}

SweepSpec SweepDir::load_spec() const {
  std::error_code ec;
  if (!fs::is_regular_file(sweep_copy(), ec))
    throw InputError(fmt::format("'{}' is not a sweep directory: it has no sweep.yaml (written "
                                 "by `pft sweep run`)",
                                 root_.string()));
  const std::string text = read_text(sweep_copy());
  const size_t eol = text.find('\n');
  const std::string header = text.substr(0, eol);
  if (!header.starts_with(kCopyHeader) || eol == std::string::npos)
    throw InputError(fmt::format("{}:1: not a sweep copy written by pft sweep (its first line "
                                 "should start with '{}')",
                                 sweep_copy().string(), kCopyHeader));
  std::istringstream words(header.substr(std::string(kCopyHeader).size()));
  std::string hash, file;
  words >> hash;
  std::getline(words >> std::ws, file);
  return parse_sweep_text(text.substr(eol + 1), file);
}

// ---- sweep.jsonl -----------------------------------------------------------------------------

bool is_final(const std::string& kind) {
  return kind == "finished" || kind == "failed" || kind == "stopped";
}

void EventLog::write(const TrialEvent& e) {
  json::object o;
  o["kind"] = e.kind;
  if (!e.trial.empty()) o["trial"] = e.trial;
  if (!e.params.empty()) {
    json::object p;
    for (const auto& [k, v] : e.params) p[k] = v;
    o["params"] = std::move(p);
  }
  if (e.step) o["step"] = *e.step;
  // JSON has no NaN: a diverged trial's objective is null, so every reader can parse the log.
  if (e.objective) {
    if (std::isfinite(*e.objective)) {
      o["objective"] = *e.objective;
    } else {
      o["objective"] = nullptr;
    }
  }
  if (!e.message.empty()) o["message"] = e.message;
  if (e.exit_code) o["exit_code"] = *e.exit_code;
  for (const auto& kv : e.extra) o[kv.key()] = kv.value();
  writer_.write(std::move(o));
}

std::optional<json::object> parse_json_line(const std::string& line) {
  json::error_code ec;
  json::value v = json::parse(line, ec);
  if (ec) {
    // NaN / Infinity / -Infinity (Boost.JSON's non-finite doubles) outside strings -> null.
    std::string fixed;
    bool in_string = false;
    for (size_t i = 0; i < line.size(); ++i) {
      const char c = line[i];
      if (in_string) {
        fixed += c;
        if (c == '\\' && i + 1 < line.size()) fixed += line[++i];
        else if (c == '"') in_string = false;
        continue;
      }
      if (c == '"') in_string = true;
      bool replaced = false;
      for (const char* word : {"-Infinity", "Infinity", "NaN"}) {
        if (line.compare(i, std::char_traits<char>::length(word), word) == 0) {
          fixed += "null";
          i += std::char_traits<char>::length(word) - 1;
          replaced = true;
          break;
        }
      }
      if (!replaced) fixed += c;
    }
    ec = {};
    v = json::parse(fixed, ec);
    if (ec) return std::nullopt;
  }
  if (!v.is_object()) return std::nullopt;
  return std::move(v.as_object());
}

std::vector<TrialEvent> read_events(const fs::path& path) {
  std::vector<TrialEvent> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    std::optional<json::object> o = parse_json_line(line);
    if (!o || !o->contains("kind") || !o->at("kind").is_string()) continue;
    TrialEvent e;
    for (auto& kv : *o) {
      const std::string key(kv.key());
      const json::value& v = kv.value();
      if (key == "kind") e.kind = v.as_string().c_str();
      else if (key == "trial" && v.is_string()) e.trial = v.as_string().c_str();
      else if (key == "params" && v.is_object()) {
        for (const auto& p : v.as_object())
          if (p.value().is_string()) e.params.emplace_back(p.key(), p.value().as_string().c_str());
      } else if (key == "step" && v.is_int64()) e.step = v.as_int64();
      else if (key == "objective" && v.is_number()) e.objective = v.to_number<double>();
      else if (key == "objective" && v.is_null()) e.objective = std::nan("");
      else if (key == "message" && v.is_string()) e.message = v.as_string().c_str();
      else if (key == "exit_code" && v.is_int64()) e.exit_code = static_cast<int>(v.as_int64());
      else if (key == "time" && v.is_number()) e.time = v.to_number<double>();
      else e.extra[key] = v;
    }
    out.push_back(std::move(e));
  }
  return out;
}

std::map<std::string, TrialEvent> last_events(const std::vector<TrialEvent>& events) {
  std::map<std::string, TrialEvent> out;
  for (const TrialEvent& e : events)
    if (!e.trial.empty()) out[e.trial] = e;
  return out;
}

}  // namespace pft::sweep
