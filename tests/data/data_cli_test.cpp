// `pft data` end to end: validate exits 0 on the bundled collection and 2 naming file:line on a
// broken file (0 with data.strict: false), show marks the trained span and counts each part's
// tokens (bundled and Super-NaturalInstructions tasks), and bad flags exit 2.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "run_command.h"

namespace {

namespace fs = std::filesystem;

const std::string kPft = PFT_BIN;
const fs::path kRepo = PFT_SOURCE_ROOT;

using pft::test::Result;
using pft::test::run;

bool has(const Result& r, const std::string& s) { return r.out.find(s) != std::string::npos; }

class DataCli : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("pft_data_cli_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path write(const std::string& name, const std::string& content) const {
    const fs::path p = dir_ / name;
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
  // A config whose data section is `data` (YAML lines under `data:`).
  fs::path config(const std::string& data, const std::string& name = "c.yaml") const {
    return write(name, "data:\n" + data + "train: {steps: 1, global_batch_size: 1, lr: 0.1}\n");
  }
  fs::path collection_config() const {
    return write("collection.yaml", "defaults: [" +
                                        (kRepo / "datasets" / "collection.yaml").string() +
                                        "]\n"
                                        "train: {steps: 1, global_batch_size: 1, lr: 0.1}\n");
  }

  fs::path dir_;
};

TEST_F(DataCli, ValidateTheBundledCollection) {
  const Result r = run(kPft + " data validate " + collection_config().string());
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(has(r, "data: 7 task(s) valid")) << r.out;
  for (const char* t :
       {"add", "reverse", "sort_digits", "max_digit", "uppercase", "sentiment", "tech_qa"})
    EXPECT_TRUE(has(r, std::string("\n") + t + " ")) << t << "\n" << r.out;
}

TEST_F(DataCli, ValidateABrokenFileExitsTwoNamingFileAndLine) {
  write("train.jsonl",
        "{\"q\": \"a\", \"answer\": \"b\"}\n{\"q\": \"c\", \"answer\": \"d\"}\n"
        "{\"q\": \"e\", \"answer\": }\n{\"q\": \"f\", \"answer\": \"g\"}\n");
  write("t.yaml",
        "name: t\nfields: [q, answer]\nsource: {train: train.jsonl}\n"
        "templates: [{id: x, input: \"{q}:\", output: \" {answer}\"}]\n");
  const fs::path cfg = config("  source: tasks\n  tasks: [t.yaml]\n");
  Result r = run(kPft + " data validate " + cfg.string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(has(r, (dir_ / "train.jsonl").string() + ":3:")) << r.out;
  EXPECT_TRUE(has(r, "malformed JSON")) << r.out;
  EXPECT_TRUE(has(r, "data: invalid")) << r.out;

  r = run(kPft + " data validate " + cfg.string() + " --set data.strict=false");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(has(r, "1 bad record(s) would be skipped")) << r.out;
  EXPECT_TRUE(has(r, "train.jsonl:3:")) << r.out;
}

TEST_F(DataCli, ValidateReportsEveryBrokenTask) {
  write("train.jsonl", "{\"q\": \"a\", \"answer\": \"b\"}\n");
  write("bad_field.yaml",
        "name: t1\nfields: [q, answer]\nsource: {train: train.jsonl}\n"
        "templates: [{id: ask, input: \"{qq}:\", output: \" {answer}\"}]\n");
  write("missing.yaml",
        "name: t2\nfields: [q, answer]\nsource: {train: nope.jsonl}\n"
        "templates: [{id: x, input: \"{q}:\", output: \" {answer}\"}]\n");
  const fs::path cfg =
      config("  source: tasks\n  tasks: [bad_field.yaml, missing.yaml, gone.yaml]\n");
  const Result r = run(kPft + " data validate " + cfg.string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(has(r, "bad_field.yaml:4:")) << r.out;
  EXPECT_TRUE(has(r, "template 'ask' of task 't1': unknown field 'qq'; did you mean 'q'?"))
      << r.out;
  EXPECT_TRUE(has(r, "missing.yaml:3:")) << r.out;
  EXPECT_TRUE(has(r, "'nope.jsonl' does not exist")) << r.out;
  EXPECT_TRUE(has(r, "task file 'gone.yaml' does not exist")) << r.out;
}

TEST_F(DataCli, ShowMarksTheTrainedSpan) {
  const Result r = run(kPft + " data show " + collection_config().string() +
                       " --task add -n 1 --template equation");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(has(r, "Add the two numbers.\n\n64 + 95 =⟦ 159<|endoftext|>⟧")) << r.out;
  EXPECT_TRUE(has(r, "tokens: instruction 22 · few-shot 0 · input 9 · answer 5 (incl. eos) = 36"))
      << r.out;
  EXPECT_TRUE(has(r, "references: \"159\"")) << r.out;
  EXPECT_FALSE(has(r, "\x1b[")) << "no colour when stdout is not a terminal";

  const Result fs = run(kPft + " data show " + collection_config().string() +
                        " --task add -n 1 --template question_few_shot --split validation");
  EXPECT_EQ(fs.code, 0) << fs.out;
  EXPECT_TRUE(has(fs, "demonstrations (train): ")) << fs.out;
  EXPECT_TRUE(has(fs, "Question: what is")) << fs.out;

  const Result everything =
      run(kPft + " data show " + collection_config().string() +
          " --task sentiment -n 2 --split validation --set data.train_on_prompt=true");
  EXPECT_EQ(everything.code, 0) << everything.out;
  EXPECT_TRUE(has(everything, "template 'happy' (held out)")) << everything.out;
  EXPECT_TRUE(has(everything, "⟦Is the review positive or negative?")) << everything.out;
  EXPECT_TRUE(has(everything, "labels (scored by likelihood): positive, negative"))
      << everything.out;
}

TEST_F(DataCli, ShowANatinstTask) {
  const fs::path cfg =
      config("  source: tasks\n  seq_len: 1024\n  tasks: [" +
             (kRepo / "tests" / "data" / "natinst_task1189.yaml").string() + "]\n");
  const Result r =
      run(kPft + " data show " + cfg.string() + " --task natinst_check_char -n 1 --template 0");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(has(r, "Definition: In this task, you are given a string S")) << r.out;
  EXPECT_TRUE(has(r, "Positive Example -\nInput: ")) << r.out;
  EXPECT_TRUE(has(r, "demonstrations (positive examples): ")) << r.out;
  EXPECT_TRUE(has(r, "Output:⟦ ")) << r.out;
  EXPECT_FALSE(has(r, "truncated")) << r.out;
}

// show and validate read only data.*: training keys that `pft train` would refuse (required
// train keys missing, warmup beyond steps) do not stop them.
TEST_F(DataCli, ShowAndValidateNeedOnlyTheDataKeys) {
  const fs::path cfg = write(
      "data_only.yaml", "data:\n  seq_len: 200\n  source: tasks\n  tasks: [" +
                            (kRepo / "datasets" / "tasks" / "add.yaml").string() +
                            "]\ntrain: {steps: 1, warmup_steps: 5}\n");
  Result r = run(kPft + " data validate " + cfg.string());
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(has(r, "data: 1 task(s) valid")) << r.out;
  r = run(kPft + " data show " + cfg.string() + " --task add -n 1");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(has(r, "seq_len 200")) << r.out;
  // A data key still counts, naming it.
  r = run(kPft + " data validate " + cfg.string() + " --set data.mixing=fixed");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(has(r, "error: data.mixing: `fixed` takes its weights")) << r.out;
  // Training refuses the same config, naming the key.
  r = run(kPft + " config show " + cfg.string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(has(r, "train.global_batch_size: required key is missing")) << r.out;
  r = run(kPft + " config show " + cfg.string() + " --set train.global_batch_size=8 --set train.lr=0.1");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(has(r, "train.warmup_steps: 5 warmup steps exceed train.steps")) << r.out;
}

TEST_F(DataCli, BadFlagsExitTwo) {
  Result r = run(kPft + " data show " + collection_config().string() + " --task ad");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(has(r, "did you mean 'add'")) << r.out;
  r = run(kPft + " data show " + collection_config().string() + " --task add --template nope");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_TRUE(has(r, "templates: equation, question_few_shot, sum_of")) << r.out;
  r = run(kPft + " data show " + collection_config().string() + " --task add --split dev");
  EXPECT_EQ(r.code, 2) << r.out;
  r = run(kPft + " data");
  EXPECT_EQ(r.code, 2) << r.out;
  r = run(kPft + " data docs");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_TRUE(has(r, "| `templates[].few_shot.k` | int | `0` |")) << r.out;
}

}  // namespace
