// The pft binary end to end: help, version, config show with overrides, config errors as a
// single process and under mpirun -np 2 (every rank exits 2, one message), pending commands,
// pft-mpirun's defaults.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
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
  for (const char* sub : {"train", "generate", "eval", "data", "ckpt", "config"})
    EXPECT_NE(r.out.find(std::string("  ") + sub + " "), std::string::npos) << sub << "\n" << r.out;
  // Commands that have not landed are not offered.
  for (const char* sub : {"sweep"})
    EXPECT_EQ(r.out.find(std::string("  ") + sub + " "), std::string::npos) << sub << "\n" << r.out;
  for (const char* sub : {"train", "generate", "eval", "data", "ckpt", "config"}) {
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

TEST(Cli, PendingCommandSaysSoAndExitsTwo) {
  for (const char* sub : {"sweep"}) {
    const Result r = run(kPft + " " + sub + " configs/quickstart.yaml");
    EXPECT_EQ(r.code, 2) << r.out;
    EXPECT_NE(r.out.find(std::string("pft ") + sub + ": not available in this version"),
              std::string::npos)
        << r.out;
    EXPECT_EQ(r.out.find('#'), std::string::npos) << "no internal issue number\n" << r.out;
  }
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
