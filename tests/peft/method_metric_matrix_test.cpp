// Every training method x every task metric (issue 18: prompt tuning crashed at the step-0
// evaluation when a virtual token's id, vocab + row, reached a gather over the logits in the
// classification scoring). One process (under mpirun, tests/CMakeLists.txt), one tiny
// quickstart-like run per method -- train() and then run_eval(), the code behind `pft train` and
// `pft eval` -- on three tasks, one per metric:
//   add        exact_match      greedy generation of each answer
//   sentiment  classification   each label's likelihood after the prompt (and exact match)
//   upper_loss loss             a copy of the bundled uppercase task with `metric: loss`
// Each cell trains 2 steps, evaluates at step 0 and at the end without error, and every metric
// its task has is there and finite, on every template. Then `pft eval` (run_eval) of the run's
// checkpoint directory scores exactly what the run's last evaluation scored: the virtual tokens
// of prompt tuning (and the prefixes of prefix tuning) go in front of every document as in
// training.
#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <boost/json/parse.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "../train/metrics_schema.h"
#include "config/config.h"
#include "core/rank_env.h"
#include "train/eval_run.h"
#include "train/trainer.h"

namespace pft {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

const fs::path kRepo = PFT_SOURCE_ROOT;

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

// One scratch directory for the whole binary, the same path on every rank (rank 0's pid);
// removed after the last test.
bool scratch_made = false;

const fs::path& scratch() {
  static const fs::path dir = [] {
    scratch_made = true;
    long pid = static_cast<long>(::getpid());
    MPI_Bcast(&pid, 1, MPI_LONG, 0, MPI_COMM_WORLD);
    const fs::path d = fs::temp_directory_path() / ("pft-method-matrix-" + std::to_string(pid));
    if (world_rank() == 0) {
      fs::create_directories(d);
      // The loss-only task: the bundled uppercase task with another name and metric.
      std::ifstream in(kRepo / "datasets/tasks/uppercase.yaml");
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      const auto swap = [&](const std::string& from, const std::string& to) {
        const size_t at = text.find(from);
        ASSERT_NE(at, std::string::npos) << from;
        text.replace(at, from.size(), to);
      };
      swap("name: uppercase", "name: upper_loss");
      swap("metric: exact_match", "metric: loss");
      for (const char* split : {"train", "validation", "test"})
        swap(std::string("../uppercase/") + split,
             (kRepo / "datasets/uppercase").string() + "/" + split);
      std::ofstream(d / "upper_loss.yaml") << text;
    }
    MPI_Barrier(MPI_COMM_WORLD);
    return d;
  }();
  return dir;
}

const RankEnv& env() {
  static const RankEnv e = discover_rank_env({});
  return e;
}

const std::vector<std::string> kMethods = {"full",          "lora",
                                           "prompt_tuning", "prefix_tuning",
                                           "prompt_tuning+lora", "prefix_tuning+lora"};

struct TaskMetric {
  std::string task;
  bool exact_match = false, accuracy = false;  // which metrics its eval records carry
};
const std::vector<TaskMetric> kTasks = {
    {"add", true, false}, {"sentiment", true, true}, {"upper_loss", false, false}};

// The quickstart config, tiny: 1 layer of width 32, 2 steps of 4 sequences, evaluation at step 0
// and at the end on the first 2 documents of each template.
Config matrix_config(const std::string& method) {
  const fs::path dir = scratch();
  const std::string yaml = "run:\n  dir: " + (dir / method).string() +
                           "\n  seed: 7\n  log_every: 1\n"
                           "model:\n  family: gpt2\n  vocab_size: 258\n  d_model: 32\n"
                           "  n_layers: 1\n  n_heads: 2\n  max_seq_len: 264\n"
                           "data:\n  seq_len: 256\n  source: tasks\n  tokenizer: byte\n"
                           "  cache_dir: " + (dir / "cache").string() + "\n  tasks: [" +
                           (kRepo / "datasets/tasks/add.yaml").string() + ", " +
                           (kRepo / "datasets/tasks/sentiment.yaml").string() + ", " +
                           (dir / "upper_loss.yaml").string() + "]\n"
                           "train:\n  method: " + method +
                           "\n  steps: 2\n  global_batch_size: 4\n  micro_batch_size: 2\n"
                           "  lr: 1.0e-3\n  schedule: constant\n"
                           "peft:\n  prompt_tokens: 4\n  prefix_tokens: 4\n"
                           "eval:\n  every_steps: 2\n  max_batches: 1\n"
                           "checkpoint:\n  keep_last: 1\n  async: false\n";
  return parse_config(yaml, (dir / "matrix.yaml").string());
}

using pft::test::read_records;

double number(const json::object& o, const char* key) {
  const json::value& v = o.at(key);
  return v.is_double() ? v.as_double() : static_cast<double>(v.as_int64());
}

// "task/template" -> the eval record, for the records of `step`.
std::map<std::string, json::object> evals_at(const std::vector<json::object>& records,
                                             int64_t step) {
  std::map<std::string, json::object> out;
  for (const json::object& r : records) {
    if (r.at("kind").as_string() != "eval" || r.at("step").as_int64() != step) continue;
    const json::value& t = r.at("template");
    out[std::string(r.at("task").as_string()) + "/" +
        (t.is_string() ? std::string(t.as_string()) : std::to_string(t.as_int64()))] = r;
  }
  return out;
}

// Every template of every task (and its "all" record): a finite loss over some tokens, and the
// metrics of its task, finite and within [0, 1].
void expect_every_metric(const std::map<std::string, json::object>& evals,
                         const std::string& what) {
  for (const TaskMetric& tm : kTasks) {
    int templates = 0;
    for (const auto& [key, r] : evals) {
      if (key.rfind(tm.task + "/", 0) != 0) continue;
      ++templates;
      SCOPED_TRACE(what + " " + key);
      EXPECT_GT(number(r, "tokens"), 0.0);
      EXPECT_TRUE(std::isfinite(number(r, "loss"))) << number(r, "loss");
      EXPECT_GT(number(r, "loss"), 0.0);
      EXPECT_EQ(r.contains("exact_match"), tm.exact_match);
      EXPECT_EQ(r.contains("accuracy"), tm.accuracy);
      for (const char* metric : {"exact_match", "accuracy"}) {
        if (!r.contains(metric)) continue;
        EXPECT_TRUE(std::isfinite(number(r, metric)));
        EXPECT_GE(number(r, metric), 0.0);
        EXPECT_LE(number(r, metric), 1.0);
      }
    }
    EXPECT_EQ(templates, 4) << what << " " << tm.task << ": 3 templates and `all`";
  }
}

class MethodMetricMatrix : public ::testing::TestWithParam<std::string> {};

TEST_P(MethodMetricMatrix, TrainsEvaluatesAndPftEvalAgrees) {
  const std::string method = GetParam();
  const Config config = matrix_config(method);
  const fs::path run_dir = config.run.dir;
  if (world_rank() == 0) fs::remove_all(run_dir);
  MPI_Barrier(MPI_COMM_WORLD);

  const TrainSummary summary = train(config, env());
  EXPECT_EQ(summary.steps, 2);
  EXPECT_TRUE(std::isfinite(summary.last_loss));

  // Rank 0 reads and checks; the verdict is combined over ranks by the test main.
  if (world_rank() == 0) {
    const std::vector<json::object> records = read_records(run_dir / "metrics.jsonl");
    expect_every_metric(evals_at(records, 0), method + " step 0");
    expect_every_metric(evals_at(records, 2), method + " step 2");
  }

  // `pft eval --checkpoint RUN_DIR`: the same documents, the same numbers as the run's end.
  EvalRequest request;
  request.checkpoint = run_dir.string();
  request.output = (scratch() / (method + "-eval.jsonl")).string();
  ASSERT_EQ(run_eval(config, env(), request), 0);
  if (world_rank() == 0) {
    const auto want = evals_at(read_records(run_dir / "metrics.jsonl"), 2);
    const std::vector<json::object> records = read_records(request.output);
    const auto got = evals_at(records, 2);
    expect_every_metric(got, method + " pft eval");
    ASSERT_EQ(got.size(), want.size());
    for (const auto& [key, w] : want) {
      ASSERT_TRUE(got.contains(key)) << key;
      const json::object& g = got.at(key);
      EXPECT_EQ(number(g, "tokens"), number(w, "tokens")) << key;
      EXPECT_NEAR(number(g, "loss"), number(w, "loss"), 1e-5 * number(w, "loss")) << key;
      for (const char* metric : {"exact_match", "accuracy"}) {
        if (w.contains(metric)) {
          EXPECT_EQ(number(g, metric), number(w, metric)) << key << " " << metric;
        }
      }
    }
    EXPECT_EQ(records.back().at("kind").as_string(), "eval_summary");
    EXPECT_EQ(records.back().at("method").as_string(), method);
  }
}

class RemoveScratch : public ::testing::Environment {
 public:
  void TearDown() override {
    if (scratch_made && world_rank() == 0) fs::remove_all(scratch());
  }
};
const ::testing::Environment* const kRemoveScratch =
    ::testing::AddGlobalTestEnvironment(new RemoveScratch);

INSTANTIATE_TEST_SUITE_P(EveryMethod, MethodMetricMatrix, ::testing::ValuesIn(kMethods),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           for (char& c : name)
                             if (c == '+') c = '_';
                           return name;
                         });

}  // namespace
}  // namespace pft
