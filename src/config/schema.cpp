#include "config/schema.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "core/error.h"
#include "core/format.h"

namespace pft::config {

void fail(const Source& src, const std::string& path, const std::string& what) {
  throw InputError(fmt::format("{}: error: {}: {}", src.str(), path.empty() ? "(top level)" : path,
                               what));
}

namespace {

// Optimal string alignment distance (Levenshtein plus adjacent transpositions: "trian").
size_t edit_distance(const std::string& a, const std::string& b) {
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1, 0));
  for (size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[n][m];
}

std::string describe_node(const Node& n) {
  if (n.is_scalar()) return "'" + n.value() + "'";
  return Node::kind_name(n.kind());
}

const Node& expect_scalar(const Node& n, const std::string& path, const char* what) {
  if (!n.is_scalar()) fail(n.source(), path, fmt::format("expected {}, found {}", what,
                                                         Node::kind_name(n.kind())));
  return n;
}

}  // namespace

std::string suggest(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::max<size_t>(2, word.size() / 3) + 1;
  for (const std::string& c : candidates) {
    const size_t d = edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

void parse_scalar(const Node& n, const std::string& path, bool& out) {
  const std::string& v = expect_scalar(n, path, "true or false").value();
  if (v == "true" || v == "True" || v == "yes" || v == "on") {
    out = true;
  } else if (v == "false" || v == "False" || v == "no" || v == "off") {
    out = false;
  } else {
    fail(n.source(), path, fmt::format("expected true or false, got {}", describe_node(n)));
  }
}

void parse_scalar(const Node& n, const std::string& path, int64_t& out) {
  const std::string& v = expect_scalar(n, path, "an integer").value();
  errno = 0;
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || end == nullptr || *end != '\0' || errno == ERANGE || n.quoted()) {
    // Accept integral floats written like 1e6 (common for steps and token budgets).
    char* fend = nullptr;
    const double d = std::strtod(v.c_str(), &fend);
    if (!n.quoted() && !v.empty() && *fend == '\0' && std::isfinite(d) && d == std::floor(d) &&
        std::fabs(d) < 9.0e15) {
      out = static_cast<int64_t>(d);
      return;
    }
    fail(n.source(), path, fmt::format("expected an integer, got {}", describe_node(n)));
  }
  out = x;
}

void parse_scalar(const Node& n, const std::string& path, int& out) {
  int64_t v = 0;
  parse_scalar(n, path, v);
  if (v < std::numeric_limits<int>::min() || v > std::numeric_limits<int>::max())
    fail(n.source(), path, fmt::format("{} does not fit in a 32-bit integer", v));
  out = static_cast<int>(v);
}

void parse_scalar(const Node& n, const std::string& path, double& out) {
  const std::string& v = expect_scalar(n, path, "a number").value();
  errno = 0;
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(x) || n.quoted())
    fail(n.source(), path, fmt::format("expected a number, got {}", describe_node(n)));
  out = x;
}

void parse_scalar(const Node& n, const std::string& path, std::string& out) {
  out = expect_scalar(n, path, "a string").value();
}

template <class T>
static void parse_list(const Node& n, const std::string& path, std::vector<T>& out) {
  out.clear();
  if (n.is_scalar() && n.value().empty()) return;
  if (!n.is_seq())
    fail(n.source(), path, fmt::format("expected a list, found {}", Node::kind_name(n.kind())));
  for (size_t i = 0; i < n.items().size(); ++i) {
    T v{};
    parse_scalar(n.items()[i], path + "[" + std::to_string(i) + "]", v);
    out.push_back(std::move(v));
  }
}

void parse_scalar(const Node& n, const std::string& path, std::vector<std::string>& out) {
  parse_list(n, path, out);
}
void parse_scalar(const Node& n, const std::string& path, std::vector<double>& out) {
  parse_list(n, path, out);
}
void parse_scalar(const Node& n, const std::string& path, std::vector<int64_t>& out) {
  parse_list(n, path, out);
}

void check_value(const Node& n, const std::string& path, double v, const Check& c) {
  if (c.min && (c.min_exclusive ? !(v > *c.min) : !(v >= *c.min)))
    fail(n.source(), path, fmt::format("must be {} {}, got {}", c.min_exclusive ? ">" : ">=",
                                       *c.min, n.value()));
  if (c.max && !(v <= *c.max))
    fail(n.source(), path, fmt::format("must be <= {}, got {}", *c.max, n.value()));
}

void check_value(const Node& n, const std::string& path, const std::string& v, const Check& c) {
  if (c.choices.empty()) return;
  if (std::find(c.choices.begin(), c.choices.end(), v) != c.choices.end()) return;
  const std::string hint = suggest(v, c.choices);
  fail(n.source(), path,
       fmt::format("'{}' is not one of: {}{}", v, fmt::join(c.choices, ", "),
                   hint.empty() ? "" : fmt::format("; did you mean '{}'?", hint)));
}

std::string type_name(const bool&) { return "bool"; }
std::string type_name(const int&) { return "int"; }
std::string type_name(const int64_t&) { return "int"; }
std::string type_name(const double&) { return "float"; }
std::string type_name(const std::string&) { return "string"; }
std::string type_name(const std::vector<std::string>&) { return "list of strings"; }
std::string type_name(const std::vector<double>&) { return "list of floats"; }
std::string type_name(const std::vector<int64_t>&) { return "list of ints"; }

Reader::Reader(const Node* map, std::string prefix, Source owner, SourceMap& sources,
               std::vector<std::string>* missing)
    : map_(map),
      prefix_(std::move(prefix)),
      owner_(std::move(owner)),
      sources_(sources),
      missing_(missing != nullptr ? missing : &own_missing_) {}

void Reader::missing(const std::string& path, const char* key) {
  missing_->push_back(fmt::format("{}: error: {}: {}", owner_.str(), path, fmt_missing(key)));
}

void Reader::finish_missing() const {
  if (!missing_->empty()) throw InputError(missing_->front());
}

const Node* Reader::lookup(const char* key) const {
  return map_ != nullptr && map_->is_map() ? map_->find(key) : nullptr;
}

std::string Reader::fmt_missing(const char* key) const {
  return prefix_.empty() ? fmt::format("required key '{}' is missing; add it at the top level", key)
                         : fmt::format("required key is missing; add '{}:' under '{}'", key, prefix_);
}

void Reader::finish() {
  if (map_ == nullptr || !map_->is_map()) return;
  for (const Node::Entry& e : map_->entries()) {
    if (std::find(known_.begin(), known_.end(), e.key) != known_.end()) continue;
    const std::string path = prefix_.empty() ? e.key : prefix_ + "." + e.key;
    const std::string hint = suggest(e.key, known_);
    const std::string where = prefix_.empty() ? "at the top level" : "in '" + prefix_ + "'";
    fail(e.key_source, path,
         hint.empty() ? fmt::format("unknown key '{}' {}; known keys: {}", e.key, where,
                                    fmt::join(known_, ", "))
                      : fmt::format("unknown key '{}' {}; did you mean '{}'?", e.key, where, hint));
  }
}

void Writer::emit(bool v) { out_ << v; }
void Writer::emit(int v) { out_ << v; }
void Writer::emit(int64_t v) { out_ << static_cast<long long>(v); }
void Writer::emit(double v) {
  // Shortest text that reads back to the same double, written so YAML sees a float.
  std::string s = fmt::format("{}", v);
  if (s.find_first_of(".eEn") == std::string::npos) s += ".0";
  out_ << s;
}
void Writer::emit(const std::string& v) {
  if (v.empty()) {
    out_ << YAML::DoubleQuoted << "" << YAML::Auto;
  } else {
    out_ << v;
  }
}
void Writer::emit(const std::vector<std::string>& v) {
  out_ << YAML::Flow << YAML::BeginSeq;
  for (const auto& s : v) out_ << s;
  out_ << YAML::EndSeq;
}
void Writer::emit(const std::vector<double>& v) {
  out_ << YAML::Flow << YAML::BeginSeq;
  for (double d : v) emit(d);
  out_ << YAML::EndSeq;
}
void Writer::emit(const std::vector<int64_t>& v) {
  out_ << YAML::Flow << YAML::BeginSeq;
  for (int64_t d : v) out_ << static_cast<long long>(d);
  out_ << YAML::EndSeq;
}

std::string DocWriter::render(const Check& c) {
  std::vector<std::string> parts;
  if (c.required) parts.push_back("required");
  if (!c.choices.empty()) parts.push_back(fmt::format("one of `{}`", fmt::join(c.choices, "`, `")));
  if (c.min) parts.push_back(fmt::format("{} {}", c.min_exclusive ? ">" : ">=", *c.min));
  if (c.max) parts.push_back(fmt::format("<= {}", *c.max));
  return fmt::format("{}", fmt::join(parts, "; "));
}

}  // namespace pft::config
