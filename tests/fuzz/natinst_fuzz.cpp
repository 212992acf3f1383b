// Fuzz target: Super-NaturalInstructions task files (data/readers.h read_natinst) and
// `pft data validate` over them (splits carved by ratio, few-shot from Positive Examples).
//
// Input: the contents of a natinst .json file.
#include <cstddef>
#include <cstdint>

#include "records_common.h"

namespace {

constexpr char kNatinst[] = R"yaml(name: natinst
source: {path: natinst.json, split_ratios: [0.6, 0.2, 0.2], split_seed: 7}
templates:
  - id: two_shot
    instruction: "Definition: {definition}"
    input: "Input: {input}\nOutput:"
    output: " {output}"
    few_shot: {k: 2, source: positive_examples, format: "In: {input} Out: {output} ({explanation})"}
  - {id: zero, instruction: "{definition}", input: "{input}", output: " {output}", truncate: {field: input}}
)yaml";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pft;
  const fuzz::FuzzDir& dir = fuzz::FuzzDir::get();
  static const std::vector<std::filesystem::path> task_files = [&] {
    dir.write("natinst.json",
              R"({"Definition": ["d"], "Positive Examples": [], "Instances": [{"input": "i", "output": ["o"]}]})");
    return fuzz::write_tasks({kNatinst});
  }();
  static const Task task = load_task(task_files[0]);
  const auto path =
      dir.write("natinst.json", std::string_view(reinterpret_cast<const char*>(data), size));
  for (const bool strict : {true, false}) {
    LoadReport report;
    Problems problems(strict, report);
    fuzz::expect_pft_error([&] {
      const NatinstData d = read_natinst(task, path, problems);
      fuzz::check_records(task, d.instances);
      fuzz::check_records(task, d.positive_examples);
    });
  }
  fuzz::validate_with(task_files[0], /*strict=*/false);
  return 0;
}
