// Rendering: one record under one template -> text parts -> tokens + loss mask, cut to
// data.seq_len by the template's truncation policy.
//
// Note [part boundaries]
// ~~~~~~~~~~~~~~~~~~~~~~
// The prompt is four texts: instruction (instruction, guidelines), few-shot (demonstrations),
// input, and the answer (the output format; then the eos token when `eos: true`). Each part is
// tokenized on its own and the token lists are concatenated, so the mask boundary between
// prompt and answer is exact, and the prompt tokens are the same at training and at evaluation
// (where the model generates after them). The price: a BPE merge never crosses a part boundary,
// so tokens at a boundary can differ from tokenizing the whole string at once. With GPT-2-style
// pre-tokenization that never matters when a part boundary sits where the pre-tokenizer splits
// anyway: end the prompt on a non-space ("A:") and begin the output with the space (" {answer}"),
// since " 42" and " Paris" are single pre-tokens with their leading space. Separators ("\n\n")
// are appended to the part before them. `pft data validate` reports templates whose
// prompt/answer boundary splits what the tokenizer would have kept together
// (boundary_splits_token).
//
// Truncation (only when prompt + answer > seq_len tokens), in order:
//   1. drop demonstrations, the first (farthest from the input) first;
//   2. shorten the template's truncate.field (on UTF-8 character boundaries, from its
//      truncate.side) to the longest text that fits;
//   3. last resort: keep the answer whole if it fits in seq_len - min(prompt, seq_len/2) tokens
//      (else cut its end, eos included), and cut the prompt's beginning to fill the rest.
// Any of these marks the example truncated.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "data/example.h"
#include "data/readers.h"
#include "data/task.h"
#include "data/tokenizer.h"

namespace pft {

struct RenderOptions {
  int64_t seq_len = 256;         // longest example, in tokens
  bool train_on_prompt = false;  // loss on every token, not only the answer
};

// The four texts of one rendered example (no eos).
struct PromptTexts {
  std::string instruction;  // instruction + guidelines + the separator after them
  std::string few_shot;     // demonstrations + separators
  std::string input;
  std::string answer;

  std::string prompt() const { return instruction + few_shot + input; }
};

// Texts of `record` under `tmpl` with `demos` (in prompt order); `constants` holds, per field,
// the task-wide value of constant fields (natinst definition). With `cut_field` >= 0 that
// field's value is replaced by `cut_value`.
PromptTexts render_texts(const Task& task, const std::vector<std::string>& constants,
                         const Template& tmpl, const Record& record,
                         std::span<const Record* const> demos, int cut_field = -1,
                         std::string_view cut_value = {});

// The output format rendered with `answer` in the answer field (a reference as the model should
// produce it, without eos).
std::string render_answer_text(const Task& task, const std::vector<std::string>& constants,
                               const Template& tmpl, const Record& record,
                               const std::string& answer);

// Renders the records of one task. Holds references: `task`, `constants` and `tokenizer` must
// outlive it. Thread-safe (const).
class Renderer {
 public:
  // `constants`: as for render_texts. Throws InputError when a template appends eos and the
  // tokenizer has none.
  Renderer(const Task& task, const std::vector<std::string>& constants, const Tokenizer& tokenizer,
           const RenderOptions& options);

  // Tokens and mask; `task`, `template_id`, `example_id` are copied into the result. `detail`,
  // when given, receives the part sizes and what truncation did (demo_ids are left to the
  // caller).
  RenderedExample render(const Template& tmpl, const Record& record,
                         std::span<const Record* const> demos,
                         RenderDetail* detail = nullptr) const;

  // Answer-part tokens (+ eos when the template says so) of each classification label, for
  // scoring by likelihood after the prompt.
  std::vector<std::vector<int32_t>> label_answers(const Template& tmpl, const Record& record) const;

  const RenderOptions& options() const { return options_; }

 private:
  const Task& task_;
  const std::vector<std::string>& constants_;
  const Tokenizer& tokenizer_;
  RenderOptions options_;
};

// True when tokenizing prompt and answer apart gives other tokens than tokenizing them together
// (a BPE merge or pre-token spans the boundary; see Note [part boundaries]).
bool boundary_splits_token(const Tokenizer& tokenizer, const std::string& prompt,
                           const std::string& answer);

}  // namespace pft
