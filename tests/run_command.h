// Running a command from a test - the pft binary, or launch/pft-mpirun around it - and keeping
// its exit status and everything it printed, for the end-to-end CLI tests.
#pragma once

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace pft::test {

struct Result {
  int code = -1;    // exit status; 128 + signal when killed; -1 when it could not start
  std::string out;  // stdout and stderr together
};

// Runs `command` through /bin/sh with stderr merged into stdout.
inline Result run(const std::string& command) {
  Result r;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

// Occurrences of `what` in `text` (overlapping ones count).
inline size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

}  // namespace pft::test
