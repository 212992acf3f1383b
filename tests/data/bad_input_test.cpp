// Bad input, strict and lenient: every case names file:line (or task/template) and the reason in
// strict mode; lenient mode skips, counts by reason and summarises, the same way every time.
#include <gtest/gtest.h>

#include "data/tokenizer.h"
#include "data_test_util.h"

namespace pft {
namespace {

using namespace testing_data;

constexpr const char* kGood = "{\"q\": \"what\", \"answer\": \"that\"}\n";

// A task over `content` (train.jsonl) with one zero-shot template; `extra` adds task keys.
struct Case {
  TempDir dir;
  fs::path task_file;
  std::string data_file;
  Case(const std::string& content, const std::string& extra = "") {
    data_file = dir.file("train.jsonl", content).lexically_normal().string();
    task_file =
        dir.file("t.yaml", "name: t\nfields: [q, answer]\nsource: {train: train.jsonl}\n" + extra +
                               "templates: [{id: x, input: \"{q}\", output: \" {answer}\"}]\n");
  }
  TaskDataset load(bool strict = true) const {
    return testing_data::load(task_file, options(256, strict));
  }
  // Strict: throws naming `line` and every part. Lenient: skips exactly one record.
  void expect(int line, std::initializer_list<std::string> parts, const std::string& reason) const {
    std::vector<std::string> all(parts);
    all.push_back(fmt::format("{}:{}", data_file, line));
    all.push_back("task 't'");
    const std::string msg = expect_input_error([&] { load(true); }, {});
    for (const std::string& p : all)
      EXPECT_NE(msg.find(p), std::string::npos)
          << "message \"" << msg << "\" lacks \"" << p << "\"";
    const TaskDataset d = load(false);
    EXPECT_EQ(d.load_report().problems, 1);
    EXPECT_EQ(d.load_report().reasons.at(reason), 1) << d.load_report().summary();
    EXPECT_EQ(d.size(Split::kTrain), 2);
    ASSERT_EQ(d.load_report().messages.size(), 1u);
    EXPECT_EQ(d.load_report().messages[0], msg);  // lenient keeps the strict message
  }
};

std::string around(const std::string& bad) { return std::string(kGood) + bad + "\n" + kGood; }

TEST(BadInput, MalformedJson) {
  Case c(around("{\"q\": \"what\", \"answer\": }"));
  c.expect(2, {"malformed JSON"}, "malformed JSON");
  Case d(around("{\"q\": \"a\", \"answer\": \"b\"} trailing"));
  d.expect(2, {"malformed JSON"}, "malformed JSON");
  Case e(around("[1, 2]"));
  e.expect(2, {"expected one JSON object per line, found a list"}, "malformed JSON");
}

TEST(BadInput, InvalidUtf8) {
  Case c(around("{\"q\": \"caf\xC3\x28\", \"answer\": \"x\"}"));
  c.expect(2, {":2:11", "invalid UTF-8", "byte 0xC3"}, "invalid UTF-8");
}

TEST(BadInput, NulBytes) {
  Case c(around(std::string("{\"q\": \"a\0b\", \"answer\": \"x\"}", 27)));
  c.expect(2, {":2:9", "NUL byte"}, "NUL byte");
  Case d(around("{\"q\": \"a\\u0000b\", \"answer\": \"x\"}"));
  d.expect(2, {"key 'q' contains a NUL character"}, "NUL byte");
}

TEST(BadInput, MissingField) {
  Case c(around("{\"q\": \"what\", \"anwser\": \"that\"}"));
  c.expect(2, {"missing key 'answer'", "did you mean 'anwser'", "the record has: q, anwser"},
           "missing field");
}

TEST(BadInput, ExtraField) {
  const std::string line = "{\"q\": \"what\", \"answer\": \"that\", \"note\": 1, \"id\": \"r2\"}";
  Case c(around(line), "extra_fields: error\n");
  c.expect(2, {"key 'note' is not read by the task", "extra_fields: ignore"}, "extra field");
  Case ok(around(line));  // default: ignored
  EXPECT_EQ(ok.load().size(Split::kTrain), 3);
}

TEST(BadInput, WrongTypedFields) {
  Case c(around("{\"q\": {\"nested\": 1}, \"answer\": \"that\"}"));
  c.expect(2, {"key 'q' is an object; expected a string (or a number)"}, "wrong type");
  Case d(around("{\"q\": \"what\", \"answer\": [\"ok\", 3]}"));
  d.expect(2, {"key 'answer'[1] is a number; answers must be strings"}, "wrong type");
  Case e(around("{\"q\": \"what\", \"answer\": []}"));
  e.expect(2, {"empty list"}, "wrong type");
  Case f(around("{\"q\": null, \"answer\": \"x\"}"));
  f.expect(2, {"key 'q' is null"}, "wrong type");
  // Numbers are taken as written.
  Case n(around("{\"q\": 12, \"answer\": 3.5}"));
  const TaskDataset d2 = n.load();
  EXPECT_EQ(d2.record(Split::kTrain, 1).values[0], "12");
  EXPECT_EQ(d2.references(Split::kTrain, 1)[0], "3.5");
}

TEST(BadInput, AnswerOutsideTheLabels) {
  Case c(around("{\"q\": \"what\", \"answer\": \"neutral\"}"),
         "metric: classification\nlabels: [that, neutrall]\n");
  c.expect(2,
           {"answer 'neutral' is not one of the labels: that, neutrall", "did you mean 'neutrall'"},
           "not a label");
}

TEST(BadInput, EmptyFileAndEmptySplit) {
  Case c("");
  expect_input_error([&] { c.load(true); }, {c.data_file, "empty file (no records)"});
  Case blank("\n  \n\n");
  expect_input_error([&] { blank.load(true); }, {"empty file"});
  // Lenient: the empty file is counted, then the split has nothing: always an error.
  expect_input_error([&] { c.load(false); },
                     {"t.yaml:3:", "source.train", "split 'train' has no records", "1 empty file"});
  Case all_bad("{bad\n{worse\n");
  expect_input_error([&] { all_bad.load(false); },
                     {"split 'train' has no records", "2 malformed JSON"});
}

TEST(BadInput, LineOverTheCapIsRefused) {
  const std::string huge = "{\"q\": \"" + std::string(10 << 20, 'x') + "\", \"answer\": \"y\"}";
  Case c(around(huge));
  c.expect(2, {"line is 10485784 bytes, over the limit of 1048576 bytes (1 MiB)"}, "line too long");
  // Just under the cap is fine.
  const std::string big =
      "{\"q\": \"" + std::string(kMaxLineBytes - 30, 'x') + "\", \"answer\": \"y\"}";
  ASSERT_LE(big.size(), kMaxLineBytes);
  Case ok(around(big));
  EXPECT_EQ(ok.load().size(Split::kTrain), 3);
}

TEST(BadInput, TooLongExampleIsTruncatedAndCounted) {
  std::string data;
  for (int i = 0; i < 4; ++i)
    data +=
        fmt::format("{{\"q\": \"{}\", \"answer\": \"y\"}}\n", std::string(i == 2 ? 500 : 5, 'x'));
  Case c(data);
  const TaskDataset d = c.load();
  const auto tok = load_tokenizer("byte");
  int64_t truncated = 0;
  for (int64_t i = 0; i < d.size(Split::kTrain); ++i) {
    const RenderedExample ex = d.render(Split::kTrain, i, 0, *tok);
    EXPECT_LE(ex.tokens.size(), 256u);
    truncated += ex.truncated;
  }
  EXPECT_EQ(truncated, 1);
}

TEST(BadInput, TemplateNamingAnUnknownField) {
  Case c(kGood);
  const fs::path f = c.dir.file("u.yaml",
                                "name: t\nfields: [q, answer]\nsource: {train: train.jsonl}\n"
                                "templates:\n  - id: ask\n    input: \"{question}\"\n"
                                "    output: \" {answer}\"\n");
  expect_input_error([&] { load_task(f); },
                     {f.string() + ":6:12", "templates[0].input", "template 'ask' of task 't'",
                      "unknown field 'question'", "fields: q, answer"});
}

TEST(BadInput, FewShotLargerThanThePool) {
  Case c(std::string(kGood) + kGood + kGood);
  const fs::path f = c.dir.file("k.yaml",
                                "name: t\nfields: [q, answer]\nsource: {train: train.jsonl}\n"
                                "templates:\n  - id: five\n    input: \"{q}\"\n"
                                "    output: \" {answer}\"\n    few_shot: {k: 5}\n");
  expect_input_error([&] { load(f); },
                     {f.string() + ":8:", "templates[0].few_shot.k", "template 'five'",
                      "k = 5 demonstrations but the train pool has 3 examples"});
  // From the train pool, an example of the train split cannot use itself: k = 3 of 3 fails too.
  const fs::path g = c.dir.file("g.yaml",
                                "name: t\nfields: [q, answer]\nsource: {train: train.jsonl}\n"
                                "templates: [{id: x, input: \"{q}\", output: \" {answer}\","
                                " few_shot: {k: 3}}]\n");
  expect_input_error([&] { load(g); }, {"one less for an example of the pool itself"});
}

// Bytes only: no end-of-text token (eos_id() == -1), as some tokenizer.json files have.
class NoEosTokenizer final : public Tokenizer {
 public:
  void encode_append(std::string_view text, bool, std::vector<int32_t>& out) const override {
    for (char c : text) out.push_back(static_cast<unsigned char>(c));
  }
  std::string decode(std::span<const int32_t> ids) const override {
    std::string s;
    for (int32_t id : ids) s.push_back(static_cast<char>(id));
    return s;
  }
  int32_t vocab_size() const override { return 256; }
  int32_t eos_id() const override { return -1; }
  std::optional<int32_t> pad_id() const override { return std::nullopt; }
  std::optional<int32_t> token_to_id(std::string_view) const override { return std::nullopt; }
  std::string id_to_token(int32_t id) const override {
    return std::string(1, static_cast<char>(id));
  }
  std::string describe() const override { return "bytes without eos"; }
};

TEST(BadInput, EosWithoutAnEosToken) {
  const NoEosTokenizer tok;
  Case c(kGood);
  const TaskDataset d = c.load();
  expect_input_error([&] { d.render(Split::kTrain, 0, 0, tok); },
                     {"t.yaml:4:", "templates[0].eos", "template 'x'",
                      "(bytes without eos) has none; set eos: false"});
  const fs::path f =
      c.dir.file("n.yaml",
                 "name: t\nfields: [q, answer]\nsource: {train: train.jsonl}\n"
                 "templates: [{id: x, input: \"{q}\", output: \" {answer}\", eos: false}]\n");
  const RenderedExample ex = load(f).render(Split::kTrain, 0, 0, tok);
  EXPECT_EQ(ex.answer_tokens, 5);  // " that"
}

TEST(BadInput, LenientCountsEveryReasonTheSameWayEveryTime) {
  const std::string data = std::string(kGood) + "{oops\n" + "{\"q\": 1}\n" + kGood +
                           "{\"q\": \"a\", \"answer\": {}}\n" + "not json at all\n" +
                           "\xFF\xFE{}\n" + kGood;
  Case c(data);
  const TaskDataset a = c.load(false), b = c.load(false);
  EXPECT_EQ(a.size(Split::kTrain), 3);
  EXPECT_EQ(a.load_report().records, 3);
  EXPECT_EQ(a.load_report().problems, 5);
  EXPECT_EQ(a.load_report().reasons.at("malformed JSON"), 2);
  EXPECT_EQ(a.load_report().reasons.at("missing field"), 1);
  EXPECT_EQ(a.load_report().reasons.at("wrong type"), 1);
  EXPECT_EQ(a.load_report().reasons.at("invalid UTF-8"), 1);
  EXPECT_EQ(a.load_report().summary(),
            "5 problems (1 invalid UTF-8, 2 malformed JSON, 1 missing field, 1 wrong type)");
  EXPECT_EQ(a.load_report().messages, b.load_report().messages);
  EXPECT_NE(a.load_report().messages[0].find(c.data_file + ":2:"), std::string::npos);
  // The records kept are the good ones, with their own line numbers.
  EXPECT_NE(a.record(Split::kTrain, 1).origin.find(":4"), std::string::npos);
  // Strict stops at the first.
  expect_input_error([&] { c.load(true); }, {c.data_file + ":2:", "malformed JSON"});
}

TEST(BadInput, CrlfBomAndBlankLinesAreFine) {
  Case c(
      "\xEF\xBB\xBF{\"q\": \"a\", \"answer\": \"b\"}\r\n\r\n   \n{\"q\": \"c\", \"answer\": "
      "\"d\"}\r\n");
  const TaskDataset d = c.load();
  ASSERT_EQ(d.size(Split::kTrain), 2);
  EXPECT_EQ(d.references(Split::kTrain, 1)[0], "d");
  EXPECT_NE(d.record(Split::kTrain, 1).origin.find(":4"), std::string::npos);
}

TEST(BadInput, NatinstFileProblems) {
  TempDir dir;
  const auto task = [&](const fs::path& json) {
    return dir.file(
        "n.yaml",
        fmt::format("name: n\nsource: {{path: {}}}\n"
                    "templates: [{{id: x, input: \"{{input}}\", output: \" {{output}}\"}}]\n",
                    json.string()));
  };
  const fs::path broken = dir.file(
      "broken.json", "{\"Definition\": [\"d\"],\n \"Instances\": [\n  {\"input\": }\n]}\n");
  expect_input_error([&] { load(task(broken)); }, {"broken.json:3:13", "malformed JSON"});
  const fs::path nodef = dir.file("nodef.json", "{\"Instances\": []}");
  expect_input_error([&] { load(task(nodef)); }, {"nodef.json", "no \"Definition\""});
  std::string inst;
  for (int i = 0; i < 20; ++i)
    inst += fmt::format("{}{{\"input\": \"i{}\", \"output\": [\"o{}\"]}}", i ? ", " : "", i, i);
  const fs::path bad_output =
      dir.file("bad.json", "{\"Definition\": \"d\", \"Instances\": [" + inst +
                               ", {\"input\": \"x\", \"output\": 7}, {\"output\": [\"y\"]}]}");
  expect_input_error([&] { load(task(bad_output)); },
                     {"bad.json: Instances[20]", "'output' is a number"});
  const TaskDataset lenient = load(task(bad_output), options(256, false));
  EXPECT_EQ(lenient.load_report().problems, 2);
  EXPECT_EQ(lenient.load_report().records, 20);
  EXPECT_NE(
      lenient.load_report().messages[1].find("Instances[21]: error: task 'n': missing key 'input'"),
      std::string::npos)
      << lenient.load_report().messages[1];
}

TEST(BadInput, BadTaskYamlNamesFileLineAndKey) {
  Case c(kGood);
  const fs::path f = c.dir.file("y.yaml",
                                "name: t\nfields: [q, answer]\nsource: {train: train.jsonl}\n"
                                "metric: clasification\n"
                                "templates: [{id: x, input: \"{q}\", output: \" {answer}\"}]\n");
  expect_input_error([&] { load_task(f); },
                     {f.string() + ":4:9", "metric", "'clasification' is not one of",
                      "did you mean 'classification'"});
  const fs::path g = c.dir.file("z.yaml", "name: [t\nfields: q\n");
  expect_input_error([&] { load_task(g); }, {g.string() + ":2:", "invalid YAML"});
}

}  // namespace
}  // namespace pft
