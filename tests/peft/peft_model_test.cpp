// The adapters inside the model (model/adapters.h), without training:
//   - prefix tuning: a packed row of two documents of different tasks gives each document the
//     logits it gets alone (each sees only its own task's prefix: Note [prefix attention]);
//   - generation: forward_cached after prefill_prefix (prefix) or with virtual tokens (prompt)
//     gives the logits of forward() on the whole sequence;
//   - LoRA: merge_lora() leaves the logits unchanged (within fp32 rounding);
//   - a LoRA target that matches no module is refused naming peft.lora_targets.
#include <gtest/gtest.h>

#include "core/error.h"
#include "model/adapters.h"
#include "model/kv_cache.h"
#include "model/transformer.h"

namespace pft {
namespace {

ModelSpec spec_of(const std::string& family) {
  ModelConfig m;
  m.family = family;
  m.vocab_size = 61;
  m.d_model = 32;
  m.n_layers = 2;
  m.n_heads = 4;
  m.n_kv_heads = family == "llama" ? 2 : 0;
  m.max_seq_len = 48;
  return model_spec_from_config(m);
}

struct Rig {
  Transformer model;
  std::shared_ptr<Adapters> adapters;
  Rig(const std::string& family, const AdapterSpec& a) : model(spec_of(family)) {
    model->reset_parameters(3);
    model->eval();
    adapters = std::make_shared<Adapters>(model->spec(), a, model->lora_candidates());
    adapters->reset_parameters(5, "random", model->parameters().front(), {});
    at::NoGradGuard no_grad;
    for (const Adapters::Lora& l : adapters->lora()) l.b.normal_(0.0, 0.1);  // B starts at 0
    // Prefix/prompt rows of a larger scale, so a wrong block would show.
    if (adapters->prompt().defined()) adapters->prompt().mul_(20.0);
    for (auto& [name, t] : adapters->named())
      if (name == "prefix_embeddings") t.mul_(50.0);
    model->attach_adapters(adapters);
  }
};

AdapterSpec prefix_spec(int64_t blocks) {
  AdapterSpec a;
  a.prefix = true;
  a.prefix_tokens = 3;
  a.blocks = blocks;
  return a;
}

const at::TensorOptions kLong = at::TensorOptions().dtype(at::kLong);

class PeftModel : public ::testing::TestWithParam<std::string> {};

TEST_P(PeftModel, PackedDocumentsSeeOnlyTheirTasksPrefix) {
  Rig rig(GetParam(), prefix_spec(2));
  at::NoGradGuard no_grad;
  const at::Tensor a = at::randint(61, {1, 7}, kLong), b = at::randint(61, {1, 5}, kLong);
  const auto alone = [&](const at::Tensor& ids, int64_t task) {
    return rig.model->forward(ids, at::arange(ids.size(1), kLong).unsqueeze(0), {},
                              at::full(ids.sizes(), task, kLong));
  };
  const at::Tensor la = alone(a, 0), lb = alone(b, 1);
  EXPECT_FALSE(at::allclose(lb, alone(b, 0), 1e-3, 1e-3)) << "the two blocks give the same logits";
  const at::Tensor ids = at::cat({a, b}, 1);
  const at::Tensor pos = at::cat({at::arange(7, kLong), at::arange(5, kLong)}).unsqueeze(0);
  const at::Tensor doc = at::cat({at::zeros({7}, at::kInt), at::ones({5}, at::kInt)}).unsqueeze(0);
  const at::Tensor task = at::cat({at::zeros({7}, kLong), at::ones({5}, kLong)}).unsqueeze(0);
  const at::Tensor packed = rig.model->forward(ids, pos, doc, task);
  EXPECT_TRUE(at::allclose(packed.narrow(1, 0, 7), la, 1e-5, 1e-5));
  EXPECT_TRUE(at::allclose(packed.narrow(1, 7, 5), lb, 1e-5, 1e-5));
}

TEST_P(PeftModel, CachedGenerationWithAPrefixMatchesTheFullForward) {
  Rig rig(GetParam(), prefix_spec(2));
  at::NoGradGuard no_grad;
  const at::Tensor ids = at::randint(61, {2, 9}, kLong);
  const at::Tensor pos = at::arange(9, kLong).unsqueeze(0).expand({2, 9});
  const at::Tensor full = rig.model->forward(ids, pos, {}, at::ones({2, 9}, kLong));
  KvCache cache(2, 2, 3 + 9);
  rig.model->prefill_prefix(cache, 1);
  const at::Tensor first = rig.model->forward_cached(ids.narrow(1, 0, 6), pos.narrow(1, 0, 6), cache, false);
  const at::Tensor rest = rig.model->forward_cached(ids.narrow(1, 6, 3), pos.narrow(1, 6, 3), cache, false);
  EXPECT_TRUE(at::allclose(at::cat({first, rest}, 1), full, 1e-5, 1e-5));
}

TEST_P(PeftModel, CachedGenerationWithVirtualTokensMatchesTheFullForward) {
  AdapterSpec a;
  a.prompt = true;
  a.prompt_tokens = 4;
  a.blocks = 2;
  Rig rig(GetParam(), a);
  at::NoGradGuard no_grad;
  // Block 1's virtual tokens (61 + 4 .. 61 + 7), then text.
  const at::Tensor ids =
      at::cat({at::arange(65, 69, kLong).unsqueeze(0), at::randint(61, {1, 6}, kLong)}, 1);
  const at::Tensor pos = at::arange(10, kLong).unsqueeze(0);
  const at::Tensor full = rig.model->forward(ids, pos, {});
  KvCache cache(2, 1, 10);
  const at::Tensor a1 = rig.model->forward_cached(ids.narrow(1, 0, 5), pos.narrow(1, 0, 5), cache, false);
  const at::Tensor a2 = rig.model->forward_cached(ids.narrow(1, 5, 5), pos.narrow(1, 5, 5), cache, false);
  EXPECT_TRUE(at::allclose(at::cat({a1, a2}, 1), full, 1e-5, 1e-5));
  // The virtual rows matter: block 0 instead of block 1 changes the logits.
  const at::Tensor other = rig.model->forward(ids - at::cat({at::full({1, 4}, 4, kLong), at::zeros({1, 6}, kLong)}, 1), pos, {});
  EXPECT_FALSE(at::allclose(other, full, 1e-3, 1e-3));
}

TEST_P(PeftModel, MergingLoraLeavesTheLogitsUnchanged) {
  AdapterSpec a;
  a.lora = true;
  a.lora_rank = 4;
  a.lora_alpha = 8;
  a.lora_targets = GetParam() == "gpt2" ? std::vector<std::string>{"c_attn", "c_proj", "c_fc"}
                                        : std::vector<std::string>{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  Rig rig(GetParam(), a);
  at::NoGradGuard no_grad;
  const at::Tensor ids = at::randint(61, {2, 11}, kLong);
  const at::Tensor pos = at::arange(11, kLong).unsqueeze(0).expand({2, 11});
  const at::Tensor with_lora = rig.model->forward(ids, pos, {});
  rig.model->attach_adapters(nullptr);
  const at::Tensor base = rig.model->forward(ids, pos, {});
  EXPECT_FALSE(at::allclose(with_lora, base, 1e-3, 1e-3)) << "LoRA changed nothing";
  rig.model->attach_adapters(rig.adapters);
  rig.model->merge_lora();
  EXPECT_TRUE(at::allclose(rig.model->forward(ids, pos, {}), with_lora, 1e-4, 1e-5));
}

TEST_P(PeftModel, UnknownLoraTargetNamesTheKey) {
  AdapterSpec a;
  a.lora = true;
  a.lora_rank = 2;
  a.lora_alpha = 2;
  a.lora_targets = {"query"};
  Transformer model(spec_of(GetParam()));
  try {
    Adapters adapters(model->spec(), a, model->lora_candidates());
    FAIL() << "accepted a target that matches nothing";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("peft.lora_targets: `query` matches no projection"),
              std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Families, PeftModel, ::testing::Values("gpt2", "llama"));

}  // namespace
}  // namespace pft
