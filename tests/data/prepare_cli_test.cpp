// `pft data prepare` end to end: builds the bundled collection's stores, finds them cached on the
// second run (and rebuilds with --force), reports padding; exits 2 naming the key on a bad
// config; works under mpirun -np 2 (rank 0 builds).
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

const std::string kPft = PFT_BIN;
const std::string kMpirun = PFT_MPIRUN;
const fs::path kRepo = PFT_SOURCE_ROOT;

using pft::test::Result;
using pft::test::run;
using pft::test::count;


class PrepareCli : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("pft_prepare_cli_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    config_ = dir_ / "c.yaml";
    std::ofstream(config_) << "defaults: [" << (kRepo / "configs" / "quickstart.yaml").string()
                           << ", " << (kRepo / "datasets" / "collection.yaml").string() << "]\n"
                           << "run: {dir: " << (dir_ / "runs" / "x").string() << "}\n";
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_, config_;
};

TEST_F(PrepareCli, BuildsThenFindsCached) {
  const Result first = run(kPft + " data prepare " + config_.string());
  ASSERT_EQ(first.code, 0) << first.out;
  EXPECT_EQ(count(first.out, " built "), 7u) << first.out;
  EXPECT_NE(first.out.find("(7 built, 0 cached)"), std::string::npos) << first.out;
  EXPECT_NE(first.out.find("% padding over the first"), std::string::npos) << first.out;
  // The default cache sits beside run.dir.
  EXPECT_TRUE(fs::is_directory(dir_ / "runs" / ".pft-cache")) << first.out;

  const Result second = run(kPft + " data prepare " + config_.string());
  ASSERT_EQ(second.code, 0) << second.out;
  EXPECT_EQ(count(second.out, " cached "), 7u) << second.out;
  EXPECT_NE(second.out.find("(0 built, 7 cached)"), std::string::npos) << second.out;

  const Result forced = run(kPft + " data prepare " + config_.string() + " --force --threads 1");
  ASSERT_EQ(forced.code, 0) << forced.out;
  EXPECT_NE(forced.out.find("(7 built, 0 cached)"), std::string::npos) << forced.out;

  // Another seq_len is another store; data.cache_dir moves the cache.
  const fs::path other = dir_ / "other-cache";
  const Result moved = run(kPft + " data prepare " + config_.string() +
                           " --set data.seq_len=128 --set data.cache_dir=" + other.string());
  ASSERT_EQ(moved.code, 0) << moved.out;
  EXPECT_NE(moved.out.find("(7 built, 0 cached)"), std::string::npos) << moved.out;
  EXPECT_EQ(std::distance(fs::directory_iterator(other), fs::directory_iterator()), 7);
}

TEST_F(PrepareCli, UnderMpirunRankZeroBuilds) {
  const Result r = run("PFT_OVERSUBSCRIBE=1 " + kMpirun + " -np 2 " + kPft + " data prepare " +
                       config_.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(count(r.out, "(7 built, 0 cached)"), 1u) << r.out;  // one report, from rank 0
}

TEST_F(PrepareCli, BadTaskFileExitsTwo) {
  const Result r = run(kPft + " data prepare " + config_.string() + " --set data.tasks=[" +
                       (dir_ / "missing.yaml").string() + "]");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("missing.yaml"), std::string::npos) << r.out;
}

}  // namespace
