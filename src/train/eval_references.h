// Every acceptable answer of each held-out example (the validation split, or `pft eval --split
// test`'s test split), for exact match (train/evaluate.h).
//
// A task's documents carry one answer: the example's first reference, the one it trains on
// (data/readers.h). An example may accept several (a natinst instance's `output` list; docs/
// tasks.md: exact match compares "with every reference"). EvalReferences keeps the others, as
// the answer tokens each renders to under each validation template (render_answer_text through
// the template's output format, tokenized on its own as the renderer tokenizes the answer part;
// no eos), so evaluation can accept a generation equal to any of them.
//
// Built on every rank from the config alone (the task files and data.* options the token stores
// were built from, so example indices agree with the stores'): local and deterministic, no
// communication. Only tasks scored by exact match (`metric` other than `loss`) are read, and only examples with more
// than one reference take memory. Throws InputError as TaskDataset does.
#pragma once

#include <cstdint>
#include <map>
#include <tuple>
#include <vector>

#include "config/config.h"
#include "data/example.h"

namespace pft {

class Tokenizer;

class EvalReferences {
 public:
  // The examples of `split` (the one the evaluation reads).
  EvalReferences(const Config& config, const Tokenizer& tokenizer,
                 Split split = Split::kValidation);

  // The answer tokens of the other references (not the first) of held-out example `example`
  // of task `task` (index in data.tasks) under template `template_id`; null when it has none.
  const std::vector<std::vector<int32_t>>* others(size_t task, int64_t example,
                                                  int32_t template_id) const;

 private:
  std::map<std::tuple<size_t, int64_t, int32_t>, std::vector<std::vector<int32_t>>> others_;
};

}  // namespace pft
