// Prompt templates: `{field}` format strings compiled against a task's field table.
//
// A format is literal text with `{name}` placeholders; `{{` and `}}` are literal braces. Names
// are [A-Za-z_][A-Za-z0-9_]* and must be fields of the task (data/task.h): an unknown name is an
// InputError naming the task file:line:col, the template, the key and the field, with a
// did-you-mean. A compiled Template is what a task file's `templates:` entry becomes; rendering
// it into tokens lives in data/render.h.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "config/tree.h"

namespace pft {

// One compiled format string.
class Format {
 public:
  struct Piece {
    std::string literal;  // text before the placeholder (or the tail when field < 0)
    int field = -1;       // placeholder's field index, -1 for a trailing literal
  };

  Format() = default;

  const std::string& text() const { return text_; }  // as written
  bool empty() const { return text_.empty(); }
  bool uses(int field) const;
  const std::vector<Piece>& pieces() const { return pieces_; }

  // Appends the rendered text to `out`; `value(i)` gives field i's text.
  template <class ValueFn>
  void render(std::string& out, const ValueFn& value) const {
    for (const Piece& p : pieces_) {
      out += p.literal;
      if (p.field >= 0) out += value(p.field);
    }
  }

 private:
  friend Format compile_format(const std::string&, const std::vector<std::string>&,
                               const config::Source&, const std::string&, const std::string&);
  std::string text_;
  std::vector<Piece> pieces_;
};

// Compiles `text` against `fields` (the task's field names; index = field id). `where` and `path`
// locate the key in the task file ("templates[1].input"); `what` names the owner for messages
// ("template 'plain' of task 'add'"). Throws InputError on an unknown field, an unclosed `{` or
// a stray `}`.
Format compile_format(const std::string& text, const std::vector<std::string>& fields,
                      const config::Source& where, const std::string& path,
                      const std::string& what);

enum class FewShotSource { kTrain, kPositiveExamples };

// A template ready to render. Field indices refer to the owning Task's `fields`.
struct Template {
  std::string id;
  Format instruction;     // the task description (may use fields, e.g. {definition})
  Format guidelines;      // extra rules, placed after the instruction
  Format input;           // the example's question
  Format output;          // the answer; references are rendered through it
  std::string separator;  // between the prompt's non-empty parts

  int64_t few_shot_k = 0;
  FewShotSource few_shot_source = FewShotSource::kTrain;
  std::string few_shot_separator;  // between demonstrations
  Format demo;                     // one demonstration (default: input + output)

  bool eos = true;
  int truncate_field = -1;    // field cut when too long; -1 = none
  bool truncate_left = true;  // cut the field's beginning (keep its end)
  bool held_out = false;      // evaluation only

  std::string key_path;  // "templates[i]" in the task file, for messages
};

}  // namespace pft
