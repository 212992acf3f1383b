// A YAML document as a tree that remembers where every value came from.
//
// yaml-cpp gives line/column marks but loses them once documents are merged, and config
// composition (`defaults: [base.yaml]`) and `--set` overrides merge several sources. This tree
// keeps the source (file, line, column; 1-based) on every node and every map key, so an error
// about any key can name the place the user has to edit. Nothing outside src/config/ sees it.
//
// Every YAML text pft reads -- config files and what they compose, `--set` values, task files
// (data/task.h), the config stored in a checkpoint -- is parsed by from_yaml_text() below, and
// only there. It bounds what a small text can make (Note [YAML limits] in tree.cpp): a text over
// kMaxYamlBytes, or one whose tree with every alias expanded would pass kMaxYamlNodes nodes or
// kMaxYamlDepth levels, or that uses more than kMaxYamlAliases aliases, or an alias inside the
// node it names, is an InputError naming file:line:col and the limit -- before anything is
// built, in well under a second. load_file() also caps the files one config composes.
#pragma once

#include <cstddef>
#include <cstdint>

#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace pft::config {

// Limits of one YAML text (docs/config.md, "Limits"). The largest files pft ships (configs/,
// datasets/tasks/) use under 1.5 KB, 200 nodes, depth 5 and no aliases.
inline constexpr size_t kMaxYamlBytes = size_t{1} << 20;  // 1 MiB of text
inline constexpr int64_t kMaxYamlNodes = 100'000;  // scalars, keys, lists, maps; aliases expanded
inline constexpr int64_t kMaxYamlAliases = 10'000;  // `*name` uses
inline constexpr int64_t kMaxYamlDepth = 64;        // nesting, aliases expanded
// Files one config may compose (itself and everything `defaults:` names, repeats counted).
inline constexpr int64_t kMaxConfigFiles = 64;

struct Source {
  std::string file;  // path as given, or "--set" for command-line overrides
  int line = 0;      // 1-based; 0 = unknown
  int column = 0;    // 1-based; 0 = unknown

  std::string str() const;  // "file:line:col"
};

struct MapEntry;

class Node {
 public:
  enum class Kind { kNull, kScalar, kMap, kSeq };

  Node() = default;
  static Node scalar(std::string value, Source src);
  static Node map(Source src);
  static Node seq(Source src);

  Kind kind() const { return kind_; }
  bool is_map() const { return kind_ == Kind::kMap; }
  bool is_seq() const { return kind_ == Kind::kSeq; }
  bool is_scalar() const { return kind_ == Kind::kScalar; }
  bool is_null() const { return kind_ == Kind::kNull; }
  const Source& source() const { return src_; }
  const std::string& value() const { return scalar_; }  // scalars only
  bool quoted() const { return quoted_; }               // scalar written in quotes: a string

  using Entry = MapEntry;
  const std::vector<Entry>& entries() const { return entries_; }  // maps, in document order
  std::vector<Node>& items() { return items_; }                    // sequences
  const std::vector<Node>& items() const { return items_; }

  const Node* find(const std::string& key) const;
  Node* find_mut(const std::string& key);
  const Entry* find_entry(const std::string& key) const;
  Node& set(const std::string& key, Node value, Source key_source);  // insert or replace
  void erase(const std::string& key);

  static const char* kind_name(Kind k);

 private:
  friend Node from_yaml_text(const std::string&, const std::string&);
  friend class YamlConverter;
  Kind kind_ = Kind::kNull;
  std::string scalar_;
  bool quoted_ = false;
  Source src_;
  std::vector<Entry> entries_;
  std::vector<Node> items_;
};

struct MapEntry {
  std::string key;
  Source key_source;
  Node value;
};

// Parses YAML text; `file` names it in sources and errors. Throws InputError with file:line:col
// on a syntax error or a text past the limits above.
Node from_yaml_text(const std::string& text, const std::string& file);

// What a YAML text would build (the pass from_yaml_text makes before parsing): its size, its
// nodes and depth with every alias expanded, its alias uses. Throws InputError like
// from_yaml_text at the first limit passed, naming the place.
struct YamlSize {
  size_t bytes = 0;
  int64_t nodes = 0, aliases = 0, depth = 0;
};
YamlSize measure_yaml(const std::string& text, const std::string& file);

// Loads a config file with composition: a top-level `defaults: [a.yaml, b.yaml]` list names
// files (relative to this file's directory) merged first, in order, then this file over them.
// Cycles, missing files, directories, and more than kMaxConfigFiles files in all are InputErrors
// naming the including file and line.
Node load_file(const std::filesystem::path& path);

// Recursive merge: maps merge key by key, anything else in `over` replaces `base`.
void merge_into(Node& base, const Node& over);

// Applies one `--set a.b.c=value` override: the value is parsed as YAML (so `[1,2]`, `true`,
// `3e-4` work), intermediate maps are created. Throws InputError on a malformed override.
void apply_override(Node& root, const std::string& assignment);

}  // namespace pft::config
