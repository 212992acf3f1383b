// Rendering: prompt layout, the loss mask on answer + eos, train_on_prompt, few-shot picks
// (deterministic, never the example itself), truncation policy, references and labels, held-out
// templates, GPT-2 part boundaries, Super-NaturalInstructions prompts.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "data/render.h"
#include "data/tokenizer.h"
#include "data_test_util.h"

namespace pft {
namespace {

using namespace testing_data;

const Tokenizer& byte_tok() {
  static const std::unique_ptr<Tokenizer> t = load_tokenizer("byte");
  return *t;
}
const Tokenizer& gpt2() {
  static const std::unique_ptr<Tokenizer> t = load_tokenizer(kGpt2Dir.string());
  return *t;
}

std::string text_of(const RenderedExample& ex, const Tokenizer& tok, bool masked) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i < ex.tokens.size(); ++i)
    if (ex.loss_mask[i] == (masked ? 1 : 0)) ids.push_back(ex.tokens[i]);
  return tok.decode(ids);
}

fs::path add_task() { return kRepo / "datasets" / "tasks" / "add.yaml"; }

TEST(Render, MaskCoversAnswerAndEos) {
  const TaskDataset d = load(add_task());
  const Record& r = d.record(Split::kTrain, 0);  // {"a": "64", "b": "95", "answer": "159"}
  ASSERT_EQ(r.values[0], "64");
  RenderDetail detail;
  const RenderedExample ex = d.render(Split::kTrain, 0, 0, byte_tok(), &detail);
  const std::string prompt = "Add the two numbers.\n\n64 + 95 =";
  EXPECT_EQ(text_of(ex, byte_tok(), false), prompt);
  EXPECT_EQ(text_of(ex, byte_tok(), true), " 159<|endoftext|>");
  EXPECT_EQ(ex.prompt_tokens, static_cast<int32_t>(prompt.size()));
  EXPECT_EQ(ex.answer_tokens, 5);
  EXPECT_EQ(ex.tokens.back(), byte_tok().eos_id());
  EXPECT_EQ(ex.tokens.size(), ex.loss_mask.size());
  EXPECT_EQ(ex.task, 0);
  EXPECT_EQ(ex.template_id, 0);
  EXPECT_EQ(ex.example_id, 0);
  EXPECT_FALSE(ex.truncated);
  // The mask is one contiguous run at the end.
  EXPECT_TRUE(std::is_sorted(ex.loss_mask.begin(), ex.loss_mask.end()));
  EXPECT_EQ(detail.instruction_tokens,
            static_cast<int32_t>(std::string("Add the two numbers.\n\n").size()));
  EXPECT_EQ(detail.few_shot_tokens, 0);
  EXPECT_EQ(detail.input_tokens, static_cast<int32_t>(std::string("64 + 95 =").size()));
  EXPECT_EQ(detail.answer_tokens, 5);
  EXPECT_EQ(d.references(Split::kTrain, 0), (std::vector<std::string>{"159"}));
  EXPECT_EQ(d.reference_texts(Split::kTrain, 0, 0), (std::vector<std::string>{" 159"}));
}

TEST(Render, TrainOnPromptAndNoEos) {
  DataOptions o = options();
  o.train_on_prompt = true;
  const TaskDataset d = load(add_task(), o);
  const RenderedExample ex = d.render(Split::kTrain, 0, 0, byte_tok());
  EXPECT_TRUE(
      std::all_of(ex.loss_mask.begin(), ex.loss_mask.end(), [](uint8_t m) { return m == 1; }));
  EXPECT_GT(ex.prompt_tokens, 0);  // sizes still say where the answer starts

  TempDir dir;
  dir.file("train.jsonl", "{\"q\": \"x\", \"answer\": \"y\"}\n");
  const fs::path f =
      dir.file("t.yaml",
               "name: t\nfields: [q, answer]\nsource: {train: train.jsonl}\n"
               "templates: [{id: x, input: \"{q}:\", output: \" {answer}\", eos: false}]\n");
  const RenderedExample e2 = load(f).render(Split::kTrain, 0, 0, byte_tok());
  EXPECT_EQ(e2.tokens, (std::vector<int32_t>{'x', ':', ' ', 'y'}));
  EXPECT_EQ(e2.loss_mask, (std::vector<uint8_t>{0, 0, 1, 1}));
}

TEST(Render, PromptLayoutWithGuidelinesAndDemos) {
  TempDir dir;
  dir.file("train.jsonl",
           "{\"q\": \"a\", \"answer\": \"A\"}\n{\"q\": \"b\", \"answer\": \"B\"}\n"
           "{\"q\": \"c\", \"answer\": \"C\"}\n");
  const fs::path f = dir.file("t.yaml", R"(name: t
fields: [q, answer]
source: {train: train.jsonl}
templates:
  - id: full
    instruction: Upper-case it.
    guidelines: One letter only.
    input: "in: {q}\nout:"
    output: " {answer}"
    separator: "\n\n"
    few_shot: {k: 2, separator: "\n--\n", format: "in: {q} => {answer}"}
)");
  const TaskDataset d = load(f);
  const PromptTexts x = d.texts(Split::kTrain, 0, 0);
  EXPECT_EQ(x.instruction, "Upper-case it.\n\nOne letter only.\n\n");
  // Example 0 ("a") gets the other two as demonstrations, in a seeded order.
  EXPECT_TRUE(x.few_shot == "in: b => B\n--\nin: c => C\n\n" ||
              x.few_shot == "in: c => C\n--\nin: b => B\n\n")
      << x.few_shot;
  EXPECT_EQ(x.input, "in: a\nout:");
  EXPECT_EQ(x.answer, " A");
  RenderDetail detail;
  const RenderedExample ex = d.render(Split::kTrain, 0, 0, byte_tok(), &detail);
  EXPECT_EQ(detail.few_shot_tokens, static_cast<int32_t>(x.few_shot.size()));
  EXPECT_EQ(detail.demos, 2);
  EXPECT_EQ(detail.demo_ids.size(), 2u);
  EXPECT_EQ(std::count(detail.demo_ids.begin(), detail.demo_ids.end(), 0), 0);
  EXPECT_EQ(text_of(ex, byte_tok(), false), x.prompt());
}

TEST(Render, FewShotIsDeterministicAndNeverTheExample) {
  const fs::path f = add_task();  // template 1: k = 2 from train
  const TaskDataset a = load(f), b = load(f);
  const TaskDataset other_seed = load(f, options(256, true, 99));
  int64_t differ = 0;
  std::set<int64_t> used;
  for (int64_t i = 0; i < a.size(Split::kTrain); ++i) {
    const std::vector<int64_t> p = a.pick_demos(Split::kTrain, i, 1);
    ASSERT_EQ(p.size(), 2u);
    EXPECT_NE(p[0], p[1]);
    EXPECT_EQ(std::count(p.begin(), p.end(), i), 0) << "example " << i << " is its own demo";
    EXPECT_EQ(p, b.pick_demos(Split::kTrain, i, 1));
    differ += p != other_seed.pick_demos(Split::kTrain, i, 1);
    used.insert(p.begin(), p.end());
  }
  EXPECT_GT(differ, a.size(Split::kTrain) * 9 / 10);  // the seed matters
  EXPECT_GT(used.size(), 1500u);                      // spread over the pool
  // Evaluation examples draw from the train split too.
  EXPECT_EQ(a.pick_demos(Split::kValidation, 3, 1).size(), 2u);
  // Zero-shot templates draw nothing.
  EXPECT_TRUE(a.pick_demos(Split::kTrain, 0, 0).empty());
}

TEST(Render, FewShotExcludesRecordsWithTheSameInput) {
  TempDir dir;
  // Records 0 and 1 ask the same question; 2..4 differ.
  dir.file("train.jsonl",
           "{\"q\": \"same\", \"answer\": \"1\"}\n{\"q\": \"same\", \"answer\": \"2\"}\n"
           "{\"q\": \"x\", \"answer\": \"3\"}\n{\"q\": \"y\", \"answer\": \"4\"}\n"
           "{\"q\": \"z\", \"answer\": \"5\"}\n");
  dir.file("val.jsonl", "{\"q\": \"x\", \"answer\": \"3\"}\n");
  const fs::path f = dir.file("t.yaml",
                              "name: t\nfields: [q, answer]\n"
                              "source: {train: train.jsonl, validation: val.jsonl}\n"
                              "templates: [{id: x, input: \"{q}\", output: \" {answer}\","
                              " few_shot: {k: 3}}]\n");
  const TaskDataset d = load(f);
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const TaskDataset s = load(f, options(256, true, seed));
    std::vector<int64_t> p = s.pick_demos(Split::kTrain, 0, 0);
    std::sort(p.begin(), p.end());
    EXPECT_EQ(p, (std::vector<int64_t>{2, 3, 4}));
    p = s.pick_demos(Split::kValidation, 0, 0);  // never train record 2 (same input "x")
    EXPECT_EQ(std::count(p.begin(), p.end(), 2), 0);
  }
  // With k = 4 the train example 0 has only 3 possible demonstrations.
  const fs::path g = dir.file("g.yaml",
                              "name: t\nfields: [q, answer]\nsource: {train: train.jsonl}\n"
                              "templates: [{id: x, input: \"{q}\", output: \" {answer}\","
                              " few_shot: {k: 4}}]\n");
  const TaskDataset dg = load(g);
  expect_input_error([&] { dg.render(Split::kTrain, 0, 0, byte_tok()); },
                     {"template 'x'", "train example 0", "train.jsonl:1", "only 3 possible"});
}

TEST(Render, HeldOutTemplatesOnlyAtEvaluation) {
  const TaskDataset d = load(add_task());
  EXPECT_EQ(d.templates_for(Split::kTrain), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(d.templates_for(Split::kValidation), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(d.templates_for(Split::kTest), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_TRUE(d.task().templates[2].held_out);
}

// A task whose examples are long: 40-character texts, seq_len small.
fs::path long_task(const TempDir& dir, const std::string& truncate) {
  std::string data;
  for (int i = 0; i < 6; ++i)
    data +=
        fmt::format("{{\"text\": \"{}{}\", \"answer\": \"ok\"}}\n", std::string(39, 'a' + i), i);
  dir.file("train.jsonl", data);
  return dir.file("t.yaml",
                  "name: t\nfields: [text, answer]\nsource: {train: train.jsonl}\n"
                  "templates:\n  - id: x\n    instruction: Say ok.\n"
                  "    input: \"T: {text}\\nA:\"\n    output: \" {answer}\"\n"
                  "    few_shot: {k: 2}\n" +
                      truncate);
}

TEST(Render, TruncationDropsDemosFirst) {
  TempDir dir;
  const fs::path f = long_task(dir, "");
  // "Say ok.\n\n" (9) + 2 demos of 49 ("T: " + 40 + "\nA:" + " ok") with "\n\n" between and
  // after (102) + input (46) + " ok" + eos (4) = 161; with one demo 110; with none 59.
  const TaskDataset full = load(f, options(1000));
  RenderDetail d0;
  const RenderedExample e0 = full.render(Split::kTrain, 0, 0, byte_tok(), &d0);
  EXPECT_FALSE(e0.truncated);
  EXPECT_EQ(d0.demos, 2);
  EXPECT_EQ(e0.tokens.size(), 161u);
  const int64_t one_demo = 110;
  const TaskDataset d = load(f, options(one_demo + 5));
  RenderDetail d1;
  const RenderedExample e1 = d.render(Split::kTrain, 0, 0, byte_tok(), &d1);
  EXPECT_TRUE(e1.truncated);
  EXPECT_EQ(d1.demos, 1);
  EXPECT_EQ(d1.demos_dropped, 1);
  EXPECT_EQ(d1.demo_ids.size(), 1u);
  EXPECT_FALSE(d1.field_cut);
  EXPECT_EQ(d1.hard_cut_tokens, 0);
  EXPECT_LE(static_cast<int64_t>(e1.tokens.size()), one_demo + 5);
  // The kept demonstration is the one nearest the input.
  const std::vector<int64_t> picks = d.pick_demos(Split::kTrain, 0, 0);
  EXPECT_EQ(d1.demo_ids[0], picks[1]);
}

TEST(Render, TruncationCutsTheFieldFromItsSide) {
  for (const char* side : {"left", "right"}) {
    SCOPED_TRACE(side);
    TempDir dir;
    const fs::path f =
        long_task(dir, fmt::format("    truncate: {{field: text, side: {}}}\n", side));
    // No demos fit; "Say ok.\n\n" (9) + "T: " + text (40) + "\nA:" + " ok" + eos (4) = 59: the
    // text keeps 40 - 19 = 21 characters.
    const TaskDataset d = load(f, options(40));
    RenderDetail detail;
    const RenderedExample ex = d.render(Split::kTrain, 0, 0, byte_tok(), &detail);
    EXPECT_TRUE(ex.truncated);
    EXPECT_EQ(detail.demos, 0);
    EXPECT_TRUE(detail.field_cut);
    EXPECT_EQ(detail.hard_cut_tokens, 0);
    EXPECT_EQ(ex.tokens.size(), 40u);  // the longest cut that fits
    const std::string prompt = text_of(ex, byte_tok(), false);
    const std::string kept =
        std::string(side) == "left" ? std::string(20, 'a') + "0" : std::string(21, 'a');
    EXPECT_EQ(prompt, "Say ok.\n\nT: " + kept + "\nA:");
    EXPECT_EQ(text_of(ex, byte_tok(), true), " ok<|endoftext|>");
  }
}

TEST(Render, TruncationRespectsUtf8) {
  TempDir dir;
  std::string data = "{\"text\": \"";
  for (int i = 0; i < 20; ++i) data += "é";  // 2 bytes each
  data += "\", \"answer\": \"ok\"}\n";
  dir.file("train.jsonl", data);
  const fs::path f = dir.file("t.yaml",
                              "name: t\nfields: [text, answer]\nsource: {train: train.jsonl}\n"
                              "templates: [{id: x, input: \"{text}\", output: \" {answer}\","
                              " truncate: {field: text, side: right}}]\n");
  const TaskDataset d = load(f, options(15));  // 4 answer tokens: 11 bytes of text fit -> 5 chars
  const RenderedExample ex = d.render(Split::kTrain, 0, 0, byte_tok());
  const std::string prompt = text_of(ex, byte_tok(), false);
  EXPECT_EQ(prompt, "ééééé");
}

TEST(Render, TruncationLastResortKeepsTheAnswer) {
  TempDir dir;
  const fs::path f = long_task(dir, "");  // no truncate field
  const TaskDataset d = load(f, options(20));
  RenderDetail detail;
  const RenderedExample ex = d.render(Split::kTrain, 0, 0, byte_tok(), &detail);
  EXPECT_TRUE(ex.truncated);
  EXPECT_EQ(ex.tokens.size(), 20u);
  EXPECT_EQ(text_of(ex, byte_tok(), true), " ok<|endoftext|>");               // answer whole
  EXPECT_EQ(text_of(ex, byte_tok(), false), std::string(12, 'a') + "0\nA:");  // prompt's end
  EXPECT_EQ(detail.hard_cut_tokens, 59 - 20);
  EXPECT_EQ(detail.instruction_tokens + detail.few_shot_tokens + detail.input_tokens +
                detail.answer_tokens,
            20);

  // An answer longer than the budget: keeps half the budget of prompt, cuts the answer's end.
  dir.file("long.jsonl",
           fmt::format("{{\"text\": \"q\", \"answer\": \"{}\"}}\n", std::string(100, 'z')));
  const fs::path g = dir.file("g.yaml",
                              "name: t\nfields: [text, answer]\nsource: {train: long.jsonl}\n"
                              "templates: [{id: x, input: \"{text}:\", output: \" {answer}\"}]\n");
  const RenderedExample e2 = load(g, options(16)).render(Split::kTrain, 0, 0, byte_tok());
  EXPECT_EQ(e2.tokens.size(), 16u);
  EXPECT_EQ(e2.prompt_tokens, 2);
  EXPECT_EQ(text_of(e2, byte_tok(), true), " " + std::string(13, 'z'));
}

TEST(Render, EveryBundledExampleFitsAndMasksOnlyTheAnswer) {
  for (const char* name :
       {"add", "reverse", "sort_digits", "max_digit", "uppercase", "sentiment", "tech_qa"}) {
    SCOPED_TRACE(name);
    const TaskDataset d = load(kRepo / "datasets" / "tasks" / (std::string(name) + ".yaml"));
    for (int s = 0; s < kNumSplits; ++s) {
      const Split split = static_cast<Split>(s);
      for (int32_t t : d.templates_for(split)) {
        for (int64_t i = 0; i < std::min<int64_t>(d.size(split), 50); ++i) {
          const RenderedExample ex = d.render(split, i, t, byte_tok());
          ASSERT_FALSE(ex.truncated);
          ASSERT_LE(ex.tokens.size(), 256u);
          const std::string answer = text_of(ex, byte_tok(), true);
          ASSERT_EQ(answer, " " + d.references(split, i)[0] + "<|endoftext|>");
        }
      }
    }
  }
}

TEST(Render, ClassificationLabelAnswers) {
  const TaskDataset d = load(kRepo / "datasets" / "tasks" / "sentiment.yaml");
  const auto labels = d.label_answers(Split::kValidation, 0, 0, byte_tok());
  ASSERT_EQ(labels.size(), 2u);
  EXPECT_EQ(byte_tok().decode(labels[0]), " positive<|endoftext|>");
  EXPECT_EQ(byte_tok().decode(labels[1]), " negative<|endoftext|>");
  const RenderedExample ex = d.render(Split::kValidation, 0, 0, byte_tok());
  const std::vector<int32_t> answer(ex.tokens.end() - ex.answer_tokens, ex.tokens.end());
  EXPECT_TRUE(answer == labels[0] || answer == labels[1]);
}

TEST(Render, ListAnswersGiveAllReferences) {
  TempDir dir;
  dir.file("train.jsonl", "{\"q\": \"capital of France\", \"answer\": [\"Paris\", \"paris\"]}\n");
  const fs::path f = dir.file("t.yaml",
                              "name: t\nfields: [q, answer]\nsource: {train: train.jsonl}\n"
                              "templates: [{id: x, input: \"{q}?\", output: \" {answer}.\"}]\n");
  const TaskDataset d = load(f);
  EXPECT_EQ(d.references(Split::kTrain, 0), (std::vector<std::string>{"Paris", "paris"}));
  EXPECT_EQ(d.reference_texts(Split::kTrain, 0, 0),
            (std::vector<std::string>{" Paris.", " paris."}));
  // The first reference is the trained answer.
  EXPECT_EQ(text_of(d.render(Split::kTrain, 0, 0, byte_tok()), byte_tok(), true),
            " Paris.<|endoftext|>");
}

TEST(Render, Gpt2PartBoundaries) {
  const Tokenizer& tok = gpt2();
  // The recommended convention: the prompt ends on a non-space, the output starts with one.
  EXPECT_FALSE(boundary_splits_token(tok, "64 + 95 =", " 159"));
  EXPECT_FALSE(boundary_splits_token(
      tok, "Question: what is a stack?\nAnswer:", " A last-in, first-out collection."));
  // A trailing space in the prompt splits " 159" in two: reported by validate.
  EXPECT_TRUE(boundary_splits_token(tok, "64 + 95 = ", "159"));

  const TaskDataset d = load(kRepo / "datasets" / "tasks" / "tech_qa.yaml");
  for (int32_t t : d.templates_for(Split::kValidation)) {
    const PromptTexts x = d.texts(Split::kValidation, 0, t);
    EXPECT_FALSE(boundary_splits_token(tok, x.prompt(), x.answer)) << d.task().templates[t].id;
    const RenderedExample ex = d.render(Split::kValidation, 0, t, tok);
    // Mask boundary exact: the trained tokens decode to the answer + eos, the rest to the prompt.
    EXPECT_EQ(text_of(ex, tok, true), x.answer + "<|endoftext|>");
    EXPECT_EQ(text_of(ex, tok, false), x.prompt());
    EXPECT_EQ(ex.answer_tokens, static_cast<int32_t>(tok.encode(x.answer).size()) + 1);
  }
}

TEST(Render, NatinstPromptsUseDefinitionAndPositiveExamples) {
  const TaskDataset d = load(kRepo / "tests" / "data" / "natinst_task1189.yaml");
  const PromptTexts x = d.texts(Split::kTrain, 0, 0);
  EXPECT_EQ(x.instruction.rfind("Definition: In this task, you are given a string S", 0), 0u);
  EXPECT_EQ(x.instruction.substr(x.instruction.size() - 2), "\n\n");
  // Both positive examples, with their explanations, in a seeded order.
  EXPECT_NE(x.few_shot.find("Input: IcLCZgiymDWVHOGsOMdoksiLJoj,h\nOutput: 0\nExplanation: h is "
                            "not present in the string"),
            std::string::npos)
      << x.few_shot;
  EXPECT_NE(x.few_shot.find("Input: CWlOoIRWGvoyRWJWzAKeKMSutk,J\nOutput: 1"), std::string::npos);
  EXPECT_EQ(x.input.rfind("Now complete the following example -\nInput: ", 0), 0u);
  const Record& r = d.record(Split::kTrain, 0);
  EXPECT_EQ(x.answer, " " + r.references[0]);
  const RenderedExample ex = d.render(Split::kTrain, 0, 0, gpt2());
  EXPECT_EQ(text_of(ex, gpt2(), true), x.answer + "<|endoftext|>");
  EXPECT_FALSE(boundary_splits_token(gpt2(), x.prompt(), x.answer));
  // The zero-shot template: the definition alone as the instruction.
  const PromptTexts z = d.texts(Split::kTrain, 0, 1);
  EXPECT_EQ(z.few_shot, "");
  EXPECT_EQ(z.instruction, d.constants()[2] + "\n\n");
}

}  // namespace
}  // namespace pft
