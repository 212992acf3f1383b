// Config: every error kind names file:line:col and the key path, with a suggestion for typos;
// overrides are type-checked; composition merges in order; the resolved YAML round-trips.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "config/config.h"
#include "core/error.h"

namespace pft {
namespace {

namespace fs = std::filesystem;

const char* kMinimal = R"(run:
  dir: runs/test
train:
  steps: 10
  global_batch_size: 8
  lr: 1.0e-3
)";

// Returns the InputError message of parsing `yaml` (fails the test if it parses).
std::string error_of(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  try {
    parse_config(yaml, "cfg.yaml", overrides);
  } catch (const InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected an InputError for:\n" << yaml;
  return "";
}

TEST(Config, MinimalConfigGetsDefaults) {
  const Config c = parse_config(kMinimal, "cfg.yaml");
  EXPECT_EQ(c.run.dir, "runs/test");
  EXPECT_EQ(c.train.steps, 10);
  EXPECT_DOUBLE_EQ(c.train.lr, 1e-3);
  EXPECT_EQ(c.train.micro_batch_size, 1);
  EXPECT_EQ(c.dist.backend, "auto");
  EXPECT_EQ(c.model.family, "gpt2");
}

TEST(Config, UnknownTopLevelKeyNamesLineColumnAndSuggests) {
  const std::string msg = error_of(std::string(kMinimal) + "trian:\n  steps: 3\n");
  EXPECT_NE(msg.find("cfg.yaml:7:1: error: trian: unknown key 'trian'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'train'?"), std::string::npos) << msg;
}

TEST(Config, UnknownNestedKeySuggestsSibling) {
  const std::string msg = error_of(std::string(kMinimal) + "eval:\n  evry_steps: 3\n");
  EXPECT_NE(msg.find("cfg.yaml:8:3: error: eval.evry_steps:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'every_steps'?"), std::string::npos) << msg;
}

TEST(Config, UnknownKeyWithoutNearMatchListsKnownKeys) {
  const std::string msg = error_of(std::string(kMinimal) + "dist:\n  zzzzzzzz: 1\n");
  EXPECT_NE(msg.find("dist.zzzzzzzz"), std::string::npos) << msg;
  EXPECT_NE(msg.find("known keys: backend"), std::string::npos) << msg;
}

TEST(Config, WrongTypeNamesKeyAndValue) {
  const std::string msg = error_of(R"(train:
  steps: ten
  global_batch_size: 8
  lr: 1.0e-3
)");
  EXPECT_NE(msg.find("cfg.yaml:2:10: error: train.steps: expected an integer, got 'ten'"),
            std::string::npos)
      << msg;
}

TEST(Config, SectionOfWrongShape) {
  const std::string msg = error_of("train: 5\n");
  EXPECT_NE(msg.find("cfg.yaml:1:8: error: train: expected a mapping"), std::string::npos) << msg;
}

TEST(Config, OutOfRangeValue) {
  const std::string msg = error_of(std::string(kMinimal) + "checkpoint:\n  keep_last: 0\n");
  EXPECT_NE(msg.find("cfg.yaml:8:14: error: checkpoint.keep_last: must be >= 1, got 0"),
            std::string::npos)
      << msg;
}

TEST(Config, BadChoiceSuggests) {
  const std::string msg = error_of(std::string(kMinimal) + "dist:\n  backend: ncl\n");
  EXPECT_NE(msg.find("dist.backend: 'ncl' is not one of: auto, mpi, nccl; did you mean 'nccl'?"),
            std::string::npos)
      << msg;
}

// dist.grad_comm_dtype (issue 20, item 5): fp32 by default, bf16 accepted, anything else named.
TEST(Config, GradCommDtype) {
  EXPECT_EQ(parse_config(kMinimal, "cfg.yaml").dist.grad_comm_dtype, "fp32");
  EXPECT_EQ(parse_config(std::string(kMinimal) + "dist:\n  grad_comm_dtype: bf16\n", "cfg.yaml")
                .dist.grad_comm_dtype,
            "bf16");
  const std::string msg = error_of(std::string(kMinimal) + "dist:\n  grad_comm_dtype: fp16\n");
  EXPECT_NE(msg.find("dist.grad_comm_dtype: 'fp16' is not one of: fp32, bf16"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("cfg.yaml:"), std::string::npos) << msg;
}

// dist.zero (ZeRO-1, train/optimizer.h): 0 by default, 1 accepted, 2 refused naming the key.
TEST(Config, DistZero) {
  EXPECT_EQ(parse_config(kMinimal, "cfg.yaml").dist.zero, 0);
  EXPECT_EQ(parse_config(std::string(kMinimal) + "dist:\n  zero: 1\n", "cfg.yaml").dist.zero, 1);
  const std::string msg = error_of(std::string(kMinimal) + "dist:\n  zero: 2\n");
  EXPECT_NE(msg.find("dist.zero"), std::string::npos) << msg;
}

// Enum-valued keys are parsed once into enums (config/schema.h); a wrong word names the key,
// the words and the closest one; the resolved YAML writes the words back.
TEST(Config, EnumKeysParseIntoEnumsAndRoundTrip) {
  const Config d = parse_config(kMinimal, "cfg.yaml");
  EXPECT_EQ(d.train.method, Method::kFull);
  EXPECT_EQ(d.data.source, DataSource::kSynthetic);
  EXPECT_EQ(d.train.precision, Precision::kFp32);
  EXPECT_EQ(d.train.resume.mode, ResumeFrom::Mode::kNone);
  const Config c = parse_config(kMinimal, "cfg.yaml",
                                {"train.method=prefix_tuning+lora", "train.precision=bf16",
                                 "data.source=tasks", "data.tasks=[t.yaml]",
                                 "train.resume=runs/x/checkpoints/step_00000010.h5"});
  EXPECT_EQ(c.train.method, Method::kPrefixTuningLora);
  EXPECT_TRUE(has_prefix(c.train.method) && has_lora(c.train.method));
  EXPECT_FALSE(has_prompt(c.train.method));
  EXPECT_EQ(c.data.source, DataSource::kTasks);
  EXPECT_EQ(c.train.precision, Precision::kBf16);
  EXPECT_EQ(c.train.resume.mode, ResumeFrom::Mode::kFile);
  EXPECT_EQ(c.train.resume.file, "runs/x/checkpoints/step_00000010.h5");
  EXPECT_EQ(parse_config(kMinimal, "cfg.yaml", {"train.resume=auto"}).train.resume.mode,
            ResumeFrom::Mode::kAuto);
  const std::string yaml = to_yaml(c);
  EXPECT_NE(yaml.find("method: prefix_tuning+lora"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("precision: bf16"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("resume: runs/x/checkpoints/step_00000010.h5"), std::string::npos) << yaml;
  const Config again = parse_config(yaml, "resolved.yaml");
  EXPECT_EQ(again.train.method, c.train.method);
  EXPECT_EQ(again.train.resume, c.train.resume);
  EXPECT_EQ(again.data.source, c.data.source);

  const std::string method = error_of(kMinimal, {"train.method=lroa"});
  EXPECT_NE(method.find("train.method: 'lroa' is not one of: full, prompt_tuning, prefix_tuning, "
                        "lora, prompt_tuning+lora, prefix_tuning+lora; did you mean 'lora'?"),
            std::string::npos)
      << method;
  const std::string precision = error_of(std::string(kMinimal) + "  precision: fp8\n");
  EXPECT_NE(precision.find("cfg.yaml:7:14: error: train.precision: 'fp8' is not one of: fp32, "
                           "bf16, fp16"),
            std::string::npos)
      << precision;
  const std::string resume = error_of(kMinimal, {"train.resume=''"});
  EXPECT_NE(resume.find("train.resume: is empty; use `none`, `auto`"), std::string::npos) << resume;
}

TEST(Config, MissingRequiredKey) {
  const std::string msg = error_of("train:\n  steps: 10\n  lr: 0.1\n");
  EXPECT_NE(msg.find("cfg.yaml:2:3: error: train.global_batch_size: required key is missing; add "
                     "'global_batch_size:' under 'train'"),
            std::string::npos)
      << msg;
}

TEST(Config, MissingRequiredSectionBlamesFile) {
  const std::string msg = error_of("run:\n  seed: 1\n");
  EXPECT_NE(msg.find("cfg.yaml:1:1: error: train.steps: required key is missing"),
            std::string::npos)
      << msg;
}

TEST(Config, InvalidYamlSyntax) {
  const std::string msg = error_of("train: [1, 2\n");
  EXPECT_NE(msg.find("cfg.yaml:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("invalid YAML"), std::string::npos) << msg;
}

TEST(Config, DuplicateKeyRefused) {
  const std::string msg = error_of(std::string(kMinimal) + "run:\n  seed: 3\n");
  EXPECT_NE(msg.find("cfg.yaml:7:1: error: key 'run' appears twice"), std::string::npos) << msg;
}

TEST(Config, OverrideAppliesWithTypeChecking) {
  const Config c = parse_config(kMinimal, "cfg.yaml", {"train.lr=3e-4", "model.n_layers=2"});
  EXPECT_DOUBLE_EQ(c.train.lr, 3e-4);
  EXPECT_EQ(c.model.n_layers, 2);
  const std::string msg = error_of(kMinimal, {"train.steps=abc"});
  EXPECT_NE(msg.find("--set train.steps"), std::string::npos) << msg;
  EXPECT_NE(msg.find("train.steps: expected an integer, got 'abc'"), std::string::npos) << msg;
  const std::string typo = error_of(kMinimal, {"train.lrr=1"});
  EXPECT_NE(typo.find("did you mean 'lr'?"), std::string::npos) << typo;
  const std::string malformed = error_of(kMinimal, {"train.lr"});
  EXPECT_NE(malformed.find("expected key.path=value"), std::string::npos) << malformed;
}

TEST(Config, OverrideListValue) {
  const Config c = parse_config(kMinimal, "cfg.yaml", {"train.no_decay=[bias, ln]"});
  EXPECT_EQ(c.train.no_decay, (std::vector<std::string>{"bias", "ln"}));
}

TEST(Config, ImpossibleModelShapeNamesKey) {
  std::string msg = error_of(std::string(kMinimal) + "model:\n  d_model: 100\n  n_heads: 3\n");
  EXPECT_NE(msg.find("cfg.yaml:9:12: error: model.n_heads: 3 heads do not divide d_model = 100"),
            std::string::npos)
      << msg;
  msg = error_of(std::string(kMinimal) +
                 "model:\n  family: llama\n  d_model: 64\n  n_heads: 4\n  n_kv_heads: 3\n");
  EXPECT_NE(msg.find("model.n_kv_heads: 3 key/value heads do not divide n_heads = 4"),
            std::string::npos)
      << msg;
}

TEST(Config, MixingCapOnlyWithProportional) {
  EXPECT_NO_THROW(parse_config(kMinimal, "cfg.yaml", {"data.mixing_cap=500"}));
  const std::string msg = error_of(kMinimal, {"data.mixing=temperature", "data.mixing_cap=500"});
  EXPECT_NE(msg.find("data.mixing_cap: a cap applies to data.mixing: proportional only"),
            std::string::npos)
      << msg;
}

TEST(Config, MixingWeightsGoWithFixed) {
  const Config c =
      parse_config(kMinimal, "cfg.yaml", {"data.mixing=fixed", "data.mixing_weights=[3, 1.5]"});
  EXPECT_EQ(c.data.mixing_weights, (std::vector<double>{3.0, 1.5}));
  std::string msg = error_of(kMinimal, {"data.mixing_weights=[1, 2]"});
  EXPECT_NE(msg.find("data.mixing_weights: weights apply to data.mixing: fixed only"),
            std::string::npos)
      << msg;
  msg = error_of(kMinimal, {"data.mixing=fixed"});
  EXPECT_NE(msg.find("data.mixing: `fixed` takes its weights from data.mixing_weights"),
            std::string::npos)
      << msg;
}

TEST(Config, WorldSizeDivisibility) {
  const Config c = parse_config(kMinimal, "cfg.yaml", {"train.micro_batch_size=2"});
  EXPECT_NO_THROW(validate_for_world(c, 4));
  try {
    validate_for_world(c, 3);
    FAIL() << "expected an error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("train.global_batch_size: 8 sequences cannot be split "
                                         "evenly over 3 ranks"),
              std::string::npos)
        << e.what();
  }
}

class ConfigFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("pft-config-test-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return dir_ / name;
  }
  fs::path dir_;
};

TEST_F(ConfigFiles, CompositionMergesInOrderAndReportsTheRightFile) {
  write("base.yaml", "train:\n  steps: 5\n  global_batch_size: 4\n  lr: 0.1\nrun:\n  seed: 7\n");
  write("more.yaml", "train:\n  steps: 6\n");
  const fs::path top =
      write("top.yaml", "defaults: [base.yaml, more.yaml]\ntrain:\n  lr: 0.2\n");
  const Config c = load_config(top, {});
  EXPECT_EQ(c.train.steps, 6);
  EXPECT_EQ(c.train.global_batch_size, 4);
  EXPECT_DOUBLE_EQ(c.train.lr, 0.2);
  EXPECT_EQ(c.run.seed, 7);

  write("broken.yaml", "train:\n  steps: 5\n  global_batch_size: 4\n  lr: 0.1\n  wramup_steps: 2\n");
  const fs::path top2 = write("top2.yaml", "defaults: broken.yaml\n");
  try {
    load_config(top2, {});
    FAIL() << "expected an error";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("broken.yaml:5:3: error: train.wramup_steps"), std::string::npos) << msg;
    EXPECT_NE(msg.find("did you mean 'warmup_steps'?"), std::string::npos) << msg;
  }
}

TEST_F(ConfigFiles, CompositionCycleAndMissingFile) {
  write("a.yaml", "defaults: [b.yaml]\n");
  write("b.yaml", "defaults: [a.yaml]\n");
  try {
    load_config(dir_ / "a.yaml", {});
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("cycle"), std::string::npos) << e.what();
  }
  write("c.yaml", "defaults: [nope.yaml]\n");
  try {
    load_config(dir_ / "c.yaml", {});
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("c.yaml:1:12: error: cannot read"), std::string::npos)
        << e.what();
  }
  try {
    load_config(dir_ / "missing.yaml", {});
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("missing.yaml: error: cannot read config file (no such file)"),
              std::string::npos)
        << e.what();
  }
}

TEST(Config, ResolvedYamlRoundTrips) {
  const Config c = parse_config(kMinimal, "cfg.yaml", {"train.lr=3e-4", "model.norm_eps=1e-6"});
  const std::string yaml = to_yaml(c);
  EXPECT_NE(yaml.find("lr: 0.0003"), std::string::npos) << yaml;
  const Config again = parse_config(yaml, "resolved.yaml");
  EXPECT_EQ(to_yaml(again), yaml);
  EXPECT_DOUBLE_EQ(again.model.norm_eps, 1e-6);
  EXPECT_EQ(again.train.no_decay, c.train.no_decay);
}

// docs/config.md documents every key exactly once: the generated table is embedded verbatim.
TEST(Config, DocsListEveryKey) {
  std::ifstream in(fs::path(PFT_SOURCE_ROOT) / "docs" / "config.md");
  ASSERT_TRUE(in) << "docs/config.md is missing";
  const std::string doc((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string table = config_reference_markdown();
  EXPECT_NE(doc.find(table), std::string::npos)
      << "docs/config.md is out of date; regenerate its table with `pft config docs`";
}

}  // namespace
}  // namespace pft
