// `pft sweep run` resumed (docs/sweeps.md, "Resume"): the whole sweep killed with SIGKILL while
// one trial has finished and the next has checkpointed; the same command then finishes it
// without running the finished trial again and resumes the interrupted one from its checkpoint.
// A rerun whose sweep file or base config changed is refused, and so is a second sweep in a
// directory another one holds.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "run_command.h"

namespace {
namespace fs = std::filesystem;
namespace json = boost::json;

using pft::test::Result;
using pft::test::run;

const std::string kPft = PFT_BIN;
const fs::path kRoot = PFT_SOURCE_ROOT;

fs::path scratch(const std::string& tag) {
  const fs::path d = fs::temp_directory_path() /
                     ("pft-sweep-" + tag + "-" + std::to_string(getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::vector<json::object> jsonl(const fs::path& path, const std::string& kind = "") {
  std::vector<json::object> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    json::error_code ec;
    json::value v = json::parse(line, ec);
    if (ec) continue;  // a line cut by the kill
    json::object o = v.as_object();
    if (kind.empty() || o.at("kind").as_string() == kind) out.push_back(std::move(o));
  }
  return out;
}

size_t events(const fs::path& dir, const std::string& kind, const std::string& trial) {
  size_t n = 0;
  for (const json::object& e : jsonl(dir / "sweep.jsonl", kind))
    n += e.contains("trial") && e.at("trial").as_string() == trial;
  return n;
}

TEST(SweepResume, KilledSweepResumesWithoutRerunningFinishedTrials) {
  const fs::path d = scratch("resume");
  // The base config is a copy, so the test can change it later.
  fs::copy_file(kRoot / "tests/sweep/tiny.yaml", d / "base.yaml");
  {
    // tiny.yaml names its tasks relative to itself.
    std::ifstream in(d / "base.yaml");
    std::stringstream s;
    s << in.rdbuf();
    std::string text = s.str();
    for (size_t p; (p = text.find("../../datasets/")) != std::string::npos;)
      text.replace(p, 15, (kRoot / "datasets").string() + "/");
    std::ofstream(d / "base.yaml") << text;
  }
  const std::string sweep_text =
      "base: base.yaml\n"
      "parameters:\n"
      "  train.lr: [3.0e-3, 2.0e-3, 1.0e-3]\n"
      "objective: {metric: eval.loss}\n";
  std::ofstream(d / "sweep.yaml") << sweep_text;
  const fs::path out = d / "out";
  // Slow steps (0.25 s each, 12 steps, a checkpoint every 4) leave time to kill mid-trial.
  const std::string cmd = "PFT_TEST_DELAY=step:0.25 " + kPft + " sweep run " +
                          (d / "sweep.yaml").string() + " --dir " + out.string();
  const bool reached = pft::test::sigkill_job_when(cmd, (d / "killed.log").string(), out.string(), [&] {
    return events(out, "finished", "t000") == 1 &&
           fs::exists(out / "trials/t001/checkpoints/step_00000004.h5");
  });
  ASSERT_TRUE(reached) << "the sweep never got to t001's first checkpoint";
  ASSERT_EQ(events(out, "finished", "t001"), 0u) << "t001 finished before the kill";
  ASSERT_EQ(events(out, "started", "t002"), 0u);

  // status of the killed sweep: t000 finished, t001 interrupted (nobody runs it), t002 pending.
  Result s = run(kPft + " sweep status " + out.string());
  ASSERT_EQ(s.code, 0) << s.out;
  EXPECT_NE(s.out.find("t000"), std::string::npos);
  EXPECT_NE(s.out.find("interrupted"), std::string::npos) << s.out;
  EXPECT_NE(s.out.find("pending"), std::string::npos) << s.out;

  const Result r = run(kPft + " sweep run " + (d / "sweep.yaml").string() + " --dir " + out.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("2 to run, 1 ended before"), std::string::npos) << r.out;
  // t000 ran once: one `started` event, one `start` record in its run.
  EXPECT_EQ(events(out, "started", "t000"), 1u);
  EXPECT_EQ(jsonl(out / "trials/t000/metrics.jsonl", "start").size(), 1u);
  // t001 was resumed from a checkpoint, not restarted.
  EXPECT_EQ(events(out, "started", "t001"), 2u);
  const std::vector<json::object> resumes = jsonl(out / "trials/t001/metrics.jsonl", "resume");
  ASSERT_EQ(resumes.size(), 1u);
  EXPECT_GE(resumes[0].at("step").as_int64(), 4);
  // Every trial finished exactly once.
  for (const char* id : {"t000", "t001", "t002"}) EXPECT_EQ(events(out, "finished", id), 1u) << id;
  EXPECT_TRUE(fs::exists(out / "best.yaml"));

  // The same sweep with another value is another sweep: refused, nothing run.
  std::ofstream(d / "sweep.yaml") << "base: base.yaml\nparameters:\n  train.lr: [3.0e-3, 2.0e-3, 5.0e-4]\n"
                                     "objective: {metric: eval.loss}\n";
  Result again = run(kPft + " sweep run " + (d / "sweep.yaml").string() + " --dir " + out.string());
  EXPECT_EQ(again.code, 2) << again.out;
  EXPECT_NE(again.out.find("sweep directory " + out.string() + " holds another sweep"),
            std::string::npos) << again.out;
  // So is the same sweep file over a changed base config.
  std::ofstream(d / "sweep.yaml") << sweep_text;
  {
    std::ifstream in(d / "base.yaml");
    std::stringstream text;
    text << in.rdbuf();
    std::string edited = text.str();
    edited.replace(edited.find("log_every: 4"), 12, "log_every: 3");
    std::ofstream(d / "base.yaml") << edited;
  }
  again = run(kPft + " sweep run " + (d / "sweep.yaml").string() + " --dir " + out.string());
  EXPECT_EQ(again.code, 2) << again.out;
  EXPECT_NE(again.out.find("holds another sweep"), std::string::npos) << again.out;
  EXPECT_EQ(jsonl(out / "sweep.jsonl", "started").size(), 4u);
}

TEST(SweepResume, ASecondSweepInTheSameDirectoryIsRefused) {
  const fs::path d = scratch("lock");
  std::ofstream(d / "sweep.yaml") << "base: " << (kRoot / "tests/sweep/tiny.yaml").string()
                                  << "\nobjective: {metric: eval.loss}\n";
  fs::create_directories(d / "out");
  // Another process holds the directory's lock (as a running `pft sweep run` does).
  const Result r = run("flock " + (d / "out/run.lock").string() + " sleep 4 > /dev/null 2>&1 & "
                       "sleep 1; " + kPft + " sweep run " + (d / "sweep.yaml").string() +
                       " --dir " + (d / "out").string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("sweep directory " + (d / "out").string() + " is in use by another "
                       "`pft sweep run`"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(d / "out/sweep.jsonl"));
}

}  // namespace
