// Config records in checkpoints (contract: ckpt/config_record.h).
#include "ckpt/config_record.h"

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <map>
#include <set>

#include "core/error.h"
#include "core/format.h"

namespace pft::ckpt {

namespace {

std::string text_of(bool v) { return v ? "true" : "false"; }
std::string text_of(int v) { return std::to_string(v); }
std::string text_of(int64_t v) { return std::to_string(v); }
std::string text_of(double v) { return fmt::format("{}", v); }
std::string text_of(const std::string& v) { return v; }
template <config::TextValue T>  // enum-valued keys: their word (config/schema.h)
std::string text_of(const T& v) {
  return std::string(config_text(v));
}
template <class T>
std::string text_of(const std::vector<T>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + text_of(v[i]);
  return out;
}

// A describe() visitor that records every key path with its value as text.
class Flattener {
 public:
  Flattener(FlatConfig& out, std::string prefix) : out_(out), prefix_(std::move(prefix)) {}

  template <class T>
  void field(const char* key, T& value, const char*, const config::Check& = {}) {
    out_[join(key)] = text_of(value);
  }
  template <class S>
  void section(const char* key, S& s, const char*) {
    Flattener sub(out_, join(key));
    describe(sub, s);
  }
  template <class S>
  void list(const char* key, std::vector<S>& items, const char*, bool = false) {
    for (size_t i = 0; i < items.size(); ++i) {
      Flattener sub(out_, join(key) + "[" + std::to_string(i) + "]");
      describe(sub, items[i]);
    }
  }

 private:
  std::string join(const char* key) const { return prefix_.empty() ? key : prefix_ + "." + key; }
  FlatConfig& out_;
  std::string prefix_;
};

}  // namespace

FlatConfig flatten_config(const Config& config) {
  FlatConfig out;
  Config copy = config;  // describe() takes non-const references
  Flattener f(out, "");
  describe(f, copy);
  return out;
}

FlatConfig architecture_keys(const Config& config) {
  const FlatConfig flat = flatten_config(config);
  FlatConfig arch;
  for (const auto& [k, v] : flat) {
    if (k.rfind("model.", 0) == 0 && k != "model.from_pretrained" && k != "model.init_std")
      arch[k] = v;
  }
  arch["model.n_kv_heads"] = std::to_string(resolved_kv_heads(config.model));
  arch["model.d_ff"] = std::to_string(resolved_d_ff(config.model));
  arch["data.tokenizer"] = config.data.tokenizer;
  arch["train.method"] = config::config_text(config.train.method);
  return arch;
}

std::string flat_to_json(const FlatConfig& flat) {
  boost::json::object o;
  for (const auto& [k, v] : flat) o[k] = v;
  return boost::json::serialize(o);
}

FlatConfig flat_from_json(const std::string& json, const std::string& where) {
  FlatConfig out;
  try {
    const boost::json::value parsed = boost::json::parse(json);
    for (const auto& [k, v] : parsed.as_object()) out[std::string(k)] = std::string(v.as_string());
  } catch (const std::exception& e) {
    throw InputError(fmt::format("{}: not a JSON object of strings ({})", where, e.what()));
  }
  return out;
}

std::vector<ConfigChange> diff_flat(const FlatConfig& saved, const FlatConfig& current) {
  std::set<std::string> keys;
  for (const auto& kv : saved) keys.insert(kv.first);
  for (const auto& kv : current) keys.insert(kv.first);
  std::vector<ConfigChange> out;
  for (const std::string& k : keys) {
    const auto s = saved.find(k);
    const auto c = current.find(k);
    const std::string sv = s == saved.end() ? "(absent)" : s->second;
    const std::string cv = c == current.end() ? "(absent)" : c->second;
    if (sv != cv) out.push_back({k, sv, cv});
  }
  return out;
}

// Architecture keys added after checkpoints were first written, with the value every file
// written before them had (what they ran with, the key not existing yet). A file without the
// key is read as holding this value, so an upgrade does not strand runs it can resume.
static const std::map<std::string, std::string>& architecture_keys_added_later() {
  static const std::map<std::string, std::string> added = {
      {"model.base_dtype", "fp32"},  // issue 20: the frozen base's storage dtype
  };
  return added;
}

std::vector<ConfigChange> check_resume_config(const std::string& file, const FlatConfig& saved_arch,
                                              const FlatConfig& saved_flat, const Config& current) {
  FlatConfig saved = saved_arch;
  for (const auto& [key, value] : architecture_keys_added_later()) saved.emplace(key, value);
  const std::vector<ConfigChange> arch = diff_flat(saved, architecture_keys(current));
  if (!arch.empty()) {
    std::string list;
    for (const ConfigChange& c : arch)
      list += fmt::format("{}{} {} -> {}", list.empty() ? "" : ", ", c.key, c.saved, c.current);
    throw InputError(fmt::format(
        "checkpoint {}: resuming would change the architecture or tokenizer ({}); a checkpoint "
        "resumes only the model it holds: restore these keys, or start a new run.dir",
        file, list));
  }
  std::vector<ConfigChange> other;
  for (ConfigChange& c : diff_flat(saved_flat, flatten_config(current)))
    if (saved.count(c.key) == 0 && c.key != "train.resume") other.push_back(std::move(c));
  return other;
}

}  // namespace pft::ckpt
