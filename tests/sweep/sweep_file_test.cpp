// The sweep file (sweep/sweep_file.h), without running anything: parsing, the errors a bad file
// gets (file:line:col and the key, as config errors), grid and random expansion (the same seed
// draws the same trials), and every trial's config validated before a sweep runs.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "sweep/sweep_file.h"

namespace pft::sweep {
namespace {

namespace fs = std::filesystem;

const fs::path kRoot = PFT_SOURCE_ROOT;

// A scratch directory holding `name` with `text`, so relative paths resolve from there.
fs::path write_file(const std::string& name, const std::string& text) {
  static int counter = 0;
  const fs::path dir = fs::temp_directory_path() /
                       ("pft-sweep-file-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
  fs::create_directories(dir);
  std::ofstream(dir / name) << text;
  return dir / name;
}

// A sweep over configs/quickstart.yaml (absolute, so the file can live anywhere).
std::string sweep_text(const std::string& body) {
  return "base: " + (kRoot / "configs/quickstart.yaml").string() + "\n" + body;
}

std::string error_of(const std::string& text, const std::string& name = "s.yaml") {
  const fs::path f = write_file(name, text);
  try {
    parse_sweep_file(f);
  } catch (const InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error for:\n" << text;
  return "";
}

TEST(SweepFile, ParsesEveryKey) {
  const fs::path f = write_file("s.yaml", sweep_text(
      "parameters:\n"
      "  train.lr: {grid: [1.0e-3, 3.0e-3]}\n"
      "  model.d_model: [32, 64]\n"
      "  data.tasks: {choice: [[a.yaml], [a.yaml, b.yaml]]}\n"
      "search: grid\n"
      "seeds: [1, 2]\n"
      "set: [train.steps=20, 'eval.every_steps=5']\n"
      "objective: {metric: eval.add.exact_match}\n"
      "early_stop: {rule: asha, eta: 2, min_steps: 5, max_steps: 40}\n"
      "executor: {kind: mpi, parallel: 2, ranks_per_trial: 2}\n"));
  const SweepSpec s = parse_sweep_file(f);
  EXPECT_EQ(s.base_file, kRoot / "configs/quickstart.yaml");
  ASSERT_EQ(s.parameters.size(), 3u);
  EXPECT_EQ(s.parameters[0].key, "train.lr");
  EXPECT_EQ(s.parameters[0].kind, ParamSpec::Kind::kGrid);
  EXPECT_EQ(s.parameters[0].values, (std::vector<std::string>{"1.0e-3", "3.0e-3"}));
  EXPECT_EQ(s.parameters[0].source.line, 3);
  EXPECT_EQ(s.parameters[1].kind, ParamSpec::Kind::kGrid);  // a bare list is a grid
  EXPECT_EQ(s.parameters[2].kind, ParamSpec::Kind::kChoice);
  EXPECT_EQ(s.parameters[2].values, (std::vector<std::string>{"[a.yaml]", "[a.yaml, b.yaml]"}));
  EXPECT_EQ(s.seeds, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(s.objective.key, "add.exact_match");
  EXPECT_TRUE(s.objective.higher_is_better);  // auto: exact match is better higher
  EXPECT_TRUE(s.early_stop.enabled);
  EXPECT_EQ(s.early_stop.eta, 2);
  EXPECT_EQ(s.early_stop.min_steps, 5);
  EXPECT_EQ(s.early_stop.max_steps, 40);
  EXPECT_EQ(s.executor.kind, ExecutorKind::kMpi);
  EXPECT_EQ(s.executor.parallel, 2);
  EXPECT_EQ(s.executor.ranks_per_trial, 2);

  // 2 x 2 x 2 points x 2 seeds, the first key slowest, seeds innermost.
  const std::vector<Trial> t = expand(s);
  ASSERT_EQ(t.size(), 16u);
  EXPECT_EQ(t[0].id, "t000");
  EXPECT_EQ(t[15].id, "t015");
  EXPECT_EQ(t[0].overrides,
            (std::vector<std::string>{"train.steps=20", "eval.every_steps=5", "train.lr=1.0e-3",
                                      "model.d_model=32", "data.tasks=[a.yaml]", "run.seed=1"}));
  EXPECT_EQ(t[1].overrides.back(), "run.seed=2");
  EXPECT_EQ(t[2].overrides[4], "data.tasks=[a.yaml, b.yaml]");
  EXPECT_EQ(t[8].overrides[2], "train.lr=3.0e-3");
  EXPECT_EQ(t[15].params.size(), 4u);
  EXPECT_EQ(expand(s)[7].overrides, t[7].overrides);  // pure
}

TEST(SweepFile, LossIsMinimisedUnlessModeSaysOtherwise) {
  SweepSpec s = parse_sweep_text(sweep_text("objective: {metric: eval.loss}\n"), "a.yaml");
  EXPECT_FALSE(s.objective.higher_is_better);
  s = parse_sweep_text(sweep_text("objective: {metric: eval.loss, mode: max}\n"), "a.yaml");
  EXPECT_TRUE(s.objective.higher_is_better);
  s = parse_sweep_text(sweep_text("objective: {metric: eval.sentiment.accuracy, mode: min}\n"),
                       "a.yaml");
  EXPECT_FALSE(s.objective.higher_is_better);
  // No parameters: one trial, the base config.
  EXPECT_EQ(expand(s).size(), 1u);
  EXPECT_TRUE(expand(s)[0].overrides.empty());
}

TEST(SweepFile, RandomSearchDrawsTheSameTrialsForTheSameSeed) {
  const auto spec = [](int seed) {
    return parse_sweep_text(sweep_text(
        "search: random\ntrials: 12\nseed: " + std::to_string(seed) + "\n"
        "parameters:\n"
        "  train.lr: {log_uniform: [1.0e-5, 1.0e-1]}\n"
        "  train.weight_decay: {uniform: [0, 0.2]}\n"
        "  train.warmup_steps: {int: [0, 3]}\n"
        "  train.micro_batch_size: {choice: [1, 2, 4]}\n"
        "objective: {metric: eval.loss}\n"), "r.yaml");
  };
  const std::vector<Trial> a = expand(spec(7)), b = expand(spec(7)), c = expand(spec(8));
  ASSERT_EQ(a.size(), 12u);
  std::set<std::string> lrs, warmups;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].overrides, b[i].overrides) << i;
    ASSERT_EQ(a[i].params.size(), 4u);
    const double lr = std::stod(a[i].params[0].second);
    EXPECT_GE(lr, 1e-5);
    EXPECT_LE(lr, 1e-1);
    const double wd = std::stod(a[i].params[1].second);
    EXPECT_GE(wd, 0.0);
    EXPECT_LE(wd, 0.2);
    const int w = std::stoi(a[i].params[2].second);
    EXPECT_GE(w, 0);
    EXPECT_LE(w, 3);
    EXPECT_TRUE(a[i].params[3].second == "1" || a[i].params[3].second == "2" ||
                a[i].params[3].second == "4");
    lrs.insert(a[i].params[0].second);
    warmups.insert(a[i].params[2].second);
  }
  EXPECT_EQ(lrs.size(), 12u);      // continuous draws differ
  EXPECT_GE(warmups.size(), 2u);   // 12 draws of 4 integers
  size_t same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i].overrides == c[i].overrides;
  EXPECT_LT(same, a.size());  // another seed, other trials
}

TEST(SweepFile, ErrorsNameFileLineAndKey) {
  // file:line:col: error: key: what, as config errors read.
  std::string m = error_of(sweep_text("parameters:\n  train.lr: {grid: [1e-3]}\n  train.lrr: [1]\n"
                                      "objective: {metric: eval.loss}\n"));
  EXPECT_NE(m.find("s.yaml:4:3: error: parameters.train.lrr: `train.lrr` is not a config key "
                   "(did you mean `train.lr`?)"), std::string::npos) << m;
  m = error_of(sweep_text("parameters:\n  train.lr: {gird: [1e-3]}\nobjective: {metric: eval.loss}\n"));
  EXPECT_NE(m.find("s.yaml:3:14: error: parameters.train.lr.gird: unknown range kind (did you "
                   "mean `grid`?)"), std::string::npos) << m;
  m = error_of(sweep_text("parameters:\n  train.lr: {uniform: [1e-3, 1e-2]}\n"
                          "objective: {metric: eval.loss}\n"));
  EXPECT_NE(m.find("s.yaml:3:3: error: parameters.train.lr.uniform: a `uniform` range is drawn "
                   "from by `search: random`"), std::string::npos) << m;
  m = error_of(sweep_text("search: random\ntrials: 2\nparameters:\n  train.lr: {log_uniform: [0, 1]}\n"
                          "objective: {metric: eval.loss}\n"));
  EXPECT_NE(m.find("s.yaml:5:27: error: parameters.train.lr.log_uniform: log_uniform needs lo > 0"),
            std::string::npos) << m;
  m = error_of(sweep_text("search: random\ntrials: 2\nparameters:\n  train.steps: {int: [5, 1.5]}\n"
                          "objective: {metric: eval.loss}\n"));
  EXPECT_NE(m.find("s.yaml:5:"), std::string::npos) << m;
  EXPECT_NE(m.find("parameters.train.steps.int"), std::string::npos) << m;
  m = error_of(sweep_text("objective: {metric: eval.exact_mach}\n"));
  EXPECT_NE(m.find("s.yaml:2:21: error: objective.metric: "), std::string::npos) << m;
  m = error_of(sweep_text("objective: {metric: loss}\n"));
  EXPECT_NE(m.find("objective.metric: `loss` is not a held-out metric"), std::string::npos) << m;
  m = error_of(sweep_text("objective: {metric: eval.loss, mode: best}\n"));
  EXPECT_NE(m.find("s.yaml:2:38: error: objective.mode"), std::string::npos) << m;
  m = error_of(sweep_text("objective: {metric: eval.loss}\nexecutor: {kind: kubernetes}\n"));
  EXPECT_NE(m.find("s.yaml:3:18: error: executor.kind"), std::string::npos) << m;
  EXPECT_NE(m.find("local"), std::string::npos) << m;
  m = error_of(sweep_text("objective: {metric: eval.loss}\nexecutor: {paralel: 2}\n"));
  EXPECT_NE(m.find("s.yaml:3:12: error: executor.paralel"), std::string::npos) << m;
  EXPECT_NE(m.find("parallel"), std::string::npos) << m;
  m = error_of(sweep_text("objective: {metric: eval.loss}\nearly_stop: {eta: 1}\n"
                          "executor: {kind: mpi}\n"));
  EXPECT_NE(m.find("s.yaml:3:19: error: early_stop.eta"), std::string::npos) << m;
  m = error_of(sweep_text("objective: {metric: eval.loss}\nearly_stop: {min_steps: 10, max_steps: 5}\n"
                          "executor: {kind: mpi}\n"));
  EXPECT_NE(m.find("early_stop.max_steps: 5 is not above early_stop.min_steps = 10"), std::string::npos) << m;
  // max_steps == min_steps leaves no rung: refused here, with file:line, not by ASHA later.
  m = error_of(sweep_text("objective: {metric: eval.loss}\nearly_stop: {min_steps: 10, max_steps: 10}\n"
                          "executor: {kind: mpi}\n"));
  EXPECT_NE(m.find("s.yaml:3:40: error: early_stop.max_steps: 10 is not above early_stop.min_steps = 10"),
            std::string::npos) << m;
  m = error_of(sweep_text("objective: {metric: eval.loss}\nearly_stop: {min_steps: 10}\n"));
  EXPECT_NE(m.find("early_stop: ASHA stops trials inside one allocation: it needs executor.kind: mpi"),
            std::string::npos) << m;
  m = error_of(sweep_text("set: [train.step=5]\nobjective: {metric: eval.loss}\n"));
  EXPECT_NE(m.find("s.yaml:2:6: error: set[0]: `train.step` is not a config key (did you mean "
                   "`train.steps`?)"), std::string::npos) << m;
  m = error_of(sweep_text("search: random\nobjective: {metric: eval.loss}\n"));
  EXPECT_NE(m.find("trials: search: random needs `trials:`"), std::string::npos) << m;
  m = error_of(sweep_text("parameters:\n  run.dir: [a, b]\nobjective: {metric: eval.loss}\n"));
  EXPECT_NE(m.find("s.yaml:3:3: error: parameters.run.dir: the sweep gives every trial its own "
                   "run.dir"), std::string::npos) << m;
  m = error_of("base: no-such.yaml\nobjective: {metric: eval.loss}\n");
  EXPECT_NE(m.find("s.yaml:1:7: error: base: config file 'no-such.yaml' does not exist"),
            std::string::npos) << m;
  m = error_of(sweep_text("parameters:\n  train.lr: 3\nobjective: {metric: eval.loss}\n"));
  EXPECT_NE(m.find("s.yaml:3:13: error: parameters.train.lr: expected a list of values"),
            std::string::npos) << m;
  m = error_of(sweep_text(""));
  EXPECT_NE(m.find("s.yaml:1:1: error: objective: missing"), std::string::npos) << m;
  m = error_of(sweep_text("objective: {metric: eval.loss}\nparameters: {train.lr: [1e-3]\n"));
  EXPECT_NE(m.find("s.yaml:"), std::string::npos) << m;  // a YAML syntax error, placed
}

TEST(SweepFile, EveryTrialConfigIsValidatedBeforeAnythingRuns) {
  const fs::path dir = write_file("x", "").parent_path();
  // The third trial (micro batch 3 does not divide 16) is refused, naming it and the key.
  SweepSpec s = parse_sweep_text(sweep_text(
      "parameters:\n  train.lr: [1.0e-3]\n  train.micro_batch_size: [2, 4, 3]\n"
      "objective: {metric: eval.add.exact_match}\n"), dir / "v.yaml");
  try {
    load_trial_configs(s, expand(s), dir / "sweep");
    ADD_FAILURE() << "the bad trial was not refused";
  } catch (const InputError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("trial t002 (train.lr=1.0e-3, train.micro_batch_size=3)"), std::string::npos) << m;
    EXPECT_NE(m.find("train.global_batch_size: 16 is not a multiple of train.micro_batch_size = 3"),
              std::string::npos) << m;
  }
  // ranks_per_trial counts: 16 sequences over 3 ranks x 2 do not split.
  s = parse_sweep_text(sweep_text("parameters:\n  train.micro_batch_size: [2]\n"
                                  "objective: {metric: eval.loss}\nexecutor: {ranks_per_trial: 3}\n"),
                       dir / "w.yaml");
  try {
    load_trial_configs(s, expand(s), dir / "sweep");
    ADD_FAILURE() << "the bad trial was not refused";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("trial t000"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("over 3 ranks"), std::string::npos) << e.what();
  }
  // A task the trials do not train.
  s = parse_sweep_text(sweep_text("objective: {metric: eval.multiply.loss}\n"), dir / "x.yaml");
  try {
    load_trial_configs(s, expand(s), dir / "sweep");
    ADD_FAILURE() << "the unknown task was not refused";
  } catch (const InputError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("x.yaml:2:21: error: objective.metric: "), std::string::npos) << m;
    EXPECT_NE(m.find("multiply"), std::string::npos) << m;
  }
  // ASHA rungs past the trials' training.
  s = parse_sweep_text(sweep_text("objective: {metric: eval.loss}\nexecutor: {kind: mpi}\n"
                                  "early_stop: {min_steps: 50, max_steps: 400}\n"), dir / "e.yaml");
  try {
    load_trial_configs(s, expand(s), dir / "sweep");
    ADD_FAILURE() << "rungs past train.steps were not refused";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("e.yaml:4:13: error: early_stop: rungs up to step 400 but "
                                         "this trial trains 200 steps"), std::string::npos) << e.what();
  }
  // max_steps 0 (each trial's train.steps) with the first rung at train.steps: no rung.
  s = parse_sweep_text(sweep_text("objective: {metric: eval.loss}\nexecutor: {kind: mpi}\n"
                                  "early_stop: {min_steps: 200}\n"), dir / "f.yaml");
  try {
    load_trial_configs(s, expand(s), dir / "sweep");
    ADD_FAILURE() << "min_steps == train.steps was not refused";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("f.yaml:4:13: error: early_stop: min_steps 200 leaves no "
                                         "rung below train.steps = 200"), std::string::npos) << e.what();
  }
  // Good trials load, each with its own run dir.
  s = parse_sweep_text(sweep_text("parameters:\n  train.lr: [1.0e-3, 2.0e-3]\n"
                                  "objective: {metric: eval.add.loss}\n"), dir / "y.yaml");
  const std::vector<Config> configs = load_trial_configs(s, expand(s), dir / "sweep");
  ASSERT_EQ(configs.size(), 2u);
  EXPECT_DOUBLE_EQ(configs[1].train.lr, 2e-3);
  EXPECT_EQ(configs[1].run.dir, (dir / "sweep" / "trials" / "t001").string());
}

TEST(SweepFile, InlineBaseKeepsItsRelativeTaskPaths) {
  // An inline base written beside datasets/: its task path is relative to the sweep file.
  const fs::path dir = write_file("x", "").parent_path();
  const std::string text =
      "base:\n"
      "  model: {vocab_size: 258, d_model: 32, n_layers: 1, n_heads: 2, max_seq_len: 64}\n"
      "  data: {seq_len: 64, source: tasks, tasks: [tasks/add.yaml]}\n"
      "  train: {steps: 2, global_batch_size: 4, micro_batch_size: 2, lr: 1.0e-3}\n"
      "parameters:\n  train.lr: [1.0e-3]\n"
      "objective: {metric: eval.add.loss}\n";
  fs::create_directories(dir / "tasks");
  fs::copy_file(kRoot / "datasets/tasks/add.yaml", dir / "tasks/add.yaml");
  const SweepSpec s = parse_sweep_text(text, dir / "inline.yaml");
  EXPECT_TRUE(s.base_file.empty());
  EXPECT_NE(s.base_inline.find((dir / "tasks/add.yaml").string()), std::string::npos) << s.base_inline;
  write_inline_base(s, dir / "sweep");
  const fs::path base = dir / "sweep" / "base.yaml";
  EXPECT_EQ(trial_config_file(s, dir / "sweep"), base);
  EXPECT_TRUE(fs::exists(base));
  // Trials read base.yaml while every Slurm array task / mpi rank writes it again: the same text
  // leaves the file untouched (no truncation under a reader) ...
  const auto old_time = fs::file_time_type::clock::now() - std::chrono::hours(1);
  fs::last_write_time(base, old_time);
  write_inline_base(s, dir / "sweep");
  EXPECT_EQ(fs::last_write_time(base), old_time);
  // ... and another text replaces it whole.
  std::string changed_text = text;
  changed_text.replace(changed_text.find("steps: 2,"), 9, "steps: 3,");
  const SweepSpec changed = parse_sweep_text(changed_text, dir / "inline.yaml");
  write_inline_base(changed, dir / "sweep");
  std::ifstream in(base);
  const std::string written((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(written.find("steps: 3,"), std::string::npos) << written;
}

}  // namespace
}  // namespace pft::sweep
