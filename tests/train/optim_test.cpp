// The optimizer's pieces on their own: LR schedule values at known steps, the progress line,
// AdamW on a toy quadratic against the update computed by hand, global-norm clipping, the fp16
// loss scaler (overflow skip, backoff, growth) and the masked cross entropy with per-task sums.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "core/error.h"
#include "model/flat_params.h"
#include "train/loss.h"
#include "data/tokenizer.h"
#include "train/checkpointing.h"
#include "train/evaluate.h"
#include "train/lr_schedule.h"
#include "train/optimizer.h"
#include "train/precision.h"
#include "train/progress.h"

namespace pft {
namespace {

LrSchedule make_schedule(ScheduleKind kind, int64_t warmup) {
  return LrSchedule(LrScheduleOptions{kind, /*peak_lr=*/2.0, /*total_steps=*/10, warmup,
                                      /*min_lr_ratio=*/0.1});
}

TEST(LrSchedule, WarmupThenDecayAtKnownSteps) {
  for (ScheduleKind kind : {ScheduleKind::kConstant, ScheduleKind::kLinear, ScheduleKind::kCosine}) {
    const LrSchedule s = make_schedule(kind, 2);
    EXPECT_DOUBLE_EQ(s.lr(0), 1.0);  // (0 + 1) / 2 of the peak
    EXPECT_DOUBLE_EQ(s.lr(1), 2.0);
    EXPECT_DOUBLE_EQ(s.lr(2), 2.0);  // p = 0: the peak
  }
  // p = (6 - 2) / (10 - 2) = 0.5
  EXPECT_DOUBLE_EQ(make_schedule(ScheduleKind::kConstant, 2).lr(6), 2.0);
  EXPECT_DOUBLE_EQ(make_schedule(ScheduleKind::kLinear, 2).lr(6), 2.0 * (1 - 0.9 * 0.5));
  EXPECT_DOUBLE_EQ(make_schedule(ScheduleKind::kCosine, 2).lr(6), 2.0 * (0.1 + 0.9 * 0.5));
  // p = 7 / 8
  EXPECT_NEAR(make_schedule(ScheduleKind::kCosine, 2).lr(9),
              2.0 * (0.1 + 0.9 * 0.5 * (1 + std::cos(std::numbers::pi * 7.0 / 8.0))), 1e-15);
  // Past the end: the floor.
  EXPECT_DOUBLE_EQ(make_schedule(ScheduleKind::kCosine, 2).lr(10), 0.2);
  EXPECT_DOUBLE_EQ(make_schedule(ScheduleKind::kLinear, 2).lr(50), 0.2);
  // No warmup: the first step runs at the peak.
  EXPECT_DOUBLE_EQ(make_schedule(ScheduleKind::kCosine, 0).lr(0), 2.0);
  EXPECT_DOUBLE_EQ(make_schedule(ScheduleKind::kLinear, 0).lr(5), 2.0 * (1 - 0.9 * 0.5));
  EXPECT_THROW(parse_schedule("step"), InputError);
}

TEST(Progress, TaskSummaryWindows) {
  // 20 steps: windows of 2 steps. Task "a" has loss 3 per token in steps 0-1, 1 in steps 18-19;
  // task "b" only appears in the middle.
  TaskSummary s({"a", "bb"}, /*first_step=*/0, /*total_steps=*/20);
  EXPECT_TRUE(s.format().empty());
  for (int64_t step = 0; step < 20; ++step) {
    const double per_token = step < 2 ? 3.0 : (step >= 18 ? 1.0 : 2.0);
    const bool middle = step == 10;
    s.add(step, {per_token * 4, middle ? 5.0 : 0.0}, {4, middle ? 2.0 : 0.0});
  }
  const auto lines = s.format();
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_NE(lines[0].find("loss first 2 steps"), std::string::npos) << lines[0];
  EXPECT_NE(lines[1].find("80"), std::string::npos) << lines[1];     // 20 steps x 4 tokens
  EXPECT_NE(lines[1].find("3.000"), std::string::npos) << lines[1];
  EXPECT_NE(lines[1].find("1.000"), std::string::npos) << lines[1];
  EXPECT_NE(lines[1].find("-66.7%"), std::string::npos) << lines[1];
  EXPECT_EQ(lines[2].rfind("bb", 0), 0u) << lines[2];
  EXPECT_NE(lines[2].find(" - "), std::string::npos) << lines[2];      // no tokens in a window

  // After a resume at step 15 of 20 the windows cover the steps this process ran.
  TaskSummary resumed({"a"}, 15, 20);
  resumed.add(15, {6.0}, {2.0});
  for (int64_t step = 16; step < 20; ++step) resumed.add(step, {2.0}, {2.0});
  EXPECT_NE(resumed.format()[1].find("3.000"), std::string::npos) << resumed.format()[1];
  EXPECT_NE(resumed.format()[1].find("1.000"), std::string::npos) << resumed.format()[1];
}

TEST(Progress, LineAndFormatters) {
  EXPECT_EQ(format_rate(950), "950");
  EXPECT_EQ(format_rate(12345), "12.3k");
  EXPECT_EQ(format_rate(4.2e6), "4.20M");
  EXPECT_EQ(format_duration(65), "1m05s");
  EXPECT_EQ(format_duration(3725), "1h02m05s");
  EXPECT_EQ(format_duration(9.4), "9s");
  ProgressFields f;
  f.step = 50;
  f.total_steps = 200;
  f.loss = 2.3449;
  f.lr = 3e-4;
  f.grad_norm = 0.9149;
  f.tokens_per_s = 12300;
  f.eta_s = 65;
  EXPECT_EQ(format_progress_line(f),
            "step 50/200 | loss 2.345 | lr 3.0e-04 | grad_norm 0.91 | 12.3k tok/s | ETA 1m05s");
  // More ranks: the per-rank rate; a GPU with a known peak: MFU.
  f.world_size = 8;
  f.tokens_per_s = 98400;
  f.mfu = 0.4123;
  EXPECT_EQ(format_progress_line(f),
            "step 50/200 | loss 2.345 | lr 3.0e-04 | grad_norm 0.91 | 98.4k tok/s (12.3k/rank) | "
            "MFU 41.2% | ETA 1m05s");
  f.skipped = true;
  f.loss_scale = 32768;
  EXPECT_NE(format_progress_line(f).find("scale 32768 | skipped"), std::string::npos);
}

// Two parameters: "w" (decays) and "w.bias" (no decay); loss 0.5 * |p - c|^2, so grad = p - c.
TEST(AdamW, ToyQuadraticMatchesHandComputedUpdates) {
  const std::vector<double> w0 = {0.5, -1.0, 2.0}, b0 = {0.25, -0.75};
  const std::vector<double> cw = {1.0, 1.0, -1.0}, cb = {0.0, 0.5};
  at::Tensor w = at::tensor(std::vector<float>(w0.begin(), w0.end())).requires_grad_();
  at::Tensor b = at::tensor(std::vector<float>(b0.begin(), b0.end())).requires_grad_();
  FlatParameters flat({{"w", w}, {"w.bias", b}}, {"bias"});
  ASSERT_EQ(flat.num_groups(), 2u);
  EXPECT_TRUE(flat.decay(0));
  EXPECT_FALSE(flat.decay(1));
  const AdamWOptions opt{0.9, 0.95, 1e-8, 0.1};
  AdamW adamw(flat, opt);

  // The same update in double precision, by hand.
  std::vector<double> pw = w0, pb = b0, mw(3), vw(3), mb(2), vb(2);
  const auto reference = [&](std::vector<double>& p, std::vector<double>& m,
                             std::vector<double>& v, const std::vector<double>& c, double wd,
                             double lr, int t) {
    for (size_t i = 0; i < p.size(); ++i) {
      const double g = p[i] - c[i];
      p[i] *= 1 - lr * wd;
      m[i] = opt.beta1 * m[i] + (1 - opt.beta1) * g;
      v[i] = opt.beta2 * v[i] + (1 - opt.beta2) * g * g;
      const double mhat = m[i] / (1 - std::pow(opt.beta1, t));
      const double vhat = v[i] / (1 - std::pow(opt.beta2, t));
      p[i] -= lr * mhat / (std::sqrt(vhat) + opt.eps);
    }
  };
  const std::vector<double> lrs = {0.1, 0.05, 0.2, 0.01};
  for (int t = 1; t <= 4; ++t) {
    flat.zero_grad();
    const at::Tensor loss = 0.5 * ((w - at::tensor(std::vector<float>(cw.begin(), cw.end()))).pow(2).sum() +
                                   (b - at::tensor(std::vector<float>(cb.begin(), cb.end()))).pow(2).sum());
    loss.backward();
    adamw.step(lrs[t - 1]);
    reference(pw, mw, vw, cw, opt.weight_decay, lrs[t - 1], t);
    reference(pb, mb, vb, cb, 0.0, lrs[t - 1], t);
    for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(w[i].item<double>(), pw[i], 1e-6) << "step " << t;
    for (size_t i = 0; i < 2; ++i) EXPECT_NEAR(b[i].item<double>(), pb[i], 1e-6) << "step " << t;
  }
  EXPECT_EQ(adamw.step_count(), 4);
  EXPECT_EQ(adamw.state(0).step.item<float>(), 4.0f);
  EXPECT_NEAR(adamw.state(1).exp_avg[1].item<double>(), mb[1], 1e-6);
  EXPECT_NEAR(adamw.state(0).exp_avg_sq[2].item<double>(), vw[2], 1e-6);
}

TEST(ClipGradNorm, GlobalNormOverAllBuffers) {
  at::Tensor a = at::tensor({3.0f, 0.0f}), b = at::tensor({0.0f, 0.0f, 4.0f});
  EXPECT_NEAR(clip_grad_norm({a, b}, 0.0), 5.0, 1e-6);  // 0: measure only
  EXPECT_FLOAT_EQ(a[0].item<float>(), 3.0f);
  EXPECT_NEAR(clip_grad_norm({a, b}, 10.0), 5.0, 1e-6);  // below the cap: unchanged
  EXPECT_FLOAT_EQ(b[2].item<float>(), 4.0f);
  EXPECT_NEAR(clip_grad_norm({a, b}, 1.0), 5.0, 1e-6);  // returns the norm before clipping
  const double coef = 1.0 / (5.0 + 1e-6);
  EXPECT_NEAR(a[0].item<double>(), 3.0 * coef, 1e-7);
  EXPECT_NEAR(b[2].item<double>(), 4.0 * coef, 1e-7);
  EXPECT_NEAR(clip_grad_norm({a, b}, 0.0), 1.0, 1e-5);
  at::Tensor bad = at::tensor({1.0f, INFINITY});
  EXPECT_FALSE(std::isfinite(clip_grad_norm({bad}, 1.0)));
}

TEST(LossScaler, SkipsOverflowBacksOffAndGrows) {
  LossScalerOptions o;
  o.init_scale = 1024;
  o.growth_interval = 2;
  LossScaler scaler(at::kCPU, o);
  EXPECT_EQ(scaler.scale_value(), 1024.0);
  at::Tensor g = at::tensor({2048.0f, -512.0f});
  EXPECT_TRUE(scaler.unscale({g}));
  EXPECT_FLOAT_EQ(g[0].item<float>(), 2.0f);
  EXPECT_FLOAT_EQ(g[1].item<float>(), -0.5f);
  scaler.update();
  EXPECT_EQ(scaler.scale_value(), 1024.0);  // one clean step of two
  at::Tensor g2 = at::tensor({1.0f});
  EXPECT_TRUE(scaler.unscale({g2}));
  scaler.update();
  EXPECT_EQ(scaler.scale_value(), 2048.0);  // grown after growth_interval clean steps
  at::Tensor bad = at::tensor({1.0f, NAN}), ok = at::tensor({1.0f});
  EXPECT_FALSE(scaler.unscale({ok, bad}));
  scaler.update();
  EXPECT_EQ(scaler.scale_value(), 1024.0);  // backed off
  EXPECT_FALSE(scaler.unscale({at::tensor({-INFINITY})}));
  scaler.update();
  EXPECT_EQ(scaler.scale_value(), 512.0);
}

TEST(Precision, AutocastScope) {  // parsing train.precision: config_test
  EXPECT_STREQ(precision_name(Precision::kBf16), "bf16");
  const at::Tensor a = at::randn({4, 8}), w = at::randn({8, 8});
  {
    AutocastScope scope(Precision::kBf16, at::kCPU);
    EXPECT_EQ(at::matmul(a, w).scalar_type(), at::kBFloat16);
  }
  EXPECT_EQ(at::matmul(a, w).scalar_type(), at::kFloat);
  {
    AutocastScope scope(Precision::kFp32, at::kCPU);
    EXPECT_EQ(at::matmul(a, w).scalar_type(), at::kFloat);
  }
}

TEST(Loss, MaskedSumAndPerTaskSums) {
  at::manual_seed(7);
  const at::Tensor logits = at::randn({2, 3, 5}).requires_grad_();
  Batch b;
  b.targets = at::tensor({1, 4, -100, 0, 2, 3}, at::kLong).view({2, 3});  // -100 under mask 0
  b.loss_mask = at::tensor({1.0f, 1.0f, 0.0f, 1.0f, 0.0f, 1.0f}).view({2, 3});
  b.task_ids = at::tensor({0, 1, -1, 1, -1, 7}, at::kLong).view({2, 3});  // 7: out of range
  const LossSums s = masked_cross_entropy(logits, b, 2);
  const at::Tensor logp = at::log_softmax(logits.detach().view({6, 5}), 1);
  const auto nll = [&](int i, int t) { return -logp[i][t].item<double>(); };
  const double expected = nll(0, 1) + nll(1, 4) + nll(3, 0) + nll(5, 3);
  EXPECT_NEAR(s.loss_sum.item<double>(), expected, 1e-5);
  EXPECT_NEAR(s.task_loss_sum[0].item<double>(), nll(0, 1), 1e-5);
  EXPECT_NEAR(s.task_loss_sum[1].item<double>(), nll(1, 4) + nll(3, 0), 1e-5);
  EXPECT_EQ(s.task_tokens[0].item<float>(), 1.0f);
  EXPECT_EQ(s.task_tokens[1].item<float>(), 2.0f);
  s.loss_sum.backward();
  EXPECT_TRUE(logits.grad().defined());
  EXPECT_EQ(logits.grad()[0][2].abs().sum().item<float>(), 0.0f);  // masked out: no gradient
  // bf16 logits: the loss is still taken in fp32.
  const LossSums h = masked_cross_entropy(logits.detach().to(at::kBFloat16), b, 0);
  EXPECT_EQ(h.loss_sum.scalar_type(), at::kFloat);
  EXPECT_NEAR(h.loss_sum.item<double>(), expected, 0.05);
  EXPECT_EQ(h.task_loss_sum.numel(), 0);
}

// The fused loss (Note [fused cross entropy]) against autograd through log_softmax + nll: the
// gradient reaching the weights of the layer that made the logits, with the logits consumed in
// place (fp32) and copied (bf16 autocast-style logits); a second backward is refused.
TEST(Loss, FusedGradientMatchesAutograd) {
  at::manual_seed(11);
  Batch b;
  b.targets = at::randint(0, 37, {3, 8}, at::kLong);
  b.loss_mask = (at::rand({3, 8}) > 0.3).to(at::kFloat);
  const at::Tensor h = at::randn({3, 8, 16});
  for (const bool bf16 : {false, true}) {
    for (const bool consume : {true, false}) {
      const at::Tensor w = (at::randn({37, 16}) * 0.5).requires_grad_();
      const at::Tensor w_ref = w.detach().clone().requires_grad_();
      at::Tensor logits = at::matmul(bf16 ? h.to(at::kBFloat16) : h,
                                     (bf16 ? w.to(at::kBFloat16) : w).t());
      const LossSums s = masked_cross_entropy(logits, b, 0, consume);
      (s.loss_sum * 0.25).backward();
      const at::Tensor ref_logits = at::matmul(h, w_ref.t()).view({-1, 37});
      const at::Tensor ref =
          (at::nll_loss(at::log_softmax(ref_logits, 1), b.targets.view({-1}), {},
                        at::Reduction::None) * b.loss_mask.view({-1})).sum();
      (ref * 0.25).backward();
      const double tol = bf16 ? 0.05 : 1e-5;
      EXPECT_NEAR(s.loss_sum.item<double>(), ref.item<double>(), bf16 ? 0.5 : 1e-4)
          << "bf16 " << bf16 << " consume " << consume;
      EXPECT_LE((w.grad() - w_ref.grad()).abs().max().item<double>(), tol)
          << "bf16 " << bf16 << " consume " << consume;
      EXPECT_THROW(s.loss_sum.backward(), std::exception);
    }
  }
}

}  // namespace
}  // namespace pft

namespace pft {
namespace {

// checkpoint.best_mode auto: which way each best_metric ranks (train/checkpointing.h).
TEST(Retention, AutoModeRanksLossLikeMetricsLowAndTheRestHigh) {
  const auto higher = [](const std::string& metric, const std::string& mode) {
    CheckpointConfig c;
    c.best_metric = metric;
    c.best_mode = mode;
    c.keep_best = 2;
    const ckpt::RetentionPolicy p = retention_policy(c);
    EXPECT_EQ(p.best_metric, metric);
    EXPECT_EQ(p.keep_best, 2);
    return p.higher_is_better;
  };
  EXPECT_FALSE(higher("loss", "auto"));
  EXPECT_FALSE(higher("eval.loss", "auto"));
  EXPECT_FALSE(higher("eval.add.perplexity", "auto"));
  EXPECT_FALSE(higher("eval.worst_template_loss", "auto"));
  EXPECT_TRUE(higher("eval.exact_match", "auto"));
  EXPECT_TRUE(higher("eval.sentiment.accuracy", "auto"));
  EXPECT_TRUE(higher("eval.max.digit.worst_template_exact_match", "auto"));  // dots in a task name
  EXPECT_TRUE(higher("eval.loss", "max"));
  EXPECT_FALSE(higher("eval.exact_match", "min"));
}


// Exact match of a generation: tokens, or with eval.stop the trimmed texts; any reference counts.
TEST(Evaluate, AnswerMatchesByTokensOrByText) {
  const std::unique_ptr<Tokenizer> byte = load_tokenizer("byte");
  const std::vector<std::vector<int32_t>> answer = {byte->encode(" positive")};
  Generation g;
  g.tokens = answer[0];
  EXPECT_TRUE(answer_matches(g, answer, nullptr));
  g.tokens = byte->encode(" positive\n");  // the token that completed a stop string stays
  EXPECT_FALSE(answer_matches(g, answer, nullptr));
  g.text = " positive";  // cut before the stop string "\n"
  EXPECT_TRUE(answer_matches(g, answer, byte.get()));
  g.text = "positive  ";
  EXPECT_TRUE(answer_matches(g, answer, byte.get()));
  g.text = " negative";
  EXPECT_FALSE(answer_matches(g, answer, byte.get()));
  g.text = " positively";
  EXPECT_FALSE(answer_matches(g, answer, byte.get()));

  // Several references: equal to any of them is a match, by tokens and by text.
  const std::vector<std::vector<int32_t>> answers = {byte->encode(" 1"), byte->encode(" one")};
  g.tokens = byte->encode(" one");
  EXPECT_TRUE(answer_matches(g, answers, nullptr));
  g.tokens = byte->encode(" two");
  EXPECT_FALSE(answer_matches(g, answers, nullptr));
  g.text = "one";
  EXPECT_TRUE(answer_matches(g, answers, byte.get()));
  g.text = " 1 ";
  EXPECT_TRUE(answer_matches(g, answers, byte.get()));
  g.text = " 2";
  EXPECT_FALSE(answer_matches(g, answers, byte.get()));
}

}  // namespace
}  // namespace pft
