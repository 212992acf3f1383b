// Parity of pft's transformer with Hugging Face transformers (GPT2LMHeadModel, LlamaForCausalLM).
//
// For each model (GPT-2 tied; Llama with grouped-query attention and an untied head; Llama tied
// with plain multi-head attention) the test initialises pft's model, runs two batches -- packed
// rows with document masking, and plain causal rows -- through forward, the masked mean
// cross-entropy and backward, and writes weights, inputs, logits, per-token losses, the loss
// and every gradient to a temp dir. tests/reference/model_reference.py then builds the HF model
// with the same weights, runs each document alone, and checks logits (max abs diff <= 1e-4),
// the loss (rel diff <= 1e-5), per-document losses and all gradients (max diff <= 1e-4 of the
// gradient's scale). Also: the tensor file format round-trips C++ -> Python -> C++.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/autograd.h>

#include <fstream>

#include "core/format.h"
#include "model/transformer.h"
#include "model_test_util.h"

namespace pft {
namespace {

namespace fs = std::filesystem;
using test::NamedTensors;

ModelSpec parity_spec(const std::string& name) {
  ModelSpec s;
  s.vocab_size = 97;
  s.d_model = 64;
  s.n_layers = 2;
  s.n_heads = 4;
  s.head_dim = 16;
  s.max_seq_len = 32;
  s.norm_eps = 1e-5;
  s.init_std = 0.1;  // larger than GPT-2's 0.02, so attention is far from uniform
  if (name == "gpt2") {
    s.family = ModelFamily::Gpt2;
    s.n_kv_heads = 4;
    s.d_ff = 256;
    s.tie_embeddings = true;
  } else {
    s.family = ModelFamily::Llama;
    s.n_kv_heads = name == "llama_gqa" ? 2 : 4;
    s.d_ff = 176;
    s.rope_theta = name == "llama_gqa" ? 500000.0 : 10000.0;
    s.norm_eps = 1e-6;
    s.tie_embeddings = name != "llama_gqa";
  }
  return s;
}

// B = 2 rows of T = 16. Packed: row 0 holds documents of 5, 7, 4 tokens, row 1 of 9, 7.
// Plain: one document per row, doc_ids empty (the causal fast path).
struct ParityBatch {
  torch::Tensor input_ids, position_ids, doc_ids, targets, loss_mask;
};

ParityBatch make_batch(int64_t vocab, bool packed, uint64_t seed) {
  constexpr int64_t kRows = 2, kT = 16;
  const std::vector<std::vector<int64_t>> docs =
      packed ? std::vector<std::vector<int64_t>>{{5, 7, 4}, {9, 7}}
             : std::vector<std::vector<int64_t>>{{16}, {16}};
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  ParityBatch b;
  b.input_ids = torch::randint(0, vocab, {kRows, kT}, gen, torch::kLong);
  b.position_ids = torch::zeros({kRows, kT}, torch::kLong);
  b.doc_ids = torch::zeros({kRows, kT}, torch::kInt);
  b.targets = torch::zeros({kRows, kT}, torch::kLong);
  b.loss_mask = (torch::rand({kRows, kT}, gen) > 0.15).to(torch::kFloat);
  auto ids = b.input_ids.accessor<int64_t, 2>();
  auto pos = b.position_ids.accessor<int64_t, 2>();
  auto doc = b.doc_ids.accessor<int32_t, 2>();
  auto tgt = b.targets.accessor<int64_t, 2>();
  auto mask = b.loss_mask.accessor<float, 2>();
  for (int64_t r = 0; r < kRows; ++r) {
    int64_t start = 0;
    for (size_t d = 0; d < docs[r].size(); ++d) {
      const int64_t len = docs[r][d];
      for (int64_t i = 0; i < len; ++i) {
        const int64_t t = start + i;
        pos[r][t] = i;
        doc[r][t] = static_cast<int32_t>(d);
        if (i + 1 < len)
          tgt[r][t] = ids[r][t + 1];
        else
          mask[r][t] = 0.0f;  // a document's last token predicts nothing
      }
      start += len;
    }
  }
  if (!packed) b.doc_ids = torch::empty({0}, torch::kInt);
  return b;
}

// Forward + masked mean cross-entropy + backward; writes the case file for Python.
void run_case(Transformer& model, const std::string& name, bool packed, const fs::path& dir) {
  const ParityBatch b = make_batch(model->spec().vocab_size, packed, packed ? 101 : 202);
  model->zero_grad();
  auto logits = model->forward(b.input_ids, b.position_ids, b.doc_ids);  // (B, T, V)
  auto token_loss = at::cross_entropy_loss(logits.view({-1, logits.size(-1)}), b.targets.view(-1),
                                           {}, at::Reduction::None)
                        .view(b.targets.sizes());  // (B, T)
  auto loss = (token_loss * b.loss_mask).sum() / b.loss_mask.sum();
  loss.backward();
  NamedTensors out = {{"input_ids", b.input_ids}, {"position_ids", b.position_ids},
                      {"doc_ids", b.doc_ids},     {"targets", b.targets},
                      {"loss_mask", b.loss_mask}, {"logits", logits},
                      {"token_loss", token_loss}, {"loss", loss}};
  for (auto& g : test::grads_of(*model)) out.push_back(std::move(g));
  test::save_tensors(dir / (name + ".pt"), out);
}

class ModelParity : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelParity, MatchesHuggingFace) {
  const std::string name = GetParam();
  const ModelSpec spec = parity_spec(name);
  const fs::path dir = test::fresh_temp_dir("model-parity-" + name);
  Transformer model(spec);
  model->reset_parameters(1234);
  const NamedTensors params = test::parameters_of(*model);
  test::write_spec_json(dir / "spec.json", spec, params);
  test::save_tensors(dir / "params.pt", params);
  run_case(model, "packed", /*packed=*/true, dir);
  run_case(model, "plain", /*packed=*/false, dir);
  const int rc = test::run_reference_script("model_reference.py",
                                            {"--dir", dir.string(), "--cases", "packed,plain"});
  EXPECT_EQ(rc, 0) << "model_reference.py failed for " << name << " (fixtures kept in " << dir
                   << ")\nHINT: needs " << test::python_path()
                   << " with tests/reference/requirements.txt installed (cluster/install-deps.sh)";
  if (rc == 0) fs::remove_all(dir);
}

// The checker has teeth: one wrong weight in the file HF loads makes it fail.
TEST(ModelParityChecker, FailsOnAWrongWeight) {
  const ModelSpec spec = parity_spec("llama_gqa");
  const fs::path dir = test::fresh_temp_dir("model-parity-negative");
  Transformer model(spec);
  model->reset_parameters(1234);
  NamedTensors params = test::parameters_of(*model);
  test::write_spec_json(dir / "spec.json", spec, params);
  run_case(model, "packed", /*packed=*/true, dir);
  for (auto& [name, t] : params) {
    if (name == "model.layers.1.self_attn.k_proj.weight")
      t = t.clone().index_put_({3, 5}, t[3][5] + 0.05);
  }
  test::save_tensors(dir / "params.pt", params);
  EXPECT_EQ(test::run_reference_script("model_reference.py",
                                       {"--dir", dir.string(), "--cases", "packed"}),
            1);
  fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Models, ModelParity, ::testing::Values("gpt2", "llama_gqa", "llama_tied"));

TEST(TensorFiles, RoundTripThroughPython) {
  const fs::path dir = test::fresh_temp_dir("tensor-io");
  const NamedTensors in = {{"b.float", torch::randn({3, 4})},
                           {"a.long", torch::arange(5, torch::kLong)},
                           {"c.scalar", torch::tensor(2.5)},
                           {"d.empty", torch::empty({0}, torch::kInt)}};
  test::save_tensors(dir / "in.pt", in);
  ASSERT_EQ(test::run_reference_script(
                "tensor_io.py", {"double", (dir / "in.pt").string(), (dir / "out.pt").string()}),
            0);
  const NamedTensors out = test::load_tensors(dir / "out.pt");
  ASSERT_EQ(out.size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(out[i].first, in[i].first);  // order kept
    EXPECT_EQ(out[i].second.scalar_type(), in[i].second.scalar_type());
    EXPECT_TRUE(torch::equal(out[i].second, in[i].second * 2)) << in[i].first;
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace pft
