#include "config/tree.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "core/error.h"
#include "core/format.h"

namespace pft::config {
namespace fs = std::filesystem;

std::string Source::str() const {
  if (line <= 0) return file;
  if (column <= 0) return fmt::format("{}:{}", file, line);
  return fmt::format("{}:{}:{}", file, line, column);
}

Node Node::scalar(std::string value, Source src) {
  Node n;
  n.kind_ = Kind::kScalar;
  n.scalar_ = std::move(value);
  n.src_ = std::move(src);
  return n;
}

Node Node::map(Source src) {
  Node n;
  n.kind_ = Kind::kMap;
  n.src_ = std::move(src);
  return n;
}

Node Node::seq(Source src) {
  Node n;
  n.kind_ = Kind::kSeq;
  n.src_ = std::move(src);
  return n;
}

const Node::Entry* Node::find_entry(const std::string& key) const {
  for (const Entry& e : entries_)
    if (e.key == key) return &e;
  return nullptr;
}

Node* Node::find_mut(const std::string& key) {
  for (Entry& e : entries_)
    if (e.key == key) return &e.value;
  return nullptr;
}

const Node* Node::find(const std::string& key) const {
  const Entry* e = find_entry(key);
  return e != nullptr ? &e->value : nullptr;
}

Node& Node::set(const std::string& key, Node value, Source key_source) {
  kind_ = Kind::kMap;
  for (Entry& e : entries_) {
    if (e.key == key) {
      e.value = std::move(value);
      e.key_source = std::move(key_source);
      return e.value;
    }
  }
  entries_.push_back(Entry{key, std::move(key_source), std::move(value)});
  return entries_.back().value;
}

void Node::erase(const std::string& key) {
  entries_.erase(std::remove_if(entries_.begin(), entries_.end(),
                                [&](const Entry& e) { return e.key == key; }),
                 entries_.end());
}

const char* Node::kind_name(Kind k) {
  switch (k) {
    case Kind::kNull: return "null";
    case Kind::kScalar: return "a scalar";
    case Kind::kMap: return "a mapping";
    case Kind::kSeq: return "a list";
  }
  return "?";
}

class YamlConverter {
 public:
  explicit YamlConverter(std::string file) : file_(std::move(file)) {}

  Source at(const YAML::Mark& m) const {
    return Source{file_, m.line >= 0 ? m.line + 1 : 0, m.column >= 0 ? m.column + 1 : 0};
  }

  Node convert(const YAML::Node& y) const {
    Node n;
    n.src_ = at(y.Mark());
    switch (y.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null:
        n.kind_ = Node::Kind::kNull;
        break;
      case YAML::NodeType::Scalar:
        n.kind_ = Node::Kind::kScalar;
        n.scalar_ = y.Scalar();
        n.quoted_ = y.Tag() == "!";  // yaml-cpp tags quoted scalars with "!"
        break;
      case YAML::NodeType::Sequence:
        n.kind_ = Node::Kind::kSeq;
        for (const auto& item : y) n.items_.push_back(convert(item));
        break;
      case YAML::NodeType::Map:
        n.kind_ = Node::Kind::kMap;
        for (const auto& kv : y) {
          if (!kv.first.IsScalar())
            throw InputError(fmt::format("{}: error: mapping keys must be plain names",
                                         at(kv.first.Mark()).str()));
          const std::string key = kv.first.Scalar();
          if (n.find_entry(key) != nullptr)
            throw InputError(fmt::format("{}: error: key '{}' appears twice in the same mapping",
                                         at(kv.first.Mark()).str(), key));
          n.entries_.push_back(Node::Entry{key, at(kv.first.Mark()), convert(kv.second)});
        }
        break;
    }
    return n;
  }

 private:
  std::string file_;
};

Node from_yaml_text(const std::string& text, const std::string& file) {
  YAML::Node doc;
  try {
    doc = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw InputError(fmt::format("{}:{}:{}: error: invalid YAML: {}", file, e.mark.line + 1,
                                 e.mark.column + 1, e.msg));
  }
  return YamlConverter(file).convert(doc);
}

namespace {

Node load_rec(const fs::path& path, std::vector<fs::path>& stack, const std::string& from) {
  std::error_code ec;
  const fs::path canon = fs::weakly_canonical(path, ec);
  if (std::find(stack.begin(), stack.end(), canon) != stack.end())
    throw InputError(fmt::format("{}: error: config composition cycle: '{}' includes itself",
                                 from, path.string()));
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (from.empty())
      throw InputError(fmt::format("{}: error: cannot read config file ({})", path.string(),
                                   fs::exists(path) ? "permission denied" : "no such file"));
    throw InputError(fmt::format("{}: error: cannot read '{}' named in defaults ({})", from,
                                 path.string(), fs::exists(path) ? "permission denied" : "no such file"));
  }
  std::stringstream text;
  text << in.rdbuf();
  Node doc = from_yaml_text(text.str(), path.string());
  if (doc.is_null()) doc = Node::map(Source{path.string(), 1, 1});
  if (!doc.is_map())
    throw InputError(fmt::format("{}: error: a config file must be a mapping of sections "
                                 "(run:, model:, train:, ...), found {}",
                                 doc.source().str(), Node::kind_name(doc.kind())));
  const Node::Entry* defaults = doc.find_entry("defaults");
  if (defaults == nullptr) return doc;

  stack.push_back(canon);
  std::vector<const Node*> files;
  if (defaults->value.is_scalar()) {
    files.push_back(&defaults->value);
  } else if (defaults->value.is_seq()) {
    for (const Node& item : defaults->value.items()) {
      if (!item.is_scalar())
        throw InputError(fmt::format("{}: error: defaults: expected a file name", item.source().str()));
      files.push_back(&item);
    }
  } else {
    throw InputError(fmt::format("{}: error: defaults: expected a file name or a list of them",
                                 defaults->value.source().str()));
  }
  Node merged = Node::map(doc.source());
  for (const Node* f : files) {
    const fs::path child = path.parent_path() / f->value();
    merge_into(merged, load_rec(child, stack, f->source().str()));
  }
  stack.pop_back();
  doc.erase("defaults");
  merge_into(merged, doc);
  return merged;
}

}  // namespace

Node load_file(const fs::path& path) {
  std::vector<fs::path> stack;
  return load_rec(path, stack, "");
}

void merge_into(Node& base, const Node& over) {
  if (!(base.is_map() && over.is_map())) {
    base = over;
    return;
  }
  for (const Node::Entry& e : over.entries()) {
    const Node* existing = base.find(e.key);
    if (existing != nullptr && existing->is_map() && e.value.is_map()) {
      Node copy = *existing;
      merge_into(copy, e.value);
      base.set(e.key, std::move(copy), e.key_source);
    } else {
      base.set(e.key, e.value, e.key_source);
    }
  }
}

void apply_override(Node& root, const std::string& assignment) {
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw InputError(fmt::format("--set '{}': expected key.path=value (for example "
                                 "--set train.lr=3e-4)", assignment));
  const std::string path = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  const std::string where = fmt::format("--set {}", path);

  std::vector<std::string> parts;
  std::stringstream ss(path);
  for (std::string part; std::getline(ss, part, '.');) {
    if (part.empty())
      throw InputError(fmt::format("--set '{}': empty component in key path '{}'", assignment, path));
    parts.push_back(part);
  }
  Node value = from_yaml_text(text, where);
  const Source src{where, 0, 0};
  if (value.is_null()) value = Node::scalar(text == "null" || text == "~" ? "" : text, src);

  Node* cur = &root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    Node* next = cur->find_mut(parts[i]);
    cur = (next != nullptr && next->is_map()) ? next : &cur->set(parts[i], Node::map(src), src);
  }
  cur->set(parts.back(), std::move(value), src);
}

}  // namespace pft::config
