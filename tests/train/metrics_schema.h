// The metrics.jsonl schema as docs/metrics.md writes it, read from that page, and a checker of
// records against it: the documentation is the test's expectation, so code and page cannot drift
// apart silently.
//
// The page's grammar: a table under "Every record has these two" (fields of every kind), then
// one "### `kind`" heading per kind followed by a table whose rows are
//   | `field` | type | when | meaning |
// type: integer, number, string, boolean, object, array, or several joined by " or ";
// when: `always` (the field must be present) or a condition (it may be absent).
#pragma once

#include <boost/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace pft::test {

// The records of a metrics.jsonl file, one JSON object per non-empty line, in file order.
inline std::vector<boost::json::object> read_records(const std::filesystem::path& file) {
  std::vector<boost::json::object> out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(boost::json::parse(line).as_object());
  return out;
}

struct FieldSpec {
  std::set<std::string> types;
  bool always = false;
};

struct MetricsSchema {
  std::map<std::string, FieldSpec> common;                         // every kind
  std::map<std::string, std::map<std::string, FieldSpec>> kinds;   // kind -> field -> spec
};

inline MetricsSchema read_metrics_schema(const std::filesystem::path& page) {
  std::ifstream in(page);
  MetricsSchema schema;
  std::map<std::string, FieldSpec>* table = nullptr;
  const std::regex heading(R"(^### `([a-z_]+)`\s*$)");
  const std::regex row(R"(^\| `([a-z_]+)` \| ([a-z ]+) \| ([^|]+) \|.*\|\s*$)");
  std::smatch m;
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("Every record has these two")) {
      table = &schema.common;
    } else if (std::regex_match(line, m, heading)) {
      table = &schema.kinds[m[1]];
    } else if (line.starts_with("## ") || line.starts_with("### ")) {
      table = nullptr;
    } else if (table != nullptr && std::regex_match(line, m, row)) {
      FieldSpec spec;
      std::istringstream types(m[2].str());
      for (std::string word; types >> word;)
        if (word != "or") spec.types.insert(word);
      std::string when = m[3].str();
      while (!when.empty() && when.back() == ' ') when.pop_back();
      spec.always = when == "always";
      (*table)[m[1]] = spec;
    }
  }
  return schema;
}

inline bool has_type(const boost::json::value& v, const std::set<std::string>& types) {
  if (v.is_int64() || v.is_uint64()) return types.contains("integer") || types.contains("number");
  if (v.is_double()) return types.contains("number");
  if (v.is_string()) return types.contains("string");
  if (v.is_bool()) return types.contains("boolean");
  if (v.is_object()) return types.contains("object");
  if (v.is_array()) return types.contains("array");
  return false;  // null is never a field's value (only inside task_loss)
}

// Problems of one record against the schema, as readable lines (empty = conforms). `seen`
// collects "kind.field" of every field present, for coverage checks.
inline std::vector<std::string> check_metrics_record(const MetricsSchema& schema,
                                                     const boost::json::object& record,
                                                     std::set<std::string>* seen = nullptr) {
  std::vector<std::string> problems;
  const boost::json::value* kind_value = record.if_contains("kind");
  if (kind_value == nullptr || !kind_value->is_string())
    return {"record without a string \"kind\": " + boost::json::serialize(record)};
  const std::string kind(kind_value->as_string());
  const auto fields = schema.kinds.find(kind);
  if (fields == schema.kinds.end())
    return {"kind `" + kind + "` is not documented in docs/metrics.md"};
  const auto spec_of = [&](const std::string& name) -> const FieldSpec* {
    if (const auto it = fields->second.find(name); it != fields->second.end()) return &it->second;
    if (const auto it = schema.common.find(name); it != schema.common.end()) return &it->second;
    return nullptr;
  };
  for (const auto& [key, value] : record) {
    const std::string name(key);
    const FieldSpec* spec = spec_of(name);
    if (spec == nullptr) {
      problems.push_back(kind + "." + name + " is not documented");
      continue;
    }
    if (!has_type(value, spec->types))
      problems.push_back(kind + "." + name + " = " + boost::json::serialize(value) +
                         " has a type the page does not list");
    if (seen != nullptr) seen->insert(kind + "." + name);
  }
  for (const auto* table : {&schema.common, &fields->second})
    for (const auto& [name, spec] : *table)
      if (spec.always && !record.contains(name))
        problems.push_back(kind + "." + name + " is documented as always present but missing");
  return problems;
}

}  // namespace pft::test
