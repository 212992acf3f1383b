// `pft generate --task` renders prompts exactly as training and evaluation render them: a task's
// validation records fed in give, token for token, the prompt part of the documents evaluation
// scores (TaskDataset::render of the validation split), few-shot demonstrations included; the
// picks follow run.seed as evaluation's do.
#include <gtest/gtest.h>

#include <filesystem>

#include "data/dataset.h"
#include "data/task.h"
#include "data/tokenizer.h"
#include "train/generate_prompts.h"

namespace pft {
namespace {

namespace fs = std::filesystem;

const fs::path kRepo = PFT_SOURCE_ROOT;

std::vector<std::vector<int32_t>> evaluation_prompts(const std::string& template_id,
                                                      uint64_t seed, const Tokenizer& tok) {
  DataOptions o;
  o.seq_len = 256;
  o.seed = seed;
  const TaskDataset data(load_task(kRepo / "datasets/tasks/add.yaml"), 0, o);
  int32_t t = 0;
  while (data.task().templates[static_cast<size_t>(t)].id != template_id) ++t;
  std::vector<std::vector<int32_t>> out;
  for (int64_t i = 0; i < data.size(Split::kValidation); ++i) {
    const RenderedExample ex = data.render(Split::kValidation, i, t, tok);
    out.emplace_back(ex.tokens.begin(), ex.tokens.begin() + ex.prompt_tokens);
  }
  return out;
}

std::vector<std::vector<int32_t>> generate_prompts(const std::string& template_id, uint64_t seed,
                                                    const Tokenizer& tok) {
  std::vector<std::vector<int32_t>> out;
  for (const PromptInput& p :
       task_prompts(kRepo / "datasets/tasks/add.yaml", template_id,
                    kRepo / "datasets/add/validation.jsonl", {}, tok, 256, seed))
    out.push_back(p.tokens);
  return out;
}

TEST(GeneratePrompts, TaskPromptsAreTheEvaluationPrompts) {
  const std::unique_ptr<Tokenizer> tok = load_tokenizer("byte");
  for (const char* t : {"equation", "question_few_shot", "sum_of"}) {
    const auto eval = evaluation_prompts(t, 1234, *tok);
    const auto gen = generate_prompts(t, 1234, *tok);
    ASSERT_GT(eval.size(), 10u);
    ASSERT_EQ(gen.size(), eval.size()) << t;
    for (size_t i = 0; i < eval.size(); ++i) EXPECT_EQ(gen[i], eval[i]) << t << " record " << i;
  }
  // The demonstrations vary by record and follow the seed, as evaluation's do.
  const auto a = generate_prompts("question_few_shot", 1234, *tok);
  const auto b = generate_prompts("question_few_shot", 99, *tok);
  EXPECT_NE(a, b);
  EXPECT_EQ(b, evaluation_prompts("question_few_shot", 99, *tok));
}

}  // namespace
}  // namespace pft
