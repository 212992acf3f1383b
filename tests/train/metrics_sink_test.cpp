// metrics.jsonl against its documentation (docs/metrics.md): every record MetricsSink writes, with
// every optional field, and every record of real `pft train` runs, must match the page's tables;
// and every field the page lists must be one the code writes.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "ckpt/saver.h"
#include "control/schedule.h"
#include "run_command.h"
#include "train/evaluate.h"
#include "train/metrics_sink.h"
#include "train/metrics_schema.h"
#include "train/train_step.h"

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

const fs::path kRepo = PFT_SOURCE_ROOT;
const fs::path kPage = kRepo / "docs" / "metrics.md";

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() /
                       ("pft_metrics_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

using pft::test::read_records;

// Every record conforms; returns the "kind.field" names seen.
std::set<std::string> expect_conforming(const std::vector<json::object>& records,
                                        const std::string& context) {
  const pft::test::MetricsSchema schema = pft::test::read_metrics_schema(kPage);
  std::set<std::string> seen;
  for (const json::object& r : records)
    for (const std::string& problem : pft::test::check_metrics_record(schema, r, &seen))
      ADD_FAILURE() << context << ": " << problem << "\n  record: " << json::serialize(r);
  return seen;
}

// One record of every kind, every optional field set.
void write_every_kind(pft::MetricsSink& sink) {
  pft::MetricsSink::Start start;
  start.world_size = 2;
  start.steps = 10;
  start.parameters = 1234;
  start.method = "prompt_tuning";
  start.base_model_hash = "xxh3-64:0123456789abcdef";
  start.mixture = {{"add", 0.75}, {"reverse", 0.25}};
  sink.start(start);
  sink.resume(4, 2);

  pft::StepResult r;
  r.loss = 2.5;
  r.grad_norm = 1.25;
  r.target_tokens = 40;
  r.skipped = true;
  r.loss_scale = 65536.0;
  r.comm_time_s = 0.01;
  r.task_loss_sum = {10.0, 0.0};
  r.task_tokens = {4.0, 0.0};
  pft::MetricsSink::Train t;
  t.step = 5;
  t.lr = 1e-3;
  t.result = &r;
  t.tokens = 128;
  t.step_time_s = 0.5;
  t.step_time_max_s = 0.6;
  t.control_s = 1e-4;
  t.world_size = 2;
  t.phase = 1;
  t.flops_per_token = 1e9;
  t.peak_flops = 1e12;
  sink.train(t);

  pft::TaskEval gen;
  gen.task = "add";
  pft::TemplateLoss a{0, "equation", 8.0, 4.0, 2, 2, 1, 0, 0};
  pft::TemplateLoss b{1, "*sum_of", 12.0, 4.0, 2, 2, 0, 0, 0};
  gen.templates = {a, b};
  gen.loss_sum = 20.0;
  gen.tokens = 8.0;
  gen.documents = 4;
  gen.scored = 4;
  gen.exact = 1;
  pft::TaskEval cls;
  cls.task = "sentiment";
  pft::TemplateLoss c{0, "instruct", 3.0, 3.0, 3, 0, 0, 3, 2};
  cls.templates = {c};
  cls.loss_sum = 3.0;
  cls.tokens = 3.0;
  cls.documents = 3;
  cls.classified = 3;
  cls.correct = 2;
  sink.eval(5, {gen, cls});
  pft::MetricsSink::EvalSummary summary;
  summary.step = 5;
  summary.split = "test";
  summary.world_size = 2;
  summary.method = "lora";
  summary.model = "models/base";
  summary.checkpoint = "runs/x/checkpoints/step_00000005.h5";
  summary.seconds = 1.5;
  sink.eval_summary(summary, {gen, cls});

  pft::ScheduleEvent phase;
  phase.kind = pft::ScheduleEvent::Kind::kPhase;
  phase.step = 6;
  phase.phase = 1;
  phase.reason = "steps";
  sink.schedule_event(phase, "second", {"add", "reverse"});
  pft::ScheduleEvent weights = phase;
  weights.kind = pft::ScheduleEvent::Kind::kWeights;
  weights.reason = "adaptive";
  weights.shares = {0.4, 0.6};
  sink.schedule_event(weights, "second", {"add", "reverse"});

  pft::ckpt::SaveReport save;
  save.step = 6;
  save.path = "runs/x/checkpoints/step_00000006.h5";
  save.stats.data_bytes = 1000;
  save.stats.file_bytes = 1100;
  save.stats.seconds = 0.25;
  save.stall_s = 0.01;
  save.async = true;
  save.deleted = {"runs/x/checkpoints/step_00000002.h5"};
  sink.checkpoint(save);
  sink.preempted(6, "SIGTERM");
  sink.stopped(6, "early_stopping");
  pft::MetricsSink::End end;
  end.step = 6;
  end.tokens_seen = 768;
  end.param_hash = "xxh3-64:fedcba9876543210";
  end.peak_rss_mb = 321.5;
  end.stopped = "early_stopping";
  end.base_model_hash = start.base_model_hash;
  sink.end(end);
}

TEST(MetricsSchema, PageListsEveryKindWithFields) {
  const pft::test::MetricsSchema schema = pft::test::read_metrics_schema(kPage);
  const std::set<std::string> want = {"start",   "resume",     "train",     "eval",
                                      "eval_summary", "phase", "mixture", "checkpoint",
                                      "preempted", "stopped", "end"};
  std::set<std::string> got;
  for (const auto& [kind, fields] : schema.kinds) {
    got.insert(kind);
    EXPECT_FALSE(fields.empty()) << "kind " << kind << " has no field table";
    EXPECT_TRUE(fields.contains("step") || kind == "start") << kind;
  }
  EXPECT_EQ(got, want);
  ASSERT_TRUE(schema.common.contains("kind"));
  ASSERT_TRUE(schema.common.contains("time"));
  EXPECT_TRUE(schema.common.at("time").always);
  EXPECT_EQ(schema.kinds.at("train").at("loss_scale").types, std::set<std::string>{"number"});
  EXPECT_FALSE(schema.kinds.at("train").at("loss_scale").always);
  EXPECT_EQ(schema.kinds.at("eval").at("template").types,
            (std::set<std::string>{"integer", "string"}));
}

TEST(MetricsSchema, CheckerFindsUndocumentedMissingAndMistypedFields) {
  const pft::test::MetricsSchema schema = pft::test::read_metrics_schema(kPage);
  json::object r = json::parse(R"({"kind":"resume","step":3,"world_size":2,"time":1.5})").as_object();
  EXPECT_TRUE(pft::test::check_metrics_record(schema, r).empty());
  r["surprise"] = 1;
  r["step"] = "three";
  r.erase("world_size");
  const std::vector<std::string> problems = pft::test::check_metrics_record(schema, r);
  ASSERT_EQ(problems.size(), 3u);
  EXPECT_NE(problems[0].find("resume.step"), std::string::npos);  // record order: step first
  const std::string all = problems[0] + problems[1] + problems[2];
  EXPECT_NE(all.find("resume.surprise is not documented"), std::string::npos);
  EXPECT_NE(all.find("resume.world_size is documented as always present but missing"),
            std::string::npos);
  EXPECT_FALSE(pft::test::check_metrics_record(schema, json::object{{"kind", "nope"}}).empty());
}

TEST(MetricsSink, EveryRecordMatchesThePageAndEveryDocumentedFieldIsWritten) {
  const fs::path dir = scratch("sink");
  {
    pft::MetricsSink sink(dir / "metrics.jsonl");
    write_every_kind(sink);
  }
  const std::vector<json::object> records = read_records(dir / "metrics.jsonl");
  // start resume train 3+2 eval eval_summary phase mixture ckpt pre stop end
  ASSERT_EQ(records.size(), 15u);
  const std::set<std::string> seen = expect_conforming(records, "MetricsSink");
  const pft::test::MetricsSchema schema = pft::test::read_metrics_schema(kPage);
  for (const auto& [kind, fields] : schema.kinds) {
    for (const auto& [field, spec] : fields)
      EXPECT_TRUE(seen.contains(kind + "." + field))
          << "docs/metrics.md lists " << kind << "." << field << " but MetricsSink never wrote it";
    for (const auto& [field, spec] : schema.common)
      EXPECT_TRUE(seen.contains(kind + "." + field)) << kind << "." << field;
  }
  // Values, not only shapes: a few fields computed by the sink.
  const json::object& train = records[2];
  EXPECT_DOUBLE_EQ(train.at("tokens_per_s").as_double(), 256.0);
  // 128 tokens in 0.5 s on 2 ranks: 128 tok/s per rank x 1 GFLOP = 0.128 TFLOP/s of a 1 TFLOP/s peak.
  EXPECT_DOUBLE_EQ(train.at("tokens_per_s_per_rank").as_double(), 128.0);
  EXPECT_DOUBLE_EQ(train.at("model_tflops_per_rank").as_double(), 0.128);
  EXPECT_DOUBLE_EQ(train.at("mfu").as_double(), 0.128);
  EXPECT_DOUBLE_EQ(train.at("task_loss").as_array()[0].as_double(), 2.5);
  EXPECT_TRUE(train.at("task_loss").as_array()[1].is_null());
  const json::object& all = records[5];
  EXPECT_EQ(all.at("template").as_string(), "all");
  EXPECT_DOUBLE_EQ(all.at("worst_template_loss").as_double(), 3.0);
  EXPECT_EQ(records[3].at("template_name").as_string(), "equation");
  EXPECT_EQ(records[4].at("held_out").as_bool(), true);
  EXPECT_EQ(records[4].at("template_name").as_string(), "sum_of");
  // eval_summary: means over the tasks that have each metric (add 2.5 and sentiment 1.0 loss;
  // exact match only add's 1/4, accuracy only sentiment's 2/3).
  const json::object& summary = records[8];
  EXPECT_EQ(summary.at("kind").as_string(), "eval_summary");
  EXPECT_DOUBLE_EQ(summary.at("loss").as_double(), 1.75);
  EXPECT_DOUBLE_EQ(summary.at("exact_match").as_double(), 0.25);
  EXPECT_DOUBLE_EQ(summary.at("accuracy").as_double(), 2.0 / 3.0);
  EXPECT_EQ(summary.at("documents").as_int64(), 7);
  EXPECT_EQ(summary.at("tasks").as_int64(), 2);
  fs::remove_all(dir);
}

TEST(MetricsSink, HistoryKeepsTheLastTrainRecords) {
  pft::MetricsSink disabled;
  EXPECT_FALSE(disabled.enabled());
  pft::StepResult r;
  pft::MetricsSink::Train t;
  t.result = &r;
  disabled.train(t);  // no file, no history
  EXPECT_TRUE(disabled.history().empty());

  const fs::path dir = scratch("history");
  pft::MetricsSink sink(dir / "metrics.jsonl");
  for (int64_t step = 1; step <= static_cast<int64_t>(pft::MetricsSink::kHistory) + 5; ++step) {
    t.step = step;
    sink.train(t);
  }
  sink.resume(3, 1);  // not a train record: not in the history
  ASSERT_EQ(sink.history().size(), pft::MetricsSink::kHistory);
  EXPECT_EQ(json::parse(sink.history().front()).at("step").as_int64(), 6);
  EXPECT_EQ(json::parse(sink.history().back()).at("step").as_int64(),
            static_cast<int64_t>(pft::MetricsSink::kHistory) + 5);
  fs::remove_all(dir);
}

// A real run: two phases, evaluations, checkpoints, then a resume; every line must match the page.
TEST(MetricsCli, RealRunsWriteOnlyDocumentedRecords) {
  const fs::path dir = scratch("cli");
  const std::string base =
      std::string(PFT_BIN) +
      " train configs/quickstart.yaml --set model.d_model=32 --set model.n_layers=1"
      " --set model.n_heads=2 --set data.seq_len=64 --set train.global_batch_size=4"
      " --set train.micro_batch_size=2 --set train.warmup_steps=1 --set run.threads=1"
      " --set eval.every_steps=2"
      " --set eval.max_batches=1 --set checkpoint.every_steps=2 --set run.dir=" +
      dir.string() +
      " --set 'schedule.phases=[{name: warm, mixing: uniform, steps: 2}, {name: ada, mixing: "
      "adaptive, adaptive_metric: loss}]'";
  const pft::test::Result first = pft::test::run(base + " --set train.steps=4");
  ASSERT_EQ(first.code, 0) << first.out;
  const pft::test::Result second =
      pft::test::run(base + " --set train.steps=6 --set train.resume=auto");
  ASSERT_EQ(second.code, 0) << second.out;
  const std::vector<json::object> records = read_records(dir / "metrics.jsonl");
  std::set<std::string> kinds;
  for (const json::object& r : records) kinds.insert(std::string(r.at("kind").as_string()));
  EXPECT_EQ(kinds, (std::set<std::string>{"start", "resume", "train", "eval", "phase", "mixture",
                                          "checkpoint", "end"}));
  expect_conforming(records, "pft train");
  fs::remove_all(dir);
}

}  // namespace
