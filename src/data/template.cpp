// Format-string compilation (contract: data/template.h).
#include "data/template.h"

#include <algorithm>

#include "config/schema.h"
#include "core/error.h"
#include "core/format.h"

namespace pft {

namespace {

bool name_start(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
bool name_char(char c) { return name_start(c) || (c >= '0' && c <= '9'); }

}  // namespace

bool Format::uses(int field) const {
  return std::any_of(pieces_.begin(), pieces_.end(),
                     [field](const Piece& p) { return p.field == field; });
}

Format compile_format(const std::string& text, const std::vector<std::string>& fields,
                      const config::Source& where, const std::string& path,
                      const std::string& what) {
  Format f;
  f.text_ = text;
  std::string literal;
  size_t i = 0;
  while (i < text.size()) {
    const char c = text[i];
    if (c == '{' && i + 1 < text.size() && text[i + 1] == '{') {
      literal += '{';
      i += 2;
      continue;
    }
    if (c == '}' && i + 1 < text.size() && text[i + 1] == '}') {
      literal += '}';
      i += 2;
      continue;
    }
    if (c == '}')
      config::fail(where, path,
                   fmt::format("{}: stray '}}' at character {} of \"{}\"; write '}}}}' for a "
                               "literal brace",
                               what, i + 1, text));
    if (c != '{') {
      literal += c;
      ++i;
      continue;
    }
    const size_t close = text.find('}', i + 1);
    if (close == std::string::npos)
      config::fail(where, path,
                   fmt::format("{}: unclosed '{{' at character {} of \"{}\"; write '{{{{' for a "
                               "literal brace",
                               what, i + 1, text));
    const std::string name = text.substr(i + 1, close - i - 1);
    const bool valid =
        !name.empty() && name_start(name[0]) && std::all_of(name.begin(), name.end(), name_char);
    if (!valid)
      config::fail(where, path,
                   fmt::format("{}: '{{{}}}' is not a field placeholder (names are letters, "
                               "digits and '_'); write '{{{{' for a literal brace",
                               what, name));
    const auto it = std::find(fields.begin(), fields.end(), name);
    if (it == fields.end()) {
      const std::string hint = config::suggest(name, fields);
      config::fail(where, path,
                   fmt::format("{}: unknown field '{}'{} (fields: {})", what, name,
                               hint.empty() ? "" : fmt::format("; did you mean '{}'?", hint),
                               fmt::join(fields, ", ")));
    }
    f.pieces_.push_back(Format::Piece{std::move(literal), static_cast<int>(it - fields.begin())});
    literal.clear();
    i = close + 1;
  }
  if (!literal.empty()) f.pieces_.push_back(Format::Piece{std::move(literal), -1});
  return f;
}

}  // namespace pft
