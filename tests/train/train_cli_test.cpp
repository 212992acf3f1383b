// `pft train` end to end: the quickstart config trains (loss at the end below the start), prints
// the per-task table and writes config.resolved.yaml and one metrics.jsonl line per step; under `pft-mpirun -np 2` a
// tiny config gives the same per-step losses as one process (same global batch) within 1e-5
// relative; configs the trainer cannot run exit 2 naming the key.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json/parse.hpp>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "run_command.h"

namespace {
namespace fs = std::filesystem;

const std::string kPft = PFT_BIN;
const std::string kMpirun = PFT_MPIRUN;

using pft::test::Result;
using pft::test::run;

fs::path fresh_dir(const std::string& tag) {
  const fs::path d = fs::temp_directory_path() / ("pft-train-cli-" + tag + "-" + std::to_string(getpid()));
  fs::remove_all(d);
  return d;
}

// Losses of the "train" lines of a metrics.jsonl, in step order.
std::vector<double> train_losses(const fs::path& metrics) {
  std::vector<double> losses;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    const boost::json::object rec = boost::json::parse(line).as_object();
    if (rec.at("kind").as_string() != "train") continue;
    EXPECT_EQ(rec.at("step").as_int64(), static_cast<int64_t>(losses.size()) + 1);
    for (const char* key : {"lr", "grad_norm", "tokens", "tokens_per_s", "step_time_s"})
      EXPECT_TRUE(rec.contains(key)) << key << " missing in " << line;
    losses.push_back(rec.at("loss").to_number<double>());
  }
  return losses;
}

TEST(TrainCli, QuickstartLossGoesDown) {
  const fs::path dir = fresh_dir("quickstart");
  const Result r = run(kPft + " train configs/quickstart.yaml --set train.steps=30 --set run.threads=1"
                       " --set run.log_every=10 --set run.dir=" + dir.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("step 30/30 | loss "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tok/s | ETA"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("resolved config"), std::string::npos) << r.out;
  // The final per-task table: a header and one row per bundled task (windows of 3 steps).
  EXPECT_NE(r.out.find("loss first 3 steps"), std::string::npos) << r.out;
  for (const char* task : {"add", "reverse", "sort_digits", "max_digit", "uppercase", "sentiment",
                           "tech_qa"})
    EXPECT_NE(r.out.find(std::string("  ") + task + " "), std::string::npos) << task << "\n" << r.out;
  EXPECT_TRUE(fs::exists(dir / "config.resolved.yaml"));
  const std::vector<double> losses = train_losses(dir / "metrics.jsonl");
  ASSERT_EQ(losses.size(), 30u);
  // The start line records the mixture (data.mixing: temperature 2 in the quickstart): tech_qa's
  // 32 examples against add's 2,000 -> sqrt(32) / sqrt(2000) of add's share.
  {
    std::ifstream in(dir / "metrics.jsonl");
    std::string first;
    std::getline(in, first);
    const boost::json::object start = boost::json::parse(first).as_object();
    ASSERT_EQ(start.at("kind").as_string(), "start") << first;
    const boost::json::object& mix = start.at("mixture").as_object();
    ASSERT_EQ(mix.size(), 7u) << first;
    double sum = 0;
    for (const auto& kv : mix) sum += kv.value().to_number<double>();
    EXPECT_NEAR(sum, 1.0, 1e-9);
    EXPECT_NEAR(mix.at("tech_qa").to_number<double>() / mix.at("add").to_number<double>(),
                std::sqrt(32.0 / 2000.0), 1e-6);
  }
  EXPECT_LT(losses.back(), losses.front() - 1.0) << r.out;
  fs::remove_all(dir);
}

const std::string kTiny =
    " --set model.d_model=64 --set model.n_layers=2 --set model.n_heads=4 --set data.seq_len=64"
    " --set train.steps=8 --set train.warmup_steps=2 --set train.global_batch_size=8"
    " --set train.micro_batch_size=2 --set run.threads=1";

TEST(TrainCli, TwoRanksGiveTheSameLossesAsOne) {
  const fs::path one = fresh_dir("np1"), two = fresh_dir("np2");
  const Result r1 = run(kPft + " train configs/quickstart.yaml" + kTiny + " --set run.dir=" + one.string());
  ASSERT_EQ(r1.code, 0) << r1.out;
  const Result r2 = run("PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 " + kMpirun +
                        " -np 2 " + kPft + " train configs/quickstart.yaml" + kTiny +
                        " --set run.dir=" + two.string());
  ASSERT_EQ(r2.code, 0) << r2.out;
  EXPECT_NE(r2.out.find("2 rank(s)"), std::string::npos) << r2.out;
  const std::vector<double> a = train_losses(one / "metrics.jsonl"), b = train_losses(two / "metrics.jsonl");
  ASSERT_EQ(a.size(), 8u);
  ASSERT_EQ(b.size(), 8u);
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_NEAR(b[i], a[i], 1e-5 * a[i]) << "step " << i + 1;
  fs::remove_all(one);
  fs::remove_all(two);
}

TEST(TrainCli, ConfigsTheTrainerCannotRunExitTwo) {
  const fs::path dir = fresh_dir("bad");
  Result r = run(kPft + " train configs/quickstart.yaml --set model.vocab_size=100 --set run.dir=" + dir.string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("model.vocab_size: 100 is smaller than the vocabulary"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--set model.vocab_size:1:1: error: model.vocab_size"), std::string::npos) << r.out;
  r = run(kPft + " train configs/quickstart.yaml --set model.n_heads=5 --set run.dir=" + dir.string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("model.n_heads"), std::string::npos) << r.out;
  r = run(kPft + " train configs/quickstart.yaml --set train.method=prefix_tuning "
          "--set peft.prefix_tokens=10 --set run.dir=" + dir.string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("peft.prefix_tokens: a prefix of 10"), std::string::npos) << r.out;
  // Under mpirun: every rank exits 2, one message.
  r = run("PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 " + kMpirun +
          " -np 2 sh -c '" + kPft + " train configs/quickstart.yaml --set model.vocab_size=100 "
          "--set run.dir=" + dir.string() + "; echo rank-exit=$?'");
  size_t exits = 0, messages = 0;
  for (size_t p = r.out.find("rank-exit=2"); p != std::string::npos; p = r.out.find("rank-exit=2", p + 1)) ++exits;
  for (size_t p = r.out.find("is smaller than"); p != std::string::npos; p = r.out.find("is smaller than", p + 1)) ++messages;
  EXPECT_EQ(exits, 2u) << r.out;
  EXPECT_EQ(messages, 1u) << r.out;
  EXPECT_FALSE(fs::exists(dir / "metrics.jsonl"));
}

}  // namespace
