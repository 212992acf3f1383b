// Prompts for `pft generate`: texts given on the command line, a prompts.jsonl file, or records
// rendered through a trained task's template -- each turned into the token ids the model sees.
//
//   plain text   encode_with_specials(text) (special tokens written in the text, e.g. a chat
//                format's <|im_start|>, become their ids, as HF's tokenizer(text) does), after
//                `prefix` (the model tokenizer's BOS, HfModelInfo::prompt_prefix_ids).
//   prompts.jsonl  one JSON object per line with a string "prompt" (and optionally "id");
//                blank lines skipped.
//   task + template  the records (the task's fields; the answer may be absent) rendered as
//                training rendered them (data/render.h): the prompt part only -- instruction,
//                demonstrations, input -- each part tokenized on its own, no prefix (training
//                adds none). A template with few-shot demonstrations or a task with constant
//                fields (natinst) also loads the task's own data for them. Demonstrations are
//                picked as evaluation picks them: record i (0-based, in input order) gets those
//                of validation example i in a run with run.seed = `run_seed` (data/dataset.h:
//                seeded by run.seed, task, template, split and example; never a pool record
//                asking the same input), so a validation record fed in renders exactly as
//                evaluation rendered it. Prompts longer than `max_prompt_tokens` are cut by the
//                template's truncation policy.
//
// Errors: InputError naming the file:line (a malformed line, a missing "prompt") or the task key.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "data/tokenizer.h"

namespace pft {

struct PromptInput {
  std::string text;             // the prompt as text (rendered, for task prompts)
  std::string id;               // the record's "id", or ""
  std::vector<int32_t> tokens;  // what the model sees
};

std::vector<PromptInput> prompts_from_texts(const std::vector<std::string>& texts,
                                            const Tokenizer& tokenizer,
                                            const std::vector<int32_t>& prefix);

std::vector<PromptInput> read_prompt_file(const std::filesystem::path& jsonl,
                                          const Tokenizer& tokenizer,
                                          const std::vector<int32_t>& prefix);

// Task prompts. `template_name`: a template id or its index in the task file. Records come from
// `jsonl`; when it is empty, `texts` fill the task's single input field (a task with more than
// one input field needs a file).
std::vector<PromptInput> task_prompts(const std::filesystem::path& task_file,
                                      const std::string& template_name,
                                      const std::filesystem::path& jsonl,
                                      const std::vector<std::string>& texts,
                                      const Tokenizer& tokenizer, int64_t max_prompt_tokens,
                                      uint64_t run_seed);

}  // namespace pft
