// The plan log end to end (control/plan_log.h, Note [plan log]): `pft train` on the bundled tasks
// under pft-mpirun, reading what it wrote.
//   - a checkpoint's plan data does not grow with the run: the /controller/plan datasets of a
//     tiny run's checkpoints at step 50 and step 500 are the same size (the steps since the
//     previous save), while plan.jsonl holds all 500 steps, consistent with every window;
//   - every rank SIGKILLed between saves and the run resumed with train.resume: auto: plan.jsonl
//     holds every step exactly once and equals the uninterrupted run's, byte for byte.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <boost/json/parse.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ckpt/reader.h"
#include "control/plan_log.h"
#include "run_command.h"

namespace {
namespace fs = std::filesystem;

const std::string kPft = PFT_BIN;
const std::string kMpirun =
    std::string("PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 ") + PFT_MPIRUN;
using pft::test::Result;
using pft::test::run;

fs::path scratch(const std::string& tag) {
  static int counter = 0;
  const fs::path d = fs::temp_directory_path() / ("pft-planlog-" + tag + "-" +
                                                  std::to_string(getpid()) + "-" +
                                                  std::to_string(counter++));
  fs::remove_all(d);
  return d;
}

// A tiny GPT-2 on the quickstart tasks: `steps` steps of 8 sequences of 64 tokens, evaluated only
// at the start and the end, a checkpoint every `every` steps.
std::string train_cmd(int np, const fs::path& dir, int steps, int every, const std::string& extra) {
  return kMpirun + " -np " + std::to_string(np) + " " + kPft +
         " train configs/quickstart.yaml --set model.d_model=64 --set model.n_layers=2"
         " --set model.n_heads=4 --set data.seq_len=64 --set train.steps=" +
         std::to_string(steps) +
         " --set train.warmup_steps=2 --set train.global_batch_size=8"
         " --set train.micro_batch_size=2 --set run.threads=1 --set run.log_every=50"
         " --set eval.every_steps=0 --set eval.max_batches=1 --set checkpoint.every_steps=" +
         std::to_string(every) + " --set run.dir=" + dir.string() + " " + extra;
}

fs::path checkpoint(const fs::path& dir, int step) {
  char name[32];
  std::snprintf(name, sizeof name, "step_%08d.h5", step);
  return dir / "checkpoints" / name;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The plan window of a checkpoint, as the trainer reads it back, and its size in bytes.
struct Window {
  pft::PlanLog log;
  int64_t bytes = 0;
};
Window window_of(const fs::path& file) {
  const pft::ckpt::Contents c = pft::ckpt::read_checkpoint(file);
  Window w;
  const auto take = [&](const char* name, auto& out) {
    const pft::ckpt::Dataset& d = c.at(std::string("/controller/plan/") + name);
    out.resize(d.bytes.size() / sizeof(out[0]));
    std::memcpy(out.data(), d.bytes.data(), d.bytes.size());
    w.bytes += static_cast<int64_t>(d.bytes.size());
  };
  take("step", w.log.step);
  take("phase", w.log.phase);
  take("world_size", w.log.world_size);
  take("slot_task", w.log.slot_task);
  take("slot_documents", w.log.slot_docs);
  take("doc_example", w.log.doc_example);
  take("doc_template", w.log.doc_template);
  const pft::ckpt::Attrs& a = c.group_attrs("/controller/plan");
  w.log.slots = std::get<int64_t>(a.at("slots"));
  w.log.first_step = std::get<int64_t>(a.at("first_step"));
  EXPECT_EQ(std::get<int64_t>(c.group_attrs("/controller").at("version")), 2);
  return w;
}

std::vector<pft::PlanRecord> slice(const std::vector<pft::PlanRecord>& all, int64_t from,
                                   int64_t to) {
  std::vector<pft::PlanRecord> out;
  for (const pft::PlanRecord& r : all)
    if (r.step >= from && r.step < to) out.push_back(r);
  return out;
}

TEST(PlanLogCli, CheckpointPlanDataDoesNotGrowWithTheRun) {
  const fs::path dir = scratch("bounded");
  const Result r = run(train_cmd(1, dir, 500, 10, "--set checkpoint.keep_last=100"));
  ASSERT_EQ(r.code, 0) << r.out;
  const Window w50 = window_of(checkpoint(dir, 50)), w500 = window_of(checkpoint(dir, 500));
  // The steps since the previous save, at either end of the run.
  EXPECT_EQ(w50.log.first_step, 40);
  EXPECT_EQ(w500.log.first_step, 490);
  EXPECT_EQ(w50.log.step.size(), 10u);
  EXPECT_EQ(w500.log.step.size(), 10u);
  // The same size up to how many documents the steps packed (a 10 times longer log would be 10
  // times larger).
  std::cout << "plan bytes in the checkpoint: step 50: " << w50.bytes << ", step 500: " << w500.bytes
            << "; checkpoint files: " << fs::file_size(checkpoint(dir, 50)) << " and "
            << fs::file_size(checkpoint(dir, 500)) << " bytes; plan.jsonl "
            << fs::file_size(dir / "plan.jsonl") << " bytes\n";
  EXPECT_LT(w500.bytes, w50.bytes * 3 / 2);
  EXPECT_GT(w500.bytes, w50.bytes * 2 / 3);
  // plan.jsonl: every step once, in order, and each window is its records.
  const std::vector<pft::PlanRecord> all = pft::read_plan_file(dir / "plan.jsonl");
  ASSERT_EQ(all.size(), 500u);
  for (size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i].step, static_cast<int64_t>(i));
  EXPECT_EQ(pft::to_records(w50.log), slice(all, 40, 50));
  EXPECT_EQ(pft::to_records(w500.log), slice(all, 490, 500));
  for (const pft::PlanRecord& rec : all) {
    ASSERT_EQ(rec.slot_task.size(), 4u);  // 8 sequences / 2 per micro-batch
    for (const std::vector<int32_t>& docs : rec.doc_example) ASSERT_FALSE(docs.empty());
  }
  fs::remove_all(dir);
}

// The last "train" step metrics.jsonl holds.
int64_t last_step(const fs::path& dir) {
  std::ifstream in(dir / "metrics.jsonl");
  int64_t last = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line.back() != '}') continue;  // a line being written
    const boost::json::object rec = boost::json::parse(line).as_object();
    if (rec.at("kind").as_string() == "train") last = rec.at("step").as_int64();
  }
  return last;
}

// The step of the last "resume" record of metrics.jsonl (0: none).
int64_t last_resume(const fs::path& dir) {
  std::ifstream in(dir / "metrics.jsonl");
  int64_t from = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line.back() != '}') continue;
    const boost::json::object rec = boost::json::parse(line).as_object();
    if (rec.at("kind").as_string() == "resume") from = rec.at("step").as_int64();
  }
  return from;
}

TEST(PlanLogCli, SigkillAndResumeLeaveEveryStepOnce) {
  constexpr int kSteps = 40, kEvery = 5;
  const fs::path ref = scratch("ref"), killed = scratch("killed");
  const Result a = run(train_cmd(2, ref, kSteps, kEvery, ""));
  ASSERT_EQ(a.code, 0) << a.out;

  // Kill every process of the run at a random step between two saves (3 steps after one at
  // least, so plan.jsonl has lines the resumed run trains again).
  std::mt19937 rng(
      static_cast<unsigned>(std::chrono::system_clock::now().time_since_epoch().count()));
  const int64_t kill_at = 13 + static_cast<int64_t>(rng() % 20);  // 13..32
  std::cout << "killing every rank at step >= " << kill_at << "\n";
  pft::test::sigkill_job_when(train_cmd(2, killed, kSteps, kEvery, ""), killed.string() + ".log",
                              killed.string(), [&] { return last_step(killed) >= kill_at; });
  const int64_t killed_at = last_step(killed);
  ASSERT_GE(killed_at, kill_at) << "the run never reached step " << kill_at;
  ASSERT_LT(killed_at, kSteps) << "the run finished before it was killed";
  const std::string left = read_text(killed / "plan.jsonl");
  const size_t lines = static_cast<size_t>(std::count(left.begin(), left.end(), '\n'));
  std::cout << "killed after step " << killed_at << "; plan.jsonl had " << lines
            << " complete line(s)\n";
  // Lines up to the step that was running are written (the next one starts, or a save).
  EXPECT_GE(lines, static_cast<size_t>(killed_at - 1));

  const Result b = run(train_cmd(2, killed, kSteps, kEvery, "--set train.resume=auto"));
  ASSERT_EQ(b.code, 0) << b.out;
  ASSERT_NE(b.out.find("resume: from"), std::string::npos) << b.out;
  // The lines after the checkpoint it resumed from are dropped (and trained again).
  const int64_t from = last_resume(killed);
  ASSERT_GT(from, 0) << b.out;
  if (lines > static_cast<size_t>(from)) {
    EXPECT_NE(b.out.find(std::to_string(lines - static_cast<size_t>(from)) +
                         " line(s) after step " + std::to_string(from - 1) + " are dropped"),
              std::string::npos)
        << b.out;
  }
  const std::vector<pft::PlanRecord> pa = pft::read_plan_file(ref / "plan.jsonl"),
                                     pb = pft::read_plan_file(killed / "plan.jsonl");
  ASSERT_EQ(pa.size(), static_cast<size_t>(kSteps));
  for (size_t i = 0; i < pa.size(); ++i) ASSERT_EQ(pa[i].step, static_cast<int64_t>(i));
  EXPECT_EQ(pb, pa);
  EXPECT_EQ(read_text(killed / "plan.jsonl"), read_text(ref / "plan.jsonl"));
  fs::remove_all(ref);
  fs::remove_all(killed);
  fs::remove(killed.string() + ".log");
}

}  // namespace
