// Helpers shared by the prompt-dataset tests: a temporary directory with files, task files
// written inline, and InputError message checks.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>

#include "core/error.h"
#include "core/format.h"
#include "data/dataset.h"
#include "data/task.h"

namespace pft::testing_data {

namespace fs = std::filesystem;

inline const fs::path kRepo = PFT_SOURCE_ROOT;
// Bundled data (datasets/natinst/README.md, datasets/tokenizers/gpt2/README.md).
inline const fs::path kNatinstDir = kRepo / "datasets" / "natinst";
inline const fs::path kGpt2Dir = kRepo / "datasets" / "tokenizers" / "gpt2";

// A fresh temporary directory per test, removed at the end.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() / fmt::format("pft_data_{}_{}_{}_{}", info->test_suite_name(),
                                                    info->name(), ::getpid(), counter_++);
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Writes `content` to path()/name (creating folders) and returns the path.
  fs::path file(const std::string& name, const std::string& content) const {
    const fs::path p = path_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }
  const fs::path& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  fs::path path_;
};

// Expects `fn` to throw InputError whose message contains every one of `parts`; returns it.
template <class Fn>
std::string expect_input_error(Fn fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "no InputError thrown";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    for (const std::string& part : parts)
      EXPECT_NE(msg.find(part), std::string::npos)
          << "message \"" << msg << "\" lacks \"" << part << "\"";
    return msg;
  }
  return "";
}

inline DataOptions options(int64_t seq_len = 256, bool strict = true, uint64_t seed = 1234) {
  DataOptions o;
  o.seq_len = seq_len;
  o.strict = strict;
  o.seed = seed;
  return o;
}

inline TaskDataset load(const fs::path& task_file, const DataOptions& o = options()) {
  return TaskDataset(load_task(task_file), 0, o);
}

}  // namespace pft::testing_data
