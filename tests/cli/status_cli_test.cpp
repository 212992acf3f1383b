// `pft status RUN_DIR` on real run directories (2-rank `pft train` on the bundled tasks under
// pft-mpirun, an adaptive schedule, evaluations and checkpoints):
//   - a job that is running: state running (exit 0), its step, ETA, tok/s, the lock's holder
//     alive; the same job stopped (SIGSTOP: a hung job) is stalled past --stall-after (exit 1);
//     killed with SIGKILL in mid-run, it is failed (exit 3: the holder's process is gone);
//   - a finished run (exit 0): the last step, evaluation, phase, mixture and checkpoint are those
//     of its metrics.jsonl and checkpoints/latest; the default stall deadline follows the rule;
//   - preempted (SIGUSR1: checkpoint, exit 75): exit 75 until the resumed run finishes;
//   - a directory that is not a run: exit 2 naming it.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "run_command.h"

namespace {
namespace fs = std::filesystem;
namespace json = boost::json;
using pft::test::Result;
using pft::test::run;

const std::string kPft = PFT_BIN;
const std::string kMpirun =
    std::string("PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 ") + PFT_MPIRUN;

fs::path scratch(const std::string& tag) {
  const fs::path d =
      fs::temp_directory_path() / ("pft-status-" + tag + "-" + std::to_string(getpid()));
  fs::remove_all(d);
  return d;
}

std::string train_cmd(const fs::path& dir, int steps, const std::string& extra = "") {
  return kMpirun + " -np 2 " + kPft +
         " train configs/quickstart.yaml --set model.d_model=64 --set model.n_layers=2"
         " --set model.n_heads=4 --set data.seq_len=64 --set train.steps=" +
         std::to_string(steps) +
         " --set train.warmup_steps=2 --set train.lr=3e-3 --set train.global_batch_size=12"
         " --set train.micro_batch_size=2 --set run.threads=1 --set run.log_every=1"
         " --set eval.max_batches=1 --set eval.every_steps=4 --set checkpoint.every_steps=4"
         " --set 'schedule.phases=[{name: warm, mixing: uniform, steps: 4}, {name: ada, mixing:"
         " adaptive, adaptive_metric: loss, adaptive_smoothing: 0.3}]' --set run.dir=" +
         dir.string() + " " + extra;
}

std::vector<json::object> records(const fs::path& dir) {
  std::vector<json::object> out;
  std::ifstream in(dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    boost::system::error_code ec;
    json::value v = json::parse(line, ec);
    if (!ec) out.push_back(v.as_object());
  }
  return out;
}

std::vector<json::object> of_kind(const fs::path& dir, const std::string& kind) {
  std::vector<json::object> out;
  for (json::object& r : records(dir))
    if (r.at("kind").as_string() == kind) out.push_back(std::move(r));
  return out;
}

// `pft status --json`: its exit code and the object.
struct Status {
  int code = -1;
  json::object o;
  std::string out;
};
Status pft_status(const fs::path& dir, const std::string& extra = "") {
  Status s;
  const Result r = run(kPft + " status --json " + dir.string() + " " + extra + " 2>/dev/null");
  s.code = r.code;
  s.out = r.out;
  boost::system::error_code ec;
  json::value v = json::parse(r.out, ec);
  if (!ec && v.is_object()) s.o = v.as_object();
  return s;
}

TEST(StatusCli, RunningThenStalledThenKilled) {
  const fs::path dir = scratch("live");
  const std::string log =
      (fs::temp_directory_path() / ("pft-status-live-" + std::to_string(getpid()) + ".log"))
          .string();
  // Slow steps (0.3 s each) so that the job is still running while it is looked at.
  const std::string cmd = "PFT_TEST_DELAY=step:0.3 " + train_cmd(dir, 400);
  Status running, stalled;
  double stall_rule = 0;
  const bool reached = pft::test::sigkill_job_when(cmd, log, dir.string(), [&] {
    if (of_kind(dir, "train").size() < 6) return false;
    running = pft_status(dir);
    // What the default deadline must be: 5 x the longest gap between step records, >= 120 s.
    const std::vector<json::object> steps = of_kind(dir, "train");
    double gap = 0;
    // (Only the steps `pft status` saw: a slow one may have answered before later records.)
    const int64_t seen = running.o.at("step").as_int64();
    for (size_t i = 1; i < steps.size() && steps[i].at("step").as_int64() <= seen; ++i)
      gap = std::max(gap, steps[i].at("time").to_number<double>() -
                              steps[i - 1].at("time").to_number<double>());
    stall_rule = std::max(120.0, 5 * gap);
    // A hung job: every process of it stopped; its step records stop coming.
    for (pid_t p : pft::test::pids_mentioning(dir.string())) kill(p, SIGSTOP);
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    stalled = pft_status(dir, "--stall-after 2");
    return true;
  });
  ASSERT_TRUE(reached) << "the job never wrote 6 steps";

  EXPECT_EQ(running.code, 0) << running.out;
  EXPECT_EQ(running.o.at("state").as_string(), "running") << running.out;
  EXPECT_GE(running.o.at("step").as_int64(), 6) << running.out;
  EXPECT_EQ(running.o.at("total_steps").as_int64(), 400) << running.out;
  EXPECT_EQ(running.o.at("world_size").as_int64(), 2) << running.out;
  EXPECT_GT(running.o.at("tokens_per_s").to_number<double>(), 0) << running.out;
  // ETA: the remaining steps at the recent pace (>= the 0.3 s of each step's delay).
  const double eta = running.o.at("eta_s").to_number<double>();
  const double per_step = running.o.at("seconds_per_step").to_number<double>();
  EXPECT_GE(per_step, 0.3) << running.out;
  EXPECT_NEAR(eta, per_step * static_cast<double>(400 - running.o.at("step").as_int64()), 1e-6)
      << running.out;
  EXPECT_LT(running.o.at("last_step_age_s").to_number<double>(), 30) << running.out;
  // After a step with an evaluation and a save due (every 4th), at least 30 minutes
  // (StatusCli.AnEvaluationDueIsNotAStall); `pft status` sees one when it starts slowly.
  if (running.o.at("step").as_int64() % 4 == 0) stall_rule = std::max(stall_rule, 1800.0);
  EXPECT_NEAR(running.o.at("stall_after_s").to_number<double>(), stall_rule, 0.5) << running.out;
  EXPECT_EQ(running.o.at("lock").at("process").as_string(), "alive") << running.out;
  EXPECT_EQ(running.o.at("phase").at("name").as_string(), "ada") << running.out;
  EXPECT_TRUE(running.o.contains("mixture")) << running.out;
  // The last evaluation and checkpoint (every 4 steps) at or before the step it saw: step 4
  // when `pft status` answers at once, a later one when it starts slowly (the ASan build).
  for (const char* k : {"last_eval", "checkpoint"}) {
    const int64_t at = running.o.at(k).at("step").as_int64();
    EXPECT_TRUE(at >= 4 && at % 4 == 0 && at <= running.o.at("step").as_int64())
        << k << " at step " << at << ": " << running.out;
  }

  EXPECT_EQ(stalled.code, 1) << stalled.out;
  EXPECT_EQ(stalled.o.at("state").as_string(), "stalled") << stalled.out;
  EXPECT_GE(stalled.o.at("last_step_age_s").to_number<double>(), 2.0) << stalled.out;

  // Killed in mid-run: no end record, and the lock's holder (rank 0, this host) is gone.
  const Status killed = pft_status(dir);
  EXPECT_EQ(killed.code, 3) << killed.out;
  EXPECT_EQ(killed.o.at("state").as_string(), "failed") << killed.out;
  EXPECT_EQ(killed.o.at("lock").at("process").as_string(), "gone") << killed.out;
  EXPECT_FALSE(killed.o.contains("eta_s")) << killed.out;
  // The text form says the same.
  const Result text = run(kPft + " status " + dir.string());
  EXPECT_EQ(text.code, 3) << text.out;
  EXPECT_CONTAINS(text.out, ": failed (its process (pid ");
  EXPECT_CONTAINS(text.out, "lock: stale: pid ");
  fs::remove_all(dir);
  fs::remove(log);
}

TEST(StatusCli, FinishedRunMatchesItsFiles) {
  const fs::path dir = scratch("done");
  const Result r = run(train_cmd(dir, 10));
  ASSERT_EQ(r.code, 0) << r.out;
  const Status s = pft_status(dir);
  EXPECT_EQ(s.code, 0) << s.out;
  EXPECT_EQ(s.o.at("state").as_string(), "finished") << s.out;
  EXPECT_EQ(s.o.at("step").as_int64(), 10);
  EXPECT_EQ(s.o.at("total_steps").as_int64(), 10);
  EXPECT_FALSE(s.o.contains("eta_s")) << s.out;
  EXPECT_EQ(s.o.at("lock").at("process").as_string(), "released") << s.out;
  // The last train record's loss; the last evaluation's per-task losses; phase and mixture.
  EXPECT_EQ(s.o.at("loss").to_number<double>(),
            of_kind(dir, "train").back().at("loss").to_number<double>());
  const json::object& eval = s.o.at("last_eval").as_object();
  EXPECT_EQ(eval.at("step").as_int64(), 10);
  int tasks = 0;
  for (const json::object& e : of_kind(dir, "eval")) {
    if (!e.at("template").is_string() || e.at("step").as_int64() != 10) continue;
    ++tasks;
    EXPECT_EQ(eval.at("tasks").at(e.at("task").as_string()).at("loss").to_number<double>(),
              e.at("loss").to_number<double>());
  }
  EXPECT_EQ(tasks, 7);
  EXPECT_EQ(eval.at("tasks").as_object().size(), 7u);
  const json::object last_mixture = of_kind(dir, "mixture").back();
  EXPECT_EQ(s.o.at("mixture").at("weights"), last_mixture.at("weights"));
  EXPECT_EQ(s.o.at("mixture").at("since_step"), last_mixture.at("step"));
  EXPECT_EQ(s.o.at("phase").at("name").as_string(), "ada");
  EXPECT_EQ(s.o.at("phase").at("index").as_int64(), 1);
  // The checkpoint `latest` names.
  std::ifstream latest(dir / "checkpoints" / "latest");
  std::string name;
  std::getline(latest, name);
  EXPECT_EQ(s.o.at("checkpoint").at("file").as_string(), (dir / "checkpoints" / name).string());
  EXPECT_EQ(s.o.at("checkpoint").at("step").as_int64(), 10);
  EXPECT_LT(s.o.at("checkpoint").at("age_s").to_number<double>(), 300);

  const Result text = run(kPft + " status " + dir.string());
  EXPECT_EQ(text.code, 0) << text.out;
  EXPECT_CONTAINS(text.out, ": finished\nstep 10/10 (100.0%)");
  EXPECT_CONTAINS(text.out, "phase: ada (index 1, since step 4)");
  EXPECT_CONTAINS(text.out, "last evaluation (step 10):\n  add ");
  EXPECT_CONTAINS(text.out, "checkpoint: " + (dir / "checkpoints" / name).string() + " (step 10");
  EXPECT_CONTAINS(text.out, "lock: released");
  fs::remove_all(dir);
}

// Preempted (SIGUSR1 to one rank: a checkpoint, exit 75): status exits 75 until the requeued job
// resumes; after the resumed run ends it is finished again.
TEST(StatusCli, PreemptedUntilResumedThenFinished) {
  const fs::path dir = scratch("preempted");
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    setpgid(0, 0);
    const std::string cmd =
        "PFT_TEST_DELAY=step:0.2 " + train_cmd(dir, 40) + " > " + dir.string() + ".log 2>&1";
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(240);
  while (of_kind(dir, "train").size() < 5 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  pid_t rank = -1;  // a process of this run whose command line starts with the pft binary
  for (pid_t p : pft::test::pids_mentioning(dir.string())) {
    std::ifstream f("/proc/" + std::to_string(p) + "/cmdline", std::ios::binary);
    std::string argv0;
    std::getline(f, argv0, '\0');
    if (argv0 == PFT_BIN) rank = p;
  }
  ASSERT_GT(rank, 0) << "no rank process found";
  ASSERT_EQ(kill(rank, SIGUSR1), 0);
  const int wait = pft::test::wait_child(child, std::chrono::seconds(240), "the SIGUSR1ed run");
  ASSERT_TRUE(wait >= 0 && WIFEXITED(wait) && WEXITSTATUS(wait) == 75);
  const int64_t at = of_kind(dir, "preempted").at(0).at("step").as_int64();

  const Status p = pft_status(dir);
  EXPECT_EQ(p.code, 75) << p.out;
  EXPECT_EQ(p.o.at("state").as_string(), "preempted") << p.out;
  EXPECT_CONTAINS(p.o.at("detail").as_string(), "SIGUSR1 at step " + std::to_string(at));
  EXPECT_EQ(p.o.at("checkpoint").at("step").as_int64(), at) << p.out;

  const Result resumed = run(train_cmd(dir, 40, "--set train.resume=auto"));
  ASSERT_EQ(resumed.code, 0) << resumed.out;
  const Status f = pft_status(dir);
  EXPECT_EQ(f.code, 0) << f.out;
  EXPECT_EQ(f.o.at("state").as_string(), "finished") << f.out;
  EXPECT_EQ(f.o.at("step").as_int64(), 40) << f.out;
  fs::remove_all(dir);
  fs::remove(dir.string() + ".log");
}

// A run whose loss went non-finite: metrics.jsonl writes it as null (core/run_dir.h). Status
// prints "nan" and --json keeps the null; neither is a crash (exit 3, "failed").
TEST(StatusCli, NonFiniteMetricsAreNanNotAFailure) {
  const fs::path dir = scratch("nan");
  fs::create_directories(dir);
  {
    std::ofstream m(dir / "metrics.jsonl");
    m << R"({"kind":"start","world_size":1,"steps":4,"method":"full","mixture":{"add":1E0},"time":1.7E9})" "\n"
      << R"({"kind":"eval","step":0,"task":"add","template":"all","loss":null,"exact_match":0E0,"time":1.7E9})" "\n"
      << R"({"kind":"train","step":1,"loss":null,"lr":1E-3,"tokens":64,"tokens_per_s":6.4E2,"step_time_s":1E-1,"time":1.7E9})" "\n"
      << R"({"kind":"end","step":1,"tokens_seen":64,"time":1.7E9})" "\n";
  }
  const Result human = run(kPft + " status " + dir.string());
  EXPECT_EQ(human.code, 0) << human.out;
  EXPECT_CONTAINS(human.out, "loss nan");
  EXPECT_CONTAINS(human.out, "  loss nan");  // the evaluation's
  const Status st = pft_status(dir);
  EXPECT_EQ(st.code, 0) << st.out;
  ASSERT_TRUE(st.o.contains("loss")) << st.out;
  EXPECT_TRUE(st.o.at("loss").is_null()) << st.out;
  fs::remove_all(dir);
}

// Note [stall deadline]: 200 s without a step after step 3 is a stall (steps 1 s apart); after
// step 4, where eval.every_steps: 4 puts an evaluation, it is not (the deadline is 30 minutes).
TEST(StatusCli, AnEvaluationDueIsNotAStall) {
  const fs::path dir = scratch("evaldue");
  fs::create_directories(dir);
  {
    std::ofstream c(dir / "config.resolved.yaml");
    c << "train:\n  steps: 100\neval:\n  every_steps: 4\ncheckpoint:\n  every_steps: 50\n";
  }
  const auto write = [&](int last_step, int total = 100) {
    const double t0 = std::chrono::duration<double>(
                          std::chrono::system_clock::now().time_since_epoch()).count() - 200.0 - last_step;
    std::ofstream m(dir / "metrics.jsonl");
    m << R"({"kind":"start","world_size":1,"steps":)" << total << R"(,"time":)" << std::to_string(t0)
      << "}\n";
    for (int s = 1; s <= last_step; ++s)
      m << R"({"kind":"train","step":)" << s
        << R"(,"loss":1.0,"tokens_per_s":10.0,"step_time_s":1.0,"time":)" << std::to_string(t0 + s)
        << "}\n";
  };
  write(3);
  Status st = pft_status(dir);
  EXPECT_EQ(st.code, 1) << st.out;
  EXPECT_EQ(st.o.at("state").as_string(), "stalled") << st.out;
  write(4);
  st = pft_status(dir);
  EXPECT_EQ(st.code, 0) << st.out;
  EXPECT_EQ(st.o.at("state").as_string(), "running") << st.out;
  EXPECT_EQ(st.o.at("stall_after_s").to_number<double>(), 1800.0) << st.out;
  // The last step (7 of 7) ends with the final evaluation and save, whatever every_steps says.
  {
    std::ofstream c(dir / "config.resolved.yaml");
    c << "train:\n  steps: 7\neval:\n  every_steps: 0\ncheckpoint:\n  every_steps: 0\n";
  }
  write(7, 7);
  st = pft_status(dir);
  EXPECT_EQ(st.o.at("state").as_string(), "running") << st.out;
  write(6, 7);
  st = pft_status(dir);
  EXPECT_EQ(st.o.at("state").as_string(), "stalled") << st.out;
  fs::remove_all(dir);
}

TEST(StatusCli, NotARunDirectoryIsBadInput) {
  const fs::path dir = scratch("empty");
  fs::create_directories(dir);
  const Result r = run(kPft + " status " + dir.string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_CONTAINS(r.out, "'" + dir.string() + "' is not a run directory (no metrics.jsonl)");
  const Result bad = run(kPft + " status " + dir.string() + " --stall-after -3");
  EXPECT_EQ(bad.code, 2) << bad.out;
  fs::remove_all(dir);
}

}  // namespace
