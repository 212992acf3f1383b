// The pft binary end to end: help, version, config show with overrides, config errors as a
// single process and under mpirun -np 2 (every rank exits 2, one message), `pft sweep` usage,
// pft-mpirun's defaults.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "run_command.h"

namespace {
namespace fs = std::filesystem;

using pft::test::Result;
using pft::test::run;
using pft::test::count;


const std::string kPft = PFT_BIN;

TEST(Cli, HelpAndVersion) {
  Result r = run(kPft + " --help");
  EXPECT_EQ(r.code, 0) << r.out;
  for (const char* sub : {"train", "generate", "eval", "data", "ckpt", "config", "sweep", "status", "report"})
    EXPECT_NE(r.out.find(std::string("  ") + sub + " "), std::string::npos) << sub << "\n" << r.out;
  for (const char* sub : {"train", "generate", "eval", "data", "ckpt", "config", "sweep", "status", "report"}) {
    r = run(kPft + " " + sub + " --help");
    EXPECT_EQ(r.code, 0) << sub << ": " << r.out;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << sub << ": " << r.out;
  }
  r = run(kPft + " --version");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("pft 0."), std::string::npos) << r.out;
}

TEST(Cli, BadFlagsExitTwo) {
  Result r = run(kPft + " --no-such-flag");
  EXPECT_EQ(r.code, 2) << r.out;
  r = run(kPft);
  EXPECT_EQ(r.code, 2) << r.out;
  r = run(kPft + " config show");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("config is required"), std::string::npos) << r.out;
}

TEST(Cli, ConfigShowAppliesOverride) {
  const Result r = run(kPft + " config show configs/quickstart.yaml --set train.lr=3e-4");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("lr: 0.0003"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("train:"), std::string::npos) << r.out;
}

class BadConfig : public ::testing::Test {
 protected:
  void SetUp() override {
    // Unique per test and process: ctest runs tests of this binary in parallel.
    path_ = fs::temp_directory_path() /
            (std::string("pft-cli-test-") +
             ::testing::UnitTest::GetInstance()->current_test_info()->name() + "-" +
             std::to_string(::getpid()) + ".yaml");
    std::ofstream(path_) << "run:\n  dir: runs/x\ntrian:\n  steps: 3\n";
  }
  void TearDown() override { fs::remove(path_); }
  fs::path path_;
};

TEST_F(BadConfig, SingleProcessNamesFileLineKeyAndSuggests) {
  const Result r = run(kPft + " config show " + path_.string());
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find(path_.string() + ":3:1: error: trian: unknown key 'trian' at the top "
                       "level; did you mean 'train'?"),
            std::string::npos)
      << r.out;
}

TEST_F(BadConfig, UnderMpirunEveryRankExitsTwoWithOneMessage) {
  // --tag-output off and one marker per rank so we can see both ranks really exited 2.
  const std::string cmd = std::string("PFT_OVERSUBSCRIBE=1 PFT_MPIRUN_LOOPBACK=1 PFT_TAG_OUTPUT=0 ") +
                          PFT_MPIRUN + " -np 2 sh -c '" + kPft + " config show " +
                          path_.string() + "; echo rank-exit=$?'";
  const Result r = run(cmd);
  EXPECT_EQ(count(r.out, "rank-exit=2"), 2u) << r.out;
  EXPECT_EQ(count(r.out, "unknown key 'trian'"), 1u) << r.out;
}

// A "billion laughs" config (9 anchors of 9 aliases each: 9^9 scalars expanded, 450 bytes) at
// the top level and under schedule.phases exits 2 naming the file, the line and the limit
// (config/tree.h). Run under `ulimit -v` (4 GiB: pft itself maps about 2.5 GiB at start), so a
// regression dies of std::bad_alloc (exit 3) instead of eating the machine's memory; the
// command's own time limit (60 s, against about 1 s of start-up) catches a hang. The ASan build
// reserves terabytes of shadow address space at start, which no `ulimit -v` allows (Note
// [bounded child under ASan]): there ASan's own resident-memory limit (hard_rss_limit_mb, a
// report and exit 86) bounds it instead.
TEST_F(BadConfig, AliasBombExitsTwoNamingFileLineAndLimit) {
  std::string bomb = "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
  for (int i = 1; i < 9; ++i) {
    const std::string a = "*l" + std::to_string(i - 1);
    bomb += "l" + std::to_string(i) + ": &l" + std::to_string(i) + " [" + a;
    for (int j = 1; j < 9; ++j) bomb += ", " + a;
    bomb += "]\n";
  }
#if defined(__SANITIZE_ADDRESS__)
  const std::string limited =
      "ASAN_OPTIONS=\"$ASAN_OPTIONS:hard_rss_limit_mb=4096\" exec " + kPft + " config show ";
#else
  const std::string limited = "ulimit -v 4194304 && exec " + kPft + " config show ";
#endif
  std::ofstream(path_) << "run:\n  dir: runs/x\n" << bomb;
  Result r = run(limited + path_.string(), std::chrono::seconds(60));
  EXPECT_EQ(r.code, 2) << r.out;
  // l4 holds 66,430 nodes; its first use, in l5 (line 8), passes the 100,000-node limit.
  EXPECT_NE(r.out.find(path_.string() + ":8:10: error: with its aliases (*name) expanded this "
                       "YAML would hold more than 100000 nodes"),
            std::string::npos)
      << r.out;

  std::string nested = "run:\n  dir: runs/x\nschedule:\n  phases:\n    - steps: 5\n";
  std::istringstream lines(bomb);
  for (std::string line; std::getline(lines, line);) nested += "      " + line + "\n";
  std::ofstream(path_) << nested;
  r = run(limited + path_.string(), std::chrono::seconds(60));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find(path_.string() + ":11:16: error: with its aliases"), std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("bad_alloc"), std::string::npos) << r.out;
}

// A directory named as the config is reported as one, not as a file of missing keys.
TEST(Cli, DirectoryAsConfigSaysSo) {
  const fs::path dir = fs::temp_directory_path() / ("pft-cli-dir-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const Result r = run(kPft + " config show " + dir.string());
  fs::remove_all(dir);
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find(dir.string() + ": error: is a directory, not a config file"),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("missing"), std::string::npos) << r.out;
}

TEST(Cli, SweepWithoutASubcommandExitsTwo) {
  const Result r = run(kPft + " sweep configs/quickstart.yaml");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("A subcommand is required"), std::string::npos) << r.out;
}

// launch/pft-mpirun tags output lines with the rank only when asked (docs/launching.md).
TEST(Cli, PftMpirunTagsOutputOnlyWithPftTagOutput) {
  const std::string launcher = std::string("PFT_MPIRUN_LOOPBACK=1 ") + PFT_MPIRUN;
  Result r = run("env -u PFT_TAG_OUTPUT " + launcher + " -np 1 echo tag-probe");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("tag-probe"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("<stdout>:tag-probe"), std::string::npos) << r.out;
  r = run("PFT_TAG_OUTPUT=1 " + launcher + " -np 1 echo tag-probe");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("]<stdout>:tag-probe"), std::string::npos) << r.out;
}

}  // namespace
