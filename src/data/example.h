// What the prompt-dataset layer hands to the layers above it: one example rendered under one
// template, as tokens plus a loss mask.
//
// Producers: TaskDataset::render (data/dataset.h). Consumers: the packer and the prepared token
// store (which concatenate examples into rows), the evaluator (which takes the prompt part as the
// generation context and compares against TaskDataset::references).
//
// Layout of `tokens` (each part tokenized on its own, see Note [part boundaries] in
// data/template.h):
//
//   [instruction + guidelines][few-shot demonstrations][input] | [answer][eos]
//   <------------------------- prompt_tokens ---------------->   <-- answer_tokens -->
//
// loss_mask is 1 exactly on the answer part (answer + eos) unless data.train_on_prompt, where
// it is 1 everywhere. The mask is per token, not per target: the packer shifts it when it builds
// next-token targets (a token with mask 1 is one the model must predict from what precedes it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace pft {

// The three splits of a task, in this order everywhere (files, reports, carved ratios).
enum class Split : int { kTrain = 0, kValidation = 1, kTest = 2 };
inline constexpr int kNumSplits = 3;
inline const char* split_name(Split s) {
  switch (s) {
    case Split::kTrain:
      return "train";
    case Split::kValidation:
      return "validation";
    case Split::kTest:
      return "test";
  }
  return "?";
}

struct RenderedExample {           // one example under one template
  std::vector<int32_t> tokens;     // (prompt_tokens + answer_tokens) prompt + answer (+ eos)
  std::vector<uint8_t> loss_mask;  // same length; 1 = trained
  int32_t task = 0;                // index of the task in data.tasks order
  int32_t template_id = 0;         // index within the task's templates
  int64_t example_id = 0;          // index within the split
  int32_t prompt_tokens = 0, answer_tokens = 0;  // sizes of the parts (answer incl. eos)
  bool truncated = false;                        // cut to data.seq_len by the template's policy
};

// Token counts of the prompt's parts and what the truncation policy did; for `pft data show`,
// validation reports and tests. The four counts add up to tokens.size().
struct RenderDetail {
  int32_t instruction_tokens = 0;  // instruction + guidelines (+ separators)
  int32_t few_shot_tokens = 0;     // demonstrations (+ separators)
  int32_t input_tokens = 0;
  int32_t answer_tokens = 0;    // answer (+ eos)
  int32_t demos = 0;            // demonstrations kept
  int32_t demos_dropped = 0;    // demonstrations dropped to fit data.seq_len
  bool field_cut = false;       // the template's truncate.field was shortened
  int32_t hard_cut_tokens = 0;  // tokens removed by the last-resort cut (prompt head, answer tail)
  std::vector<int64_t> demo_ids;  // pool indices of the demonstrations kept, in prompt order
};

}  // namespace pft
