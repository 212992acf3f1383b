// model.base_dtype (Note [low-precision base] in model/transformer.cpp): the frozen base of a
// PEFT method stored in bf16, its matmuls under bf16 autocast, the adapters fp32. One process
// (under mpirun -np 1), tiny quickstart-like models of both families on the bundled `add` task:
//   - the base's parameters are bf16 and frozen, half the bytes of the fp32 base's (measured on
//     the tensors); the flat trainable buffers (the adapters, which AdamW updates) are fp32;
//   - LoRA, prompt tuning and prefix tuning each train a few steps on a bf16 base: every loss is
//     finite, step 1's loss is within 2e-2 relative of the fp32 base's (same seed, same batch:
//     only the bf16 rounding of the base and of the matmuls differs), the held-out loss falls,
//     and the evaluations (loss and exact-match generation) run on the bf16 base;
//   - the config refuses base_dtype bf16 with train.method full, and with another precision;
//   - `pft ckpt export` of a LoRA checkpoint trained on a bf16 base: the base-hash check accepts
//     the fp32 base it is exported from, and merged/ is fp32, the fp32 base plus (alpha / r) B A;
//     `pft eval` of it with the fp32 config scores within bf16 of the run's own evaluation.
#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <boost/json.hpp>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "../train/metrics_schema.h"
#include "config/config.h"
#include "core/error.h"
#include "core/rank_env.h"
#include "model/adapters.h"
#include "model/hf_export.h"
#include "model/hf_import.h"
#include "model/safetensors.h"
#include "model/transformer.h"
#include "train/adapter_checkpoint.h"
#include "train/eval_run.h"
#include "train/train_session.h"
#include "train/trainer.h"

namespace pft {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

const fs::path kRepo = PFT_SOURCE_ROOT;

const RankEnv& env() {
  static const RankEnv e = discover_rank_env({});
  return e;
}

const fs::path& scratch() {
  static const fs::path dir = [] {
    const fs::path d = fs::temp_directory_path() / ("pft-bf16-base-" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

double number(const json::object& o, const char* key) {
  const json::value& v = o.at(key);
  return v.is_double() ? v.as_double() : static_cast<double>(v.as_int64());
}

// A 2-layer model of `family` (llama: grouped-query attention), `steps` steps of 4 sequences on
// `add`, held-out evaluation at step 0 and at the end (2 documents per template).
std::string run_yaml(const std::string& name, const std::string& family, const std::string& method,
                     const std::string& dtype, int steps, const std::string& extra = "") {
  const fs::path dir = scratch();
  const std::string llama = family == "llama" ? "  n_kv_heads: 2\n" : "";
  return "run:\n  dir: " + (dir / name).string() +
         "\n  seed: 7\n  log_every: 1\n"
         "model:\n  family: " + family + "\n  vocab_size: 258\n  d_model: 64\n" + llama +
         "  n_layers: 2\n  n_heads: 4\n  max_seq_len: 160\n  base_dtype: " + dtype + "\n" +
         "data:\n  seq_len: 128\n  source: tasks\n  tokenizer: byte\n"
         "  cache_dir: " + (dir / "cache").string() + "\n  tasks: [" +
         (kRepo / "datasets/tasks/add.yaml").string() + "]\n" +
         "train:\n  method: " + method + "\n  precision: " + dtype +
         "\n  steps: " + std::to_string(steps) +
         "\n  global_batch_size: 4\n  micro_batch_size: 2\n"
         "  lr: 2.0e-2\n  schedule: constant\n  weight_decay: 0.0\n"
         "peft:\n  prompt_tokens: 4\n  prefix_tokens: 4\n  lora_rank: 8\n"
         "  lora_targets: " + (family == "gpt2" ? "[c_attn, c_proj, c_fc]" : "[q_proj, v_proj, o_proj, up_proj, down_proj]") + "\n"
         "eval:\n  every_steps: 0\n  max_batches: 1\n"
         "checkpoint:\n  keep_last: 1\n  async: false\n" + extra;
}

Config run_config(const std::string& name, const std::string& family, const std::string& method,
                  const std::string& dtype, int steps, const std::string& extra = "") {
  return parse_config(run_yaml(name, family, method, dtype, steps, extra),
                      (scratch() / (name + ".yaml")).string());
}

int64_t tensor_bytes(const at::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }

TEST(LowPrecisionBase, StoresTheFrozenBaseInBf16AtHalfTheBytes) {
  int64_t fp32_bytes = 0, bf16_bytes = 0, fp32_trainable = 0;
  for (const std::string dtype : {"fp32", "bf16"}) {
    TrainSession s(run_config("session-" + dtype, "llama", "lora", dtype, 1), env());
    int64_t bytes = 0;
    for (const auto& item : s.model->named_parameters()) {
      const at::Tensor& p = item.value();
      EXPECT_EQ(p.scalar_type(), dtype == "bf16" ? at::kBFloat16 : at::kFloat) << item.key();
      EXPECT_FALSE(p.requires_grad()) << item.key();
      bytes += tensor_bytes(p);
    }
    (dtype == "bf16" ? bf16_bytes : fp32_bytes) = bytes;
    // The adapters and their flat buffers (what AdamW keeps moments of) stay fp32.
    for (const auto& [name, t] : s.model->adapters()->named()) {
      EXPECT_EQ(t.scalar_type(), at::kFloat) << name;
      EXPECT_TRUE(t.requires_grad()) << name;
    }
    for (size_t g = 0; g < s.params->num_groups(); ++g)
      EXPECT_EQ(s.params->data(g).scalar_type(), at::kFloat);
    if (dtype == "fp32") {
      fp32_trainable = s.params->numel();
    } else {
      EXPECT_EQ(s.params->numel(), fp32_trainable);
    }
  }
  std::cout << "frozen base: fp32 " << fp32_bytes << " bytes, bf16 " << bf16_bytes << " bytes\n";
  ASSERT_GT(fp32_bytes, 0);
  EXPECT_EQ(bf16_bytes * 2, fp32_bytes);
}

TEST(LowPrecisionBase, ConfigRefusesFullFineTuningAndAnotherPrecision) {
  const std::string full = run_yaml("refused", "gpt2", "full", "bf16", 1);
  try {
    parse_config(full, "full.yaml");
    ADD_FAILURE() << "base_dtype bf16 with method full was accepted";
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("model.base_dtype"), std::string::npos) << what;
    EXPECT_NE(what.find("full"), std::string::npos) << what;
  }
  try {
    parse_config(run_yaml("refused", "gpt2", "lora", "bf16", 1), "mixed.yaml",
                 {"train.precision=fp32"});
    ADD_FAILURE() << "base_dtype bf16 with precision fp32 was accepted";
  } catch (const InputError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("model.base_dtype"), std::string::npos) << what;
    EXPECT_NE(what.find("train.precision: bf16"), std::string::npos) << what;
  }
  // fp16 the same way; fp32 (the default) with any precision is fine.
  EXPECT_NO_THROW(parse_config(run_yaml("ok", "gpt2", "prefix_tuning", "fp16", 1), "fp16.yaml"));
  EXPECT_NO_THROW(parse_config(run_yaml("ok", "gpt2", "full", "fp32", 1), "full32.yaml",
                               {"train.precision=bf16"}));
}

struct RunCase {
  std::string family, method;
  std::string dtype = "bf16";  // fp16 too: its loss scaling acts on the fp32 adapters only
};

class LowPrecisionRun : public ::testing::TestWithParam<RunCase> {};

struct RunLosses {
  std::vector<double> train;       // per step
  double eval_start = 0.0, eval_end = 0.0;  // held-out loss of `add` (all templates)
  int evals = 0;
};

RunLosses losses_of(const fs::path& dir, int steps) {
  RunLosses out;
  for (const json::object& r : test::read_records(dir / "metrics.jsonl")) {
    const std::string kind(r.at("kind").as_string());
    if (kind == "train") out.train.push_back(number(r, "loss"));
    if (kind == "eval" && r.at("template").is_string() && r.at("template").as_string() == "all") {
      ++out.evals;
      EXPECT_TRUE(r.contains("exact_match"));  // greedy generation ran on the base
      (r.at("step").as_int64() == 0 ? out.eval_start : out.eval_end) = number(r, "loss");
      if (r.at("step").as_int64() != 0) {
        EXPECT_EQ(r.at("step").as_int64(), steps);
      }
    }
  }
  return out;
}

TEST_P(LowPrecisionRun, TrainsAndStartsWithinBf16OfTheFp32Base) {
  const RunCase c = GetParam();
  constexpr int kSteps = 12;
  const std::string name = c.family + "-" + c.method;
  const TrainSummary s16 =
      train(run_config(name + "-" + c.dtype, c.family, c.method, c.dtype, kSteps), env());
  train(run_config(name + "-fp32-vs-" + c.dtype, c.family, c.method, "fp32", kSteps), env());
  EXPECT_EQ(s16.steps, kSteps);
  const RunLosses b = losses_of(scratch() / (name + "-" + c.dtype), kSteps);
  const RunLosses f = losses_of(scratch() / (name + "-fp32-vs-" + c.dtype), kSteps);
  ASSERT_EQ(b.train.size(), static_cast<size_t>(kSteps));
  ASSERT_EQ(f.train.size(), static_cast<size_t>(kSteps));
  for (double l : b.train) EXPECT_TRUE(std::isfinite(l)) << l;
  // Step 1: the same adapters on the same batch; only bf16 rounding differs.
  const double rel = std::abs(b.train[0] - f.train[0]) / f.train[0];
  std::cout << name << ": step-1 loss " << c.dtype << " base " << b.train[0] << ", fp32 base " << f.train[0]
            << " (rel " << rel << "); held-out " << b.eval_start << " -> " << b.eval_end
            << " (fp32 base " << f.eval_start << " -> " << f.eval_end << ")\n";
  EXPECT_LT(rel, 2e-2);
  EXPECT_GT(rel, 0.0) << "a bf16 base should round somewhere";
  ASSERT_EQ(b.evals, 2);
  EXPECT_TRUE(std::isfinite(b.eval_end));
  EXPECT_LT(b.eval_end, b.eval_start) << "the held-out loss did not fall with a bf16 base";
  EXPECT_LT(std::abs(b.eval_start - f.eval_start) / f.eval_start, 2e-2);
}

INSTANTIATE_TEST_SUITE_P(Methods, LowPrecisionRun,
                         ::testing::Values(RunCase{"gpt2", "lora"}, RunCase{"llama", "lora"},
                                           RunCase{"gpt2", "prompt_tuning"},
                                           RunCase{"llama", "prompt_tuning"},
                                           RunCase{"gpt2", "prefix_tuning"},
                                           RunCase{"llama", "prefix_tuning"},
                                           RunCase{"llama", "lora", "fp16"}),
                         [](const ::testing::TestParamInfo<RunCase>& info) {
                           return info.param.family + "_" + info.param.method +
                                  (info.param.dtype == "bf16" ? "" : "_" + info.param.dtype);
                         });

// The merged export of a bf16-base LoRA checkpoint is fp32: the fp32 base it is exported from
// plus (alpha / r) B A computed in fp32 (docs/peft.md, "Low-precision base").
TEST(LowPrecisionBase, MergedExportIsFp32BasePlusLoraUpdate) {
  const fs::path base_dir = scratch() / "base-hf";
  {
    const Config c = run_config("unused", "llama", "lora", "fp32", 1);
    Transformer base(model_spec_from_config(c.model));
    base->reset_parameters(99);
    HfExportOptions options;
    options.tokenizer = "byte";
    export_hf_model(*base, base_dir, options);
  }
  const Config trained = parse_config(run_yaml("merge", "llama", "lora", "bf16", 3),
                                      (scratch() / "merge.yaml").string(),
                                      {"model.from_pretrained=" + base_dir.string()});
  ASSERT_EQ(train(trained, env()).steps, 3);
  const fs::path ckpt = scratch() / "merge/checkpoints/step_00000003.h5";
  ASSERT_TRUE(fs::exists(ckpt));
  const fs::path out = scratch() / "merge-export";
  ASSERT_NO_THROW(export_adapter_checkpoint(ckpt, "", out, "byte"));

  // The expected merge, from the fp32 base and the checkpoint's adapters.
  Transformer base = load_hf_model(base_dir);
  const LoadedAdapter loaded = attach_adapter_checkpoint(ckpt, *base);  // the hash check again
  const double scale = loaded.adapters->spec().lora_scale();
  const SafetensorsCheckpoint merged(out / "merged");
  auto named = base->named_parameters();
  int adapted = 0;
  for (const auto& item : named) {
    const at::Tensor got = merged.tensor(item.key());
    ASSERT_EQ(got.scalar_type(), at::kFloat) << item.key();
    at::Tensor want = item.value().detach().clone();
    for (const Adapters::Lora& l : loaded.adapters->lora())
      if (l.module + ".weight" == item.key()) {
        want += at::mm(l.b.detach(), l.a.detach()) * scale;
        ++adapted;
        // The update is not lost to bf16 rounding: merged - base is the update.
        EXPECT_TRUE(at::allclose(got - item.value(), at::mm(l.b.detach(), l.a.detach()) * scale,
                                 1e-4, 1e-7))
            << item.key();
      }
    EXPECT_TRUE(at::allclose(got, want, 1e-6, 1e-7)) << item.key();
  }
  EXPECT_EQ(adapted, 2 * 5);  // 2 layers x q, v, o, up, down

  // `pft eval` of the checkpoint with the fp32 config: the adapter scores on the fp32 base
  // (model.base_dtype is not part of the model it checks), within bf16 of the run's own score.
  EvalRequest request;
  request.checkpoint = (scratch() / "merge").string();
  request.output = (scratch() / "merge-eval-fp32.jsonl").string();
  const Config fp32 = parse_config(run_yaml("merge", "llama", "lora", "fp32", 3),
                                   (scratch() / "merge.yaml").string(),
                                   {"model.from_pretrained=" + base_dir.string()});
  ASSERT_EQ(run_eval(fp32, env(), request), 0);
  double run_loss = 0.0, eval_loss = 0.0;
  for (const json::object& r : test::read_records(scratch() / "merge/metrics.jsonl"))
    if (r.at("kind").as_string() == "eval" && r.at("step").as_int64() == 3 &&
        r.at("template").is_string() && r.at("template").as_string() == "all")
      run_loss = number(r, "loss");
  for (const json::object& r : test::read_records(request.output))
    if (r.at("kind").as_string() == "eval" && r.at("template").is_string() &&
        r.at("template").as_string() == "all")
      eval_loss = number(r, "loss");
  std::cout << "held-out loss: bf16 base (the run) " << run_loss << ", fp32 base (pft eval) "
            << eval_loss << "\n";
  ASSERT_GT(run_loss, 0.0);
  EXPECT_NE(eval_loss, run_loss);  // another base, so not bitwise
  EXPECT_LT(std::abs(eval_loss - run_loss) / run_loss, 2e-2);
}

}  // namespace
}  // namespace pft
