// The machinery that binds YAML trees to typed config structs.
//
// Each config struct has one `describe(V& v, S& s)` function template listing its keys once:
//
//   template <class V> void describe(V& v, TrainConfig& c) {
//     v.field("steps", c.steps, "Optimizer steps to run.", at_least(1));
//   }
//
// and every consumer is a visitor over that list: Reader (YAML -> struct, with errors naming
// file:line:col and the key path), Writer (struct -> resolved YAML) and DocWriter (the
// reference table in docs/config.md). Adding a key is one line; it is parsed, validated,
// printed and documented from there.
#pragma once

#include <yaml-cpp/emitter.h>

#include <concepts>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "config/tree.h"

namespace pft::config {

// Constraints on a scalar field. Numbers: [min, max] (min exclusive when `min_exclusive`).
// Strings: one of `choices` when non-empty.
struct Check {
  std::optional<double> min;
  std::optional<double> max;
  bool min_exclusive = false;
  std::vector<std::string> choices;
  bool required = false;

  Check& req() {
    required = true;
    return *this;
  }
};
inline Check at_least(double lo) { return Check{lo, std::nullopt, false, {}, false}; }
inline Check greater_than(double lo) { return Check{lo, std::nullopt, true, {}, false}; }
inline Check in_range(double lo, double hi) { return Check{lo, hi, false, {}, false}; }
inline Check one_of(std::vector<std::string> c) {
  return Check{std::nullopt, std::nullopt, false, std::move(c), false};
}
inline Check required() { return Check{}.req(); }

// key path -> where its value came from. Filled by Reader, used by later validation to point at
// the line to edit.
using SourceMap = std::map<std::string, Source>;

// Throws InputError "<src>: error: <path>: <what>".
[[noreturn]] void fail(const Source& src, const std::string& path, const std::string& what);

// Closest candidate to `word` by edit distance, or "" when nothing is close.
std::string suggest(const std::string& word, const std::vector<std::string>& candidates);

// ---- scalar conversions (definitions in schema.cpp) ----------------------------------------
void parse_scalar(const Node& n, const std::string& path, bool& out);
void parse_scalar(const Node& n, const std::string& path, int& out);
void parse_scalar(const Node& n, const std::string& path, int64_t& out);
void parse_scalar(const Node& n, const std::string& path, double& out);
void parse_scalar(const Node& n, const std::string& path, std::string& out);
void parse_scalar(const Node& n, const std::string& path, std::vector<std::string>& out);
void parse_scalar(const Node& n, const std::string& path, std::vector<double>& out);
void parse_scalar(const Node& n, const std::string& path, std::vector<int64_t>& out);
void check_value(const Node& n, const std::string& path, double v, const Check& c);
void check_value(const Node& n, const std::string& path, const std::string& v, const Check& c);
template <class T>
void check_value(const Node&, const std::string&, const T&, const Check&) {}
inline void check_value(const Node& n, const std::string& path, int v, const Check& c) {
  check_value(n, path, static_cast<double>(v), c);
}
inline void check_value(const Node& n, const std::string& path, int64_t v, const Check& c) {
  check_value(n, path, static_cast<double>(v), c);
}

std::string type_name(const bool&);
std::string type_name(const int&);
std::string type_name(const int64_t&);
std::string type_name(const double&);
std::string type_name(const std::string&);
std::string type_name(const std::vector<std::string>&);
std::string type_name(const std::vector<double>&);
std::string type_name(const std::vector<int64_t>&);

// ---- Enum-valued keys ----------------------------------------------------------------------
// A key whose value is one of a fixed set of words is parsed once, here, into a C++ enum; code
// below config/ compares enums, never strings. Declare the enum and its words beside the struct
// that holds it, and the Reader, the Writer and the docs use them:
//
//   enum class Method { kFull, kLora };
//   inline constexpr config::EnumWord<Method> kMethodWords[] = {{Method::kFull, "full"}, ...};
//   constexpr std::span<const config::EnumWord<Method>> enum_words(Method) { return kMethodWords; }
//
// A value outside the words is refused naming the key, the words and the closest one. Keys
// that are words or free text (train.resume: none, auto or a file) use the same three hooks
// found by argument-dependent lookup: parse_scalar(node, path, value&), config_text(value) and
// type_name(value).
template <class E>
struct EnumWord {
  E value;
  const char* word;
};

template <class E>
concept ConfigEnum = std::is_enum_v<E> && requires(E e) { enum_words(e); };

// The words of E, in declaration order.
template <ConfigEnum E>
std::vector<std::string> enum_choices() {
  std::vector<std::string> out;
  for (const EnumWord<E>& w : enum_words(E{})) out.emplace_back(w.word);
  return out;
}

// The word of `value` ("?" for a value outside the table).
template <ConfigEnum E>
const char* config_text(E value) {
  for (const EnumWord<E>& w : enum_words(value))
    if (w.value == value) return w.word;
  return "?";
}

template <ConfigEnum E>
void parse_scalar(const Node& n, const std::string& path, E& out) {
  std::string word;
  parse_scalar(n, path, word);
  for (const EnumWord<E>& w : enum_words(out)) {
    if (word == w.word) {
      out = w.value;
      return;
    }
  }
  check_value(n, path, word, one_of(enum_choices<E>()));  // throws, listing the words
}

template <ConfigEnum E>
std::string type_name(const E&) {
  return "string";
}

// A value written as text in YAML (enums, and types with their own config_text).
template <class T>
concept TextValue = requires(const T& v) {
  { config_text(v) } -> std::convertible_to<std::string>;
};

// ---- Reader --------------------------------------------------------------------------------
class Reader {
 public:
  // `map` must be a mapping (or null: all defaults). `prefix` is the key path of `map` ("" at
  // the top). `owner` is the source to blame for missing keys.
  Reader(const Node* map, std::string prefix, Source owner, SourceMap& sources,
         std::vector<std::string>* missing = nullptr);

  template <class T>
  void field(const char* key, T& value, const char* /*doc*/, const Check& check = {}) {
    known_.push_back(key);
    const std::string path = join(key);
    const Node* n = lookup(key);
    if (n == nullptr || n->is_null()) {
      if (check.required) missing(path, key);
      return;
    }
    sources_[path] = n->source();
    parse_scalar(*n, path, value);
    check_value(*n, path, value, check);
  }

  template <class S>
  void section(const char* key, S& s, const char* /*doc*/) {
    known_.push_back(key);
    const std::string path = join(key);
    const Node* n = lookup(key);
    if (n != nullptr && !n->is_null() && !n->is_map())
      fail(n->source(), path, std::string("expected a mapping of keys, found ") +
                                  Node::kind_name(n->kind()));
    const Source owner = n != nullptr ? n->source() : owner_;
    if (n != nullptr) sources_[path] = n->source();
    Reader sub(n, path, owner, sources_, missing_);
    describe(sub, s);
    sub.finish();
  }

  template <class S>
  void list(const char* key, std::vector<S>& items, const char* /*doc*/, bool required = false) {
    known_.push_back(key);
    const std::string path = join(key);
    const Node* n = lookup(key);
    if (n == nullptr || n->is_null()) {
      if (required) missing(path, key);
      return;
    }
    if (!n->is_seq())
      fail(n->source(), path, std::string("expected a list, found ") + Node::kind_name(n->kind()));
    sources_[path] = n->source();
    items.clear();
    for (size_t i = 0; i < n->items().size(); ++i) {
      const Node& item = n->items()[i];
      const std::string ipath = path + "[" + std::to_string(i) + "]";
      if (!item.is_map())
        fail(item.source(), ipath, std::string("expected a mapping, found ") +
                                       Node::kind_name(item.kind()));
      sources_[ipath] = item.source();
      Reader sub(&item, ipath, item.source(), sources_, missing_);
      S s{};
      describe(sub, s);
      sub.finish();
      items.push_back(std::move(s));
    }
  }

  // Reports the first key not named by field/section/list, with a suggestion.
  void finish();
  // Reports the first missing required key. Missing keys are reported after unknown ones, since
  // a misspelt section ("trian:") is the usual reason a required key is missing.
  void finish_missing() const;

 private:
  void missing(const std::string& path, const char* key);
  std::string join(const char* key) const { return prefix_.empty() ? key : prefix_ + "." + key; }
  const Node* lookup(const char* key) const;
  std::string fmt_missing(const char* key) const;

  const Node* map_;
  std::string prefix_;
  Source owner_;
  SourceMap& sources_;
  std::vector<std::string> own_missing_;
  std::vector<std::string>* missing_;  // messages, shared with nested readers
  std::vector<std::string> known_;
};

// ---- Writer: struct -> YAML ---------------------------------------------------------------
class Writer {
 public:
  explicit Writer(YAML::Emitter& out) : out_(out) {}

  template <class T>
  void field(const char* key, T& value, const char*, const Check& = {}) {
    out_ << YAML::Key << key << YAML::Value;
    emit(value);
  }
  template <class S>
  void section(const char* key, S& s, const char*) {
    out_ << YAML::Key << key << YAML::Value << YAML::BeginMap;
    describe(*this, s);
    out_ << YAML::EndMap;
  }
  template <class S>
  void list(const char* key, std::vector<S>& items, const char*, bool = false) {
    out_ << YAML::Key << key << YAML::Value << YAML::BeginSeq;
    for (S& s : items) {
      out_ << YAML::BeginMap;
      describe(*this, s);
      out_ << YAML::EndMap;
    }
    out_ << YAML::EndSeq;
  }

 private:
  void emit(bool v);
  void emit(int v);
  void emit(int64_t v);
  void emit(double v);
  void emit(const std::string& v);
  void emit(const std::vector<std::string>& v);
  void emit(const std::vector<double>& v);
  void emit(const std::vector<int64_t>& v);
  template <TextValue T>
  void emit(const T& v) {
    emit(std::string(config_text(v)));
  }
  YAML::Emitter& out_;
};

// ---- DocWriter: one Markdown row per key -------------------------------------------------
struct DocRow {
  std::string path, type, default_value, constraint, doc;
};

class DocWriter {
 public:
  explicit DocWriter(std::vector<DocRow>& rows, std::string prefix = "")
      : rows_(rows), prefix_(std::move(prefix)) {}

  template <class T>
  void field(const char* key, T& value, const char* doc, const Check& check = {}) {
    Check shown = check;
    if constexpr (ConfigEnum<T>) {
      if (shown.choices.empty()) shown.choices = enum_choices<T>();
    }
    rows_.push_back(DocRow{join(key), type_name(value), render_default(value), render(shown), doc});
  }
  template <class S>
  void section(const char* key, S& s, const char* doc) {
    rows_.push_back(DocRow{join(key), "section", "", "", doc});
    DocWriter sub(rows_, join(key));
    describe(sub, s);
  }
  template <class S>
  void list(const char* key, std::vector<S>&, const char* doc, bool required = false) {
    rows_.push_back(DocRow{join(key), "list", "[]", required ? "required" : "", doc});
    DocWriter sub(rows_, join(key) + "[]");
    S s{};
    describe(sub, s);
  }

 private:
  std::string join(const char* key) const { return prefix_.empty() ? key : prefix_ + "." + key; }
  static std::string render(const Check& c);
  template <class T>
  static std::string render_default(const T& v) {
    YAML::Emitter e;
    e << YAML::Flow;
    Writer w(e);
    e << YAML::BeginMap;
    T copy = v;
    w.field("v", copy, "");
    e << YAML::EndMap;
    std::string s = e.c_str();  // "{v: ...}"
    return s.size() > 5 ? s.substr(4, s.size() - 5) : "";
  }
  std::vector<DocRow>& rows_;
  std::string prefix_;
};

}  // namespace pft::config
