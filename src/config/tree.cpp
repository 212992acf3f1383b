#include "config/tree.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <unordered_map>

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

// Note [YAML limits]
// ~~~~~~~~~~~~~~~~~~
// Aliases make a tree far larger than its text: nine anchors, each a list of nine aliases of the
// one before ("billion laughs"), are 450 bytes and 9^9 (387 million) scalars once expanded.
// yaml-cpp shares an aliased node rather than copying it, so YAML::Load stays small; the copies
// are made by YamlConverter (each alias becomes a copy carrying its own sources) and by anything
// that walks the tree, and an alias inside the node it names (`a: &a [1, *a]`) is a cycle the
// converter would follow until the stack overflows. So before Load, YamlMeasure makes one pass
// over the parser's events and counts what the converted tree would hold: every scalar, null,
// list and map (keys included) is one node, and an alias adds the node count and depth of its
// anchor's node, recorded when that node ended (an anchor still open is the cycle). The counts
// only grow, so the pass stops at the first event past a limit, naming its line, having built
// nothing: a bomb costs one pass over its text. The limits (tree.h) are hundreds of times
// what the shipped configs and tasks use (docs/config.md), so no legitimate file comes near.
namespace {

class YamlMeasure : public YAML::EventHandler {
 public:
  YamlMeasure(const std::string& file, YamlSize& size) : file_(file), size_(size) {}

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnAnchor(const YAML::Mark&, const std::string& name) override { pending_name_ = name; }

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override { leaf(mark, anchor); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                const std::string&) override {
    leaf(mark, anchor);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    open(mark, anchor);
  }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    open(mark, anchor);
  }
  void OnSequenceEnd() override { close(); }
  void OnMapEnd() override { close(); }

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    if (++size_.aliases > kMaxYamlAliases)
      fail(mark, fmt::format("more than {} aliases (*name) in one YAML file (the limit, "
                             "docs/config.md); write the values out",
                             kMaxYamlAliases));
    const auto it = anchors_.find(anchor);
    if (it == anchors_.end() || it->second.nodes < 0)
      fail(mark, fmt::format("alias {} is used inside the node it names (a recursive "
                             "structure, which has no end); write the value out",
                             name_of(anchor)));
    add(mark, it->second.nodes, static_cast<int64_t>(open_.size()) + it->second.depth);
  }

 private:
  struct Open {
    YAML::anchor_t anchor;
    int64_t nodes_before, depth, deepest;
  };
  struct Anchored {
    int64_t nodes = -1;  // -1 while the anchored node is still open
    int64_t depth = 0;   // levels of the node itself and what it holds
    std::string name;
  };

  [[noreturn]] void fail(const YAML::Mark& mark, const std::string& what) const {
    const int line = mark.line >= 0 ? mark.line + 1 : 0;
    const int column = mark.column >= 0 ? mark.column + 1 : 0;
    throw InputError(fmt::format("{}: error: {}", Source{file_, line, column}.str(), what));
  }

  std::string name_of(YAML::anchor_t anchor) const {
    const auto it = anchors_.find(anchor);
    return it != anchors_.end() && !it->second.name.empty() ? "*" + it->second.name : "*?";
  }

  void name_anchor(YAML::anchor_t anchor) {
    if (anchor == YAML::NullAnchor) return;
    anchors_[anchor].name = pending_name_;
    pending_name_.clear();
  }

  // `nodes` more nodes, the deepest of them at nesting level `depth` (1 = the document's root).
  void add(const YAML::Mark& mark, int64_t nodes, int64_t depth) {
    size_.nodes += nodes;
    size_.depth = std::max(size_.depth, depth);
    if (!open_.empty()) open_.back().deepest = std::max(open_.back().deepest, depth);
    if (size_.nodes > kMaxYamlNodes)
      fail(mark, size_.aliases > 0
                     ? fmt::format("with its aliases (*name) expanded this YAML would hold more "
                                   "than {} nodes, the limit of one file (docs/config.md): "
                                   "anchors that multiply (a \"billion laughs\" document)? "
                                   "write the values out",
                                   kMaxYamlNodes)
                     : fmt::format("more than {} nodes in one YAML file, the limit "
                                   "(docs/config.md); split it",
                                   kMaxYamlNodes));
    if (depth > kMaxYamlDepth)
      fail(mark, fmt::format("YAML nested deeper than {} levels{}, the limit (docs/config.md)",
                             kMaxYamlDepth, size_.aliases > 0 ? " (aliases expanded)" : ""));
  }

  void leaf(const YAML::Mark& mark, YAML::anchor_t anchor) {
    name_anchor(anchor);
    add(mark, 1, static_cast<int64_t>(open_.size()) + 1);
    if (anchor != YAML::NullAnchor) {
      anchors_[anchor].nodes = 1;
      anchors_[anchor].depth = 1;
    }
  }

  void open(const YAML::Mark& mark, YAML::anchor_t anchor) {
    name_anchor(anchor);
    const int64_t depth = static_cast<int64_t>(open_.size()) + 1;
    const int64_t before = size_.nodes;
    add(mark, 1, depth);
    open_.push_back(Open{anchor, before, depth, depth});
  }

  void close() {
    const Open o = open_.back();
    open_.pop_back();
    if (!open_.empty()) open_.back().deepest = std::max(open_.back().deepest, o.deepest);
    if (o.anchor != YAML::NullAnchor) {
      anchors_[o.anchor].nodes = size_.nodes - o.nodes_before;
      anchors_[o.anchor].depth = o.deepest - o.depth + 1;
    }
  }

  const std::string& file_;
  YamlSize& size_;
  std::vector<Open> open_;
  std::unordered_map<YAML::anchor_t, Anchored> anchors_;
  std::string pending_name_;
};

std::string yaml_error(const std::string& file, const YAML::Exception& e) {
  return fmt::format("{}:{}:{}: error: invalid YAML: {}", file, e.mark.line + 1, e.mark.column + 1,
                     e.msg);
}

std::string bytes_limit_error(const std::string& file, uintmax_t bytes) {
  return fmt::format("{}: error: {} bytes of YAML, over the limit of {} bytes for one file "
                     "(docs/config.md); is this the file you meant?",
                     file, bytes, kMaxYamlBytes);
}

}  // namespace

YamlSize measure_yaml(const std::string& text, const std::string& file) {
  YamlSize size;
  size.bytes = text.size();
  if (text.size() > kMaxYamlBytes) throw InputError(bytes_limit_error(file, text.size()));
  std::istringstream in(text);
  try {
    YAML::Parser parser(in);
    YamlMeasure measure(file, size);
    parser.HandleNextDocument(measure);  // YAML::Load reads the first document only
  } catch (const YAML::Exception& e) {
    throw InputError(yaml_error(file, e));
  }
  return size;
}

Node from_yaml_text(const std::string& text, const std::string& file) {
  (void)measure_yaml(text, file);  // Note [YAML limits]: nothing is built past them
  YAML::Node doc;
  try {
    doc = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw InputError(yaml_error(file, e));
  }
  return YamlConverter(file).convert(doc);
}

namespace {

// The text of `path`, at most kMaxYamlBytes (a larger file is refused before it is read).
// `from` is the including file's "file:line", empty for the config itself.
std::string read_yaml_file(const fs::path& path, const std::string& from) {
  const auto refuse = [&](const std::string& why) {
    return InputError(from.empty() ? fmt::format("{}: error: {}", path.string(), why)
                                   : fmt::format("{}: error: '{}' named in defaults {}", from,
                                                 path.string(), why));
  };
  std::error_code ec;
  if (fs::is_directory(path, ec))
    throw refuse("is a directory, not a config file; name a YAML file (for example " +
                 (path / "config.yaml").string() + ")");
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const std::string why = fs::exists(path, ec) ? "permission denied" : "no such file";
    if (from.empty())
      throw InputError(fmt::format("{}: error: cannot read config file ({})", path.string(), why));
    throw InputError(fmt::format("{}: error: cannot read '{}' named in defaults ({})", from,
                                 path.string(), why));
  }
  // Read in pieces up to one byte past the limit: a config is a few hundred bytes, and zeroing
  // a limit-sized buffer on every load would cost more than parsing it.
  std::string text;
  char piece[16384];
  while (text.size() <= kMaxYamlBytes &&
         in.read(piece, static_cast<std::streamsize>(sizeof piece)).gcount() > 0)
    text.append(piece, static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxYamlBytes) {
    const uintmax_t bytes = fs::file_size(path, ec);
    throw InputError(bytes_limit_error(path.string(), ec ? text.size() : bytes));
  }
  return text;
}

Node load_rec(const fs::path& path, std::vector<fs::path>& stack, int64_t& loaded,
              const std::string& from) {
  std::error_code ec;
  const fs::path canon = fs::weakly_canonical(path, ec);
  if (std::find(stack.begin(), stack.end(), canon) != stack.end())
    throw InputError(fmt::format("{}: error: config composition cycle: '{}' includes itself",
                                 from, path.string()));
  if (++loaded > kMaxConfigFiles)
    throw InputError(fmt::format("{}: error: '{}' would be file number {} of this config's "
                                 "composition (defaults:), over the limit of {} (docs/config.md)",
                                 from, path.string(), loaded, kMaxConfigFiles));
  const std::string text = read_yaml_file(path, from);
  Node doc = from_yaml_text(text, path.string());
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
    merge_into(merged, load_rec(child, stack, loaded, f->source().str()));
  }
  stack.pop_back();
  doc.erase("defaults");
  merge_into(merged, doc);
  return merged;
}

}  // namespace

Node load_file(const fs::path& path) {
  std::vector<fs::path> stack;
  int64_t loaded = 0;
  return load_rec(path, stack, loaded, "");
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
