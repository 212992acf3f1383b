// Task files: parsing and static checks (contract: data/task.h).
#include "data/task.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "config/doc_table.h"
#include "config/tree.h"
#include "core/error.h"
#include "core/format.h"

namespace pft {

namespace fs = std::filesystem;
using config::Node;
using config::Source;

namespace {

// Collects the top-level key names of a describe() list.
struct KeyLister {
  std::vector<std::string> keys;
  template <class T>
  void field(const char* k, T&, const char*, const config::Check& = {}) {
    keys.push_back(k);
  }
  template <class S>
  void section(const char* k, S&, const char*) {
    keys.push_back(k);
  }
  template <class S>
  void list(const char* k, std::vector<S>&, const char*, bool = false) {
    keys.push_back(k);
  }
};

constexpr const char* kFieldsDoc =
    "Template field -> record key (`question: prompt`), or a list of names read under their "
    "own key; adds to / overrides field_preset.";

bool valid_field_name(const std::string& s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

bool valid_task_name(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
  });
}

struct FieldEntry {
  std::string name, source;
  Source where;
};

// The hand-read `fields:` key (a mapping or a list). Removes it from `root`.
std::vector<FieldEntry> take_fields(Node& root, config::SourceMap& sources) {
  std::vector<FieldEntry> out;
  const Node::Entry* e = root.find_entry("fields");
  if (e == nullptr) return out;
  const Node& n = e->value;
  sources["fields"] = n.source();
  const auto check_name = [](const std::string& name, const Source& at) {
    if (!valid_field_name(name))
      config::fail(at, "fields." + name,
                   fmt::format("'{}' is not a valid field name (letters, digits and '_', not "
                               "starting with a digit)",
                               name));
  };
  if (n.is_map()) {
    for (const Node::Entry& f : n.entries()) {
      check_name(f.key, f.key_source);
      if (!f.value.is_scalar() || f.value.value().empty())
        config::fail(f.value.is_null() ? f.key_source : f.value.source(), "fields." + f.key,
                     "expected the record key to read this field from (a string)");
      sources["fields." + f.key] = f.value.source();
      out.push_back(FieldEntry{f.key, f.value.value(), f.value.source()});
    }
  } else if (n.is_seq()) {
    for (size_t i = 0; i < n.items().size(); ++i) {
      const Node& item = n.items()[i];
      if (!item.is_scalar())
        config::fail(item.source(), fmt::format("fields[{}]", i), "expected a field name");
      check_name(item.value(), item.source());
      sources["fields." + item.value()] = item.source();
      out.push_back(FieldEntry{item.value(), item.value(), item.source()});
    }
  } else if (!n.is_null()) {
    config::fail(n.source(), "fields",
                 "expected a mapping `template_field: record_key` or a list of field names, found "
                 "a scalar");
  }
  root.erase("fields");
  return out;
}

// Unknown top-level keys, with suggestions that include the hand-read `fields`.
void check_top_level_keys(const Node& root) {
  KeyLister lister;
  TaskSpec dummy;
  describe(lister, dummy);
  lister.keys.push_back("fields");
  lister.keys.push_back("defaults");
  for (const Node::Entry& e : root.entries()) {
    if (std::find(lister.keys.begin(), lister.keys.end(), e.key) != lister.keys.end()) continue;
    const std::string hint = config::suggest(e.key, lister.keys);
    config::fail(e.key_source, e.key,
                 hint.empty() ? fmt::format("unknown key '{}' in a task file; known keys: {}",
                                            e.key, fmt::join(lister.keys, ", "))
                              : fmt::format("unknown key '{}' in a task file; did you mean '{}'?",
                                            e.key, hint));
  }
}

bool is_set(const config::SourceMap& sources, const std::string& path) {
  return sources.find(path) != sources.end();
}

}  // namespace

const char* metric_name(Metric m) {
  switch (m) {
    case Metric::kExactMatch:
      return "exact_match";
    case Metric::kClassification:
      return "classification";
    case Metric::kLoss:
      return "loss";
  }
  return "?";
}

int Task::field_index(const std::string& n) const {
  const auto it = std::find(field_names.begin(), field_names.end(), n);
  return it == field_names.end() ? -1 : static_cast<int>(it - field_names.begin());
}

Source Task::source_of(const std::string& path) const {
  std::string p = path;
  while (true) {
    const auto it = sources.find(p);
    if (it != sources.end()) return it->second;
    const size_t cut = p.find_last_of(".[");
    if (cut == std::string::npos) break;
    p = p.substr(0, cut);
  }
  return Source{file.string(), 0, 0};
}

void Task::fail(const std::string& path, const std::string& what) const {
  config::fail(source_of(path), path, fmt::format("task '{}': {}", name, what));
}

int Task::num_train_templates() const {
  return static_cast<int>(std::count_if(templates.begin(), templates.end(),
                                        [](const Template& t) { return !t.held_out; }));
}

Task load_task(const fs::path& file) {
  Node root = config::load_file(file);
  Task task;
  task.file = file;
  std::vector<FieldEntry> user_fields = take_fields(root, task.sources);
  check_top_level_keys(root);

  TaskSpec spec;
  config::Reader reader(&root, "", Source{file.string(), 1, 1}, task.sources);
  describe(reader, spec);
  reader.finish();
  reader.finish_missing();

  task.name = spec.name;
  if (!valid_task_name(spec.name))
    config::fail(
        task.source_of("name"), "name",
        fmt::format("'{}' is not a valid task name (letters, digits, '_', '-', '.')", spec.name));
  task.metric = spec.metric == "classification" ? Metric::kClassification
                : spec.metric == "loss"         ? Metric::kLoss
                                                : Metric::kExactMatch;
  task.extra_fields_error = spec.extra_fields == "error";

  // ---- source ----
  const fs::path dir = file.parent_path();
  const SourceSpec& src = spec.source;
  const auto resolve = [&](const std::string& key, const std::string& value) -> fs::path {
    const fs::path p = fs::path(value).is_absolute() ? fs::path(value) : dir / value;
    std::error_code ec;
    if (!fs::exists(p, ec))
      task.fail(key, fmt::format("'{}' does not exist (resolved to {}; paths are relative to the "
                                 "task file)",
                                 value, p.string()));
    return p;
  };
  const bool per_split = !src.train.empty() || !src.validation.empty() || !src.test.empty();
  if (per_split && !src.path.empty())
    task.fail("source.path",
              "give either source.path (carved by split_ratios) or per-split "
              "files (train/validation/test), not both");
  if (!per_split && src.path.empty())
    task.fail("source", "no data: give source.train/validation/test files or one source.path");
  if (per_split && is_set(task.sources, "source.split_ratios"))
    task.fail("source.split_ratios",
              "split_ratios carves source.path; it does not apply to "
              "per-split files");
  if (src.format == "natinst" ||
      (src.format == "auto" && !src.path.empty() && fs::path(src.path).extension() == ".json")) {
    task.format = SourceFormat::kNatinst;
    if (per_split)
      task.fail("source",
                "a Super-NaturalInstructions file is one pool: give it as source.path "
                "and carve splits with split_ratios");
  }
  if (per_split) {
    const std::string* split_values[kNumSplits] = {&src.train, &src.validation, &src.test};
    for (int s = 0; s < kNumSplits; ++s) {
      if (split_values[s]->empty()) continue;
      const std::string key = std::string("source.") + split_name(static_cast<Split>(s));
      task.split_paths[s] = resolve(key, *split_values[s]);
    }
  } else {
    task.pooled_path = resolve("source.path", src.path);
    if (task.format == SourceFormat::kNatinst && fs::is_directory(task.pooled_path))
      task.fail("source.path",
                "a natinst source is one task file (taskNNN_name.json), not a "
                "directory");
    if (src.split_ratios.size() != kNumSplits)
      task.fail("source.split_ratios", fmt::format("expected 3 fractions (train, validation, "
                                                   "test), got {}",
                                                   src.split_ratios.size()));
    double sum = 0;
    for (int s = 0; s < kNumSplits; ++s) {
      if (src.split_ratios[s] < 0) task.fail("source.split_ratios", "fractions must be >= 0");
      task.split_ratios[s] = src.split_ratios[s];
      sum += src.split_ratios[s];
    }
    if (std::fabs(sum - 1.0) > 1e-6)
      task.fail("source.split_ratios", fmt::format("fractions sum to {}, not 1", sum));
  }
  task.split_seed = static_cast<uint64_t>(src.split_seed);

  // ---- fields ----
  const auto add_field = [&](const std::string& name, const std::string& source) {
    const int i = task.field_index(name);
    if (i >= 0) {
      task.fields[i].source = source;
      return;
    }
    task.fields.push_back(FieldDef{name, source, false, false});
    task.field_names.push_back(name);
  };
  std::string default_answer = "answer";
  if (task.format == SourceFormat::kNatinst) {
    if (spec.field_preset != "none")
      task.fail("field_preset",
                "natinst files have fixed fields (input, output, definition, "
                "explanation); remove field_preset");
    add_field("input", "input");
    add_field("output", "output");
    add_field("definition", "Definition");
    add_field("explanation", "explanation");
    task.fields[2].constant = true;
    task.fields[3].optional = true;
    default_answer = "output";
    for (const FieldEntry& f : user_fields)
      config::fail(f.where, "fields." + f.name,
                   "natinst files have fixed fields (input, output, definition, explanation); "
                   "remove `fields:`");
  } else if (spec.field_preset == "alpaca") {
    add_field("instruction", "instruction");
    add_field("input", "input");
    add_field("output", "output");
    task.fields[1].optional = true;
    default_answer = "output";
  } else if (spec.field_preset == "prompt_completion") {
    add_field("prompt", "prompt");
    add_field("completion", "completion");
    default_answer = "completion";
  }
  for (const FieldEntry& f : user_fields) add_field(f.name, f.source);
  if (task.fields.empty())
    task.fail("fields",
              "declare the fields templates use: `fields: [a, b, answer]` (read under "
              "their own key) or `fields: {question: prompt}`, or set field_preset");
  const std::string answer = spec.answer_field.empty() ? default_answer : spec.answer_field;
  task.answer_field = task.field_index(answer);
  if (task.answer_field < 0) {
    const std::string hint = config::suggest(answer, task.field_names);
    task.fail(spec.answer_field.empty() ? "fields" : "answer_field",
              fmt::format("the answer field '{}' is not among the fields ({}){}", answer,
                          fmt::join(task.field_names, ", "),
                          hint.empty() ? "" : fmt::format("; did you mean '{}'?", hint)));
  }
  for (const std::string& o : spec.optional_fields) {
    const int i = task.field_index(o);
    if (i < 0) {
      const std::string hint = config::suggest(o, task.field_names);
      task.fail("optional_fields",
                fmt::format("'{}' is not a field ({}){}", o, fmt::join(task.field_names, ", "),
                            hint.empty() ? "" : fmt::format("; did you mean '{}'?", hint)));
    }
    if (i == task.answer_field)
      task.fail("optional_fields", fmt::format("the answer field '{}' cannot be optional", o));
    task.fields[i].optional = true;
  }

  // ---- metric and labels ----
  if (task.metric == Metric::kClassification) {
    if (spec.labels.size() < 2)
      task.fail("labels",
                "classification needs `labels:` with at least two values of the answer "
                "field");
    std::set<std::string> seen;
    for (const std::string& l : spec.labels) {
      if (l.empty()) task.fail("labels", "a label is empty");
      if (!seen.insert(l).second) task.fail("labels", fmt::format("label '{}' appears twice", l));
    }
    task.labels = spec.labels;
  } else if (!spec.labels.empty()) {
    task.fail("labels", fmt::format("labels are used by metric: classification only (metric is "
                                    "{})",
                                    spec.metric));
  }

  // ---- templates ----
  std::set<std::string> ids;
  const std::string& answer_name = task.field_names[task.answer_field];
  for (size_t i = 0; i < spec.templates.size(); ++i) {
    const TemplateSpec& ts = spec.templates[i];
    Template t;
    t.key_path = fmt::format("templates[{}]", i);
    const std::string kp = t.key_path;
    t.id = ts.id;
    if (ts.id.empty()) task.fail(kp + ".id", "a template id is empty");
    if (!ids.insert(ts.id).second)
      task.fail(kp + ".id", fmt::format("template id '{}' is used twice", ts.id));
    const std::string what = fmt::format("template '{}' of task '{}'", ts.id, task.name);
    const auto compile = [&](const std::string& key, const std::string& text) {
      const std::string path = kp + "." + key;
      return compile_format(text, task.field_names, task.source_of(path), path, what);
    };
    t.instruction = compile("instruction", ts.instruction);
    t.guidelines = compile("guidelines", ts.guidelines);
    t.input = compile("input", ts.input);
    t.output = compile("output", ts.output);
    for (const auto& [key, f] :
         {std::pair<const char*, const Format*>{"instruction", &t.instruction},
          {"guidelines", &t.guidelines},
          {"input", &t.input}}) {
      if (f->uses(task.answer_field))
        task.fail(kp + "." + key,
                  fmt::format("{} puts the answer field '{{{}}}' in the prompt; it belongs in "
                              "`output`",
                              what, answer_name));
    }
    if (!t.output.uses(task.answer_field))
      task.fail(kp + ".output", fmt::format("{}: the output format must use the answer field "
                                            "'{{{}}}'",
                                            what, answer_name));
    t.separator = ts.separator;
    t.few_shot_k = ts.few_shot.k;
    t.few_shot_source = ts.few_shot.source == "positive_examples" ? FewShotSource::kPositiveExamples
                                                                  : FewShotSource::kTrain;
    if (t.few_shot_source == FewShotSource::kPositiveExamples &&
        task.format != SourceFormat::kNatinst)
      task.fail(kp + ".few_shot.source",
                "positive_examples exist only in Super-NaturalInstructions "
                "files (source.format: natinst); use `train`");
    t.few_shot_separator = ts.few_shot.separator;
    t.demo = compile("few_shot.format",
                     ts.few_shot.format.empty() ? ts.input + ts.output : ts.few_shot.format);
    t.eos = ts.eos;
    if (!ts.truncate.field.empty()) {
      t.truncate_field = task.field_index(ts.truncate.field);
      if (t.truncate_field < 0) {
        const std::string hint = config::suggest(ts.truncate.field, task.field_names);
        task.fail(kp + ".truncate.field",
                  fmt::format("{}: unknown field '{}'{} (fields: {})", what, ts.truncate.field,
                              hint.empty() ? "" : fmt::format("; did you mean '{}'?", hint),
                              fmt::join(task.field_names, ", ")));
      }
    }
    t.truncate_left = ts.truncate.side == "left";
    t.held_out = ts.held_out;
    task.templates.push_back(std::move(t));
  }
  if (task.templates.empty()) task.fail("templates", "a task needs at least one template");
  if (task.num_train_templates() == 0)
    task.fail("templates", "every template is held_out; at least one must be used in training");
  return task;
}

std::string task_reference_markdown() {
  std::vector<config::DocRow> rows;
  config::DocWriter doc(rows);
  TaskSpec defaults;
  describe(doc, defaults);
  // `fields` is read by hand (a free-form mapping): its row goes after field_preset.
  const auto at = std::find_if(rows.begin(), rows.end(),
                               [](const config::DocRow& r) { return r.path == "field_preset"; });
  rows.insert(at + 1, config::DocRow{"fields", "mapping or list", "{}", "", kFieldsDoc});
  return config::markdown_table(rows);
}

}  // namespace pft
