// Task files: the bundled collection, key checking with file:line:col and did-you-mean, field
// presets and maps, sources (per-split, carved by ratio, directories, Super-NaturalInstructions),
// and the docs/tasks.md key table.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "bounded_child.h"
#include "data_test_util.h"

namespace pft {
namespace {

using namespace testing_data;

const char* const kBundled[] = {"add",       "reverse",   "sort_digits", "max_digit",
                                "uppercase", "sentiment", "tech_qa"};

// A minimal valid task over `data` (a JSONL file name in the same directory).
std::string simple_task(const std::string& extra = "", const std::string& templates = "") {
  return "name: t\nfields: [q, answer]\nsource:\n  train: train.jsonl\n" + extra + "templates:\n" +
         (templates.empty()
              ? "  - id: plain\n    input: \"Q: {q}\\nA:\"\n    output: \" {answer}\"\n"
              : templates);
}

TEST(TaskFile, BundledTasksLoad) {
  for (const char* name : kBundled) {
    SCOPED_TRACE(name);
    const Task t = load_task(kRepo / "datasets" / "tasks" / (std::string(name) + ".yaml"));
    EXPECT_EQ(t.name, name);
    EXPECT_GE(t.templates.size(), 2u);
    EXPECT_GE(t.num_train_templates(), 1);
    EXPECT_TRUE(std::any_of(t.templates.begin(), t.templates.end(),
                            [](const Template& x) { return x.held_out; }));
    EXPECT_GE(t.answer_field, 0);
    EXPECT_TRUE(t.extra_fields_error);
  }
  const Task s = load_task(kRepo / "datasets" / "tasks" / "sentiment.yaml");
  EXPECT_EQ(s.metric, Metric::kClassification);
  EXPECT_EQ(s.labels, (std::vector<std::string>{"positive", "negative"}));
}

TEST(TaskFile, BundledDatasetsLoad) {
  for (const char* name : kBundled) {
    SCOPED_TRACE(name);
    const TaskDataset d = load(kRepo / "datasets" / "tasks" / (std::string(name) + ".yaml"));
    const std::string n = name;
    const int64_t train = n == "sentiment" ? 600 : n == "tech_qa" ? 32 : 2000;
    const int64_t eval = n == "sentiment" ? 100 : n == "tech_qa" ? 16 : 200;
    EXPECT_EQ(d.size(Split::kTrain), train);
    EXPECT_EQ(d.size(Split::kValidation), eval);
    EXPECT_EQ(d.size(Split::kTest), eval);
    EXPECT_EQ(d.load_report().problems, 0);
    EXPECT_EQ(d.load_report().records, train + 2 * eval);
    EXPECT_FALSE(d.record(Split::kTrain, 0).id.empty());
    EXPECT_NE(d.record(Split::kTrain, 0).origin.find("train.jsonl:1"), std::string::npos)
        << d.record(Split::kTrain, 0).origin;
  }
}

// A task file is YAML read through config::load_file: the same limits (config/tree.h) stop an
// alias bomb in it, naming the task file and line (in a child with bounded memory, so a
// regression fails instead of exhausting the machine).
TEST(TaskFile, AliasBombIsRefusedNamingTheTaskFile) {
  TempDir dir;
  dir.file("train.jsonl", "{\"q\": \"x\", \"answer\": \"y\"}\n");
  std::string bomb = "description: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
  for (int i = 1; i < 9; ++i) {
    bomb += "x" + std::to_string(i) + ": &l" + std::to_string(i) + " [";
    for (int j = 0; j < 9; ++j) bomb += (j ? ", *l" : "*l") + std::to_string(i - 1);
    bomb += "]\n";
  }
  const fs::path f = dir.file("bomb.yaml", simple_task() + bomb);
  const test::BoundedOutcome r = test::run_bounded([&] { load_task(f); });
  EXPECT_TRUE(r.input_error) << r.message;
  EXPECT_NE(r.message.find(f.string() + ":"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("more than 100000 nodes"), std::string::npos) << r.message;
}

TEST(TaskFile, UnknownTopLevelKeySuggests) {
  TempDir dir;
  dir.file("train.jsonl", "{\"q\": \"x\", \"answer\": \"y\"}\n");
  std::string text = simple_task();
  text.replace(text.find("templates:"), 10, "temlates:");
  const fs::path f = dir.file("t.yaml", text);
  expect_input_error([&] { load_task(f); },
                     {f.string() + ":5:1", "unknown key 'temlates'", "did you mean 'templates'"});
  const fs::path g = dir.file("g.yaml", "feilds: [q]\n" + simple_task());
  expect_input_error([&] { load_task(g); }, {g.string() + ":1:1", "did you mean 'fields'"});
}

TEST(TaskFile, NestedKeysAreChecked) {
  TempDir dir;
  dir.file("train.jsonl", "{\"q\": \"x\", \"answer\": \"y\"}\n");
  const fs::path f = dir.file(
      "t.yaml", simple_task("",
                            "  - id: plain\n    input: \"{q}\"\n    output: \" {answer}\"\n"
                            "    few_shot: {kk: 2}\n"));
  expect_input_error([&] { load_task(f); },
                     {f.string() + ":9:", "templates[0].few_shot.kk", "did you mean 'k'"});
  const fs::path g =
      dir.file("g.yaml", simple_task("", "  - id: plain\n    output: \" {answer}\"\n"));
  expect_input_error([&] { load_task(g); }, {g.string(), "templates[0].input", "missing"});
  const fs::path h = dir.file(
      "h.yaml", simple_task("",
                            "  - id: plain\n    input: \"{q}\"\n    output: \" {answer}\"\n"
                            "    truncate: {field: q, side: middle}\n"));
  expect_input_error([&] { load_task(h); },
                     {h.string() + ":9:", "templates[0].truncate.side", "not one of: left, right"});
}

TEST(TaskFile, UnknownTemplateFieldNamesTaskTemplateAndField) {
  TempDir dir;
  dir.file("train.jsonl", "{\"q\": \"x\", \"answer\": \"y\"}\n");
  const fs::path f = dir.file(
      "t.yaml", simple_task("", "  - id: plain\n    input: \"{q}\"\n    output: \" {anwser}\"\n"));
  expect_input_error([&] { load_task(f); },
                     {f.string() + ":8:13", "templates[0].output", "template 'plain' of task 't'",
                      "unknown field 'anwser'", "did you mean 'answer'", "fields: q, answer"});
  const fs::path g = dir.file(
      "g.yaml", simple_task("", "  - id: plain\n    input: \"{q\"\n    output: \" {answer}\"\n"));
  expect_input_error([&] { load_task(g); }, {"templates[0].input", "unclosed '{'"});
  const fs::path h = dir.file(
      "h.yaml", simple_task("",
                            "  - id: plain\n    input: \"{q}\"\n    output: \" {answer}\"\n"
                            "    truncate: {field: qq}\n"));
  expect_input_error([&] { load_task(h); },
                     {"templates[0].truncate.field", "unknown field 'qq'", "did you mean 'q'"});
}

TEST(TaskFile, TemplateRules) {
  TempDir dir;
  dir.file("train.jsonl", "{\"q\": \"x\", \"answer\": \"y\"}\n");
  // The answer in the prompt.
  const fs::path a = dir.file(
      "a.yaml",
      simple_task("", "  - id: leak\n    input: \"{q} {answer}\"\n    output: \" {answer}\"\n"));
  expect_input_error([&] { load_task(a); }, {"templates[0].input", "puts the answer field"});
  // An output without the answer.
  const fs::path b =
      dir.file("b.yaml", simple_task("", "  - id: x\n    input: \"{q}\"\n    output: \" ok\"\n"));
  expect_input_error([&] { load_task(b); }, {"templates[0].output", "must use the answer field"});
  // Every template held out.
  const fs::path c =
      dir.file("c.yaml", simple_task("",
                                     "  - id: x\n    input: \"{q}\"\n    output: \" {answer}\"\n"
                                     "    held_out: true\n"));
  expect_input_error([&] { load_task(c); }, {"every template is held_out"});
  // Duplicate ids.
  const fs::path d =
      dir.file("d.yaml", simple_task("",
                                     "  - id: x\n    input: \"{q}\"\n    output: \" {answer}\"\n"
                                     "  - id: x\n    input: \"{q}\"\n    output: \" {answer}\"\n"));
  expect_input_error([&] { load_task(d); }, {"templates[1].id", "used twice"});
  // positive_examples outside natinst.
  const fs::path e =
      dir.file("e.yaml", simple_task("",
                                     "  - id: x\n    input: \"{q}\"\n    output: \" {answer}\"\n"
                                     "    few_shot: {k: 1, source: positive_examples}\n"));
  expect_input_error([&] { load_task(e); }, {"few_shot.source", "natinst"});
  // Classification needs labels; labels need classification.
  const fs::path f = dir.file("f.yaml", simple_task("metric: classification\n"));
  expect_input_error([&] { load_task(f); }, {"labels", "at least two"});
  const fs::path g = dir.file("g.yaml", simple_task("labels: [a, b]\n"));
  expect_input_error([&] { load_task(g); }, {"labels", "classification only"});
  // Literal braces.
  const fs::path h = dir.file(
      "h.yaml", simple_task("", "  - id: x\n    input: \"{{{q}}}\"\n    output: \" {answer}\"\n"));
  const Task t = load_task(h);
  EXPECT_EQ(t.templates[0].input.text(), "{{{q}}}");
  ASSERT_EQ(t.templates[0].input.pieces().size(), 2u);
  EXPECT_EQ(t.templates[0].input.pieces()[0].literal, "{");
  EXPECT_EQ(t.templates[0].input.pieces()[1].literal, "}");
}

TEST(TaskFile, SourceRules) {
  TempDir dir;
  dir.file("train.jsonl", "{\"q\": \"x\", \"answer\": \"y\"}\n");
  const fs::path a = dir.file("a.yaml",
                              "name: t\nfields: [q, answer]\nsource:\n  train: nope.jsonl\n"
                              "templates:\n  - {id: x, input: \"{q}\", output: \" {answer}\"}\n");
  expect_input_error([&] { load_task(a); },
                     {a.string() + ":4:10", "source.train", "'nope.jsonl' does not exist",
                      "relative to the task file"});
  const fs::path b = dir.file("b.yaml", simple_task().replace(simple_task().find("source:"), 7,
                                                              "source:\n  path: train.jsonl"));
  expect_input_error([&] { load_task(b); }, {"source.path", "not both"});
  const fs::path c = dir.file("c.yaml",
                              "name: t\nfields: [q, answer]\nsource:\n  path: train.jsonl\n"
                              "  split_ratios: [0.5, 0.25, 0.125]\n"
                              "templates:\n  - {id: x, input: \"{q}\", output: \" {answer}\"}\n");
  expect_input_error([&] { load_task(c); }, {c.string() + ":5:", "split_ratios", "sum to 0.875"});
  const fs::path d = dir.file("d.yaml",
                              "name: t\nfields: [q, answer]\n"
                              "templates:\n  - {id: x, input: \"{q}\", output: \" {answer}\"}\n");
  expect_input_error([&] { load_task(d); }, {"source", "no data"});
  const fs::path e = dir.file("e.yaml",
                              "name: t\nsource:\n  train: train.jsonl\n"
                              "templates:\n  - {id: x, input: \"{q}\", output: \" {answer}\"}\n");
  expect_input_error([&] { load_task(e); }, {"fields", "declare the fields"});
  const fs::path f = dir.file("f.yaml", "name: bad name\n" + simple_task().substr(8));
  expect_input_error([&] { load_task(f); }, {f.string() + ":1:7", "not a valid task name"});
}

TEST(TaskFile, PresetsAndFieldMaps) {
  TempDir dir;
  dir.file("alpaca.jsonl",
           "{\"instruction\": \"Say hi\", \"input\": \"\", \"output\": \"hi\"}\n"
           "{\"instruction\": \"Add\", \"input\": \"1 2\", \"output\": \"3\"}\n"
           "{\"instruction\": \"No input key\", \"output\": \"ok\"}\n");
  const fs::path a = dir.file("a.yaml", R"(name: alpaca_like
field_preset: alpaca
source: {train: alpaca.jsonl}
templates:
  - id: alpaca
    instruction: "{instruction}"
    input: "{input}\n### Response:"
    output: " {output}"
)");
  const TaskDataset da = load(a);
  EXPECT_EQ(da.task().field_names, (std::vector<std::string>{"instruction", "input", "output"}));
  EXPECT_EQ(da.task().field_names[da.task().answer_field], "output");
  ASSERT_EQ(da.size(Split::kTrain), 3);
  EXPECT_EQ(da.record(Split::kTrain, 2).values[1], "");  // optional input missing
  EXPECT_EQ(da.texts(Split::kTrain, 1, 0).prompt(), "Add\n\n1 2\n### Response:");

  dir.file("pc.jsonl", "{\"prompt\": \"2+2=\", \"completion\": \"4\"}\n");
  const fs::path b = dir.file("b.yaml", R"(name: pc
field_preset: prompt_completion
source: {train: pc.jsonl}
templates: [{id: raw, input: "{prompt}", output: "{completion}"}]
)");
  const TaskDataset db = load(b);
  EXPECT_EQ(db.references(Split::kTrain, 0), (std::vector<std::string>{"4"}));

  // A user map renames record keys; answer_field picks the answer.
  dir.file("qa.jsonl", "{\"Q\": \"why?\", \"A\": [\"because\", \"since\"], \"id\": 7}\n");
  const fs::path c = dir.file("c.yaml", R"(name: qa
fields: {question: Q, reply: A}
answer_field: reply
extra_fields: error
source: {train: qa.jsonl}
templates: [{id: x, input: "{question}", output: " {reply}"}]
)");
  const TaskDataset dc = load(c);
  EXPECT_EQ(dc.record(Split::kTrain, 0).values[0], "why?");
  EXPECT_EQ(dc.references(Split::kTrain, 0), (std::vector<std::string>{"because", "since"}));
  EXPECT_EQ(dc.record(Split::kTrain, 0).id, "7");
  const fs::path d = dir.file("d.yaml", R"(name: qa
fields: {question: Q, reply: A}
answer_field: replay
source: {train: qa.jsonl}
templates: [{id: x, input: "{question}", output: " {reply}"}]
)");
  expect_input_error([&] { load_task(d); }, {"answer_field", "did you mean 'reply'"});
  const fs::path e = dir.file("e.yaml", R"(name: qa
fields: {question: Q, reply: A}
answer_field: reply
optional_fields: [questoin]
source: {train: qa.jsonl}
templates: [{id: x, input: "{question}", output: " {reply}"}]
)");
  expect_input_error([&] { load_task(e); }, {"optional_fields", "did you mean 'question'"});
}

TEST(TaskFile, DefaultsComposition) {
  TempDir dir;
  dir.file("train.jsonl", "{\"q\": \"x\", \"answer\": \"y\"}\n");
  dir.file("base.yaml", "fields: [q, answer]\nsource: {train: train.jsonl}\nmetric: loss\n");
  const fs::path f = dir.file("t.yaml",
                              "defaults: [base.yaml]\nname: t\n"
                              "templates: [{id: x, input: \"{q}\", output: \" {answer}\"}]\n");
  const Task t = load_task(f);
  EXPECT_EQ(t.metric, Metric::kLoss);
  EXPECT_EQ(t.field_names, (std::vector<std::string>{"q", "answer"}));
}

std::string numbered_jsonl(int from, int to) {
  std::string s;
  for (int i = from; i < to; ++i)
    s += fmt::format("{{\"q\": \"q{}\", \"answer\": \"a{}\"}}\n", i, i);
  return s;
}

std::vector<std::string> split_questions(const TaskDataset& d, Split s) {
  std::vector<std::string> out;
  for (int64_t i = 0; i < d.size(s); ++i) out.push_back(d.record(s, i).values[0]);
  return out;
}

TEST(TaskFile, CarvedSplitsAreDeterministicDisjointAndOrdered) {
  TempDir dir;
  dir.file("all.jsonl", numbered_jsonl(0, 100));
  const std::string body =
      "fields: [q, answer]\nsource:\n  path: all.jsonl\n"
      "  split_ratios: [0.8, 0.1, 0.1]\n  split_seed: {}\n"
      "templates: [{{id: x, input: \"{{q}}\", output: \" {{answer}}\"}}]\n";
  const fs::path f = dir.file("t.yaml", "name: t\n" + fmt::format(fmt::runtime(body), 3));
  const TaskDataset a = load(f), b = load(f);
  EXPECT_EQ(a.size(Split::kTrain), 80);
  EXPECT_EQ(a.size(Split::kValidation), 10);
  EXPECT_EQ(a.size(Split::kTest), 10);
  std::set<std::string> all;
  for (int s = 0; s < kNumSplits; ++s) {
    const auto qs = split_questions(a, static_cast<Split>(s));
    EXPECT_EQ(qs, split_questions(b, static_cast<Split>(s)));  // deterministic
    // File order within a split.
    std::vector<int> nums;
    for (const auto& q : qs) nums.push_back(std::stoi(q.substr(1)));
    EXPECT_TRUE(std::is_sorted(nums.begin(), nums.end()));
    all.insert(qs.begin(), qs.end());
  }
  EXPECT_EQ(all.size(), 100u);  // disjoint, complete
  const fs::path g = dir.file("g.yaml", "name: t\n" + fmt::format(fmt::runtime(body), 4));
  EXPECT_NE(split_questions(load(g), Split::kValidation), split_questions(a, Split::kValidation));

  // Ratio 0: no such split. Too few records for a split: error.
  const fs::path h = dir.file("h.yaml",
                              "name: t\nfields: [q, answer]\nsource:\n  path: all.jsonl\n"
                              "  split_ratios: [0.9, 0.1, 0]\n"
                              "templates: [{id: x, input: \"{q}\", output: \" {answer}\"}]\n");
  const TaskDataset dh = load(h);
  EXPECT_EQ(dh.size(Split::kTrain), 90);
  EXPECT_EQ(dh.size(Split::kValidation), 10);
  EXPECT_FALSE(dh.has_split(Split::kTest));
  dir.file("two.jsonl", numbered_jsonl(0, 2));
  const fs::path k = dir.file("k.yaml",
                              "name: t\nfields: [q, answer]\nsource:\n  path: two.jsonl\n"
                              "templates: [{id: x, input: \"{q}\", output: \" {answer}\"}]\n");
  expect_input_error([&] { load(k); }, {"split_ratios", "is empty", "2 records"});
}

TEST(TaskFile, DirectoryOfJsonl) {
  TempDir dir;
  dir.file("data/b.jsonl", numbered_jsonl(5, 10));
  dir.file("data/a.jsonl", numbered_jsonl(0, 5));
  dir.file("data/notes.txt", "ignored\n");
  dir.file("eval/v.jsonl", numbered_jsonl(10, 12));
  const fs::path f = dir.file("t.yaml",
                              "name: t\nfields: [q, answer]\n"
                              "source: {train: data, validation: eval}\n"
                              "templates: [{id: x, input: \"{q}\", output: \" {answer}\"}]\n");
  const TaskDataset d = load(f);
  ASSERT_EQ(d.size(Split::kTrain), 10);
  EXPECT_EQ(d.record(Split::kTrain, 0).values[0], "q0");  // a.jsonl before b.jsonl
  EXPECT_EQ(d.record(Split::kTrain, 9).values[0], "q9");
  EXPECT_NE(d.record(Split::kTrain, 9).origin.find("b.jsonl:5"), std::string::npos);
  EXPECT_EQ(d.size(Split::kValidation), 2);
  EXPECT_FALSE(d.has_split(Split::kTest));
  dir.file("empty/x.txt", "");
  const fs::path g = dir.file("g.yaml",
                              "name: t\nfields: [q, answer]\nsource: {train: empty}\n"
                              "templates: [{id: x, input: \"{q}\", output: \" {answer}\"}]\n");
  expect_input_error([&] { load(g); }, {"no *.jsonl file"});
}

TEST(TaskFile, NatinstExampleLoads) {
  const TaskDataset d = load(kRepo / "tests" / "data" / "natinst_task1189.yaml");
  const Task& t = d.task();
  EXPECT_EQ(t.format, SourceFormat::kNatinst);
  EXPECT_EQ(t.field_names,
            (std::vector<std::string>{"input", "output", "definition", "explanation"}));
  EXPECT_EQ(d.size(Split::kTrain) + d.size(Split::kValidation) + d.size(Split::kTest), 113);
  EXPECT_EQ(d.size(Split::kTrain), 90);  // round(0.8 * 113)
  const std::string& def = d.constants()[static_cast<size_t>(t.field_index("definition"))];
  EXPECT_EQ(def.rfind("In this task, you are given a string S and a character c", 0), 0u) << def;
  EXPECT_EQ(d.pool(t.templates[0]).size(), 2u);
  EXPECT_EQ(d.pool(t.templates[0])[0].values[3], "h is not present in the string");
  const Record& r = d.record(Split::kTrain, 0);
  ASSERT_EQ(r.references.size(), 1u);
  EXPECT_TRUE(r.references[0] == "0" || r.references[0] == "1");
  EXPECT_NE(r.origin.find("task1189_check_char_in_string.json: Instances["), std::string::npos)
      << r.origin;
}

TEST(TaskFile, EveryNatinstSampleLoads) {
  TempDir dir;
  const std::pair<const char*, int> files[] = {{"task063_first_i_elements", 63},
                                               {"task085_unnatural_addsub_arithmetic", 102},
                                               {"task1088_array_of_products", 75},
                                               {"task1189_check_char_in_string", 113}};
  for (const auto& [name, instances] : files) {
    SCOPED_TRACE(name);
    const fs::path f = dir.file(
        std::string(name) + ".yaml",
        fmt::format(
            "name: {}\nsource: {{path: {}}}\ntemplates:\n"
            "  - {{id: x, instruction: \"{{definition}}\", input: \"Input: {{input}}\\nOutput:\","
            " output: \" {{output}}\", few_shot: {{k: 2, source: positive_examples}}}}\n",
            name, (kNatinstDir / (std::string(name) + ".json")).string()));
    const TaskDataset d = load(f);
    EXPECT_EQ(d.load_report().records, instances);
    EXPECT_EQ(d.load_report().problems, 0);
    EXPECT_FALSE(d.constants()[2].empty());
    EXPECT_EQ(d.pool(d.task().templates[0]).size(), 2u);
    // Definition as a list (task063) is joined; no JSON brackets leak in.
    EXPECT_NE(d.constants()[2].front(), '[');
  }
}

TEST(TaskFile, NatinstRejectsFieldSettings) {
  TempDir dir;
  const fs::path f = dir.file(
      "t.yaml",
      fmt::format("name: n\nfields: [q]\nsource: {{path: {}}}\n"
                  "templates: [{{id: x, input: \"{{input}}\", output: \" {{output}}\"}}]\n",
                  (kNatinstDir / "task1189_check_char_in_string.json").string()));
  expect_input_error([&] { load_task(f); }, {"fields.q", "fixed fields"});
}

TEST(TaskFile, DocsListEveryKey) {
  std::ifstream in(kRepo / "docs" / "tasks.md");
  ASSERT_TRUE(in) << "docs/tasks.md is missing";
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_NE(ss.str().find(task_reference_markdown()), std::string::npos)
      << "docs/tasks.md is out of date: paste the output of `pft data docs`:\n"
      << task_reference_markdown();
}

TEST(TaskFile, TaskFilesResolveRelativeToTheConfig) {
  TempDir dir;
  dir.file("train.jsonl", "{\"q\": \"x\", \"answer\": \"y\"}\n");
  dir.file("tasks/t.yaml",
           "name: t\nfields: [q, answer]\nsource: {train: ../train.jsonl}\n"
           "templates: [{id: x, input: \"{q}\", output: \" {answer}\"}]\n");
  const fs::path cfg = dir.file("conf/c.yaml",
                                "data:\n  source: tasks\n  tasks: [../tasks/t.yaml]\n"
                                "train: {steps: 1, global_batch_size: 1, lr: 0.1}\n");
  const Config config = load_config(cfg, {});
  const auto files = task_files(config);
  ASSERT_EQ(files.size(), 1u);
  EXPECT_TRUE(fs::exists(files[0])) << files[0];
  LoadReport total;
  const std::vector<TaskDataset> tasks = load_task_datasets(config, &total);
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(total.records, 1);

  const fs::path bad = dir.file("conf/bad.yaml",
                                "data:\n  source: tasks\n  tasks: [t.yaml]\n"
                                "train: {steps: 1, global_batch_size: 1, lr: 0.1}\n");
  expect_input_error([&] { load_task_datasets(load_config(bad, {})); },
                     {bad.string() + ":3:", "data.tasks[0]", "'t.yaml' does not exist"});
  const fs::path dup =
      dir.file("conf/dup.yaml",
               "data:\n  source: tasks\n  tasks: [../tasks/t.yaml, ../tasks/t.yaml]\n"
               "train: {steps: 1, global_batch_size: 1, lr: 0.1}\n");
  expect_input_error([&] { load_task_datasets(load_config(dup, {})); }, {"names must be unique"});
}

}  // namespace
}  // namespace pft
