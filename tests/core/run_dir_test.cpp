// Run directory layout and metrics.jsonl lines.
#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json/parse.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

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
  for (const auto& entry : fs::directory_iterator(dir.root()))  // no temporary left
    EXPECT_EQ(entry.path().string().find(".tmp"), std::string::npos) << entry.path();
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

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Note [atomic writes]: two writers of one file at once (pft sweep status refreshing best.yaml
// while the sweep ends) both succeed, and the file is always one writer's whole text.
TEST(RunDir, ConcurrentAtomicWritersOfOneFileBothSucceed) {
  const fs::path root = fs::temp_directory_path() / ("pft-run-dir-race-" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root);
  const fs::path file = root / "best.yaml";
  const std::string a(64 * 1024, 'a'), b(64 * 1024, 'b');
  std::atomic<int> failures{0};
  std::string first_error;
  const auto writer = [&](const std::string& text) {
    for (int i = 0; i < 200; ++i) {
      try {
        RunDir::write_file_atomic(file, text);
      } catch (const std::exception& e) {
        if (failures++ == 0) first_error = e.what();
      }
    }
  };
  std::thread ta(writer, a), tb(writer, b);
  ta.join();
  tb.join();
  EXPECT_EQ(failures.load(), 0) << first_error;
  const std::string got = slurp(file);
  EXPECT_TRUE(got == a || got == b) << "a file of " << got.size() << " bytes, neither text";
  size_t entries = 0;
  for (const auto& entry : fs::directory_iterator(root)) {
    (void)entry;
    ++entries;
  }
  EXPECT_EQ(entries, 1u);  // no temporary left behind
  fs::remove_all(root);
}

// Note [a line cut by a kill]: an append after a line cut by a killed writer is a line of its
// own, so the event it records is read back.
TEST(RunDir, AppendAfterACutLineKeepsTheNewLine) {
  const fs::path root = fs::temp_directory_path() / ("pft-run-dir-cut-" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root);
  const fs::path file = root / "metrics.jsonl";
  std::ofstream(file, std::ios::binary) << "{\"kind\":\"train\",\"step\":1}\n{\"kind\":\"tra";
  {
    MetricsWriter w(file);
    w.write({{"kind", "eval"}, {"step", 2}});
    w.write({{"kind", "end"}, {"step", 2}});
  }
  std::ifstream in(file);
  std::vector<std::string> kinds;
  for (std::string line; std::getline(in, line);) {
    boost::system::error_code ec;
    const boost::json::value v = boost::json::parse(line, ec);
    if (!ec && v.is_object()) kinds.emplace_back(v.as_object().at("kind").as_string());
  }
  EXPECT_EQ(kinds, (std::vector<std::string>{"train", "eval", "end"}));
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
