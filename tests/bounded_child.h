// Running a piece of a test in a child process with bounded memory and CPU time, for tests of
// inputs built to exhaust them (a YAML alias bomb): a regression then fails the test -- the child
// gets std::bad_alloc, or SIGXCPU / SIGKILL -- instead of taking the machine down.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <exception>
#include <functional>
#include <string>

#include "core/error.h"

namespace pft::test {

#if defined(__SANITIZE_ADDRESS__)
// Resident memory of process `pid` in bytes (0 when it cannot be read: it has exited).
inline rlim_t resident_bytes(pid_t pid) {
  std::FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/statm").c_str(), "r");
  if (f == nullptr) return 0;
  unsigned long size = 0, resident = 0;
  const int got = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  return got == 2 ? rlim_t{resident} * static_cast<rlim_t>(sysconf(_SC_PAGESIZE)) : 0;
}
#endif

struct BoundedOutcome {
  bool input_error = false;  // `body` threw pft::InputError
  std::string message;       // its message, or how the child failed otherwise
};

// Runs `body` in a forked child limited to `address_space_bytes` of virtual memory and
// `cpu_seconds` of CPU time. Call it from a single-threaded test binary (fork).
//
// Note [bounded child under ASan]: AddressSanitizer (the asan preset, tests/sanitize/) reserves
// terabytes of shadow address space at start, so under it RLIMIT_AS fails every later mmap,
// ASan's own included ("ERROR: Failed to mmap"), and the child dies before `body` runs. There
// the child's resident memory is bounded instead: the parent polls it (/proc/PID/statm) while
// it waits, and SIGKILLs the child past `address_space_bytes` (counting ASan's shadow and
// quarantine), which the outcome reports like a child killed at the limit.
inline BoundedOutcome run_bounded(const std::function<void()>& body,
                                  rlim_t address_space_bytes = rlim_t{2} << 30,
                                  rlim_t cpu_seconds = 60) {
  int fds[2];
  if (pipe(fds) != 0) {
    ADD_FAILURE() << "pipe: " << errno;
    return {};
  }
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    const rlimit cpu{cpu_seconds, cpu_seconds + 5};
#if !defined(__SANITIZE_ADDRESS__)  // Note [bounded child under ASan]
    const rlimit as{address_space_bytes, address_space_bytes};
    setrlimit(RLIMIT_AS, &as);
#endif
    setrlimit(RLIMIT_CPU, &cpu);
    std::string out;
    char kind = 'N';  // N: returned, I: InputError, X: another exception
    try {
      body();
    } catch (const InputError& e) {
      kind = 'I';
      out = e.what();
    } catch (const std::exception& e) {
      kind = 'X';
      out = std::string("unexpected exception: ") + e.what();
    }
    out.insert(out.begin(), kind);
    size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = write(fds[1], out.data() + done, out.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    _exit(0);
  }
  close(fds[1]);
  std::string got;
  char buf[4096];
  for (ssize_t n;;) {
#if defined(__SANITIZE_ADDRESS__)  // Note [bounded child under ASan]
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, 20) == 0) {
      if (resident_bytes(pid) > address_space_bytes) kill(pid, SIGKILL);
      continue;
    }
#endif
    if ((n = read(fds[0], buf, sizeof buf)) == 0) break;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  BoundedOutcome r;
  if (WIFSIGNALED(status)) {
    r.message = "child killed by signal " + std::to_string(WTERMSIG(status)) +
                " (SIGSEGV: a crash; SIGKILL or SIGXCPU: past the memory or CPU limit)";
  } else if (got.empty()) {
    r.message = "child exited without a result";
  } else if (got[0] == 'N') {
    r.message = "no error";
  } else {
    r.input_error = got[0] == 'I';
    r.message = got.substr(1);
  }
  return r;
}

}  // namespace pft::test
