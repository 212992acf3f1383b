// One training step end to end on small GPT-2 and Llama models: gradient accumulation of two
// micro-batches equals one batch of twice the rows (loss within 1e-6 relative, gradients within
// 1e-5 of their scale, updated weights within 1e-6 relative + 1e-6 absolute);
// bf16 and fp16 (loss scaling) steps run on the CPU; the synthetic source is deterministic per
// global sample and packs documents correctly; the trainer's start-up checks name the key.
#include <gtest/gtest.h>

#include "config/config.h"
#include "core/error.h"
#include "model/flat_params.h"
#include "model/transformer.h"
#include "train/synthetic_data.h"
#include "train/train_step.h"
#include "train/trainer.h"

namespace pft {
namespace {

ModelConfig tiny_model(const std::string& family) {
  ModelConfig m;
  m.family = family;
  m.vocab_size = 64;
  m.d_model = 32;
  m.n_layers = 2;
  m.n_heads = 4;
  m.n_kv_heads = family == "llama" ? 2 : 0;
  m.max_seq_len = 32;
  m.tie_embeddings = family == "gpt2";
  return m;
}

// A model, its flat buffers, AdamW and a TrainStep, built the way the trainer builds them.
struct Rig {
  Transformer model;
  FlatParameters params;
  AdamW optimizer;
  TrainStep step;

  Rig(const ModelConfig& mc, Precision precision, double clip)
      : model(make_model(mc)),
        params(FlatParameters::from_module(*model, TrainConfig{}.no_decay)),
        optimizer(params, AdamWOptions{0.9, 0.95, 1e-8, 0.1}),
        step([this](const Batch& b) { return model->forward(b.input_ids, b.position_ids, b.doc_ids); },
             params, optimizer, options(precision, clip)) {}

  static Transformer make_model(const ModelConfig& mc) {
    Transformer m(model_spec_from_config(mc));
    m->reset_parameters(42);
    return m;
  }
  static TrainStepOptions options(Precision precision, double clip) {
    TrainStepOptions o;
    o.grad_clip = clip;
    o.precision = precision;
    o.num_tasks = SyntheticTokenSource::kNumTasks;
    return o;
  }
};

Batch rows_of(const Batch& b, int64_t first, int64_t n) {
  const auto cut = [&](const at::Tensor& t) {
    return t.defined() && t.numel() > 0 ? t.narrow(0, first, n).contiguous() : t;
  };
  return Batch{cut(b.input_ids), cut(b.targets), cut(b.loss_mask), cut(b.position_ids),
               cut(b.doc_ids), cut(b.task_ids)};
}

class Accumulation : public ::testing::TestWithParam<std::string> {};

TEST_P(Accumulation, TwoMicroBatchesEqualOneBatchOfTwiceTheRows) {
  const ModelConfig mc = tiny_model(GetParam());
  SyntheticTokenSource source(SyntheticDataOptions{9, mc.vocab_size, 24, 4, true}, at::kCPU);
  Rig whole(mc, Precision::kFp32, /*clip=*/0.5), split(mc, Precision::kFp32, /*clip=*/0.5);
  Batch four = source.make_batch();
  for (int64_t s = 0; s < 3; ++s) {
    const int64_t tokens = source.fill(s * 4, four);
    const std::vector<Batch> halves = {rows_of(four, 0, 2), rows_of(four, 2, 2)};
    const StepResult a = whole.step.run({four}, {tokens}, 1e-3);
    const StepResult b = split.step.run(halves, {}, 1e-3);  // tokens counted by the step
    EXPECT_EQ(a.target_tokens, tokens);
    EXPECT_EQ(b.target_tokens, tokens);
    EXPECT_NEAR(b.loss, a.loss, 1e-6 * a.loss) << "step " << s;
    EXPECT_NEAR(b.grad_norm, a.grad_norm, 1e-5 * a.grad_norm) << "step " << s;
    EXPECT_GT(a.grad_norm, 0.5) << "clipping should be active in this test";
    EXPECT_FALSE(a.skipped);
    // The (clipped) gradients left in the buffers agree up to summation order.
    for (size_t g = 0; g < whole.params.num_groups(); ++g) {
      const double scale = whole.params.grad(g).abs().max().item<double>();
      const double diff = (whole.params.grad(g) - split.params.grad(g)).abs().max().item<double>();
      EXPECT_LE(diff, 1e-5 * scale) << "step " << s << " group " << g;
    }
    double task_tokens = 0;
    for (size_t k = 0; k < a.task_tokens.size(); ++k) {
      EXPECT_EQ(a.task_tokens[k], b.task_tokens[k]);
      EXPECT_NEAR(a.task_loss_sum[k], b.task_loss_sum[k], 1e-6 * a.task_loss_sum[k] + 1e-9);
      task_tokens += a.task_tokens[k];
    }
    EXPECT_EQ(task_tokens, static_cast<double>(tokens));  // every target token has a task
  }
  EXPECT_EQ(whole.step.rebound_grads(), 0);
  for (size_t g = 0; g < whole.params.num_groups(); ++g) {
    const at::Tensor diff = (whole.params.data(g) - split.params.data(g)).abs();
    // Adam divides by sqrt(v): an element whose true gradient is ~0 (GPT-2's key bias) moves by
    // up to ~lr/1e4 on summation noise, so the bound has an absolute part.
    const at::Tensor bound = 1e-6 * whole.params.data(g).abs() + 1e-6;
    EXPECT_TRUE(diff.le(bound).all().item<bool>())
        << "group " << g << " max diff " << diff.max().item<double>();
  }
}

INSTANTIATE_TEST_SUITE_P(Families, Accumulation, ::testing::Values("gpt2", "llama"));

TEST(TrainStep, LossFallsOnTheSyntheticStream) {
  const ModelConfig mc = tiny_model("llama");
  SyntheticTokenSource source(SyntheticDataOptions{1, mc.vocab_size, 32, 8, true}, at::kCPU);
  Rig rig(mc, Precision::kFp32, 1.0);
  Batch b = source.make_batch();
  double first = 0, last = 0;
  for (int64_t s = 0; s < 30; ++s) {
    const int64_t tokens = source.fill(s * 8, b);
    const StepResult r = rig.step.run({b}, {tokens}, 3e-3);
    if (s == 0) first = r.loss;
    last = r.loss;
  }
  EXPECT_NEAR(first, std::log(64.0), 0.3);
  EXPECT_LT(last, first - 1.0);
}

TEST(TrainStep, Bf16AndFp16RunOnTheCpu) {
  const ModelConfig mc = tiny_model("gpt2");
  SyntheticTokenSource source(SyntheticDataOptions{2, mc.vocab_size, 16, 4, true}, at::kCPU);
  Batch b = source.make_batch();
  const int64_t tokens = source.fill(0, b);
  Rig fp32(mc, Precision::kFp32, 1.0), bf16(mc, Precision::kBf16, 1.0), fp16(mc, Precision::kFp16, 1.0);
  const StepResult r32 = fp32.step.run({b}, {tokens}, 1e-3);
  const StepResult rb = bf16.step.run({b}, {tokens}, 1e-3);
  const StepResult rh = fp16.step.run({b}, {tokens}, 1e-3);
  EXPECT_NEAR(rb.loss, r32.loss, 2e-2 * r32.loss);
  EXPECT_NEAR(rh.loss, r32.loss, 1e-2 * r32.loss);
  EXPECT_NEAR(rb.grad_norm, r32.grad_norm, 0.1 * r32.grad_norm);
  EXPECT_NEAR(rh.grad_norm, r32.grad_norm, 0.05 * r32.grad_norm);  // unscaled before the norm
  EXPECT_EQ(r32.loss_scale, 0.0);
  EXPECT_EQ(rh.loss_scale, 65536.0);
  EXPECT_FALSE(rb.skipped);
  EXPECT_FALSE(rh.skipped);
  // Master weights stay fp32.
  for (size_t g = 0; g < bf16.params.num_groups(); ++g)
    EXPECT_EQ(bf16.params.data(g).scalar_type(), at::kFloat);
}

TEST(SyntheticData, DeterministicPerGlobalSampleAndWellFormed) {
  SyntheticDataOptions o{5, 258, 64, 4, true};
  SyntheticTokenSource four(o, at::kCPU);
  o.rows = 2;
  SyntheticTokenSource two(o, at::kCPU);
  Batch b4 = four.make_batch(), b2 = two.make_batch();
  const int64_t n4 = four.fill(10, b4);
  const int64_t n2 = two.fill(12, b2);  // samples 12, 13 = rows 2, 3 of the first
  EXPECT_TRUE(at::equal(b4.input_ids.narrow(0, 2, 2), b2.input_ids));
  EXPECT_TRUE(at::equal(b4.doc_ids.narrow(0, 2, 2), b2.doc_ids));
  EXPECT_EQ(b4.loss_mask.sum().item<float>(), static_cast<float>(n4));
  EXPECT_EQ(b4.num_target_tokens(), n4);
  EXPECT_EQ(b2.num_target_tokens(), n2);
  EXPECT_FALSE(at::equal(b4.input_ids[0], b4.input_ids[1]));
  EXPECT_LT(b4.input_ids.max().item<int64_t>(), SyntheticTokenSource::kMaxAlphabet);

  const auto ids = b4.input_ids.accessor<int64_t, 2>();
  const auto tgt = b4.targets.accessor<int64_t, 2>();
  const auto pos = b4.position_ids.accessor<int64_t, 2>();
  const auto doc = b4.doc_ids.accessor<int32_t, 2>();
  const auto mask = b4.loss_mask.accessor<float, 2>();
  const auto task = b4.task_ids.accessor<int64_t, 2>();
  int boundaries = 0;
  for (int64_t r = 0; r < 4; ++r) {
    EXPECT_EQ(pos[r][0], 0);
    for (int64_t t = 1; t < 64; ++t) {
      if (doc[r][t] != doc[r][t - 1]) {
        EXPECT_EQ(doc[r][t], doc[r][t - 1] + 1);
        EXPECT_EQ(pos[r][t], 0);                // positions restart per document
        EXPECT_EQ(mask[r][t - 1], 0.0f);        // the last token predicts nothing
        EXPECT_EQ(task[r][t - 1], -1);
        ++boundaries;
      } else {
        EXPECT_EQ(pos[r][t], pos[r][t - 1] + 1);
        EXPECT_EQ(mask[r][t - 1], 1.0f);
        EXPECT_EQ(tgt[r][t - 1], ids[r][t]);    // next token of the same document
        EXPECT_GE(task[r][t - 1], 0);
        EXPECT_LT(task[r][t - 1], SyntheticTokenSource::kNumTasks);
      }
    }
  }
  EXPECT_GE(boundaries, 4);  // documents of 8..32 tokens: several per 64-token row

  // Rank slices of one step are disjoint and cover the global batch (G = 8, B = 2).
  std::vector<int64_t> seen;
  for (int world : {1, 2, 4})
    for (int rank = 0; rank < world; ++rank)
      for (int64_t m = 0; m < 8 / (2 * world); ++m)
        seen.push_back(first_sample_index(3, 8, rank, world, m, 2) + world * 100);
  std::sort(seen.begin(), seen.end());
  const std::vector<int64_t> want = {124, 126, 128, 130, 224, 226, 228, 230, 424, 426, 428, 430};
  EXPECT_EQ(seen, want);

  SyntheticTokenSource unpacked(SyntheticDataOptions{5, 258, 16, 2, false}, at::kCPU);
  Batch u = unpacked.make_batch();
  EXPECT_EQ(unpacked.fill(0, u), 32);
  EXPECT_FALSE(u.doc_ids.defined());
}

TEST(Trainer, StartupChecksNameTheKey) {
  const std::string base =
      "model: {vocab_size: 258, d_model: 32, n_layers: 1, n_heads: 2, max_seq_len: 16}\n"
      "data: {seq_len: 16}\n"
      "train: {steps: 2, global_batch_size: 2, lr: 1.0e-3}\n";
  const RankEnv env;
  EXPECT_NO_THROW(validate_for_training(parse_config(base, "t.yaml"), env));
  const auto message_of = [&](const std::string& override,
                              std::vector<std::string> more = {}) -> std::string {
    try {
      more.insert(more.begin(), override);
      validate_for_training(parse_config(base, "t.yaml", more), env);
    } catch (const InputError& e) {
      return e.what();
    }
    return "(no error)";
  };
  EXPECT_NE(message_of("train.method=prompt_tuning").find("train.method: prompt and prefix tuning "
                                                          "learn one block per task"),
            std::string::npos);
  const std::vector<std::string> tasks = {"data.source=tasks", "data.tasks=[t.yaml]"};
  std::vector<std::string> prefix = tasks;
  prefix.push_back("peft.prefix_tokens=4");
  EXPECT_NE(message_of("train.method=prefix_tuning", prefix)
                .find("peft.prefix_tokens: a prefix of 4 shifts positions"),
            std::string::npos)
      << message_of("train.method=prefix_tuning", prefix);
  std::vector<std::string> frozen_lora = {"peft.init_from=/etc/hostname", "peft.freeze_loaded=true"};
  EXPECT_NE(message_of("train.method=lora", frozen_lora).find("peft.freeze_loaded: freezes the "
                                                              "loaded tasks' own blocks"),
            std::string::npos)
      << message_of("train.method=lora", frozen_lora);
  EXPECT_EQ(message_of("train.method=lora"), "(no error)");
  EXPECT_NE(message_of("peft.freeze_loaded=true").find("peft.freeze_loaded"), std::string::npos);
  EXPECT_NE(message_of("train.method=lora", {"peft.init_from=/no/such.h5"}).find("peft.init_from"),
            std::string::npos);
  EXPECT_NE(message_of("model.vocab_size=200").find("model.vocab_size: 200 is smaller than the "
                                                    "vocabulary of data.tokenizer `byte` (258 ids)"),
            std::string::npos)
      << message_of("model.vocab_size=200");
  EXPECT_NE(message_of("model.from_pretrained=/x").find("model.from_pretrained"), std::string::npos);
  EXPECT_NE(message_of("train.resume=/ckpt").find("train.resume"), std::string::npos);
}

}  // namespace
}  // namespace pft
