// EvalReferences: the other references of validation examples, as the answer tokens each renders
// to under each validation template (the template's output format, tokenized as the renderer
// tokenizes answers); none for examples with a single reference or tasks scored by loss.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "config/config.h"
#include "data/tokenizer.h"
#include "train/eval_references.h"

namespace pft {
namespace {

namespace fs = std::filesystem;

TEST(EvalReferences, EveryOtherReferenceUnderEveryTemplate) {
  const fs::path dir = fs::temp_directory_path() / ("pft-eval-refs-" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "train.jsonl") << "{\"q\": \"a\", \"answer\": \"x\"}\n";
  std::ofstream(dir / "validation.jsonl")
      << "{\"q\": \"b\", \"answer\": \"y\"}\n{\"q\": \"c\", \"answer\": [\"1\", \"one\", \"I\"]}\n";
  std::ofstream(dir / "t.yaml")
      << "name: t\nfields: [q, answer]\n"
         "source: {train: train.jsonl, validation: validation.jsonl}\n"
         "templates:\n  - {id: plain, input: \"{q}:\", output: \" {answer}\"}\n"
         "  - {id: dotted, input: \"{q}?\", output: \" {answer}.\", held_out: true}\n";
  std::ofstream(dir / "loss.yaml")
      << "name: l\nmetric: loss\nfields: [q, answer]\n"
         "source: {train: train.jsonl, validation: validation.jsonl}\n"
         "templates:\n  - {id: plain, input: \"{q}:\", output: \" {answer}\"}\n";
  const Config config = parse_config("data: {source: tasks, tasks: [" + (dir / "t.yaml").string() +
                                         ", " + (dir / "loss.yaml").string() +
                                         "]}\ntrain: {steps: 1, global_batch_size: 1, lr: 0.1}\n",
                                     "refs.yaml");
  const std::unique_ptr<Tokenizer> byte = load_tokenizer("byte");
  const EvalReferences refs(config, *byte);

  EXPECT_EQ(refs.others(0, 0, 0), nullptr);  // one reference
  const auto* plain = refs.others(0, 1, 0);
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ(*plain, (std::vector<std::vector<int32_t>>{byte->encode(" one"), byte->encode(" I")}));
  const auto* dotted = refs.others(0, 1, 1);  // a held-out template is evaluated too
  ASSERT_NE(dotted, nullptr);
  EXPECT_EQ(*dotted,
            (std::vector<std::vector<int32_t>>{byte->encode(" one."), byte->encode(" I.")}));
  EXPECT_EQ(refs.others(1, 1, 0), nullptr);  // metric: loss
  fs::remove_all(dir);
}

}  // namespace
}  // namespace pft
