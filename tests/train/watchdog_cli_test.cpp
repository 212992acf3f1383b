// The watchdog, end to end under mpirun -np 3 (2 cores: oversubscribed), the bundled tasks:
//   - SIGSTOP of one rank mid-run: the others' next collective misses dist.timeout_s (5 s); they
//     report the operation, their rank and host, the deadline, the step and the tasks in flight,
//     and the job ends with exit 3
//     within the deadline + 10 s, leaving no process behind (the stopped rank included);
//   - SIGKILL of one rank: mpirun ends the job within 10 s, naming the killed rank; no orphans.
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

#include "run_command.h"

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
  double seconds_after_signal = 0.0;
  std::string log;
  bool orphans = false;
};

// Starts the job, waits for step 5, sends `sig` to the rank pids[1], waits for the end.
Outcome run_and_signal(const std::string& tag, int sig) {
  const fs::path dir = fs::temp_directory_path() / ("pft-watchdog-" + tag + "-" + std::to_string(getpid()));
  fs::remove_all(dir);
  const fs::path log = dir.string() + ".log";
  const std::string cmd =
      std::string("PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 ") + PFT_MPIRUN +
      " -np 3 " + PFT_BIN + " train configs/quickstart.yaml --set model.d_model=64"
      " --set data.seq_len=64 --set eval.every_steps=0 --set checkpoint.every_steps=0"
      " --set train.global_batch_size=12 --set train.steps=2000 --set run.threads=1"
      " --set dist.timeout_s=5 --set run.dir=" + dir.string() + " > " + log.string() + " 2>&1";
  const pid_t child = fork();
  if (child == 0) {
    setpgid(0, 0);
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  Outcome o;
  const auto start_deadline = Clock::now() + std::chrono::seconds(120);
  while (last_step(dir / "metrics.jsonl") < 5 && Clock::now() < start_deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_GE(last_step(dir / "metrics.jsonl"), 5) << "the job never reached step 5 in 120 s";
  const std::vector<pid_t> ranks = pids_of("run.dir=" + dir.string(), PFT_BIN);
  EXPECT_EQ(ranks.size(), 3u) << "expected 3 ranks running";
  if (ranks.size() == 3) kill(ranks[1], sig);
  const Clock::time_point signalled = Clock::now();
  // A job that does not end within 60 s is killed (the stopped rank too: SIGKILL ends stopped
  // processes) and fails the test (run_command.h).
  const int status = pft::test::wait_child(child, std::chrono::seconds(60), cmd);
  o.seconds_after_signal = std::chrono::duration<double>(Clock::now() - signalled).count();
  if (status < 0)
    for (pid_t p : pids_of(dir.string())) kill(p, SIGKILL);
  o.code = status < 0            ? -1
           : WIFEXITED(status) ? WEXITSTATUS(status)
                               : 128 + WTERMSIG(status);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  o.orphans = !pids_of(dir.string()).empty();
  for (pid_t p : pids_of(dir.string())) kill(p, SIGKILL);
  std::ifstream in(log);
  o.log.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  fs::remove_all(dir);
  fs::remove(log);
  return o;
}

TEST(WatchdogCli, StoppedRankEndsTheJobWithinTheDeadline) {
  const Outcome o = run_and_signal("stop", SIGSTOP);
  std::cout << "SIGSTOP: job ended " << o.seconds_after_signal << " s after the signal, exit "
            << o.code << "\n";
  EXPECT_EQ(o.code, 3) << o.log;
  EXPECT_LT(o.seconds_after_signal, 5.0 + 10.0) << o.log;
  EXPECT_NE(o.log.find("did not complete within the deadline of 5 s"), std::string::npos) << o.log;
  EXPECT_NE(o.log.find("(host "), std::string::npos) << o.log;
  // The step and the tasks it was training (the controller's plan of that step).
  EXPECT_NE(o.log.find("(tasks in flight: "), std::string::npos) << o.log;
  EXPECT_FALSE(o.orphans);
}

TEST(WatchdogCli, KilledRankEndsTheJob) {
  const Outcome o = run_and_signal("kill", SIGKILL);
  std::cout << "SIGKILL: job ended " << o.seconds_after_signal << " s after the signal, exit "
            << o.code << "\n";
  EXPECT_NE(o.code, 0) << o.log;
  EXPECT_LT(o.seconds_after_signal, 10.0) << o.log;
  EXPECT_NE(o.log.find("exited on signal 9"), std::string::npos) << o.log;
  EXPECT_FALSE(o.orphans);
}

}  // namespace
