// Parity of the optimizer step with PyTorch: torch.optim.AdamW (foreach=False, decay/no-decay
// param groups), clip_grad_norm_ and the same LR schedule, on Hugging Face GPT-2 and Llama with
// the same weights and batches.
//
// For each family and case the test initialises pft's model, flattens it, runs three optimizer
// steps of TrainStep (warmup then cosine) and writes the initial weights, every micro-batch, the
// per-step loss, lr and grad norm and the final weights to a temp dir;
// tests/reference/train_reference.py replays the steps in PyTorch and checks the losses
// (rel <= 1e-5) and every updated weight (rel <= 1e-4). Cases:
//   single      one micro-batch of 4 rows per step, no clipping
//   accum_clip  two micro-batches of 2 rows per step, clipping active (grad_clip below the norm)
#include <gtest/gtest.h>
#include <ATen/CPUGeneratorImpl.h>

#include <fstream>

#include "core/format.h"
#include "model/flat_params.h"
#include "model/transformer.h"
#include "model_test_util.h"
#include "train/lr_schedule.h"
#include "train/synthetic_data.h"
#include "train/train_step.h"

namespace pft {
namespace {

namespace fs = std::filesystem;
using test::NamedTensors;

constexpr int64_t kSteps = 3, kRows = 4, kSeqLen = 24;

struct Case {
  std::string family, name;
  int64_t micro_batches;
  double grad_clip;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.family << "/" << c.name; }

class TrainParity : public ::testing::TestWithParam<Case> {};

TEST_P(TrainParity, MatchesTorchAdamW) {
  const Case c = GetParam();
  const ModelSpec spec = test::parity_spec(c.family, 64);
  const fs::path dir = test::fresh_temp_dir("train-parity-" + c.family + "-" + c.name);
  const TrainConfig tc;  // no_decay default list
  const AdamWOptions adamw{0.9, 0.95, 1e-8, 0.1};
  const LrScheduleOptions sched{ScheduleKind::kCosine, 3e-3, kSteps, /*warmup=*/1, 0.1};

  Transformer model(spec);
  model->reset_parameters(1234);
  const NamedTensors initial = test::parameters_of(*model);
  test::write_spec_json(dir / "spec.json", spec, initial);
  test::write_text_file(dir / "train.json",
             fmt::format("{{\"steps\": {}, \"micro_batches\": {}, \"lr\": {:.17g}, "
                         "\"schedule\": \"cosine\", \"warmup_steps\": {}, \"total_steps\": {}, "
                         "\"min_lr_ratio\": {:.17g}, \"beta1\": {:.17g}, \"beta2\": {:.17g}, "
                         "\"eps\": {:.17g}, \"weight_decay\": {:.17g}, \"grad_clip\": {:.17g}, "
                         "\"no_decay\": {}}}\n",
                         kSteps, c.micro_batches, sched.peak_lr, sched.warmup_steps,
                         sched.total_steps, sched.min_lr_ratio, adamw.beta1, adamw.beta2, adamw.eps,
                         adamw.weight_decay, c.grad_clip, test::json_string_list(tc.no_decay)));
  test::save_tensors(dir / "params.pt", initial);

  FlatParameters params = FlatParameters::from_module(*model, tc.no_decay);
  AdamW optimizer(params, adamw);
  const LrSchedule schedule(sched);
  TrainStepOptions options;
  options.grad_clip = c.grad_clip;
  TrainStep step([&model](const Batch& b) { return model->forward(b.input_ids, b.position_ids, b.doc_ids); },
                 params, optimizer, options);

  // One document per row (Hugging Face has no document masking), ~15% of the targets masked.
  const int64_t rows = kRows / c.micro_batches;
  SyntheticTokenSource source(SyntheticDataOptions{77, spec.vocab_size, kSeqLen, rows, false}, at::kCPU);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(99);
  NamedTensors batches, results;
  std::vector<double> losses, norms, lrs;
  for (int64_t s = 0; s < kSteps; ++s) {
    std::vector<Batch> micro;
    for (int64_t m = 0; m < c.micro_batches; ++m) {
      Batch b = source.make_batch();
      source.fill(s * kRows + m * rows, b);
      b.loss_mask.mul_((at::rand({rows, kSeqLen}, gen) > 0.15).to(at::kFloat));
      const std::string key = fmt::format("s{}.m{}.", s, m);
      batches.emplace_back(key + "input_ids", b.input_ids);
      batches.emplace_back(key + "position_ids", b.position_ids);
      batches.emplace_back(key + "targets", b.targets);
      batches.emplace_back(key + "loss_mask", b.loss_mask);
      micro.push_back(std::move(b));
    }
    const double lr = schedule.lr(s);
    const StepResult r = step.run(micro, {}, lr);
    ASSERT_FALSE(r.skipped);
    losses.push_back(r.loss);
    norms.push_back(r.grad_norm);
    lrs.push_back(lr);
  }
  test::save_tensors(dir / "batches.pt", batches);
  const auto as_tensor = [](const std::vector<double>& v) {
    return at::tensor(v, at::TensorOptions().dtype(at::kDouble));
  };
  results = {{"loss", as_tensor(losses)}, {"grad_norm", as_tensor(norms)}, {"lr", as_tensor(lrs)}};
  for (const auto& [n, t] : test::parameters_of(*model)) results.emplace_back("final." + n, t);
  test::save_tensors(dir / "results.pt", results);

  const int rc = test::run_reference_script("train_reference.py", {"--dir", dir.string()});
  EXPECT_EQ(rc, 0) << "tests/reference/train_reference.py failed; fixtures kept in " << dir;
  if (rc == 0) fs::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(
    Families, TrainParity,
    ::testing::Values(Case{"gpt2", "single", 1, 0.0}, Case{"gpt2", "accum_clip", 2, 0.05},
                      Case{"llama", "single", 1, 0.0}, Case{"llama", "accum_clip", 2, 0.05}),
    [](const ::testing::TestParamInfo<Case>& info) {
      return info.param.family + "_" + info.param.name;
    });

}  // namespace
}  // namespace pft
