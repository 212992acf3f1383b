// Memory features of issue 20, against the plain path on the same model and batch:
//   - chunked cross entropy (train.loss_chunk_rows, train/loss.h): the loss, the per-task sums
//     and every gradient (model parameters and adapters) equal to the fused loss over the full
//     logits within 1e-6 relative in fp32, for GPT-2 and Llama, tied and untied output heads,
//     with a mask, several tasks and a chunk size that does not divide the target rows; within
//     bf16 rounding under bf16 autocast;
//   - activation checkpointing (train.activation_checkpointing, model/checkpoint_block.h): every
//     gradient equal to the uncheckpointed run within 1e-6 relative, for both families and every
//     method (full, prompt, prefix, LoRA with dropout: the recomputation replays the masks), with
//     `all` and `every_k: 2`, and accumulated over two backward passes into the same .grad;
//   - the config keys: their YAML forms, their errors, and a resume that changes them is
//     accepted (they change no numbers beyond rounding) and reported as a change.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include <map>
#include <set>
#include <string>
#include <tuple>

#include "ckpt/config_record.h"
#include "config/config.h"
#include "core/error.h"
#include "model/adapters.h"
#include "model/batch.h"
#include "model/transformer.h"
#include "train/loss.h"
#include "train/precision.h"

namespace pft {
namespace {

const at::TensorOptions kLong = at::TensorOptions().dtype(at::kLong);
constexpr int64_t kVocab = 61, kTasks = 3, kB = 2, kT = 13;

ModelSpec spec_of(const std::string& family, bool tied) {
  ModelConfig m;
  m.family = family;
  m.vocab_size = kVocab;
  m.d_model = 32;
  m.n_layers = 3;
  m.n_heads = 4;
  m.n_kv_heads = family == "llama" ? 2 : 0;
  m.max_seq_len = 48;
  m.tie_embeddings = tied;
  return model_spec_from_config(m);
}

// A model with the adapters of `method` ("full", "prompt", "prefix", "lora") attached, every
// trainable tensor requiring grad, and a batch for it (two packed documents in row 1, a mask
// with zeros, tokens of three tasks and of none).
struct Rig {
  Transformer model;
  std::shared_ptr<Adapters> adapters;
  Batch batch;
  std::map<std::string, at::Tensor> trainable;

  Rig(const std::string& family, bool tied, const std::string& method)
      : model(spec_of(family, tied)) {
    model->reset_parameters(3);
    model->train();
    at::manual_seed(11);
    batch.input_ids = at::randint(kVocab, {kB, kT}, kLong);
    batch.targets = at::randint(kVocab, {kB, kT}, kLong);
    batch.loss_mask = (at::rand({kB, kT}) < 0.7).to(at::kFloat);
    batch.position_ids = at::arange(kT, kLong).unsqueeze(0).repeat({kB, 1});
    batch.position_ids[1].narrow(0, 6, kT - 6).copy_(at::arange(kT - 6, kLong));
    batch.doc_ids = at::zeros({kB, kT}, at::kInt);
    batch.doc_ids[1].narrow(0, 6, kT - 6).fill_(1);
    batch.task_ids = at::randint(-1, kTasks, {kB, kT}, kLong);
    if (method == "full") {
      for (auto& p : model->named_parameters()) trainable[p.key()] = p.value();
      return;
    }
    for (at::Tensor& p : model->parameters()) p.set_requires_grad(false);
    AdapterSpec a;
    a.blocks = kTasks;
    if (method == "prompt") {
      a.prompt = true;
      a.prompt_tokens = 2;
      // Virtual tokens of task 1's block open row 0 (the data layer puts them before documents).
      batch.input_ids[0].narrow(0, 0, 2).copy_(at::arange(kVocab + 2, kVocab + 4, kLong));
    } else if (method == "prefix") {
      a.prefix = true;
      a.prefix_tokens = 3;
    } else {
      a.lora = true;
      a.lora_rank = 4;
      a.lora_alpha = 8.0;
      a.lora_dropout = 0.25;  // the recomputation must replay the same masks
      a.lora_targets = family == "gpt2" ? std::vector<std::string>{"c_attn", "mlp.c_proj"}
                                        : std::vector<std::string>{"q_proj", "v_proj", "down_proj"};
    }
    adapters = std::make_shared<Adapters>(model->spec(), a, model->lora_candidates());
    adapters->reset_parameters(5, "random", model->parameters().front(), {});
    {
      at::NoGradGuard no_grad;
      for (const Adapters::Lora& l : adapters->lora()) l.b.normal_(0.0, 0.1);  // B starts at 0
    }
    for (auto& [name, t] : adapters->named()) {
      t.set_requires_grad(true);
      trainable[name] = t;
    }
    model->attach_adapters(adapters);
  }

  void zero_grad() {
    for (auto& [name, t] : trainable)
      if (t.grad().defined()) t.mutable_grad().zero_();
  }
  std::map<std::string, at::Tensor> grads() const {
    std::map<std::string, at::Tensor> out;
    for (const auto& [name, t] : trainable)
      out[name] = t.grad().defined() ? t.grad().clone() : at::zeros_like(t);
    return out;
  }
  at::Tensor logits() {
    return model->forward(batch.input_ids, batch.position_ids, batch.doc_ids, batch.task_ids);
  }
  at::Tensor hidden() {
    return model->forward_hidden(batch.input_ids, batch.position_ids, batch.doc_ids,
                                 batch.task_ids);
  }
};

// |a - b| / |a| in the 2-norm (elementwise ratios mean nothing where a gradient is ~0).
double relative(const at::Tensor& a, const at::Tensor& b) {
  const double norm = a.to(at::kDouble).norm().item<double>();
  const double diff = (a.to(at::kDouble) - b.to(at::kDouble)).norm().item<double>();
  return norm == 0.0 ? diff : diff / norm;
}

void expect_same_grads(const std::map<std::string, at::Tensor>& want,
                       const std::map<std::string, at::Tensor>& got, double tolerance) {
  ASSERT_EQ(want.size(), got.size());
  int64_t nonzero = 0;
  for (const auto& [name, g] : want) {
    ASSERT_TRUE(got.count(name)) << name;
    EXPECT_LE(relative(g, got.at(name)), tolerance) << name;
    nonzero += g.abs().sum().item<double>() > 0 ? 1 : 0;
  }
  EXPECT_GT(nonzero, 0) << "no gradient at all: the comparison proves nothing";
}

// ---- Chunked cross entropy ---------------------------------------------------------------

class ChunkedLoss : public ::testing::TestWithParam<std::tuple<std::string, bool, std::string>> {};

TEST_P(ChunkedLoss, EqualsTheFusedLossAndItsGradients) {
  const auto& [family, tied, method] = GetParam();
  Rig rig(family, tied, method);
  const int64_t targets = rig.batch.loss_mask.sum().item<int64_t>();
  int64_t chunk = 4;  // several chunks, the last one short
  while (targets % chunk == 0) ++chunk;
  ASSERT_LT(chunk, targets);
  at::manual_seed(21);
  const LossSums fused = masked_cross_entropy(rig.logits(), rig.batch, kTasks);
  fused.loss_sum.backward();
  const auto want = rig.grads();
  rig.zero_grad();
  at::manual_seed(21);
  const LossSums chunked =
      chunked_cross_entropy(rig.hidden(), rig.model->output_weight(), rig.batch, kTasks, chunk);
  chunked.loss_sum.backward();
  EXPECT_LE(relative(fused.loss_sum, chunked.loss_sum), 1e-6);
  EXPECT_LE(relative(fused.task_loss_sum, chunked.task_loss_sum), 1e-6);
  EXPECT_TRUE(at::equal(fused.task_tokens, chunked.task_tokens));
  expect_same_grads(want, rig.grads(), 1e-6);
  // Tied: the output projection's gradient went into the embedding's own .grad.
  if (method == "full" && tied) {
    EXPECT_TRUE(rig.model->output_weight().is_same(
        rig.model->named_parameters()[family == "gpt2" ? "transformer.wte.weight"
                                                       : "model.embed_tokens.weight"]));
  }
}

INSTANTIATE_TEST_SUITE_P(FamiliesAndHeads, ChunkedLoss,
                         ::testing::Values(std::make_tuple("gpt2", true, "full"),
                                           std::make_tuple("gpt2", false, "full"),
                                           std::make_tuple("llama", true, "full"),
                                           std::make_tuple("llama", false, "full"),
                                           std::make_tuple("gpt2", true, "prompt"),
                                           std::make_tuple("llama", false, "lora"),
                                           std::make_tuple("llama", true, "prefix")),
                         [](const auto& info) {
                           return std::get<0>(info.param) +
                                  (std::get<1>(info.param) ? "_tied_" : "_untied_") +
                                  std::get<2>(info.param);
                         });

TEST(ChunkedLossBf16, MatchesTheFusedLossWithinBf16Rounding) {
  Rig rig("llama", false, "full");
  at::Tensor logits;
  {
    AutocastScope autocast(Precision::kBf16, at::kCPU);
    logits = rig.logits();
  }
  ASSERT_EQ(logits.scalar_type(), at::kBFloat16);
  const LossSums fused = masked_cross_entropy(logits, rig.batch, kTasks);
  fused.loss_sum.backward();
  const auto want = rig.grads();
  rig.zero_grad();
  at::Tensor hidden;
  {
    AutocastScope autocast(Precision::kBf16, at::kCPU);
    hidden = rig.hidden();
  }
  const LossSums chunked = chunked_cross_entropy(hidden, rig.model->output_weight(), rig.batch,
                                                 kTasks, 5, at::kBFloat16);
  chunked.loss_sum.backward();
  EXPECT_LE(relative(fused.loss_sum, chunked.loss_sum), 1e-3);
  for (const auto& [name, g] : rig.grads()) EXPECT_LE(relative(want.at(name), g), 2e-2) << name;
}

TEST(ChunkedLossErrors, RefusesBadShapesAndChunks) {
  Rig rig("gpt2", true, "full");
  const at::Tensor h = rig.hidden();
  EXPECT_THROW(chunked_cross_entropy(h, rig.model->output_weight(), rig.batch, kTasks, 0),
               InputError);
  EXPECT_THROW(chunked_cross_entropy(h, rig.model->output_weight().t(), rig.batch, kTasks, 4),
               InputError);
}

// ---- Activation checkpointing ------------------------------------------------------------

// Whether the autograd graph of `t` holds a node whose name contains `name`.
bool graph_has(const at::Tensor& t, const std::string& name) {
  std::vector<torch::autograd::Node*> todo{t.grad_fn().get()};
  std::set<torch::autograd::Node*> seen;
  while (!todo.empty()) {
    torch::autograd::Node* n = todo.back();
    todo.pop_back();
    if (n == nullptr || !seen.insert(n).second) continue;
    if (n->name().find(name) != std::string::npos) return true;
    for (const torch::autograd::Edge& e : n->next_edges()) todo.push_back(e.function.get());
  }
  return false;
}

class Checkpointing
    : public ::testing::TestWithParam<std::tuple<std::string, std::string, int64_t>> {};

TEST_P(Checkpointing, GradientsEqualTheUncheckpointedRun) {
  const auto& [family, method, every_k] = GetParam();
  Rig rig(family, /*tied=*/family == "gpt2", method);
  // Two backward passes accumulate, as micro-batches do; dropout draws differ between them.
  const auto two_passes = [&] {
    at::manual_seed(99);
    for (int pass = 0; pass < 2; ++pass)
      masked_cross_entropy(rig.logits(), rig.batch, kTasks).loss_sum.backward();
    return at::rand({1}).item<double>();  // where the random stream ended
  };
  const double stream_plain = two_passes();
  const auto want = rig.grads();
  rig.zero_grad();
  EXPECT_FALSE(graph_has(rig.logits(), "CheckpointedBlock"));
  rig.model->set_activation_checkpointing(ActivationCheckpointing{every_k});
  EXPECT_TRUE(graph_has(rig.logits(), "CheckpointedBlock")) << "nothing was checkpointed";
  const double stream_checkpointed = two_passes();
  expect_same_grads(want, rig.grads(), 1e-6);
  EXPECT_EQ(stream_plain, stream_checkpointed) << "the recomputation left the RNG elsewhere";
}

INSTANTIATE_TEST_SUITE_P(FamiliesAndMethods, Checkpointing,
                         ::testing::Combine(::testing::Values("gpt2", "llama"),
                                            ::testing::Values("full", "prompt", "prefix", "lora"),
                                            ::testing::Values(int64_t{1}, int64_t{2})),
                         [](const auto& info) {
                           return std::get<0>(info.param) + "_" + std::get<1>(info.param) +
                                  (std::get<2>(info.param) == 1 ? "_all" : "_every_k_2");
                         });

TEST(CheckpointingNoGrad, EvaluationIsUnchanged) {
  Rig rig("llama", false, "full");
  rig.model->eval();
  at::NoGradGuard no_grad;
  const at::Tensor plain = rig.logits();
  rig.model->set_activation_checkpointing(ActivationCheckpointing{1});
  EXPECT_TRUE(at::equal(plain, rig.logits()));
}

// ---- Config keys -------------------------------------------------------------------------

Config with_train(const std::string& extra, const std::vector<std::string>& overrides = {}) {
  return parse_config("train:\n  steps: 1\n  global_batch_size: 1\n  lr: 0.001\n" + extra, "t.yaml",
                      overrides);
}

TEST(MemoryConfig, ParsesCheckpointingForms) {
  EXPECT_EQ(with_train("").train.activation_checkpointing.every_k, 0);
  EXPECT_EQ(with_train("  activation_checkpointing: none\n").train.activation_checkpointing.every_k,
            0);
  EXPECT_EQ(with_train("  activation_checkpointing: all\n").train.activation_checkpointing.every_k,
            1);
  EXPECT_EQ(with_train("  activation_checkpointing: {every_k: 3}\n")
                .train.activation_checkpointing.every_k,
            3);
  EXPECT_EQ(with_train("  activation_checkpointing:\n    every_k: 2\n")
                .train.activation_checkpointing.every_k,
            2);
  EXPECT_EQ(with_train("", {"train.activation_checkpointing=every_k:4"})
                .train.activation_checkpointing.every_k,
            4);
  EXPECT_EQ(with_train("  loss_chunk_rows: 512\n").train.loss_chunk_rows, 512);
  // The resolved config round-trips.
  const Config c = with_train("  activation_checkpointing: {every_k: 3}\n");
  EXPECT_EQ(parse_config(to_yaml(c), "resolved.yaml").train.activation_checkpointing.every_k, 3);
  const ActivationCheckpointing k2{2};
  EXPECT_TRUE(k2.checkpoints(0));
  EXPECT_FALSE(k2.checkpoints(1));
  EXPECT_TRUE(k2.checkpoints(2));
}

TEST(MemoryConfig, RefusesBadValuesNamingTheKey) {
  const auto message = [](const std::string& extra) {
    try {
      with_train(extra);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("(accepted)");
  };
  for (const char* bad :
       {"  activation_checkpointing: some\n", "  activation_checkpointing: {every_k: 0}\n",
        "  activation_checkpointing: {every: 2}\n", "  loss_chunk_rows: -1\n"}) {
    const std::string m = message(bad);
    EXPECT_NE(m.find("train."), std::string::npos) << bad << " -> " << m;
    EXPECT_NE(m.find("t.yaml"), std::string::npos) << bad << " -> " << m;
  }
  EXPECT_NE(message("  activation_checkpointing: some\n").find("every_k"), std::string::npos);
}

TEST(MemoryConfig, AResumeMayChangeThem) {
  const Config saved = with_train("");
  const Config now = with_train("  loss_chunk_rows: 64\n  activation_checkpointing: all\n");
  std::vector<ckpt::ConfigChange> changes;
  ASSERT_NO_THROW(changes = ckpt::check_resume_config("c.h5", ckpt::architecture_keys(saved),
                                                      ckpt::flatten_config(saved), now));
  std::set<std::string> keys;
  for (const ckpt::ConfigChange& c : changes) keys.insert(c.key);
  EXPECT_TRUE(keys.count("train.loss_chunk_rows"));
  EXPECT_TRUE(keys.count("train.activation_checkpointing"));
  EXPECT_EQ(ckpt::flatten_config(now).at("train.activation_checkpointing"), "all");
}

}  // namespace
}  // namespace pft
