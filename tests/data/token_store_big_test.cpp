// A token store larger than the memory its reader may use (label `slow`): writes a > 2 GiB
// store with big chunk-aligned writes, then reads all of it (and random documents) in a child
// process whose address space is limited to kLimitBytes (RLIMIT_AS, set between fork and exec),
// far below the store's size. The child checks every token against the generator's pattern.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "data/token_store.h"
#include "data_test_util.h"
#include "run_command.h"
#include "token_store_pattern.h"

namespace pft {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kStoreBytes = int64_t{2300} << 20;  // tokens (4 B) + masks (1 B): > 2 GiB
constexpr int64_t kLimitBytes = int64_t{384} << 20;   // the reader's address space
constexpr std::chrono::seconds kProbeTimeout{240};  // the probe run below

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

TEST(TokenStoreBig, ReadsAStoreLargerThanItsAddressSpace) {
  testing_data::TempDir dir;
  const fs::path path = dir.path() / "big.h5";
  const ContentHash hash{0x1234, 0x5678};
  const auto t0 = std::chrono::steady_clock::now();
  int64_t docs = 0, tokens = 0;
  {
    // Count the documents first (the split's example count is declared up front).
    while (tokens * 5 < kStoreBytes) tokens += testing_store::pattern_length(docs++);
    TokenStoreWriter w(path, StoreInfo{"big", "synthetic", hash, 16384, kTokenStoreVersion});
    w.begin_split(Split::kTrain, {0}, docs);
    std::vector<int32_t> t;
    std::vector<uint8_t> m;
    for (int64_t d = 0; d < docs; ++d) {
      const int64_t n = testing_store::pattern_length(d);
      t.resize(static_cast<size_t>(n));
      m.resize(static_cast<size_t>(n));
      for (int64_t j = 0; j < n; ++j) {
        t[static_cast<size_t>(j)] = testing_store::pattern_token(d, j);
        m[static_cast<size_t>(j)] = testing_store::pattern_mask(j);
      }
      w.append(t, m);
    }
    w.end_split();
    w.commit();
  }
  const double write_s = seconds_since(t0);
  const auto file_bytes = static_cast<int64_t>(fs::file_size(path));
  ASSERT_GE(file_bytes, int64_t{2} << 30);
  ASSERT_LT(kLimitBytes * 4, file_bytes);

  const std::string probe = PFT_STORE_PROBE;
  int out_pipe[2];
  ASSERT_EQ(pipe(out_pipe), 0);
  const auto t1 = std::chrono::steady_clock::now();
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    rlimit lim{static_cast<rlim_t>(kLimitBytes), static_cast<rlim_t>(kLimitBytes)};
    setrlimit(RLIMIT_AS, &lim);
    dup2(out_pipe[1], STDOUT_FILENO);
    close(out_pipe[0]);
    close(out_pipe[1]);
    const std::string hex = hash.hex();
    execl(probe.c_str(), probe.c_str(), path.c_str(), hex.c_str(), "200",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out_pipe[1]);
  // Read while waiting, at most kProbeTimeout (run_command.h): a hung probe fails the test.
  std::string output;
  if (!pft::test::detail::wait_until(pid, std::chrono::steady_clock::now() + kProbeTimeout,
                                     out_pipe[0], &output)) {
    pft::test::detail::kill_group(pid, out_pipe[0], &output);
    close(out_pipe[0]);
    FAIL() << "the store probe still ran after " << kProbeTimeout.count() << " s; killed\n"
           << output;
  }
  char buf[512];
  for (ssize_t n; (n = read(out_pipe[0], buf, sizeof(buf))) > 0;)
    output.append(buf, static_cast<size_t>(n));
  close(out_pipe[0]);
  int status = 0;
  rusage ru{};
  ASSERT_EQ(wait4(pid, &status, 0, &ru), pid);
  const double read_s = seconds_since(t1);
  ASSERT_TRUE(WIFEXITED(status)) << output;
  EXPECT_EQ(WEXITSTATUS(status), 0) << output;
  EXPECT_NE(output.find("ok documents="), std::string::npos) << output;
  EXPECT_NE(output.find(fmt::format(" tokens={} ", tokens)), std::string::npos) << output;
  // Peak resident memory of the reader: a few chunks plus the libraries, far below the store.
  EXPECT_LT(static_cast<int64_t>(ru.ru_maxrss) * 1024, kLimitBytes);
  std::printf(
      "store: %.2f GiB (%lld documents, %lld tokens) written in %.1f s; read back in %.1f s "
      "under RLIMIT_AS = %lld MiB, reader peak RSS %.1f MiB\n%s",
      static_cast<double>(file_bytes) / (1 << 30), static_cast<long long>(docs),
      static_cast<long long>(tokens), write_s, read_s, static_cast<long long>(kLimitBytes >> 20),
      static_cast<double>(ru.ru_maxrss) / 1024, output.c_str());
}

}  // namespace
}  // namespace pft
