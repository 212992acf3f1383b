// `pft train` under `pft-mpirun -np 2` with the gradient reducer: every metrics.jsonl train line
// carries comm_time_s and world_size, several buckets (tiny dist.bucket_cap_mb) and the desync
// detector every step (dist.check_params_every: 1) leave the losses equal to one process's within
// 1e-5 relative, and the start-up log names the buckets; dist.grad_comm_dtype: bf16 (bitwise
// identical parameters, losses near fp32's, half the bytes, recorded in checkpoints, resumable
// with fp32).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json/parse.hpp>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "run_command.h"

namespace {
namespace fs = std::filesystem;

using pft::test::Result;
using pft::test::run;

fs::path fresh_dir(const std::string& tag) {
  const fs::path d = fs::temp_directory_path() / ("pft-ddp-cli-" + tag + "-" + std::to_string(getpid()));
  fs::remove_all(d);
  return d;
}

struct TrainLine {
  double loss = 0, comm_time_s = -1;
  int64_t world_size = 0;
  int64_t comm_bytes = -1;
};

std::vector<TrainLine> train_lines(const fs::path& metrics) {
  std::vector<TrainLine> lines;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    const boost::json::object rec = boost::json::parse(line).as_object();
    if (rec.at("kind").as_string() != "train") continue;
    TrainLine t;
    t.loss = rec.at("loss").to_number<double>();
    EXPECT_TRUE(rec.contains("comm_time_s")) << line;
    EXPECT_TRUE(rec.contains("world_size")) << line;
    if (rec.contains("comm_time_s")) t.comm_time_s = rec.at("comm_time_s").to_number<double>();
    if (rec.contains("world_size")) t.world_size = rec.at("world_size").as_int64();
    if (rec.contains("comm_bytes")) t.comm_bytes = rec.at("comm_bytes").as_int64();
    lines.push_back(t);
  }
  return lines;
}

const std::string kArgs =
    " train configs/quickstart.yaml --set data.source=synthetic --set model.d_model=64"
    " --set model.n_layers=2 --set model.n_heads=4 --set data.seq_len=64 --set train.steps=6"
    " --set train.warmup_steps=2 --set train.global_batch_size=8 --set train.micro_batch_size=2"
    " --set run.threads=1 --set checkpoint.every_steps=0 --set dist.bucket_cap_mb=0.05"
    " --set dist.first_bucket_mb=0.01 --set dist.check_params_every=1";

TEST(DdpCli, MetricsCarryCommTimeAndWorldSize) {
  const fs::path one = fresh_dir("np1"), two = fresh_dir("np2");
  const Result r1 = run(std::string(PFT_BIN) + kArgs + " --set run.dir=" + one.string());
  ASSERT_EQ(r1.code, 0) << r1.out;
  const Result r2 = run(std::string("PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 ") +
                        PFT_MPIRUN + " -np 2 " + PFT_BIN + kArgs + " --set run.dir=" + two.string());
  ASSERT_EQ(r2.code, 0) << r2.out;
  EXPECT_NE(r2.out.find("all-reduced in fp32 over mpi"), std::string::npos) << r2.out;
  const std::vector<TrainLine> a = train_lines(one / "metrics.jsonl"), b = train_lines(two / "metrics.jsonl");
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), 6u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].world_size, 1);
    EXPECT_EQ(b[i].world_size, 2);
    EXPECT_EQ(a[i].comm_time_s, 0.0) << "one rank has nothing to wait for";
    EXPECT_GT(b[i].comm_time_s, 0.0) << "two ranks wait for the all-reduces; step " << i + 1;
    EXPECT_NEAR(b[i].loss, a[i].loss, 1e-5 * a[i].loss) << "step " << i + 1;
    EXPECT_EQ(a[i].comm_bytes, 0) << "one rank sends nothing";
    EXPECT_GT(b[i].comm_bytes, 0) << "step " << i + 1;
  }
  fs::remove_all(one);
  fs::remove_all(two);
}

// dist.grad_comm_dtype: bf16 on 2 ranks: the desync detector (every step) finds the parameters
// bitwise identical on both ranks, so both applied the same gradients; the losses track the fp32
// run's (the first one bitwise: no update yet); half the bytes on the wire; the checkpoint
// records the key, and resuming it with fp32 is accepted (a communication choice, not part of
// the model).
TEST(DdpCli, Bf16GradientCommunication) {
  const fs::path fp32 = fresh_dir("fp32"), bf16 = fresh_dir("bf16");
  const std::string mpirun = std::string("PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 ") +
                             PFT_MPIRUN + " -np 2 " + PFT_BIN + kArgs;
  const Result r32 = run(mpirun + " --set train.steps=4 --set run.dir=" + fp32.string());
  ASSERT_EQ(r32.code, 0) << r32.out;
  const Result r16 = run(mpirun + " --set train.steps=4 --set dist.grad_comm_dtype=bf16"
                                  " --set checkpoint.every_steps=2 --set run.dir=" + bf16.string());
  ASSERT_EQ(r16.code, 0) << r16.out;
  EXPECT_NE(r16.out.find("sent as bf16 (reduce-scatter summed in fp32, all-gather) over mpi"),
            std::string::npos)
      << r16.out;
  const std::vector<TrainLine> a = train_lines(fp32 / "metrics.jsonl"),
                               b = train_lines(bf16 / "metrics.jsonl");
  ASSERT_EQ(a.size(), 4u);
  ASSERT_EQ(b.size(), 4u);
  EXPECT_EQ(b[0].loss, a[0].loss) << "step 1 runs before any update";
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_NEAR(b[i].loss, a[i].loss, 2e-3 * a[i].loss) << "step " << i + 1;
    const double ratio = static_cast<double>(b[i].comm_bytes) / static_cast<double>(a[i].comm_bytes);
    EXPECT_GT(ratio, 0.49) << "step " << i + 1;
    EXPECT_LT(ratio, 0.53) << "step " << i + 1 << ": bf16 should send about half the bytes";
  }
  // Resume the bf16 checkpoint with fp32 communication: accepted, the change logged.
  const Result resumed = run(mpirun + " --set train.steps=6 --set train.resume=auto"
                                      " --set checkpoint.every_steps=2 --set run.dir=" + bf16.string());
  ASSERT_EQ(resumed.code, 0) << resumed.out;
  EXPECT_NE(resumed.out.find("resume: config changed: dist.grad_comm_dtype: bf16 -> fp32"),
            std::string::npos)
      << resumed.out;
  fs::remove_all(fp32);
  fs::remove_all(bf16);
}

// Activation checkpointing (issue 20) under the reducer: the recomputed blocks' gradients reach
// the flat buffers through autograd's accumulation, so the bucket hooks still fire, over two
// micro-batches per rank (accumulation 2) and tiny buckets. `all` gives the losses of the run
// without it within 1e-6; every_k 2 with the chunked loss within 1e-5 (the chunked loss sums the
// output projection's gradient in another order).
TEST(DdpCli, CheckpointingAndChunkedLossKeepTheLosses) {
  const std::string np2 = std::string("PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 ") +
                          PFT_MPIRUN + " -np 2 " + PFT_BIN + kArgs + " --set train.loss_chunk_rows=0";
  const fs::path off = fresh_dir("ckpt-off"), all = fresh_dir("ckpt-all"), k2 = fresh_dir("ckpt-k2");
  const Result r0 = run(np2 + " --set train.activation_checkpointing=none --set run.dir=" + off.string());
  ASSERT_EQ(r0.code, 0) << r0.out;
  const Result r1 = run(np2 + " --set train.activation_checkpointing=all --set run.dir=" + all.string());
  ASSERT_EQ(r1.code, 0) << r1.out;
  const Result r2 = run(np2 + " --set train.activation_checkpointing=every_k:2"
                              " --set train.loss_chunk_rows=50 --set run.dir=" + k2.string());
  ASSERT_EQ(r2.code, 0) << r2.out;
  const std::vector<TrainLine> a = train_lines(off / "metrics.jsonl"),
                               b = train_lines(all / "metrics.jsonl"),
                               c = train_lines(k2 / "metrics.jsonl");
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), 6u);
  ASSERT_EQ(c.size(), 6u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_NEAR(b[i].loss, a[i].loss, 1e-6 * a[i].loss) << "step " << i + 1;
    EXPECT_NEAR(c[i].loss, a[i].loss, 1e-5 * a[i].loss) << "step " << i + 1;
  }
  EXPECT_GT(a.front().loss - a.back().loss, 0.0) << "the runs did not train";
  fs::remove_all(off);
  fs::remove_all(all);
  fs::remove_all(k2);
}

}  // namespace
