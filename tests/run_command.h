// Running a command from a test - the pft binary, or launch/pft-mpirun around it - and keeping
// its exit status and everything it printed, for the end-to-end CLI tests. Nothing here can hang
// a test: every command and every child a test forks has a time limit, after which its whole
// process group (mpirun, its ranks, the shell around them) is killed and the test fails with a
// message naming the command.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

// Expects `hay` (anything a std::string is made from) to contain `needle`; prints `hay` if not.
#define EXPECT_CONTAINS(hay, needle) \
  EXPECT_NE(std::string(hay).find(needle), std::string::npos) << "in: " << (hay)

namespace pft::test {

struct Result {
  int code = -1;           // exit status; 128 + signal when killed; -1 when it could not start
  std::string out;         // stdout and stderr together
  bool timed_out = false;  // killed at the time limit (the test has already failed)
};

// Note [a failed SetUpTestSuite is no skip]
// ~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
// GoogleTest reports every test of a suite whose SetUpTestSuite had a fatal failure (an ASSERT)
// as skipped and exits 1; CTest, with gtest_discover_tests' skip pattern ("[  SKIPPED ]"),
// counts the skip over the exit code, so the suite passed. (The ASan build's first full run
// showed it: EvalCli's and the PEFT CLI suites' tests "Skipped" while their shared training run
// died.) So a suite's shared set-up records its failure instead (this helper), and the
// fixture's SetUp() fails each test with it.
//
// "" when `r` exited 0; otherwise what the shared set-up's `what` failed with.
inline std::string setup_failure(const Result& r, const std::string& what) {
  if (r.code == 0) return "";
  return "the suite's " + what + " exited " + std::to_string(r.code) + ":\n" + r.out;
}

// The time limit of a command unless the call gives one: 300 s, or PFT_TEST_COMMAND_TIMEOUT_S
// (a slower machine). Each CLI test's CTest TIMEOUT (tests/CMakeLists.txt) bounds the whole test.
inline constexpr std::chrono::seconds kDefaultCommandTimeout{300};
// After the time limit: SIGTERM to the group (mpirun then stops its ranks), SIGKILL this later.
inline constexpr std::chrono::seconds kTermGrace{5};

inline std::chrono::seconds default_command_timeout() {
  if (const char* s = std::getenv("PFT_TEST_COMMAND_TIMEOUT_S"); s != nullptr && *s != '\0') {
    const long v = std::strtol(s, nullptr, 10);
    if (v > 0) return std::chrono::seconds(v);
  }
  return kDefaultCommandTimeout;
}

namespace detail {

using Clock = std::chrono::steady_clock;

// Whether `pid` (our child) has exited, without reaping it: a zombie keeps its pid and process
// group id reserved, so the group can still be signalled safely.
inline bool exited(pid_t pid) {
  siginfo_t info{};
  info.si_pid = 0;
  const int rc = waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT);
  return rc != 0 || info.si_pid == pid;
}

// Reaps `pid`; the shell convention for its status (128 + signal when a signal ended it).
inline int reap(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Waits until `pid` exits or `deadline`; true when it exited. Reads `fd` meanwhile (when >= 0)
// into `out`, so a child blocked on a full pipe can finish.
inline bool wait_until(pid_t pid, Clock::time_point deadline, int fd, std::string* out) {
  std::array<char, 4096> buf{};
  while (!exited(pid)) {
    if (Clock::now() >= deadline) return false;
    if (fd >= 0) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 20) > 0) {
        const ssize_t n = read(fd, buf.data(), buf.size());
        if (n > 0) out->append(buf.data(), static_cast<size_t>(n));
        if (n == 0) fd = -1;  // EOF: the rest is waiting for the exit
      }
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  return true;
}

// The time limit passed: SIGTERM to the group (and to `pid` itself, should it have no group of
// its own), SIGKILL to both after kTermGrace, then reap.
inline int kill_group(pid_t pid, int fd, std::string* out) {
  kill(-pid, SIGTERM);
  kill(pid, SIGTERM);
  wait_until(pid, Clock::now() + kTermGrace, fd, out);
  kill(-pid, SIGKILL);
  kill(pid, SIGKILL);
  return reap(pid);
}

inline std::string tail(const std::string& s, size_t n = 4000) {
  return s.size() <= n ? s : "...\n" + s.substr(s.size() - n);
}

}  // namespace detail

// Runs `command` through /bin/sh, in a process group of its own, with stderr merged into stdout.
// Past `timeout` the group is killed, the current test fails naming the command, and the result
// has timed_out set. Once the command exits, any process it left in its group is killed too.
inline Result run(const std::string& command,
                  std::chrono::seconds timeout = default_command_timeout()) {
  Result r;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return r;
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return r;
  }
  if (pid == 0) {
    setpgid(0, 0);
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  setpgid(pid, pid);  // also here: the group exists before any kill below, whoever runs first
  close(fds[1]);
  const auto deadline = detail::Clock::now() + timeout;
  // Read until EOF (every writer closed the pipe) or the deadline.
  std::array<char, 4096> buf{};
  bool eof = false;
  while (!eof) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - detail::Clock::now());
    if (left.count() <= 0) break;
    pollfd p{fds[0], POLLIN, 0};
    const int ready = poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
    if (ready < 0 && errno != EINTR) break;
    if (ready <= 0) continue;
    const ssize_t n = read(fds[0], buf.data(), buf.size());
    if (n > 0) r.out.append(buf.data(), static_cast<size_t>(n));
    if (n == 0 || (n < 0 && errno != EINTR)) eof = true;
  }
  if (eof && detail::wait_until(pid, deadline, -1, nullptr)) {
    kill(-pid, SIGKILL);  // stragglers of the group (none normally); pid is still reserved
    r.code = detail::reap(pid);
  } else {
    r.code = detail::kill_group(pid, eof ? -1 : fds[0], &r.out);
    r.timed_out = true;
    ADD_FAILURE() << "command timed out after " << timeout.count()
                  << " s and was killed (its whole process group): " << command
                  << "\noutput so far:\n"
                  << detail::tail(r.out);
  }
  close(fds[0]);
  return r;
}

// Waits for a child the test forked for at most `timeout`; past it, kills the child (and its
// process group, when it called setpgid(0, 0)) like run() and fails the test naming `what`.
// Returns the raw waitpid status (check WIFEXITED/WEXITSTATUS), or -1 after a timeout.
inline int wait_child(pid_t pid, std::chrono::seconds timeout, const std::string& what) {
  if (detail::wait_until(pid, detail::Clock::now() + timeout, -1, nullptr)) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
  }
  detail::kill_group(pid, -1, nullptr);
  ADD_FAILURE() << "child " << pid << " (" << what << ") still running after " << timeout.count()
                << " s; killed its process group";
  return -1;
}

// Occurrences of `what` in `text` (overlapping ones count).
inline size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

// Pids of running processes (other than this one) whose command line mentions `needle` (a test's
// unique run dir).
inline std::vector<pid_t> pids_mentioning(const std::string& needle) {
  std::vector<pid_t> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream f(e.path() / "cmdline", std::ios::binary);
    const std::string cmd((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (cmd.find(needle) != std::string::npos && std::stoi(name) != getpid())
      out.push_back(std::stoi(name));
  }
  return out;
}

// The kill -9 of a whole job at a chosen point: runs `command` (sh -c, output to `log`) in a
// process group of its own, polls `reached` every 10 ms for at most `timeout`, then SIGKILLs
// every process whose command line mentions `needle` (the ranks), and the group (mpirun, the
// shell), and waits until none is left. Returns whether `reached` held before the kill; fails
// the test if a process survives.
inline bool sigkill_job_when(const std::string& command, const std::string& log,
                             const std::string& needle, const std::function<bool()>& reached,
                             std::chrono::seconds timeout = std::chrono::seconds(240)) {
  const pid_t child = fork();
  if (child < 0) {
    ADD_FAILURE() << "fork failed";
    return false;
  }
  if (child == 0) {
    setpgid(0, 0);
    const std::string cmd = command + " > " + log + " 2>&1";
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool ok = false;
  while (!(ok = reached()) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  for (pid_t p : pids_mentioning(needle)) kill(p, SIGKILL);
  kill(-child, SIGKILL);
  wait_child(child, std::chrono::seconds(60), "the SIGKILLed job");
  for (int i = 0; i < 100 && !pids_mentioning(needle).empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(pids_mentioning(needle).empty()) << "processes of the killed job survived";
  return ok;
}

}  // namespace pft::test
