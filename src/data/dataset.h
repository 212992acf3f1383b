// A loaded task: its compiled definition, the records of each split, the few-shot pools, and
// rendering of (split, example, template) into a RenderedExample.
//
// Loading is deterministic and local: every rank reads the same files and gets the same
// records, splits, problem counts and few-shot picks, so no communication is needed.
//
//   - Splits: per-split files as given, or one pool (JSONL file / directory, natinst Instances)
//     carved by the task's split_ratios with a Fisher-Yates shuffle seeded by split_seed; each
//     split keeps its records in file order. Split sizes are round(ratio * n) at the two cuts.
//   - Few-shot picks for (split, example, template) come from a generator seeded by
//     (data seed, task name, template id, split, example): the same on every rank and every run
//     with the same seed, independent of data.tasks order and of other templates. A record is
//     never its own demonstration: on the train split its own index is excluded, and any pool
//     record with the same field values as the example is excluded too.
//   - Which templates apply: the train split uses templates not held out; validation and test
//     use every template (held-out ones only there).
//
// Errors: InputError (strict mode: the first bad record; always: an empty split, a few-shot k
// larger than its pool, a template with eos and a tokenizer without one).
// Thread-safety: a constructed TaskDataset is immutable; its const members (render included) may
// be called from several threads at once.
//
// Typical use (the packer / prepared store):
//   for (const TaskDataset& d : load_task_datasets(config))
//     for (int32_t t : d.templates_for(Split::kTrain))
//       for (int64_t i = 0; i < d.size(Split::kTrain); ++i)
//         RenderedExample ex = d.render(Split::kTrain, i, t, tokenizer);  // count ex.truncated
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "data/example.h"
#include "data/readers.h"
#include "data/render.h"
#include "data/task.h"
#include "data/tokenizer.h"

namespace pft {

// The data.* settings the task layer needs.
struct DataOptions {
  int64_t seq_len = 256;
  bool strict = true;
  bool train_on_prompt = false;
  uint64_t seed = 0;  // few-shot picks (run.seed)
};
DataOptions data_options(const Config& config);

class TaskDataset {
 public:
  // Reads `task`'s records. `index` is the task's position in data.tasks.
  TaskDataset(Task task, int32_t index, const DataOptions& options);

  const Task& task() const { return task_; }
  int32_t index() const { return index_; }
  const DataOptions& options() const { return options_; }
  const LoadReport& load_report() const { return report_; }

  bool has_split(Split s) const { return !splits_[static_cast<int>(s)].empty(); }
  int64_t size(Split s) const { return static_cast<int64_t>(splits_[static_cast<int>(s)].size()); }
  const Record& record(Split s, int64_t i) const;
  // Every acceptable answer of the example (raw field values; exact match compares against
  // Renderer::answer_text of each, or these with whitespace trimmed).
  const std::vector<std::string>& references(Split s, int64_t i) const {
    return record(s, i).references;
  }

  // Indices of the templates used on split `s` (train: not held out; else all).
  std::vector<int32_t> templates_for(Split s) const;
  // The few-shot pool of a template (train split or positive examples).
  const std::vector<Record>& pool(const Template& t) const;
  // Pool indices of the demonstrations of (s, example, template), in prompt order.
  std::vector<int64_t> pick_demos(Split s, int64_t example, int32_t template_id) const;
  // The same pick for `record` standing in for example `example` of split `s` (`pft generate`:
  // records from outside the task's files get the demonstrations that example gets).
  std::vector<int64_t> pick_demos_for(const Record& record, Split s, int64_t example,
                                      int32_t template_id) const;

  // Renders one example. The tokenizer must be the one every consumer uses.
  RenderedExample render(Split s, int64_t example, int32_t template_id, const Tokenizer& tokenizer,
                         RenderDetail* detail = nullptr) const;
  // Its texts before tokenization (`pft data show`, the boundary check).
  PromptTexts texts(Split s, int64_t example, int32_t template_id) const;
  // Each reference rendered through the template's output format.
  std::vector<std::string> reference_texts(Split s, int64_t example, int32_t template_id) const;
  // Classification: answer tokens of every label after this example's prompt.
  std::vector<std::vector<int32_t>> label_answers(Split s, int64_t example, int32_t template_id,
                                                  const Tokenizer& tokenizer) const;

  // Task-wide values of constant fields, per field (natinst definition).
  const std::vector<std::string>& constants() const { return constants_; }

 private:
  void check_few_shot() const;
  std::vector<const Record*> demo_records(Split s, int64_t example, int32_t template_id) const;

  Task task_;
  int32_t index_ = 0;
  DataOptions options_;
  LoadReport report_;
  std::array<std::vector<Record>, kNumSplits> splits_;
  std::vector<Record> positive_examples_;
  std::vector<std::string> constants_;
};

// The files of data.tasks, resolved: relative paths are relative to the directory of the
// config file that lists them (the working directory for --set).
std::vector<std::filesystem::path> task_files(const Config& config);

// Loads every task of data.tasks, in order. In lenient mode, logs one summary line per task with
// problems (rank 0) and adds the counts to `total` when given. Throws InputError.
std::vector<TaskDataset> load_task_datasets(const Config& config, LoadReport* total = nullptr);

}  // namespace pft
