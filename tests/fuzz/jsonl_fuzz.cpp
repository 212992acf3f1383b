// Fuzz target: JSONL records (data/readers.h read_jsonl) and `pft data validate` over them.
//
// Input: the contents of a .jsonl file, read as the train split of three fixed tasks (plain
// fields with extra_fields: error, classification labels, the alpaca preset with an optional
// field and a list answer allowed), in strict and lenient mode.
#include <cstddef>
#include <cstdint>

#include "records_common.h"

namespace {

constexpr char kPlain[] = R"(name: plain
fields: [a, b, answer]
extra_fields: error
source: {train: records.jsonl, validation: valid.jsonl}
templates:
  - {id: eq, input: "{a} + {b} =", output: " {answer}", few_shot: {k: 2}, truncate: {field: a}}
  - {id: q, input: "Q: {a} {b}", output: " {answer}", held_out: true}
)";
constexpr char kClassify[] = R"(name: classify
metric: classification
labels: [yes, no]
fields: [text, answer]
source: {train: records.jsonl}
templates:
  - {id: c, input: "{text}?", output: " {answer}", truncate: {field: text, side: right}}
)";
constexpr char kAlpaca[] = R"(name: alpaca
field_preset: alpaca
optional_fields: [input]
source: {path: records.jsonl, split_ratios: [0.5, 0.5, 0.0], split_seed: 3}
templates:
  - {id: a, instruction: "{instruction}", input: "{input}", output: " {output}"}
)";
constexpr char kValid[] = R"({"a": "1", "b": "2", "answer": "3"}
)";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pft;
  const fuzz::FuzzDir& dir = fuzz::FuzzDir::get();
  static const std::vector<std::filesystem::path> task_files = [&] {
    dir.write("valid.jsonl", kValid);
    dir.write("records.jsonl", "");
    return fuzz::write_tasks({kPlain, kClassify, kAlpaca});
  }();
  static const std::vector<Task> tasks = [] {
    std::vector<Task> t;
    for (const auto& f : task_files) t.push_back(load_task(f));
    return t;
  }();
  const auto path =
      dir.write("records.jsonl", std::string_view(reinterpret_cast<const char*>(data), size));
  for (size_t i = 0; i < tasks.size(); ++i) {
    for (const bool strict : {true, false}) {
      LoadReport report;
      Problems problems(strict, report);
      fuzz::expect_pft_error([&] {
        const std::vector<Record> records = read_jsonl(tasks[i], {path}, problems);
        fuzz::check_records(tasks[i], records);
        (void)report.summary();
      });
    }
    fuzz::validate_with(task_files[i], /*strict=*/false);
  }
  return 0;
}
