// `pft train` with each parameter-efficient method, end to end on the bundled tasks:
//   - a base model is pretrained (full fine-tuning, 2 ranks) on five bundled tasks and exported to
//     Hugging Face format (`pft ckpt export --format hf`);
//   - prompt tuning, prefix tuning, LoRA and prompt tuning + LoRA then train on it under
//     mpirun -np 2 on two tasks (one the base never saw): every task's held-out loss (metrics
//     "eval" lines, step 0 vs the end) falls, the base's hash at the end equals its hash at the
//     start (the base weights are bitwise unchanged), the checkpoint holds only the adapter
//     (a small file) and resuming its middle checkpoint ends with the same parameter hash;
//   - resuming an adapter checkpoint on another base is refused (exit 2, naming both hashes);
//   - `pft generate --model BASE --adapter CKPT` (--adapter-task only for per-task tables) and
//     `pft ckpt export` of the adapter: OUT/merged/ (the merged LoRA model generates the same
//     text as base + adapter), OUT/adapter/ (LoRA), OUT/adapters/<task>/ (prompt / prefix
//     blocks), never an adapter_config.json beside full weights;
//   - a trained prompt table grows by a task (peft.init_from + peft.freeze_loaded): the rows of
//     the tasks it had stay bitwise unchanged, the new task's rows learn.
#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "ckpt/reader.h"
#include "run_command.h"

namespace {
namespace fs = std::filesystem;

const std::string kPft = PFT_BIN;
const std::string kMpirun =
    std::string("PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 ") + PFT_MPIRUN +
    " -np 2 ";
const fs::path kTasks = fs::path(PFT_SOURCE_ROOT) / "datasets" / "tasks";

using pft::test::Result;
using pft::test::run;

std::string task_list(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ",") + (kTasks / (n + ".yaml")).string();
  return "[" + out + "]";
}

// The quickstart model, small and short; `dir` is run.dir.
std::string train_cmd(const fs::path& dir, const std::vector<std::string>& tasks, int steps,
                      const std::string& extra) {
  return kPft + " train configs/quickstart.yaml --set run.dir=" + dir.string() +
         " --set data.tasks=" + task_list(tasks) + " --set data.seq_len=128" +
         " --set train.steps=" + std::to_string(steps) +
         " --set train.warmup_steps=2 --set run.threads=1 --set run.log_every=10"
         " --set eval.every_steps=0 --set eval.max_batches=4 --set checkpoint.async=false" +
         extra;
}

struct Metrics {
  std::map<std::string, double> eval_start, eval_end;  // task -> held-out loss (all templates)
  std::string base_start, base_end, param_hash;
  int64_t parameters = 0;
};

Metrics read_metrics(const fs::path& dir) {
  Metrics m;
  std::ifstream in(dir / "metrics.jsonl");
  int64_t last_step = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const boost::json::object rec = boost::json::parse(line).as_object();
    const std::string kind(rec.at("kind").as_string());
    if (kind == "start") {
      if (rec.contains("base_model_hash")) m.base_start = rec.at("base_model_hash").as_string();
      m.parameters = rec.at("parameters").as_int64();
    }
    if (kind == "train") last_step = rec.at("step").as_int64();
    if (kind == "eval" && rec.at("template").is_string()) {
      const std::string task(rec.at("task").as_string());
      const double loss = rec.at("loss").to_number<double>();
      if (rec.at("step").as_int64() == 0) m.eval_start[task] = loss;
      else if (rec.at("step").as_int64() == last_step) m.eval_end[task] = loss;
    }
    if (kind == "end") {
      m.param_hash = rec.at("param_hash").as_string();
      if (rec.contains("base_model_hash")) m.base_end = rec.at("base_model_hash").as_string();
    }
  }
  return m;
}

class PeftCli : public ::testing::Test {
 protected:
  // Not ASSERTs: Note [a failed SetUpTestSuite is no skip] in tests/run_command.h.
  static void SetUpTestSuite() {
    root_ = fs::temp_directory_path() / ("pft-peft-cli-" + std::to_string(getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    // The base: full fine-tuning on five tasks (not reverse), exported to HF format.
    setup_failure_ = setup_failure(
        run(kMpirun + train_cmd(root_ / "base",
                                {"add", "sort_digits", "max_digit", "uppercase", "sentiment"}, 80,
                                " --set train.lr=2e-3")),
        "training run");
    if (!setup_failure_.empty()) return;
    setup_failure_ = setup_failure(
        run(kPft + " ckpt export " + (root_ / "base/checkpoints/step_00000080.h5").string() +
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
fs::path PeftCli::root_;
std::string PeftCli::setup_failure_;

const std::vector<std::string> kPeftTasks = {"reverse", "add"};
constexpr int kSteps = 40;

std::string peft_extra(const std::string& method) {
  return " --set train.method=" + method + " --set model.from_pretrained=" +
         (fs::temp_directory_path() / ("pft-peft-cli-" + std::to_string(getpid())) / "base_hf").string() +
         " --set train.lr=1e-2 --set train.weight_decay=0 --set checkpoint.every_steps=20"
         " --set peft.prompt_tokens=8 --set peft.prefix_tokens=8"
         " --set dist.check_params_every=5";  // the row-sparse reduction keeps ranks in step
}

// The completions `pft generate` printed (its stdout without the log lines).
std::string completions(const std::string& out) {
  std::string kept;
  size_t start = 0;
  while (start < out.size()) {
    size_t end = out.find('\n', start);
    if (end == std::string::npos) end = out.size();
    const std::string line = out.substr(start, end - start);
    const bool log = line.size() > 9 && line[2] == ':' && line[5] == ':' && line[8] == ' ';
    if (!log) kept += line + "\n";
    start = end + 1;
  }
  return kept;
}

class PeftMethod : public PeftCli, public ::testing::WithParamInterface<std::string> {};

TEST_P(PeftMethod, LowersHeldOutLossWithFrozenBaseAndResumesBitwise) {
  const std::string method = GetParam();
  const fs::path dir = root_ / method;
  const Result r = run(kMpirun + train_cmd(dir, kPeftTasks, kSteps, peft_extra(method)));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("method: " + method), std::string::npos) << r.out;
  const Metrics m = read_metrics(dir);
  ASSERT_EQ(m.eval_start.size(), kPeftTasks.size()) << r.out;
  ASSERT_EQ(m.eval_end.size(), kPeftTasks.size()) << r.out;
  for (const auto& [task, before] : m.eval_start) {
    std::cout << method << " " << task << ": held-out loss " << before << " -> "
              << m.eval_end.at(task) << "\n";
    EXPECT_LT(m.eval_end.at(task), before) << task;
  }
  // The frozen base: the same bits at the end as at the start.
  ASSERT_FALSE(m.base_start.empty());
  EXPECT_EQ(m.base_start, m.base_end);
  // The checkpoint holds the adapter only: far smaller than the base's.
  const fs::path mid = dir / "checkpoints/step_00000020.h5";
  const fs::path last = dir / ("checkpoints/step_000000" + std::to_string(kSteps) + ".h5");
  ASSERT_TRUE(fs::exists(mid) && fs::exists(last));
  EXPECT_LT(fs::file_size(last) * 5, fs::file_size(root_ / "base/checkpoints/step_00000080.h5"));
  // Resume from the middle checkpoint in another run.dir: the same final parameters.
  const fs::path again = root_ / (method + "-resumed");
  const Result b = run(kMpirun + train_cmd(again, kPeftTasks, kSteps,
                                           peft_extra(method) + " --set train.resume=" + mid.string()));
  ASSERT_EQ(b.code, 0) << b.out;
  EXPECT_EQ(read_metrics(again).param_hash, m.param_hash);
  // On another base (the random init): refused, naming the hashes.
  const Result c = run(kMpirun + train_cmd(root_ / (method + "-other"), kPeftTasks, kSteps,
                                           " --set train.method=" + method +
                                               " --set peft.prompt_tokens=8 --set peft.prefix_tokens=8"
                                               " --set train.resume=" + last.string()));
  EXPECT_EQ(c.code, 2) << c.out;
  EXPECT_NE(c.out.find("trained on base model " + m.base_start), std::string::npos) << c.out;

  // pft generate: the base plus the adapter (add's block); pft ckpt export: the merged model and
  // the adapter in PEFT's format. For LoRA alone the exported merged model generates what
  // generate --adapter does (the merge itself is checked against the unmerged logits in
  // peft_model_test.cpp).
  const std::string base_hf = (root_ / "base_hf").string();
  const std::string gen_args =
      " --tokenizer byte --prompt 'Add the two numbers.' --prompt '12 + 30 =' --max-new-tokens 8"
      " --threads 1 2>/dev/null";
  // LoRA alone has no per-task block: no --adapter-task (issue 22).
  const std::string task_flag = method == "lora" ? "" : " --adapter-task add";
  const Result g = run(kPft + " generate --model " + base_hf + " --adapter " + last.string() +
                       task_flag + gen_args);
  ASSERT_EQ(g.code, 0) << g.out;
  EXPECT_FALSE(g.out.empty());
  const fs::path exported = root_ / (method + "-export");
  const Result x = run(kPft + " ckpt export " + last.string() + " --format hf --out " +
                       exported.string());
  ASSERT_EQ(x.code, 0) << x.out;
  EXPECT_TRUE(fs::exists(exported / "merged" / "model.safetensors")) << x.out;
  EXPECT_FALSE(fs::exists(exported / "merged" / "adapter_config.json")) << x.out;
  EXPECT_FALSE(fs::exists(exported / "model.safetensors")) << x.out;
  EXPECT_EQ(fs::exists(exported / "adapter" / "adapter_model.safetensors"),
            method.ends_with("lora"))
      << x.out;
  if (method == "lora") {
    const Result merged = run(kPft + " generate --model " + (exported / "merged").string() + gen_args);
    ASSERT_EQ(merged.code, 0) << merged.out;
    EXPECT_EQ(completions(merged.out), completions(g.out));
  } else {  // one PEFT adapter directory per task block
    for (const std::string& task : kPeftTasks)
      EXPECT_TRUE(fs::exists(exported / "adapters" / task / "adapter_config.json")) << x.out;
  }
#ifdef PFT_PYTHON
  // Hugging Face PEFT loads the export and greedy-decodes the same tokens as pft generate.
  const fs::path jsonl = root_ / (method + "-generated.jsonl");
  const std::string prompt = "Add the two numbers.\n21 + 34 =";
  const Result p = run(kPft + " generate --model " + base_hf + " --adapter " + last.string() +
                       task_flag + " --tokenizer byte --prompt '" + prompt +
                       "' --max-new-tokens 8 --ignore-eos --threads 1 --output " + jsonl.string());
  ASSERT_EQ(p.code, 0) << p.out;
  const bool lora_only = method == "lora";
  const Result check = run(std::string(PFT_PYTHON) + " tests/reference/peft_export_check.py --base " +
                           (method.ends_with("+lora") ? (exported / "merged").string() : base_hf) +
                           " --adapter " + (lora_only ? exported / "adapter" : exported / "adapters" / "add").string() +
                           " --prompt '" + prompt + "' --pft-jsonl " + jsonl.string() +
                           " --new-tokens 8 --virtual-tokens " + (lora_only ? "0" : "8"));
  EXPECT_EQ(check.code, 0) << check.out;
  const size_t line = check.out.rfind("peft_export_check:");
  std::cout << (line == std::string::npos ? check.out : check.out.substr(line)) << "\n";
#endif
}

// A trained prompt table grows by a task: the rows of the tasks it had stay bitwise unchanged.
TEST_F(PeftCli, InitFromGrowsThePromptTableAndFreezesLoadedRows) {
  const fs::path first = root_ / "table", second = root_ / "table-grown";
  const Result a = run(kMpirun + train_cmd(first, kPeftTasks, 20, peft_extra("prompt_tuning")));
  ASSERT_EQ(a.code, 0) << a.out;
  const fs::path trained = first / "checkpoints/step_00000020.h5";
  const std::vector<std::string> grown = {"uppercase", "reverse", "add"};
  const Result b = run(kMpirun + train_cmd(second, grown, 20,
                                           peft_extra("prompt_tuning") + " --set peft.init_from=" +
                                               trained.string() +
                                               " --set peft.freeze_loaded=true"));
  ASSERT_EQ(b.code, 0) << b.out;
  EXPECT_NE(b.out.find("the blocks of 2 task(s) loaded from"), std::string::npos) << b.out;
  const auto before = pft::ckpt::read_checkpoint(trained);
  const auto after = pft::ckpt::read_checkpoint(second / "checkpoints/step_00000020.h5");
  const auto& t0 = before.at("/model/prompt_embeddings");
  const auto& t1 = after.at("/model/prompt_embeddings");
  ASSERT_EQ(t0.shape, (std::vector<int64_t>{16, 128}));  // 2 tasks x 8 virtual tokens
  ASSERT_EQ(t1.shape, (std::vector<int64_t>{24, 128}));
  const size_t block = 8 * 128 * sizeof(float);
  const auto bytes = [&](const pft::ckpt::Dataset& d, size_t b) {
    return std::string(reinterpret_cast<const char*>(d.bytes.data()) + b * block, block);
  };
  EXPECT_EQ(bytes(t1, 1), bytes(t0, 0)) << "reverse's block changed";
  EXPECT_EQ(bytes(t1, 2), bytes(t0, 1)) << "add's block changed";
  // The new task's block learned: it differs from its initial value (the vocab init, the same
  // in a run of the grown table that trains 0 steps is hard to get; its step-0 metrics differ).
  const Result c = run(kMpirun + train_cmd(root_ / "table-grown-0", grown, 1,
                                           peft_extra("prompt_tuning") + " --set peft.init_from=" +
                                               trained.string() +
                                               " --set peft.freeze_loaded=true --set train.lr=1e-9"
                                               " --set train.warmup_steps=0"));
  ASSERT_EQ(c.code, 0) << c.out;
  const auto almost_initial =
      pft::ckpt::read_checkpoint(root_ / "table-grown-0/checkpoints/step_00000001.h5");
  EXPECT_NE(bytes(t1, 0), bytes(almost_initial.at("/model/prompt_embeddings"), 0));
}

INSTANTIATE_TEST_SUITE_P(Methods, PeftMethod,
                         ::testing::Values("prompt_tuning", "prefix_tuning", "lora",
                                           "prompt_tuning+lora"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param;
                           for (char& ch : name)
                             if (ch == '+') ch = '_';
                           return name;
                         });

}  // namespace
