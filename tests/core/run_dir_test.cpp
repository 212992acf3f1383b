// Run directory layout and metrics.jsonl lines.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json/parse.hpp>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/run_dir.h"

namespace pft {
namespace {
namespace fs = std::filesystem;

TEST(RunDir, CreatesLayoutAndWritesJsonLines) {
  const fs::path root = fs::temp_directory_path() / ("pft-run-dir-test-" + std::to_string(::getpid()));
  fs::remove_all(root);
  RunDir dir(root / "nested" / "run", /*create=*/true);
  EXPECT_TRUE(fs::is_directory(dir.checkpoints()));
  RunDir::write_file_atomic(dir.resolved_config(), "train:\n  steps: 1\n");
  EXPECT_FALSE(fs::exists(dir.resolved_config().string() + ".tmp"));
  {
    MetricsWriter w(dir.metrics());
    w.write({{"kind", "train"}, {"step", 1}, {"loss", 2.5}});
    w.write({{"kind", "eval"}, {"step", 1}});
  }
  std::ifstream in(dir.metrics());
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    const auto v = boost::json::parse(line).as_object();
    EXPECT_TRUE(v.contains("kind"));
    EXPECT_TRUE(v.contains("time"));
    ++n;
  }
  EXPECT_EQ(n, 2);
  fs::remove_all(root);
}

TEST(RunDir, UnwritableDirectoryIsInputError) {
  EXPECT_THROW(RunDir("/proc/pft-cannot-exist/run", true), InputError);
}

TEST(RunDir, DisabledWriterIgnoresWrites) {
  MetricsWriter w;
  EXPECT_FALSE(w.enabled());
  EXPECT_NO_THROW(w.write({{"kind", "train"}}));
}

}  // namespace
}  // namespace pft
