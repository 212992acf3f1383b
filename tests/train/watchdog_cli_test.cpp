// The watchdog, end to end under mpirun (2 cores: oversubscribed), the bundled tasks:
//   - SIGSTOP of one rank mid-run: the others' next collective misses dist.timeout_s (5 s); they
//     report the operation, their rank and host, the deadline, the step and the tasks in flight,
//     and the job ends with exit 3
//     within the deadline + 10 s, leaving no process behind (the stopped rank included);
//   - SIGKILL of one rank: mpirun ends the job within 10 s, naming the killed rank; no orphans;
//   - one rank of 2 hanging inside a checkpoint save, or inside the data store preparation
//     (the PFT_TEST_STALL test hook, core/test_hooks.h): the job ends with exit 3 about
//     dist.timeout_s after the stall, naming the step; no orphans.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Pids of the processes whose command line mentions `needle` and starts with `prefix`.
std::vector<pid_t> pids_of(const std::string& needle, const std::string& prefix = "") {
  std::vector<pid_t> out;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream f(e.path() / "cmdline", std::ios::binary);
    const std::string cmd((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (cmd.find(needle) != std::string::npos && cmd.rfind(prefix, 0) == 0 &&
        std::stoi(name) != getpid())
      out.push_back(std::stoi(name));
  }
  std::sort(out.begin(), out.end());
  return out;
}

int64_t last_step(const fs::path& metrics) {
  std::ifstream in(metrics);
  int64_t step = 0;
  for (std::string line; std::getline(in, line);)
    if (line.find("\"kind\":\"train\"") != std::string::npos) ++step;
  return step;
}

struct Outcome {
  int code = -1;
  double seconds_after_trigger = 0.0;  // from the signal, or from the stall hook's line
  std::string log;
  bool orphans = false;
};

bool file_contains(const fs::path& file, const std::string& needle) {
  std::ifstream in(file);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return text.find(needle) != std::string::npos;
}

// A training job under mpirun -np `np` (oversubscribed, loopback), dist.timeout_s = 5, with
// `env` before the command and `args` after it; output to <dir>.log. global_batch_size: 4 rows
// per rank (micro_batch_size 4).
struct Job {
  std::string tag;
  int np = 3;
  std::string env;
  std::string args;
};

// Starts `job`, waits until `trigger(dir, log)` returns true (it may act, e.g. send a signal),
// then waits for the job to end (killing it after 60 s: a hang fails the test, never the run).
template <class Trigger>
Outcome run_job(const Job& job, Trigger trigger) {
  const fs::path dir =
      fs::temp_directory_path() / ("pft-watchdog-" + job.tag + "-" + std::to_string(getpid()));
  fs::remove_all(dir);
  const fs::path log = dir.string() + ".log";
  const std::string cmd =
      "PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 " + job.env + " " + PFT_MPIRUN +
      " -np " + std::to_string(job.np) + " " + PFT_BIN +
      " train configs/quickstart.yaml --set model.d_model=64"
      " --set data.seq_len=64 --set eval.every_steps=0 --set train.global_batch_size=" +
      std::to_string(4 * job.np) + " --set run.threads=1 --set dist.timeout_s=5 " + job.args +
      " --set run.dir=" +
      dir.string() + " > " + log.string() + " 2>&1";
  const pid_t child = fork();
  if (child == 0) {
    setpgid(0, 0);
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  Outcome o;
  int status = 0;
  bool ended = false;
  const auto start_deadline = Clock::now() + std::chrono::seconds(120);
  while (!trigger(dir, log) && Clock::now() < start_deadline) {
    if (waitpid(child, &status, WNOHANG) == child) {  // ended before the trigger: a failure
      ended = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const Clock::time_point triggered = Clock::now();
  while (!ended && waitpid(child, &status, WNOHANG) == 0) {
    if (Clock::now() - triggered > std::chrono::seconds(60)) {  // hung: clean up, then fail
      for (pid_t p : pids_of(dir.string())) kill(p, SIGKILL);
      kill(-child, SIGKILL);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  o.seconds_after_trigger = std::chrono::duration<double>(Clock::now() - triggered).count();
  EXPECT_FALSE(ended) << "the job ended before the test's trigger";
  o.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  o.orphans = !pids_of(dir.string()).empty();
  for (pid_t p : pids_of(dir.string())) kill(p, SIGKILL);
  std::ifstream in(log);
  o.log.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  fs::remove_all(dir);
  fs::remove(log);
  return o;
}

// Starts the job, waits for step 5, sends `sig` to the rank pids[1], waits for the end.
Outcome run_and_signal(const std::string& tag, int sig) {
  const Job job{tag, 3, "", "--set checkpoint.every_steps=0 --set train.steps=2000"};
  return run_job(job, [&](const fs::path& dir, const fs::path&) {
    if (last_step(dir / "metrics.jsonl") < 5) return false;
    const std::vector<pid_t> ranks = pids_of("run.dir=" + dir.string(), PFT_BIN);
    EXPECT_EQ(ranks.size(), 3u) << "expected 3 ranks running";
    if (ranks.size() == 3) kill(ranks[1], sig);
    return true;
  });
}

// Runs a job whose rank `rank` stalls at test hook point `point` (PFT_TEST_STALL,
// core/test_hooks.h); the clock starts when the hook says the rank stalls.
Outcome run_with_stall(const std::string& point, int rank, const std::string& args) {
  const std::string spec = point + ":rank" + std::to_string(rank);
  const Job job{"stall-" + point, 2, "PFT_TEST_STALL=" + spec, args};
  const std::string line =
      "test hook PFT_TEST_STALL: rank " + std::to_string(rank) + " stalls in " + point;
  return run_job(job,
                 [&](const fs::path&, const fs::path& log) { return file_contains(log, line); });
}

TEST(WatchdogCli, StoppedRankEndsTheJobWithinTheDeadline) {
  const Outcome o = run_and_signal("stop", SIGSTOP);
  std::cout << "SIGSTOP: job ended " << o.seconds_after_trigger << " s after the signal, exit "
            << o.code << "\n";
  EXPECT_EQ(o.code, 3) << o.log;
  EXPECT_LT(o.seconds_after_trigger, 5.0 + 10.0) << o.log;
  EXPECT_NE(o.log.find("did not complete within the deadline of 5 s"), std::string::npos) << o.log;
  EXPECT_NE(o.log.find("(host "), std::string::npos) << o.log;
  // The step and the tasks it was training (the controller's plan of that step).
  EXPECT_NE(o.log.find("(tasks in flight: "), std::string::npos) << o.log;
  EXPECT_FALSE(o.orphans);
}

TEST(WatchdogCli, KilledRankEndsTheJob) {
  const Outcome o = run_and_signal("kill", SIGKILL);
  std::cout << "SIGKILL: job ended " << o.seconds_after_trigger << " s after the signal, exit "
            << o.code << "\n";
  EXPECT_NE(o.code, 0) << o.log;
  EXPECT_LT(o.seconds_after_trigger, 10.0) << o.log;
  EXPECT_NE(o.log.find("exited on signal 9"), std::string::npos) << o.log;
  EXPECT_FALSE(o.orphans);
}

// Issue 15: the waits outside the training step have the deadline too. Rank 1 stalls inside the
// checkpoint save of step 3 (rank 0 writes, then waits in agree() for every rank's outcome): the
// job ends with exit 3 about dist.timeout_s after the stall, naming the save, no orphans.
TEST(WatchdogCli, StallInsideCheckpointSaveEndsTheJobWithinTheDeadline) {
  const Outcome o = run_with_stall("ckpt_save", 1,
                                   "--set checkpoint.every_steps=3 --set train.steps=50");
  std::cout << "stall in ckpt_save: job ended " << o.seconds_after_trigger
            << " s after the stall (dist.timeout_s 5), exit " << o.code << "\n";
  EXPECT_EQ(o.code, 3) << o.log;
  EXPECT_GT(o.seconds_after_trigger, 5.0 - 1.0) << o.log;  // the deadline, not something else
  EXPECT_LT(o.seconds_after_trigger, 5.0 + 10.0) << o.log;
  EXPECT_NE(o.log.find("checkpoint save at step 3 (rank 0 writes) on rank 0 of 2"),
            std::string::npos) << o.log;
  EXPECT_NE(o.log.find("did not complete within the deadline of 5 s"), std::string::npos) << o.log;
  EXPECT_FALSE(o.orphans);
}

// Rank 0 stalls inside the data store preparation at start-up (where it builds the stores while
// the others wait): rank 1 ends the job about dist.timeout_s later, naming the step.
TEST(WatchdogCli, StallInsideStorePreparationEndsTheJobWithinTheDeadline) {
  const Outcome o = run_with_stall("store_prepare", 0, "--set train.steps=50");
  std::cout << "stall in store_prepare: job ended " << o.seconds_after_trigger
            << " s after the stall (dist.timeout_s 5), exit " << o.code << "\n";
  EXPECT_EQ(o.code, 3) << o.log;
  EXPECT_GT(o.seconds_after_trigger, 5.0 - 1.0) << o.log;
  EXPECT_LT(o.seconds_after_trigger, 5.0 + 10.0) << o.log;
  EXPECT_NE(o.log.find("data store preparation (world rank 0 builds the stores) on rank 1 of 2"),
            std::string::npos) << o.log;
  EXPECT_NE(o.log.find("did not complete within the deadline of 5 s"), std::string::npos) << o.log;
  EXPECT_FALSE(o.orphans);
}

}  // namespace
