// Parity of pft's parameter-efficient methods with Hugging Face PEFT: the same tiny model (GPT-2
// and Llama with grouped-query attention), the same initial adapter, the same batch, one AdamW
// step. tests/reference/peft_reference.py builds the PEFT model (LoraConfig, PromptTuningConfig,
// PrefixTuningConfig) from the fixtures written here and checks the logits before the step and
// every updated adapter tensor within 1e-4, and that no base weight moved. The `bf16` cases store
// the frozen base in bf16 (model.base_dtype, Note [low-precision base] in model/transformer.cpp)
// and run under bf16 autocast; PEFT gets the same bf16 base (model.to(torch.bfloat16) before
// get_peft_model, which keeps the adapters fp32: autocast_adapter_dtype) at the bf16 tolerances
// peft_reference.py derives from the measured differences.
#include <gtest/gtest.h>
#include <ATen/CPUGeneratorImpl.h>

#include <fstream>

#include "core/format.h"
#include "model/adapters.h"
#include "model/flat_params.h"
#include "model/transformer.h"
#include "model_test_util.h"
#include "train/precision.h"
#include "train/train_step.h"

namespace pft {
namespace {

namespace fs = std::filesystem;
using test::NamedTensors;

constexpr int64_t kRows = 3, kSeqLen = 12, kVirtual = 4;

// PEFT's state-dict name of an adapter tensor.
std::string peft_name(const std::string& name) {
  if (name == "prompt_embeddings" || name == "prefix_embeddings") return "prompt_embeddings";
  return "base_model.model." + name;
}

struct Case {
  std::string family, method;
  bool bf16_base = false;
};

class PeftParity : public ::testing::TestWithParam<Case> {};

TEST_P(PeftParity, OneStepMatchesHuggingFacePeft) {
  const Case c = GetParam();
  ModelSpec spec = test::parity_spec(c.family, 32);
  if (c.bf16_base) spec.param_dtype = at::kBFloat16;  // rounded once, as an import's copy_ does
  const Precision precision = c.bf16_base ? Precision::kBf16 : Precision::kFp32;
  const fs::path dir = test::fresh_temp_dir("peft-parity-" + c.family + "-" + c.method +
                                            (c.bf16_base ? "-bf16" : ""));
  const double lr = 1e-2;

  Transformer model(spec);
  model->reset_parameters(1234);
  const NamedTensors base = test::parameters_of(*model);
  for (auto& p : model->parameters()) p.set_requires_grad(false);

  AdapterSpec a;
  a.prompt = c.method == "prompt_tuning";
  a.prefix = c.method == "prefix_tuning";
  a.lora = c.method == "lora";
  a.prompt_tokens = a.prefix_tokens = kVirtual;
  a.lora_rank = 4;
  a.lora_alpha = 8.0;
  a.lora_targets = c.family == "gpt2" ? std::vector<std::string>{"c_attn", "mlp.c_proj"}
                                      : std::vector<std::string>{"q_proj", "v_proj", "down_proj"};
  auto adapters = std::make_shared<Adapters>(spec, a, model->lora_candidates());
  const at::Tensor embedding = base.front().second;  // wte / embed_tokens
  adapters->reset_parameters(7, "random", embedding, {});
  {  // LoRA's B starts at zero; make it non-zero so the forward pass exercises the update.
    at::NoGradGuard no_grad;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
    for (const Adapters::Lora& l : adapters->lora()) l.b.normal_(0.0, 0.05, gen);
  }
  model->attach_adapters(adapters);
  NamedTensors init;
  for (const auto& [n, t] : adapters->named()) init.emplace_back(peft_name(n), t.detach().clone());

  test::write_spec_json(dir / "spec.json", spec, base);
  std::vector<std::string> modules;
  for (const auto& t : a.lora_targets) modules.push_back(t);
  test::write_text_file(dir / "peft.json",
             fmt::format("{{\"method\": \"{}\", \"num_virtual_tokens\": {}, \"lora_rank\": {}, "
                         "\"lora_alpha\": {:.17g}, \"target_modules\": {}, \"lr\": {:.17g}, "
                         "\"beta1\": 0.9, \"beta2\": 0.999, \"eps\": 1e-08, \"weight_decay\": 0.0, "
                         "\"base_dtype\": \"{}\"}}\n",
                         c.method, kVirtual, a.lora_rank, a.lora_alpha, test::json_string_list(modules), lr,
                         c.bf16_base ? "bf16" : "fp32"));
  test::save_tensors(dir / "params.pt", base);
  test::save_tensors(dir / "adapter_init.pt", init);

  // The batch: real tokens; ~20% of the targets masked.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
  const at::Tensor ids = at::randint(spec.vocab_size, {kRows, kSeqLen + 1}, gen, at::kLong);
  const at::Tensor input_ids = ids.narrow(1, 0, kSeqLen).contiguous();
  const at::Tensor targets = ids.narrow(1, 1, kSeqLen).contiguous();
  const at::Tensor loss_mask = (at::rand({kRows, kSeqLen}, gen) > 0.2).to(at::kFloat);
  test::save_tensors(dir / "batch.pt",
                     {{"input_ids", input_ids}, {"targets", targets}, {"loss_mask", loss_mask}});

  // pft's batch: prompt tuning puts the virtual tokens V .. V+n-1 first (positions 0 .. n-1).
  const int64_t n = a.prompt ? kVirtual : 0;
  Batch b;
  const auto long_opts = at::TensorOptions().dtype(at::kLong);
  b.input_ids = at::cat({at::arange(spec.vocab_size, spec.vocab_size + n, long_opts)
                             .unsqueeze(0).expand({kRows, n}), input_ids}, 1);
  b.targets = at::cat({at::zeros({kRows, n}, long_opts), targets}, 1);
  b.loss_mask = at::cat({at::zeros({kRows, n}), loss_mask}, 1);
  b.position_ids = at::arange(kSeqLen + n, long_opts).unsqueeze(0).expand({kRows, kSeqLen + n}).contiguous();
  b.task_ids = at::zeros({kRows, kSeqLen + n}, long_opts);

  at::Tensor logits;
  {
    at::NoGradGuard no_grad;
    AutocastScope autocast(precision, at::kCPU);
    logits = model->forward(b.input_ids, b.position_ids, {}, b.task_ids).narrow(1, n, kSeqLen);
    logits = logits.to(at::kFloat).contiguous();
  }
  FlatParameters params(adapters->named(), {});
  AdamW optimizer(params, AdamWOptions{0.9, 0.999, 1e-8, 0.0});
  TrainStepOptions step_options;
  step_options.precision = precision;
  TrainStep step([&model](const Batch& x) {
    return model->forward(x.input_ids, x.position_ids, x.doc_ids, x.task_ids);
  }, params, optimizer, step_options);
  const StepResult r = step.run({b}, {}, lr);
  ASSERT_FALSE(r.skipped);

  NamedTensors results = {{"logits", logits}, {"loss", at::tensor(r.loss, at::kDouble).reshape({})}};
  for (const auto& [name, t] : adapters->named()) results.emplace_back("final." + peft_name(name), t.detach());
  test::save_tensors(dir / "results.pt", results);

  const int rc = test::run_reference_script("peft_reference.py", {"--dir", dir.string()});
  EXPECT_EQ(rc, 0) << "tests/reference/peft_reference.py failed; fixtures kept in " << dir;
  if (rc == 0) fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(
    Methods, PeftParity,
    ::testing::Values(Case{"gpt2", "lora"}, Case{"gpt2", "prompt_tuning"},
                      Case{"gpt2", "prefix_tuning"}, Case{"llama", "lora"},
                      Case{"llama", "prompt_tuning"}, Case{"llama", "prefix_tuning"},
                      Case{"gpt2", "lora", true}, Case{"gpt2", "prompt_tuning", true},
                      Case{"gpt2", "prefix_tuning", true}, Case{"llama", "lora", true},
                      Case{"llama", "prompt_tuning", true}, Case{"llama", "prefix_tuning", true}),
    [](const ::testing::TestParamInfo<Case>& info) {
      return info.param.family + "_" + info.param.method + (info.param.bf16_base ? "_bf16" : "");
    });

}  // namespace
}  // namespace pft
