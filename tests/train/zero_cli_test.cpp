// `pft train` with dist.zero: 1 (ZeRO-1, Note [ZeRO-1] in train/optimizer.h) under pft-mpirun on
// the CPU (fp32, MPI backend, the bundled tasks):
//   - full fine-tuning, LoRA and prompt tuning (row-sparse task table) at 2 and 4 ranks: the
//     per-step losses and the final parameter hash are bitwise those of dist.zero: 0, and the
//     checkpoints are the same files (`pft ckpt diff`: IDENTICAL; the moments gathered from the
//     shards have the replicated layout, streamed through rank 0's scratch file: async saves at
//     2 ranks, synchronous ones, rank 0's own shard read from memory, at 4);
//   - resuming across dist.zero values and world sizes: a zero=0 file resumed with zero=1 and a
//     zero=1 file with zero=0 at the same world size continue bitwise like the uninterrupted run
//     (the repository's exact-resume rule); saved on 2 ranks and resumed on 4, on 1, and 2 -> 4
//     -> 2: bitwise the same as the zero=0 chain from the same files, and within 1e-5 of the
//     uninterrupted 2-rank run (what tests/ckpt/resume_cli_test.cpp asserts for world-size
//     changes).
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json/parse.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "run_command.h"

namespace {
namespace fs = std::filesystem;

using pft::test::Result;
using pft::test::run;

fs::path fresh_dir(const std::string& tag) {
  const fs::path d =
      fs::temp_directory_path() / ("pft-zero-cli-" + tag + "-" + std::to_string(getpid()));
  fs::remove_all(d);
  return d;
}

// A tiny GPT-2 on the bundled tasks (the quickstart config), 1 thread per rank, a checkpoint
// every 2 steps.
std::string train_cmd(int ranks, const fs::path& dir, int zero, const std::string& extra) {
  const std::string launch =
      ranks == 1 ? std::string(PFT_BIN)
                 : std::string("PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 ") +
                       PFT_MPIRUN + " -np " + std::to_string(ranks) + " " + PFT_BIN;
  return launch +
         " train configs/quickstart.yaml --set model.d_model=64 --set model.n_layers=2"
         " --set model.n_heads=4 --set data.seq_len=64 --set train.warmup_steps=2"
         " --set train.global_batch_size=8 --set train.micro_batch_size=2 --set run.threads=1"
         " --set run.log_every=1 --set checkpoint.every_steps=2 --set checkpoint.keep_last=10"
         " --set dist.bucket_cap_mb=0.05 --set dist.first_bucket_mb=0.01"
         " --set dist.zero=" + std::to_string(zero) + " --set run.dir=" + dir.string() + extra;
}

struct Metrics {
  std::map<int64_t, double> loss;  // per step
  std::map<int64_t, int64_t> comm_bytes;
  std::string param_hash;  // of the "end" record
};

Metrics read_metrics(const fs::path& dir) {
  Metrics m;
  std::ifstream in(dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    const boost::json::object rec = boost::json::parse(line).as_object();
    const std::string kind(rec.at("kind").as_string());
    if (kind == "train") {
      const int64_t step = rec.at("step").as_int64();
      m.loss[step] = rec.at("loss").to_number<double>();
      m.comm_bytes[step] = rec.at("comm_bytes").as_int64();
    }
    if (kind == "end") m.param_hash = std::string(rec.at("param_hash").as_string());
  }
  return m;
}

std::string ckpt(const fs::path& dir, int step) {
  char name[32];
  std::snprintf(name, sizeof(name), "step_%08d.h5", step);
  return (dir / "checkpoints" / name).string();
}

// `pft ckpt diff`: every dataset outside /meta and /metrics bitwise the same.
void expect_identical(const std::string& a, const std::string& b) {
  const Result d = run(std::string(PFT_BIN) + " ckpt diff " + a + " " + b);
  EXPECT_EQ(d.code, 0) << a << " vs " << b << ":\n" << d.out;
  EXPECT_CONTAINS(d.out, "IDENTICAL");
}

// A fresh run dir holding only checkpoint `step` of `from` (train.resume: auto picks it).
fs::path resume_dir(const std::string& tag, const fs::path& from, int step) {
  const fs::path d = fresh_dir(tag);
  fs::create_directories(d / "checkpoints");
  fs::copy_file(ckpt(from, step), ckpt(d, step));
  return d;
}

void expect_bitwise(const Metrics& a, const Metrics& b, int64_t first, int64_t last) {
  for (int64_t s = first; s <= last; ++s) {
    ASSERT_TRUE(a.loss.count(s) && b.loss.count(s)) << "step " << s;
    EXPECT_EQ(a.loss.at(s), b.loss.at(s)) << "step " << s;  // bitwise
  }
}

class ZeroCli : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(ZeroCli, BitwiseTheReplicatedRunAndCheckpoints) {
  const auto& [method, ranks] = GetParam();
  const std::string tag = method.substr(0, 6) + std::to_string(ranks);
  // At 4 ranks the saves are synchronous: under dist.zero 1 rank 0 then writes its own shard of
  // the moments from memory and the others' through the scratch file (Note [streamed ZeRO-1
  // save]); at 2 ranks asynchronous (the default): all of them through the scratch file.
  const std::string extra = " --set train.steps=4 --set train.method=" + method +
                            (ranks == 4 ? " --set checkpoint.async=false" : "");
  const fs::path z0 = fresh_dir(tag + "-z0"), z1 = fresh_dir(tag + "-z1");
  const Result r0 = run(train_cmd(ranks, z0, 0, extra));
  ASSERT_EQ(r0.code, 0) << r0.out;
  const Result r1 = run(train_cmd(ranks, z1, 1, extra));
  ASSERT_EQ(r1.code, 0) << r1.out;
  EXPECT_CONTAINS(r0.out, "(replicated)");
  EXPECT_CONTAINS(r1.out, "(dist.zero 1: sharded over " + std::to_string(ranks) + " ranks");
  if (method == "prompt_tuning") {
    EXPECT_CONTAINS(r1.out, "reduced row-sparse");
  }
  const Metrics a = read_metrics(z0), b = read_metrics(z1);
  ASSERT_EQ(a.loss.size(), 4u);
  ASSERT_EQ(b.loss.size(), 4u);
  expect_bitwise(a, b, 1, 4);
  ASSERT_FALSE(a.param_hash.empty());
  EXPECT_EQ(a.param_hash, b.param_hash);
  // The all-gather of the updated parameters adds to the gradients' bytes.
  for (int64_t s = 1; s <= 4; ++s) EXPECT_GT(b.comm_bytes.at(s), a.comm_bytes.at(s)) << s;
  expect_identical(ckpt(z0, 2), ckpt(z1, 2));
  expect_identical(ckpt(z0, 4), ckpt(z1, 4));
  fs::remove_all(z0);
  fs::remove_all(z1);
}

INSTANTIATE_TEST_SUITE_P(MethodsAndRanks, ZeroCli,
                         ::testing::Combine(::testing::Values("full", "lora", "prompt_tuning"),
                                            ::testing::Values(2, 4)));

TEST(ZeroCliResume, AcrossZeroValuesAndWorldSizes) {
  const std::string steps = " --set train.steps=8";
  // The uninterrupted 2-rank runs, replicated and sharded (the same, as above).
  const fs::path a0 = fresh_dir("a0"), a1 = fresh_dir("a1");
  ASSERT_EQ(run(train_cmd(2, a0, 0, steps)).code, 0);
  ASSERT_EQ(run(train_cmd(2, a1, 1, steps)).code, 0);
  const Metrics ma = read_metrics(a0);
  ASSERT_EQ(ma.loss.size(), 8u);
  expect_identical(ckpt(a0, 4), ckpt(a1, 4));
  const std::string resume = steps + " --set train.resume=auto";

  // Same world size, the other dist.zero value: exactly the uninterrupted run.
  const fs::path b1 = resume_dir("b1", a0, 4), b0 = resume_dir("b0", a1, 4);
  Result r = run(train_cmd(2, b1, 1, resume));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_CONTAINS(r.out, "resume: config changed: dist.zero: 0 -> 1");
  r = run(train_cmd(2, b0, 0, resume));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_CONTAINS(r.out, "resume: config changed: dist.zero: 1 -> 0");
  for (const fs::path& d : {b1, b0}) {
    const Metrics m = read_metrics(d);
    EXPECT_EQ(m.loss.size(), 4u) << d;
    expect_bitwise(ma, m, 5, 8);
    EXPECT_EQ(m.param_hash, ma.param_hash) << d;
  }
  expect_identical(ckpt(a0, 8), ckpt(b1, 8));

  // 2 -> 4 ranks: the sharded run from the sharded file is bitwise the replicated run from the
  // replicated file (each rank read its quarter of the moments); near the 2-rank run.
  const fs::path d1 = resume_dir("d1", a1, 4), d0 = resume_dir("d0", a0, 4);
  r = run(train_cmd(4, d1, 1, resume));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_CONTAINS(r.out, "saved on 2 rank(s)");
  ASSERT_EQ(run(train_cmd(4, d0, 0, resume)).code, 0);
  const Metrics m4 = read_metrics(d1), m4r = read_metrics(d0);
  ASSERT_EQ(m4.loss.size(), 4u);
  expect_bitwise(m4r, m4, 5, 8);
  EXPECT_EQ(m4.param_hash, m4r.param_hash);
  for (int64_t s = 5; s <= 8; ++s) EXPECT_NEAR(m4.loss.at(s), ma.loss.at(s), 1e-5) << s;
  expect_identical(ckpt(d0, 6), ckpt(d1, 6));  // saved from 4 shards

  // 2 -> 1 rank (dist.zero 1 on one rank: the replicated optimizer).
  const fs::path e1 = resume_dir("e1", a1, 4);
  r = run(train_cmd(1, e1, 1, resume));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_CONTAINS(r.out, "(replicated)");
  const Metrics m1 = read_metrics(e1);
  ASSERT_EQ(m1.loss.size(), 4u);
  for (int64_t s = 5; s <= 8; ++s) EXPECT_NEAR(m1.loss.at(s), ma.loss.at(s), 1e-5) << s;

  // 2 -> 4 -> 2: the 4-rank sharded run's step-6 file back on 2 ranks, sharded and replicated.
  const fs::path f1 = resume_dir("f1", d1, 6), f0 = resume_dir("f0", d0, 6);
  ASSERT_EQ(run(train_cmd(2, f1, 1, resume)).code, 0);
  ASSERT_EQ(run(train_cmd(2, f0, 0, resume)).code, 0);
  const Metrics mf = read_metrics(f1), mfr = read_metrics(f0);
  ASSERT_EQ(mf.loss.size(), 2u);
  expect_bitwise(mfr, mf, 7, 8);
  EXPECT_EQ(mf.param_hash, mfr.param_hash);
  for (int64_t s = 7; s <= 8; ++s) EXPECT_NEAR(mf.loss.at(s), ma.loss.at(s), 1e-5) << s;
  expect_identical(ckpt(f0, 8), ckpt(f1, 8));

  for (const fs::path& d : {a0, a1, b1, b0, d1, d0, e1, f1, f0}) fs::remove_all(d);
}

}  // namespace
