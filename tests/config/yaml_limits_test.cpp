// The limits every YAML text pft reads is parsed under (config/tree.h, Note [YAML limits]): an
// alias bomb at the top level, under schedule.phases, in a --set value and in a composed file;
// a recursive alias; nesting; alias count; size; the number of composed files; a directory named
// as the config. Each hostile input runs in a child with 2 GiB of address space
// (tests/bounded_child.h), so a regression fails here instead of exhausting the machine. And the
// files pft ships are measured: far inside every limit.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "bounded_child.h"
#include "config/config.h"
#include "config/tree.h"
#include "core/error.h"

namespace pft {
namespace {

namespace fs = std::filesystem;
using test::BoundedOutcome;
using test::run_bounded;

const char* kHead = R"(run:
  dir: runs/test
train:
  steps: 10
  global_batch_size: 8
  lr: 1.0e-3
)";

// A "billion laughs": `levels` anchors l0..l{levels-1}, each a list of nine aliases of the one
// before (l0: nine scalars), one per line, each line prefixed with `indent`: 9^levels scalars
// once expanded, in about 50 bytes a line.
std::string bomb(int levels, const std::string& indent) {
  std::string s = indent + "l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
  for (int i = 1; i < levels; ++i) {
    const std::string a = "*l" + std::to_string(i - 1);
    s += indent + "l" + std::to_string(i) + ": &l" + std::to_string(i) + " [" + a;
    for (int j = 1; j < 9; ++j) s += ", " + a;
    s += "]\n";
  }
  return s;
}

// The 1-based line of `text` where `needle` first occurs.
int line_of(const std::string& text, const std::string& needle) {
  const size_t at = text.find(needle);
  EXPECT_NE(at, std::string::npos) << needle;
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + static_cast<long>(at), '\n'));
}

// The alias that tips a bomb over kMaxYamlNodes: anchor l_k holds 1 + 9 * |l_{k-1}| nodes
// (|l0| = 10), so l4 holds 66,430 and the first alias of l4 in l5's list passes 100,000.
constexpr int kTippingLevel = 5;
static_assert(config::kMaxYamlNodes == 100'000, "recompute kTippingLevel for the new limit");

void expect_limit_error(const BoundedOutcome& r, const std::string& where,
                        const std::string& limit) {
  EXPECT_TRUE(r.input_error) << r.message;
  EXPECT_NE(r.message.find(where), std::string::npos) << "expected '" << where << "' in\n"
                                                      << r.message;
  EXPECT_NE(r.message.find(limit), std::string::npos) << "expected '" << limit << "' in\n"
                                                      << r.message;
}

TEST(YamlLimits, BombAtTopLevelFailsNamingFileLineAndLimit) {
  const std::string text = std::string(kHead) + bomb(9, "");
  const BoundedOutcome r = run_bounded([&] { parse_config(text, "bomb.yaml"); });
  const std::string where =
      "bomb.yaml:" + std::to_string(line_of(text, "l" + std::to_string(kTippingLevel) + ":")) + ":";
  expect_limit_error(r, where, "more than 100000 nodes");
  EXPECT_NE(r.message.find("aliases"), std::string::npos) << r.message;
}

TEST(YamlLimits, BombUnderSchedulePhasesFails) {
  const std::string text =
      std::string(kHead) + "schedule:\n  phases:\n    - steps: 5\n" + bomb(9, "      ");
  const BoundedOutcome r = run_bounded([&] { parse_config(text, "phases.yaml"); });
  expect_limit_error(
      r, "phases.yaml:" + std::to_string(line_of(text, "l" + std::to_string(kTippingLevel) + ":")),
      "more than 100000 nodes");
}

TEST(YamlLimits, BombInASetValueFails) {
  // A flow-style bomb in one --set value: [&a0 [x,...], &a1 [*a0,...], ...].
  std::string value = "[&a0 [x, x, x, x, x, x, x, x, x]";
  for (int i = 1; i < 9; ++i) {
    value += ", &a" + std::to_string(i) + " [";
    for (int j = 0; j < 9; ++j) value += (j ? ", *a" : "*a") + std::to_string(i - 1);
    value += "]";
  }
  value += "]";
  const BoundedOutcome r =
      run_bounded([&] { parse_config(kHead, "cfg.yaml", {"train.no_decay=" + value}); });
  expect_limit_error(r, "--set train.no_decay", "more than 100000 nodes");
}

TEST(YamlLimits, RecursiveAliasIsRefused) {
  const BoundedOutcome r =
      run_bounded([&] { parse_config(std::string(kHead) + "x: &self [1, *self]\n", "rec.yaml"); });
  expect_limit_error(r, "rec.yaml:7:", "alias *self is used inside the node it names");
}

TEST(YamlLimits, DeepNestingIsRefused) {
  const int deep = static_cast<int>(config::kMaxYamlDepth) + 10;
  const std::string text =
      std::string(kHead) + "x: " + std::string(deep, '[') + std::string(deep, ']') + "\n";
  const BoundedOutcome r = run_bounded([&] { parse_config(text, "deep.yaml"); });
  expect_limit_error(r, "deep.yaml:7:", "nested deeper than 64 levels");

  // Depth built from aliases: each anchor nests the one before 20 levels deeper.
  std::string chained = std::string(kHead) + "d0: &d0 1\n";
  for (int i = 1; i <= 5; ++i)
    chained += "d" + std::to_string(i) + ": &d" + std::to_string(i) + " " + std::string(20, '[') +
               "*d" + std::to_string(i - 1) + std::string(20, ']') + "\n";
  const BoundedOutcome c = run_bounded([&] { parse_config(chained, "chain.yaml"); });
  expect_limit_error(c, "chain.yaml:", "nested deeper than 64 levels (aliases expanded)");
}

TEST(YamlLimits, TooManyAliasesAreRefused) {
  std::string text = std::string(kHead) + "x: &one 1\ny: [";
  for (int64_t i = 0; i <= config::kMaxYamlAliases; ++i) text += i ? ", *one" : "*one";
  text += "]\n";
  const BoundedOutcome r = run_bounded([&] { parse_config(text, "aliases.yaml"); });
  expect_limit_error(r, "aliases.yaml:8:", "more than 10000 aliases");
}

TEST(YamlLimits, ModestAliasesStillWork) {
  // Anchors as people use them: one shared value, expanded where it is used.
  const config::Node n = config::from_yaml_text(
      "a: &v [bias, norm]\nb: *v\nc: {x: *v, y: *v}\n", "ok.yaml");
  ASSERT_TRUE(n.find("b") && n.find("b")->is_seq());
  EXPECT_EQ(n.find("b")->items().size(), 2u);
  EXPECT_EQ(n.find("c")->find("y")->items()[1].value(), "norm");
  const config::YamlSize s =
      config::measure_yaml("a: &v [bias, norm]\nb: *v\nc: {x: *v, y: *v}\n", "ok.yaml");
  EXPECT_EQ(s.aliases, 3);
  // The root map; keys a, b, c, x, y; c's map; a's list of 2 and its 3 copies (3 nodes each).
  EXPECT_EQ(s.nodes, 1 + 5 + 1 + 4 * 3);
  EXPECT_EQ(s.depth, 4);  // root, c's map, x's list, its scalars
}

class YamlFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("pft-yaml-limits-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return dir_ / name;
  }
  fs::path dir_;
};

TEST_F(YamlFiles, BombInAComposedFileNamesThatFile) {
  write("base.yaml", bomb(9, ""));
  const fs::path top = write("top.yaml", std::string("defaults: [base.yaml]\n") + kHead);
  const BoundedOutcome r = run_bounded([&] { load_config(top, {}); });
  expect_limit_error(r, (dir_ / "base.yaml").string() + ":", "more than 100000 nodes");
}

TEST_F(YamlFiles, OversizedFileIsRefusedUnread) {
  std::string big = kHead;
  big += "# " + std::string(config::kMaxYamlBytes, 'x') + "\n";
  const fs::path f = write("big.yaml", big);
  const BoundedOutcome r = run_bounded([&] { load_config(f, {}); });
  expect_limit_error(r, f.string() + ": error: " + std::to_string(big.size()) + " bytes",
                     "over the limit of 1048576 bytes");
}

TEST_F(YamlFiles, CompositionFanOutIsCapped) {
  // Each level names the next nine times: 9^4 loads of tiny files without a cap.
  for (int i = 0; i < 4; ++i) {
    std::string names = "defaults: [";
    for (int j = 0; j < 9; ++j) names += (j ? ", f" : "f") + std::to_string(i + 1) + ".yaml";
    write("f" + std::to_string(i) + ".yaml", names + "]\n");
  }
  write("f4.yaml", kHead);
  const BoundedOutcome r = run_bounded([&] { load_config(dir_ / "f0.yaml", {}); });
  expect_limit_error(r, ".yaml:1:", "over the limit of 64 (docs/config.md)");
}

TEST_F(YamlFiles, DirectoryAsConfigSaysSo) {
  fs::create_directories(dir_ / "conf");
  try {
    load_config(dir_ / "conf", {});
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find((dir_ / "conf").string() + ": error: is a directory, not a config file"),
              std::string::npos)
        << msg;
    EXPECT_EQ(msg.find("missing"), std::string::npos) << msg;
  }
  write("inc.yaml", std::string("defaults: [conf]\n") + kHead);
  try {
    load_config(dir_ / "inc.yaml", {});
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("inc.yaml:1:12: error: '" + (dir_ / "conf").string() +
                                         "' named in defaults is a directory"),
              std::string::npos)
        << e.what();
  }
}

// Every YAML file pft ships, measured: the limits must stay far (>= 100x) above what real
// configs and tasks use. Prints the largest figures (docs/config.md quotes them).
TEST(YamlLimits, ShippedFilesAreFarInsideTheLimits) {
  const fs::path root = PFT_SOURCE_ROOT;
  config::YamlSize most;
  int files = 0;
  for (const char* dir : {"configs", "datasets/tasks", "datasets", "tests/data"}) {
    for (const auto& e : fs::directory_iterator(root / dir)) {
      if (e.path().extension() != ".yaml") continue;
      std::ifstream in(e.path());
      const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      const config::YamlSize s = config::measure_yaml(text, e.path().string());
      most.bytes = std::max(most.bytes, s.bytes);
      most.nodes = std::max(most.nodes, s.nodes);
      most.depth = std::max(most.depth, s.depth);
      most.aliases = std::max(most.aliases, s.aliases);
      ++files;
    }
  }
  ASSERT_GE(files, 10);
  std::printf("shipped YAML (%d files): largest %zu bytes, %lld nodes, depth %lld, %lld aliases\n",
              files, most.bytes, static_cast<long long>(most.nodes),
              static_cast<long long>(most.depth), static_cast<long long>(most.aliases));
  EXPECT_LE(most.bytes * 100, config::kMaxYamlBytes);
  EXPECT_LE(most.nodes * 100, config::kMaxYamlNodes);
  EXPECT_LE(most.depth * 8, config::kMaxYamlDepth);
  EXPECT_LE(most.aliases * 100, config::kMaxYamlAliases);
}

}  // namespace
}  // namespace pft
