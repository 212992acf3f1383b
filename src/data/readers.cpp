// JSONL and Super-NaturalInstructions readers (contract: data/readers.h).
#include "data/readers.h"

#include <boost/json.hpp>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "config/schema.h"
#include "core/error.h"
#include "core/format.h"
#include "data/utf8.h"

namespace pft {

namespace fs = std::filesystem;
namespace json = boost::json;

// ---- LoadReport / Problems ------------------------------------------------------------------

void LoadReport::merge(const LoadReport& o) {
  records += o.records;
  problems += o.problems;
  for (const auto& [k, v] : o.reasons) reasons[k] += v;
  for (const std::string& m : o.messages) {
    if (messages.size() >= kMaxMessages) break;
    messages.push_back(m);
  }
}

std::string LoadReport::summary() const {
  if (problems == 0) return "";
  std::vector<std::string> parts;
  for (const auto& [k, v] : reasons) parts.push_back(fmt::format("{} {}", v, k));
  return fmt::format("{} problem{} ({})", problems, problems == 1 ? "" : "s",
                     fmt::join(parts, ", "));
}

void Problems::report(const std::string& reason, const std::string& message) {
  if (strict_) throw InputError(message);
  ++report_.problems;
  ++report_.reasons[reason];
  if (report_.messages.size() < LoadReport::kMaxMessages) report_.messages.push_back(message);
}

namespace {

// ---- line reading ---------------------------------------------------------------------------

// Reads lines of any length while holding at most kMaxLineBytes of one: the rest of a longer
// line is counted and dropped.
class LineReader {
 public:
  explicit LineReader(const fs::path& path) : in_(path, std::ios::binary), buf_(size_t{1} << 16) {}
  bool ok() const { return static_cast<bool>(in_); }

  // The next line (without '\n') into `line`; `length` is its full length. Returns false at the
  // end of the file. When length > kMaxLineBytes, `line` is left empty.
  bool next(std::string& line, size_t& length) {
    line.clear();
    length = 0;
    bool any = false;
    while (true) {
      if (pos_ == end_) {
        if (eof_) return any;
        in_.read(buf_.data(), static_cast<std::streamsize>(buf_.size()));
        end_ = static_cast<size_t>(in_.gcount());
        pos_ = 0;
        if (end_ < buf_.size()) eof_ = true;
        if (end_ == 0) return any;
      }
      any = true;
      const char* start = buf_.data() + pos_;
      const void* nl = std::memchr(start, '\n', end_ - pos_);
      const size_t chunk =
          nl ? static_cast<size_t>(static_cast<const char*>(nl) - start) : end_ - pos_;
      length += chunk;
      if (length <= kMaxLineBytes) {
        line.append(start, chunk);
      } else if (!line.empty()) {
        std::string().swap(line);
      }
      pos_ += chunk;
      if (nl) {
        ++pos_;
        return true;
      }
    }
  }

 private:
  std::ifstream in_;
  std::vector<char> buf_;
  size_t pos_ = 0, end_ = 0;
  bool eof_ = false;
};

// Byte offset of the first invalid UTF-8 byte, or npos.
size_t find_invalid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t i = 0;
  while (i < s.size()) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    const utf8::Char c = utf8::decode_char(p, i, s.size());
    if (c.cp == utf8::kInvalidCodePoint) return i;
    i += c.len;
  }
  return std::string_view::npos;
}

const char* kind_name(json::kind k) {
  switch (k) {
    case json::kind::null:
      return "null";
    case json::kind::bool_:
      return "a boolean";
    case json::kind::int64:
    case json::kind::uint64:
    case json::kind::double_:
      return "a number";
    case json::kind::string:
      return "a string";
    case json::kind::array:
      return "a list";
    case json::kind::object:
      return "an object";
  }
  return "?";
}

// Text of a scalar JSON value: strings as they are, numbers as written. Returns false for
// anything else.
bool scalar_text(const json::value& v, std::string& out) {
  switch (v.kind()) {
    case json::kind::string:
      out.assign(v.get_string().data(), v.get_string().size());
      return true;
    case json::kind::int64:
      out = std::to_string(v.get_int64());
      return true;
    case json::kind::uint64:
      out = std::to_string(v.get_uint64());
      return true;
    case json::kind::double_:
      out = fmt::format("{}", v.get_double());
      return true;
    default:
      return false;
  }
}

// Binds one JSON object to a record of `task`; reports and returns false when it does not fit.
class RecordBinder {
 public:
  RecordBinder(const Task& task, Problems& problems) : task_(task), problems_(problems) {
    for (const FieldDef& f : task.fields)
      if (!f.constant) known_keys_.insert(f.source);
    known_keys_.insert("id");
  }

  bool bind(const json::object& obj, const std::string& where, Record& out) {
    out.values.assign(task_.fields.size(), std::string());
    out.references.clear();
    out.id.clear();
    for (size_t i = 0; i < task_.fields.size(); ++i) {
      const FieldDef& f = task_.fields[i];
      if (f.constant) continue;
      const json::value* v = obj.if_contains(f.source);
      const bool is_answer = static_cast<int>(i) == task_.answer_field;
      if (v == nullptr || (v->is_null() && f.optional)) {
        if (f.optional) continue;
        std::vector<std::string> keys;
        for (const auto& kv : obj) keys.emplace_back(kv.key());
        const std::string hint = config::suggest(f.source, keys);
        return bad(
            where, "missing field",
            fmt::format("missing key '{}'{}{}; the record has: {}", f.source,
                        f.source == f.name ? "" : fmt::format(" (field '{}')", f.name),
                        hint.empty() ? "" : fmt::format("; did you mean '{}'?", hint),
                        keys.empty() ? "no keys" : fmt::format("{}", fmt::join(keys, ", "))));
      }
      if (is_answer && v->is_array()) {
        const json::array& a = v->get_array();
        if (a.empty())
          return bad(where, "wrong type",
                     fmt::format("key '{}' (the answer) is an empty list; "
                                 "give at least one acceptable answer",
                                 f.source));
        for (size_t j = 0; j < a.size(); ++j) {
          std::string s;
          if (!a[j].is_string())
            return bad(where, "wrong type",
                       fmt::format("key '{}'[{}] is {}; answers must be strings", f.source, j,
                                   kind_name(a[j].kind())));
          scalar_text(a[j], s);
          out.references.push_back(std::move(s));
        }
        out.values[i] = out.references[0];
      } else if (!scalar_text(*v, out.values[i])) {
        return bad(
            where, "wrong type",
            fmt::format("key '{}' is {}; expected a string{}", f.source, kind_name(v->kind()),
                        is_answer ? " or a list of acceptable strings" : " (or a number)"));
      } else if (is_answer) {
        out.references.push_back(out.values[i]);
      }
    }
    for (size_t i = 0; i < out.values.size(); ++i) {
      if (out.values[i].find('\0') != std::string::npos)
        return bad(
            where, "NUL byte",
            fmt::format("key '{}' contains a NUL character (\\u0000)", task_.fields[i].source));
    }
    for (const std::string& r : out.references) {
      if (r.find('\0') != std::string::npos)
        return bad(where, "NUL byte", "an answer contains a NUL character (\\u0000)");
    }
    if (task_.extra_fields_error) {
      for (const auto& kv : obj) {
        const std::string key(kv.key());
        if (known_keys_.count(key)) continue;
        return bad(where, "extra field",
                   fmt::format("key '{}' is not read by the task (it reads: {}); remove it or set "
                               "`extra_fields: ignore` in {}",
                               key, fmt::join(known_keys_, ", "), task_.file.string()));
      }
    }
    if (const json::value* id = obj.if_contains("id")) scalar_text(*id, out.id);
    return check_labels(where, out);
  }

  bool check_labels(const std::string& where, const Record& r) {
    if (task_.metric != Metric::kClassification) return true;
    for (const std::string& ref : r.references) {
      if (std::find(task_.labels.begin(), task_.labels.end(), ref) == task_.labels.end()) {
        const std::string hint = config::suggest(ref, task_.labels);
        return bad(where, "not a label",
                   fmt::format("answer '{}' is not one of the labels: {}{}", ref,
                               fmt::join(task_.labels, ", "),
                               hint.empty() ? "" : fmt::format("; did you mean '{}'?", hint)));
      }
    }
    return true;
  }

  bool bad(const std::string& where, const std::string& reason, const std::string& what) {
    problems_.report(reason, fmt::format("{}: error: task '{}': {}", where, task_.name, what));
    return false;
  }

 private:
  const Task& task_;
  Problems& problems_;
  std::set<std::string> known_keys_;
};

std::string display_path(const fs::path& p) { return p.lexically_normal().string(); }

// 1-based line and column of byte `offset` in `text`.
std::pair<size_t, size_t> line_col(std::string_view text, size_t offset) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return {line, col};
}

}  // namespace

std::vector<fs::path> jsonl_files(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_directory(path, ec)) return {path};
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(path, ec))
    if (e.is_regular_file() && e.path().extension() == ".jsonl") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  if (files.empty())
    throw InputError(
        fmt::format("{}: error: the directory holds no *.jsonl file", display_path(path)));
  return files;
}

std::vector<Record> read_jsonl(const Task& task, const std::vector<fs::path>& files,
                               Problems& problems) {
  std::vector<Record> out;
  RecordBinder binder(task, problems);
  json::parser parser;
  std::string line;
  for (const fs::path& file : files) {
    const std::string name = display_path(file);
    LineReader reader(file);
    if (!reader.ok())
      throw InputError(fmt::format("{}: error: task '{}': cannot read the file ({})", name,
                                   task.name,
                                   fs::exists(file) ? "permission denied" : "no such file"));
    size_t line_no = 0, length = 0;
    int64_t records_in_file = 0, lines_in_file = 0;
    while (reader.next(line, length)) {
      ++line_no;
      const auto where = [&](size_t col) {
        return col == 0 ? fmt::format("{}:{}", name, line_no)
                        : fmt::format("{}:{}:{}", name, line_no, col);
      };
      const auto bad = [&](const std::string& reason, size_t col, const std::string& what) {
        problems.report(reason,
                        fmt::format("{}: error: task '{}': {}", where(col), task.name, what));
      };
      if (length > kMaxLineBytes) {
        ++lines_in_file;
        bad("line too long", 0,
            fmt::format("line is {} bytes, over the limit of {} bytes (1 MiB) for one JSONL "
                        "record; split the record or shorten its fields",
                        length, kMaxLineBytes));
        continue;
      }
      if (line_no == 1 && line.starts_with("\xEF\xBB\xBF")) line.erase(0, 3);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank
      ++lines_in_file;
      if (const size_t nul = line.find('\0'); nul != std::string::npos) {
        bad("NUL byte", nul + 1,
            "NUL byte in the line (a binary or UTF-16 file? JSONL must be UTF-8 text)");
        continue;
      }
      if (const size_t bad_at = find_invalid_utf8(line); bad_at != std::string::npos) {
        bad("invalid UTF-8", bad_at + 1,
            fmt::format("invalid UTF-8 (byte 0x{:02X}); JSONL must be UTF-8 text",
                        static_cast<unsigned char>(line[bad_at])));
        continue;
      }
      boost::system::error_code ec;
      parser.reset();
      const size_t used = parser.write(line.data(), line.size(), ec);
      if (ec) {
        bad("malformed JSON", std::min(used, line.size() - 1) + 1,
            fmt::format("malformed JSON: {}", ec.message()));
        continue;
      }
      const json::value v = parser.release();
      if (!v.is_object()) {
        bad("malformed JSON", 1,
            fmt::format("expected one JSON object per line, found {}", kind_name(v.kind())));
        continue;
      }
      Record r;
      r.origin = fmt::format("{}:{}", name, line_no);
      if (!binder.bind(v.get_object(), r.origin, r)) continue;
      out.push_back(std::move(r));
      ++records_in_file;
    }
    if (lines_in_file == 0)
      problems.report("empty file", fmt::format("{}: error: task '{}': empty file (no records)",
                                                name, task.name));
  }
  problems.load_report().records += static_cast<int64_t>(out.size());
  return out;
}

NatinstData read_natinst(const Task& task, const fs::path& file, Problems& problems) {
  const std::string name = display_path(file);
  const auto fail = [&](const std::string& where, const std::string& what) {
    throw InputError(fmt::format("{}: error: task '{}': {}", where, task.name, what));
  };
  std::ifstream in(file, std::ios::binary);
  if (!in) fail(name, "cannot read the Super-NaturalInstructions file");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) fail(name, "empty file");
  if (const size_t nul = text.find('\0'); nul != std::string::npos) {
    const auto [l, c] = line_col(text, nul);
    fail(fmt::format("{}:{}:{}", name, l, c), "NUL byte (natinst files are UTF-8 JSON)");
  }
  if (const size_t b = find_invalid_utf8(text); b != std::string::npos) {
    const auto [l, c] = line_col(text, b);
    fail(fmt::format("{}:{}:{}", name, l, c), "invalid UTF-8 (natinst files are UTF-8 JSON)");
  }
  json::parser parser;
  boost::system::error_code ec;
  const size_t used = parser.write(text.data(), text.size(), ec);
  if (ec) {
    const auto [l, c] = line_col(text, used);
    fail(fmt::format("{}:{}:{}", name, l, c), fmt::format("malformed JSON: {}", ec.message()));
  }
  const json::value root = parser.release();
  if (!root.is_object())
    fail(name, "expected a JSON object (a Super-NaturalInstructions task file)");
  const json::object& obj = root.get_object();

  NatinstData out;
  const json::value* def = obj.if_contains("Definition");
  if (def == nullptr)
    fail(name, "no \"Definition\" (is this a Super-NaturalInstructions task file?)");
  if (def->is_string()) {
    out.definition = std::string(def->get_string());
  } else if (def->is_array()) {
    std::vector<std::string> parts;
    for (const json::value& p : def->get_array()) {
      if (!p.is_string()) fail(name + ": Definition", "expected a string or a list of strings");
      parts.emplace_back(p.get_string());
    }
    out.definition = fmt::format("{}", fmt::join(parts, "\n"));
  } else {
    fail(name + ": Definition", "expected a string or a list of strings");
  }

  RecordBinder binder(task, problems);
  // Field indices of the natinst field table (data/task.cpp).
  const int f_input = task.field_index("input"), f_output = task.field_index("output"),
            f_expl = task.field_index("explanation");
  const auto take = [&](const json::value& item, const std::string& where, bool positive,
                        Record& r) -> bool {
    const auto bad = [&](const std::string& reason, const std::string& what) {
      problems.report(reason, fmt::format("{}: error: task '{}': {}", where, task.name, what));
      return false;
    };
    if (!item.is_object())
      return bad("wrong type", fmt::format("expected an object, found {}", kind_name(item.kind())));
    const json::object& o = item.get_object();
    r.values.assign(task.fields.size(), std::string());
    r.origin = where;
    const json::value* input = o.if_contains("input");
    if (input == nullptr) return bad("missing field", "missing key 'input'");
    if (!input->is_string())
      return bad("wrong type",
                 fmt::format("'input' is {}; expected a string", kind_name(input->kind())));
    r.values[f_input] = std::string(input->get_string());
    const json::value* output = o.if_contains("output");
    if (output == nullptr) return bad("missing field", "missing key 'output'");
    if (output->is_string()) {
      r.references.emplace_back(output->get_string());
    } else if (output->is_array() && !output->get_array().empty()) {
      for (const json::value& x : output->get_array()) {
        if (!x.is_string()) return bad("wrong type", "'output' must hold strings only");
        r.references.emplace_back(x.get_string());
      }
    } else {
      return bad("wrong type", fmt::format("'output' is {}; expected a string or a non-empty "
                                           "list of strings",
                                           kind_name(output->kind())));
    }
    r.values[f_output] = r.references[0];
    if (positive) {
      if (const json::value* e = o.if_contains("explanation"); e != nullptr && e->is_string())
        r.values[f_expl] = std::string(e->get_string());
    }
    if (const json::value* id = o.if_contains("id")) scalar_text(*id, r.id);
    for (const std::string& v : r.values)
      if (v.find('\0') != std::string::npos) return bad("NUL byte", "a NUL character (\\u0000)");
    return binder.check_labels(where, r);
  };

  if (const json::value* pos = obj.if_contains("Positive Examples")) {
    if (!pos->is_array()) fail(name + ": Positive Examples", "expected a list");
    const json::array& a = pos->get_array();
    for (size_t i = 0; i < a.size(); ++i) {
      Record r;
      if (take(a[i], fmt::format("{}: Positive Examples[{}]", name, i), true, r))
        out.positive_examples.push_back(std::move(r));
    }
  }
  const json::value* inst = obj.if_contains("Instances");
  if (inst == nullptr || !inst->is_array())
    fail(name, "no \"Instances\" list (is this a Super-NaturalInstructions task file?)");
  const json::array& a = inst->get_array();
  for (size_t i = 0; i < a.size(); ++i) {
    Record r;
    if (take(a[i], fmt::format("{}: Instances[{}]", name, i), false, r))
      out.instances.push_back(std::move(r));
  }
  if (a.empty())
    problems.report("empty file",
                    fmt::format("{}: error: task '{}': \"Instances\" is empty", name, task.name));
  problems.load_report().records += static_cast<int64_t>(out.instances.size());
  return out;
}

}  // namespace pft
