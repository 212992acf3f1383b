// The rank-0 controller end to end: `pft train` on the bundled tasks under pft-mpirun (CPU, one
// thread per rank), reading what it wrote (metrics.jsonl, checkpoints):
//   - a phase ends when its metric condition holds; each phase trains only its tasks; an
//     adaptive phase writes its mixture weights at every evaluation; classification tasks get an
//     accuracy;
//   - the plan log (what every step trained on: plan.jsonl, and each checkpoint's window of it) is
//     the same across reruns and world sizes, and a run resumed from a checkpoint of an adaptive
//     schedule plans, trains and ends exactly as the uninterrupted one;
//   - early stopping after `patience` evaluations without improvement; the last phase ending
//     ends the run;
//   - best-K checkpoints ranked by a held-out metric;
//   - evaluation on 3 ranks (a world size that divides nothing) covers every validation
//     document once, with the one-process results.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "ckpt/reader.h"
#include "control/plan_log.h"
#include "run_command.h"

namespace {
namespace fs = std::filesystem;
namespace json = boost::json;

const std::string kPft = PFT_BIN;
const std::string kMpirun =
    std::string("PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 ") + PFT_MPIRUN;
using pft::test::Result;
using pft::test::run;

// The bundled tasks, in configs/quickstart.yaml's order.
const std::vector<std::string> kTasks = {"add",       "reverse",   "sort_digits", "max_digit",
                                         "uppercase", "sentiment", "tech_qa"};

fs::path scratch(const std::string& tag) {
  static int counter = 0;
  const fs::path d = fs::temp_directory_path() / ("pft-control-" + tag + "-" +
                                                  std::to_string(getpid()) + "-" +
                                                  std::to_string(counter++));
  fs::remove_all(d);
  return d;
}

// A tiny GPT-2 on the quickstart tasks: `steps` steps of 8 sequences of 64 tokens.
std::string train_cmd(int np, const fs::path& dir, int steps, const std::string& extra) {
  return kMpirun + " -np " + std::to_string(np) + " " + kPft +
         " train configs/quickstart.yaml --set model.d_model=64 --set model.n_layers=2"
         " --set model.n_heads=4 --set data.seq_len=64 --set train.steps=" +
         std::to_string(steps) +
         " --set train.warmup_steps=2 --set train.lr=3e-3 --set train.global_batch_size=12"
         " --set train.micro_batch_size=2 --set run.threads=1 --set run.log_every=1"
         " --set eval.max_batches=1 --set checkpoint.every_steps=0 --set run.dir=" +
         dir.string() + " " + extra;
}

std::vector<json::object> records(const fs::path& dir, const std::string& kind) {
  std::vector<json::object> out;
  std::ifstream in(dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    json::value v = json::parse(line);
    if (v.as_object().at("kind").as_string() == kind) out.push_back(v.as_object());
  }
  return out;
}

fs::path checkpoint(const fs::path& dir, int step) {
  char name[32];
  std::snprintf(name, sizeof name, "step_%08d.h5", step);
  return dir / "checkpoints" / name;
}

template <class T>
std::vector<T> dataset(const pft::ckpt::Contents& c, const std::string& path) {
  const pft::ckpt::Dataset& d = c.at(path);
  std::vector<T> out(d.bytes.size() / sizeof(T));
  std::memcpy(out.data(), d.bytes.data(), d.bytes.size());
  return out;
}

struct Plan {
  std::vector<int64_t> step;
  std::vector<int32_t> phase, world, task, docs, tmpl, example;
};
Plan plan_log(const fs::path& file) {
  const pft::ckpt::Contents c = pft::ckpt::read_checkpoint(file);
  Plan p;
  p.step = dataset<int64_t>(c, "/controller/plan/step");
  p.phase = dataset<int32_t>(c, "/controller/plan/phase");
  p.world = dataset<int32_t>(c, "/controller/plan/world_size");
  p.task = dataset<int32_t>(c, "/controller/plan/slot_task");
  p.docs = dataset<int32_t>(c, "/controller/plan/slot_documents");
  p.example = dataset<int32_t>(c, "/controller/plan/doc_example");
  p.tmpl = dataset<int32_t>(c, "/controller/plan/doc_template");
  return p;
}
// The run directory's plan.jsonl: every step the run trained.
std::vector<pft::PlanRecord> plan_file(const fs::path& dir) {
  return pft::read_plan_file(dir / pft::kPlanFileName);
}
// Its records from step `from` on.
std::vector<pft::PlanRecord> plan_file_from(const fs::path& dir, int64_t from) {
  std::vector<pft::PlanRecord> out;
  for (pft::PlanRecord& r : plan_file(dir))
    if (r.step >= from) out.push_back(std::move(r));
  return out;
}
std::vector<int64_t> steps_of(const std::vector<pft::PlanRecord>& records) {
  std::vector<int64_t> out;
  for (const pft::PlanRecord& r : records) out.push_back(r.step);
  return out;
}

void expect_same_plans(const Plan& a, const Plan& b) {
  EXPECT_EQ(a.step, b.step);
  EXPECT_EQ(a.phase, b.phase);
  EXPECT_EQ(a.task, b.task);
  EXPECT_EQ(a.docs, b.docs);
  EXPECT_EQ(a.example, b.example);
  EXPECT_EQ(a.tmpl, b.tmpl);
}

// An "eval" record of a whole task (its "template" is "all"; per-template ones hold the id).
bool is_all(const json::object& e) {
  return e.at("template").is_string() && e.at("template").as_string() == "all";
}

// Tasks with target tokens in a "train" record.
std::set<std::string> trained_tasks(const json::object& rec) {
  std::set<std::string> out;
  const json::array& tokens = rec.at("task_tokens").as_array();
  for (size_t k = 0; k < tokens.size(); ++k)
    if (tokens[k].to_number<int64_t>() > 0) out.insert(kTasks[k]);
  return out;
}

TEST(ControllerCli, PhaseEndsWhenItsConditionHoldsAndAdaptiveWeightsFollow) {
  const fs::path dir = scratch("phases");
  const Result r = run(train_cmd(
      2, dir, 16,
      "--set eval.every_steps=2 --set 'schedule.phases=[{name: first, tasks: [add, reverse], "
      "mixing: uniform, until: \"loss < 4.6\"}, {name: second, tasks: [max_digit, sentiment], "
      "mixing: adaptive, adaptive_floor: 0.2, adaptive_smoothing: 0.5}]'"));
  ASSERT_EQ(r.code, 0) << r.out;
  const std::vector<json::object> phases = records(dir, "phase");
  ASSERT_EQ(phases.size(), 2u) << r.out;
  EXPECT_EQ(phases[0].at("phase").as_string(), "first");
  EXPECT_EQ(phases[0].at("step").as_int64(), 0);
  EXPECT_EQ(phases[1].at("phase").as_string(), "second");
  EXPECT_EQ(phases[1].at("reason").as_string(), "loss < 4.6");
  const int64_t switch_at = phases[1].at("step").as_int64();
  ASSERT_GT(switch_at, 0);
  ASSERT_LT(switch_at, 16) << "the held-out loss never fell below 4.6 in 16 steps:\n" << r.out;
  EXPECT_EQ(switch_at % 2, 0);  // at an evaluation
  // The evaluation at the switch: its mean held-out loss is below 4.6, the one before is not.
  std::map<int64_t, std::vector<double>> losses;
  for (const json::object& e : records(dir, "eval"))
    if (is_all(e))
      losses[e.at("step").as_int64()].push_back(e.at("loss").to_number<double>());
  const auto mean = [&](int64_t step) {
    double s = 0;
    for (double x : losses.at(step)) s += x;
    return s / static_cast<double>(losses.at(step).size());
  };
  EXPECT_LT(mean(switch_at), 4.6);
  EXPECT_GE(mean(switch_at - 2), 4.6);
  // Each step trained only its phase's tasks.
  const std::vector<json::object> steps = records(dir, "train");
  ASSERT_EQ(steps.size(), 16u);
  for (const json::object& s : steps) {
    const int64_t step = s.at("step").as_int64();  // steps done: step `step - 1` ran
    const bool second = step - 1 >= switch_at;
    EXPECT_EQ(s.at("phase").as_int64(), second ? 1 : 0) << "step " << step;
    for (const std::string& t : trained_tasks(s))
      EXPECT_TRUE(second ? (t == "max_digit" || t == "sentiment") : (t == "add" || t == "reverse"))
          << "step " << step << " trained " << t;
  }
  // The adaptive phase: a mixture at its start and after every later evaluation, over its two
  // tasks only, each at least the floor.
  int adaptive = 0;
  for (const json::object& m : records(dir, "mixture")) {
    if (m.at("phase").as_string() != "second") continue;
    const json::object& w = m.at("weights").as_object();
    double sum = 0;
    for (const auto& kv : w) {
      const double x = kv.value().to_number<double>();
      sum += x;
      const std::string task(kv.key());
      if (task == "max_digit" || task == "sentiment") EXPECT_GE(x, 0.2 - 1e-6) << task;
      else EXPECT_EQ(x, 0.0) << task;
    }
    EXPECT_NEAR(sum, 1.0, 1e-9);
    adaptive += m.at("reason").as_string() == "adaptive" ? 1 : 0;
  }
  EXPECT_GE(adaptive, 1) << r.out;
  // Classification accuracy of sentiment (by label likelihood), per template and overall.
  int with_accuracy = 0;
  for (const json::object& e : records(dir, "eval"))
    if (e.at("task").as_string() == "sentiment") {
      ASSERT_TRUE(e.contains("accuracy")) << json::serialize(e);
      const double a = e.at("accuracy").to_number<double>();
      EXPECT_GE(a, 0.0);
      EXPECT_LE(a, 1.0);
      ++with_accuracy;
    }
  EXPECT_GT(with_accuracy, 0);
  // Per template: names from the task file, held-out ones marked (sentiment's `happy`).
  bool happy = false;
  for (const json::object& e : records(dir, "eval"))
    if (e.at("task").as_string() == "sentiment" && !is_all(e) &&
        e.at("template_name").as_string() == "happy")
      happy = e.at("held_out").as_bool();
  EXPECT_TRUE(happy);
  EXPECT_NE(r.out.find("per template at step 16:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("*happy"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("schedule: phase 1 `second` from step"), std::string::npos) << r.out;
  fs::remove_all(dir);
}

TEST(ControllerCli, PlanLogIsTheSameAcrossRerunsAndWorldSizes) {
  const std::string schedule =
      "--set 'schedule.phases=[{name: t, mixing: temperature, steps: 3}, {name: rr, tasks: "
      "[add, sentiment, tech_qa], mixing: round_robin}]'";
  const fs::path one = scratch("plan1"), two = scratch("plan2"), again = scratch("plan2b");
  const Result a = run(train_cmd(1, one, 6, schedule));
  ASSERT_EQ(a.code, 0) << a.out;
  const Result b = run(train_cmd(2, two, 6, schedule));
  ASSERT_EQ(b.code, 0) << b.out;
  // (with exact match by text up to a newline: evaluation does not change the plans)
  const Result c = run(train_cmd(2, again, 6,
                                 schedule + " --set 'eval.stop=[\"\\n\"]' --set eval.max_new_tokens=8"));
  ASSERT_EQ(c.code, 0) << c.out;
  const Plan p1 = plan_log(checkpoint(one, 6)), p2 = plan_log(checkpoint(two, 6)),
             p3 = plan_log(checkpoint(again, 6));
  // No periodic saves: the checkpoint's window is the whole run, as plan.jsonl is.
  ASSERT_EQ(p1.step, (std::vector<int64_t>{0, 1, 2, 3, 4, 5}));
  const std::vector<pft::PlanRecord> f1 = plan_file(one);
  std::vector<pft::PlanRecord> f2 = plan_file(two), f3 = plan_file(again);
  ASSERT_EQ(steps_of(f1), p1.step);
  for (size_t i = 0; i < f1.size(); ++i) {
    EXPECT_EQ(f1[i].world_size, 1);
    EXPECT_EQ(f2[i].world_size, 2);
    EXPECT_EQ(f3[i].world_size, 2);
    f2[i].world_size = f3[i].world_size = 1;  // the rest is the same on any world size
  }
  EXPECT_EQ(f1, f2);
  EXPECT_EQ(f2, f3);
  // The checkpoint's columns hold the same records as the file.
  {
    pft::PlanLog window;
    window.slots = static_cast<int64_t>(p1.task.size() / p1.step.size());
    window.step = p1.step;
    window.phase = p1.phase;
    window.world_size = p1.world;
    window.slot_task = p1.task;
    window.slot_docs = p1.docs;
    window.doc_example = p1.example;
    window.doc_template = p1.tmpl;
    EXPECT_EQ(pft::to_records(window), f1);
  }
  EXPECT_EQ(p1.phase, (std::vector<int32_t>{0, 0, 0, 1, 1, 1}));
  EXPECT_EQ(p1.world, std::vector<int32_t>(6, 1));
  EXPECT_EQ(p2.world, std::vector<int32_t>(6, 2));
  expect_same_plans(p1, p2);
  expect_same_plans(p2, p3);
  // Round robin: steps 3, 4, 5 are each one task's whole batch, add, sentiment, tech_qa in turn
  // from the step's index (3 mod 3 = 0: add).
  const size_t slots = p1.task.size() / 6;
  ASSERT_EQ(slots, 6u);  // 12 sequences / 2 per micro-batch
  const std::vector<int32_t> turn = {0, 5, 6};
  for (size_t s = 3; s < 6; ++s)
    for (size_t j = 0; j < slots; ++j) EXPECT_EQ(p1.task[s * slots + j], turn[s % 3]) << s;
  // Every slot packed documents; their template ids exist.
  for (int32_t d : p1.docs) EXPECT_GT(d, 0);
  for (int32_t t : p1.tmpl) EXPECT_GE(t, 0);
  int scored = 0;
  for (const json::object& e : records(again, "eval")) scored += e.contains("exact_match") ? 1 : 0;
  EXPECT_GT(scored, 0) << c.out;
#ifdef PFT_PYTHON
  // h5py reads the plan log as docs/schedules.md shows.
  const Result py = run(std::string(PFT_PYTHON) +
                        " -c 'import h5py; f = h5py.File(\"" + checkpoint(one, 6).string() +
                        "\"); plan = f[\"controller/plan\"]; print(plan[\"slot_task\"][3].tolist(), "
                        "plan[\"slot_task\"].shape, plan.attrs[\"slots\"])'");
  ASSERT_EQ(py.code, 0) << py.out;
  EXPECT_EQ(py.out, "[0, 0, 0, 0, 0, 0] (6, 6) 6\n");
#endif
  for (const fs::path& d : {one, two, again}) fs::remove_all(d);
}

TEST(ControllerCli, ResumedAdaptiveScheduleEndsExactlyAsTheUninterruptedRun) {
  const std::string schedule =
      "--set eval.every_steps=2 --set checkpoint.every_steps=2 --set checkpoint.keep_last=10 "
      "--set 'schedule.phases=[{name: warm, mixing: uniform, steps: 4}, {name: ada, mixing: "
      "adaptive, adaptive_metric: loss, adaptive_smoothing: 0.3}]'";
  const fs::path full = scratch("full"), resumed = scratch("resumed");
  const Result a = run(train_cmd(2, full, 10, schedule));
  ASSERT_EQ(a.code, 0) << a.out;
  const Result b = run(train_cmd(2, resumed, 10,
                                 schedule + " --set train.resume=" + checkpoint(full, 6).string()));
  ASSERT_EQ(b.code, 0) << b.out;
  EXPECT_NE(b.out.find("resume: from"), std::string::npos) << b.out;
  // Checkpoints every 2 steps hold the steps since the previous one; plan.jsonl holds the run. The
  // resumed run's directory starts at the window of the checkpoint it resumed from (steps 4, 5).
  expect_same_plans(plan_log(checkpoint(full, 10)), plan_log(checkpoint(resumed, 10)));
  EXPECT_EQ(plan_log(checkpoint(full, 10)).step, (std::vector<int64_t>{8, 9}));
  EXPECT_EQ(steps_of(plan_file(full)), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(plan_file(resumed), plan_file_from(full, 4));
  EXPECT_NE(b.out.find("steps 0..3 are not in it"), std::string::npos) << b.out;
  std::map<int64_t, double> la, lb;
  for (const json::object& s : records(full, "train"))
    la[s.at("step").as_int64()] = s.at("loss").to_number<double>();
  for (const json::object& s : records(resumed, "train"))
    lb[s.at("step").as_int64()] = s.at("loss").to_number<double>();
  ASSERT_EQ(lb.size(), 4u);
  for (const auto& [step, loss] : lb) EXPECT_EQ(loss, la.at(step)) << "step " << step;  // bitwise
  const auto hash = [&](const fs::path& d) {
    const std::vector<json::object> end = records(d, "end");
    return end.empty() ? std::string() : std::string(end.back().at("param_hash").as_string());
  };
  ASSERT_FALSE(hash(full).empty());
  EXPECT_EQ(hash(full), hash(resumed));
  // Every dataset of the final checkpoints (the schedule state included) is the same.
  const Result d = run(kPft + " ckpt diff " + checkpoint(full, 10).string() + " " +
                       checkpoint(resumed, 10).string());
  EXPECT_EQ(d.code, 0) << d.out;
  EXPECT_NE(d.out.find("IDENTICAL"), std::string::npos) << d.out;
  // One mixture per step it applies from: the phase boundary at step 4 is planned ahead, then
  // planned again after the evaluation at step 4 (with its results); only the plan that ran is
  // reported.
  std::set<int64_t> mixture_steps;
  for (const json::object& m : records(full, "mixture"))
    EXPECT_TRUE(mixture_steps.insert(m.at("step").as_int64()).second)
        << "two mixtures from step " << m.at("step").as_int64();
  EXPECT_TRUE(mixture_steps.count(4));
  // The adaptive mixtures after step 6 are the same in both runs.
  std::vector<std::string> ma, mb;
  for (const json::object& m : records(full, "mixture"))
    if (m.at("step").as_int64() > 6) ma.push_back(json::serialize(m.at("weights")));
  for (const json::object& m : records(resumed, "mixture"))
    if (m.at("step").as_int64() > 6) mb.push_back(json::serialize(m.at("weights")));
  EXPECT_FALSE(ma.empty());
  EXPECT_EQ(ma, mb);

  // Resumed with other micro-batches (6 slots per step -> 4): the streams continue; plan.jsonl
  // holds steps of either width, the checkpoints' windows only the new one.
  const fs::path wider = scratch("wider");
  const Result w = run(train_cmd(2, wider, 10,
                                 schedule + " --set train.micro_batch_size=3 --set train.resume=" +
                                     checkpoint(full, 6).string()));
  ASSERT_EQ(w.code, 0) << w.out;
  const Plan pw = plan_log(checkpoint(wider, 10));
  EXPECT_EQ(pw.step, (std::vector<int64_t>{8, 9}));
  EXPECT_EQ(pw.task.size(), 2u * 4u);
  const std::vector<pft::PlanRecord> fw = plan_file(wider);
  ASSERT_EQ(steps_of(fw), (std::vector<int64_t>{4, 5, 6, 7, 8, 9}));
  for (const pft::PlanRecord& r : fw) EXPECT_EQ(r.slot_task.size(), r.step < 6 ? 6u : 4u) << r.step;
  EXPECT_EQ(fw[0], plan_file(full)[4]);
  fs::remove_all(full);
  fs::remove_all(resumed);
  fs::remove_all(wider);
}

// The run's one "stopped" line: after step `step`, for `reason`.
void expect_stopped(const fs::path& dir, int64_t step, const std::string& reason,
                    const std::string& out) {
  const std::vector<json::object> stopped = records(dir, "stopped");
  ASSERT_EQ(stopped.size(), 1u) << out;
  EXPECT_EQ(stopped[0].at("step").as_int64(), step);
  EXPECT_EQ(stopped[0].at("reason").as_string(), reason);
}

TEST(ControllerCli, EarlyStoppingAndTheScheduleEndStopTheRun) {
  const fs::path dir = scratch("early");
  // No improvement ever counts (min_delta 100): evaluations at 0 (the best), 2, 4 -> stop at 4.
  const Result r = run(train_cmd(2, dir, 12,
                                 "--set eval.every_steps=2 --set early_stopping.metric=loss "
                                 "--set early_stopping.patience=2 --set early_stopping.min_delta=100"));
  ASSERT_EQ(r.code, 0) << r.out;
  expect_stopped(dir, 4, "early_stopping", r.out);
  EXPECT_EQ(records(dir, "train").size(), 4u);
  EXPECT_TRUE(fs::exists(checkpoint(dir, 4)));
  EXPECT_NE(r.out.find("early stopping: loss has not improved for 2 evaluation(s)"),
            std::string::npos)
      << r.out;
  fs::remove_all(dir);

  const fs::path sched = scratch("sched-end");
  const Result s = run(train_cmd(2, sched, 12, "--set 'schedule.phases=[{steps: 2}, {tokens: 1000}]'"));
  ASSERT_EQ(s.code, 0) << s.out;
  // 1000 tokens at 12 x 64 per step: 2 steps; the run ends after step 4.
  expect_stopped(sched, 4, "schedule", s.out);
  EXPECT_TRUE(fs::exists(checkpoint(sched, 4)));
  fs::remove_all(sched);

  // A last phase whose condition already holds at step 0 (the untrained loss is ~5.5): nothing
  // to train, exit 0.
  const fs::path done = scratch("sched-done");
  const Result z = run(train_cmd(2, done, 12, "--set 'schedule.phases=[{until: \"loss < 100\"}]'"));
  ASSERT_EQ(z.code, 0) << z.out;
  expect_stopped(done, 0, "schedule", z.out);
  EXPECT_TRUE(records(done, "train").empty());
  EXPECT_NE(z.out.find("nothing to train"), std::string::npos) << z.out;
  fs::remove_all(done);
}

// Checkpoints at every evaluation (2, 4, 6, 8) ranked by the mean held-out loss, keeping the
// last and the best one: with best_mode max the HIGHEST loss (the worst checkpoint: not the last
// one, so retention must have judged by the metric), with auto (loss: lower is better) the lowest.
void expect_best_checkpoint_kept(const std::string& mode, bool highest) {
  const fs::path dir = scratch("best-" + mode);
  const Result r = run(train_cmd(2, dir, 8,
                                 "--set eval.every_steps=2 --set checkpoint.best_metric=eval.loss "
                                 "--set checkpoint.best_mode=" + mode +
                                 " --set checkpoint.keep_best=1 --set checkpoint.keep_last=1"));
  ASSERT_EQ(r.code, 0) << r.out;
  std::map<int64_t, std::vector<double>> losses;
  for (const json::object& e : records(dir, "eval"))
    if (is_all(e))
      losses[e.at("step").as_int64()].push_back(e.at("loss").to_number<double>());
  int64_t best = -1;
  double best_loss = 0;
  for (int64_t step : {2, 4, 6, 8}) {
    double s = 0;
    for (double x : losses.at(step)) s += x;
    s /= static_cast<double>(losses.at(step).size());
    if (best < 0 || (highest ? s > best_loss : s < best_loss)) {
      best_loss = s;
      best = step;
    }
  }
  if (highest) {
    EXPECT_NE(best, 8) << "the loss rose over training: the test cannot tell";
  }
  std::set<std::string> files;
  for (const auto& e : fs::directory_iterator(dir / "checkpoints"))
    if (e.path().extension() == ".h5") files.insert(e.path().filename().string());
  EXPECT_EQ(files, (std::set<std::string>{checkpoint(dir, static_cast<int>(best)).filename().string(),
                                          checkpoint(dir, 8).filename().string()}))
      << mode << "\n" << r.out;
  const pft::ckpt::Contents c = pft::ckpt::read_checkpoint_meta(checkpoint(dir, static_cast<int>(best)));
  const auto& meta = c.group_attrs("/meta");
  ASSERT_TRUE(meta.count("metric.eval.loss"));
  EXPECT_NEAR(std::get<double>(meta.at("metric.eval.loss")), best_loss, 1e-9);
  fs::remove_all(dir);
}

TEST(ControllerCli, BestCheckpointsAreRankedByAHeldOutMetric) {
  expect_best_checkpoint_kept("max", /*highest=*/true);
  expect_best_checkpoint_kept("auto", /*highest=*/false);
}

// Held-out evaluation on 1 and 3 ranks: the same documents and tokens, the same loss (up to the
// order of the sums); for the whole split and for eval.max_batches, whose cap is global.
void expect_same_evaluation(const std::string& eval_args, int64_t capped_documents) {
  const fs::path one = scratch("eval1"), three = scratch("eval3");
  const std::string args = eval_args + " --set eval.every_steps=0 --set train.warmup_steps=0";
  const Result a = run(train_cmd(1, one, 1, args));
  ASSERT_EQ(a.code, 0) << a.out;
  const Result b = run(train_cmd(3, three, 1, args));
  ASSERT_EQ(b.code, 0) << b.out;
  const std::vector<json::object> ea = records(one, "eval"), eb = records(three, "eval");
  ASSERT_EQ(ea.size(), eb.size());
  ASSERT_FALSE(ea.empty());
  for (size_t i = 0; i < ea.size(); ++i) {
    const std::string what = eval_args + ": " + json::serialize(ea[i]);
    EXPECT_EQ(ea[i].at("task"), eb[i].at("task"));
    EXPECT_EQ(ea[i].at("documents"), eb[i].at("documents")) << what;
    EXPECT_EQ(ea[i].at("tokens"), eb[i].at("tokens")) << what;
    const double x = ea[i].at("loss").to_number<double>(), y = eb[i].at("loss").to_number<double>();
    EXPECT_NEAR(x, y, 1e-5 * x) << what;
    if (capped_documents > 0 && !is_all(ea[i]) && ea[i].at("task").as_string() != "tech_qa") {
      EXPECT_EQ(ea[i].at("documents").as_int64(), capped_documents) << what;
    }
  }
  // The whole split: the documents of a task's "all" line are its validation examples x templates.
  for (const json::object& e : ea) {
    if (capped_documents == 0 && e.at("task").as_string() == "add" && is_all(e)) {
      EXPECT_EQ(e.at("documents").as_int64() % 3, 0);
    }
  }
  fs::remove_all(one);
  fs::remove_all(three);
}

TEST(ControllerCli, EvaluationOnThreeRanksCoversEveryDocumentOnce) {
  expect_same_evaluation("--set eval.max_batches=0", 0);
}

// eval.max_batches=2 with micro_batch_size 2: the first 4 examples of each template, on 1 rank
// as on 3 (it used to be 2 x 2 per rank: 12 examples on 3 ranks).
TEST(ControllerCli, EvalMaxBatchesCapsTheSameDocumentsOnAnyWorldSize) {
  expect_same_evaluation("--set eval.max_batches=2", 4);
}

}  // namespace
