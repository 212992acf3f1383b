// Task definitions: what a task file (YAML, docs/tasks.md) says, and the compiled Task.
//
// A task file is parsed with the config machinery (config/schema.h): `describe()` lists each
// key once, config::Reader binds it over config::load_file() (so `defaults:` composition works
// and every error names file:line:col and the key path, with did-you-mean suggestions), and
// DocWriter produces the key table of docs/tasks.md (`pft data docs`). The one key the Reader
// cannot bind, the free-form `fields:` mapping, is read by hand with the same message shape.
//
// load_task() checks everything that needs no data: keys and values, source paths exist,
// template placeholders name known fields, held-out templates leave one to train on. Checks that
// need the data (record fields and types, few-shot pool sizes) happen when the task's records
// are read (data/readers.h, data/dataset.h).
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "config/schema.h"
#include "data/example.h"
#include "data/template.h"

namespace pft {

// ---- What a task file says ------------------------------------------------------------------

struct FewShotSpec {
  int64_t k = 0;
  std::string source = "train";
  std::string separator = "\n\n";
  std::string format;
};

struct TruncateSpec {
  std::string field;
  std::string side = "left";
};

struct TemplateSpec {
  std::string id;
  std::string instruction;
  std::string guidelines;
  std::string input;
  std::string output;
  std::string separator = "\n\n";
  FewShotSpec few_shot;
  bool eos = true;
  TruncateSpec truncate;
  bool held_out = false;
};

struct SourceSpec {
  std::string format = "auto";
  std::string train;
  std::string validation;
  std::string test;
  std::string path;
  std::vector<double> split_ratios = {0.8, 0.1, 0.1};
  int64_t split_seed = 0;
};

struct TaskSpec {
  std::string name;
  std::string description;
  std::string metric = "exact_match";
  std::vector<std::string> labels;
  std::string field_preset = "none";
  std::string answer_field;
  std::vector<std::string> optional_fields;
  std::string extra_fields = "ignore";
  SourceSpec source;
  std::vector<TemplateSpec> templates;
};

template <class V>
void describe(V& v, FewShotSpec& c) {
  using namespace config;
  v.field("k", c.k,
          "Demonstrations placed before the input, drawn deterministically per example (never the "
          "example itself).",
          at_least(0));
  v.field("source", c.source,
          "Where demonstrations come from: the task's train split, or a Super-NaturalInstructions "
          "file's Positive Examples.",
          one_of({"train", "positive_examples"}));
  v.field("separator", c.separator, "Text between two demonstrations.");
  v.field("format", c.format,
          "Format of one demonstration (`{field}` placeholders); empty = the template's input "
          "followed by its output.");
}

template <class V>
void describe(V& v, TruncateSpec& c) {
  using namespace config;
  v.field("field", c.field,
          "Field shortened when an example is longer than data.seq_len (after dropping "
          "demonstrations); empty = none.");
  v.field("side", c.side,
          "Which end of the field is cut: `left` keeps its end, `right` keeps its beginning.",
          one_of({"left", "right"}));
}

template <class V>
void describe(V& v, TemplateSpec& c) {
  using namespace config;
  v.field("id", c.id, "Name of the template, unique within the task.", required());
  v.field("instruction", c.instruction,
          "Task description placed first (may use fields, e.g. `{definition}`).");
  v.field("guidelines", c.guidelines, "Extra rules placed after the instruction.");
  v.field("input", c.input, "Format of the example's prompt, with `{field}` placeholders.",
          required());
  v.field("output", c.output,
          "Format of the answer (the trained part); references are rendered through it. Start it "
          "with the space that separates it from the prompt.",
          required());
  v.field("separator", c.separator,
          "Text between the prompt's non-empty parts (instruction, guidelines, demonstrations, "
          "input).");
  v.section("few_shot", c.few_shot, "Demonstrations.");
  v.field("eos", c.eos, "Append the tokenizer's end-of-text token after the answer (trained).");
  v.section("truncate", c.truncate, "What is cut when an example is too long.");
  v.field("held_out", c.held_out, "Use this template only at evaluation, never in training.");
}

template <class V>
void describe(V& v, SourceSpec& c) {
  using namespace config;
  v.field("format", c.format,
          "`jsonl` (one JSON object per line), `natinst` (a Super-NaturalInstructions task file), "
          "or `auto` (natinst for a .json file, else jsonl).",
          one_of({"auto", "jsonl", "natinst"}));
  v.field("train", c.train,
          "JSONL file (or directory of *.jsonl) of the train split, relative to the task file.");
  v.field("validation", c.validation, "JSONL file or directory of the validation split.");
  v.field("test", c.test, "JSONL file or directory of the test split.");
  v.field("path", c.path,
          "One JSONL file, a directory of *.jsonl (read in name order) or a natinst file, carved "
          "into splits by split_ratios; instead of train/validation/test.");
  v.field("split_ratios", c.split_ratios,
          "Fractions of `path`'s records for train, validation, test (sum 1).");
  v.field("split_seed", c.split_seed,
          "Seed of the deterministic shuffle that carves `path` into splits.", at_least(0));
}

template <class V>
void describe(V& v, TaskSpec& c) {
  using namespace config;
  v.field("name", c.name, "Task name (metrics, `--task`); letters, digits, '_', '-', '.'.",
          required());
  v.field("description", c.description, "Free text for people; not rendered.");
  v.field("metric", c.metric,
          "How evaluation scores it: generated answer equals a reference, the most likely of "
          "`labels`, or loss only.",
          one_of({"exact_match", "classification", "loss"}));
  v.field("labels", c.labels,
          "Classification labels (values of the answer field), scored by likelihood.");
  v.field("field_preset", c.field_preset,
          "Predefined field map: `alpaca` (instruction, input, output), `prompt_completion` "
          "(prompt, completion); natinst files always use input, output, definition, explanation.",
          one_of({"none", "alpaca", "prompt_completion"}));
  v.field("answer_field", c.answer_field,
          "Field holding the answer (a string or a list of acceptable strings); default `answer`, "
          "or the preset's.");
  v.field("optional_fields", c.optional_fields,
          "Fields that may be missing from a record (rendered as empty text).");
  v.field("extra_fields", c.extra_fields,
          "A record key the task does not read (other than `id`): ignored, or bad input.",
          one_of({"ignore", "error"}));
  v.section("source", c.source, "Where the records come from.");
  v.list("templates", c.templates, "Prompt templates (at least one not held out).", true);
}

// ---- The compiled task ----------------------------------------------------------------------

enum class Metric { kExactMatch, kClassification, kLoss };
enum class SourceFormat { kJsonl, kNatinst };

struct FieldDef {
  std::string name;    // as templates write it
  std::string source;  // record key it is read from (natinst: "Definition" for definition)
  bool optional = false;
  bool constant = false;  // one value per task (natinst definition), not per record
};

struct Task {
  std::string name;
  std::filesystem::path file;  // the task file
  Metric metric = Metric::kExactMatch;
  std::vector<std::string> labels;
  std::vector<FieldDef> fields;  // index = field id in templates
  std::vector<std::string> field_names;
  int answer_field = -1;
  bool extra_fields_error = false;
  std::vector<Template> templates;

  SourceFormat format = SourceFormat::kJsonl;
  // Either per-split paths (empty = split absent) or one pooled path carved by ratios.
  std::array<std::filesystem::path, kNumSplits> split_paths;
  std::filesystem::path pooled_path;
  std::array<double, kNumSplits> split_ratios{0.8, 0.1, 0.1};
  uint64_t split_seed = 0;

  config::SourceMap sources;  // key path -> file:line:col, for errors found later

  int field_index(const std::string& name) const;  // -1 when absent
  // Where `path` was written in the task file (falls back to a parent key, then the file).
  config::Source source_of(const std::string& path) const;
  // Throws InputError "<file:line:col>: error: <path>: task '<name>': <what>".
  [[noreturn]] void fail(const std::string& path, const std::string& what) const;
  int num_train_templates() const;
};

// Parses and checks a task file. Relative paths inside it are relative to its directory.
// Throws InputError naming file:line:col and the key path.
Task load_task(const std::filesystem::path& file);

// The key table of docs/tasks.md.
std::string task_reference_markdown();

const char* metric_name(Metric m);

}  // namespace pft
