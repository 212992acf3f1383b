#include "train/train_step.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>

#include "comm/communicator.h"
#include "core/error.h"
#include "core/logging.h"
#include "core/trace.h"
#include "train/loss.h"

namespace pft {

TrainStep::TrainStep(ForwardFn forward, FlatParameters& params, AdamW& optimizer,
                     const TrainStepOptions& options)
    : forward_(std::move(forward)), params_(params), optimizer_(optimizer), options_(options) {
  if (options.precision == Precision::kFp16) scaler_ = std::make_unique<LossScaler>(options.device);
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(options.device);
  loss_acc_ = at::zeros({}, f32);
  task_loss_acc_ = at::zeros({options.num_tasks}, f32);
  task_tokens_acc_ = at::zeros({options.num_tasks}, f32);
  report_ = at::zeros({1 + 2 * options.num_tasks}, at::kDouble);
  PFT_ASSERT((options.comm == nullptr) == (options.reducer == nullptr),
             "TrainStepOptions: set both comm and reducer, or neither");
  PFT_ASSERT(options.loss_chunk_rows == 0 || options.hidden_forward,
             "TrainStepOptions: loss_chunk_rows needs hidden_forward");
  // The chunked loss's matmuls run in the dtype autocast gives at::linear.
  matmul_dtype_ = options.precision == Precision::kBf16   ? at::kBFloat16
                  : options.precision == Precision::kFp16 ? at::kHalf
                                                          : at::kFloat;
}

StepResult TrainStep::run(const std::vector<Batch>& micro_batches,
                          const std::vector<int64_t>& target_tokens, double lr) {
  PFT_ASSERT(!micro_batches.empty(), "a step needs at least one micro-batch");
  PFT_ASSERT(target_tokens.empty() || target_tokens.size() == micro_batches.size(),
             "one target-token count per micro-batch");
  StepResult result;

  // 1. Global target-token count (Note [loss normalisation]).
  int64_t local_tokens = 0;
  if (target_tokens.empty()) {
    for (const Batch& b : micro_batches) local_tokens += b.num_target_tokens();
  } else {
    local_tokens = std::accumulate(target_tokens.begin(), target_tokens.end(), int64_t{0});
  }
  const int64_t total = sum_over_ranks(options_.comm, local_tokens);
  result.target_tokens = total;
  const double inv_total = total > 0 ? 1.0 / static_cast<double>(total) : 0.0;

  // 2. Forward/backward, gradients accumulating in the flat buffers.
  const int64_t bytes_before = options_.comm != nullptr ? options_.comm->bytes_sent() : 0;
  params_.zero_grad();
  {
    at::NoGradGuard no_grad;
    loss_acc_.zero_();
    task_loss_acc_.zero_();
    task_tokens_acc_.zero_();
  }
  if (scaler_) result.loss_scale = scaler_->scale_value();
  for (size_t m = 0; m < micro_batches.size(); ++m) {
    const Batch& batch = micro_batches[m];
    // Only the last backward completes the gradients: earlier ones just accumulate locally.
    if (options_.reducer != nullptr) options_.reducer->prepare_for_backward(m + 1 == micro_batches.size());
    LossSums sums;
    if (options_.loss_chunk_rows > 0) {
      std::pair<at::Tensor, at::Tensor> hidden_weight;
      trace::Span span(trace::Lane::kForward, "forward + loss");
      {
        AutocastScope autocast(options_.precision, options_.device);
        hidden_weight = options_.hidden_forward(batch);
      }
      sums = chunked_cross_entropy(hidden_weight.first, hidden_weight.second, batch,
                                   options_.num_tasks, options_.loss_chunk_rows,
                                   matmul_dtype_);
    } else {
      trace::Span span(trace::Lane::kForward, "forward + loss");
      at::Tensor logits;
      {
        AutocastScope autocast(options_.precision, options_.device);
        logits = forward_(batch);
      }
      // The logits are dead after the loss: it may reuse their storage (train/loss.h).
      sums = masked_cross_entropy(logits, batch, options_.num_tasks, /*consume_logits=*/true);
    }
    at::Tensor objective = sums.loss_sum * inv_total;
    if (scaler_) objective = objective * scaler_->scale();
    {
      trace::Span span(trace::Lane::kBackward, "backward");
      objective.backward();
    }
    at::NoGradGuard no_grad;
    loss_acc_.add_(sums.loss_sum.detach());
    if (options_.num_tasks > 0) {
      task_loss_acc_.add_(sums.task_loss_sum);
      task_tokens_acc_.add_(sums.task_tokens);
    }
  }

  // 3. Sum gradients over ranks: wait for the buckets the last backward started.
  if (options_.reducer != nullptr) {
    trace::Span span(trace::Lane::kComm, "wait for all-reduces");
    result.comm_time_s = options_.reducer->finish();
    for (const auto& [slot, row_numel] : options_.row_sparse)
      options_.reducer->reduce_rows(slot, row_numel, rows_in_use_);
  }
  // After finish(): nothing may touch a bucket while its all-reduce runs (the reducer's hooks
  // already put back any gradient autograd replaced before sending it).
  if (const size_t fixed = params_.rebind_grads(); fixed > 0) {
    if (rebound_grads_ == 0)
      log::warn("autograd replaced {} parameter gradients instead of accumulating into the flat "
                "buffer; copied them back (Note [grads stay views])", fixed);
    rebound_grads_ += static_cast<int64_t>(fixed);
  }

  // 4-6. Unscale, clip, update.
  std::optional<trace::Span> optimizer_span;
  optimizer_span.emplace(trace::Lane::kOptimizer, "unscale, clip, update");
  const std::vector<at::Tensor> grads = params_.grads();
  bool finite = true;
  if (scaler_) finite = scaler_->unscale(grads);
  if (finite) {
    result.grad_norm = clip_grad_norm(grads, options_.grad_clip);
    finite = std::isfinite(result.grad_norm);
  } else {
    result.grad_norm = std::numeric_limits<double>::infinity();
  }
  // Every rank decides alike without a collective: the gradients are bitwise identical on every
  // rank after the reducer (fp32 all-reduce, or the bf16 path's all-gather of the same sums), so
  // the norm and `finite` are too, and `total` is global. That matters more under ZeRO-1, whose
  // step() is collective: a rank that skipped alone would pair its next collective with the
  // others' all-gather.
  result.skipped = !finite || total == 0;
  if (!result.skipped) optimizer_.step(lr);
  if (scaler_) scaler_->update();
  optimizer_span.reset();
  // The gradients' bytes, and under ZeRO-1 the all-gather of the updated parameters.
  if (options_.comm != nullptr) result.comm_bytes = options_.comm->bytes_sent() - bytes_before;

  // 7. Reporting sums over ranks.
  double* report = report_.data_ptr<double>();
  report[0] = loss_acc_.item<double>();
  if (options_.num_tasks > 0) {
    const at::Tensor host =
        at::cat({task_loss_acc_, task_tokens_acc_}).to(at::kCPU, at::kDouble);
    const double* h = host.data_ptr<double>();
    std::copy(h, h + 2 * options_.num_tasks, report + 1);
  }
  sum_over_ranks(options_.comm, report_);
  const int64_t n_tasks = options_.num_tasks;
  result.loss = report[0] * inv_total;
  result.task_loss_sum.assign(report + 1, report + 1 + n_tasks);
  result.task_tokens.assign(report + 1 + n_tasks, report + 1 + 2 * n_tasks);
  return result;
}

}  // namespace pft
