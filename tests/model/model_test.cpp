// The transformer without Python: Hugging Face names and shapes, tying, init statistics and
// determinism, document masking (packed rows equal separate documents), causality, grouped-query
// attention, parameter counts of real model sizes, spec resolution, input checks, autocast, and
// CPU/CUDA agreement when a GPU is present. Numerical parity with Hugging Face itself is in
// model_parity_test.cpp.
#include <gtest/gtest.h>
#include <torch/autograd.h>
#include <torch/cuda.h>

#include <ATen/autocast_mode.h>

#include <cmath>
#include <map>

#include "config/config.h"
#include "core/error.h"
#include "model/batch.h"
#include "model/transformer.h"

namespace pft {
namespace {

ModelSpec tiny_gpt2() {
  ModelSpec s;
  s.family = ModelFamily::Gpt2;
  s.vocab_size = 97;
  s.d_model = 64;
  s.n_layers = 2;
  s.n_heads = 4;
  s.n_kv_heads = 4;
  s.head_dim = 16;
  s.d_ff = 256;
  s.max_seq_len = 32;
  s.tie_embeddings = true;
  return s;
}

ModelSpec tiny_llama(int64_t kv_heads = 2, bool tie = false) {
  ModelSpec s;
  s.family = ModelFamily::Llama;
  s.vocab_size = 97;
  s.d_model = 64;
  s.n_layers = 2;
  s.n_heads = 4;
  s.n_kv_heads = kv_heads;
  s.head_dim = 16;
  s.d_ff = 176;
  s.max_seq_len = 32;
  s.rope_theta = 10000.0;
  s.tie_embeddings = tie;
  return s;
}

Transformer make(const ModelSpec& s, uint64_t seed = 1) {
  Transformer m(s);
  m->reset_parameters(seed);
  return m;
}

std::vector<std::pair<std::string, std::vector<int64_t>>> names_and_shapes(Transformer& m) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  for (const auto& p : m->named_parameters()) out.emplace_back(p.key(), p.value().sizes().vec());
  return out;
}

torch::Tensor arange_positions(int64_t b, int64_t t) {
  return torch::arange(t, torch::kLong).unsqueeze(0).expand({b, t}).contiguous();
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

class ModelFamilies : public ::testing::TestWithParam<std::string> {
 protected:
  ModelSpec spec() const { return GetParam() == "gpt2" ? tiny_gpt2() : tiny_llama(); }
};

// ---- Names, shapes, tying ------------------------------------------------------------------

TEST(Model, Gpt2ParameterNamesAndShapesAreHuggingFaces) {
  Transformer m(tiny_gpt2());
  std::vector<std::pair<std::string, std::vector<int64_t>>> want = {
      {"transformer.wte.weight", {97, 64}}, {"transformer.wpe.weight", {32, 64}}};
  for (int i = 0; i < 2; ++i) {
    const std::string p = "transformer.h." + std::to_string(i) + ".";
    for (auto& e : std::vector<std::pair<std::string, std::vector<int64_t>>>{
             {"ln_1.weight", {64}},
             {"ln_1.bias", {64}},
             {"attn.c_attn.weight", {64, 192}},
             {"attn.c_attn.bias", {192}},
             {"attn.c_proj.weight", {64, 64}},
             {"attn.c_proj.bias", {64}},
             {"ln_2.weight", {64}},
             {"ln_2.bias", {64}},
             {"mlp.c_fc.weight", {64, 256}},
             {"mlp.c_fc.bias", {256}},
             {"mlp.c_proj.weight", {256, 64}},
             {"mlp.c_proj.bias", {64}}})
      want.emplace_back(p + e.first, e.second);
  }
  want.push_back({"transformer.ln_f.weight", {64}});
  want.push_back({"transformer.ln_f.bias", {64}});
  EXPECT_EQ(names_and_shapes(m), want);
  EXPECT_TRUE(m->named_buffers().is_empty());
}

TEST(Model, LlamaParameterNamesAndShapesAreHuggingFaces) {
  Transformer m(tiny_llama(/*kv_heads=*/2, /*tie=*/false));
  std::vector<std::pair<std::string, std::vector<int64_t>>> want = {
      {"model.embed_tokens.weight", {97, 64}}};
  for (int i = 0; i < 2; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    for (auto& e : std::vector<std::pair<std::string, std::vector<int64_t>>>{
             {"self_attn.q_proj.weight", {64, 64}},
             {"self_attn.k_proj.weight", {32, 64}},
             {"self_attn.v_proj.weight", {32, 64}},
             {"self_attn.o_proj.weight", {64, 64}},
             {"mlp.gate_proj.weight", {176, 64}},
             {"mlp.up_proj.weight", {176, 64}},
             {"mlp.down_proj.weight", {64, 176}},
             {"input_layernorm.weight", {64}},
             {"post_attention_layernorm.weight", {64}}})
      want.emplace_back(p + e.first, e.second);
  }
  want.push_back({"model.norm.weight", {64}});
  want.push_back({"lm_head.weight", {97, 64}});
  EXPECT_EQ(names_and_shapes(m), want);
  EXPECT_TRUE(m->named_buffers().is_empty());
}

TEST(Model, TiedHeadIsTheEmbedding) {
  for (const ModelSpec& s : {tiny_gpt2(), tiny_llama(4, /*tie=*/true)}) {
    Transformer m = make(s);
    const auto params = m->named_parameters();
    EXPECT_EQ(params.find("lm_head.weight"), nullptr);
    const std::string emb =
        s.family == ModelFamily::Gpt2 ? "transformer.wte.weight" : "model.embed_tokens.weight";
    // Zeroing one embedding row zeroes that vocabulary entry's logit: the head reads the same
    // storage, not a copy.
    {
      torch::NoGradGuard no_grad;
      params[emb].narrow(0, 5, 1).zero_();
    }
    auto ids = torch::randint(0, s.vocab_size, {2, 8}, torch::kLong);
    auto logits = m->forward(ids, arange_positions(2, 8), {});
    EXPECT_EQ(logits.select(-1, 5).abs().max().item<float>(), 0.0f) << family_name(s.family);
    // The embedding's gradient has both the input-side and the head-side contribution: it is
    // non-zero on rows that never appear in the input.
    logits.sum().backward();
    auto g = params[emb].grad();
    auto present = torch::zeros({s.vocab_size}, torch::kBool);
    present.index_put_({ids.flatten()}, torch::tensor(true));
    const auto absent_rows = g.index({present.logical_not()});
    EXPECT_GT(absent_rows.abs().sum().item<float>(), 0.0f);
  }
  Transformer untied = make(tiny_llama(2, /*tie=*/false));
  const auto params = untied->named_parameters();
  ASSERT_NE(params.find("lm_head.weight"), nullptr);
  EXPECT_NE(params["lm_head.weight"].data_ptr(), params["model.embed_tokens.weight"].data_ptr());
}

// ---- Parameter count -----------------------------------------------------------------------

TEST(Model, ParameterCountMatchesAllocatedModels) {
  for (const ModelSpec& s : {tiny_gpt2(), tiny_llama(2, false), tiny_llama(4, true)}) {
    Transformer m(s);
    int64_t n = 0;
    for (const auto& p : m->parameters()) n += p.numel();
    EXPECT_EQ(parameter_count(s), n) << family_name(s.family);
  }
}

TEST(Model, ParameterCountOfRealModelsWithoutAllocating) {
  ModelConfig gpt2;  // the defaults are GPT-2 small
  EXPECT_EQ(parameter_count(model_spec_from_config(gpt2)), 124439808);  // HF gpt2

  ModelConfig llama;  // Llama-3.2-1B's shape
  llama.family = "llama";
  llama.vocab_size = 128256;
  llama.d_model = 2048;
  llama.n_layers = 16;
  llama.n_heads = 32;
  llama.n_kv_heads = 8;
  llama.d_ff = 8192;
  llama.max_seq_len = 131072;
  llama.rope_theta = 500000.0;
  llama.tie_embeddings = true;
  EXPECT_EQ(parameter_count(model_spec_from_config(llama)), 1235814400);
  llama.tie_embeddings = false;
  EXPECT_EQ(parameter_count(model_spec_from_config(llama)), 1235814400 + 128256LL * 2048);
}

// ---- Spec ----------------------------------------------------------------------------------

TEST(Model, SpecFromConfigResolvesDefaults) {
  ModelConfig c;
  ModelSpec s = model_spec_from_config(c);
  EXPECT_EQ(s.family, ModelFamily::Gpt2);
  EXPECT_EQ(s.n_kv_heads, 12);
  EXPECT_EQ(s.head_dim, 64);
  EXPECT_EQ(s.d_ff, 3072);
  c.family = "llama";
  c.d_model = 2048;
  c.n_heads = 32;
  c.n_kv_heads = 8;
  s = model_spec_from_config(c);
  EXPECT_EQ(s.family, ModelFamily::Llama);
  EXPECT_EQ(s.n_kv_heads, 8);
  EXPECT_EQ(s.d_ff, 5504);  // 8/3 * 2048 rounded up to 64 (Llama's rule)
  c.n_kv_heads = 5;
  EXPECT_THROW(model_spec_from_config(c), InputError);
  c.family = "bert";
  EXPECT_THROW(model_spec_from_config(c), InputError);
}

TEST(Model, ForwardRejectsBadShapes) {
  Transformer m = make(tiny_gpt2());
  auto ids = torch::zeros({1, 40}, torch::kLong);  // longer than max_seq_len = 32
  EXPECT_THROW(m->forward(ids, arange_positions(1, 40), {}), InputError);
  auto ok = torch::zeros({2, 8}, torch::kLong);
  EXPECT_THROW(m->forward(ok, arange_positions(1, 8), {}), InputError);
  EXPECT_THROW(m->forward(ok, arange_positions(2, 8), torch::zeros({2, 7}, torch::kInt)),
               InputError);
}

// ---- Init ----------------------------------------------------------------------------------

TEST(Model, InitStatistics) {
  for (const std::string family : {"gpt2", "llama"}) {
    ModelSpec s = family == "gpt2" ? tiny_gpt2() : tiny_llama(2, false);
    s.vocab_size = 2000;
    s.d_model = 256;
    s.n_heads = 8;
    s.n_kv_heads = family == "gpt2" ? 8 : 4;
    s.head_dim = 32;
    s.d_ff = 1024;
    s.n_layers = 4;
    s.init_std = 0.02;
    Transformer m = make(s, 42);
    const double residual = 0.02 / std::sqrt(8.0);
    const std::map<std::string, double> want =
        family == "gpt2"
            ? std::map<std::string, double>{{"transformer.wte.weight", 0.02},
                                            {"transformer.h.1.attn.c_attn.weight", 0.02},
                                            {"transformer.h.1.mlp.c_fc.weight", 0.02},
                                            {"transformer.h.1.attn.c_proj.weight", residual},
                                            {"transformer.h.1.mlp.c_proj.weight", residual}}
            : std::map<std::string, double>{{"model.embed_tokens.weight", 0.02},
                                            {"model.layers.1.self_attn.q_proj.weight", 0.02},
                                            {"model.layers.1.mlp.gate_proj.weight", 0.02},
                                            {"lm_head.weight", 0.02},
                                            {"model.layers.1.self_attn.o_proj.weight", residual},
                                            {"model.layers.1.mlp.down_proj.weight", residual}};
    const auto params = m->named_parameters();
    for (const auto& [name, std] : want) {
      const auto& p = params[name];
      EXPECT_NEAR(p.mean().item<double>(), 0.0, 0.05 * std) << name;
      EXPECT_NEAR(p.std().item<double>(), std, 0.02 * std) << name;
    }
    for (const auto& p : params) {
      const std::string& name = p.key();
      const bool is_bias = name.ends_with(".bias");
      const bool is_norm =
          name.find("ln_") != std::string::npos || name.find("norm") != std::string::npos;
      if (is_bias) {
        EXPECT_EQ(p.value().abs().max().item<float>(), 0.0f) << name;
      } else if (is_norm) {
        EXPECT_TRUE(torch::equal(p.value(), torch::ones_like(p.value()))) << name;
      }
    }
  }
}

TEST(Model, InitIsDeterministicPerSeedAndName) {
  Transformer a = make(tiny_gpt2(), 7), b = make(tiny_gpt2(), 7), c = make(tiny_gpt2(), 8);
  const auto pa = a->named_parameters(), pb = b->named_parameters(), pc = c->named_parameters();
  for (const auto& p : pa) EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key();
  EXPECT_FALSE(torch::equal(pa["transformer.wte.weight"], pc["transformer.wte.weight"]));
  // Untying adds lm_head without changing the other parameters' values.
  ModelSpec untied_spec = tiny_gpt2();
  untied_spec.tie_embeddings = false;
  Transformer u = make(untied_spec, 7);
  const auto pu = u->named_parameters();
  for (const auto& p : pa) EXPECT_TRUE(torch::equal(p.value(), pu[p.key()])) << p.key();
  EXPECT_FALSE(torch::equal(pu["lm_head.weight"], pu["transformer.wte.weight"]));
}

// ---- Attention masking ---------------------------------------------------------------------

// A packed row [A (6 tokens), B (10 tokens)] gives A's and B's logits exactly as each alone.
TEST_P(ModelFamilies, PackedDocumentsEqualSeparateDocuments) {
  const ModelSpec s = spec();
  Transformer m = make(s, 3);
  torch::manual_seed(11);
  auto a = torch::randint(0, s.vocab_size, {1, 6}, torch::kLong);
  auto b = torch::randint(0, s.vocab_size, {1, 10}, torch::kLong);
  auto packed_ids = torch::cat({a, b}, 1);
  auto packed_pos = torch::cat({arange_positions(1, 6), arange_positions(1, 10)}, 1);
  auto doc_ids =
      torch::cat({torch::zeros({1, 6}, torch::kInt), torch::ones({1, 10}, torch::kInt)}, 1);
  torch::NoGradGuard no_grad;
  auto packed = m->forward(packed_ids, packed_pos, doc_ids);
  auto alone_a = m->forward(a, arange_positions(1, 6), {});
  auto alone_b = m->forward(b, arange_positions(1, 10), {});
  EXPECT_LE(max_abs_diff(packed.narrow(1, 0, 6), alone_a), 1e-5);
  EXPECT_LE(max_abs_diff(packed.narrow(1, 6, 10), alone_b), 1e-5);
  // The document mask of a single document equals the causal fast path.
  auto one_doc = m->forward(b, arange_positions(1, 10), torch::zeros({1, 10}, torch::kInt));
  EXPECT_LE(max_abs_diff(one_doc, alone_b), 1e-5);
  // Without the mask, B would see A: the logits differ (the test has teeth).
  auto leaky = m->forward(packed_ids, packed_pos, {});
  EXPECT_GT(max_abs_diff(leaky.narrow(1, 6, 10), alone_b), 1e-4);
}

// Changing a later token never changes earlier logits, on both attention paths.
TEST_P(ModelFamilies, Causality) {
  const ModelSpec s = spec();
  Transformer m = make(s, 5);
  torch::manual_seed(12);
  auto ids = torch::randint(0, s.vocab_size, {2, 16}, torch::kLong);
  auto changed = ids.clone();
  changed.index_put_({torch::indexing::Slice(), 10}, (ids.select(1, 10) + 1) % s.vocab_size);
  auto pos = arange_positions(2, 16);
  auto docs = torch::cat({torch::zeros({2, 8}, torch::kInt), torch::ones({2, 8}, torch::kInt)}, 1);
  torch::NoGradGuard no_grad;
  for (const auto& d : {torch::Tensor(), docs}) {
    auto l0 = m->forward(ids, pos, d), l1 = m->forward(changed, pos, d);
    EXPECT_LE(max_abs_diff(l0.narrow(1, 0, 10), l1.narrow(1, 0, 10)), 1e-6);
    EXPECT_GT(max_abs_diff(l0.narrow(1, 10, 6), l1.narrow(1, 10, 6)), 1e-4);
  }
}

INSTANTIATE_TEST_SUITE_P(Families, ModelFamilies, ::testing::Values("gpt2", "llama"));

// Grouped-query attention equals multi-head attention whose K/V heads are the GQA heads,
// repeated: checks the head grouping (query head h uses KV head h / (H/KV)) on both paths.
TEST(Model, GroupedQueryAttentionEqualsRepeatedHeads) {
  const ModelSpec gqa_spec = tiny_llama(/*kv_heads=*/2, false);
  ModelSpec mha_spec = gqa_spec;
  mha_spec.n_kv_heads = 4;
  Transformer gqa = make(gqa_spec, 9), mha = make(mha_spec, 9);
  {
    torch::NoGradGuard no_grad;
    auto dst = mha->named_parameters();
    for (const auto& p : gqa->named_parameters()) {
      const std::string& name = p.key();
      if (name.find("k_proj") != std::string::npos || name.find("v_proj") != std::string::npos) {
        // (KV*D, C) -> (KV, 1, D, C) -> (KV, 2, D, C) -> (H*D, C)
        auto w = p.value().view({2, 1, 16, 64}).expand({2, 2, 16, 64}).reshape({64, 64});
        dst[name].copy_(w);
      } else {
        dst[name].copy_(p.value());
      }
    }
  }
  torch::manual_seed(13);
  auto ids = torch::randint(0, 97, {2, 12}, torch::kLong);
  auto pos = arange_positions(2, 12);
  auto docs = torch::cat({torch::zeros({2, 5}, torch::kInt), torch::ones({2, 7}, torch::kInt)}, 1);
  torch::NoGradGuard no_grad;
  for (const auto& d : {torch::Tensor(), docs})
    EXPECT_LE(max_abs_diff(gqa->forward(ids, pos, d), mha->forward(ids, pos, d)), 1e-5);
}

// ---- Precision and devices -----------------------------------------------------------------

TEST(Model, CpuAutocastGivesBf16LogitsCloseToFp32) {
  for (const ModelSpec& s : {tiny_gpt2(), tiny_llama()}) {
    Transformer m = make(s, 4);
    auto ids = torch::randint(0, s.vocab_size, {2, 16}, torch::kLong);
    auto pos = arange_positions(2, 16);
    torch::NoGradGuard no_grad;
    auto ref = m->forward(ids, pos, {});
    at::autocast::set_autocast_enabled(at::kCPU, true);
    at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
    auto low = m->forward(ids, pos, {});
    at::autocast::set_autocast_enabled(at::kCPU, false);
    at::autocast::clear_cache();
    EXPECT_EQ(ref.scalar_type(), at::kFloat);
    EXPECT_EQ(low.scalar_type(), at::kBFloat16) << family_name(s.family);
    EXPECT_LE(max_abs_diff(low, ref), 0.05 * ref.abs().max().item<double>());
  }
}

TEST(Model, CudaMatchesCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  at::globalContext().setAllowTF32CuBLAS(false);
  for (const ModelSpec& s : {tiny_gpt2(), tiny_llama()}) {
    Transformer cpu = make(s, 6), gpu = make(s, 6);
    gpu->to(torch::kCUDA);
    auto ids = torch::randint(0, s.vocab_size, {2, 16}, torch::kLong);
    auto pos = arange_positions(2, 16);
    auto docs =
        torch::cat({torch::zeros({2, 9}, torch::kInt), torch::ones({2, 7}, torch::kInt)}, 1);
    torch::NoGradGuard no_grad;
    for (const auto& d : {torch::Tensor(), docs}) {
      auto ref = cpu->forward(ids, pos, d);
      auto got = gpu->forward(ids.cuda(), pos.cuda(), d.defined() ? d.cuda() : d).cpu();
      EXPECT_LE(max_abs_diff(got, ref), 1e-4) << family_name(s.family);
    }
  }
}

TEST(Batch, NumTargetTokens) {
  Batch b;
  b.loss_mask = torch::tensor({{1.f, 0.f, 1.f}, {1.f, 1.f, 0.f}});
  EXPECT_EQ(b.num_target_tokens(), 4);
}

}  // namespace
}  // namespace pft
