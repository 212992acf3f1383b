// Rendering and truncation (contract and Note [part boundaries]: data/render.h).
#include "data/render.h"

#include <algorithm>

#include "core/error.h"
#include "core/format.h"

namespace pft {

namespace {

bool is_continuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

// `value` shortened to about `keep` bytes on a character boundary: its beginning (cut right) or
// its end (cut left).
std::string_view shorten(std::string_view value, size_t keep, bool cut_left) {
  keep = std::min(keep, value.size());
  if (cut_left) {
    size_t start = value.size() - keep;
    while (start < value.size() && is_continuation(value[start])) ++start;
    return value.substr(start);
  }
  size_t end = keep;
  while (end > 0 && end < value.size() && is_continuation(value[end])) --end;
  return value.substr(0, end);
}

std::string field_value(const Task& task, const std::vector<std::string>& constants,
                        const Record& r, int f, int cut_field, std::string_view cut_value) {
  if (f == cut_field) return std::string(cut_value);
  return task.fields[static_cast<size_t>(f)].constant ? constants[static_cast<size_t>(f)]
                                                      : r.values[static_cast<size_t>(f)];
}

struct PartTokens {
  std::vector<int32_t> instruction, few_shot, input, answer;  // answer includes eos
  size_t prompt() const { return instruction.size() + few_shot.size() + input.size(); }
  size_t total() const { return prompt() + answer.size(); }
};

}  // namespace

PromptTexts render_texts(const Task& task, const std::vector<std::string>& constants,
                         const Template& t, const Record& record,
                         std::span<const Record* const> demos, int cut_field,
                         std::string_view cut_value) {
  PromptTexts out;
  const auto of = [&](const Record& r) {
    return [&, rp = &r](int f) { return field_value(task, constants, *rp, f, -1, {}); };
  };
  const auto example_value = [&](int f) {
    return field_value(task, constants, record, f, cut_field, cut_value);
  };

  std::string instruction, guidelines;
  t.instruction.render(instruction, example_value);
  t.guidelines.render(guidelines, example_value);
  t.input.render(out.input, example_value);
  t.output.render(out.answer, example_value);

  for (size_t i = 0; i < demos.size(); ++i) {
    if (i > 0) out.few_shot += t.few_shot_separator;
    t.demo.render(out.few_shot, of(*demos[i]));
  }
  // Separators close the part before them, when something follows in the prompt.
  if (!out.few_shot.empty() && !out.input.empty()) out.few_shot += t.separator;
  const bool more = !out.few_shot.empty() || !out.input.empty();
  if (!instruction.empty()) {
    out.instruction = instruction;
    if (!guidelines.empty() || more) out.instruction += t.separator;
  }
  if (!guidelines.empty()) {
    out.instruction += guidelines;
    if (more) out.instruction += t.separator;
  }
  return out;
}

std::string render_answer_text(const Task& task, const std::vector<std::string>& constants,
                               const Template& t, const Record& record, const std::string& answer) {
  std::string out;
  t.output.render(out, [&](int f) {
    return field_value(task, constants, record, f, task.answer_field, answer);
  });
  return out;
}

Renderer::Renderer(const Task& task, const std::vector<std::string>& constants,
                   const Tokenizer& tokenizer, const RenderOptions& options)
    : task_(task), constants_(constants), tokenizer_(tokenizer), options_(options) {
  if (tokenizer.eos_id() >= 0) return;
  for (const Template& t : task.templates)
    if (t.eos)
      task.fail(t.key_path + ".eos",
                fmt::format("template '{}' appends an end-of-text token, but the tokenizer ({}) "
                            "has none; set eos: false",
                            t.id, tokenizer.describe()));
}

RenderedExample Renderer::render(const Template& t, const Record& record,
                                 std::span<const Record* const> demos, RenderDetail* detail) const {
  const size_t budget = static_cast<size_t>(options_.seq_len);
  PartTokens p;
  const auto tokenize = [&](const PromptTexts& x) {
    p.instruction = tokenizer_.encode(x.instruction);
    p.few_shot = tokenizer_.encode(x.few_shot);
    p.input = tokenizer_.encode(x.input);
    p.answer = tokenizer_.encode(x.answer);
    if (t.eos) p.answer.push_back(tokenizer_.eos_id());
  };

  RenderDetail d;
  bool truncated = false;
  // 1. Drop demonstrations until it fits.
  size_t first_demo = 0;
  tokenize(render_texts(task_, constants_, t, record, demos));
  while (p.total() > budget && first_demo < demos.size()) {
    ++first_demo;
    truncated = true;
    tokenize(render_texts(task_, constants_, t, record, demos.subspan(first_demo)));
  }
  const std::span<const Record* const> kept = demos.subspan(first_demo);

  // 2. Shorten the truncate field: the longest kept length that fits (binary search).
  if (p.total() > budget && t.truncate_field >= 0) {
    truncated = true;
    d.field_cut = true;
    const std::string full = field_value(task_, constants_, record, t.truncate_field, -1, {});
    const auto fits = [&](size_t keep) {
      tokenize(render_texts(task_, constants_, t, record, kept, t.truncate_field,
                            shorten(full, keep, t.truncate_left)));
      return p.total() <= budget;
    };
    size_t lo = 0, hi = full.size();  // invariant: lo fits (or is 0), hi does not
    if (fits(0)) {
      while (hi - lo > 1) {
        const size_t mid = lo + (hi - lo) / 2;
        if (fits(mid)) {
          lo = mid;
        } else {
          hi = mid;
        }
      }
    }
    fits(lo);  // leave p holding the chosen length
  }

  // 3. Last resort: cut the prompt's beginning and, if the answer alone is too long, its end.
  if (p.total() > budget) {
    truncated = true;
    const size_t prompt = p.prompt(), answer = p.answer.size();
    const size_t answer_keep = std::min(answer, budget - std::min(prompt, budget / 2));
    const size_t prompt_keep = std::min(prompt, budget - answer_keep);
    size_t drop = prompt - prompt_keep;
    for (std::vector<int32_t>* part : {&p.instruction, &p.few_shot, &p.input}) {
      const size_t n = std::min(drop, part->size());
      part->erase(part->begin(), part->begin() + static_cast<std::ptrdiff_t>(n));
      drop -= n;
    }
    p.answer.resize(answer_keep);
    d.hard_cut_tokens = static_cast<int32_t>((prompt - prompt_keep) + (answer - answer_keep));
  }

  RenderedExample ex;
  ex.tokens.reserve(p.total());
  for (const std::vector<int32_t>* part : {&p.instruction, &p.few_shot, &p.input, &p.answer})
    ex.tokens.insert(ex.tokens.end(), part->begin(), part->end());
  ex.prompt_tokens = static_cast<int32_t>(p.prompt());
  ex.answer_tokens = static_cast<int32_t>(p.answer.size());
  ex.loss_mask.assign(ex.tokens.size(), options_.train_on_prompt ? 1 : 0);
  std::fill(ex.loss_mask.begin() + ex.prompt_tokens, ex.loss_mask.end(), uint8_t{1});
  ex.truncated = truncated;
  PFT_ASSERT(ex.tokens.size() <= budget, "rendered example longer than seq_len");

  if (detail != nullptr) {
    d.instruction_tokens = static_cast<int32_t>(p.instruction.size());
    d.few_shot_tokens = static_cast<int32_t>(p.few_shot.size());
    d.input_tokens = static_cast<int32_t>(p.input.size());
    d.answer_tokens = ex.answer_tokens;
    d.demos = static_cast<int32_t>(kept.size());
    d.demos_dropped = static_cast<int32_t>(first_demo);
    *detail = std::move(d);
  }
  return ex;
}

std::vector<std::vector<int32_t>> Renderer::label_answers(const Template& t,
                                                          const Record& record) const {
  std::vector<std::vector<int32_t>> out;
  for (const std::string& label : task_.labels) {
    std::vector<int32_t> ids =
        tokenizer_.encode(render_answer_text(task_, constants_, t, record, label));
    if (t.eos) ids.push_back(tokenizer_.eos_id());
    out.push_back(std::move(ids));
  }
  return out;
}

bool boundary_splits_token(const Tokenizer& tokenizer, const std::string& prompt,
                           const std::string& answer) {
  std::vector<int32_t> apart = tokenizer.encode(prompt);
  tokenizer.encode_append(answer, false, apart);
  return apart != tokenizer.encode(prompt + answer);
}

}  // namespace pft
