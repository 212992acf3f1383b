// Fuzz target: task files (data/task.h load_task), their templates (data/template.h) and the
// `defaults:` composition they share with configs.
//
// Input: a task file's YAML, written as task.yaml in a folder that also holds train.jsonl,
// validation.jsonl, test.jsonl, a natinst file (natinst.json) and a base task (base.yaml), so
// source paths and composition resolve.
#include <cstddef>
#include <cstdint>
#include <string>

#include "data/task.h"
#include "fuzz_util.h"

namespace {

constexpr char kJsonl[] = R"({"a": "1", "b": "2", "answer": "3"}
)";
constexpr char kNatinst[] =
    R"({"Definition": ["Add."], "Positive Examples": [{"input": "1 2", "output": "3", "explanation": "sum"}],
"Instances": [{"id": "i0", "input": "2 2", "output": ["4"]}]})";
constexpr char kBase[] = R"(name: base
fields: [a, b, answer]
source: {train: train.jsonl}
templates:
  - {id: t, input: "{a} + {b} =", output: " {answer}"}
)";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace pft;
  const fuzz::FuzzDir& dir = fuzz::FuzzDir::get();
  static const bool once = [&] {
    for (const char* split : {"train.jsonl", "validation.jsonl", "test.jsonl"})
      dir.write(split, kJsonl);
    dir.write("natinst.json", kNatinst);
    dir.write("base.yaml", kBase);
    return true;
  }();
  (void)once;
  const auto path =
      dir.write("task.yaml", std::string_view(reinterpret_cast<const char*>(data), size));
  fuzz::expect_pft_error([&] {
    const Task task = load_task(path);
    // What later stages rely on: every template's placeholders name fields of the task.
    for (const Template& t : task.templates)
      for (const Format* f : {&t.instruction, &t.guidelines, &t.input, &t.output, &t.demo})
        for (const Format::Piece& p : f->pieces())
          if (p.field >= static_cast<int>(task.fields.size())) std::abort();
  });
  return 0;
}
