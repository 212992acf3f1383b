// `pft eval` end to end, with real processes (docs/eval.md):
//   (a) a short full fine-tuning run on 2 ranks (exact match and classification tasks); `pft eval`
//       of its last checkpoint gives the numbers of the run's last `eval` records: on 2 ranks the
//       same bits, on 1 rank the same counts and the loss within 1e-5; the test split scores the
//       test files' examples;
//   (b) LoRA (base + --adapter) and prompt tuning (--checkpoint RUN_DIR, 2 ranks) runs on an
//       exported base: `pft eval` matches their in-training evaluation;
//   (c) a tiny Hugging Face model made by transformers (tests/reference/hf_fixtures.py), scored
//       zero-shot: JSON lines whose `eval` records match docs/metrics.md and an `eval_summary`;
//   (d) bad inputs (no model, a wrong split, a split a task file lacks, a checkpoint of another
//       architecture, an adapter on another base, a full checkpoint as --adapter, a bad flag):
//       exit 2 naming the flag, key or file; under mpirun every rank exits, no hang.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "../train/metrics_schema.h"
#include "run_command.h"

namespace {
namespace fs = std::filesystem;
namespace json = boost::json;

using pft::test::Result;
using pft::test::run;

const std::string kPft = PFT_BIN;
const fs::path kRepo = PFT_SOURCE_ROOT;
const fs::path kTasks = kRepo / "datasets" / "tasks";
const std::string kMpirun2 =
    std::string("PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 ") + PFT_MPIRUN +
    " -np 2 ";

using pft::test::read_records;

// The `eval` records of the last evaluation in `records`, keyed "task/template".
std::map<std::string, json::object> last_evals(const std::vector<json::object>& records) {
  int64_t last = -1;
  for (const json::object& r : records)
    if (r.at("kind").as_string() == "eval") last = std::max(last, r.at("step").as_int64());
  std::map<std::string, json::object> out;
  for (const json::object& r : records)
    if (r.at("kind").as_string() == "eval" && r.at("step").as_int64() == last)
      out[std::string(r.at("task").as_string()) + "/" + json::serialize(r.at("template"))] = r;
  return out;
}

double number(const json::object& r, const char* field) { return r.at(field).to_number<double>(); }

// `pft eval` against the run: every record present in both, the same counts and metrics; the
// loss bitwise (`exact`) or within 1e-5 relative.
void expect_same_evals(const std::map<std::string, json::object>& run_evals,
                       const std::map<std::string, json::object>& eval, bool exact) {
  ASSERT_FALSE(run_evals.empty());
  ASSERT_EQ(run_evals.size(), eval.size());
  for (const auto& [key, want] : run_evals) {
    ASSERT_TRUE(eval.contains(key)) << key;
    const json::object& got = eval.at(key);
    EXPECT_EQ(got.at("step").as_int64(), want.at("step").as_int64()) << key;
    EXPECT_EQ(got.at("documents").as_int64(), want.at("documents").as_int64()) << key;
    EXPECT_EQ(number(got, "tokens"), number(want, "tokens")) << key;
    if (exact)
      EXPECT_EQ(number(got, "loss"), number(want, "loss")) << key;
    else
      EXPECT_NEAR(number(got, "loss"), number(want, "loss"), 1e-5 * number(want, "loss")) << key;
    for (const char* metric : {"exact_match", "accuracy", "worst_template_exact_match",
                               "worst_template_accuracy"}) {
      EXPECT_EQ(got.contains(metric), want.contains(metric)) << key << " " << metric;
      if (got.contains(metric) && want.contains(metric))
        EXPECT_EQ(number(got, metric), number(want, metric)) << key << " " << metric;
    }
  }
}

std::string task_list(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ",") + (kTasks / (n + ".yaml")).string();
  return "[" + out + "]";
}

class EvalCli : public ::testing::Test {
 protected:
  // The quickstart model, small and short, on `add` (exact match) and `sentiment`
  // (classification); evaluation at step 0 and the end, 2 batches per template.
  static std::string settings(const fs::path& dir) {
    return " --set run.dir=" + dir.string() + " --set data.cache_dir=" + (root_ / "cache").string() +
           " --set data.tasks=" + task_list({"add", "sentiment"}) +
           " --set data.seq_len=128 --set run.threads=1"
           " --set eval.every_steps=0 --set eval.max_batches=2";
  }
  static std::string train(const fs::path& dir, int steps, const std::string& extra) {
    return kPft + " train configs/quickstart.yaml" + settings(dir) +
           " --set train.steps=" + std::to_string(steps) +
           " --set train.warmup_steps=1 --set run.log_every=5 --set checkpoint.async=false" +
           extra;
  }
  static std::string eval(const fs::path& dir, const std::string& extra) {
    return kPft + " eval configs/quickstart.yaml" + settings(dir) + extra;
  }

  // Not ASSERTs: Note [a failed SetUpTestSuite is no skip] in tests/run_command.h.
  static void SetUpTestSuite() {
    root_ = fs::temp_directory_path() / ("pft-eval-cli-" + std::to_string(getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    setup_failure_ = setup_failure(
        run(kMpirun2 + train(root_ / "full", 8, " --set train.lr=3e-3")), "training run");
    if (!setup_failure_.empty()) return;
    setup_failure_ = setup_failure(run(kPft + " ckpt export " +
                                       (root_ / "full/checkpoints/step_00000008.h5").string() +
                                       " --format hf --out " + (root_ / "base_hf").string()),
                                   "ckpt export");
  }
  void SetUp() override { ASSERT_TRUE(setup_failure_.empty()) << setup_failure_; }
  static void TearDownTestSuite() {
    if (::testing::UnitTest::GetInstance()->failed_test_count() == 0) fs::remove_all(root_);
  }
  static fs::path root_;
  static std::string setup_failure_;
};
fs::path EvalCli::root_;
std::string EvalCli::setup_failure_;

const std::string kCheckpoint = "full/checkpoints/step_00000008.h5";

TEST_F(EvalCli, FullCheckpointMatchesTheRunOnTwoRanksAndOne) {
  const auto want = last_evals(read_records(root_ / "full/metrics.jsonl"));
  ASSERT_EQ(want.begin()->second.at("step").as_int64(), 8);
  // 2 ranks, as trained: the same bits.
  const fs::path out2 = root_ / "full_eval2.jsonl";
  Result r = run(kMpirun2 + eval(root_ / "full", " --checkpoint " + (root_ / kCheckpoint).string() +
                                                     " --output " + out2.string()));
  ASSERT_EQ(r.code, 0) << r.out;
  // The tables as training prints them: held-out, per template with `*` held-out templates.
  EXPECT_NE(r.out.find("held-out at step 8: task"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("per template at step 8:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("*sum_of"), std::string::npos) << r.out;
  const std::vector<json::object> records2 = read_records(out2);
  expect_same_evals(want, last_evals(records2), /*exact=*/true);
  ASSERT_EQ(records2.back().at("kind").as_string(), "eval_summary");
  EXPECT_EQ(records2.back().at("world_size").as_int64(), 2);
  EXPECT_EQ(records2.back().at("step").as_int64(), 8);
  EXPECT_EQ(records2.back().at("method").as_string(), "full");
  // 1 rank, the run directory (its latest checkpoint): the same documents, counts and metrics.
  const fs::path out1 = root_ / "full_eval1.jsonl";
  r = run(eval(root_ / "full", " --checkpoint " + (root_ / "full").string() + " --output " +
                                   out1.string()));
  ASSERT_EQ(r.code, 0) << r.out;
  const std::vector<json::object> records1 = read_records(out1);
  expect_same_evals(want, last_evals(records1), /*exact=*/false);
  EXPECT_EQ(records1.back().at("world_size").as_int64(), 1);
  EXPECT_EQ(records1.back().at("checkpoint").as_string(), (root_ / kCheckpoint).string());
}

TEST_F(EvalCli, TestSplitScoresTheTestFiles) {
  const fs::path out = root_ / "test_split.jsonl";
  const Result r = run(eval(root_ / "full", " --checkpoint " + (root_ / "full").string() +
                                                " --split test --max-batches 0 --output " +
                                                out.string()));
  ASSERT_EQ(r.code, 0) << r.out;
  const auto evals = last_evals(read_records(out));
  // Every example of test.jsonl under each template (3 for add, 2 for sentiment... as the task
  // files list them): documents = lines x templates.
  const auto lines = [](const fs::path& f) {
    std::ifstream in(f);
    int64_t n = 0;
    for (std::string l; std::getline(in, l);) n += l.empty() ? 0 : 1;
    return n;
  };
  const auto validation = last_evals(read_records(root_ / "full/metrics.jsonl"));
  for (const char* task : {"add", "sentiment"}) {
    const json::object& all = evals.at(std::string(task) + "/\"all\"");
    int64_t templates = 0;
    for (const auto& [key, rec] : evals)
      templates += rec.at("task").as_string() == task && rec.at("template").is_int64() ? 1 : 0;
    ASSERT_GT(templates, 0) << task;
    EXPECT_EQ(all.at("documents").as_int64(),
              lines(kRepo / "datasets" / task / "test.jsonl") * templates)
        << task;
    EXPECT_NE(number(all, "loss"), number(validation.at(std::string(task) + "/\"all\""), "loss"));
  }
  EXPECT_EQ(read_records(out).back().at("split").as_string(), "test");
}

TEST_F(EvalCli, LoraAdapterOnItsBaseMatchesItsRun) {
  const std::string peft = " --set model.from_pretrained=" + (root_ / "base_hf").string() +
                           " --set train.method=lora --set train.lr=1e-2";
  Result r = run(train(root_ / "lora", 4, peft));
  ASSERT_EQ(r.code, 0) << r.out;
  const fs::path out = root_ / "lora_eval.jsonl";
  // The eval config names the base only; method and peft.* come from the checkpoint.
  r = run(eval(root_ / "lora", " --model " + (root_ / "base_hf").string() + " --adapter " +
                                   (root_ / "lora/checkpoints/step_00000004.h5").string() +
                                   " --output " + out.string()));
  ASSERT_EQ(r.code, 0) << r.out;
  expect_same_evals(last_evals(read_records(root_ / "lora/metrics.jsonl")),
                    last_evals(read_records(out)), /*exact=*/true);
  EXPECT_EQ(read_records(out).back().at("method").as_string(), "lora");
  // The base alone (zero-shot) scores otherwise: the adapter is what was measured above.
  const fs::path base = root_ / "base_eval.jsonl";
  r = run(eval(root_ / "lora", " --model " + (root_ / "base_hf").string() + " --output " +
                                   base.string()));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(number(read_records(base).back(), "loss"), number(read_records(out).back(), "loss"));
  // An adapter on another base: refused naming both hashes.
  r = run(eval(root_ / "lora", " --adapter " +
                                   (root_ / "lora/checkpoints/step_00000004.h5").string() +
                                   " --untrained"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("xxh3-64:"), std::string::npos) << r.out;
}

TEST_F(EvalCli, PromptTuningRunDirectoryOnTwoRanksMatchesItsRun) {
  // add (exact match) and sentiment (classification: each label scored after the virtual
  // tokens; issue 18 crashed here); one block per task, in the run's order.
  const std::string peft = " --set model.from_pretrained=" + (root_ / "base_hf").string() +
                           " --set train.method=prompt_tuning --set peft.prompt_tokens=4"
                           " --set train.lr=1e-2 --set train.weight_decay=0";
  Result r = run(kMpirun2 + train(root_ / "prompt", 4, peft));
  ASSERT_EQ(r.code, 0) << r.out;
  const fs::path out = root_ / "prompt_eval.jsonl";
  r = run(kMpirun2 + eval(root_ / "prompt", " --model " + (root_ / "base_hf").string() +
                                                " --checkpoint " + (root_ / "prompt").string() +
                                                " --output " + out.string()));
  ASSERT_EQ(r.code, 0) << r.out;
  const auto evals = last_evals(read_records(out));
  expect_same_evals(last_evals(read_records(root_ / "prompt/metrics.jsonl")), evals,
                    /*exact=*/true);
  int classified = 0;
  for (const auto& [key, rec] : evals) classified += rec.contains("accuracy") ? 1 : 0;
  EXPECT_GT(classified, 0) << "sentiment's accuracy is scored";
  EXPECT_EQ(read_records(out).back().at("method").as_string(), "prompt_tuning");
}

// (c) A tiny model transformers saved (smollm_bf16: Llama, tied, bf16 on disk, its own BPE
// tokenizer), zero-shot on the bundled tasks.
#ifdef PFT_PYTHON
TEST_F(EvalCli, HuggingFaceModelZeroShotWritesDocumentedJsonLines) {
  // The fixtures CTest's hf_fixtures_make wrote (tests/model), else made here.
  fs::path fixtures = PFT_HF_FIXTURES;
  if (!fs::exists(fixtures / "manifest.json")) {
    fixtures = root_ / "hf_fixtures";
    const Result made = run(std::string(PFT_PYTHON) + " " +
                            (kRepo / "tests/reference/hf_fixtures.py").string() + " make --out " +
                            fixtures.string());
    ASSERT_EQ(made.code, 0) << made.out;
  }
  const fs::path model = fixtures / "smollm_bf16";
  const fs::path config = root_ / "hf_eval.yaml";
  {
    std::ofstream out(config);
    out << "run:\n  dir: " << (root_ / "hf_run").string() << "\n  threads: 1\n"
        << "model:\n  from_pretrained: " << model.string() << "\n"
        << "data:\n  source: tasks\n  seq_len: 96\n  cache_dir: " << (root_ / "cache").string()
        << "\n  tasks:\n    - " << (kTasks / "add.yaml").string() << "\n    - "
        << (kTasks / "sentiment.yaml").string() << "\n"
        << "train:\n  micro_batch_size: 4\n"  // no steps, lr, global batch: nothing trains
        << "eval:\n  max_batches: 1\n";
  }
  const fs::path jsonl = root_ / "hf_eval.jsonl";
  const Result r = run(kPft + " eval " + config.string() + " --output " + jsonl.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("held-out at step 0"), std::string::npos) << r.out;
  const std::vector<json::object> records = read_records(jsonl);
  ASSERT_FALSE(records.empty());
  const pft::test::MetricsSchema schema =
      pft::test::read_metrics_schema(kRepo / "docs" / "metrics.md");
  int64_t evals = 0;
  for (const json::object& rec : records) {
    for (const std::string& problem : pft::test::check_metrics_record(schema, rec))
      ADD_FAILURE() << problem << "\n  record: " << json::serialize(rec);
    evals += rec.at("kind").as_string() == "eval" ? 1 : 0;
  }
  // add: 3 templates, sentiment: its templates; each task once more with "all".
  EXPECT_GE(evals, 2 + 3 + 1);
  const json::object& summary = records.back();
  ASSERT_EQ(summary.at("kind").as_string(), "eval_summary");
  EXPECT_EQ(summary.at("model").as_string(), model.string());
  EXPECT_EQ(summary.at("step").as_int64(), 0);
  EXPECT_EQ(summary.at("split").as_string(), "validation");
  EXPECT_FALSE(summary.contains("checkpoint"));
  EXPECT_TRUE(std::isfinite(number(summary, "loss")));
  EXPECT_GT(number(summary, "loss"), 0.0);
  EXPECT_TRUE(summary.contains("accuracy"));  // sentiment is a classification task
  // 4 examples per template (max_batches 1 x 4 rows) of each task.
  EXPECT_EQ(summary.at("documents").as_int64() % 4, 0);
}
#endif

// (d) Bad inputs: exit 2, the message names what to fix.
TEST_F(EvalCli, BadInputsExitTwoNamingTheProblem) {
  const fs::path dir = root_ / "full";
  const std::string ckpt = " --checkpoint " + (root_ / kCheckpoint).string();
  struct Case {
    std::string args, expect;
  };
  // A copy of the add task without a test split.
  const fs::path no_test = root_ / "add_no_test.yaml";
  {
    std::ifstream in(kTasks / "add.yaml");
    std::ofstream out(no_test);
    for (std::string line; std::getline(in, line);) {
      if (line.find("test:") != std::string::npos) continue;
      const size_t rel = line.find("../add/");
      if (rel != std::string::npos)
        line = line.substr(0, rel) + (kRepo / "datasets/add").string() + "/" +
               line.substr(rel + 7);
      out << line << "\n";
    }
  }
  const std::vector<Case> cases = {
      {"", "nothing to score"},
      {ckpt + " --split train", "--split `train`: use validation or test"},
      {ckpt + " --split test --set data.tasks=[" + no_test.string() + "]",
       "has no test split"},
      {ckpt + " --set model.d_model=64", "model.d_model 128 (checkpoint) vs 64 (config)"},
      {" --adapter " + (root_ / kCheckpoint).string(), "a full fine-tuning checkpoint"},
      {" --checkpoint " + (root_ / "nowhere").string(), "no such file or directory"},
      {ckpt + " --no-such-flag", "--no-such-flag"},
  };
  for (const Case& c : cases) {
    const Result r = run(eval(dir, c.args));
    EXPECT_EQ(r.code, 2) << c.args << "\n" << r.out;
    EXPECT_NE(r.out.find(c.expect), std::string::npos) << c.args << "\n" << r.out;
  }
  // Under mpirun: every rank exits 2, one message, no hang.
  for (const Case& c : {cases[0], cases[3]}) {
    const Result r = run(kMpirun2 + eval(dir, c.args), std::chrono::seconds(120));
    EXPECT_FALSE(r.timed_out) << c.args;
    EXPECT_EQ(r.code, 2) << c.args << "\n" << r.out;
    EXPECT_EQ(pft::test::count(r.out, c.expect), 1u) << c.args << "\n" << r.out;
  }
}

}  // namespace
