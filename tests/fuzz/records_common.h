// Shared by the JSONL and Super-NaturalInstructions record targets: reads a fuzzed records file
// for several fixed tasks, strict and lenient (data/readers.h), then runs `pft data validate`'s
// check (data/validate.h: every example rendered under every template, byte tokenizer) on it.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "config/config.h"
#include "data/readers.h"
#include "data/task.h"
#include "data/validate.h"
#include "fuzz_util.h"

namespace pft::fuzz {

// Loads each task file text (written as task<i>.yaml into the fuzz folder) once.
inline std::vector<std::filesystem::path> write_tasks(const std::vector<const char*>& texts) {
  std::vector<std::filesystem::path> paths;
  for (size_t i = 0; i < texts.size(); ++i)
    paths.push_back(FuzzDir::get().write("task" + std::to_string(i) + ".yaml", texts[i]));
  return paths;
}

// Every record must have the task's fields and at least one reference (data/readers.h).
inline void check_records(const Task& task, const std::vector<Record>& records) {
  for (const Record& r : records)
    if (r.values.size() != task.fields.size() || r.references.empty()) std::abort();
}

inline void validate_with(const std::filesystem::path& task_file, bool strict) {
  Config config;
  config.file = (FuzzDir::get().path() / "config.yaml").string();
  config.data.source = DataSource::kTasks;
  config.data.tasks = {task_file.string()};
  config.data.tokenizer = "byte";
  config.data.seq_len = 64;
  config.data.strict = strict;
  expect_pft_error([&] {
    const DataValidation v = validate_task_data(config);
    (void)v.summary();
  });
}

}  // namespace pft::fuzz
